package oauth_test

import (
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauth"
	"github.com/hestami/hestami/oauthtest"
)

func TestLinkedInAuthCodeURL(t *testing.T) {
	t.Parallel()
	for _, pkce := range []bool{false, true} {
		name := map[bool]string{false: "ordinary web app", true: "pkce enabled for the app"}[pkce]
		t.Run(name, func(t *testing.T) {
			fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.LinkedIn, LinkedInPKCE: pkce})
			p := fake.Provider(t, callbackURL)
			r := newRequest()
			_, q := query(t, p.AuthCodeURL(r))
			want := map[string]string{
				"response_type": "code", "client_id": fake.ClientID(), "redirect_uri": callbackURL,
				"scope": "openid profile email", "state": r.State, "nonce": r.Nonce,
				"code_challenge": "", "code_challenge_method": "",
			}
			if pkce {
				want["code_challenge"], want["code_challenge_method"] = challenge(r.Verifier), "S256"
			}
			for k, v := range want {
				if got := q.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if s := q.Get("scope"); strings.Contains(s, "r_liteprofile") || strings.Contains(s, "r_emailaddress") {
				t.Errorf("scope %q asks for the retired scopes", s)
			}
		})
	}
}

func TestLinkedInExchange(t *testing.T) {
	t.Parallel()
	for _, pkce := range []bool{false, true} {
		name := map[bool]string{false: "ordinary web app", true: "pkce enabled for the app"}[pkce]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.LinkedIn, LinkedInPKCE: pkce})
			p := fake.Provider(t, callbackURL)
			u := fake.User()
			prof := mustSignIn(t, p, newRequest())
			if prof.Provider != "linkedin" || prof.Subject != u.Subject || prof.Email != u.Email || !prof.EmailVerified ||
				prof.Name != u.Name || prof.AvatarURL != u.Picture {
				t.Errorf("profile = %+v, want sub %s, %s verified (LinkedIn sends \"true\"), %s", prof, u.Subject, u.Email, u.Name)
			}
			tr := fake.LastTokenRequest()
			if tr.Get("client_id") != fake.ClientID() || tr.Get("client_secret") == "" || tr.Has("basic_client_id") {
				t.Errorf("token request %v: want the client credentials in the body only", tr)
			}
			if tr.Has("code_verifier") != pkce {
				t.Errorf("token request has code_verifier: %v, want %v", tr.Has("code_verifier"), pkce)
			}
		})
	}
}

// TestLinkedInEmail: email_verified is believed as sent, in the ID token or in
// userinfo; no email is refused.
func TestLinkedInEmail(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		verified     bool
		email        string
		userinfoOnly bool
		want         auth.Code
	}{
		{"unverified", false, "ana.lima@example.com", false, ""},
		{"only in userinfo", true, "ana.lima@example.com", true, ""},
		{"only in userinfo, unverified", false, "ana.lima@example.com", true, ""},
		{"missing", false, "", false, auth.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := oauthtest.DefaultUser(oauthtest.LinkedIn)
			u.Email, u.EmailVerified = tc.email, tc.verified
			fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.LinkedIn, User: u, EmailInUserInfoOnly: tc.userinfoOnly})
			p := fake.Provider(t, callbackURL)
			prof, err := signIn(t, p, newRequest())
			if tc.want != "" {
				wantError(t, p, err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if prof.Email != tc.email || prof.EmailVerified != tc.verified {
				t.Errorf("email %q verified %v, want %q verified %v", prof.Email, prof.EmailVerified, tc.email, tc.verified)
			}
		})
	}
}

// TestLinkedInPKCEWithoutAppSupport: turning PKCE on for an app LinkedIn has not
// enabled it for is a configuration error on our side, reported as such.
func TestLinkedInPKCEWithoutAppSupport(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.LinkedIn})
	cfg := fake.LinkedInConfig(callbackURL)
	cfg.PKCE = true
	p, err := oauth.NewLinkedIn(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = signIn(t, p, newRequest())
	wantError(t, p, err, auth.CodeInternal)
}
