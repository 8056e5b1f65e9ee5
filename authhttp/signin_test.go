package authhttp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/html"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
)

// me returns the signed-in user's id as /api/v1/me says, or "" with the status.
func (b *browser) me() (string, int) {
	b.t.Helper()
	p := b.api(http.MethodGet, "/api/v1/me", "")
	if p.StatusCode != http.StatusOK {
		return "", p.StatusCode
	}
	var out struct {
		User struct {
			ID   string
			Type auth.UserType
		}
		Session struct {
			Methods []string
		}
	}
	if err := json.Unmarshal([]byte(p.body), &out); err != nil {
		b.t.Fatalf("/api/v1/me: %v\n%s", err, p.body)
	}
	return out.User.ID, p.StatusCode
}

func (b *browser) mustMe() string {
	b.t.Helper()
	id, status := b.me()
	if status != http.StatusOK {
		b.t.Fatalf("/api/v1/me: status %d, want 200 (signed in)", status)
	}
	return id
}

func TestSignUpThenSignInAgainIsTheSameUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	prof := profile("alpha", randomID(), "olga@example.com")

	b := e.browser()
	p := b.mustSignIn(prof, auth.TypeOwner)
	if !strings.Contains(text(p.body), "Property owner") {
		t.Errorf("account page does not show the account type:\n%s", text(p.body))
	}
	first := b.mustMe()
	u, err := e.store.User(t.Context(), first)
	if err != nil || u.Type != auth.TypeOwner || u.Email != "olga@example.com" {
		t.Fatalf("stored user %+v, %v; want an owner with the provider's email", u, err)
	}

	// Another browser, signing in (no type) with the same identity.
	b2 := e.browser()
	b2.mustSignIn(prof, "")
	if again := b2.mustMe(); again != first {
		t.Errorf("second sign-in is user %s, want %s", again, first)
	}
	users, _ := e.store.UsersByEmail(t.Context(), "olga@example.com")
	if len(users) != 1 {
		t.Errorf("%d users with the email, want 1", len(users))
	}
}

func TestSessionCookieAttributes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser()
	p := b.mustSignIn(profile("alpha", randomID(), "c@example.com"), auth.TypeProvider)
	seen := map[string]bool{}
	for _, c := range b.setCookies(p) {
		seen[c.Name] = true
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s: Secure=%t HttpOnly=%t SameSite=%v Path=%q Domain=%q; want Secure, HttpOnly, Lax, Path=/, no Domain",
				c.Name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain)
		}
	}
	for _, name := range []string{authhttp.SessionCookie, authhttp.LoginCookie} {
		if !seen[name] {
			t.Errorf("sign-in set no %s cookie (set: %v)", name, seen)
		}
	}
	// The sign-in page's double-submit cookie has the same attributes.
	p = e.browser().get("/signin")
	found := false
	for _, c := range p.Cookies() {
		if c.Name == authhttp.CSRFCookie {
			found = true
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("%s cookie: Secure=%t HttpOnly=%t SameSite=%v", c.Name, c.Secure, c.HttpOnly, c.SameSite)
			}
		}
	}
	if !found {
		t.Errorf("GET /signin set no %s cookie", authhttp.CSRFCookie)
	}
}

func TestForgedStateIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser()
	b.get("/signin") // a browser that has been here
	p := b.get("/auth/alpha/callback?" + url.Values{"state": {auth.NewToken()}, "code": {"made-up"}}.Encode())
	if p.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged state: status %d, want 401\n%s", p.StatusCode, text(p.body))
	}
	if !strings.Contains(text(p.body), "not valid any more") {
		t.Errorf("forged state page does not explain:\n%s", text(p.body))
	}
	if b.cookie(authhttp.SessionCookie) != "" {
		t.Error("forged state set a session cookie")
	}
	if _, status := b.me(); status != http.StatusUnauthorized {
		t.Errorf("after a forged state /api/v1/me is %d, want 401", status)
	}
}

