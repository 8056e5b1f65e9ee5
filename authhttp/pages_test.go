package authhttp_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/hestami/hestami/auth"
)

// checkPage fails the test for what a person using a screen reader, a keyboard
// or a phone would trip over, and for missing security headers.
func checkPage(t *testing.T, name string, p *page) {
	t.Helper()
	h := p.Header
	for k, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-store",
		"Referrer-Policy":        "same-origin",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s is %q, want %q", name, k, got, want)
		}
	}
	csp := h.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("%s: Content-Security-Policy %q", name, csp)
	}
	if !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Errorf("%s: Content-Type %q", name, h.Get("Content-Type"))
	}

	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var h1, titles int
	labels := map[string]bool{}
	var fields []*html.Node
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		switch n.Data {
		case "html":
			if attr(n, "lang") != "en" {
				t.Errorf("%s: <html lang=%q>, want en", name, attr(n, "lang"))
			}
		case "title":
			titles++
			if n.FirstChild == nil || strings.TrimSpace(n.FirstChild.Data) == "" {
				t.Errorf("%s: empty <title>", name)
			}
		case "h1":
			h1++
		case "label":
			labels[attr(n, "for")] = true
		case "input", "select", "textarea":
			if typ := attr(n, "type"); typ != "hidden" && typ != "submit" {
				fields = append(fields, n)
			}
		case "button":
			if strings.TrimSpace(nodeText(n)) == "" {
				t.Errorf("%s: a button without text", name)
			}
		case "script", "style":
			t.Errorf("%s: inline <%s> (the CSP forbids it)", name, n.Data)
		case "a":
			if strings.HasPrefix(attr(n, "href"), "javascript:") {
				t.Errorf("%s: javascript: link", name)
			}
		}
		if hasAttr(n, "style") || hasAttr(n, "onclick") {
			t.Errorf("%s: inline style or handler on <%s>", name, n.Data)
		}
	})
	if titles != 1 {
		t.Errorf("%s: %d <title>s, want 1", name, titles)
	}
	if h1 != 1 {
		t.Errorf("%s: %d <h1>s, want exactly 1", name, h1)
	}
	for _, f := range fields {
		if id := attr(f, "id"); id == "" || !labels[id] {
			t.Errorf("%s: <%s name=%q> has no <label for>", name, f.Data, attr(f, "name"))
		}
	}
	if p.StatusCode >= 400 && !strings.Contains(p.body, `role="alert"`) {
		t.Errorf("%s: an error page without role=\"alert\"", name)
	}
}

func nodeText(n *html.Node) string {
	var sb strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			sb.WriteString(c.Data)
		}
	})
	return sb.String()
}

func TestPagesAreAccessible(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	admin, adminUser := e.staff(t, "staff:admin")
	anon := e.browser()
	owner, _ := e.owner(t)

	for _, c := range []struct {
		name   string
		b      *browser
		path   string
		status int
	}{
		{"sign-in", anon, "/signin", 200},
		{"sign-up", anon, "/signin?type=provider&error=session_ended", 200},
		{"account", admin, "/account", 200},
		{"users", admin, "/admin/users?q=a&type=staff", 200},
		{"user", admin, "/admin/users/" + adminUser.ID, 200},
		{"audit", admin, "/admin/audit", 200},
		{"forged callback", anon, "/auth/alpha/callback?state=x&code=y", 401},
		{"not found", admin, "/no/such/page", 404},
		{"no OpenID Connect provider", e.browser(), "/oidc-login", 404},
		{"forbidden", owner, "/admin/audit", 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := c.b.get(c.path)
			if p.StatusCode != c.status {
				t.Fatalf("GET %s: %d, want %d\n%s", c.path, p.StatusCode, c.status, text(p.body))
			}
			checkPage(t, c.name, p)
		})
	}
}

func TestSignInPageOffersProvidersAndAccountTypes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{providerTypes: map[string][]auth.UserType{"beta": {auth.TypeStaff}}})
	b := e.browser()
	p := b.get("/signin?return_to=" + url.QueryEscape("/account?x=1"))
	body := text(p.body)
	for _, want := range []string{"Sign in with Alpha", "Sign in with Beta", "I'm a property owner", "I'm a service provider"} {
		if !strings.Contains(body, want) {
			t.Errorf("sign-in page lacks %q:\n%s", want, body)
		}
	}
	if f := formFields(t, p.body, "/signin/alpha"); f.Get("return_to") != "/account?x=1" || f.Get("csrf") == "" {
		t.Errorf("sign-in form fields %v", f)
	}
	// Signing up as an owner offers only the providers that serve owners.
	p = b.get("/signin?type=owner")
	body = text(p.body)
	if !strings.Contains(body, "Create your Property owner account") || !strings.Contains(body, "Continue with Alpha") || strings.Contains(body, "Beta") {
		t.Errorf("owner sign-up page:\n%s", body)
	}
	if f := formFields(t, p.body, "/signin/alpha"); f.Get("type") != "owner" {
		t.Errorf("sign-up form type %q", f.Get("type"))
	}
	// An unsafe return_to is dropped, not echoed.
	p = b.get("/signin?return_to=" + url.QueryEscape("https://evil.example/"))
	if strings.Contains(p.body, "evil.example") {
		t.Error("the sign-in page echoes an unsafe return_to")
	}
	// ?error only ever shows our own messages.
	p = b.get("/signin?error=" + url.QueryEscape("Your account is locked, call +1 555"))
	if strings.Contains(p.body, "555") || !strings.Contains(text(p.body), "did not complete") {
		t.Errorf("the sign-in page echoes ?error:\n%s", text(p.body))
	}
}

func TestHealthReadyMetricsAndOpenAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	b := e.browser()
	b.mustSignIn(profile("alpha", randomID(), "m@example.com"), auth.TypeOwner)
	e.browser().get("/auth/nonsense/callback?state=forged")

	for _, path := range []string{"/healthz", "/readyz"} {
		if p := b.get(path); p.StatusCode != 200 || strings.TrimSpace(p.body) != "ok" {
			t.Errorf("%s: %d %q", path, p.StatusCode, p.body)
		}
	}
	p := b.get("/api/openapi.json")
	if p.StatusCode != 200 || p.Header.Get("Content-Type") != "application/json" || !strings.Contains(p.body, `"openapi": "3.1.0"`) {
		t.Errorf("/api/openapi.json: %d %s", p.StatusCode, p.Header.Get("Content-Type"))
	}
	p = b.get("/assets/style.css")
	if p.StatusCode != 200 || !strings.HasPrefix(p.Header.Get("Content-Type"), "text/css") {
		t.Errorf("/assets/style.css: %d %s", p.StatusCode, p.Header.Get("Content-Type"))
	}

	resp, err := http.Get(e.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	metrics := string(raw)
	for _, want := range []string{
		`hestami_auth_signins_total{outcome="signup",provider="alpha"} 1`,
		`hestami_auth_signins_total{outcome="unauthorized",provider="unknown"} 1`,
		`hestami_auth_http_requests_total{code="2xx",route="GET /account"} 1`,
		`hestami_auth_http_requests_total{code="3xx",route="GET /auth/{provider}/callback"} 1`,
		`hestami_auth_http_request_duration_seconds_count{route="POST /signin/{provider}"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", metrics)
	}
}
