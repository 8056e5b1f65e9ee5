package devidp_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"

	"github.com/hestami/hestami/devidp"
)

const (
	clientID     = "hestami-auth"
	clientSecret = "dev-secret-for-tests"
)

// clock is a settable clock shared by the provider and the ID token verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a running provider and a real OpenID Connect client of it.
type fixture struct {
	issuer   string
	redirect string
	clock    *clock
	provider *oidc.Provider
	oauth    *oauth2.Config
	// browser does not follow redirects, so tests see where they go.
	browser *http.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureMounted(t, func(h http.Handler) http.Handler { return h })
}

// newFixtureMounted serves the provider at /dev/idp/ through mount.
func newFixtureMounted(t *testing.T, mount func(http.Handler) http.Handler) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	f := &fixture{
		issuer:   base + "/dev/idp",
		redirect: base + "/auth/callback/dev",
		clock:    &clock{t: time.Now().Truncate(time.Second)},
		browser: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
	idp, err := devidp.New(devidp.Options{
		Dev: true, Issuer: f.issuer, ClientID: clientID, ClientSecret: clientSecret,
		RedirectURIs: []string{f.redirect}, Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/dev/idp/", mount(idp.Handler()))
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	f.provider, err = oidc.NewProvider(t.Context(), f.issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	f.oauth = &oauth2.Config{
		ClientID: clientID, ClientSecret: clientSecret, RedirectURL: f.redirect,
		Endpoint: f.provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "email", "profile"},
	}
	return f
}

// login is one authorization request in progress.
type login struct {
	state, nonce, verifier string
	url                    string
}

func (f *fixture) start() login {
	l := login{state: rand("state"), nonce: rand("nonce"), verifier: oauth2.GenerateVerifier()}
	l.url = f.oauth.AuthCodeURL(l.state, oidc.Nonce(l.nonce), oauth2.S256ChallengeOption(l.verifier))
	return l
}

var counter struct {
	sync.Mutex
	n int
}

func rand(prefix string) string {
	counter.Lock()
	defer counter.Unlock()
	counter.n++
	return fmt.Sprintf("%s-%d-%d", prefix, counter.n, time.Now().UnixNano())
}

// signInPage is the parsed sign-in page.
type signInPage struct {
	url    *url.URL
	doc    *html.Node
	action string
	hidden url.Values
	// buttons maps each submit button's text to its name and value.
	buttons map[string][2]string
}

func (f *fixture) open(t *testing.T, rawURL string) *signInPage {
	t.Helper()
	resp, err := f.browser.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET authorize: %s (Location %q)\n%s", resp.Status, resp.Header.Get("Location"), body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("sign-in page Content-Type %q, want text/html", ct)
	}
	doc, err := html.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := &signInPage{url: resp.Request.URL, doc: doc, hidden: url.Values{}, buttons: map[string][2]string{}}
	forms := elements(doc, "form")
	if len(forms) != 1 {
		t.Fatalf("sign-in page has %d forms, want 1", len(forms))
	}
	if m := attr(forms[0], "method"); !strings.EqualFold(m, "post") {
		t.Fatalf("form method %q, want post", m)
	}
	p.action = attr(forms[0], "action")
	for _, in := range elements(forms[0], "input") {
		if attr(in, "type") == "hidden" {
			p.hidden.Add(attr(in, "name"), attr(in, "value"))
		}
	}
	for _, b := range elements(forms[0], "button") {
		p.buttons[text(b)] = [2]string{attr(b, "name"), attr(b, "value")}
	}
	return p
}

// press submits the form with the button whose text contains label, and returns
// where the provider redirects the browser.
func (f *fixture) press(t *testing.T, p *signInPage, label string) *url.URL {
	t.Helper()
	resp := f.submit(t, p, label)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("pressing %q: %s, want 303\n%s", label, resp.Status, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != f.redirect {
		t.Fatalf("redirected to %s, want the redirect URI %s", got, f.redirect)
	}
	return loc
}

func (f *fixture) submit(t *testing.T, p *signInPage, label string) *http.Response {
	t.Helper()
	form := url.Values{}
	for k, v := range p.hidden {
		form[k] = v
	}
	found := false
	for txt, nv := range p.buttons {
		if strings.Contains(txt, label) {
			form.Set(nv[0], nv[1])
			found = true
		}
	}
	if !found {
		t.Fatalf("no button with %q on the sign-in page; buttons: %v", label, p.buttons)
	}
	action, err := p.url.Parse(p.action)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.browser.PostForm(action.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// signIn runs the browser part of a sign-in as the user with email and returns
// the login and the authorization code.
func (f *fixture) signIn(t *testing.T, email string) (login, string) {
	t.Helper()
	l := f.start()
	loc := f.press(t, f.open(t, l.url), email)
	q := loc.Query()
	if q.Get("state") != l.state {
		t.Fatalf("state %q came back, want %q", q.Get("state"), l.state)
	}
	if q.Get("code") == "" {
		t.Fatalf("no code in %s", loc)
	}
	return l, q.Get("code")
}

func oauthErrorCode(t *testing.T, err error) (string, int) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v, want an OAuth error response", err)
	}
	return re.ErrorCode, re.Response.StatusCode
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	good := devidp.Options{Dev: true, Issuer: "http://localhost:8080/dev/idp", ClientID: "c", ClientSecret: "s",
		RedirectURIs: []string{"http://localhost:8080/auth/callback/dev"}}
	for _, tc := range []struct {
		name   string
		change func(*devidp.Options)
		want   error // nil: any error
	}{
		{"not dev", func(o *devidp.Options) { o.Dev = false }, devidp.ErrNotDev},
		{"public host", func(o *devidp.Options) { o.Issuer = "https://idp.hestami.example/dev/idp" }, devidp.ErrNotLoopback},
		{"private address", func(o *devidp.Options) { o.Issuer = "http://10.0.0.5:8080/dev/idp" }, devidp.ErrNotLoopback},
		{"all interfaces", func(o *devidp.Options) { o.Issuer = "http://0.0.0.0:8080/dev/idp" }, devidp.ErrNotLoopback},
		{"localhost suffix trick", func(o *devidp.Options) { o.Issuer = "http://localhost.evil.example/dev/idp" }, devidp.ErrNotLoopback},
		{"not a URL", func(o *devidp.Options) { o.Issuer = "localhost:8080" }, nil},
		{"no secret", func(o *devidp.Options) { o.ClientSecret = "" }, nil},
		{"no redirect URI", func(o *devidp.Options) { o.RedirectURIs = nil }, nil},
		{"relative redirect URI", func(o *devidp.Options) { o.RedirectURIs = []string{"/auth/callback/dev"} }, nil},
		{"bad user type", func(o *devidp.Options) {
			o.Users = []devidp.User{{Subject: "x", Email: "x@hestami.local", Type: "admin"}}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.change(&o)
			idp, err := devidp.New(o)
			if err == nil {
				t.Fatalf("New accepted %+v", o)
			}
			if idp != nil {
				t.Error("New returned a provider with its error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := devidp.New(devidp.Options{}); !strings.Contains(err.Error(), "hestami dev") {
		t.Errorf("refusal %q does not say where it runs", err)
	}
	for _, issuer := range []string{"http://localhost:8080/dev/idp", "http://127.0.0.1:1234", "http://[::1]:8080/dev/idp/"} {
		o := good
		o.Issuer = issuer
		if _, err := devidp.New(o); err != nil {
			t.Errorf("New refused loopback issuer %s: %v", issuer, err)
		}
	}
}

func TestDefaultUsers(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"admin@hestami.local": "staff", "support@hestami.local": "staff", "ops@hestami.local": "staff",
		"owner@hestami.local": "owner", "provider@hestami.local": "provider",
	}
	users := devidp.DefaultUsers()
	if len(users) != len(want) {
		t.Fatalf("%d default users, want %d", len(users), len(want))
	}
	for _, u := range users {
		if want[u.Email] != u.Type {
			t.Errorf("%s has type %q, want %q", u.Email, u.Type, want[u.Email])
		}
		if u.Subject == "" || u.Name == "" || u.Description == "" || len(u.Roles) == 0 {
			t.Errorf("%s is missing a subject, name, description or roles: %+v", u.Email, u)
		}
	}
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		email string
		style oauth2.AuthStyle
	}{
		{"staff admin, secret in header", "admin@hestami.local", oauth2.AuthStyleInHeader},
		{"owner, secret in body", "owner@hestami.local", oauth2.AuthStyleInParams},
		{"provider, secret in header", "provider@hestami.local", oauth2.AuthStyleInHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ctx := t.Context()
			if got := f.provider.Endpoint().AuthURL; got != f.issuer+"/authorize" {
				t.Errorf("discovered authorization endpoint %s", got)
			}
			f.oauth.Endpoint.AuthStyle = tc.style

			l := f.start()
			page := f.open(t, l.url)
			for _, u := range devidp.DefaultUsers() {
				if !slices.ContainsFunc(slices.Collect(maps.Keys(page.buttons)), func(s string) bool { return strings.Contains(s, u.Email) }) {
					t.Errorf("sign-in page has no button for %s", u.Email)
				}
			}
			loc := f.press(t, page, tc.email)
			if loc.Query().Get("state") != l.state {
				t.Fatalf("state %q came back, want %q", loc.Query().Get("state"), l.state)
			}
			code := loc.Query().Get("code")

			tok, err := f.oauth.Exchange(ctx, code, oauth2.VerifierOption(l.verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			raw, _ := tok.Extra("id_token").(string)
			verifier := f.provider.Verifier(&oidc.Config{ClientID: clientID, Now: f.clock.Now})
			idt, err := verifier.Verify(ctx, raw)
			if err != nil {
				t.Fatalf("verify ID token: %v", err)
			}
			if idt.Nonce != l.nonce {
				t.Errorf("ID token nonce %q, want %q", idt.Nonce, l.nonce)
			}
			var claims struct {
				Email         string `json:"email"`
				EmailVerified bool   `json:"email_verified"`
				Name          string `json:"name"`
			}
			if err := idt.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			want := user(t, tc.email)
			if idt.Subject != want.Subject || claims.Email != want.Email || !claims.EmailVerified || claims.Name != want.Name {
				t.Errorf("ID token says sub=%q %+v, want %+v verified", idt.Subject, claims, want)
			}

			other := f.provider.Verifier(&oidc.Config{ClientID: "another-client", Now: f.clock.Now})
			if _, err := other.Verify(ctx, raw); err == nil {
				t.Error("ID token verified for another audience")
			}
			if _, err := verifier.Verify(ctx, tamper(t, raw)); err == nil {
				t.Error("ID token with a changed subject verified: the signature is not checked")
			}

			info, err := f.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			if info.Subject != want.Subject || info.Email != want.Email || !info.EmailVerified {
				t.Errorf("userinfo %+v, want %s %s verified", info, want.Subject, want.Email)
			}

			// The code works once; a replay also revokes the access token.
			_, err = f.oauth.Exchange(ctx, code, oauth2.VerifierOption(l.verifier))
			if code, _ := oauthErrorCode(t, err); code != "invalid_grant" {
				t.Errorf("replayed code: error %q, want invalid_grant", code)
			}
			if _, err := f.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil {
				t.Error("access token still works after its code was replayed")
			}
		})
	}
}

func TestTokenRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		exchange   func(t *testing.T, f *fixture, l login, code string) error
		wantCode   string
		wantStatus int
	}{
		{"wrong PKCE verifier", func(t *testing.T, f *fixture, l login, code string) error {
			_, err := f.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"no PKCE verifier", func(t *testing.T, f *fixture, l login, code string) error {
			_, err := f.oauth.Exchange(t.Context(), code)
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"wrong client secret in header", func(t *testing.T, f *fixture, l login, code string) error {
			c := *f.oauth
			c.ClientSecret, c.Endpoint.AuthStyle = "guess", oauth2.AuthStyleInHeader
			_, err := c.Exchange(t.Context(), code, oauth2.VerifierOption(l.verifier))
			return err
		}, "invalid_client", http.StatusUnauthorized},
		{"wrong client secret in body", func(t *testing.T, f *fixture, l login, code string) error {
			c := *f.oauth
			c.ClientSecret, c.Endpoint.AuthStyle = "guess", oauth2.AuthStyleInParams
			_, err := c.Exchange(t.Context(), code, oauth2.VerifierOption(l.verifier))
			return err
		}, "invalid_client", http.StatusUnauthorized},
		{"wrong client id", func(t *testing.T, f *fixture, l login, code string) error {
			c := *f.oauth
			c.ClientID = "someone-else"
			_, err := c.Exchange(t.Context(), code, oauth2.VerifierOption(l.verifier))
			return err
		}, "invalid_client", http.StatusUnauthorized},
		{"other redirect URI", func(t *testing.T, f *fixture, l login, code string) error {
			c := *f.oauth
			c.RedirectURL = f.redirect + "/other"
			_, err := c.Exchange(t.Context(), code, oauth2.VerifierOption(l.verifier))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"expired code", func(t *testing.T, f *fixture, l login, code string) error {
			f.clock.Advance(61 * time.Second)
			_, err := f.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(l.verifier))
			return err
		}, "invalid_grant", http.StatusBadRequest},
		{"made-up code", func(t *testing.T, f *fixture, l login, code string) error {
			_, err := f.oauth.Exchange(t.Context(), code+"x", oauth2.VerifierOption(l.verifier))
			return err
		}, "invalid_grant", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			l, code := f.signIn(t, "support@hestami.local")
			err := tc.exchange(t, f, l, code)
			if err == nil {
				t.Fatal("token endpoint accepted it")
			}
			gotCode, status := oauthErrorCode(t, err)
			if gotCode != tc.wantCode || status != tc.wantStatus {
				t.Errorf("error %q (HTTP %d), want %q (HTTP %d)", gotCode, status, tc.wantCode, tc.wantStatus)
			}
		})
	}
}

func TestMountedBehindStripPrefix(t *testing.T) {
	t.Parallel()
	f := newFixtureMounted(t, func(h http.Handler) http.Handler { return http.StripPrefix("/dev/idp", h) })
	l, code := f.signIn(t, "admin@hestami.local")
	tok, err := f.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(l.verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if _, err := f.provider.UserInfo(t.Context(), oauth2.StaticTokenSource(tok)); err != nil {
		t.Errorf("userinfo: %v", err)
	}
}

func TestCodeValidForAMinute(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	l, code := f.signIn(t, "owner@hestami.local")
	f.clock.Advance(59 * time.Second)
	if _, err := f.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(l.verifier)); err != nil {
		t.Errorf("a 59-second-old code was refused: %v", err)
	}
}

func TestFailedRedemptionUsesUpCode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	l, code := f.signIn(t, "ops@hestami.local")
	if _, err := f.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Fatal("wrong verifier accepted")
	}
	if _, err := f.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(l.verifier)); err == nil {
		t.Error("code still redeemable after an attempt with a wrong verifier")
	}
}

func TestWrongClientDoesNotUseUpCode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	l, code := f.signIn(t, "ops@hestami.local")
	c := *f.oauth
	c.ClientSecret = "guess"
	if _, err := c.Exchange(t.Context(), code, oauth2.VerifierOption(l.verifier)); err == nil {
		t.Fatal("wrong secret accepted")
	}
	if _, err := f.oauth.Exchange(t.Context(), code, oauth2.VerifierOption(l.verifier)); err != nil {
		t.Errorf("the real client cannot redeem its code after someone guessed a secret: %v", err)
	}
}

