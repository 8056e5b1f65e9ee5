package authhttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, c := range []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"direct", "203.0.113.5:1234", nil, proxies, "203.0.113.5"},
		{"no trusted proxies ignores the header", "10.0.0.1:1", []string{"198.51.100.7"}, nil, "10.0.0.1"},
		{"untrusted peer's header ignored", "203.0.113.5:1", []string{"198.51.100.7"}, proxies, "203.0.113.5"},
		{"trusted proxy", "10.0.0.1:1", []string{"198.51.100.7"}, proxies, "198.51.100.7"},
		{"spoofed left end ignored", "10.0.0.1:1", []string{"6.6.6.6, 198.51.100.7"}, proxies, "198.51.100.7"},
		{"chain of proxies", "10.0.0.1:1", []string{"198.51.100.7, 10.0.0.2"}, proxies, "198.51.100.7"},
		{"several headers", "10.0.0.1:1", []string{"6.6.6.6", "198.51.100.7"}, proxies, "198.51.100.7"},
		{"garbage stops the walk", "10.0.0.1:1", []string{"198.51.100.7, nonsense"}, proxies, "10.0.0.1"},
		{"only proxies", "10.0.0.1:1", []string{"10.0.0.3"}, proxies, "10.0.0.3"},
		{"ipv6", "[2001:db8::1]:443", nil, proxies, "2001:db8::1"},
		{"ipv6 proxy", "[::1]:443", []string{"2001:db8::2"}, proxies, "2001:db8::2"},
		{"ipv4-mapped", "[::ffff:10.0.0.1]:1", []string{"198.51.100.7"}, proxies, "198.51.100.7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := clientIP(c.remote, c.xff, c.trusted); got != c.want {
				t.Errorf("clientIP(%q, %q) = %q, want %q", c.remote, c.xff, got, c.want)
			}
		})
	}
}

// FuzzClientIP: whatever a client writes in X-Forwarded-For, the result is an
// address (or the peer's own host), never a panic.
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:1", "198.51.100.7, 10.0.0.2")
	f.Add("[::1]:1", ", ,,")
	f.Add("10.0.0.1:1", "1.2.3.4%eth0")
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		got := clientIP(remote, []string{xff}, proxies)
		if _, err := netip.ParseAddr(got); err != nil && got != remote {
			if host := hostOf(remote); got != host {
				t.Errorf("clientIP(%q, %q) = %q: neither an address nor the peer", remote, xff, got)
			}
		}
	})
}

func hostOf(remote string) string {
	for i := len(remote) - 1; i >= 0; i-- {
		if remote[i] == ':' {
			h := remote[:i]
			if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
				h = h[1 : len(h)-1]
			}
			return h
		}
	}
	return remote
}

func TestErrorStatus(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want int
	}{
		{auth.Errorf(auth.CodeInvalid, "x"), 400},
		{auth.Errorf(auth.CodeUnauthorized, "x"), 401},
		{auth.Errorf(auth.CodeForbidden, "x"), 403},
		{auth.Errorf(auth.CodeNotFound, "x"), 404},
		{auth.Errorf(auth.CodeConflict, "x"), 409},
		{auth.Errorf(auth.CodeRateLimited, "x"), 429},
		{auth.Errorf(auth.CodeUnavailable, "x"), 503},
		{auth.Errorf(auth.CodeInternal, "x"), 500},
		{fmt.Errorf("wrapped: %w", auth.ErrNotFound), 404},
		{errors.New("database on fire"), 500},
		{&auth.LinkRequiredError{Provider: "Beta", Email: "a@b", Providers: []string{"Alpha"}}, 409},
	} {
		if got := errorStatus(c.err); got != c.want {
			t.Errorf("errorStatus(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	svc := auth.NewService(nil, nil, auth.DefaultConfig(), nil, nil)
	key := make([]byte, 32)
	for _, c := range []struct {
		name string
		o    Options
	}{
		{"no service", Options{PublicURL: "https://auth.example", CSRFKey: key}},
		{"no public URL", Options{Service: svc, CSRFKey: key}},
		{"plain http elsewhere", Options{Service: svc, PublicURL: "http://auth.example", CSRFKey: key}},
		{"relative", Options{Service: svc, PublicURL: "/auth", CSRFKey: key}},
		{"with a path", Options{Service: svc, PublicURL: "https://example.com/auth", CSRFKey: key}},
		{"short key", Options{Service: svc, PublicURL: "https://auth.example", CSRFKey: key[:16]}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(c.o); err == nil {
				t.Error("New accepted it")
			}
		})
	}
	for _, u := range []string{"https://auth.example", "http://localhost:8080", "http://127.0.0.1:1", "https://auth.example/"} {
		if _, err := New(Options{Service: svc, PublicURL: u, CSRFKey: key}); err != nil {
			t.Errorf("New with %s: %v", u, err)
		}
	}
}

// TestInternalErrorsAreLoggedNotShown: a failure's details reach the log, never
// the page or the JSON body.
func TestInternalErrorsAreLoggedNotShown(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	svc := auth.NewService(nil, nil, auth.DefaultConfig(), nil, nil)
	s, err := New(Options{Service: svc, PublicURL: "https://auth.example", CSRFKey: make([]byte, 32),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cause := fmt.Errorf("load user: %w", errors.New(`relation "users" does not exist, password=hunter2`))
	for _, path := range []string{"/account", "/api/v1/me"} {
		rec := httptest.NewRecorder()
		s.fail(rec, httptest.NewRequest("GET", path, nil), cause)
		if rec.Code != 500 || strings.Contains(rec.Body.String(), "hunter2") || strings.Contains(rec.Body.String(), "relation") ||
			!strings.Contains(rec.Body.String(), "Something went wrong on our side") {
			t.Errorf("%s: %d\n%s", path, rec.Code, rec.Body)
		}
	}
	if !strings.Contains(logs.String(), "relation") {
		t.Errorf("the log lacks the cause:\n%s", logs.String())
	}
}

func TestDevModeBanner(t *testing.T) {
	t.Parallel()
	for _, dev := range []bool{false, true} {
		svc := auth.NewService(nil, nil, auth.DefaultConfig(), nil, nil)
		s, err := New(Options{Service: svc, PublicURL: "https://auth.example", CSRFKey: make([]byte, 32), DevMode: dev})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/signin", nil))
		if got := strings.Contains(rec.Body.String(), "Development instance"); rec.Code != 200 || got != dev {
			t.Errorf("DevMode %t: status %d, banner shown %t", dev, rec.Code, got)
		}
	}
}
