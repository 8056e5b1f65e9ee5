// Package authclienttest runs the real auth service in-process for the tests of
// services that trust it through package authclient: auth.Service over a
// PostgreSQL database, the OpenID Connect provider with the clients the test
// registers, and the HTTP server (pages, API with bearer tokens, /oidc) on a
// free loopback port at http://localhost:PORT. People are signed in directly
// (no identity provider), and a second factor is recorded in their session
// without a code, so tests reach what they test quickly.
package authclienttest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
	"github.com/hestami/hestami/oidcprovider"
	"github.com/hestami/hestami/postgres"
)

// Client is an application registered at the auth service.
type Client = oidcprovider.Client

// Options configure Start.
type Options struct {
	// DatabaseURL is an empty PostgreSQL database (pgtest.Database(t)).
	// Required.
	DatabaseURL string
	// Clients are the OpenID Connect clients (the service under test).
	Clients []Client
	// ReturnOrigins are the origins the auth service sends browsers back to
	// after a step-up (the service under test's public URL).
	ReturnOrigins []string
	// Now is the clock of the service and the provider (nil: time.Now).
	Now func() time.Time
	// AccessTokenTTL is the access tokens' lifetime (0: 15 minutes).
	AccessTokenTTL time.Duration
}

// Auth is a running auth service.
type Auth struct {
	// URL is its public URL, http://localhost:PORT.
	URL     string
	Service *auth.Service
	Store   auth.Store
	t       testing.TB
	logs    *syncBuffer
}

// Start starts an auth service for the test; it stops when the test ends.
func Start(t testing.TB, o Options) *Auth {
	t.Helper()
	if o.DatabaseURL == "" {
		t.Fatal("authclienttest: Options.DatabaseURL is required (pgtest.Database(t))")
	}
	ctx := context.Background()
	pool, err := postgres.OpenPool(ctx, o.DatabaseURL)
	if err != nil {
		t.Fatalf("authclienttest: %v", err)
	}
	t.Cleanup(pool.Close)
	if _, err := postgres.MigrateUp(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("authclienttest: migrate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("authclienttest: %v", err)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	a := &Auth{URL: fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port), t: t, logs: &syncBuffer{}}
	logger := slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := postgres.NewAuthStore(pool)
	cfg := auth.DefaultConfig()
	cfg.ReturnOrigins = o.ReturnOrigins
	a.Store = store
	a.Service = auth.NewService(store, nil, cfg, now, logger)
	op, err := oidcprovider.New(ctx, oidcprovider.Config{
		Issuer: a.URL + "/oidc", Clients: o.Clients, AccessTokenTTL: o.AccessTokenTTL,
		LoginURL: func(id string) string { return a.URL + "/oidc-login?" + url.Values{"id": {id}}.Encode() },
	}, postgres.NewOIDCStore(pool), store, now, logger)
	if err != nil {
		t.Fatalf("authclienttest: oidc provider: %v", err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	srv, err := authhttp.New(authhttp.Options{
		Service: a.Service, PublicURL: a.URL, Logger: logger, Now: now, CSRFKey: key,
		OIDC: op, OIDCHandler: op.Handler(),
		AccessTokens: authhttp.AccessTokensFunc(func(ctx context.Context, token string) (*authhttp.AccessToken, error) {
			at, err := op.VerifyAccessToken(ctx, token)
			if err != nil {
				return nil, err
			}
			return &authhttp.AccessToken{UserID: at.UserID, ClientID: at.ClientID, SessionID: at.SessionID, Scopes: at.Scopes, Expiry: at.Expiry}, nil
		}),
	})
	if err != nil {
		t.Fatalf("authclienttest: %v", err)
	}
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: srv.Handler()}}
	hs.Start()
	t.Cleanup(hs.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("auth service log:\n%s", a.logs.String())
		}
	})
	return a
}

// User creates an account of type typ with roles (staff: "staff:ops",
// "staff:admin", "staff:support"; none: the type's default).
func (a *Auth) User(typ auth.UserType, email string, roles ...string) *auth.User {
	a.t.Helper()
	u, err := a.Service.CreateUser(context.Background(), nil, auth.NewUser{Type: typ, Email: email, Name: strings.Split(email, "@")[0], Roles: roles}, auth.Client{UserAgent: "authclienttest"})
	if err != nil {
		a.t.Fatalf("authclienttest: create %s: %v", email, err)
	}
	return u
}

