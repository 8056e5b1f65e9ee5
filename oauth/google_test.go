package oauth_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauth"
	"github.com/hestami/hestami/oauthtest"
)

const calendarScope = "https://www.googleapis.com/auth/calendar.readonly"

func TestGoogleAuthCodeURL(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Google})
	cases := []struct {
		name    string
		offline bool
		scopes  []string
		hint    string
		want    map[string]string // "" means absent
	}{
		{"sign-in", false, nil, "", map[string]string{
			"scope": "openid email profile", "include_granted_scopes": "true", "access_type": "", "login_hint": "",
		}},
		{"extra scope asked incrementally", false, []string{calendarScope}, "", map[string]string{
			"scope": "openid email profile " + calendarScope, "include_granted_scopes": "true", "access_type": "",
		}},
		{"offline access configured", true, nil, "", map[string]string{"access_type": "offline"}},
		{"login hint when linking", false, nil, "ana.lima@example.com", map[string]string{"login_hint": "ana.lima@example.com"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fake.GoogleConfig(callbackURL)
			cfg.OfflineAccess = tc.offline
			p, err := oauth.NewGoogle(cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := newRequest()
			r.Scopes, r.LoginHint = tc.scopes, tc.hint
			u, q := query(t, p.AuthCodeURL(r))
			if got := u.Scheme + "://" + u.Host + u.Path; got != fake.URL()+"/authorize" {
				t.Errorf("endpoint = %s, want the fake's /authorize", got)
			}
			want := map[string]string{
				"response_type": "code", "client_id": fake.ClientID(), "redirect_uri": callbackURL,
				"state": r.State, "nonce": r.Nonce, "code_challenge": challenge(r.Verifier), "code_challenge_method": "S256",
			}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				if got := q.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestGoogleExchange(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Google})
	p := fake.Provider(t, callbackURL)
	u := fake.User()
	prof := mustSignIn(t, p, newRequest())
	want := auth.Profile{Provider: "google", Subject: u.Subject, Email: u.Email, EmailVerified: true, Name: u.Name, AvatarURL: u.Picture}
	if prof.Provider != want.Provider || prof.Subject != want.Subject || prof.Email != want.Email ||
		prof.EmailVerified != want.EmailVerified || prof.Name != want.Name || prof.AvatarURL != want.AvatarURL {
		t.Errorf("profile = %+v, want %+v", prof, want)
	}
	if !slices.Equal(prof.Scopes, []string{"openid", "email", "profile"}) {
		t.Errorf("scopes = %v, want openid email profile", prof.Scopes)
	}
}

// TestGoogleIncrementalScopes: a scope asked for once is in the profile's scopes,
// and stays in them at later sign-ins that do not ask for it (Google includes the
// scopes granted before).
func TestGoogleIncrementalScopes(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Google})
	p := fake.Provider(t, callbackURL)
	if prof := mustSignIn(t, p, newRequest()); slices.Contains(prof.Scopes, calendarScope) {
		t.Fatalf("scopes before asking = %v, want no calendar", prof.Scopes)
	}
	r := newRequest()
	r.Scopes = []string{calendarScope}
	if prof := mustSignIn(t, p, r); !slices.Contains(prof.Scopes, calendarScope) {
		t.Errorf("scopes after asking for calendar = %v, want it granted", prof.Scopes)
	}
	if prof := mustSignIn(t, p, newRequest()); !slices.Contains(prof.Scopes, calendarScope) || !slices.Contains(prof.Scopes, "email") {
		t.Errorf("scopes at the next plain sign-in = %v, want calendar still granted, and email", prof.Scopes)
	}
}

// TestGoogleEmail: Google's email_verified is passed on as it is; no email at all
// is refused; an email only in userinfo is found there.
func TestGoogleEmail(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		user         func(*oauthtest.Claims)
		userinfoOnly bool
		wantCode     auth.Code
		wantVerified bool
	}{
		{"verified", func(c *oauthtest.Claims) {}, false, "", true},
		{"unverified", func(c *oauthtest.Claims) { c.EmailVerified = false }, false, "", false},
		{"missing", func(c *oauthtest.Claims) { c.Email = "" }, false, auth.CodeInvalid, false},
		{"only in userinfo", func(c *oauthtest.Claims) {}, true, "", true},
		{"only in userinfo, unverified", func(c *oauthtest.Claims) { c.EmailVerified = false }, true, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := oauthtest.DefaultUser(oauthtest.Google)
			tc.user(&u)
			fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Google, User: u, EmailInUserInfoOnly: tc.userinfoOnly})
			p := fake.Provider(t, callbackURL)
			prof, err := signIn(t, p, newRequest())
			if tc.wantCode != "" {
				wantError(t, p, err, tc.wantCode)
				if !strings.Contains(auth.ErrorMessage(err), "email") {
					t.Errorf("message %q does not say the email is missing", auth.ErrorMessage(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if prof.Email != u.Email || prof.EmailVerified != tc.wantVerified {
				t.Errorf("email = %q verified %v, want %q verified %v", prof.Email, prof.EmailVerified, u.Email, tc.wantVerified)
			}
		})
	}
	t.Run("userinfo about someone else", func(t *testing.T) {
		t.Parallel()
		fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Google, EmailInUserInfoOnly: true, Fault: oauthtest.FaultUserInfoOtherSubject})
		p := fake.Provider(t, callbackURL)
		_, err := signIn(t, p, newRequest())
		wantError(t, p, err, auth.CodeUnauthorized)
	})
}
