package smtp_test

import (
	"context"
	"errors"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/alert/alerttest"
	"github.com/hestami/hestami/smtp"
	"github.com/hestami/hestami/smtp/smtptest"
)

const password = "correct horse battery staple"

var users = map[string]string{"hestami": password}

func config(t *testing.T, srv *smtptest.Server, security smtp.Security) smtp.Config {
	t.Helper()
	return smtp.Config{
		Host:     "127.0.0.1",
		Port:     srv.Port,
		Security: security,
		Username: "hestami",
		Password: password,
		From:     "Hestami alerts <alerts@example.com>",
		To:       []string{"oncall@example.com", "Équipe DBA <dba@example.org>"},
		RootCAs:  srv.RootCAs(),
		Timeout:  10 * time.Second,
	}
}

func newSender(t *testing.T, cfg smtp.Config) *smtp.Sender {
	t.Helper()
	s, err := smtp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	alerttest.RunSender(t, func(t *testing.T) alerttest.Harness {
		srv := smtptest.Start(t, smtptest.Options{Users: users})
		return alerttest.Harness{
			Sender:  newSender(t, config(t, srv, smtp.StartTLS)),
			SetDown: srv.SetDown,
			Secrets: []string{password},
			Received: func(t *testing.T) []string {
				var out []string
				for _, m := range srv.Messages() {
					p := m.Parse(t)
					out = append(out, p.Subject+"\n"+p.Body)
				}
				return out
			},
		}
	})
}

func TestStartTLSMessage(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Users: users})
	cfg := config(t, srv, smtp.StartTLS)
	cfg.Now = func() time.Time { return time.Date(2025, 3, 4, 6, 36, 9, 0, time.FixedZone("CET", 3600)) }
	n := alerttest.Sample(alert.Firing)
	if err := newSender(t, cfg).Send(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if !m.TLS || m.Mech != "PLAIN" || m.User != "hestami" {
		t.Errorf("session: tls %v, auth %q as %q; want TLS, PLAIN as hestami", m.TLS, m.Mech, m.User)
	}
	if m.From != "alerts@example.com" || !slices.Equal(m.To, []string{"oncall@example.com", "dba@example.org"}) {
		t.Errorf("envelope: from %q to %q", m.From, m.To)
	}
	p := m.Parse(t)
	for k, want := range map[string]string{
		"Date":                      "Tue, 04 Mar 2025 06:36:09 +0100",
		"From":                      `"Hestami alerts" <alerts@example.com>`,
		"MIME-Version":              "1.0",
		"Content-Type":              "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable",
		"Auto-Submitted":            "auto-generated",
		"X-Hestami-Alert":           "archiving-stalled",
		"X-Hestami-State":           "firing",
		"X-Hestami-Severity":        "critical",
	} {
		if got := p.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	to, err := p.Header.AddressList("To")
	if err != nil || len(to) != 2 || to[1].Name != "Équipe DBA" || to[1].Address != "dba@example.org" {
		t.Errorf("To = %v, %v; want both recipients, names decoded", to, err)
	}
	if want := "[hestami] CRITICAL: Archivage bloqué — WAL archiving stalled on db1"; p.Subject != want {
		t.Errorf("Subject = %q, want %q", p.Subject, want)
	}
	if !regexp.MustCompile(`^<1741066569\.[0-9a-f]{24}@example\.com>$`).MatchString(p.Header.Get("Message-ID")) {
		t.Errorf("Message-ID = %q, want <unix.random@example.com>", p.Header.Get("Message-ID"))
	}
	if want := strings.ReplaceAll(n.Text(), "\r\n", "\n"); strings.TrimRight(p.Body, "\n") != strings.TrimRight(want, "\n") {
		t.Errorf("body =\n%s\nwant\n%s", p.Body, want)
	}
	for line := range strings.SplitSeq(string(m.Data), "\r\n") {
		if len(line) > 998 {
			t.Errorf("a line of %d characters, over RFC 5322's 998", len(line))
		}
		for _, r := range line {
			if r > 127 {
				t.Fatalf("raw message has non-ASCII %q: it must pass 7-bit relays:\n%s", r, line)
			}
		}
	}
}

func TestThreadingAcrossStates(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Users: users})
	s := newSender(t, config(t, srv, smtp.StartTLS))
	for _, st := range []alert.State{alert.Firing, alert.Repeat, alert.Resolved} {
		if err := s.Send(t.Context(), alerttest.Sample(st)); err != nil {
			t.Fatal(err)
		}
	}
	var refs, ids []string
	var subjects []string
	for _, m := range srv.Messages() {
		p := m.Parse(t)
		refs = append(refs, p.Header.Get("References"))
		ids = append(ids, p.Header.Get("Message-ID"))
		subjects = append(subjects, p.Subject)
	}
	if len(refs) != 3 || refs[0] == "" || refs[0] != refs[1] || refs[1] != refs[2] {
		t.Errorf("References = %q, want one shared parent per occurrence", refs)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 3 {
		t.Errorf("Message-IDs = %q, want each unique", ids)
	}
	want := []string{
		"[hestami] CRITICAL: Archivage bloqué — WAL archiving stalled on db1",
		"[hestami] CRITICAL (still firing): Archivage bloqué — WAL archiving stalled on db1",
		"[hestami] RESOLVED (critical): Archivage bloqué — WAL archiving stalled on db1",
	}
	if !slices.Equal(subjects, want) {
		t.Errorf("subjects = %q, want %q", subjects, want)
	}
}