// callbackURL starts a sign-in in b and returns the provider's redirect back to
// the service, without following it.
func (b *browser) callbackURL(prof auth.Profile, t auth.UserType) string {
	b.t.Helper()
	b.stopAt = b.e.base + "/auth/"
	defer func() { b.stopAt = "" }()
	p := b.signIn(prof, t, "")
	loc := p.Header.Get("Location")
	if p.StatusCode != http.StatusFound || !strings.HasPrefix(loc, b.e.base+"/auth/"+prof.Provider+"/callback?") {
		b.t.Fatalf("sign-in did not stop at the provider's redirect back: %d %s", p.StatusCode, loc)
	}
	return loc
}

func TestReplayedStateIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	prof := profile("alpha", randomID(), "r@example.com")
	b := e.browser()
	cb := b.callbackURL(prof, auth.TypeOwner)
	if p := b.get(cb); p.StatusCode != http.StatusOK || p.Request.URL.Path != "/account" {
		t.Fatalf("first use of the callback: %d at %s", p.StatusCode, p.Request.URL)
	}
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))
	if _, status := b.me(); status != http.StatusUnauthorized {
		t.Fatalf("still signed in after signing out: %d", status)
	}

	p := b.get(cb) // the same browser, binding cookie and all
	if p.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed callback: status %d, want 401\n%s", p.StatusCode, text(p.body))
	}
	if _, status := b.me(); status != http.StatusUnauthorized {
		t.Errorf("the replay signed the browser in (/api/v1/me %d)", status)
	}
}

func TestCallbackFromAnotherBrowserIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	prof := profile("alpha", randomID(), "victim@example.com")
	cb := e.browser().callbackURL(prof, auth.TypeOwner)

	other := e.browser() // has no hestami_login cookie
	p := other.get(cb)
	if p.StatusCode != http.StatusUnauthorized {
		t.Fatalf("callback in another browser: status %d, want 401\n%s", p.StatusCode, text(p.body))
	}
	if _, status := other.me(); status != http.StatusUnauthorized {
		t.Errorf("the other browser got signed in (/api/v1/me %d)", status)
	}
	if users, _ := e.store.UsersByEmail(t.Context(), "victim@example.com"); len(users) != 0 {
		t.Errorf("an account was created: %+v", users[0])
	}
}

func TestProviderCancelShowsWayBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.idp.setDeny("beta", true)
	b := e.browser()
	p := b.signIn(profile("beta", randomID(), "x@example.com"), auth.TypeOwner, "")
	if p.StatusCode != http.StatusForbidden || !strings.Contains(text(p.body), "You cancelled the sign-in with Beta") {
		t.Fatalf("access_denied: %d\n%s", p.StatusCode, text(p.body))
	}
	if !strings.Contains(p.body, `href="/signin`) {
		t.Errorf("the error page has no way back to sign in:\n%s", p.body)
	}
}

func TestNoAccountWithoutTypeSaysHowToCreateOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	p := e.browser().signIn(profile("alpha", randomID(), "new@example.com"), "", "")
	if p.StatusCode != http.StatusNotFound || !strings.Contains(text(p.body), "property owner or a service provider") {
		t.Fatalf("unknown identity without a type: %d\n%s", p.StatusCode, text(p.body))
	}
	if !strings.Contains(p.body, `href="/signin?type=owner"`) {
		t.Errorf("no way to create an account on the page:\n%s", p.body)
	}
}

func TestSessionFixation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	// The attacker's own session, planted in the victim's browser.
	attacker := e.browser()
	attacker.mustSignIn(profile("alpha", randomID(), "mallory@example.com"), auth.TypeOwner)
	planted := attacker.cookie(authhttp.SessionCookie)

	victim := e.browser()
	victim.setCookie(authhttp.SessionCookie, planted)
	victim.mustSignIn(profile("beta", randomID(), "vic@example.com"), auth.TypeOwner)
	now := victim.cookie(authhttp.SessionCookie)
	if now == "" || now == planted {
		t.Fatalf("session cookie after sign-in is %q; want a new one", now)
	}
	if _, status := attacker.me(); status != http.StatusUnauthorized {
		t.Errorf("the planted session still works after the sign-in (/api/v1/me %d)", status)
	}
}

