package authhttp_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/net/html"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
	"github.com/hestami/hestami/oidcprovider"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/prometheus"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fakeIdP is a stand-in identity provider: its /authorize sends the browser
// straight back with a code for the profile set with next, and Exchange redeems
// each code once. The provider protocols themselves are package oauth's (tested
// against oauthtest); here they only need to deliver a Profile.
type fakeIdP struct {
	srv   *httptest.Server
	mu    sync.Mutex
	next  map[string]auth.Profile // by provider
	deny  map[string]bool
	codes map[string]auth.Profile
}

func newFakeIdP(t *testing.T) *fakeIdP {
	f := &fakeIdP{next: map[string]auth.Profile{}, deny: map[string]bool{}, codes: map[string]auth.Profile{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.authorize))
	t.Cleanup(f.srv.Close)
	return f
}

// setNext makes the next sign-in at provider come back as p.
func (f *fakeIdP) setNext(provider string, p auth.Profile) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next[provider] = p
}

func (f *fakeIdP) setDeny(provider string, deny bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deny[provider] = deny
}

func (f *fakeIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	back, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("state") == "" || q.Get("code_challenge") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	prof, ok := f.next[q.Get("provider")]
	deny := f.deny[q.Get("provider")]
	code := auth.NewToken()
	if ok {
		f.codes[code] = prof
	}
	f.mu.Unlock()
	v := url.Values{"state": {q.Get("state")}}
	switch {
	case deny:
		v.Set("error", "access_denied")
	case !ok:
		http.Error(w, "the test set no profile for "+q.Get("provider"), http.StatusInternalServerError)
		return
	default:
		v.Set("code", code)
	}
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// fakeProvider is an auth.Provider over a fakeIdP.
type fakeProvider struct {
	name, display string
	idp           *fakeIdP
	redirectURL   string
}

func (p *fakeProvider) Name() string        { return p.name }
func (p *fakeProvider) DisplayName() string { return p.display }

func (p *fakeProvider) AuthCodeURL(r auth.AuthCodeRequest) string {
	v := url.Values{"provider": {p.name}, "state": {r.State}, "redirect_uri": {p.redirectURL}, "code_challenge": {auth.HashToken(r.Verifier)}, "nonce": {r.Nonce}}
	return p.idp.srv.URL + "/authorize?" + v.Encode()
}

func (p *fakeProvider) Exchange(ctx context.Context, code string, r auth.AuthCodeRequest) (*auth.Profile, error) {
	p.idp.mu.Lock()
	defer p.idp.mu.Unlock()
	prof, ok := p.idp.codes[code]
	if !ok {
		return nil, auth.Errorf(auth.CodeUnauthorized, "%s refused the sign-in code. Start the sign-in again.", p.display)
	}
	delete(p.idp.codes, code)
	return &prof, nil
}

var _ auth.Provider = (*fakeProvider)(nil)

// env is one auth service on a real PostgreSQL database, served on loopback with
// the public URL http://localhost:PORT.
type env struct {
	t       *testing.T
	base    string
	store   *postgres.AuthStore
	svc     *auth.Service
	idp     *fakeIdP
	metrics *prometheus.AuthMetrics
	logs    *syncBuffer
}

type envOptions struct {
	returnOrigins []string
	oidc          authhttp.OIDCLogin
	providerTypes map[string][]auth.UserType
	// oidcClients, if any, mount the real OpenID Connect provider at /oidc/
	// with these clients (and make it the OIDCLogin).
	oidcClients []oidcprovider.Client
	// providers adds real providers (package oauth, against oauthtest's fakes)
	// beside the alpha and beta stand-ins; redirect is each one's callback URL.
	providers func(redirect func(name string) string) []auth.Provider
	// trustedProxies are believed about X-Forwarded-For.
	trustedProxies []netip.Prefix
	// now is the clock of the service and the server (time.Now if nil).
	now func() time.Time
	// mfa, if set, makes the MFA components over the test's database and
	// turns MFA on.
	mfa func(e *env, pool *pgxpool.Pool, logger *slog.Logger) *authhttp.MFAOptions
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := t.Context()
	pool, err := postgres.OpenPool(ctx, pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := postgres.MigrateUp(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: postgres.NewAuthStore(pool), idp: newFakeIdP(t), metrics: prometheus.NewAuthMetrics(), logs: &syncBuffer{}}
	e.base = fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	var providers []auth.Provider
	for _, p := range [][2]string{{"alpha", "Alpha"}, {"beta", "Beta"}} {
		providers = append(providers, &fakeProvider{name: p[0], display: p[1], idp: e.idp, redirectURL: authhttp.CallbackURL(e.base, p[0])})
	}
	if o.providers != nil {
		providers = append(providers, o.providers(func(name string) string { return authhttp.CallbackURL(e.base, name) })...)
	}
	cfg := auth.DefaultConfig()
	cfg.ReturnOrigins = o.returnOrigins
	cfg.ProviderTypes = o.providerTypes
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	now := o.now
	if now == nil {
		now = time.Now
	}
	e.svc = auth.NewService(e.store, providers, cfg, now, logger)
	var mfa *authhttp.MFAOptions
	if o.mfa != nil {
		mfa = o.mfa(e, pool, logger)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	var oidcHandler http.Handler
	var tokens authhttp.AccessTokens
	if len(o.oidcClients) > 0 {
		op, err := oidcprovider.New(ctx, oidcprovider.Config{
			Issuer: e.base + "/oidc", Clients: o.oidcClients,
			LoginURL: func(id string) string { return e.base + "/oidc-login?" + url.Values{"id": {id}}.Encode() },
		}, postgres.NewOIDCStore(pool), e.store, now, logger)
		if err != nil {
			t.Fatal(err)
		}
		o.oidc, oidcHandler = op, op.Handler()
		tokens = authhttp.AccessTokensFunc(func(ctx context.Context, token string) (*authhttp.AccessToken, error) {
			at, err := op.VerifyAccessToken(ctx, token)
			if err != nil {
				return nil, err
			}
			return &authhttp.AccessToken{UserID: at.UserID, ClientID: at.ClientID, SessionID: at.SessionID, Scopes: at.Scopes, Expiry: at.Expiry}, nil
		})
	}
	srv, err := authhttp.New(authhttp.Options{
		Service: e.svc, PublicURL: e.base, Logger: logger, CSRFKey: key,
		Ready: func(ctx context.Context) error { return pool.Ping(ctx) },
		OIDC:  o.oidc, OIDCHandler: oidcHandler,
		Metrics: e.metrics, MetricsHandler: e.metrics.Handler(logger),
		Now: now, MFA: mfa, TrustedProxies: o.trustedProxies, AccessTokens: tokens,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: srv.Handler()}}
	hs.Start()
	t.Cleanup(hs.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log:\n%s", e.logs.String())
		}
	})
	return e
}

// syncBuffer is a log destination safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// profile is a verified identity at provider.
func profile(provider, subject, email string) auth.Profile {
	return auth.Profile{Provider: provider, Subject: subject, Email: email, EmailVerified: true, Name: "Person " + subject}
}

// browser is an http.Client with a cookie jar that follows redirects, recording
// each response that redirected it.
type browser struct {
	t         *testing.T
	e         *env
	c         *http.Client
	jar       *cookiejar.Jar
	redirects []*http.Response
	stopAt    string // stop following redirects at a URL with this prefix
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: e.t, e: e, jar: jar}
	b.c = &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		b.redirects = append(b.redirects, req.Response)
		if b.stopAt != "" && strings.HasPrefix(req.URL.String(), b.stopAt) {
			return http.ErrUseLastResponse
		}
		if len(via) > 10 {
			return fmt.Errorf("too many redirects")
		}
		return nil
	}}
	return b
}

