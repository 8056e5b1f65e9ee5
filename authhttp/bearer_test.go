package authhttp_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
	"github.com/hestami/hestami/oidcprovider"
)

const (
	daemonClient   = "backup-daemon"
	daemonSecret   = "daemon-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
	daemonRedirect = "http://localhost:9187/callback"
)

var daemonClients = []oidcprovider.Client{{ID: daemonClient, Name: "Backup daemon", Secret: daemonSecret, RedirectURIs: []string{daemonRedirect}}}

// codeFlow runs the authorization code flow with PKCE for the daemon's client
// in the browser b (signed in already) and returns the tokens.
func (b *browser) codeFlow() *oauth2.Token {
	b.t.Helper()
	ctx := b.t.Context()
	prov, err := oidc.NewProvider(ctx, b.e.base+"/oidc")
	if err != nil {
		b.t.Fatalf("discovery: %v", err)
	}
	conf := oauth2.Config{ClientID: daemonClient, ClientSecret: daemonSecret, Endpoint: prov.Endpoint(), RedirectURL: daemonRedirect,
		Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
	state, verifier := auth.NewToken(), oauth2.GenerateVerifier()
	b.stopAt = daemonRedirect
	defer func() { b.stopAt = "" }()
	p := b.get(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(auth.NewToken())))
	back, err := url.Parse(p.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(back.String(), daemonRedirect+"?") || back.Query().Get("state") != state {
		b.t.Fatalf("the code flow ended at %s (%d, Location %q), want the daemon's callback with the state", p.Request.URL, p.StatusCode, p.Header.Get("Location"))
	}
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		b.t.Fatalf("code exchange: %v", err)
	}
	return tok
}

// bearer calls the API with an access token and no cookie, as a service does.
func (e *env) bearer(method, path, token string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestBearerTokenSignsInTheAPI: an access token from a real code flow reaches
// the API as the session it came from, with that session's methods and second
// factor; a state-changing call needs no form token or Origin (no cookie is
// involved); the second-factor routes refuse it.
func TestBearerTokenSignsInTheAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{oidcClients: daemonClients})
	b := e.browser()
	b.mustSignIn(profile("alpha", randomID(), "bea@example.com"), auth.TypeOwner)
	browserSession := auth.HashToken(b.cookie(authhttp.SessionCookie))
	tok := b.codeFlow()

	resp, body := e.bearer("GET", "/api/v1/me/assurance", tok.AccessToken)
	var as struct {
		Methods []string   `json:"methods"`
		AAL     int        `json:"aal"`
		MFAAt   *time.Time `json:"mfa_at"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &as) != nil || len(as.Methods) != 1 || as.Methods[0] != "alpha" || as.AAL != 1 || as.MFAAt != nil {
		t.Fatalf("GET /api/v1/me/assurance with the token: %d %s; want the session's assurance (alpha, aal 1)", resp.StatusCode, body)
	}
	var me struct {
		User struct {
			ID    string `json:"id"`
			Email string `json:"email"`
		} `json:"user"`
		Session struct {
			ID      string `json:"id"`
			Current bool   `json:"current"`
		} `json:"session"`
	}
	resp, body = e.bearer("GET", "/api/v1/me", tok.AccessToken)
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &me) != nil || me.User.ID != b.mustMe() || me.User.Email != "bea@example.com" ||
		me.Session.ID != browserSession || !me.Session.Current {
		t.Fatalf("GET /api/v1/me with the token: %d %s; want the browser's user and session %s", resp.StatusCode, body, browserSession)
	}
	if resp, body := e.bearer("DELETE", "/api/v1/me/sessions", tok.AccessToken); resp.StatusCode != http.StatusOK {
		t.Errorf("DELETE /api/v1/me/sessions with the token, no Origin, no form token: %d %s; want 200", resp.StatusCode, body)
	}
	for _, path := range []string{"/api/v1/mfa/challenge/verify", "/api/v1/me/factors/totp", "/api/v1/me/backup-codes", "/api/v1/me/recovery"} {
		if resp, body := e.bearer("POST", path, tok.AccessToken); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "in the browser") {
			t.Errorf("POST %s with the token: %d %s; want 403 (second factors are handled in the browser)", path, resp.StatusCode, body)
		}
	}
	// Pages are for browsers: a token signs no page in.
	req, _ := http.NewRequest("GET", e.base+"/account", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noFollow.Do(req); err != nil || resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
		t.Errorf("GET /account with the token: %v %v; want the sign-in page", resp, err)
	}
}

// TestBearerTokenRefused: tokens that do not sign anyone in get 401 with
// WWW-Authenticate (RFC 6750), and a cookie does not rescue them.
func TestBearerTokenRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{oidcClients: daemonClients})
	b := e.browser()
	b.mustSignIn(profile("alpha", randomID(), "rita@example.com"), auth.TypeOwner)
	tok := b.codeFlow()
	parts := strings.Split(tok.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("the access token is not a JWT: %q", tok.AccessToken)
	}
	flip := func(s string) string { // another valid base64url character at the middle
		i := len(s) / 2
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	for name, token := range map[string]string{
		"payload changed":   parts[0] + "." + flip(parts[1]) + "." + parts[2],
		"signature changed": parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"no signature":      parts[0] + "." + parts[1] + ".",
		"not a JWT":         auth.NewToken(),
		"empty":             "",
	} {
		resp, body := e.bearer("GET", "/api/v1/me", token)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: %d %s (WWW-Authenticate %q); want 401 invalid_token", name, resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// The header wins over a valid cookie in the same request.
	req, _ := http.NewRequest("GET", e.base+"/api/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+parts[0]+"."+flip(parts[1])+"."+parts[2])
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if p := b.do(req); p.StatusCode != http.StatusUnauthorized {
		t.Errorf("a tampered token beside a valid cookie: %d; want 401", p.StatusCode)
	}
	if resp, body := e.bearer("GET", "/api/v1/me", tok.AccessToken); resp.StatusCode != http.StatusOK {
		t.Fatalf("the real token: %d %s", resp.StatusCode, body)
	}

	// Signing out of the session the token came from ends the token at once.
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))
	if resp, body := e.bearer("GET", "/api/v1/me/assurance", tok.AccessToken); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the token of a signed-out session: %d %s; want 401", resp.StatusCode, body)
	}
}

// TestBearerTokenFollowsTheSession: a second factor verified later rotates the
// session, which ends the token issued before; signing in to the application
// again gives a token that carries the fresh second factor.
func TestBearerTokenFollowsTheSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{oidcClients: daemonClients})
	b := e.browser()
	b.mustSignIn(profile("alpha", randomID(), "stan@example.com"), auth.TypeOwner)
	before := b.codeFlow()

	sess, u, err := e.svc.Authenticate(t.Context(), b.cookie(authhttp.SessionCookie), auth.Client{})
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := e.svc.ElevateSession(t.Context(), sess, u, auth.MethodTOTP, auth.Client{IP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	b.setCookie(authhttp.SessionCookie, token)
	if resp, _ := e.bearer("GET", "/api/v1/me", before.AccessToken); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the token of the session before the second factor: %d; want 401", resp.StatusCode)
	}
	after := b.codeFlow()
	resp, body := e.bearer("GET", "/api/v1/me", after.AccessToken)
	var me struct {
		Session struct {
			Methods []string   `json:"methods"`
			MFAAt   *time.Time `json:"mfa_at"`
		} `json:"session"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &me) != nil || me.Session.MFAAt == nil ||
		time.Since(*me.Session.MFAAt) > time.Minute || len(me.Session.Methods) != 2 {
		t.Fatalf("GET /api/v1/me with the new token: %d %s; want the session's fresh second factor (mfa_at, methods alpha and otp)", resp.StatusCode, body)
	}
}