// Browser is a person's browser: an http.Client with a cookie jar that
// follows redirects (cookies are shared between the ports of localhost, as in
// browsers) and asks for HTML, as a navigation does, unless a request sets
// its own Accept header.
type Browser struct {
	*http.Client
	a    *Auth
	user *auth.User
}

// Browser returns a new browser, signed in nowhere.
func (a *Auth) Browser() *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{Client: &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: navigation{http.DefaultTransport}}, a: a}
}

// navigation adds the Accept header of a browser's page request.
type navigation struct{ next http.RoundTripper }

func (n navigation) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Accept") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	}
	return n.next.RoundTrip(r)
}

// SignIn signs u in at the auth service in this browser (a new session,
// methods ["test"], no second factor yet).
func (b *Browser) SignIn(u *auth.User) {
	b.a.t.Helper()
	token, _, err := b.a.Service.StartSession(context.Background(), u, []string{"test"}, auth.Client{IP: "127.0.0.1", UserAgent: "authclienttest"})
	if err != nil {
		b.a.t.Fatalf("authclienttest: sign in %s: %v", u.Email, err)
	}
	b.user = u
	b.setSession(token)
}

func (b *Browser) setSession(token string) {
	u, _ := url.Parse(b.a.URL)
	b.Jar.SetCookies(u, []*http.Cookie{{Name: authhttp.SessionCookie, Value: token, Path: "/", Secure: true, HttpOnly: true}})
}

// SessionToken is the browser's session cookie at the auth service ("" if
// none).
func (b *Browser) SessionToken() string {
	u, _ := url.Parse(b.a.URL)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == authhttp.SessionCookie {
			return c.Value
		}
	}
	return ""
}

// Session returns the browser's session at the auth service.
func (b *Browser) Session() *auth.Session {
	b.a.t.Helper()
	sess, _, err := b.a.Service.Authenticate(context.Background(), b.SessionToken(), auth.Client{})
	if err != nil {
		b.a.t.Fatalf("authclienttest: the browser's session: %v", err)
	}
	return sess
}

// StepUp records a second factor (TOTP) verified now in the browser's
// session, as the auth service's challenge page does: the session is replaced
// (the tokens issued from the old one stop working; the service signs the
// person in again to carry the fresh factor).
func (b *Browser) StepUp() {
	b.a.t.Helper()
	sess, u, err := b.a.Service.Authenticate(context.Background(), b.SessionToken(), auth.Client{})
	if err != nil {
		b.a.t.Fatalf("authclienttest: step up: %v", err)
	}
	token, _, err := b.a.Service.ElevateSession(context.Background(), sess, u, auth.MethodTOTP, auth.Client{IP: "127.0.0.1", UserAgent: "authclienttest"})
	if err != nil {
		b.a.t.Fatalf("authclienttest: step up: %v", err)
	}
	b.setSession(token)
}

// SignOut ends the browser's session at the auth service, as its sign-out
// button does: every token issued from it stops working.
func (b *Browser) SignOut() {
	b.a.t.Helper()
	if err := b.a.Service.SignOut(context.Background(), b.Session(), auth.Client{}); err != nil {
		b.a.t.Fatalf("authclienttest: sign out: %v", err)
	}
}

// Token runs the authorization code flow with PKCE for client c in the
// browser (signed in already) and returns the tokens: what an API client of
// the service under test holds.
func (b *Browser) Token(c Client) *oauth2.Token {
	b.a.t.Helper()
	t := b.a.t
	ctx := oidc.ClientContext(context.Background(), &http.Client{Timeout: 30 * time.Second})
	prov, err := oidc.NewProvider(ctx, b.a.URL+"/oidc")
	if err != nil {
		t.Fatalf("authclienttest: discovery: %v", err)
	}
	redirect := c.RedirectURIs[0]
	conf := oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret, Endpoint: prov.Endpoint(), RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
	state, verifier := auth.NewToken(), oauth2.GenerateVerifier()
	stop := *b.Client
	stop.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := stop.Get(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(auth.NewToken())))
	if err != nil {
		t.Fatalf("authclienttest: authorize: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(back.String(), redirect) || back.Query().Get("state") != state || back.Query().Get("code") == "" {
		t.Fatalf("authclienttest: the code flow ended at %s with %d (Location %q), want %s with a code; is the browser signed in?\n%s",
			resp.Request.URL, resp.StatusCode, resp.Header.Get("Location"), redirect, body)
	}
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("authclienttest: code exchange: %v", err)
	}
	return tok
}

// syncBuffer is a log destination safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