// page is a response with its body read.
type page struct {
	*http.Response
	body string
}

func (b *browser) do(req *http.Request) *page {
	b.t.Helper()
	b.redirects = nil
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return &page{resp, string(body)}
}

func (b *browser) url(path string) string {
	if strings.HasPrefix(path, "http") {
		return path
	}
	return b.e.base + path
}

func (b *browser) get(path string) *page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.url(path), nil)
	return b.do(req)
}

// post submits a form as a browser on this site would (Origin and
// Sec-Fetch-Site: same-origin).
func (b *browser) post(path string, form url.Values) *page {
	b.t.Helper()
	return b.postWith(path, form, map[string]string{"Origin": b.e.base, "Sec-Fetch-Site": "same-origin"})
}

func (b *browser) postWith(path string, form url.Values, headers map[string]string) *page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.url(path), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return b.do(req)
}

// api sends a JSON request (body may be "") as the frontend's same-origin fetch.
func (b *browser) api(method, path, body string) *page {
	b.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, b.url(path), r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.do(req)
}

// submit finds the form posting to action on p, and submits it with its own
// fields plus extra.
func (b *browser) submit(p *page, action string, extra url.Values) *page {
	b.t.Helper()
	form := formFields(b.t, p.body, action)
	for k, v := range extra {
		form[k] = v
	}
	return b.post(action, form)
}

