package authclient_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authclient"
)

// TestBrowserSignsInToTheService: a person signed in at the auth service opens
// the service's page, goes through the service's sign-in and the auth
// service's OpenID Connect provider without seeing a page, and lands back on
// it; the cookie that keeps them signed in is encrypted, Secure, HttpOnly and
// SameSite=Lax, and serves the next request without another round trip.
func TestBrowserSignsInToTheService(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, b := f.staff("olga.ops@hestami.example", "staff:ops")

	r := f.get(b, "/")
	if r.StatusCode != http.StatusOK || r.body != "GET / as olga.ops@hestami.example" {
		t.Fatalf("GET / ended at %s with %d: %s\nvia %v", r.Request.URL, r.StatusCode, r.body, r.via)
	}
	var sawAuthorize, sawCallback bool
	for _, u := range r.via {
		sawAuthorize = sawAuthorize || strings.HasPrefix(u, f.auth.URL+"/oidc/authorize?")
		sawCallback = sawCallback || strings.HasPrefix(u, f.url+"/callback?")
	}
	if !sawAuthorize || !sawCallback || !strings.HasPrefix(r.via[0], f.url+"/login?") {
		t.Errorf("the sign-in went through %v; want /login, the auth service's /oidc/authorize and back to /callback", r.via)
	}
	authorize, _ := url.Parse(r.via[1])
	q := authorize.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("nonce") == "" || q.Get("client_id") != clientID {
		t.Errorf("authorization request %s: want PKCE S256, state, nonce and the client id", authorize)
	}

	c := f.sessionCookie(b)
	if c == nil {
		t.Fatal("no session cookie after signing in")
	}
	if strings.Contains(c.Value, "eyJ") || len(c.Value) > 4000 {
		t.Errorf("session cookie (%d bytes) holds a readable JWT or is too long for browsers", len(c.Value))
	}
	// Set-Cookie attributes, from the callback's answer.
	resp := f.callback(b, "/login?next=/api/backups")
	var set *http.Cookie
	for _, sc := range resp.Cookies() {
		if sc.Name == "hestami_backup-daemon_session" {
			set = sc
		}
	}
	if set == nil || !set.Secure || !set.HttpOnly || set.SameSite != http.SameSiteLaxMode || set.Path != "/" {
		t.Errorf("callback's Set-Cookie %+v; want Secure, HttpOnly, SameSite=Lax, Path=/", set)
	}
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/api/backups" {
		t.Errorf("callback answered %d to %q; want 303 to next (/api/backups)", resp.StatusCode, loc)
	}
	// A next that leaves the service is not followed.
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example"} {
		if loc := f.callback(b, "/login?next="+url.QueryEscape(next)).Header.Get("Location"); loc != "/" {
			t.Errorf("signing in with next=%s ends at %q; want /", next, loc)
		}
	}

	r = f.get(b, "/")
	if r.StatusCode != http.StatusOK || len(r.via) != 0 {
		t.Errorf("second GET /: %d via %v; want 200 from the cookie alone", r.StatusCode, r.via)
	}
}

// TestAPIClientGetsItsPrincipal: an API client holding a token from the code
// flow is the person who signed in, with their permissions and session.
func TestAPIClientGetsItsPrincipal(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u, b := f.staff("omar.ops@hestami.example", "staff:ops")
	tok := b.Token(f.reg)

	p, err := f.client.Principal(t.Context(), tok.AccessToken)
	if err != nil {
		t.Fatalf("Principal: %v", err)
	}
	for _, perm := range []string{"backup:read", "backup:run", "backup:restore", "audit:read"} {
		if !p.Can(perm) {
			t.Errorf("principal cannot %s: %v", perm, p.Permissions)
		}
	}
	if p.Can("users:manage") {
		t.Errorf("an ops member can users:manage: %v", p.Permissions)
	}
	if p.UserID != u.ID || p.Email != u.Email || p.Type != "staff" || p.SessionID != auth.HashToken(b.SessionToken()) ||
		!slices.Equal(p.Methods, []string{"test"}) || p.AuthTime.IsZero() || !p.MFAAt.IsZero() {
		t.Errorf("principal %+v; want %s's, session %s, methods [test], no second factor", p, u.ID, auth.HashToken(b.SessionToken()))
	}

	r := f.api("GET", "/api/backups", tok.AccessToken)
	var out struct {
		User string `json:"user"`
	}
	if r.StatusCode != http.StatusOK || json.Unmarshal([]byte(r.body), &out) != nil || out.User != u.ID {
		t.Errorf("GET /api/backups with the token: %d %s", r.StatusCode, r.body)
	}
	r = f.api("GET", "/api/backups", "")
	if e := r.apiError(t); r.StatusCode != http.StatusUnauthorized || e.Error.Code != "unauthorized" || r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("GET /api/backups without a token: %d %s (WWW-Authenticate %q); want 401", r.StatusCode, r.body, r.Header.Get("WWW-Authenticate"))
	}
	r = f.api("GET", "/api/backups", "not-a-token")
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("GET /api/backups with a made-up token: %d %s; want 401 invalid_token", r.StatusCode, r.body)
	}
}

