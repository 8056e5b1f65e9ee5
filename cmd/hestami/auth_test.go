package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// authStack is hestami auth serve running in-process on a database of its own.
type authStack struct {
	URL    string // http://localhost:PORT
	Config string // its configuration file
}

// startAuth writes a configuration (the auth section plus extra YAML under auth:),
// starts hestami auth serve with it and waits until /readyz answers.
func startAuth(t *testing.T, extra string) *authStack {
	t.Helper()
	port, err := postgres.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &authStack{URL: fmt.Sprintf("http://localhost:%d", port), Config: filepath.Join(t.TempDir(), "hestami.yaml")}
	cfg := fmt.Sprintf("auth:\n  database_url: %q\n  public_url: %s\n  listen: 127.0.0.1:%d\n  secret: %q\n%s",
		pgtest.Database(t), s.URL, port, strings.Repeat("x", 40), extra)
	if err := os.WriteFile(s.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	var serveErr error
	go func() {
		defer close(done)
		getenv := func(k string) (string, bool) {
			if k == "HESTAMI_CONFIG" {
				return s.Config, true
			}
			return "", false
		}
		serveErr = NewProgram(strings.NewReader(""), io.Discard, t.Output(), getenv).Run(ctx, []string{"auth", "serve"})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if serveErr != nil && !t.Failed() {
			t.Errorf("auth serve: %v", serveErr)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("auth serve stopped: %v", serveErr)
		default:
		}
		resp, err := http.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("auth serve not ready after 60 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// formClient is a cookie-keeping HTTP client that fills in forms like a person.
type formClient struct {
	t *testing.T
	c *http.Client
}

func newFormClient(t *testing.T) *formClient {
	jar, _ := cookiejar.New(nil)
	return &formClient{t: t, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// get fetches u and returns the final URL and body; it fails the test unless the
// status is want.
func (b *formClient) get(u string, want int) (*url.URL, string) {
	b.t.Helper()
	resp, err := b.c.Get(u)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.finish(resp, want)
}

func (b *formClient) post(u string, form url.Values, want int) (*url.URL, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", (&url.URL{Scheme: req.URL.Scheme, Host: req.URL.Host}).String())
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.finish(resp, want)
}

func (b *formClient) finish(resp *http.Response, want int) (*url.URL, string) {
	b.t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		b.t.Fatalf("%s %s: status %d, want %d\n%s", resp.Request.Method, resp.Request.URL, resp.StatusCode, want, body)
	}
	return resp.Request.URL, string(body)
}

var (
	csrfRE    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	requestRE = regexp.MustCompile(`name="request" value="([^"]+)"`)
	actionRE  = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
)

// field returns the first match of re's group in page.
func field(t *testing.T, re *regexp.Regexp, page string) string {
	t.Helper()
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no %s in the page:\n%s", re, page)
	}
	return strings.ReplaceAll(m[1], "&amp;", "&")
}

// signInDev signs the browser in through the development identity provider as the
// test user subject and returns the page it ends on.
func (b *formClient) signInDev(s *authStack, subject string) (*url.URL, string) {
	b.t.Helper()
	_, page := b.get(s.URL+"/signin", http.StatusOK)
	u, page := b.post(s.URL+"/signin/dev", url.Values{"csrf": {field(b.t, csrfRE, page)}}, http.StatusOK)
	if !strings.HasPrefix(u.Path, "/dev/idp/") {
		b.t.Fatalf("sign-in went to %s, want the development identity provider", u)
	}
	action, err := u.Parse(field(b.t, actionRE, page))
	if err != nil {
		b.t.Fatal(err)
	}
	return b.post(action.String(), url.Values{"request": {field(b.t, requestRE, page)}, "user": {subject}}, http.StatusOK)
}

func (b *formClient) json(u string, want int, v any) {
	b.t.Helper()
	_, body := b.get(u, want)
	if v != nil {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			b.t.Fatalf("%s: %v\n%s", u, err, body)
		}
	}
}

// TestAuthServeDev runs the real auth serve wiring in development mode: the first
// administrator is created from the command line, claims the account by signing in
// through the development identity provider with the same (verified) email, gets
// the administrator's permissions, shows up in the audit log, and signs out.
func TestAuthServeDev(t *testing.T) {
	t.Parallel()
	s := startAuth(t, "  dev_mode: true\n")
	var created struct {
		ID    string   `json:"id"`
		Roles []string `json:"roles"`
	}
	out := mustRun(t, s.Config, "auth", "users", "create", "--type", "staff", "--role", "staff:admin", "--email", "Admin@hestami.local", "--json")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" {
		t.Fatalf("users create --json: %v\n%s", err, out)
	}
	if _, err := runCLI(t, s.Config, "auth", "users", "create", "--type", "staff", "--email", "admin@hestami.local"); err == nil {
		t.Error("a second account with the same email was created")
	}

	b := newFormClient(t)
	// A new staff member lands on the MFA setup wizard, with the deadline, and
	// may skip it until then.
	u, page := b.signInDev(s, "dev-admin")
	if u.Path != "/mfa/setup" || !strings.Contains(page, "Skip for now") {
		t.Fatalf("after sign-in: %s, want the MFA setup wizard with a way to skip it\n%s", u, page)
	}
	if _, page = b.get(s.URL+"/account", http.StatusOK); !strings.Contains(page, "admin@hestami.local") {
		t.Fatalf("account page without the account's email:\n%s", page)
	}
	var me struct {
		User struct {
			ID    string `json:"id"`
			Email string `json:"email"`
		} `json:"user"`
		Permissions []string `json:"permissions"`
	}
	b.json(s.URL+"/api/v1/me", http.StatusOK, &me)
	if me.User.ID != created.ID || !slices.Contains(me.Permissions, "users:manage") {
		t.Fatalf("/api/v1/me = %+v, want the account made on the command line (%s) with users:manage", me, created.ID)
	}
	var audit struct {
		Events []struct {
			Action  string `json:"action"`
			Outcome string `json:"outcome"`
		} `json:"events"`
	}
	_, body := b.get(s.URL+"/api/v1/audit", http.StatusOK)
	if err := json.Unmarshal([]byte(body), &audit); err != nil {
		t.Fatalf("/api/v1/audit: %v\n%s", err, body)
	}
	var actions []string
	for _, e := range audit.Events {
		actions = append(actions, e.Action+":"+e.Outcome)
	}
	for _, want := range []string{"user.create:success", "identity.claim:success"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit log %v lacks %s", actions, want)
		}
	}

	var rows []struct {
		Email string `json:"email"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, s.Config, "auth", "users", "list", "--json")), &rows); err != nil || len(rows) != 1 || rows[0].Email != "admin@hestami.local" {
		t.Errorf("users list --json = %+v (%v)", rows, err)
	}

	// The session cookie as it was before signing out stops working at once.
	pub, _ := url.Parse(s.URL)
	old := b.c.Jar.Cookies(pub)
	_, page = b.get(s.URL+"/account", http.StatusOK)
	b.post(s.URL+"/signout", url.Values{"csrf": {field(t, csrfRE, page)}}, http.StatusOK)
	b.json(s.URL+"/api/v1/me", http.StatusUnauthorized, nil)
	replay := newFormClient(t)
	replay.c.Jar.SetCookies(pub, old)
	replay.json(s.URL+"/api/v1/me", http.StatusUnauthorized, nil)
}

// TestAuthServeOIDCClient is what the Next.js frontend does, against the real
// wiring: discovery, authorization code with PKCE, state and nonce, the person
// signing in at the service, the code exchange, the ID token's checks, userinfo
// and a refresh.
func TestAuthServeOIDCClient(t *testing.T) {
	t.Parallel()
	const redirect = "http://localhost:3000/api/auth/callback/hestami"
	s := startAuth(t, `  dev_mode: true
  oidc:
    clients:
      - id: hestami-web
        name: Hestami web
        secret: web-client-secret-for-tests-0123456789abcdef
        redirect_uris: [`+redirect+`]
`)
	mustRun(t, s.Config, "auth", "users", "create", "--type", "staff", "--role", "staff:ops", "--email", "ops@hestami.local")
	b := newFormClient(t)
	b.signInDev(s, "dev-ops")

	ctx := oidc.ClientContext(t.Context(), &http.Client{Timeout: 30 * time.Second})
	issuer := s.URL + "/oidc"
	prov, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery at %s: %v", issuer, err)
	}
	conf := oauth2.Config{ClientID: "hestami-web", ClientSecret: "web-client-secret-for-tests-0123456789abcdef", Endpoint: prov.Endpoint(),
		RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess}}
	verifier, state, nonce := oauth2.GenerateVerifier(), "state-123", "nonce-456"
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce), oauth2.SetAuthURLParam("prompt", "consent"))
	// The browser (signed in already) ends at the frontend's callback: stop there.
	b.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := b.c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode/100 != 3 || !strings.HasPrefix(cb.String(), redirect) {
		t.Fatalf("authorize ended with %d Location %q, want a redirect to %s", resp.StatusCode, resp.Header.Get("Location"), redirect)
	}
	if cb.Query().Get("state") != state || cb.Query().Get("code") == "" {
		t.Fatalf("callback %s: want state %s and a code", cb, state)
	}
	tok, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := prov.Verifier(&oidc.Config{ClientID: "hestami-web"}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var claims struct {
		Nonce    string   `json:"nonce"`
		Email    string   `json:"email"`
		UserType string   `json:"hestami_user_type"`
		Roles    []string `json:"roles"`
		AMR      []string `json:"amr"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Nonce != nonce || claims.Email != "ops@hestami.local" || claims.UserType != "staff" || !slices.Contains(claims.Roles, "staff:ops") {
		t.Errorf("ID token claims %+v", claims)
	}
	info, err := prov.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || info.Email != "ops@hestami.local" || info.Subject != idt.Subject {
		t.Errorf("userinfo = %+v, %v", info, err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for offline_access")
	}
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	next, err := conf.TokenSource(ctx, &expired).Token()
	if err != nil || next.AccessToken == tok.AccessToken {
		t.Fatalf("refresh: %v (same access token: %t)", err, next != nil && next.AccessToken == tok.AccessToken)
	}
	// The API takes the access token as a bearer, for services acting for the
	// person (the backup daemon).
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+next.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var me struct {
		User struct {
			Email string `json:"email"`
		} `json:"user"`
		Permissions []string `json:"permissions"`
	}
	err = json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || me.User.Email != "ops@hestami.local" || !slices.Contains(me.Permissions, "backup:restore") {
		t.Errorf("GET /api/v1/me with the access token: %d %+v (%v); want ops@hestami.local with backup:restore", resp.StatusCode, me, err)
	}
	// A code works once.
	if _, err := conf.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier)); err == nil {
		t.Error("the code was redeemed twice")
	}
}
