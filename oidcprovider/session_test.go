package oidcprovider_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oidcprovider"
)

// stopAtLogin is a browser that stops at the login page instead of signing in.
func (e *env) stopAtLogin(b *http.Client) *http.Client {
	c := *b
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/oidc-login" || req.URL.Host != strings.TrimPrefix(e.base, "http://") {
			return http.ErrUseLastResponse
		}
		return nil
	}
	return &c
}

// noFollow is b without following redirects.
func noFollow(b *http.Client) *http.Client {
	c := *b
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// startSignIn runs /authorize in b and returns the login URL it is sent to.
func startSignIn(t *testing.T, e *env, b *http.Client, authURL string) *url.URL {
	t.Helper()
	_, body, loc := visit(t, e.stopAtLogin(b), authURL)
	if loc == nil || loc.Path != "/oidc-login" {
		t.Fatalf("authorize: want a redirect to the login page, got %v: %s", loc, body)
	}
	return loc
}

// TestCallbackOnlyInTheBrowserThatStartedAndSignedIn: an attacker who starts a
// sign-in and sends the login link to a victim gets no code, and neither does
// the victim's browser, which did not start it.
func TestCallbackOnlyInTheBrowserThatStartedAndSignedIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	attacker, victim := e.browser(), e.browser()
	login := startSignIn(t, e, attacker, c.authURL(newFlow()))

	// The victim signs in at the attacker's link: the login page completes the
	// request and redirects to the callback, which refuses the victim's browser.
	resp, err := noFollow(victim).Get(login.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback, _ := resp.Location()
	if callback == nil || callback.Path != "/oidc/authorize/callback" {
		t.Fatalf("login page: want a redirect to the callback, got %s %v", resp.Status, callback)
	}
	r, body, loc := visit(t, victim, callback.String())
	if r.StatusCode != http.StatusForbidden || loc != nil {
		t.Fatalf("callback in the victim's browser: %s %v: %s", r.Status, loc, body)
	}
	// The attacker, who holds the binding cookie but not the secret in the
	// callback URL, gets nothing either.
	noSecret := *callback
	q := noSecret.Query()
	q.Del("k")
	noSecret.RawQuery = q.Encode()
	r, body, loc = visit(t, attacker, noSecret.String())
	if r.StatusCode != http.StatusForbidden || loc != nil {
		t.Fatalf("callback without the secret in the attacker's browser: %s %v: %s", r.Status, loc, body)
	}
	q.Set("k", auth.NewToken())
	noSecret.RawQuery = q.Encode()
	if r, body, _ = visit(t, attacker, noSecret.String()); r.StatusCode != http.StatusForbidden {
		t.Fatalf("callback with a wrong secret: %s: %s", r.Status, body)
	}

	// The same browser that starts and signs in gets the code, once.
	b := e.browser()
	f := newFlow()
	login = startSignIn(t, e, b, c.authURL(f))
	resp, err = noFollow(b).Get(login.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback, _ = resp.Location()
	_, _, loc = visit(t, b, callback.String())
	if loc == nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != f.state {
		t.Fatalf("callback in the right browser: %v", loc)
	}
	if _, err := c.exchange(loc.Query().Get("code"), f); err != nil {
		t.Fatalf("exchange: %v", err)
	}
	_, _, again := visit(t, b, callback.String())
	if again != nil && again.Query().Get("code") != "" {
		t.Fatalf("the callback gave a second code: %v", again)
	}
}

func TestCompleteRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	ctx := t.Context()
	_, sess, err := e.svc.StartSession(ctx, e.user, []string{"google"}, auth.Client{})
	if err != nil {
		t.Fatal(err)
	}
	pending := func(authURL string) string {
		return startSignIn(t, e, e.browser(), authURL).Query().Get("id")
	}

	if _, err := e.p.Complete(ctx, "no-such-request", sess, e.user); auth.ErrorCode(err) != auth.CodeNotFound {
		t.Fatalf("unknown request: %v, want CodeNotFound", err)
	}
	id := pending(c.authURL(newFlow()))
	lr, err := e.p.LoginRequest(ctx, id)
	if err != nil || lr.ClientName != "Hestami" || lr.ClientID != frontendID || !lr.SignInAfter.IsZero() || lr.PromptNone {
		t.Fatalf("LoginRequest = %+v, %v", lr, err)
	}
	if _, err := e.p.Complete(ctx, id, sess, e.user); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if _, err := e.p.Complete(ctx, id, sess, e.user); auth.ErrorCode(err) != auth.CodeNotFound {
		t.Fatalf("second Complete: %v, want CodeNotFound", err)
	}
	if _, err := e.p.LoginRequest(ctx, id); auth.ErrorCode(err) != auth.CodeNotFound {
		t.Fatalf("LoginRequest of a completed request: %v, want CodeNotFound", err)
	}

	id = pending(c.authURL(newFlow()))
	e.clock.Advance(11 * time.Minute)
	if _, err := e.p.Complete(ctx, id, sess, e.user); auth.ErrorCode(err) != auth.CodeNotFound {
		t.Fatalf("expired request: %v, want CodeNotFound", err)
	}

	// prompt=login wants a sign-in after the request started.
	_, sess, _ = e.svc.StartSession(ctx, e.user, []string{"google"}, auth.Client{})
	e.clock.Advance(time.Second)
	id = pending(c.authURL(newFlow()) + "&prompt=login")
	lr, err = e.p.LoginRequest(ctx, id)
	if err != nil || lr.SignInAfter.IsZero() {
		t.Fatalf("LoginRequest with prompt=login = %+v, %v", lr, err)
	}
	if _, err := e.p.Complete(ctx, id, sess, e.user); auth.ErrorCode(err) != auth.CodeUnauthorized {
		t.Fatalf("old session with prompt=login: %v, want CodeUnauthorized", err)
	}
	e.clock.Advance(time.Second)
	_, fresh, _ := e.svc.StartSession(ctx, e.user, []string{"google"}, auth.Client{})
	if _, err := e.p.Complete(ctx, id, fresh, e.user); err != nil {
		t.Fatalf("fresh session with prompt=login: %v", err)
	}

	// Fail answers the client with an error.
	f := newFlow()
	id = pending(c.authURL(f) + "&prompt=none")
	if lr, _ := e.p.LoginRequest(ctx, id); lr == nil || !lr.PromptNone {
		t.Fatalf("LoginRequest with prompt=none = %+v", lr)
	}
	to, err := e.p.Fail(ctx, id, "login_required")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(to)
	if !strings.HasPrefix(to, frontendRedirect+"?") || u.Query().Get("error") != "login_required" || u.Query().Get("state") != f.state {
		t.Fatalf("Fail = %s", to)
	}
	if _, err := e.p.Complete(ctx, id, fresh, e.user); auth.ErrorCode(err) != auth.CodeNotFound {
		t.Fatalf("Complete after Fail: %v, want CodeNotFound", err)
	}

	disabled := *e.user
	disabled.Disabled = true
	if _, err := e.p.Complete(ctx, pending(c.authURL(newFlow())), fresh, &disabled); auth.ErrorCode(err) != auth.CodeForbidden {
		t.Fatalf("disabled user: %v, want CodeForbidden", err)
	}
}

// TestEndSession: signing out through end_session revokes the client's tokens
// and the session they came from, then returns to the client.
func TestEndSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	tok, _ := c.signIn(e.browser())
	sess := e.lastSess.Load()
	other, _ := c.signIn(e.browser()) // another browser, another session

	var disc struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := c.provider.Claims(&disc); err != nil || disc.EndSession != e.issuer+"/end_session" {
		t.Fatalf("end_session_endpoint %q, %v", disc.EndSession, err)
	}
	q := url.Values{"id_token_hint": {tok.Extra("id_token").(string)}, "post_logout_redirect_uri": {frontendLogout}, "state": {"s1"}}
	resp, body, loc := visit(t, e.browser(), disc.EndSession+"?"+q.Encode())
	if loc == nil || loc.String() != frontendLogout+"?state=s1" {
		t.Fatalf("end_session: %s %v: %s", resp.Status, loc, body)
	}
	if _, err := c.refresh(tok.RefreshToken); oauthError(err) != "invalid_grant" {
		t.Fatalf("refresh after sign-out: %v, want invalid_grant", err)
	}
	if got, err := e.users.Session(t.Context(), sess.ID); err != nil || got.RevokedAt.IsZero() {
		t.Fatalf("session after sign-out: %+v, %v", got, err)
	}
	if _, err := c.refresh(other.RefreshToken); err != nil {
		t.Fatalf("the other browser's sign-in: %v", err)
	}

	// A post_logout_redirect_uri that is not registered is refused; a request
	// without id_token_hint signs nobody out.
	q.Set("post_logout_redirect_uri", "https://evil.example/")
	if _, _, loc := visit(t, e.browser(), disc.EndSession+"?"+q.Encode()); loc != nil && strings.Contains(loc.String(), "evil") {
		t.Fatalf("end_session redirected to %v", loc)
	}
	_, _, loc = visit(t, e.browser(), disc.EndSession+"?client_id="+frontendID+"&post_logout_redirect_uri="+url.QueryEscape(frontendLogout))
	if loc == nil || loc.String() != frontendLogout {
		t.Fatalf("end_session without hint: %v", loc)
	}
	if _, err := c.refresh(other.RefreshToken); err == nil {
		t.Fatal("the other sign-in's old refresh token still works after rotation")
	}
}

