// Package oauthtest runs fake identity providers on loopback for tests: an OpenID
// Connect provider that behaves like Google, Microsoft Entra ID, LinkedIn or a
// plain issuer (NewOIDC), and GitHub (NewGitHub).
//
// The fakes have no UI: their authorization endpoint redirects straight back to
// the redirect_uri with a code (as the user set with SetUser) or with
// error=access_denied. So in an end-to-end test an http.Client with a cookie jar
// that follows redirects goes browser → our service → fake → our callback and
// completes a sign-in. Their token endpoints check what real providers check
// (client credentials, redirect URI, the PKCE verifier against the S256
// challenge, codes used once), and knobs (Fault) make them misbehave the ways a
// client must survive: a wrong nonce, an expired, unsigned, mis-signed or
// mis-addressed ID token, a denied consent, an outage.
package oauthtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Fault is a way a fake misbehaves.
type Fault int

// The faults. The ID token ones apply to the OpenID Connect fake only.
const (
	FaultNone Fault = iota
	// FaultDenied: the authorization endpoint redirects back with
	// error=access_denied, as when the person refuses consent.
	FaultDenied
	// FaultWrongNonce: the ID token carries a nonce other than the one asked for.
	FaultWrongNonce
	// FaultNoNonce: the ID token carries no nonce.
	FaultNoNonce
	// FaultExpired: the ID token expired an hour ago.
	FaultExpired
	// FaultWrongAudience: the ID token is addressed to another client.
	FaultWrongAudience
	// FaultWrongIssuer: the ID token names another issuer (for the Microsoft
	// flavour, the v1 issuer https://sts.windows.net/{tid}/).
	FaultWrongIssuer
	// FaultWrongTenant (Microsoft): the issuer names another tenant than the
	// token's tid claim.
	FaultWrongTenant
	// FaultUnsigned: the ID token has alg none and no signature.
	FaultUnsigned
	// FaultUnknownKey: the ID token is signed, with the right key id, by a key
	// that is not in the JWKS.
	FaultUnknownKey
	// FaultTokenUnavailable: the token endpoint answers 503.
	FaultTokenUnavailable
	// FaultJWKSUnavailable: the JWKS endpoint answers 503.
	FaultJWKSUnavailable
	// FaultUserInfoOtherSubject: userinfo answers about another subject than the
	// ID token's.
	FaultUserInfoOtherSubject
)

// Callback requests authURL, an authorization URL pointing at a fake, without
// following the fake's redirect, and returns the query of the callback the fake
// redirected to: code and state, or error and state.
func Callback(t testing.TB, authURL string) url.Values {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatalf("oauthtest: GET %s: %v", authURL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("oauthtest: GET %s: %s, want a redirect back to the client", authURL, resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("oauthtest: redirect location: %v", err)
	}
	return loc.Query()
}

// Code is Callback's code; the test fails if the fake sent an error instead.
func Code(t testing.TB, authURL string) string {
	t.Helper()
	q := Callback(t, authURL)
	if q.Get("code") == "" {
		t.Fatalf("oauthtest: callback without code: %v", q)
	}
	return q.Get("code")
}

func randomToken() string { return rand.Text() }

// s256 is the PKCE S256 challenge of verifier (RFC 7636 4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// redirect sends the browser back to redirectURI with params added to its query.
func redirect(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

// bearer is the request's bearer (or GitHub's "token") access token.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	for _, p := range []string{"Bearer ", "bearer ", "token "} {
		if t, ok := strings.CutPrefix(h, p); ok {
			return t
		}
	}
	return ""
}

// splitScopes splits a space- or comma-separated scope list.
func splitScopes(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
}

// redactForm is a copy of f without the client secret.
func redactForm(f url.Values) url.Values {
	c := url.Values{}
	for k, v := range f {
		c[k] = append([]string(nil), v...)
	}
	if c.Has("client_secret") {
		c.Set("client_secret", "REDACTED")
	}
	return c
}