func TestImplicitTLSWithLoginAndCAFile(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{ImplicitTLS: true, Users: users, Mechs: []string{"LOGIN"}})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, smtptest.TestCA(t).PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config(t, srv, smtp.TLS)
	cfg.RootCAs, cfg.CAFile = nil, caFile
	if err := newSender(t, cfg).Send(t.Context(), alerttest.Sample(alert.Resolved)); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || !msgs[0].TLS || msgs[0].Mech != "LOGIN" || msgs[0].User != "hestami" {
		t.Fatalf("got %+v, want one message over TLS after AUTH LOGIN", msgs)
	}
	if p := msgs[0].Parse(t); p.Header.Get("X-Hestami-State") != "resolved" || !containsLine(p.Body, "State:      resolved") {
		t.Errorf("resolved message: header %q, body\n%s", p.Header.Get("X-Hestami-State"), p.Body)
	}
}

func TestRecipientRejected(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Users: users, RejectRcpt: "nobody@example.com"})
	cfg := config(t, srv, smtp.StartTLS)
	cfg.To = []string{"oncall@example.com", "nobody@example.com"}
	err := newSender(t, cfg).Send(t.Context(), alerttest.Sample(alert.Firing))
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 550 {
		t.Fatalf("Send to a refused recipient = %v, want the server's 550", err)
	}
	if !strings.Contains(err.Error(), "recipient nobody@example.com refused by 127.0.0.1:"+strconv.Itoa(srv.Port)) ||
		!strings.Contains(err.Error(), "No such user here") {
		t.Errorf("error %q does not say which recipient was refused, by whom and why", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server stored %d messages, want 0", n)
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Users: users})
	cfg := config(t, srv, smtp.StartTLS)
	cfg.Password = "wrong"
	err := newSender(t, cfg).Send(t.Context(), alerttest.Sample(alert.Firing))
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 535 || !strings.Contains(err.Error(), "authenticate as hestami") {
		t.Fatalf("Send with a wrong password = %v, want a 535 authentication error", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error shows the password: %q", err)
	}
}

func TestNoSTARTTLSNoMail(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{NoTLS: true, Users: users})
	err := newSender(t, config(t, srv, smtp.StartTLS)).Send(t.Context(), alerttest.Sample(alert.Firing))
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("Send to a server without STARTTLS = %v, want a refusal to mail in the clear", err)
	}
	if srv.AuthAttempts() != 0 || len(srv.Messages()) != 0 {
		t.Fatalf("credentials or mail went out in the clear: %d auths, %d messages", srv.AuthAttempts(), len(srv.Messages()))
	}
}

func TestUntrustedServerCertificate(t *testing.T) {
	t.Parallel()
	for _, sec := range []smtp.Security{smtp.StartTLS, smtp.TLS} {
		srv := smtptest.Start(t, smtptest.Options{Users: users, ImplicitTLS: sec == smtp.TLS})
		cfg := config(t, srv, sec)
		cfg.RootCAs = nil // system roots: the test CA is not among them
		err := newSender(t, cfg).Send(t.Context(), alerttest.Sample(alert.Firing))
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: Send to an untrusted server = %v, want a certificate error", sec, err)
		}
		if srv.AuthAttempts() != 0 || len(srv.Messages()) != 0 {
			t.Errorf("%s: credentials or mail reached an untrusted server", sec)
		}
	}
}

func TestServerNotListening(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Users: users})
	cfg := config(t, srv, smtp.StartTLS)
	cfg.Port = freePort(t)
	err := newSender(t, cfg).Send(t.Context(), alerttest.Sample(alert.Firing))
	if err == nil || !strings.Contains(err.Error(), "connect to 127.0.0.1:") {
		t.Fatalf("Send to a closed port = %v, want a connect error", err)
	}
}

func TestCancelledMidConversation(t *testing.T) {
	t.Parallel()
	// A listener that accepts and never greets: only ctx can end the wait.
	l := listen(t)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	s := newSender(t, smtp.Config{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port,
		From: "a@example.com", To: []string{"b@example.com"}, Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Send(ctx, alerttest.Sample(alert.Firing))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a silent server = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("Send took %s after its context ended", d)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	good := smtp.Config{Host: "smtp.example.com", From: "a@example.com", To: []string{"b@example.com"}}
	tests := map[string]func(c *smtp.Config){
		"NoHost":           func(c *smtp.Config) { c.Host = "" },
		"BadSecurity":      func(c *smtp.Config) { c.Security = "none" },
		"BadFrom":          func(c *smtp.Config) { c.From = "not an address" },
		"NoRecipients":     func(c *smtp.Config) { c.To = nil },
		"BadRecipient":     func(c *smtp.Config) { c.To = []string{"ok@example.com", "@@"} },
		"PasswordNoUser":   func(c *smtp.Config) { c.Password = "p" },
		"MissingCAFile":    func(c *smtp.Config) { c.CAFile = "/nonexistent/ca.pem" },
		"CAFileWithoutPEM": func(c *smtp.Config) { c.CAFile = "smtp_test.go" },
		"PortOutOfRange":   func(c *smtp.Config) { c.Port = 70000 },
		"NegativeTimeout":  func(c *smtp.Config) { c.Timeout = -time.Second },
	}
	for name, mutate := range tests {
		c := good
		mutate(&c)
		if _, err := smtp.New(c); err == nil {
			t.Errorf("%s: New = nil error", name)
		}
	}
	// Every problem at once.
	_, err := smtp.New(smtp.Config{Security: "none", From: "x", To: nil})
	for _, want := range []string{"tls \"none\"", "host", "from", "to:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(all wrong) = %v, want it to mention %q", err, want)
		}
	}
	if s, err := smtp.New(good); err != nil || !strings.HasPrefix(s.Name(), "email:smtp.example.com#") {
		t.Errorf("New(good) = %v, %v; want a sender named email:smtp.example.com#<hash>", s, err)
	}
}
