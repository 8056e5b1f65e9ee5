package authhttp_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
)

func TestFormsNeedTheirToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser()
	acct := b.mustSignIn(profile("alpha", randomID(), "csrf@example.com"), auth.TypeOwner)
	good := formFields(t, acct.body, "/signout")
	other := e.browser()
	otherAcct := other.mustSignIn(profile("alpha", randomID(), "csrf2@example.com"), auth.TypeOwner)
	foreign := formFields(t, otherAcct.body, "/signout") // a valid token, of another session

	for _, c := range []struct {
		name string
		form url.Values
	}{
		{"no token", url.Values{}},
		{"empty token", url.Values{"csrf": {""}}},
		{"garbage", url.Values{"csrf": {"not-a-token"}}},
		{"another session's token", foreign},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := b.post("/signout", c.form)
			if p.StatusCode != http.StatusForbidden || !strings.Contains(text(p.body), "Reload the page and try again") {
				t.Errorf("POST /signout: %d, want 403 saying to reload\n%s", p.StatusCode, text(p.body))
			}
			b.mustMe() // still signed in
		})
	}

	// The sign-in form's double-submit token.
	signin := e.browser()
	page := signin.get("/signin")
	form := formFields(t, page.body, "/signin/alpha")
	if p := signin.post("/signin/alpha", url.Values{"type": {"owner"}}); p.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in POST without token: %d, want 403", p.StatusCode)
	}
	fresh := e.browser() // the token, but not the cookie it belongs to
	if p := fresh.post("/signin/alpha", form); p.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in POST with another browser's token: %d, want 403", p.StatusCode)
	}

	if p := b.post("/signout", good); p.Request.URL.Path != "/signin" {
		t.Errorf("sign out with the right token ended at %s (%d)", p.Request.URL, p.StatusCode)
	}
}

func TestCrossOriginRequestsAreRefused(t *testing.T) {
	t.Parallel()
	const app = "https://app.hestami.example"
	e := newEnv(t, envOptions{returnOrigins: []string{app}})
	b := e.browser()
	acct := b.mustSignIn(profile("alpha", randomID(), "cors@example.com"), auth.TypeOwner)
	form := formFields(t, acct.body, "/signout") // the same token as every form of the session

	for _, c := range []struct {
		name, method, path string
		headers            map[string]string
		want               int
	}{
		{"form, cross-site fetch metadata", "POST", "/account/sessions/revoke-others", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"form, same-site other origin", "POST", "/account/sessions/revoke-others", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://evil.hestami.example"}, 403},
		{"form, old browser, foreign Origin", "POST", "/account/sessions/revoke-others", map[string]string{"Origin": "https://evil.example"}, 403},
		{"API, cross-site", "DELETE", "/api/v1/me/sessions", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"API, old browser, foreign Origin", "POST", "/api/v1/signout", map[string]string{"Origin": "https://evil.example"}, 403},
		{"API, the frontend's origin", "DELETE", "/api/v1/me/sessions", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": app}, 200},
		{"form, same origin", "POST", "/account/sessions/revoke-others", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": e.base}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, b.url(c.path), strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			p := b.do(req)
			if p.StatusCode != c.want {
				t.Fatalf("%d, want %d\n%s", p.StatusCode, c.want, p.body)
			}
			if c.want == 403 {
				if strings.HasPrefix(c.path, "/api/") {
					if !strings.Contains(p.body, `"code":"forbidden"`) {
						t.Errorf("API refusal is not a JSON error: %s", p.body)
					}
				} else if !strings.Contains(text(p.body), "came from another site") {
					t.Errorf("refusal page does not explain:\n%s", text(p.body))
				}
			}
			b.mustMe()
		})
	}
}
