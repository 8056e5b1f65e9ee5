package oidcprovider_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oidcprovider"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The registered clients: the frontend (confidential, like Auth.js on a Next.js
// server) and a public one (PKCE only).
const (
	frontendID       = "frontend"
	frontendSecret   = "frontend-secret-0123456789-abcdefghijklmnop"
	frontendRedirect = "http://localhost:3000/api/auth/callback/hestami"
	frontendLogout   = "http://localhost:3000/signed-out"
	publicID         = "mobile"
	publicRedirect   = "https://app.hestami.example/callback"
)

// clock is a test clock that starts at the real time (op stamps tokens with the
// system clock) and moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// env is the auth service in miniature: a real PostgreSQL database, the auth
// domain service, the provider mounted at /oidc/ and a login page that signs in
// env.user (as authhttp would after a real sign-in) and calls Complete.
type env struct {
	t       *testing.T
	clock   *clock
	svc     *auth.Service
	users   *postgres.AuthStore
	store   *postgres.OIDCStore
	p       *oidcprovider.Provider
	cfg     oidcprovider.Config
	base    string // http://localhost:PORT
	issuer  string
	user    *auth.User
	methods []string
	// elevate, if set, is a second factor the login page verifies after
	// signing in (auth.Service.ElevateSession), as authhttp's MFA pages do.
	elevate    string
	lastSess   atomic.Pointer[auth.Session]
	loginCalls atomic.Int32
}