func TestAuthorizeShowsErrorsWithoutRedirect(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		set  func(*url.Values)
	}{
		{"unregistered redirect_uri", func(q *url.Values) { q.Set("redirect_uri", "http://localhost:1/steal") }},
		{"redirect_uri prefix of registered", func(q *url.Values) { q.Set("redirect_uri", strings.TrimSuffix(f.redirect, "/dev")) }},
		{"no redirect_uri", func(q *url.Values) { q.Del("redirect_uri") }},
		{"unknown client", func(q *url.Values) { q.Set("client_id", "someone-else") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := url.Parse(f.start().url)
			q := u.Query()
			tc.set(&q)
			u.RawQuery = q.Encode()
			resp, err := f.browser.Get(u.String())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Fatalf("%s, Location %q; want 400 and no redirect", resp.Status, resp.Header.Get("Location"))
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "<h2>") {
				t.Errorf("not an error page:\n%s", body)
			}
		})
	}
}

func TestAuthorizeErrorsGoBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, tc := range []struct {
		name, want string
		set        func(*url.Values)
	}{
		{"no PKCE", "invalid_request", func(q *url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }},
		{"plain PKCE", "invalid_request", func(q *url.Values) { q.Set("code_challenge_method", "plain") }},
		{"malformed challenge", "invalid_request", func(q *url.Values) { q.Set("code_challenge", "short") }},
		{"implicit flow", "unsupported_response_type", func(q *url.Values) { q.Set("response_type", "token") }},
		{"no openid scope", "invalid_scope", func(q *url.Values) { q.Set("scope", "email") }},
		{"prompt none", "login_required", func(q *url.Values) { q.Set("prompt", "none") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := f.start()
			u, _ := url.Parse(l.url)
			q := u.Query()
			tc.set(&q)
			u.RawQuery = q.Encode()
			resp, err := f.browser.Get(u.String())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, err := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), f.redirect+"?") {
				t.Fatalf("%s to %q; want a redirect to %s", resp.Status, resp.Header.Get("Location"), f.redirect)
			}
			if got := loc.Query().Get("error"); got != tc.want {
				t.Errorf("error %q, want %q", got, tc.want)
			}
			if got := loc.Query().Get("state"); got != l.state {
				t.Errorf("state %q, want %q", got, l.state)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	l := f.start()
	loc := f.press(t, f.open(t, l.url), "Cancel")
	q := loc.Query()
	if q.Get("error") != "access_denied" || q.Get("state") != l.state || q.Has("code") {
		t.Errorf("cancel redirected with %v; want error=access_denied, state %s and no code", q, l.state)
	}
}

func TestSignInPageWorksOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		before func(f *fixture, p *signInPage, t *testing.T)
	}{
		{"used already", func(f *fixture, p *signInPage, t *testing.T) { f.press(t, p, "owner@hestami.local") }},
		{"expired", func(f *fixture, p *signInPage, t *testing.T) { f.clock.Advance(11 * time.Minute) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			p := f.open(t, f.start().url)
			tc.before(f, p, t)
			resp := f.submit(t, p, "admin@hestami.local")
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("%s to %q; want 400 and no redirect", resp.Status, resp.Header.Get("Location"))
			}
		})
	}
}

