package oidcprovider_test

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oidcprovider"
)

// TestSignInLikeAuthJS runs what the frontend does, end to end: discovery, the
// code flow with PKCE, state and nonce, the ID token checked against the JWKS,
// userinfo, a refresh, and the access token checked by an API.
func TestSignInLikeAuthJS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.methods = []string{"google", "otp"}
	c := e.rp(frontendID, frontendSecret, frontendRedirect)

	tok, id := c.signIn(e.browser())
	if id.Subject != e.user.ID || id.Issuer != e.issuer || !slices.Equal(id.Audience, []string{frontendID}) {
		t.Fatalf("ID token sub %q iss %q aud %v, want %q %q [%s]", id.Subject, id.Issuer, id.Audience, e.user.ID, e.issuer, frontendID)
	}
	var cl idClaims
	if err := id.Claims(&cl); err != nil {
		t.Fatal(err)
	}
	sess := e.lastSess.Load()
	want := idClaims{Email: "olivia@example.com", EmailVerified: true, Name: "Olivia Owner", UserType: "owner", Roles: []string{"owner"},
		AuthTime: sess.AuthTime.Unix(), AMR: []string{"google", "otp"}, ACR: "urn:hestami:acr:mfa", SID: cl.SID}
	if cl.SID == "" || !equalClaims(cl, want) {
		t.Fatalf("ID token claims\n got %+v\nwant %+v (and a sid)", cl, want)
	}
	if tok.RefreshToken == "" || tok.AccessToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("token response: access %t refresh %t expiry %v", tok.AccessToken != "", tok.RefreshToken != "", tok.Expiry)
	}

	ui, err := c.userinfo(tok)
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uc idClaims
	if err := ui.Claims(&uc); err != nil {
		t.Fatal(err)
	}
	if ui.Subject != e.user.ID || ui.Email != "olivia@example.com" || uc.UserType != "owner" || !slices.Equal(uc.Roles, []string{"owner"}) {
		t.Fatalf("userinfo sub %q email %q claims %+v", ui.Subject, ui.Email, uc)
	}

	var atClaims struct {
		Sub      string   `json:"sub"`
		ClientID string   `json:"client_id"`
		Scope    string   `json:"scope"`
		UserType string   `json:"hestami_user_type"`
		Roles    []string `json:"roles"`
		SID      string   `json:"sid"`
	}
	if payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok.AccessToken, ".")[1]); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(payload, &atClaims); err != nil {
		t.Fatal(err)
	}
	if atClaims.Sub != e.user.ID || atClaims.ClientID != frontendID || atClaims.Scope != "openid profile email offline_access" ||
		atClaims.UserType != "owner" || !slices.Equal(atClaims.Roles, []string{"owner"}) || atClaims.SID != cl.SID {
		t.Fatalf("access token claims %+v", atClaims)
	}

	at, err := e.p.VerifyAccessToken(t.Context(), tok.AccessToken)
	if err != nil {
		t.Fatalf("VerifyAccessToken: %v", err)
	}
	if at.UserID != e.user.ID || at.ClientID != frontendID || !slices.Contains(at.Scopes, "email") ||
		at.AuthTime.Sub(sess.AuthTime).Abs() > time.Millisecond || !slices.Equal(at.AMR, []string{"google", "otp"}) || !at.Expiry.After(e.clock.Now()) ||
		at.GrantID != cl.SID || at.SessionID != sess.ID {
		t.Fatalf("VerifyAccessToken = %+v", at)
	}

	next, err := c.refresh(tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if next.RefreshToken == "" || next.RefreshToken == tok.RefreshToken || next.AccessToken == tok.AccessToken {
		t.Fatal("refresh did not rotate the tokens")
	}
	id2 := c.verifyID(next)
	var cl2 idClaims
	if err := id2.Claims(&cl2); err != nil {
		t.Fatal(err)
	}
	if id2.Subject != e.user.ID || !equalClaims(cl2, want) {
		t.Fatalf("refreshed ID token sub %q claims\n got %+v\nwant %+v", id2.Subject, cl2, want)
	}
	if _, err := e.p.VerifyAccessToken(t.Context(), next.AccessToken); err != nil {
		t.Fatalf("VerifyAccessToken after refresh: %v", err)
	}
}