func newEnv(t *testing.T, tweak ...func(*oidcprovider.Config)) *env {
	t.Helper()
	ctx := t.Context()
	pool, err := postgres.OpenPool(ctx, pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := postgres.MigrateUp(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, clock: &clock{t: time.Now()}, users: postgres.NewAuthStore(pool), store: postgres.NewOIDCStore(pool),
		methods: []string{"google"}}
	e.svc = auth.NewService(e.users, nil, auth.DefaultConfig(), e.clock.Now, testLogger(t))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	e.issuer = e.base + "/oidc"
	e.cfg = oidcprovider.Config{
		Issuer: e.issuer,
		Clients: []oidcprovider.Client{
			{ID: frontendID, Name: "Hestami", Secret: frontendSecret, RedirectURIs: []string{frontendRedirect}, PostLogoutRedirectURIs: []string{frontendLogout}},
			{ID: publicID, Name: "Hestami mobile", Public: true, RedirectURIs: []string{publicRedirect}},
		},
		LoginURL: func(id string) string { return e.base + "/oidc-login?" + url.Values{"id": {id}}.Encode() },
	}
	for _, f := range tweak {
		f(&e.cfg)
	}
	e.p, err = oidcprovider.New(ctx, e.cfg, e.store, e.users, e.clock.Now, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/oidc/", e.p.Handler())
	mux.HandleFunc("/oidc-login", e.login)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	e.user, err = e.svc.CreateUser(ctx, nil, auth.NewUser{Type: auth.TypeOwner, Email: "olivia@example.com", Name: "Olivia Owner"}, auth.Client{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// login is the login page: it signs e.user in with a new session and completes
// the request.
func (e *env) login(w http.ResponseWriter, r *http.Request) {
	e.loginCalls.Add(1)
	u, err := e.users.User(r.Context(), e.user.ID)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, sess, err := e.svc.StartSession(r.Context(), u, e.methods, auth.Client{IP: "127.0.0.1", UserAgent: r.UserAgent()})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if e.elevate != "" {
		if _, sess, err = e.svc.ElevateSession(r.Context(), sess, u, e.elevate, auth.Client{IP: "127.0.0.1", UserAgent: r.UserAgent()}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	e.lastSess.Store(sess)
	to, err := e.p.Complete(r.Context(), r.URL.Query().Get("id"), sess, u)
	if err != nil {
		http.Error(w, auth.ErrorMessage(err), http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, to, http.StatusFound)
}

// browser is a browser with its own cookies that follows redirects on the auth
// service and stops at the first redirect anywhere else (the client's callback).
func (e *env) browser() *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	host := strings.TrimPrefix(e.base, "http://")
	return &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != host || len(via) > 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// visit GETs raw in b and returns the last response (its body read) and where
// it redirects to, if anywhere.
func visit(t *testing.T, b *http.Client, raw string) (*http.Response, string, *url.URL) {
	t.Helper()
	resp, err := b.Get(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	loc, _ := resp.Location()
	return resp, string(body), loc
}

// rp is a relying party doing what Auth.js does: discovery, code flow with PKCE
// (S256), state and nonce, ID token verification against the JWKS, userinfo,
// refresh.
type rp struct {
	t        *testing.T
	ctx      context.Context
	provider *oidc.Provider
	conf     oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func (e *env) rp(clientID, secret, redirect string, scopes ...string) *rp {
	e.t.Helper()
	ctx := oidc.ClientContext(e.t.Context(), &http.Client{Timeout: 30 * time.Second})
	provider, err := oidc.NewProvider(ctx, e.issuer)
	if err != nil {
		e.t.Fatalf("discovery: %v", err)
	}
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess}
	}
	return &rp{t: e.t, ctx: ctx, provider: provider,
		conf:     oauth2.Config{ClientID: clientID, ClientSecret: secret, RedirectURL: redirect, Endpoint: provider.Endpoint(), Scopes: scopes},
		verifier: provider.Verifier(&oidc.Config{ClientID: clientID})}
}

// flow is one sign-in's client-side secrets.
type flow struct {
	state, nonce, verifier string
}

func newFlow() flow {
	return flow{state: auth.NewToken(), nonce: auth.NewToken(), verifier: oauth2.GenerateVerifier()}
}

func (c *rp) authURL(f flow) string {
	return c.conf.AuthCodeURL(f.state, oidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier))
}

// code runs the browser part of the flow and returns the code the client's
// callback receives, after checking its state.
func (c *rp) code(b *http.Client, f flow) string {
	c.t.Helper()
	resp, body, loc := visit(c.t, b, c.authURL(f))
	if loc == nil || !strings.HasPrefix(loc.String(), c.conf.RedirectURL+"?") {
		c.t.Fatalf("authorize: want a redirect to %s, got %s %v: %s", c.conf.RedirectURL, resp.Status, loc, body)
	}
	q := loc.Query()
	if q.Get("state") != f.state {
		c.t.Fatalf("callback state %q, want %q", q.Get("state"), f.state)
	}
	if q.Get("code") == "" {
		c.t.Fatalf("callback without code: %s", loc)
	}
	return q.Get("code")
}

func (c *rp) exchange(code string, f flow) (*oauth2.Token, error) {
	return c.conf.Exchange(c.ctx, code, oauth2.VerifierOption(f.verifier))
}

// signIn runs the whole flow and checks the ID token as Auth.js does.
func (c *rp) signIn(b *http.Client) (*oauth2.Token, *oidc.IDToken) {
	c.t.Helper()
	f := newFlow()
	tok, err := c.exchange(c.code(b, f), f)
	if err != nil {
		c.t.Fatalf("exchange: %v", err)
	}
	id := c.verifyID(tok)
	if id.Nonce != f.nonce {
		c.t.Fatalf("ID token nonce %q, want %q", id.Nonce, f.nonce)
	}
	return tok, id
}

func (c *rp) verifyID(tok *oauth2.Token) *oidc.IDToken {
	c.t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		c.t.Fatal("token response without id_token")
	}
	id, err := c.verifier.Verify(c.ctx, raw)
	if err != nil {
		c.t.Fatalf("verify ID token: %v", err)
	}
	if err := id.VerifyAccessToken(tok.AccessToken); err != nil {
		c.t.Fatalf("at_hash: %v", err)
	}
	return id
}

func (c *rp) refresh(refreshToken string) (*oauth2.Token, error) {
	return c.conf.TokenSource(c.ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

func (c *rp) userinfo(tok *oauth2.Token) (*oidc.UserInfo, error) {
	return c.provider.UserInfo(c.ctx, oauth2.StaticTokenSource(tok))
}

// oauthError returns the OAuth error code of a failed token request.
func oauthError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	if err == nil {
		return ""
	}
	return "not an oauth error: " + err.Error()
}

// idClaims are the ID token claims the frontend uses.
type idClaims struct {
	Sub           string   `json:"sub"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"email_verified"`
	Name          string   `json:"name"`
	UserType      string   `json:"hestami_user_type"`
	Roles         []string `json:"roles"`
	AuthTime      int64    `json:"auth_time"`
	AMR           []string `json:"amr"`
	ACR           string   `json:"acr"`
	SID           string   `json:"sid"`
}