// TestRevocationEndpoint: revoking a refresh token ends its grant; a client
// cannot revoke another's tokens.
func TestRevocationEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	tok, _ := c.signIn(e.browser())
	var disc struct {
		Revocation string `json:"revocation_endpoint"`
	}
	if err := c.provider.Claims(&disc); err != nil {
		t.Fatal(err)
	}
	revoke := func(clientID, secret, token string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, disc.Revocation,
			strings.NewReader(url.Values{"token": {token}, "client_id": {clientID}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if secret != "" {
			req.SetBasicAuth(clientID, secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := revoke(publicID, "", tok.RefreshToken); code == http.StatusOK {
		t.Fatal("another client revoked the frontend's token")
	}
	if _, err := c.refresh(tok.RefreshToken); err != nil {
		t.Fatalf("refresh after another client's attempt: %v", err)
	}
	tok, _ = c.signIn(e.browser())
	if code := revoke(frontendID, frontendSecret, tok.RefreshToken); code != http.StatusOK {
		t.Fatalf("revocation: status %d", code)
	}
	if _, err := c.refresh(tok.RefreshToken); oauthError(err) != "invalid_grant" {
		t.Fatalf("refresh after revocation: %v, want invalid_grant", err)
	}
	if _, err := e.p.VerifyAccessToken(t.Context(), tok.AccessToken); err == nil {
		t.Fatal("the grant's access token still works")
	}
	if code := revoke(frontendID, frontendSecret, "never-issued"); code != http.StatusOK {
		t.Fatalf("revoking an unknown token: status %d, want 200 (RFC 7009)", code)
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	resp, err := http.Get(e.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Issuer     string   `json:"issuer"`
		Authorize  string   `json:"authorization_endpoint"`
		Token      string   `json:"token_endpoint"`
		Userinfo   string   `json:"userinfo_endpoint"`
		JWKS       string   `json:"jwks_uri"`
		PKCE       []string `json:"code_challenge_methods_supported"`
		Claims     []string `json:"claims_supported"`
		Algs       []string `json:"id_token_signing_alg_values_supported"`
		TokenAuths []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Issuer != e.issuer || d.Authorize != e.issuer+"/authorize" || d.Token != e.issuer+"/token" ||
		d.Userinfo != e.issuer+"/userinfo" || d.JWKS != e.issuer+"/keys" || !slices.Contains(d.PKCE, "S256") ||
		!slices.Contains(d.Claims, "hestami_user_type") || !slices.Contains(d.Claims, "roles") || !slices.Equal(d.Algs, []string{"RS256"}) ||
		!slices.Contains(d.TokenAuths, "client_secret_basic") {
		t.Fatalf("discovery: %+v", d)
	}
}

// TestSigningKey: the generated key is kept (a restart publishes the same key),
// and a key file replaces it.
func TestSigningKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	kid := func(p *oidcprovider.Provider) []string {
		t.Helper()
		srv := http.NewServeMux()
		srv.Handle("/oidc/", p.Handler())
		req, _ := http.NewRequest(http.MethodGet, e.issuer+"/keys", nil)
		rec := &recorder{header: http.Header{}}
		srv.ServeHTTP(rec, req)
		var jwks struct {
			Keys []struct {
				Kid string `json:"kid"`
				Alg string `json:"alg"`
			} `json:"keys"`
		}
		if err := json.Unmarshal(rec.body, &jwks); err != nil {
			t.Fatalf("jwks %s: %v", rec.body, err)
		}
		var out []string
		for _, k := range jwks.Keys {
			out = append(out, k.Alg+":"+k.Kid)
		}
		return out
	}
	first := kid(e.p)
	again, err := oidcprovider.New(t.Context(), e.cfg, e.store, e.users, e.clock.Now, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 1 || !slices.Equal(kid(again), first) {
		t.Fatalf("keys %v, after a restart %v", first, kid(again))
	}

	dir := t.TempDir()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	smallKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	for _, tc := range []struct {
		name, pem, wantAlg, wantErr string
	}{
		{"rsa pkcs8", string(pkcs8(rsaKey)), "RS256", ""},
		{"rsa pkcs1", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})), "RS256", ""},
		{"ec p-256", string(pkcs8(ecKey)), "ES256", ""},
		{"rsa 1024", string(pkcs8(smallKey)), "", "at least 2048"},
		{"not pem", "hello", "", "no PEM block"},
		{"certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "", "want PRIVATE KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".pem")
			if err := os.WriteFile(path, []byte(tc.pem), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := e.cfg
			cfg.SigningKeyFile = path
			p, err := oidcprovider.New(t.Context(), cfg, e.store, e.users, e.clock.Now, testLogger(t))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New: %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := kid(p); len(got) != 1 || !strings.HasPrefix(got[0], tc.wantAlg+":") || slices.Equal(got, first) {
				t.Fatalf("keys %v, want one %s key other than %v", got, tc.wantAlg, first)
			}
		})
	}
}

type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(s int)           { r.status = s }
func (r *recorder) Write(b []byte) (int, error) { r.body = append(r.body, b...); return len(b), nil }

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	login := func(id string) string { return "/oidc-login?id=" + id }
	good := oidcprovider.Client{ID: "app", Secret: frontendSecret, RedirectURIs: []string{"https://app.hestami.example/cb"}}
	for _, tc := range []struct {
		name    string
		cfg     oidcprovider.Config
		wantErr string
	}{
		{"http issuer on a public host", oidcprovider.Config{Issuer: "http://auth.hestami.example/oidc", LoginURL: login}, "must be https"},
		{"no issuer", oidcprovider.Config{LoginURL: login}, "issuer: empty"},
		{"issuer with query", oidcprovider.Config{Issuer: "https://auth.hestami.example/oidc?x=1", LoginURL: login}, "without query"},
		{"no login URL", oidcprovider.Config{Issuer: "https://auth.hestami.example/oidc"}, "login URL"},
		{"client without secret", oidcprovider.Config{Issuer: "https://a.example/oidc", LoginURL: login,
			Clients: []oidcprovider.Client{{ID: "app", RedirectURIs: good.RedirectURIs}}}, "no secret"},
		{"public client with secret", oidcprovider.Config{Issuer: "https://a.example/oidc", LoginURL: login,
			Clients: []oidcprovider.Client{{ID: "app", Public: true, Secret: frontendSecret, RedirectURIs: good.RedirectURIs}}}, "public client has no secret"},
		{"short secret", oidcprovider.Config{Issuer: "https://a.example/oidc", LoginURL: login,
			Clients: []oidcprovider.Client{{ID: "app", Secret: "short", RedirectURIs: good.RedirectURIs}}}, "at least 32"},
		{"bad secret hash", oidcprovider.Config{Issuer: "https://a.example/oidc", LoginURL: login,
			Clients: []oidcprovider.Client{{ID: "app", SecretHash: "abc", RedirectURIs: good.RedirectURIs}}}, "64 hex digits"},
		{"http redirect on a public host", oidcprovider.Config{Issuer: "https://a.example/oidc", LoginURL: login,
			Clients: []oidcprovider.Client{{ID: "app", Secret: frontendSecret, RedirectURIs: []string{"http://app.hestami.example/cb"}}}}, "want https"},
		{"redirect with fragment", oidcprovider.Config{Issuer: "https://a.example/oidc", LoginURL: login,
			Clients: []oidcprovider.Client{{ID: "app", Secret: frontendSecret, RedirectURIs: []string{"https://app.hestami.example/cb#x"}}}}, "without a fragment"},
		{"no redirect", oidcprovider.Config{Issuer: "https://a.example/oidc", LoginURL: login,
			Clients: []oidcprovider.Client{{ID: "app", Secret: frontendSecret}}}, "redirect_uris: empty"},
		{"duplicate client", oidcprovider.Config{Issuer: "https://a.example/oidc", LoginURL: login,
			Clients: []oidcprovider.Client{good, good}}, "registered twice"},
		{"scopes without openid", oidcprovider.Config{Issuer: "https://a.example/oidc", LoginURL: login,
			Clients: []oidcprovider.Client{{ID: "app", Secret: frontendSecret, RedirectURIs: good.RedirectURIs, Scopes: []string{"email"}}}}, "openid missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := oidcprovider.New(t.Context(), tc.cfg, nil, nil, time.Now, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: %v, want an error with %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), frontendSecret) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}

// TestNewAcceptsLoopbackHTTP: http issuers work on localhost and 127.0.0.1
// (development), and a client secret may be given as its hash.
func TestNewAcceptsLoopbackHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, iss := range []string{"http://127.0.0.1:8080/oidc", "http://localhost:8080/oidc/", "https://auth.hestami.example/oidc"} {
		cfg := e.cfg
		cfg.Issuer = iss
		cfg.Clients = []oidcprovider.Client{{ID: "app", SecretHash: auth.HashToken(frontendSecret), RedirectURIs: []string{"https://app.hestami.example/cb"}}}
		p, err := oidcprovider.New(t.Context(), cfg, e.store, e.users, e.clock.Now, testLogger(t))
		if err != nil {
			t.Fatalf("%s: %v", iss, err)
		}
		if p.Issuer() != strings.TrimSuffix(iss, "/") {
			t.Fatalf("Issuer() = %q for %q", p.Issuer(), iss)
		}
	}
}

// TestSignInWithECKey: an ECDSA P-256 key file signs ES256 tokens that the
// client, userinfo, VerifyAccessToken and end_session all accept.
func TestSignInWithECKey(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(key)
	path := filepath.Join(t.TempDir(), "ec.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *oidcprovider.Config) { c.SigningKeyFile = path })
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	tok, _ := c.signIn(e.browser())
	if !strings.HasPrefix(tok.Extra("id_token").(string), "eyJhbGciOiJFUzI1NiI") { // {"alg":"ES256"
		t.Fatalf("ID token header: %.40s", tok.Extra("id_token"))
	}
	if _, err := c.userinfo(tok); err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if _, err := e.p.VerifyAccessToken(t.Context(), tok.AccessToken); err != nil {
		t.Fatalf("VerifyAccessToken: %v", err)
	}
	q := url.Values{"id_token_hint": {tok.Extra("id_token").(string)}, "post_logout_redirect_uri": {frontendLogout}}
	if _, _, loc := visit(t, e.browser(), e.issuer+"/end_session?"+q.Encode()); loc == nil || loc.String() != frontendLogout {
		t.Fatalf("end_session: %v", loc)
	}
	if _, err := c.refresh(tok.RefreshToken); oauthError(err) != "invalid_grant" {
		t.Fatalf("refresh after end_session: %v, want invalid_grant", err)
	}
}
