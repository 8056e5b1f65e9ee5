package oauth_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/hestami/hestami/devidp"
	"github.com/hestami/hestami/oauth"
)

// TestDevIdentityProvider: the development identity provider is used through
// NewOIDC; a whole sign-in against the real one works.
func TestDevIdentityProvider(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	base := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	issuer, callback := base+"/dev/idp", base+"/auth/dev/callback"
	idp, err := devidp.New(devidp.Options{Dev: true, Issuer: issuer, ClientID: "hestami-auth", ClientSecret: "dev-secret", RedirectURIs: []string{callback}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/dev/idp/", http.StripPrefix("/dev/idp", idp.Handler()))
	p, err := oauth.NewOIDC(oauth.OIDCConfig{Name: "dev", DisplayName: "Development sign-in", Issuer: issuer,
		ClientID: "hestami-auth", ClientSecret: "dev-secret", RedirectURL: callback})
	if err != nil {
		t.Fatal(err)
	}

	r := newRequest()
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(p.AuthCodeURL(r))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("sign-in page: %s\n%s", resp.Status, page)
	}
	resp, err = browser.PostForm(issuer+"/authorize", url.Values{"request": {string(m[1])}, "user": {"dev-owner"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("state") != r.State || loc.Query().Get("code") == "" {
		t.Fatalf("back to %q (%v), want our callback with a code and the state", resp.Header.Get("Location"), err)
	}
	prof, err := p.Exchange(context.Background(), loc.Query().Get("code"), r)
	if err != nil {
		t.Fatal(err)
	}
	if prof.Provider != "dev" || prof.Subject != "dev-owner" || prof.Email != "owner@hestami.local" || !prof.EmailVerified {
		t.Errorf("profile = %+v, want dev-owner, owner@hestami.local verified", prof)
	}
}
