package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/alert/alerttest"
	"github.com/hestami/hestami/webhook"
)

// receiver is an HTTPS webhook endpoint that keeps what it accepts.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	down   bool
	bodies [][]byte
	heads  []http.Header
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.down || req.Method != http.MethodPost {
			http.Error(w, "receiver down for maintenance", http.StatusServiceUnavailable)
			return
		}
		r.bodies = append(r.bodies, body)
		r.heads = append(r.heads, req.Header.Clone())
		io.WriteString(w, "ok")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func (r *receiver) received() ([][]byte, []http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies, r.heads
}

// roots trusts the receiver's test certificate, as a ca_file would.
func (r *receiver) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(r.srv.Certificate())
	return p
}

const slackToken = "T0HESTAMI/B0HESTAMI/s3cr3tT0k3nInThePath"

func TestContractJSON(t *testing.T) {
	t.Parallel()
	alerttest.RunSender(t, func(t *testing.T) alerttest.Harness {
		r := newReceiver(t)
		s, err := webhook.New(webhook.Config{URL: r.srv.URL + "/hooks/" + slackToken, RootCAs: r.roots(), Secret: []byte("k")})
		if err != nil {
			t.Fatal(err)
		}
		return alerttest.Harness{Sender: s, SetDown: r.setDown, Secrets: []string{slackToken}, Received: func(t *testing.T) []string {
			bodies, _ := r.received()
			var out []string
			for _, b := range bodies {
				var p webhook.Payload
				if err := json.Unmarshal(b, &p); err != nil {
					t.Fatalf("receiver got invalid JSON: %v: %s", err, b)
				}
				out = append(out, strings.Join([]string{p.Key, string(p.State), string(p.Severity), p.Summary, p.Details}, "\n"))
			}
			return out
		}}
	})
}

func TestContractSlack(t *testing.T) {
	t.Parallel()
	alerttest.RunSender(t, func(t *testing.T) alerttest.Harness {
		r := newReceiver(t)
		s, err := webhook.New(webhook.Config{URL: r.srv.URL + "/services/" + slackToken, Kind: webhook.Slack, RootCAs: r.roots()})
		if err != nil {
			t.Fatal(err)
		}
		return alerttest.Harness{Sender: s, SetDown: r.setDown, Secrets: []string{slackToken}, Received: func(t *testing.T) []string {
			bodies, _ := r.received()
			var out []string
			for _, b := range bodies {
				var m webhook.SlackMessage
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatalf("receiver got invalid JSON: %v: %s", err, b)
				}
				// What Mattermost shows: the text alone.
				out = append(out, html.UnescapeString(m.Text))
			}
			return out
		}}
	})
}

