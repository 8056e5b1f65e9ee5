package authclient_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/authclient"
)

// TestClientReadsTheAnswers: each answer of GET /api/v1/me becomes the
// principal or the error a service can act on. (The answers are the auth
// service's, written out; the tests against the real service are in
// login_test.go.)
func TestClientReadsTheAnswers(t *testing.T) {
	t.Parallel()
	const me = `{"permissions":["backup:read"],"session":{"id":"s1","auth_time":"2031-01-02T03:04:05Z","mfa_at":"2031-01-02T03:05:00Z","methods":["google","otp"]},"user":{"id":"u1","type":"staff","email":"a@h.example","name":"A"}}`
	tests := []struct {
		name   string
		status int
		body   string
		check  func(t *testing.T, p *authclient.Principal, err error)
	}{
		{"signed in", 200, me, func(t *testing.T, p *authclient.Principal, err error) {
			if err != nil || p.UserID != "u1" || p.SessionID != "s1" || p.Type != "staff" || !p.Can("backup:read") ||
				!p.MFAAt.Equal(time.Date(2031, 1, 2, 3, 5, 0, 0, time.UTC)) || len(p.Methods) != 2 {
				t.Errorf("got %+v, %v", p, err)
			}
		}},
		{"signed in, MFA allows", 200, strings.Replace(me, `{"permissions"`, `{"mfa":{"action":"allow","accepted_methods":[]},"permissions"`, 1),
			func(t *testing.T, p *authclient.Principal, err error) {
				if err != nil || p.UserID != "u1" {
					t.Errorf("got %+v, %v", p, err)
				}
			}},
		{"session owes a challenge", 200, strings.Replace(me, `{"permissions"`, `{"mfa":{"action":"challenge","accepted_methods":["totp"],"location":"/mfa/challenge","reason":"Verify."},"permissions"`, 1),
			func(t *testing.T, p *authclient.Principal, err error) {
				var m *authclient.MFARequiredError
				if !errors.As(err, &m) || m.Code != "mfa_required" || m.Action != "challenge" || !strings.HasSuffix(m.Location, "/mfa/challenge") || !strings.HasPrefix(m.Location, "http://") {
					t.Errorf("got %+v, %v; want MFARequiredError with an absolute location", p, err)
				}
			}},
		{"401", 401, `{"error":{"code":"unauthorized","message":"Sign in."}}`, func(t *testing.T, p *authclient.Principal, err error) {
			if !errors.Is(err, authclient.ErrUnauthenticated) || errors.Is(err, authclient.ErrForbidden) {
				t.Errorf("got %v; want ErrUnauthenticated", err)
			}
		}},
		{"403 mfa_blocked", 403, `{"error":{"code":"mfa_blocked","message":"Blocked."},"mfa":{"action":"blocked","accepted_methods":[],"location":"/mfa/setup"}}`,
			func(t *testing.T, p *authclient.Principal, err error) {
				var m *authclient.MFARequiredError
				if !errors.As(err, &m) || m.Code != "mfa_blocked" {
					t.Errorf("got %v; want MFARequiredError mfa_blocked", err)
				}
			}},
		{"403 from the IP rules", 403, `{"error":{"code":"forbidden","message":"Not from this network."}}`, func(t *testing.T, p *authclient.Principal, err error) {
			var e *authclient.Error
			if !errors.Is(err, authclient.ErrForbidden) || !errors.As(err, &e) || e.Message != "Not from this network." {
				t.Errorf("got %v; want ErrForbidden with the message", err)
			}
		}},
		{"500", 500, `{"error":{"code":"internal","message":"Oops."}}`, func(t *testing.T, p *authclient.Principal, err error) {
			if !errors.Is(err, authclient.ErrUnavailable) {
				t.Errorf("got %v; want ErrUnavailable", err)
			}
		}},
		{"not the auth service", 200, `<html>hello</html>`, func(t *testing.T, p *authclient.Principal, err error) {
			if !errors.Is(err, authclient.ErrUnavailable) || p != nil {
				t.Errorf("got %+v, %v; want ErrUnavailable", p, err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/v1/me" || r.Header.Get("Authorization") != "Bearer tok" {
					http.Error(w, "unexpected "+r.URL.Path+" "+r.Header.Get("Authorization"), http.StatusTeapot)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			t.Cleanup(srv.Close)
			c, err := authclient.New(authclient.Config{URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			p, err := c.Principal(t.Context(), "tok")
			tc.check(t, p, err)
		})
	}
}

func TestNewChecksTheURL(t *testing.T) {
	t.Parallel()
	for raw, ok := range map[string]bool{
		"https://auth.hestami.example":  true,
		"https://auth.hestami.example/": true,
		"http://localhost:8080":         true,
		"http://127.0.0.1:8080":         true,
		"http://[::1]:8080":             true,
		"http://auth.hestami.example":   false,
		"":                              false,
		"auth.hestami.example":          false,
		"https://auth.example/?x=1":     false,
		"https://user@auth.example":     false,
	} {
		_, err := authclient.New(authclient.Config{URL: raw})
		if (err == nil) != ok {
			t.Errorf("New(%q): %v; want ok=%t", raw, err, ok)
		}
	}
	if _, err := authclient.New(authclient.Config{URL: ""}); err == nil || !strings.Contains(err.Error(), "https://auth.hestami.example") {
		t.Errorf("the error for an empty URL does not show an example: %v", err)
	}
}

func TestNewLoginReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := authclient.NewLogin(authclient.LoginConfig{PublicURL: "http://daemon.example", PathPrefix: "auth"})
	for _, want := range []string{"Client is required", "ClientID is required", "Sealer is required", "PublicURL", "PathPrefix"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewLogin error %v; want it to mention %s", err, want)
		}
	}
}

func TestPrincipal(t *testing.T) {
	t.Parallel()
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	p := &authclient.Principal{Permissions: []string{"backup:read", "backup:restore"}, MFAAt: now.Add(-5 * time.Minute)}
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"has backup:restore", p.Can("backup:restore"), true},
		{"lacks backup:run", p.Can("backup:run"), false},
		{"nil can nothing", (*authclient.Principal)(nil).Can("backup:read"), false},
		{"factor exactly 5 minutes old", p.MFAWithin(5*time.Minute, now), true},
		{"factor older than 4 minutes", p.MFAWithin(4*time.Minute, now), false},
		{"no factor", (&authclient.Principal{}).MFAWithin(time.Hour, now), false},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: %t, want %t", tc.name, tc.got, tc.want)
		}
	}
}