func equalClaims(a, b idClaims) bool {
	return a.Email == b.Email && a.EmailVerified == b.EmailVerified && a.Name == b.Name && a.UserType == b.UserType &&
		slices.Equal(a.Roles, b.Roles) && a.AuthTime == b.AuthTime && slices.Equal(a.AMR, b.AMR) && a.ACR == b.ACR && a.SID == b.SID
}

func TestPublicClientSignsInWithPKCE(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(publicID, "", publicRedirect)
	tok, _ := c.signIn(e.browser())
	if _, err := c.refresh(tok.RefreshToken); err != nil {
		t.Fatalf("refresh: %v", err)
	}
}

func TestVerifyAccessTokenRefusesTampering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	tok, _ := c.signIn(e.browser())

	parts := strings.Split(tok.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["roles"] = []string{"staff:admin"}
	forged, _ := json.Marshal(claims)
	other := e.rp(publicID, "", publicRedirect)
	otherTok, _ := other.signIn(e.browser())

	for name, token := range map[string]string{
		"payload changed":            parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2],
		"signature changed":          parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"signature of another token": parts[0] + "." + parts[1] + "." + strings.Split(otherTok.AccessToken, ".")[2],
		"alg none":                   base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".",
		"empty":                      "",
		"garbage":                    "not-a-token",
	} {
		if _, err := e.p.VerifyAccessToken(t.Context(), token); auth.ErrorCode(err) != auth.CodeUnauthorized {
			t.Errorf("%s: VerifyAccessToken error %v, want CodeUnauthorized", name, err)
		}
	}
	if _, err := e.p.VerifyAccessToken(t.Context(), tok.AccessToken); err != nil {
		t.Fatalf("the real token: %v", err)
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[3] == 'A' {
		b[3] = 'B'
	} else {
		b[3] = 'A'
	}
	return string(b)
}

func TestWrongVerifierRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	f := newFlow()
	code := c.code(e.browser(), f)
	wrong := f
	wrong.verifier = newFlow().verifier
	if _, err := c.exchange(code, wrong); oauthError(err) != "invalid_grant" {
		t.Fatalf("exchange with the wrong verifier: %v, want invalid_grant", err)
	}
	noVerifier, err := c.conf.Exchange(c.ctx, code)
	if err == nil {
		t.Fatalf("exchange without a verifier worked: %v", noVerifier)
	}
}

