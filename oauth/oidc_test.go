package oauth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauth"
	"github.com/hestami/hestami/oauthtest"
)

// TestOIDCDiscovery: the generic provider finds its endpoints through the
// issuer's discovery document at the first sign-in.
func TestOIDCDiscovery(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewOIDC(t, oauthtest.Options{})
	p, err := oauth.NewOIDC(fake.OIDCConfig("dev", callbackURL))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "dev" || p.DisplayName() != "Test IdP" {
		t.Errorf("name %q display %q", p.Name(), p.DisplayName())
	}
	r := newRequest()
	u, q := query(t, p.AuthCodeURL(r))
	if got := u.Scheme + "://" + u.Host + u.Path; got != fake.URL()+"/authorize" {
		t.Errorf("endpoint = %s, want the discovered one", got)
	}
	for k, v := range map[string]string{"scope": "openid email profile", "state": r.State, "nonce": r.Nonce,
		"code_challenge": challenge(r.Verifier), "code_challenge_method": "S256"} {
		if got := q.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	prof, err := p.Exchange(context.Background(), oauthtest.Code(t, p.AuthCodeURL(r)), r)
	if err != nil {
		t.Fatal(err)
	}
	if want := fake.User(); prof.Provider != "dev" || prof.Subject != want.Subject || prof.Email != want.Email || !prof.EmailVerified {
		t.Errorf("profile = %+v, want %s, %s verified", prof, want.Subject, want.Email)
	}
	if tr := fake.LastTokenRequest(); tr.Get("basic_client_id") != fake.ClientID() || tr.Has("client_secret") {
		t.Errorf("token request %v: want client_secret_basic, the OpenID Connect default", tr)
	}
}

// TestOIDCDiscoveryFails: an issuer that cannot be discovered (down, or naming
// another issuer) does not stop the provider from being built; its sign-ins fail
// as unavailable, starting with a redirect back to our callback.
func TestOIDCDiscoveryFails(t *testing.T) {
	t.Parallel()
	down := oauthtest.NewOIDC(t, oauthtest.Options{})
	down.Close()
	other := oauthtest.NewOIDC(t, oauthtest.Options{})
	cases := []struct {
		name   string
		issuer string
	}{
		{"issuer down", down.URL()},
		{"issuer names another", other.URL() + "/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := oauth.NewOIDC(oauth.OIDCConfig{Name: "dev", Issuer: tc.issuer, ClientID: "test-client", ClientSecret: "test-secret", RedirectURL: callbackURL})
			if err != nil {
				t.Fatalf("NewOIDC needed the issuer: %v", err)
			}
			r := newRequest()
			u, q := query(t, p.AuthCodeURL(r))
			if got := u.Scheme + "://" + u.Host + u.Path; got != callbackURL || q.Get("error") != "temporarily_unavailable" || q.Get("state") != r.State {
				t.Errorf("AuthCodeURL = %s, want our callback with error=temporarily_unavailable and the state", u)
			}
			_, err = p.Exchange(context.Background(), "some-code", r)
			wantError(t, p, err, auth.CodeUnavailable)
		})
	}
}

// TestDefaultsNeedNoNetwork: the real providers are built and send browsers to
// their real authorization endpoints without any request.
func TestDefaultsNeedNoNetwork(t *testing.T) {
	t.Parallel()
	client := offline(t)
	cases := []struct {
		name     string
		build    func() (auth.Provider, error)
		endpoint string
	}{
		{"google", func() (auth.Provider, error) {
			return oauth.NewGoogle(oauth.GoogleConfig{ClientID: "c", ClientSecret: "s", RedirectURL: callbackURL, HTTPClient: client})
		}, oauth.GoogleAuthURL},
		{"microsoft", func() (auth.Provider, error) {
			return oauth.NewMicrosoft(oauth.MicrosoftConfig{ClientID: "c", ClientSecret: "s", RedirectURL: callbackURL, HTTPClient: client})
		}, "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"},
		{"microsoft single tenant", func() (auth.Provider, error) {
			return oauth.NewMicrosoft(oauth.MicrosoftConfig{ClientID: "c", ClientSecret: "s", RedirectURL: callbackURL, HTTPClient: client, Tenant: oauthtest.TenantID})
		}, "https://login.microsoftonline.com/" + oauthtest.TenantID + "/oauth2/v2.0/authorize"},
		{"microsoft us government", func() (auth.Provider, error) {
			return oauth.NewMicrosoft(oauth.MicrosoftConfig{ClientID: "c", ClientSecret: "s", RedirectURL: callbackURL, HTTPClient: client, Authority: "https://login.microsoftonline.us/", Tenant: "organizations"})
		}, "https://login.microsoftonline.us/organizations/oauth2/v2.0/authorize"},
		{"linkedin", func() (auth.Provider, error) {
			return oauth.NewLinkedIn(oauth.LinkedInConfig{ClientID: "c", ClientSecret: "s", RedirectURL: callbackURL, HTTPClient: client})
		}, oauth.LinkedInAuthURL},
		{"github", func() (auth.Provider, error) {
			return oauth.NewGitHub(oauth.GitHubConfig{ClientID: "c", ClientSecret: "s", RedirectURL: callbackURL, HTTPClient: client})
		}, oauth.GitHubAuthURL},
		{"oidc", func() (auth.Provider, error) {
			return oauth.NewOIDC(oauth.OIDCConfig{Name: "okta", Issuer: "https://idp.example", ClientID: "c", RedirectURL: callbackURL, HTTPClient: client})
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			if tc.endpoint == "" {
				return // discovery waits for the first sign-in
			}
			if u := p.AuthCodeURL(newRequest()); !strings.HasPrefix(u, tc.endpoint+"?") {
				t.Errorf("AuthCodeURL = %s, want %s", u, tc.endpoint)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		build func() error
	}{
		{"oidc without issuer", func() error {
			_, err := oauth.NewOIDC(oauth.OIDCConfig{Name: "dev", ClientID: "c", RedirectURL: callbackURL})
			return err
		}},
		{"oidc name not a key", func() error {
			_, err := oauth.NewOIDC(oauth.OIDCConfig{Name: "Dev IdP", Issuer: "https://idp.example", ClientID: "c", RedirectURL: callbackURL})
			return err
		}},
		{"google without client id", func() error {
			_, err := oauth.NewGoogle(oauth.GoogleConfig{RedirectURL: callbackURL})
			return err
		}},
		{"linkedin without redirect", func() error {
			_, err := oauth.NewLinkedIn(oauth.LinkedInConfig{ClientID: "c"})
			return err
		}},
		{"github organization with a slash", func() error {
			_, err := oauth.NewGitHub(oauth.GitHubConfig{ClientID: "c", RedirectURL: callbackURL, Organization: "hestami/team"})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.build(); err == nil {
				t.Error("accepted")
			}
		})
	}
}
