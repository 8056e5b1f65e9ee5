package oauth_test

import (
	"context"
	"slices"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauth"
	"github.com/hestami/hestami/oauthtest"
)

func TestGitHubAuthCodeURL(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewGitHub(t, oauthtest.GitHubOptions{})
	cases := []struct {
		name, org, hint string
		want            map[string]string
	}{
		{"no organization", "", "", map[string]string{"scope": "read:user user:email", "login": ""}},
		{"organization restriction", "hestami", "", map[string]string{"scope": "read:user user:email read:org"}},
		{"login hint", "", "analima", map[string]string{"login": "analima"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := fake.Provider(t, callbackURL, tc.org)
			if p.Name() != "github" || p.DisplayName() != "GitHub" {
				t.Errorf("name %q display %q", p.Name(), p.DisplayName())
			}
			r := newRequest()
			r.LoginHint = tc.hint
			u, q := query(t, p.AuthCodeURL(r))
			if got := u.Scheme + "://" + u.Host + u.Path; got != fake.URL()+"/login/oauth/authorize" {
				t.Errorf("endpoint = %s", got)
			}
			want := map[string]string{
				"client_id": fake.Config("", "").ClientID, "redirect_uri": callbackURL, "state": r.State,
				"code_challenge": challenge(r.Verifier), "code_challenge_method": "S256", "nonce": "",
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

func TestGitHubExchange(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewGitHub(t, oauthtest.GitHubOptions{})
	p := fake.Provider(t, callbackURL, "hestami")
	u := oauthtest.DefaultGitHubUser()
	prof := mustSignIn(t, p, newRequest())
	want := auth.Profile{Provider: "github", Subject: "5812345", Email: "ana.lima@example.com", EmailVerified: true, Name: u.Name, AvatarURL: u.AvatarURL}
	if prof.Provider != want.Provider || prof.Subject != want.Subject || prof.Email != want.Email ||
		prof.EmailVerified != want.EmailVerified || prof.Name != want.Name || prof.AvatarURL != want.AvatarURL {
		t.Errorf("profile = %+v, want %+v", prof, want)
	}
	if !slices.Equal(prof.Scopes, []string{"read:user", "user:email", "read:org"}) {
		t.Errorf("scopes = %v, want GitHub's comma-separated grant split", prof.Scopes)
	}
	h := fake.LastAPIHeader()
	if h.Get("Accept") != "application/vnd.github+json" || h.Get("User-Agent") != "hestami" {
		t.Errorf("API request headers Accept %q User-Agent %q", h.Get("Accept"), h.Get("User-Agent"))
	}
	tr := fake.LastTokenRequest()
	if tr.Get("code_verifier") == "" || tr.Get("client_secret") == "" {
		t.Errorf("token request %v: want the PKCE verifier and the client secret", tr)
	}

	// Renamed account, same id: same subject; no display name: the login.
	u.Login, u.Name = "ana-lima", ""
	fake.SetUser(u)
	again := mustSignIn(t, p, newRequest())
	if again.Subject != prof.Subject || again.Name != "ana-lima" {
		t.Errorf("after rename: subject %q name %q, want %q and the login", again.Subject, again.Name, prof.Subject)
	}
}

// TestGitHubRefused: what GitHub sign-in refuses, and how.
func TestGitHubRefused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		org   string
		user  func(*oauthtest.GitHubUser)
		fault oauthtest.Fault
		run   func(t *testing.T, p auth.Provider) error // default: a sign-in
		want  auth.Code
	}{
		{name: "primary email unverified", user: func(u *oauthtest.GitHubUser) {
			u.Emails = []oauthtest.GitHubEmail{{Email: "ana@old.example", Verified: true}, {Email: "ana.lima@example.com", Primary: true}}
		}, want: auth.CodeInvalid},
		{name: "no email", user: func(u *oauthtest.GitHubUser) { u.Emails = nil }, want: auth.CodeInvalid},
		{name: "not a member of the organization", org: "hestami", user: func(u *oauthtest.GitHubUser) { u.Orgs = nil }, want: auth.CodeForbidden},
		{name: "member of another organization", org: "hestami", user: func(u *oauthtest.GitHubUser) { u.Orgs = map[string]string{"other": "active"} }, want: auth.CodeForbidden},
		{name: "invitation pending", org: "hestami", user: func(u *oauthtest.GitHubUser) { u.Orgs = map[string]string{"hestami": "pending"} }, want: auth.CodeForbidden},
		{name: "token endpoint down", fault: oauthtest.FaultTokenUnavailable, want: auth.CodeUnavailable},
		{name: "pkce verifier mismatch", run: func(t *testing.T, p auth.Provider) error {
			r := newRequest()
			code := authorize(t, p, r)
			r.Verifier = auth.NewToken()
			_, err := p.Exchange(context.Background(), code, r)
			return err
		}, want: auth.CodeUnauthorized},
		{name: "code replayed", run: func(t *testing.T, p auth.Provider) error {
			r := newRequest()
			code := authorize(t, p, r)
			if _, err := p.Exchange(context.Background(), code, r); err != nil {
				t.Fatalf("first exchange: %v", err)
			}
			_, err := p.Exchange(context.Background(), code, r)
			return err
		}, want: auth.CodeUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := oauthtest.DefaultGitHubUser()
			if tc.user != nil {
				tc.user(&u)
			}
			fake := oauthtest.NewGitHub(t, oauthtest.GitHubOptions{User: u, Fault: tc.fault})
			p := fake.Provider(t, callbackURL, tc.org)
			var err error
			if tc.run != nil {
				err = tc.run(t, p)
			} else {
				var prof *auth.Profile
				if prof, err = signIn(t, p, newRequest()); prof != nil {
					t.Errorf("profile = %+v, want none", prof)
				}
			}
			wantError(t, p, err, tc.want)
		})
	}
}

func TestGitHubDown(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewGitHub(t, oauthtest.GitHubOptions{Fault: oauthtest.FaultDenied})
	p := fake.Provider(t, callbackURL, "")
	r := newRequest()
	if q := oauthtest.Callback(t, p.AuthCodeURL(r)); q.Get("error") != "access_denied" || q.Get("state") != r.State {
		t.Errorf("denied consent: callback %v, want error=access_denied and the state", q)
	}
	fake.SetFault(oauthtest.FaultNone)
	code := authorize(t, p, r)
	fake.Close()
	_, err := p.Exchange(context.Background(), code, r)
	wantError(t, p, err, auth.CodeUnavailable)
}

func TestGitHubWrongSecret(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewGitHub(t, oauthtest.GitHubOptions{})
	cfg := fake.Config(callbackURL, "")
	cfg.ClientSecret = "stale-secret"
	p, err := oauth.NewGitHub(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = signIn(t, p, newRequest())
	wantError(t, p, err, auth.CodeInternal)
}