func TestRevokedSessionStopsWorking(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	prof := profile("alpha", randomID(), "two@example.com")
	laptop, phone := e.browser(), e.browser()
	laptop.mustSignIn(prof, auth.TypeOwner)
	phone.mustSignIn(prof, "")
	phoneToken := phone.cookie(authhttp.SessionCookie)
	phoneSession := auth.HashToken(phoneToken)

	acct := laptop.get("/account")
	if !strings.Contains(text(acct.body), "(this device)") {
		t.Errorf("account page does not mark this device:\n%s", text(acct.body))
	}
	p := laptop.submit(acct, "/account/sessions/"+phoneSession+"/revoke", nil)
	if p.StatusCode != http.StatusOK || p.Request.URL.Path != "/account" {
		t.Fatalf("revoke: %d at %s\n%s", p.StatusCode, p.Request.URL, text(p.body))
	}
	if _, status := phone.me(); status != http.StatusUnauthorized {
		t.Errorf("revoked session: /api/v1/me %d, want 401", status)
	}
	phone.setCookie(authhttp.SessionCookie, phoneToken) // the 401 cleared it; a stale copy must not work either
	if p := phone.get("/account"); p.Request.URL.Path != "/signin" {
		t.Errorf("revoked session: /account ended at %s, want the sign-in page", p.Request.URL)
	}
	laptop.mustMe()
}

func TestSignOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser()
	acct := b.mustSignIn(profile("alpha", randomID(), "bye@example.com"), auth.TypeOwner)
	token := b.cookie(authhttp.SessionCookie)
	p := b.submit(acct, "/signout", nil)
	if p.Request.URL.Path != "/signin" || !strings.Contains(text(p.body), "You are signed out") {
		t.Fatalf("sign out ended at %s:\n%s", p.Request.URL, text(p.body))
	}
	if b.cookie(authhttp.SessionCookie) != "" {
		t.Error("sign out left the session cookie")
	}
	b.setCookie(authhttp.SessionCookie, token)
	if _, status := b.me(); status != http.StatusUnauthorized {
		t.Errorf("the signed-out token still works: %d", status)
	}
}

func TestLinkAndUnlink(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser()
	alpha := profile("alpha", randomID(), "link@example.com")
	acct := b.mustSignIn(alpha, auth.TypeOwner)
	id := b.mustMe()

	beta := profile("beta", randomID(), "link-other@example.com")
	e.idp.setNext("beta", beta)
	p := b.submit(acct, "/account/link/beta", nil)
	if p.StatusCode != http.StatusOK || p.Request.URL.Path != "/account" || !strings.Contains(text(p.body), "The account is linked") {
		t.Fatalf("link: %d at %s\n%s", p.StatusCode, p.Request.URL, text(p.body))
	}
	ids, _ := e.store.Identities(t.Context(), id)
	if len(ids) != 2 {
		t.Fatalf("%d identities after linking, want 2", len(ids))
	}
	// Beta now signs in to the same account.
	b2 := e.browser()
	b2.mustSignIn(beta, "")
	if got := b2.mustMe(); got != id {
		t.Errorf("linked identity signs in user %s, want %s", got, id)
	}

	// Unlink alpha from the account page.
	p = b.submit(b.get("/account"), "/account/identities/unlink", url.Values{"provider": {"alpha"}, "subject": {alpha.Subject}})
	if p.StatusCode != http.StatusOK || !strings.Contains(text(p.body), "The account is unlinked") {
		t.Fatalf("unlink: %d\n%s", p.StatusCode, text(p.body))
	}
	ids, _ = e.store.Identities(t.Context(), id)
	if len(ids) != 1 || ids[0].Provider != "beta" {
		t.Fatalf("identities after unlinking alpha: %+v", ids)
	}

	// The last one stays.
	p = b.submit(b.get("/account"), "/account/identities/unlink", url.Values{"provider": {"beta"}, "subject": {beta.Subject}})
	if p.StatusCode != http.StatusConflict || !strings.Contains(text(p.body), "This is your only way to sign in") {
		t.Fatalf("unlinking the last method: %d\n%s", p.StatusCode, text(p.body))
	}
	if ids, _ = e.store.Identities(t.Context(), id); len(ids) != 1 {
		t.Errorf("%d identities after refusing, want 1", len(ids))
	}
	// And through the API.
	p = b.api(http.MethodDelete, "/api/v1/me/identities/beta/"+url.PathEscape(beta.Subject), "")
	if p.StatusCode != http.StatusConflict || !strings.Contains(p.body, `"code":"conflict"`) {
		t.Errorf("API unlink of the last method: %d %s", p.StatusCode, p.body)
	}
}