func TestJSONPayloadAndSignature(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	secret := []byte("receiver-shared-secret")
	s, err := webhook.New(webhook.Config{URL: r.srv.URL + "/alerts", RootCAs: r.roots(), Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []alert.State{alert.Firing, alert.Resolved} {
		if err := s.Send(t.Context(), alerttest.Sample(st)); err != nil {
			t.Fatalf("Send(%s) = %v", st, err)
		}
	}
	bodies, heads := r.received()
	if len(bodies) != 2 {
		t.Fatalf("receiver got %d requests, want 2", len(bodies))
	}
	for i, b := range bodies {
		// The receiver's side of the signature: HMAC-SHA256 over the raw body.
		mac := hmac.New(sha256.New, secret)
		mac.Write(b)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		if got := heads[i].Get("X-Hestami-Signature"); !hmac.Equal([]byte(got), []byte(want)) {
			t.Errorf("request %d: X-Hestami-Signature = %q, want %q", i, got, want)
		}
		if ct := heads[i].Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("request %d: Content-Type = %q", i, ct)
		}
	}
	wantFiring := `{"schema":"hestami.notification.v1","key":"archiving-stalled","state":"firing","severity":"critical",` +
		`"title":"CRITICAL: Archivage bloqué — WAL archiving stalled on db1","summary":"Archivage bloqué — WAL archiving stalled on db1",` +
		`"details":"5 segments are waiting; the oldest since 05:06 UTC. Check hestami wal status.",` +
		`"labels":{"cluster":"main","instance":"db1"},"time":"2025-03-04T06:36:07Z","first_seen":"2025-03-04T05:06:07Z","count":7}`
	if string(bodies[0]) != wantFiring {
		t.Errorf("firing payload =\n%s\nwant\n%s", bodies[0], wantFiring)
	}
	var resolved map[string]any
	if err := json.Unmarshal(bodies[1], &resolved); err != nil {
		t.Fatal(err)
	}
	if resolved["state"] != "resolved" || resolved["resolved_at"] != "2025-03-04T07:06:07Z" {
		t.Errorf("resolved payload: state %v, resolved_at %v; want resolved at 2025-03-04T07:06:07Z", resolved["state"], resolved["resolved_at"])
	}
	if got := webhook.Sign(secret, bodies[0]); got != heads[0].Get("X-Hestami-Signature") {
		t.Errorf("Sign() = %q, differs from the header sent", got)
	}
}

func TestUnsignedHasNoSignatureHeader(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	s, err := webhook.New(webhook.Config{URL: r.srv.URL, RootCAs: r.roots()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), alerttest.Sample(alert.Firing)); err != nil {
		t.Fatal(err)
	}
	if _, heads := r.received(); heads[0].Get("X-Hestami-Signature") != "" {
		t.Errorf("unsigned webhook sent X-Hestami-Signature %q", heads[0].Get("X-Hestami-Signature"))
	}
}

func TestRefusalIsStatusError(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("stack trace line\n", 100)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "database unavailable\n"+long, http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	s, err := webhook.New(webhook.Config{URL: srv.URL, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(t.Context(), alerttest.Sample(alert.Firing))
	var se *webhook.StatusError
	if !errors.As(err, &se) || se.Code != 500 {
		t.Fatalf("Send to a 500 receiver = %v, want a *StatusError with code 500", err)
	}
	if !strings.HasPrefix(se.Body, "database unavailable stack trace line") || len(se.Body) > 300 || strings.Contains(se.Body, "\n") {
		t.Errorf("error body = %q, want the start of the body on one line, cut short", se.Body)
	}
	if !strings.Contains(err.Error(), "HTTP 500 Internal Server Error: database unavailable") {
		t.Errorf("error = %q, want the status and the body's start", err)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	srv := httptest.NewTLSServer(http.RedirectHandler(r.srv.URL, http.StatusFound))
	t.Cleanup(srv.Close)
	s, err := webhook.New(webhook.Config{URL: srv.URL, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	var se *webhook.StatusError
	if err := s.Send(t.Context(), alerttest.Sample(alert.Firing)); !errors.As(err, &se) || se.Code != http.StatusFound {
		t.Fatalf("Send to a redirect = %v, want a 302 StatusError", err)
	}
}

func TestUntrustedCertificate(t *testing.T) {
	t.Parallel()
	r := newReceiver(t)
	s, err := webhook.New(webhook.Config{URL: r.srv.URL}) // system roots only
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(t.Context(), alerttest.Sample(alert.Firing))
	var ue x509.UnknownAuthorityError
	if !errors.As(err, &ue) {
		t.Fatalf("Send to a self-signed receiver without its CA = %v, want an unknown authority error", err)
	}
	if bodies, _ := r.received(); len(bodies) != 0 {
		t.Fatal("payload reached an untrusted receiver")
	}
}

func TestPlainHTTP(t *testing.T) {
	t.Parallel()
	var got int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { mu.Lock(); got++; mu.Unlock() }))
	t.Cleanup(srv.Close)
	if _, err := webhook.New(webhook.Config{URL: srv.URL}); err == nil || !strings.Contains(err.Error(), "allow_http") {
		t.Fatalf("New(http URL) = %v, want a refusal that names allow_http", err)
	}
	s, err := webhook.New(webhook.Config{URL: srv.URL, AllowHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), alerttest.Sample(alert.Firing)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got != 1 {
		t.Fatalf("receiver got %d requests, want 1", got)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	s, err := webhook.New(webhook.Config{URL: srv.URL, Client: srv.Client(), Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), alerttest.Sample(alert.Firing)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a hung receiver = %v, want a deadline error", err)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]webhook.Config{
		"NoURL":       {},
		"RelativeURL": {URL: "/hooks/x"},
		"FTP":         {URL: "ftp://example.com/x"},
		"UnknownKind": {URL: "https://example.com/x", Kind: "teams"},
		"SignedSlack": {URL: "https://hooks.slack.com/services/x", Kind: webhook.Slack, Secret: []byte("k")},
	} {
		if _, err := webhook.New(cfg); err == nil {
			t.Errorf("%s: New = nil error", name)
		}
	}
}

func TestDefaultNames(t *testing.T) {
	t.Parallel()
	a, _ := webhook.New(webhook.Config{URL: "https://hooks.slack.com/services/" + slackToken, Kind: webhook.Slack})
	b, _ := webhook.New(webhook.Config{URL: "https://hooks.slack.com/services/T1/B2/other", Kind: webhook.Slack})
	c, _ := webhook.New(webhook.Config{URL: "https://ops.example.com/hook", Name: "ops"})
	if !strings.HasPrefix(a.Name(), "slack:hooks.slack.com#") || a.Name() == b.Name() {
		t.Errorf("names %q and %q: want slack:hooks.slack.com#<hash>, distinct per URL", a.Name(), b.Name())
	}
	if c.Name() != "ops" {
		t.Errorf("Name() = %q, want the configured ops", c.Name())
	}
}