// TestBearerTokenNotAccepted: without Options.AccessTokens a bearer header
// signs nobody in.
func TestBearerTokenNotAccepted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	if resp, body := e.bearer("GET", "/api/v1/me", auth.NewToken()); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "does not accept access tokens") {
		t.Errorf("a bearer token where none are accepted: %d %s; want 401 saying so", resp.StatusCode, body)
	}
}

// TestBearerTokenOfARememberedDevice: a person whose remembered device skipped
// the challenge at sign-in holds a session without a second factor; the token
// the application got from that browser works on the API like the browser
// (the device's trust travels with the token), while a step-up still wants a
// fresh factor.
func TestBearerTokenOfARememberedDevice(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{oidcClients: daemonClients})
	b, prof, secret, _ := m.enrolOwner(t, "remy@example.com")
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))
	p := b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/challenge")
	mustAt(t, b.submit(p, "/mfa/challenge", url.Values{"code": {m.code(t, secret, 1)}, "remember": {"on"}}), "/account")
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))
	mustAt(t, b.signIn(prof, "", ""), "/account") // remembered: no challenge
	tok := b.codeFlow()

	if resp, body := m.bearer("GET", "/api/v1/me/identities", tok.AccessToken); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/me/identities with the token of a remembered device's session: %d %s; want 200", resp.StatusCode, body)
	}
	resp, body := m.bearer("GET", "/api/v1/me", tok.AccessToken)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"action":"allow"`) {
		t.Errorf("GET /api/v1/me with the token: %d %s; want the MFA action allow", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("POST", m.base+"/api/v1/stepup", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	if p := b.do(req); p.StatusCode != http.StatusOK || !strings.Contains(p.body, `"satisfied":false`) {
		t.Errorf("POST /api/v1/stepup with the token: %d %s; want not satisfied (a remembered device is no fresh factor)", p.StatusCode, p.body)
	}
}