func TestCodeReplayRefusedAndRevokesItsTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	f := newFlow()
	code := c.code(e.browser(), f)
	tok, err := c.exchange(code, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.exchange(code, f); oauthError(err) != "invalid_grant" {
		t.Fatalf("second exchange of the code: %v, want invalid_grant", err)
	}
	if _, err := e.p.VerifyAccessToken(t.Context(), tok.AccessToken); auth.ErrorCode(err) != auth.CodeUnauthorized {
		t.Fatalf("access token after the code replay: %v, want CodeUnauthorized", err)
	}
	if _, err := c.refresh(tok.RefreshToken); oauthError(err) != "invalid_grant" {
		t.Fatalf("refresh after the code replay: %v, want invalid_grant", err)
	}
	if _, err := c.userinfo(tok); err == nil {
		t.Fatal("userinfo answered after the code replay")
	}
	events, err := e.users.AuditEvents(t.Context(), auth.AuditFilter{Action: "oidc.code_replay"})
	if err != nil || len(events) != 1 || events[0].ActorID != e.user.ID {
		t.Fatalf("audit of the replay: %v %+v", err, events)
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	pub := e.rp(publicID, "", publicRedirect)
	f := newFlow()
	withParams := func(raw string, set map[string]string, del ...string) string {
		u, _ := url.Parse(raw)
		q := u.Query()
		for k, v := range set {
			q.Set(k, v)
		}
		for _, k := range del {
			q.Del(k)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for _, tc := range []struct {
		name string
		url  string
		// wantError is the error the client's redirect URI gets; empty: no
		// redirect to the client at all (the redirect URI is not trusted).
		wantError string
	}{
		{"unregistered redirect_uri", withParams(c.authURL(f), map[string]string{"redirect_uri": "https://evil.example/cb"}), ""},
		{"redirect_uri of another client", withParams(c.authURL(f), map[string]string{"redirect_uri": publicRedirect}), ""},
		{"redirect_uri with extra path", withParams(c.authURL(f), map[string]string{"redirect_uri": frontendRedirect + "/x"}), ""},
		{"unknown client", withParams(c.authURL(f), map[string]string{"client_id": "nobody"}), ""},
		{"public client without PKCE", withParams(pub.authURL(f), nil, "code_challenge", "code_challenge_method"), "invalid_request"},
		{"confidential client without PKCE", withParams(c.authURL(f), nil, "code_challenge", "code_challenge_method"), "invalid_request"},
		{"plain PKCE", withParams(pub.authURL(f), map[string]string{"code_challenge_method": "plain", "code_challenge": f.verifier}), "invalid_request"},
		{"no openid scope", withParams(c.authURL(f), map[string]string{"scope": "email"}), "invalid_scope"},
		{"implicit flow", withParams(c.authURL(f), map[string]string{"response_type": "id_token"}), "unauthorized_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.loginCalls.Load()
			resp, body, loc := visit(t, e.browser(), tc.url)
			if e.loginCalls.Load() != before {
				t.Fatal("the browser was sent to sign in")
			}
			if tc.wantError == "" {
				if loc != nil && !strings.HasPrefix(loc.String(), e.base) {
					t.Fatalf("redirected to %s", loc)
				}
				if resp.StatusCode < 400 {
					t.Fatalf("status %s, want an error page: %s", resp.Status, body)
				}
				return
			}
			var q url.Values
			if loc != nil {
				q = loc.Query()
				if loc.Fragment != "" { // errors of implicit requests go in the fragment
					q, _ = url.ParseQuery(loc.Fragment)
				}
			}
			if loc == nil || strings.HasPrefix(loc.String(), e.base) || q.Get("error") != tc.wantError || q.Get("state") != f.state {
				t.Fatalf("got %s %v, want a redirect to the client with error=%s and its state: %s", resp.Status, loc, tc.wantError, body)
			}
		})
	}
}

func TestRefreshTokenRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	first, _ := c.signIn(e.browser())
	second, err := c.refresh(first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	// The old token, used again, is refused, and (as it leaked) the whole grant
	// ends: the newest refresh token and access token stop working too.
	if _, err := c.refresh(first.RefreshToken); oauthError(err) != "invalid_grant" {
		t.Fatalf("old refresh token: %v, want invalid_grant", err)
	}
	if _, err := c.refresh(second.RefreshToken); oauthError(err) != "invalid_grant" {
		t.Fatalf("refresh token of a revoked grant: %v, want invalid_grant", err)
	}
	if _, err := e.p.VerifyAccessToken(t.Context(), second.AccessToken); auth.ErrorCode(err) != auth.CodeUnauthorized {
		t.Fatalf("access token of a revoked grant: %v", err)
	}
	// Another sign-in is not affected.
	other, _ := c.signIn(e.browser())
	if _, err := c.refresh(other.RefreshToken); err != nil {
		t.Fatalf("another grant's refresh: %v", err)
	}
}

func TestRefreshEndsWithTheSession(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(e *env, sess *auth.Session)
	}{
		{"session revoked", func(e *env, sess *auth.Session) {
			if err := e.svc.SignOut(e.t.Context(), sess, auth.Client{}); err != nil {
				e.t.Fatal(err)
			}
		}},
		{"user disabled", func(e *env, sess *auth.Session) {
			u := *e.user
			u.Disabled = true
			if err := e.users.UpdateUser(e.t.Context(), &u); err != nil {
				e.t.Fatal(err)
			}
		}},
		{"session expired", func(e *env, sess *auth.Session) { e.clock.Advance(8 * 24 * time.Hour) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c := e.rp(frontendID, frontendSecret, frontendRedirect)
			tok, _ := c.signIn(e.browser())
			tc.end(e, e.lastSess.Load())
			if _, err := c.refresh(tok.RefreshToken); oauthError(err) != "invalid_grant" {
				t.Fatalf("refresh: %v, want invalid_grant", err)
			}
			if _, err := c.userinfo(tok); err == nil {
				t.Fatal("userinfo still answers")
			}
			if _, err := e.p.VerifyAccessToken(t.Context(), tok.AccessToken); auth.ErrorCode(err) != auth.CodeUnauthorized {
				t.Fatalf("VerifyAccessToken: %v, want CodeUnauthorized", err)
			}
		})
	}
}

func TestAccessTokenExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *oidcprovider.Config) { c.AccessTokenTTL = 5 * time.Minute })
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	tok, _ := c.signIn(e.browser())
	e.clock.Advance(4 * time.Minute)
	if _, err := e.p.VerifyAccessToken(t.Context(), tok.AccessToken); err != nil {
		t.Fatalf("after 4 minutes: %v", err)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.p.VerifyAccessToken(t.Context(), tok.AccessToken); auth.ErrorCode(err) != auth.CodeUnauthorized {
		t.Fatalf("after 5 minutes: %v, want CodeUnauthorized", err)
	}
	if _, err := c.refresh(tok.RefreshToken); err != nil {
		t.Fatalf("refresh after the access token expired: %v", err)
	}
}

func TestCodeExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	f := newFlow()
	code := c.code(e.browser(), f)
	e.clock.Advance(61 * time.Second)
	if _, err := c.exchange(code, f); oauthError(err) != "invalid_grant" {
		t.Fatalf("exchange of an expired code: %v, want invalid_grant", err)
	}
}

func TestWrongClientSecretRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	f := newFlow()
	code := c.code(e.browser(), f)
	c.conf.ClientSecret = frontendSecret + "x"
	if _, err := c.exchange(code, f); oauthError(err) != "invalid_client" {
		t.Fatalf("exchange with a wrong secret: %v, want invalid_client", err)
	}
}

// TestRefreshReuseGrace: with a grace, two refreshes with one token at once
// (two requests of the frontend) both work; a reuse after the grace still
// revokes the grant.
func TestRefreshReuseGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *oidcprovider.Config) { c.RefreshReuseGrace = 10 * time.Second })
	c := e.rp(frontendID, frontendSecret, frontendRedirect)
	first, _ := c.signIn(e.browser())
	a, err := c.refresh(first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Second)
	b, err := c.refresh(first.RefreshToken)
	if err != nil {
		t.Fatalf("second refresh within the grace: %v", err)
	}
	if _, err := c.refresh(a.RefreshToken); err != nil {
		t.Fatalf("the first branch after a reuse within the grace: %v", err)
	}
	e.clock.Advance(6 * time.Second)
	if _, err := c.refresh(first.RefreshToken); oauthError(err) != "invalid_grant" {
		t.Fatalf("reuse after the grace: %v, want invalid_grant", err)
	}
	if _, err := c.refresh(b.RefreshToken); oauthError(err) != "invalid_grant" {
		t.Fatalf("refresh token of the revoked grant: %v, want invalid_grant", err)
	}
}
