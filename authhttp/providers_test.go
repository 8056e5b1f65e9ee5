package authhttp_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauthtest"
)

// fakes are oauthtest's Google, Microsoft and GitHub.
type fakes struct {
	google, microsoft *oauthtest.OIDC
	github            *oauthtest.GitHub
}

func newFakes(t *testing.T) (*fakes, func(func(string) string) []auth.Provider) {
	f := &fakes{
		google:    oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Google}),
		microsoft: oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Microsoft}),
		github:    oauthtest.NewGitHub(t, oauthtest.GitHubOptions{}),
	}
	return f, func(redirect func(string) string) []auth.Provider {
		return []auth.Provider{
			f.google.Provider(t, redirect("google")),
			f.microsoft.Provider(t, redirect("microsoft")),
			f.github.Provider(t, redirect("github"), ""),
		}
	}
}

// TestRealProviders signs in through package oauth's Google, Microsoft and
// GitHub providers against oauthtest's fakes: the real protocols (state, PKCE,
// nonce, verified ID tokens) behind the pages.
func TestRealProviders(t *testing.T) {
	t.Parallel()
	f, providers := newFakes(t)
	e := newEnv(t, envOptions{providers: providers})

	// Sign up with Google.
	b := e.browser()
	p := b.get("/signin?type=owner")
	p = b.submit(p, "/signin/google", nil)
	if p.StatusCode != http.StatusOK || p.Request.URL.Path != "/account" {
		t.Fatalf("Google sign-up ended at %s with %d:\n%s", p.Request.URL, p.StatusCode, text(p.body))
	}
	id := b.mustMe()
	if auth := f.google.LastAuthorization(); auth.Get("code_challenge_method") != "S256" || auth.Get("nonce") == "" || auth.Get("state") == "" {
		t.Errorf("Google authorization request %v: want state, nonce and an S256 challenge", auth)
	}

	// Link GitHub from the account page; it then signs in to the same account.
	p = b.submit(p, "/account/link/github", nil)
	if !strings.Contains(text(p.body), "The account is linked") {
		t.Fatalf("linking GitHub: %d at %s\n%s", p.StatusCode, p.Request.URL, text(p.body))
	}
	gh := e.browser()
	p = gh.submit(gh.get("/signin"), "/signin/github", nil)
	if got := gh.mustMe(); got != id {
		t.Errorf("GitHub signs in user %s, want %s", got, id)
	}

	// Microsoft without xms_edov: the email is not verified, so it finds no
	// account (and links none).
	ms := e.browser()
	p = ms.submit(ms.get("/signin"), "/signin/microsoft", nil)
	if p.StatusCode != http.StatusNotFound {
		t.Errorf("Microsoft with an unverified email: %d\n%s", p.StatusCode, text(p.body))
	}
	ids, _ := e.store.Identities(t.Context(), id)
	if len(ids) != 2 {
		t.Errorf("%d identities, want google and github", len(ids))
	}
}

// TestProviderFailures: what a misbehaving provider does shows as a clear page
// with the right status, and signs nobody in.
func TestProviderFailures(t *testing.T) {
	t.Parallel()
	f, providers := newFakes(t)
	e := newEnv(t, envOptions{providers: providers})
	for _, c := range []struct {
		name   string
		fault  oauthtest.Fault
		status int
		says   string
	}{
		{"wrong nonce", oauthtest.FaultWrongNonce, http.StatusUnauthorized, "Google"},
		{"unsigned ID token", oauthtest.FaultUnsigned, http.StatusUnauthorized, "Google"},
		{"expired ID token", oauthtest.FaultExpired, http.StatusUnauthorized, "Google"},
		{"consent refused", oauthtest.FaultDenied, http.StatusForbidden, "You cancelled the sign-in with Google"},
		{"token endpoint down", oauthtest.FaultTokenUnavailable, http.StatusServiceUnavailable, "Google"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.google.SetFault(c.fault)
			b := e.browser()
			p := b.submit(b.get("/signin?type=owner"), "/signin/google", nil)
			if p.StatusCode != c.status || !strings.Contains(text(p.body), c.says) {
				t.Errorf("%d, want %d saying %q:\n%s", p.StatusCode, c.status, c.says, text(p.body))
			}
			checkPage(t, c.name, p)
			if _, status := b.me(); status != http.StatusUnauthorized {
				t.Errorf("signed in anyway (%d)", status)
			}
		})
	}
	f.google.SetFault(oauthtest.FaultNone)
	if users, _ := e.store.UsersByEmail(t.Context(), oauthtest.DefaultUser(oauthtest.Google).Email); len(users) != 0 {
		t.Errorf("a failed sign-in created an account: %+v", users[0])
	}
}
