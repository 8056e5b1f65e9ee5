package oauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauthtest"
)

// callbackURL is our callback as the providers see it. Nothing listens there:
// oauthtest.Callback stops at the fake's redirect.
const callbackURL = "http://localhost:8080/auth/callback"

func newRequest() auth.AuthCodeRequest {
	return auth.AuthCodeRequest{State: auth.NewToken(), Nonce: auth.NewToken(), Verifier: auth.NewToken()}
}

// challenge is the PKCE S256 challenge of verifier, computed here rather than by
// the library under test.
func challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorize runs r's authorization at the fake and returns the code, checking the
// state came back unchanged.
func authorize(t *testing.T, p auth.Provider, r auth.AuthCodeRequest) string {
	t.Helper()
	q := oauthtest.Callback(t, p.AuthCodeURL(r))
	if q.Get("state") != r.State {
		t.Fatalf("callback state = %q, want %q", q.Get("state"), r.State)
	}
	if q.Get("code") == "" {
		t.Fatalf("callback without code: %v", q)
	}
	return q.Get("code")
}

// signIn is a whole sign-in: authorize, then exchange the code.
func signIn(t *testing.T, p auth.Provider, r auth.AuthCodeRequest) (*auth.Profile, error) {
	t.Helper()
	return p.Exchange(context.Background(), authorize(t, p, r), r)
}

// mustSignIn is signIn that must succeed.
func mustSignIn(t *testing.T, p auth.Provider, r auth.AuthCodeRequest) *auth.Profile {
	t.Helper()
	prof, err := signIn(t, p, r)
	if err != nil {
		t.Fatalf("sign in with %s: %v", p.Name(), err)
	}
	return prof
}

// wantError checks err is an *auth.Error with code, whose message is for people:
// it names the provider and leaks no internal detail.
func wantError(t *testing.T, p auth.Provider, err error, code auth.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s", code)
	}
	var ae *auth.Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want an *auth.Error with code %s", err, err, code)
	}
	if ae.Code != code {
		t.Fatalf("code = %s, want %s (err: %v)", ae.Code, code, err)
	}
	msg := auth.ErrorMessage(err)
	if !strings.Contains(msg, p.DisplayName()) {
		t.Errorf("message %q does not name %s", msg, p.DisplayName())
	}
	for _, leak := range []string{"oidc:", "oauth2:", "http://", "GET "} {
		if strings.Contains(msg, leak) {
			t.Errorf("message %q shows internal detail %q", msg, leak)
		}
	}
}

// query parses u and returns its query, failing the test on a bad URL.
func query(t *testing.T, u string) (*url.URL, url.Values) {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatalf("parse %q: %v", u, err)
	}
	return pu, pu.Query()
}

// offline is an http.Client that fails the test if it is used.
func offline(t *testing.T) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("unexpected request to %s", r.URL)
		return nil, errors.New("offline")
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