// TestSignedOutSessionRefused: signing out at the auth service ends the
// session's tokens at the service once the cache window (5 s) has passed,
// never later.
func TestSignedOutSessionRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, b := f.staff("sam.ops@hestami.example", "staff:ops")
	tok := b.Token(f.reg)
	if r := f.api("GET", "/api/backups", tok.AccessToken); r.StatusCode != http.StatusOK {
		t.Fatalf("before signing out: %d %s", r.StatusCode, r.body)
	}
	if r := f.get(b, "/"); r.StatusCode != http.StatusOK {
		t.Fatalf("the browser before signing out: %d %s", r.StatusCode, r.body)
	}
	b.SignOut()
	// Within the window the answer may still come from the cache (documented);
	// at its end it does not.
	f.clock.Advance(authclient.DefaultCacheTTL)
	r := f.api("GET", "/api/backups", tok.AccessToken)
	if e := r.apiError(t); r.StatusCode != http.StatusUnauthorized || e.Error.Code != "unauthorized" {
		t.Errorf("the token of a signed-out session, %s later: %d %s; want 401", authclient.DefaultCacheTTL, r.StatusCode, r.body)
	}
	if _, err := f.client.Principal(t.Context(), tok.AccessToken); !errors.Is(err, authclient.ErrUnauthenticated) {
		t.Errorf("Principal of a signed-out session: %v; want ErrUnauthenticated", err)
	}
	// The browser is sent to sign in again (and, signed out at the auth
	// service too, ends on its sign-in page); its cookie is cleared.
	req, _ := http.NewRequest(http.MethodGet, f.url+"/", nil)
	resp := f.noFollow(b, req)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?") {
		t.Errorf("the signed-out browser: %d to %q; want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if r := f.get(b, "/"); r.Request.URL.Host != strings.TrimPrefix(f.auth.URL, "http://") || r.Request.URL.Path != "/signin" {
		t.Errorf("the signed-out browser ended at %s; want the auth service's sign-in page", r.Request.URL)
	}
}

// TestCacheWindow: within the cache window the auth service is not asked
// again (the documented delay); a negative CacheTTL asks every time.
func TestCacheWindow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, b := f.staff("cleo.ops@hestami.example", "staff:ops")
	tok := b.Token(f.reg)
	noCache, err := authclient.New(authclient.Config{URL: f.auth.URL, CacheTTL: -1, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*authclient.Client{f.client, noCache} {
		if _, err := c.Principal(t.Context(), tok.AccessToken); err != nil {
			t.Fatal(err)
		}
	}
	b.SignOut()
	f.clock.Advance(authclient.DefaultCacheTTL - time.Second)
	if _, err := f.client.Principal(t.Context(), tok.AccessToken); err != nil {
		t.Errorf("within the cache window: %v; want the remembered principal", err)
	}
	if _, err := noCache.Principal(t.Context(), tok.AccessToken); !errors.Is(err, authclient.ErrUnauthenticated) {
		t.Errorf("without a cache: %v; want ErrUnauthenticated at once", err)
	}
}

// TestUnderPrivilegedRefused: a person without the permission gets 403, as a
// browser (a page saying which permission) and as an API client (JSON).
func TestUnderPrivilegedRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, support := f.staff("sue.support@hestami.example", "staff:support")
	r := f.get(support, "/")
	if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "backup:read") || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Errorf("support staff on the page: %d %q; want a 403 page naming backup:read", r.StatusCode, r.body)
	}
	r = f.api("GET", "/api/backups", support.Token(f.reg).AccessToken)
	if e := r.apiError(t); r.StatusCode != http.StatusForbidden || e.Error.Code != "forbidden" || !strings.Contains(e.Error.Message, "backup:read") {
		t.Errorf("support staff on the API: %d %s; want 403 forbidden naming backup:read", r.StatusCode, r.body)
	}

	owner := f.auth.User(auth.TypeOwner, "otto.owner@example.com")
	ob := f.auth.Browser()
	ob.SignIn(owner)
	if r := f.api("GET", "/api/backups", ob.Token(f.reg).AccessToken); r.StatusCode != http.StatusForbidden {
		t.Errorf("a property owner on the API: %d %s; want 403", r.StatusCode, r.body)
	}
}

