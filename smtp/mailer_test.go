package smtp_test

import (
	"errors"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/smtp"
	"github.com/hestami/hestami/smtp/smtptest"
)

func mailerConfig(srv *smtptest.Server, security smtp.Security) smtp.Config {
	return smtp.Config{
		Host: srv.Host, Port: srv.Port, Security: security, Username: "hestami", Password: password,
		From: "Hestami <no-reply@hestami.example>", RootCAs: srv.RootCAs(), Timeout: 10 * time.Second,
	}
}

func newMailer(t *testing.T, cfg smtp.Config) *smtp.Mailer {
	t.Helper()
	m, err := smtp.NewMailer(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMailer(t *testing.T) {
	t.Parallel()
	for _, sec := range []smtp.Security{smtp.StartTLS, smtp.TLS} {
		t.Run(string(sec), func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, smtptest.Options{Users: users, ImplicitTLS: sec == smtp.TLS})
			cfg := mailerConfig(srv, sec)
			cfg.Now = func() time.Time { return time.Date(2026, 12, 4, 9, 30, 0, 0, time.UTC) }
			text := "123456 is your Hestami code. It expires in 10 minutes. If you didn't ask for it, ignore this message.\n\nAncienne adresse : à vérifier — ✓\n"
			err := newMailer(t, cfg).SendMail(t.Context(), auth.Mail{To: "Zoë <zoe@example.org>", Subject: "123456 is your Hestami code ✓", Text: text})
			if err != nil {
				t.Fatal(err)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 {
				t.Fatalf("server got %d messages, want 1", len(msgs))
			}
			m := msgs[0]
			if !m.TLS || m.User != "hestami" || m.From != "no-reply@hestami.example" || !slices.Equal(m.To, []string{"zoe@example.org"}) {
				t.Errorf("envelope: tls %v user %q from %q to %q", m.TLS, m.User, m.From, m.To)
			}
			p := m.Parse(t)
			if p.Subject != "123456 is your Hestami code ✓" {
				t.Errorf("Subject = %q", p.Subject)
			}
			if p.Body != text {
				t.Errorf("body = %q, want %q", p.Body, text)
			}
			for k, want := range map[string]string{
				"Date": "Fri, 04 Dec 2026 09:30:00 +0000", "From": `"Hestami" <no-reply@hestami.example>`,
				"Content-Type": "text/plain; charset=utf-8", "Auto-Submitted": "auto-generated", "X-Hestami-Alert": "",
			} {
				if got := p.Header.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if to, err := p.Header.AddressList("To"); err != nil || len(to) != 1 || to[0].Name != "Zoë" || to[0].Address != "zoe@example.org" {
				t.Errorf("To = %v, %v", to, err)
			}
			if !strings.HasSuffix(p.Header.Get("Message-ID"), "@hestami.example>") {
				t.Errorf("Message-ID = %q", p.Header.Get("Message-ID"))
			}
		})
	}
}

func TestMailerSubjectPrefix(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Users: users})
	cfg := mailerConfig(srv, smtp.StartTLS)
	cfg.SubjectPrefix = "[staging]"
	if err := newMailer(t, cfg).SendMail(t.Context(), auth.Mail{To: "a@example.org", Subject: "New sign-in", Text: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Last(t).Parse(t).Subject; got != "[staging] New sign-in" {
		t.Errorf("Subject = %q", got)
	}
}

// TestMailerHeaderInjection: what a person typed never adds headers or
// recipients.
func TestMailerHeaderInjection(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Users: users})
	m := newMailer(t, mailerConfig(srv, smtp.StartTLS))
	err := m.SendMail(t.Context(), auth.Mail{To: "a@example.org\r\nBcc: evil@example.com", Subject: "x", Text: "x"})
	if auth.ErrorCode(err) != auth.CodeInvalid {
		t.Errorf("SendMail to an address with a header in it = %v, want CodeInvalid", err)
	}
	err = m.SendMail(t.Context(), auth.Mail{To: "a@example.org", Subject: "hi\r\nBcc: evil@example.com", Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{"a@example.org"}) {
		t.Fatalf("messages %+v, want one to a@example.org only", msgs)
	}
	p := msgs[0].Parse(t)
	if p.Header.Get("Bcc") != "" || p.Subject != "hi Bcc: evil@example.com" {
		t.Errorf("Bcc %q, Subject %q: the subject's line break must not start a header", p.Header.Get("Bcc"), p.Subject)
	}
}

func TestMailerUnknownRecipient(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Users: users, RejectRcpt: "nobody@example.org"})
	err := newMailer(t, mailerConfig(srv, smtp.StartTLS)).SendMail(t.Context(), auth.Mail{To: "nobody@example.org", Subject: "x", Text: "x"})
	var te *textproto.Error
	if auth.ErrorCode(err) != auth.CodeInvalid || !strings.Contains(auth.ErrorMessage(err), "nobody@example.org") || !errors.As(err, &te) || te.Code != 550 {
		t.Fatalf("SendMail to an unknown mailbox = %v, want CodeInvalid naming it, wrapping the 550", err)
	}
}

func TestMailerNeverInTheClear(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Users: users, NoTLS: true})
	err := newMailer(t, mailerConfig(srv, smtp.StartTLS)).SendMail(t.Context(), auth.Mail{To: "a@example.org", Subject: "x", Text: "123456"})
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") || auth.ErrorCode(err) != auth.CodeInternal {
		t.Fatalf("SendMail without STARTTLS = %v, want a refusal", err)
	}
	if srv.AuthAttempts() != 0 || len(srv.Messages()) != 0 {
		t.Fatal("credentials or mail went out in the clear")
	}
}

func TestMailerWrongPassword(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{Users: users})
	cfg := mailerConfig(srv, smtp.StartTLS)
	cfg.Password = "wrong-password-value"
	m, err := smtp.NewMailer(cfg, "mfa.email")
	if err != nil {
		t.Fatal(err)
	}
	err = m.SendMail(t.Context(), auth.Mail{To: "a@example.org", Subject: "x", Text: "x"})
	if err == nil || !strings.Contains(err.Error(), "check mfa.email.username") || strings.Contains(err.Error(), cfg.Password) {
		t.Fatalf("SendMail with a wrong password = %v, want an error naming the configuration, without the password", err)
	}
}

func TestNewMailerRejects(t *testing.T) {
	t.Parallel()
	if _, err := smtp.NewMailer(smtp.Config{Host: "smtp.example.com", From: "a@example.com", To: []string{"b@example.com"}}, ""); err == nil || !strings.Contains(err.Error(), "to: leave it empty") {
		t.Errorf("NewMailer with recipients = %v", err)
	}
	_, err := smtp.NewMailer(smtp.Config{Security: "none", From: "x"}, "")
	for _, want := range []string{"auth.email: ", `tls "none"`, "host", "from"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewMailer(all wrong) = %v, want it to mention %q", err, want)
		}
	}
}