// cookie returns the browser's cookie called name ("" if none).
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.e.base)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *browser) setCookie(name, value string) {
	u, _ := url.Parse(b.e.base)
	b.jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// signIn goes through the sign-in page and provider as the person with prof,
// asking for an account of type t ("" to only sign in), and returns the page it
// ends on.
func (b *browser) signIn(prof auth.Profile, t auth.UserType, returnTo string) *page {
	b.t.Helper()
	q := url.Values{}
	if t != "" {
		q.Set("type", string(t))
	}
	if returnTo != "" {
		q.Set("return_to", returnTo)
	}
	p := b.get("/signin?" + q.Encode())
	if p.StatusCode != http.StatusOK {
		b.t.Fatalf("GET /signin: %d\n%s", p.StatusCode, p.body)
	}
	b.e.idp.setNext(prof.Provider, prof)
	return b.submit(p, "/signin/"+prof.Provider, nil)
}

// mustSignIn signs in and fails the test unless it ends on the account page.
func (b *browser) mustSignIn(prof auth.Profile, t auth.UserType) *page {
	b.t.Helper()
	p := b.signIn(prof, t, "")
	if p.StatusCode != http.StatusOK || p.Request.URL.Path != "/account" {
		b.t.Fatalf("sign-in as %s/%s ended at %s with %d:\n%s", prof.Provider, prof.Subject, p.Request.URL, p.StatusCode, text(p.body))
	}
	return p
}

// setCookies returns the Set-Cookie headers of every response of the last
// request, redirects included.
func (b *browser) setCookies(last *page) []*http.Cookie {
	var out []*http.Cookie
	for _, r := range append(b.redirects, last.Response) {
		out = append(out, r.Cookies()...)
	}
	return out
}

// formFields returns the fields of the form whose action is action.
func formFields(t *testing.T, body, action string) url.Values {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var form *html.Node
	walk(doc, func(n *html.Node) {
		if form == nil && n.Type == html.ElementNode && n.Data == "form" && attr(n, "action") == action {
			form = n
		}
	})
	if form == nil {
		t.Fatalf("no form posting to %s on the page:\n%s", action, body)
	}
	v := url.Values{}
	walk(form, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" && attr(n, "name") != "" {
			if typ := attr(n, "type"); (typ == "checkbox" || typ == "radio") && !hasAttr(n, "checked") {
				return
			}
			v.Add(attr(n, "name"), attr(n, "value"))
		}
	})
	return v
}

func walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, name string) bool {
	for _, a := range n.Attr {
		if a.Key == name {
			return true
		}
	}
	return false
}

// text is the visible text of an HTML page, whitespace collapsed.
func text(body string) string {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return body
	}
	var sb strings.Builder
	walk(doc, func(n *html.Node) {
		if n.Type == html.TextNode && (n.Parent == nil || n.Parent.Data != "style" && n.Parent.Data != "title") {
			sb.WriteString(n.Data)
			sb.WriteByte(' ')
		}
	})
	return strings.Join(strings.Fields(sb.String()), " ")
}

// randomID is a fresh provider subject.
func randomID() string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