// TestForgedCookiesRefused: a session cookie that was not sealed by the
// service with its key, or was changed, signs nobody in; a callback without
// the state cookie of its sign-in is refused.
func TestForgedCookiesRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	u, b := f.staff("fred.ops@hestami.example", "staff:ops")
	if r := f.get(b, "/"); r.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", r.StatusCode, r.body)
	}
	good := f.sessionCookie(b).Value
	tok := b.Token(f.reg)

	// The same content, sealed with another key.
	other := newSealer(t)
	content, _ := json.Marshal(map[string]any{"a": tok.AccessToken, "r": tok.RefreshToken, "e": time.Now().Add(time.Hour).Unix(), "s": u.ID})
	sealed, err := other.Seal(content, []byte("hestami authclient session\x00"+clientID))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	raw[len(raw)-5] ^= 1
	for name, value := range map[string]string{
		"sealed with another key": base64.RawURLEncoding.EncodeToString(sealed),
		"a byte changed":          base64.RawURLEncoding.EncodeToString(raw),
		"not sealed":              base64.RawURLEncoding.EncodeToString(content),
		"garbage":                 "x" + auth.NewToken(),
	} {
		for _, accept := range []string{"text/html", "application/json"} {
			req, _ := http.NewRequest(http.MethodGet, f.url+"/", nil)
			req.Header.Set("Accept", accept)
			req.AddCookie(&http.Cookie{Name: "hestami_backup-daemon_session", Value: value})
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := http.StatusUnauthorized
			if accept == "text/html" {
				want = http.StatusSeeOther // to /login
			}
			if resp.StatusCode != want {
				t.Errorf("%s (%s): %d; want %d", name, accept, resp.StatusCode, want)
			}
		}
	}
	// The genuine cookie still works.
	req, _ := http.NewRequest(http.MethodGet, f.url+"/", nil)
	req.AddCookie(&http.Cookie{Name: "hestami_backup-daemon_session", Value: good})
	if resp, err := http.DefaultTransport.RoundTrip(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the genuine cookie: %v %v", resp, err)
	}

	// A callback for a sign-in this browser did not start.
	other2 := f.auth.Browser()
	for _, q := range []string{"code=abc&state=" + auth.NewToken(), "code=abc", "error=access_denied&state=x"} {
		req, _ := http.NewRequest(http.MethodGet, f.url+"/callback?"+q, nil)
		if r := f.noFollow(other2, req); r.StatusCode != http.StatusBadRequest || f.sessionCookie(other2) != nil {
			t.Errorf("callback ?%s without its state cookie: %d; want 400 and no session", q, r.StatusCode)
		}
	}
	// A state cookie of one sign-in does not finish another: start two, swap.
	req, _ = http.NewRequest(http.MethodGet, f.url+"/login", nil)
	first := f.noFollow(other2, req)
	loc, _ := url.Parse(first.Header.Get("Location"))
	req, _ = http.NewRequest(http.MethodGet, f.url+"/callback?code=abc&state="+url.QueryEscape(loc.Query().Get("state")+"x"), nil)
	if r := f.noFollow(other2, req); r.StatusCode != http.StatusBadRequest {
		t.Errorf("callback with a state that is not the started sign-in's: %d; want 400", r.StatusCode)
	}
}

