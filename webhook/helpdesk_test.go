package webhook_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/webhook"
)

const helpdeskToken = "hd-s3cr3t-t0k3n"

// helpdesk is a fake helpdesk API over TLS: it records each request and answers
// with the status and body its answer function gives.
type helpdesk struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []*http.Request
	bodies [][]byte
}

func newHelpdesk(t *testing.T, tls bool, answer func(w http.ResponseWriter, r *http.Request)) *helpdesk {
	t.Helper()
	h := &helpdesk{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.reqs, h.bodies = append(h.reqs, r.Clone(r.Context())), append(h.bodies, body)
		h.mu.Unlock()
		answer(w, r)
	})
	if tls {
		h.srv = httptest.NewTLSServer(handler)
	} else {
		h.srv = httptest.NewServer(handler)
	}
	t.Cleanup(h.srv.Close)
	return h
}

func answerJSON(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func (h *helpdesk) client(t *testing.T, path string, cfg webhook.HelpdeskConfig) *webhook.Helpdesk {
	t.Helper()
	cfg.URL = h.srv.URL + path
	if cfg.Client == nil && strings.HasPrefix(h.srv.URL, "https") {
		cfg.Client = h.srv.Client()
	}
	c, err := webhook.NewHelpdesk(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var sampleTicket = auth.Ticket{
	Subject: "Account recovery: Ana Lima (Staff)", Body: "Ana lost her phone.\nApprove at https://auth.example/admin",
	RequesterEmail: "ana@hestami.example", RequestID: "5d1c3a52-59a1-4f36-9a3c-1c2b3d4e5f60",
}

func TestHelpdeskCreateTicket(t *testing.T) {
	t.Parallel()
	var _ auth.Helpdesk = (*webhook.Helpdesk)(nil)
	h := newHelpdesk(t, true, answerJSON(http.StatusCreated, `{"id": "HD-1042", "status": "open"}`))
	id, err := h.client(t, "/api/tickets", webhook.HelpdeskConfig{Token: helpdeskToken}).CreateTicket(t.Context(), sampleTicket)
	if err != nil || id != "HD-1042" {
		t.Fatalf("CreateTicket = %q, %v; want HD-1042", id, err)
	}
	r, body := h.reqs[0], h.bodies[0]
	if r.Method != http.MethodPost || r.URL.Path != "/api/tickets" {
		t.Errorf("request %s %s, want POST /api/tickets", r.Method, r.URL.Path)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+helpdeskToken {
		t.Errorf("Authorization = %q, want the bearer token", got)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body is not a JSON object of strings: %v: %s", err, body)
	}
	want := map[string]string{"subject": sampleTicket.Subject, "body": sampleTicket.Body, "requester_email": sampleTicket.RequesterEmail, "external_id": sampleTicket.RequestID}
	if len(got) != len(want) {
		t.Errorf("body has fields %v, want exactly %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("body %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestHelpdeskIDField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, field, answer, want string
	}{
		{"default string", "", `{"id":"abc"}`, "abc"},
		{"number", "", `{"id": 12345678901234567}`, "12345678901234567"},
		{"nested (Zendesk)", "ticket.id", `{"ticket":{"id":35436,"subject":"x"}}`, "35436"},
		{"other name", "ticket_number", `{"ticket_number":"INC0010001"}`, "INC0010001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHelpdesk(t, true, answerJSON(http.StatusOK, tc.answer))
			id, err := h.client(t, "/", webhook.HelpdeskConfig{IDField: tc.field}).CreateTicket(t.Context(), sampleTicket)
			if err != nil || id != tc.want {
				t.Fatalf("CreateTicket = %q, %v; want %q", id, err, tc.want)
			}
		})
	}
}

func TestHelpdeskFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		field  string
		answer func(http.ResponseWriter, *http.Request)
		status int      // for a *StatusError; 0: none
		want   []string // in the error
	}{
		{"unauthorized", "", answerJSON(http.StatusUnauthorized, `{"error":"invalid token"}`), 401, []string{"check the helpdesk token", "invalid token"}},
		{"forbidden", "", answerJSON(http.StatusForbidden, `{}`), 403, []string{"check the helpdesk token"}},
		{"not found", "", answerJSON(http.StatusNotFound, `no such route`), 404, []string{"check the helpdesk URL"}},
		{"server error", "", answerJSON(http.StatusInternalServerError, "database down\n"+strings.Repeat("trace ", 200)), 500, []string{"HTTP 500", "database down"}},
		{"redirect not followed", "", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://elsewhere.example/tickets", http.StatusTemporaryRedirect)
		}, 307, []string{"HTTP 307"}},
		{"not JSON", "", answerJSON(http.StatusOK, `<html>Welcome</html>`), 0, []string{"not JSON", "<html>Welcome"}},
		{"no id", "", answerJSON(http.StatusCreated, `{"ticket":{"id":1}}`), 0, []string{`no "id" field`, "set the id field"}},
		{"nested missing", "ticket.id", answerJSON(http.StatusCreated, `{"ticket":"T-1"}`), 0, []string{`no "ticket.id" field`}},
		{"empty id", "", answerJSON(http.StatusCreated, `{"id":""}`), 0, []string{"not a ticket id"}},
		{"null id", "", answerJSON(http.StatusCreated, `{"id":null}`), 0, []string{"not a ticket id"}},
		{"array", "", answerJSON(http.StatusCreated, `[{"id":"x"}]`), 0, []string{"not an object"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHelpdesk(t, true, tc.answer)
			id, err := h.client(t, "/tickets?key=path-secret", webhook.HelpdeskConfig{Token: helpdeskToken, IDField: tc.field}).CreateTicket(t.Context(), sampleTicket)
			if err == nil {
				t.Fatalf("CreateTicket = %q, nil; want an error", id)
			}
			var se *webhook.StatusError
			if got := errors.As(err, &se); got != (tc.status != 0) || got && se.Code != tc.status {
				t.Errorf("error %v: want a *StatusError with code %d: %v", err, tc.status, got)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, secret := range []string{helpdeskToken, "path-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret", err)
				}
			}
			if len(err.Error()) > 600 {
				t.Errorf("error is %d characters long; a helpdesk's answer should be cut", len(err.Error()))
			}
		})
	}
}

func TestHelpdeskTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	h := newHelpdesk(t, true, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	c := h.client(t, "/", webhook.HelpdeskConfig{Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := c.CreateTicket(t.Context(), sampleTicket)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("CreateTicket to a helpdesk that never answers = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("CreateTicket took %s with a 200ms timeout", d)
	}
}

func TestHelpdeskUntrustedCertificate(t *testing.T) {
	t.Parallel()
	h := newHelpdesk(t, true, answerJSON(http.StatusOK, `{"id":"x"}`))
	c, err := webhook.NewHelpdesk(webhook.HelpdeskConfig{URL: h.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTicket(t.Context(), sampleTicket); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("CreateTicket to a helpdesk with an unknown CA = %v, want a certificate error", err)
	}
	if len(h.reqs) != 0 {
		t.Errorf("the ticket reached a helpdesk whose certificate is not trusted")
	}
}

func TestHelpdeskPlainHTTPOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	h := newHelpdesk(t, false, answerJSON(http.StatusOK, `{"id":"loop-1"}`))
	id, err := h.client(t, "/", webhook.HelpdeskConfig{}).CreateTicket(t.Context(), sampleTicket)
	if err != nil || id != "loop-1" {
		t.Fatalf("CreateTicket over http on loopback = %q, %v; want loop-1", id, err)
	}
	if got := h.reqs[0].Header.Get("Authorization"); got != "" {
		t.Errorf("without a token, Authorization = %q; want none", got)
	}
	for _, tc := range []struct{ url, want string }{
		{"http://helpdesk.example/api", "plain http"},
		{"http://10.0.0.5/api", "plain http"},
		{"ftp://helpdesk.example/api", `scheme "ftp"`},
		{"https://user:pass@helpdesk.example/api", "credentials"},
		{"helpdesk.example/api", "absolute URL"},
		{"", "absolute URL"},
	} {
		if _, err := webhook.NewHelpdesk(webhook.HelpdeskConfig{URL: tc.url}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewHelpdesk(%q) = %v, want an error saying %q", tc.url, err, tc.want)
		}
	}
	for _, u := range []string{"http://localhost:9/x", "http://127.0.0.1:9/x", "http://[::1]:9/x", "https://helpdesk.example/api"} {
		if _, err := webhook.NewHelpdesk(webhook.HelpdeskConfig{URL: u}); err != nil {
			t.Errorf("NewHelpdesk(%q) = %v, want it accepted", u, err)
		}
	}
	for _, cfg := range []webhook.HelpdeskConfig{
		{URL: "https://h.example", IDField: "ticket..id"},
		{URL: "https://h.example", Token: "abc\n"},
		{URL: "https://h.example", Timeout: -time.Second},
	} {
		if _, err := webhook.NewHelpdesk(cfg); err == nil {
			t.Errorf("NewHelpdesk(%+v) accepted a bad setting", cfg)
		}
	}
}