func TestVerifiedEmailOfExistingAccountNeedsLinking(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser()
	b.mustSignIn(profile("alpha", randomID(), "same@example.com"), auth.TypeOwner)

	other := e.browser()
	p := other.signIn(profile("beta", randomID(), "Same@Example.com"), auth.TypeOwner, "")
	body := text(p.body)
	if p.StatusCode != http.StatusConflict || !strings.Contains(body, "You already have a Hestami account") ||
		!strings.Contains(body, "Sign in with Alpha") || !strings.Contains(body, "Link Beta") {
		t.Fatalf("verified email of an existing account: %d\n%s", p.StatusCode, body)
	}
	if _, status := other.me(); status != http.StatusUnauthorized {
		t.Errorf("the other browser got signed in (%d)", status)
	}
	if users, _ := e.store.UsersByEmail(t.Context(), "same@example.com"); len(users) != 1 {
		t.Errorf("%d accounts with the email, want 1", len(users))
	}
}

func TestUnverifiedEmailNeverLinks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser()
	b.mustSignIn(profile("alpha", randomID(), "owner@example.com"), auth.TypeOwner)
	original := b.mustMe()

	claim := profile("beta", randomID(), "owner@example.com")
	claim.EmailVerified = false
	// Signing in only: no account is found for it, none is linked.
	p := e.browser().signIn(claim, "", "")
	if p.StatusCode != http.StatusNotFound {
		t.Fatalf("unverified email, sign-in: %d\n%s", p.StatusCode, text(p.body))
	}
	// Signing up makes a separate account, never the existing one.
	other := e.browser()
	other.mustSignIn(claim, auth.TypeOwner)
	if got := other.mustMe(); got == original {
		t.Fatal("an unverified email signed in to the existing account")
	}
	if ids, _ := e.store.Identities(t.Context(), original); len(ids) != 1 {
		t.Errorf("the existing account has %d identities, want 1", len(ids))
	}
}

func TestReturnToIsNeverAnOpenRedirect(t *testing.T) {
	t.Parallel()
	const app = "https://app.hestami.example"
	e := newEnv(t, envOptions{returnOrigins: []string{app}})
	prof := profile("alpha", randomID(), "rt@example.com")
	e.browser().mustSignIn(prof, auth.TypeOwner)

	for _, c := range []struct{ name, returnTo, want string }{
		{"scheme-relative", "//evil.example/x", "/account"},
		{"absolute elsewhere", "https://evil.example/", "/account"},
		{"backslash", `/\evil.example`, "/account"},
		{"javascript", "javascript:alert(1)", "/account"},
		{"userinfo", "https://app.hestami.example@evil.example/", "/account"},
		{"own path", "/account?tab=sessions", "/account?tab=sessions"},
		{"frontend origin", app + "/dashboard", app + "/dashboard"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := e.browser()
			b.stopAt = "https://" // never leave loopback
			// Straight to the form's POST, past the page's own filtering.
			signin := b.get("/signin")
			e.idp.setNext("alpha", prof)
			p := b.submit(signin, "/signin/alpha", url.Values{"return_to": {c.returnTo}})
			var loc string
			for _, r := range append(b.redirects, p.Response) {
				if strings.HasPrefix(r.Request.URL.Path, "/auth/alpha/callback") {
					loc = r.Header.Get("Location")
				}
			}
			if loc != c.want {
				t.Errorf("return_to %q: the callback redirected to %q, want %q", c.returnTo, loc, c.want)
			}
		})
	}
}