// TestStepUp: a restore needs a second factor of the last 5 minutes. Without
// one, a browser is sent to the auth service's step-up, which returns through
// the service's sign-in; an API client gets 403 mfa_required. The session's
// fresh factor ends the tokens issued before it; tokens issued after carry it,
// until it is older than 5 minutes.
func TestStepUp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, b := f.staff("rita.ops@hestami.example", "staff:ops")
	before := b.Token(f.reg)
	if r := f.get(b, "/"); r.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", r.StatusCode, r.body)
	}

	req, _ := http.NewRequest(http.MethodGet, f.url+"/restore?backup=b1", nil)
	resp := f.noFollow(b, req)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || err != nil || loc.Host != strings.TrimPrefix(f.auth.URL, "http://") || loc.Path != "/mfa/challenge" ||
		loc.Query().Get("purpose") != "step-up" || loc.Query().Get("return_to") != f.url+"/login?next=%2Frestore%3Fbackup%3Db1" {
		t.Fatalf("GET /restore without a fresh factor: %d to %q; want the auth service's step-up, returning through /login to /restore?backup=b1", resp.StatusCode, resp.Header.Get("Location"))
	}
	r := f.api("POST", "/restore", before.AccessToken)
	e := r.apiError(t)
	if r.StatusCode != http.StatusForbidden || e.Error.Code != "mfa_required" || e.MFA == nil || e.MFA.Action != "step_up" || e.MFA.MaxAgeSeconds != 300 ||
		!strings.HasPrefix(e.MFA.Location, f.auth.URL+"/mfa/challenge?purpose=step-up") {
		t.Fatalf("POST /restore with a token, no fresh factor: %d %s; want 403 mfa_required with the step-up page", r.StatusCode, r.body)
	}

	b.StepUp() // the person verifies a code at the auth service
	f.clock.Advance(authclient.DefaultCacheTTL)
	if r := f.api("POST", "/restore", before.AccessToken); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the token from before the step-up: %d %s; want 401 (its session was replaced)", r.StatusCode, r.body)
	}
	if r := f.api("POST", "/restore", b.Token(f.reg).AccessToken); r.StatusCode != http.StatusOK {
		t.Errorf("a token from after the step-up: %d %s; want 200", r.StatusCode, r.body)
	}
	// The browser comes back through the service's sign-in, as the step-up's
	// return_to says, and reaches the page.
	r2 := f.get(b, "/login?next="+url.QueryEscape("/restore?backup=b1"))
	if r2.StatusCode != http.StatusOK || r2.body != "GET /restore as rita.ops@hestami.example" {
		t.Fatalf("back from the step-up: %d at %s: %s", r2.StatusCode, r2.Request.URL, r2.body)
	}
	// A form POST from the page works too, and stops working 5 minutes later.
	post := func() *response {
		req, _ := http.NewRequest(http.MethodPost, f.url+"/restore", nil)
		req.Header.Set("Origin", f.url)
		req.Header.Set("Referer", f.url+"/restore?backup=b1")
		return f.noFollow(b, req)
	}
	if r := post(); r.StatusCode != http.StatusOK {
		t.Fatalf("POST /restore after the step-up: %d %s", r.StatusCode, r.body)
	}
	f.clock.Advance(5 * time.Minute)
	r = post()
	if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "5 minutes") || !strings.Contains(r.body, "mfa/challenge?purpose=step-up") ||
		!strings.Contains(r.body, url.QueryEscape(f.url+"/login?next=%2Frestore%3Fbackup%3Db1")) {
		t.Errorf("POST /restore 5 minutes after the factor: %d %s; want a 403 page linking to the step-up and back to the form's page", r.StatusCode, r.body)
	}
}