func TestSignInPageAccessible(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.open(t, f.start().url)
	htmls := elements(p.doc, "html")
	if len(htmls) != 1 || attr(htmls[0], "lang") == "" {
		t.Error("the page has no <html lang>")
	}
	if titles := elements(p.doc, "title"); len(titles) != 1 || text(titles[0]) == "" {
		t.Error("the page has no <title>")
	}
	h1 := elements(p.doc, "h1")
	if len(h1) != 1 {
		t.Fatalf("the page has %d <h1>, want 1", len(h1))
	}
	if got := text(h1[0]); got != "Development sign-in — not for production" {
		t.Errorf("<h1> is %q", got)
	}
	buttons := elements(p.doc, "button")
	if len(buttons) != len(devidp.DefaultUsers())+1 {
		t.Errorf("%d buttons, want one per test user and Cancel", len(buttons))
	}
	for _, b := range buttons {
		if text(b) == "" {
			t.Errorf("a button has no text: %v", b.Attr)
		}
		if attr(b, "type") != "submit" {
			t.Errorf("button %q is not a submit button, so it needs JavaScript", text(b))
		}
		if id := attr(b, "aria-describedby"); id != "" && len(elementsWhere(p.doc, func(n *html.Node) bool { return attr(n, "id") == id })) != 1 {
			t.Errorf("button %q describedby %q, which is not on the page once", text(b), id)
		}
	}
	legends := elements(p.doc, "legend")
	var labels []string
	for _, l := range legends {
		labels = append(labels, text(l))
	}
	if !slices.Equal(labels, []string{"Staff", "Property owners", "Service providers"}) {
		t.Errorf("user groups %q, want staff, owners, providers", labels)
	}
	if len(elements(p.doc, "script")) != 0 {
		t.Error("the page has scripts; it must work without JavaScript")
	}
	banner := elementsWhere(p.doc, func(n *html.Node) bool { return strings.Contains(attr(n, "class"), "banner") })
	if len(banner) != 1 || !strings.Contains(strings.ToLower(text(banner[0])), "without a password") {
		t.Error("no visible warning banner saying anyone signs in without a password")
	}
}

// user returns the default user with email.
func user(t *testing.T, email string) devidp.User {
	t.Helper()
	for _, u := range devidp.DefaultUsers() {
		if u.Email == email {
			return u
		}
	}
	t.Fatalf("no default user %s", email)
	return devidp.User{}
}

// tamper changes the subject of a signed JWT, keeping its signature.
func tamper(t *testing.T, jwt string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("ID token %q is not a JWS", jwt)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(payload), `"sub":"`, `"sub":"x`, 1)
	if changed == string(payload) {
		t.Fatalf("no sub claim in %s", payload)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(changed))
	return strings.Join(parts, ".")
}

func elements(n *html.Node, tag string) []*html.Node {
	return elementsWhere(n, func(n *html.Node) bool { return n.Data == tag })
}

func elementsWhere(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && match(d) {
			out = append(out, d)
		}
	}
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