func TestOIDCLoginSignsInFirst(t *testing.T) {
	t.Parallel()
	op := &fakeOP{}
	e := newEnv(t, envOptions{oidc: op})
	b := e.browser()
	b.stopAt = "https://"
	p := b.get("/oidc-login?id=req-1")
	if p.Request.URL.Path != "/signin" || p.Request.URL.Query().Get("return_to") != "/oidc-login?id=req-1" {
		t.Fatalf("signed out /oidc-login ended at %s", p.Request.URL)
	}
	// A new user: "I'm a property owner", then the provider.
	owner := linkHref(t, p.body, "I'm a property owner")
	if !strings.Contains(owner, "return_to=") {
		t.Fatalf("the sign-up link %q loses the return_to", owner)
	}
	p = b.get(owner)
	e.idp.setNext("alpha", profile("alpha", randomID(), "op@example.com"))
	p = b.submit(p, "/signin/alpha", nil)
	if got := p.Header.Get("Location"); got != "https://app.example/cb?code=for-req-1" {
		t.Fatalf("after sign-in the browser went to %q (status %d at %s), want the OIDC provider's callback", got, p.StatusCode, p.Request.URL)
	}
	if got := op.completed(); got == "" || got != b.mustMe() {
		t.Errorf("Complete got user %q", got)
	}
	if p := b.get("/oidc-login?id=unknown"); p.StatusCode != http.StatusNotFound {
		t.Errorf("unknown request: %d, want 404", p.StatusCode)
	}
	// A client that wants a fresh sign-in (prompt=login) gets the sign-in page
	// again, with the way back.
	p = b.get("/oidc-login?id=fresh")
	if p.Request.URL.Path != "/signin" || p.Request.URL.Query().Get("return_to") != "/oidc-login?id=fresh" ||
		!strings.Contains(text(p.body), "asks you to sign in again") {
		t.Errorf("prompt=login: ended at %s\n%s", p.Request.URL, text(p.body))
	}
}

type fakeOP struct {
	mu   sync.Mutex
	user string
}

func (f *fakeOP) completed() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.user
}

func (f *fakeOP) Complete(ctx context.Context, id string, sess *auth.Session, u *auth.User) (string, error) {
	if id == "fresh" {
		return "", auth.Errorf(auth.CodeUnauthorized, "This application asks you to sign in again.")
	}
	if id != "req-1" {
		return "", auth.Errorf(auth.CodeNotFound, "That sign-in request has expired. Go back to the application and sign in again.")
	}
	if sess == nil || sess.UserID != u.ID {
		return "", auth.Errorf(auth.CodeInternal, "session does not belong to the user")
	}
	f.mu.Lock()
	f.user = u.ID
	f.mu.Unlock()
	return "https://app.example/cb?code=for-" + id, nil
}

// linkHref returns the href of the link on the page whose text is linkText.
func linkHref(t *testing.T, body, linkText string) string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	href := ""
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "a" && href == "" {
			var sb strings.Builder
			walk(n, func(c *html.Node) {
				if c.Type == html.TextNode {
					sb.WriteString(c.Data)
				}
			})
			if strings.TrimSpace(sb.String()) == linkText {
				href = attr(n, "href")
			}
		}
	})
	if href == "" {
		t.Fatalf("no link %q on the page:\n%s", linkText, body)
	}
	return href
}