// TestBrowserStaysSignedIn: when the access token in the cookie has expired,
// the service refreshes it without sending the browser anywhere, once for
// requests that arrive together with the same cookie (a refresh token works
// once; presenting it twice would make the auth service end the sign-in).
func TestBrowserStaysSignedIn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, b := f.staff("ray.ops@hestami.example", "staff:ops")
	if r := f.get(b, "/"); r.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", r.StatusCode, r.body)
	}
	old := f.sessionCookie(b).Value
	f.clock.Advance(16 * time.Minute) // access tokens live 15

	var wg sync.WaitGroup
	codes := make([]int, 4)
	cookies := make([]string, 4)
	for i := range codes {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, f.url+"/api/backups", nil)
			req.Header.Set("Accept", "application/json")
			req.AddCookie(&http.Cookie{Name: "hestami_backup-daemon_session", Value: old})
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
			for _, c := range resp.Cookies() {
				if c.Name == "hestami_backup-daemon_session" {
					cookies[i] = c.Value
				}
			}
		})
	}
	wg.Wait()
	for i := range codes {
		if codes[i] != http.StatusOK || cookies[i] == "" || cookies[i] == old {
			t.Errorf("request %d with the expired cookie: %d, new cookie %t; want 200 and a refreshed cookie", i, codes[i], cookies[i] != "" && cookies[i] != old)
		}
	}
	// The sign-in is still good: the refreshed cookie works.
	req, _ := http.NewRequest(http.MethodGet, f.url+"/", nil)
	req.AddCookie(&http.Cookie{Name: "hestami_backup-daemon_session", Value: cookies[0]})
	if resp, err := http.DefaultTransport.RoundTrip(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the refreshed cookie: %v %v; want 200", resp, err)
	}
	// Authenticate alone does not refresh: an expired cookie is not signed in.
	req.Header.Del("Cookie")
	req.AddCookie(&http.Cookie{Name: "hestami_backup-daemon_session", Value: old})
	if _, err := f.login.Authenticate(req); !errors.Is(err, authclient.ErrUnauthenticated) {
		t.Errorf("Authenticate with the expired cookie: %v; want ErrUnauthenticated", err)
	}
}

// TestSignOutOfTheService: signing out revokes the sign-in's tokens at the
// auth service, so a copy of the old cookie signs nobody in, and clears the
// cookie.
func TestSignOutOfTheService(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, b := f.staff("liz.ops@hestami.example", "staff:ops")
	if r := f.get(b, "/"); r.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d %s", r.StatusCode, r.body)
	}
	old := f.sessionCookie(b).Value
	req, _ := http.NewRequest(http.MethodPost, f.url+"/logout", nil)
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := f.noFollow(b, req); r.StatusCode != http.StatusForbidden || f.sessionCookie(b) == nil {
		t.Errorf("a cross-site POST /logout: %d; want 403 and still signed in", r.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodPost, f.url+"/logout", nil)
	req.Header.Set("Origin", f.url)
	if r := f.noFollow(b, req); r.StatusCode != http.StatusOK || !strings.Contains(r.body, "signed out of Backup daemon") {
		t.Fatalf("POST /logout: %d %s", r.StatusCode, r.body)
	}
	if f.sessionCookie(b) != nil {
		t.Error("the session cookie is still there after signing out")
	}
	req, _ = http.NewRequest(http.MethodGet, f.url+"/api/backups", nil)
	req.Header.Set("Accept", "application/json")
	req.AddCookie(&http.Cookie{Name: "hestami_backup-daemon_session", Value: old})
	if resp, err := http.DefaultTransport.RoundTrip(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the cookie from before signing out: %v %v; want 401 (its tokens were revoked)", resp, err)
	}
}

// TestAuthServiceDown: when the auth service cannot be reached nobody is
// signed in: the API answers 503, the sign-in says so.
func TestAuthServiceDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, b := f.staff("dan.ops@hestami.example", "staff:ops")
	tok := b.Token(f.reg)
	down, err := authclient.New(authclient.Config{URL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Principal(context.Background(), tok.AccessToken); !errors.Is(err, authclient.ErrUnavailable) || errors.Is(err, authclient.ErrUnauthenticated) {
		t.Errorf("Principal with the auth service down: %v; want ErrUnavailable", err)
	}
	login, err := authclient.NewLogin(authclient.LoginConfig{Client: down, ClientID: clientID, PublicURL: f.url, Sealer: f.sealer})
	if err != nil {
		t.Fatal(err)
	}
	h := login.Require("backup:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("the handler ran") }))
	rec := httptest.NewRecorder()
	req, _ := http.NewRequest(http.MethodGet, f.url+"/api/backups", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"unavailable"`) {
		t.Errorf("Require with the auth service down: %d %s; want 503 unavailable", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	req, _ = http.NewRequest(http.MethodGet, f.url+"/login", nil)
	login.ServeLogin(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "cannot be reached") {
		t.Errorf("/login with the auth service down: %d %s; want 503 saying so", rec.Code, rec.Body)
	}
}
