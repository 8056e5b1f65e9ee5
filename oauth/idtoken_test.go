package oauth_test

import (
	"context"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauthtest"
)

// flavours are the OpenID Connect providers, each against its fake.
var flavours = []struct {
	name   string
	flavor oauthtest.Flavor
}{
	{"google", oauthtest.Google},
	{"microsoft", oauthtest.Microsoft},
	{"linkedin", oauthtest.LinkedIn},
	{"oidc", oauthtest.Plain},
}

// TestIDTokenRefused: every OpenID Connect provider refuses an answer that cannot
// be trusted, and reports an unreachable provider as unavailable.
func TestIDTokenRefused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		fault oauthtest.Fault
		want  auth.Code
	}{
		{"wrong nonce", oauthtest.FaultWrongNonce, auth.CodeUnauthorized},
		{"no nonce", oauthtest.FaultNoNonce, auth.CodeUnauthorized},
		{"expired id token", oauthtest.FaultExpired, auth.CodeUnauthorized},
		{"wrong audience", oauthtest.FaultWrongAudience, auth.CodeUnauthorized},
		{"wrong issuer", oauthtest.FaultWrongIssuer, auth.CodeUnauthorized},
		{"unsigned id token", oauthtest.FaultUnsigned, auth.CodeUnauthorized},
		{"signed by a key not in the jwks", oauthtest.FaultUnknownKey, auth.CodeUnauthorized},
		{"token endpoint down", oauthtest.FaultTokenUnavailable, auth.CodeUnavailable},
	}
	for _, fl := range flavours {
		t.Run(fl.name, func(t *testing.T) {
			t.Parallel()
			fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: fl.flavor})
			p := fake.Provider(t, callbackURL)
			if p.Name() != fl.name {
				t.Fatalf("Name() = %q, want %q", p.Name(), fl.name)
			}
			// The good answer first, so the key set is cached: the bad ones must
			// fail on their own merits.
			mustSignIn(t, p, newRequest())
			for _, tc := range cases {
				if fl.flavor == oauthtest.LinkedIn && tc.fault == oauthtest.FaultNoNonce {
					continue // LinkedIn never sends one (its happy path is without)
				}
				t.Run(tc.name, func(t *testing.T) {
					fake.SetFault(tc.fault)
					defer fake.SetFault(oauthtest.FaultNone)
					prof, err := signIn(t, p, newRequest())
					if prof != nil {
						t.Errorf("profile = %+v, want none", prof)
					}
					wantError(t, p, err, tc.want)
				})
			}
		})
	}
}

// TestCodeRefused: a code works once, only with the PKCE verifier it was issued
// for, and only for the sign-in whose nonce it carries.
func TestCodeRefused(t *testing.T) {
	t.Parallel()
	for _, fl := range flavours {
		t.Run(fl.name, func(t *testing.T) {
			t.Parallel()
			// LinkedIn takes PKCE only when enabled for the app.
			fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: fl.flavor, LinkedInPKCE: true})
			p := fake.Provider(t, callbackURL)
			ctx := context.Background()
			cases := []struct {
				name string
				run  func(t *testing.T) error
			}{
				{"pkce verifier mismatch", func(t *testing.T) error {
					r := newRequest()
					code := authorize(t, p, r)
					r.Verifier = auth.NewToken()
					_, err := p.Exchange(ctx, code, r)
					return err
				}},
				{"code replayed", func(t *testing.T) error {
					r := newRequest()
					code := authorize(t, p, r)
					if _, err := p.Exchange(ctx, code, r); err != nil {
						t.Fatalf("first exchange: %v", err)
					}
					_, err := p.Exchange(ctx, code, r)
					return err
				}},
				{"nonce of another sign-in", func(t *testing.T) error {
					r := newRequest()
					code := authorize(t, p, r)
					r.Nonce = auth.NewToken()
					_, err := p.Exchange(ctx, code, r)
					return err
				}},
				{"unknown code", func(t *testing.T) error {
					_, err := p.Exchange(ctx, "forged-code", newRequest())
					return err
				}},
			}
			for _, tc := range cases {
				if fl.flavor == oauthtest.LinkedIn && tc.name == "nonce of another sign-in" {
					continue // LinkedIn does not echo the nonce: nothing to compare
				}
				t.Run(tc.name, func(t *testing.T) {
					wantError(t, p, tc.run(t), auth.CodeUnauthorized)
				})
			}
		})
	}
}

// TestProviderDown: a provider that cannot be reached fails the sign-in with
// CodeUnavailable, and a refused consent comes back as access_denied.
func TestProviderDown(t *testing.T) {
	t.Parallel()
	for _, fl := range flavours {
		t.Run(fl.name, func(t *testing.T) {
			t.Parallel()
			fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: fl.flavor, Fault: oauthtest.FaultDenied})
			p := fake.Provider(t, callbackURL)
			r := newRequest()
			q := oauthtest.Callback(t, p.AuthCodeURL(r))
			if q.Get("error") != "access_denied" || q.Get("state") != r.State || q.Has("code") {
				t.Errorf("denied consent: callback %v, want error=access_denied with the state and no code", q)
			}
			fake.SetFault(oauthtest.FaultNone)
			code := authorize(t, p, r)
			fake.Close()
			prof, err := p.Exchange(context.Background(), code, r)
			if prof != nil {
				t.Errorf("profile = %+v, want none", prof)
			}
			wantError(t, p, err, auth.CodeUnavailable)
		})
	}
}

// TestKeysUnavailable: when the provider's signing keys cannot be fetched (the
// first sign-in, or a new key), the sign-in fails as unavailable, not as a bad
// signature, and works again once they can.
func TestKeysUnavailable(t *testing.T) {
	t.Parallel()
	for _, fl := range flavours {
		t.Run(fl.name, func(t *testing.T) {
			t.Parallel()
			fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: fl.flavor, Fault: oauthtest.FaultJWKSUnavailable})
			p := fake.Provider(t, callbackURL)
			_, err := signIn(t, p, newRequest())
			wantError(t, p, err, auth.CodeUnavailable)
			fake.SetFault(oauthtest.FaultNone)
			mustSignIn(t, p, newRequest())
		})
	}
}
