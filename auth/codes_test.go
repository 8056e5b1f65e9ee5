package auth_test

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/phonenumber"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/smtp"
	"github.com/hestami/hestami/smtp/smtptest"
	"github.com/hestami/hestami/twilio"
	"github.com/hestami/hestami/twilio/twiliotest"
)

// codesClock is the injected clock of the Codes tests.
type codesClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *codesClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *codesClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// codesLog collects a logger's output written from several goroutines.
type codesLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *codesLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *codesLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// codesFixture is Codes over a real PostgreSQL database, a real SMTP server and
// a Twilio stand-in, all on loopback.
type codesFixture struct {
	users  *postgres.AuthStore
	mfa    *postgres.MFAStore
	store  *postgres.CodeStore
	svc    *auth.Service
	clock  *codesClock
	mail   *smtptest.Server
	sms    *twiliotest.Server
	log    *codesLog
	codes  *auth.Codes
	client auth.Client
	// sent are the codes sent so far, to check none leaks into logs or audit.
	sent []string
}

func newCodesFixture(t *testing.T, cfg auth.CodesConfig) *codesFixture {
	t.Helper()
	pool, err := postgres.OpenPool(t.Context(), pgtest.Database(t)+"&pool_max_conns=24")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	fx := &codesFixture{
		users: postgres.NewAuthStore(pool), mfa: postgres.NewMFAStore(pool), store: postgres.NewCodeStore(pool),
		clock: &codesClock{t: time.Date(2031, 5, 6, 7, 8, 0, 0, time.UTC)},
		mail:  smtptest.Start(t, smtptest.Options{Users: map[string]string{"hestami": "smtp-password"}}),
		sms:   twiliotest.New(t), log: &codesLog{},
		client: auth.Client{IP: "198.51.100.7", UserAgent: "codes-test"},
	}
	logger := slog.New(slog.NewTextHandler(fx.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fx.svc = auth.NewService(fx.users, nil, auth.DefaultConfig(), fx.clock.now, logger)
	mailer, err := smtp.NewMailer(smtp.Config{
		Host: fx.mail.Host, Port: fx.mail.Port, Username: "hestami", Password: "smtp-password",
		From: "Hestami <no-reply@hestami.example>", RootCAs: fx.mail.RootCAs(), Timeout: 10 * time.Second, Now: fx.clock.now,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := twilio.New(twilio.Config{AccountSID: twiliotest.AccountSID, AuthToken: twiliotest.AuthToken,
		From: "+15005550006", BaseURL: fx.sms.URL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	fx.codes = auth.NewCodes(cfg, fx.store, fx.mfa, fx.mfa, mailer, sender, phonenumber.Numbers{},
		auth.NewMemoryLimiter(fx.clock.now), fx.svc.Audit, fx.clock.now, logger)
	t.Cleanup(func() { fx.noLeaks(t) })
	return fx
}

func (fx *codesFixture) user(t *testing.T, email string) *auth.User {
	t.Helper()
	u := &auth.User{Type: auth.TypeOwner, Email: email, EmailVerified: true, Name: email}
	if err := fx.users.CreateUser(t.Context(), u, nil); err != nil {
		t.Fatal(err)
	}
	return u
}

var sixDigits = regexp.MustCompile(`^([0-9]{6}) is your Hestami code\. It expires in ([0-9]+ minutes)\. If you didn't ask for it, ignore this message\.$`)

// lastMail returns the newest mail's recipient and code, checking its form.
func (fx *codesFixture) lastMail(t *testing.T) (to, code string) {
	t.Helper()
	m := fx.mail.Last(t)
	p := m.Parse(t)
	body := strings.TrimSpace(p.Body)
	sm := sixDigits.FindStringSubmatch(body)
	if sm == nil || sm[2] != "10 minutes" {
		t.Fatalf("mail body %q: want the code first and a 10-minute expiry", body)
	}
	if p.Subject != sm[1]+" is your Hestami code" {
		t.Errorf("Subject = %q, want the code first", p.Subject)
	}
	if len(m.To) != 1 {
		t.Fatalf("mail went to %v, want one recipient", m.To)
	}
	fx.sent = append(fx.sent, sm[1])
	return m.To[0], sm[1]
}

// lastSMS returns the newest text message's number and code, checking its form.
func (fx *codesFixture) lastSMS(t *testing.T) (to, code string) {
	t.Helper()
	m := fx.sms.Last(t)
	sm := sixDigits.FindStringSubmatch(m.Body)
	if sm == nil || sm[2] != "5 minutes" {
		t.Fatalf("SMS body %q: want the code first and a 5-minute expiry", m.Body)
	}
	if strings.Contains(m.Body, "http") || strings.Contains(m.Body, "www.") {
		t.Errorf("SMS body %q has a link", m.Body)
	}
	fx.sent = append(fx.sent, sm[1])
	return m.To, sm[1]
}

// events returns u's audit events with action, oldest first.
func (fx *codesFixture) events(t *testing.T, u *auth.User, action string) []*auth.AuditEvent {
	t.Helper()
	evs, err := fx.users.AuditEvents(t.Context(), auth.AuditFilter{UserID: u.ID, Action: action, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs
}

func outcomes(evs []*auth.AuditEvent) string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Outcome)
	}
	return strings.Join(out, ",")
}

// noLeaks fails if a code sent appears in the log or the audit trail.
func (fx *codesFixture) noLeaks(t *testing.T) {
	logs := fx.log.String()
	evs, err := fx.users.AuditEvents(context.Background(), auth.AuditFilter{Limit: 10000})
	if err != nil {
		t.Errorf("audit: %v", err)
	}
	for _, code := range fx.sent {
		if strings.Contains(logs, code) {
			t.Errorf("code %s is in the log:\n%s", code, logs)
		}
		for _, e := range evs {
			if strings.Contains(e.Detail, code) {
				t.Errorf("code %s is in the audit event %s %q", code, e.Action, e.Detail)
			}
		}
	}
}

// wrong returns a code of the right form that is not code.
func wrong(code string) string {
	if code == "000000" {
		return "000001"
	}
	return "000000"
}

func wantErr(t *testing.T, what string, err error, code auth.Code, says string) {
	t.Helper()
	if auth.ErrorCode(err) != code || !strings.Contains(auth.ErrorMessage(err), says) {
		t.Errorf("%s = %v (code %q, message %q); want %s saying %q", what, err, auth.ErrorCode(err), auth.ErrorMessage(err), code, says)
	}
}

func TestCodesSecondaryEmail(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{})
	ctx := t.Context()
	u := fx.user(t, "ann@hestami.example")

	sent, err := fx.codes.BeginSecondaryEmail(ctx, u, "  Ann.Backup@Example.org ", fx.client)
	if err != nil {
		t.Fatal(err)
	}
	if sent.Method != auth.MethodEmail || sent.To != "a•••@example.org" || !sent.ExpiresAt.Equal(fx.clock.now().Add(10*time.Minute)) {
		t.Errorf("BeginSecondaryEmail = %+v", sent)
	}
	to, code := fx.lastMail(t)
	if to != "ann.backup@example.org" {
		t.Fatalf("code mailed to %s, want the new secondary email", to)
	}
	if s, _ := fx.mfa.MFASettings(ctx, u.ID); s.SecondaryEmail != "" || s.SecondaryEmailVerified {
		t.Errorf("settings changed before confirmation: %+v", s)
	}

	// A wrong code counts an attempt.
	wantErr(t, "ConfirmSecondaryEmail(wrong)", fx.codes.ConfirmSecondaryEmail(ctx, u, wrong(code), fx.client), auth.CodeUnauthorized, "4 tries left")
	if oc, err := fx.store.Code(ctx, u.ID, auth.CodePurposeEnrol, auth.MethodEmail); err != nil || oc.Attempts != 1 {
		t.Errorf("after a wrong code: attempts %v, %v; want 1", oc, err)
	}
	// Typed as people type it.
	if err := fx.codes.ConfirmSecondaryEmail(ctx, u, " "+code[:3]+"-"+code[3:]+" ", fx.client); err != nil {
		t.Fatalf("ConfirmSecondaryEmail(right code) = %v", err)
	}
	s, err := fx.mfa.MFASettings(ctx, u.ID)
	if err != nil || s.SecondaryEmail != "ann.backup@example.org" || !s.SecondaryEmailVerified {
		t.Fatalf("settings after confirmation: %+v, %v", s, err)
	}
	fs, err := fx.mfa.Factors(ctx, u.ID)
	if err != nil || len(fs) != 1 || fs[0].Method != auth.MethodEmail || !fs[0].Confirmed || fs[0].Label != "a•••@example.org" || string(fs[0].Data) != "ann.backup@example.org" {
		t.Fatalf("factors after confirmation: %+v, %v", fs, err)
	}
	wantErr(t, "ConfirmSecondaryEmail(the same code again)", fx.codes.ConfirmSecondaryEmail(ctx, u, code, fx.client), auth.CodeUnauthorized, "used already")

	// Challenges go to the secondary email, and only there.
	targets, err := fx.codes.Targets(ctx, u)
	if err != nil || len(targets) != 1 || targets[0] != (auth.CodeTarget{Method: auth.MethodEmail, FactorID: fs[0].ID, To: "a•••@example.org"}) {
		t.Errorf("Targets = %+v, %v", targets, err)
	}
	if _, err := fx.codes.SendChallenge(ctx, u, auth.MethodEmail, "", fx.client); err != nil {
		t.Fatal(err)
	}
	to, code = fx.lastMail(t)
	if to != "ann.backup@example.org" {
		t.Errorf("challenge mailed to %s", to)
	}
	fx.clock.add(time.Minute)
	if err := fx.codes.VerifyChallenge(ctx, u, auth.MethodEmail, code, fx.client); err != nil {
		t.Fatalf("VerifyChallenge = %v", err)
	}
	if f, _ := fx.mfa.Factor(ctx, u.ID, fs[0].ID); !f.LastUsedAt.Equal(fx.clock.now()) {
		t.Errorf("factor LastUsedAt = %v, want %v", f.LastUsedAt, fx.clock.now())
	}
	// An enrolment code is not a challenge code, and the other way round.
	wantErr(t, "ConfirmSecondaryEmail(a challenge code)", fx.codes.ConfirmSecondaryEmail(ctx, u, code, fx.client), auth.CodeUnauthorized, "used already")

	// A new secondary email replaces the old one once confirmed.
	if _, err := fx.codes.BeginSecondaryEmail(ctx, u, "ann.other@example.net", fx.client); err != nil {
		t.Fatal(err)
	}
	_, code = fx.lastMail(t)
	if err := fx.codes.ConfirmSecondaryEmail(ctx, u, code, fx.client); err != nil {
		t.Fatal(err)
	}
	if fs, _ := fx.mfa.Factors(ctx, u.ID); len(fs) != 1 || string(fs[0].Data) != "ann.other@example.net" {
		t.Errorf("after a second enrolment the email factors are %+v, want the new one only", fs)
	}

	if got := outcomes(fx.events(t, u, "mfa.email.enrol")); got != "failure,success,failure,failure,success" {
		t.Errorf("mfa.email.enrol audited %s", got)
	}
	if got := outcomes(fx.events(t, u, "mfa.email.enrol.send")); got != "success,success" {
		t.Errorf("mfa.email.enrol.send audited %s", got)
	}
	evs := fx.events(t, u, "mfa.email.verify")
	if len(evs) != 1 || evs[0].Outcome != auth.OutcomeSuccess || evs[0].IP != fx.client.IP || !strings.Contains(evs[0].Detail, "a•••@example.org") {
		t.Errorf("mfa.email.verify audited %+v", evs)
	}
}

func TestCodesSecondaryEmailRefused(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{})
	ctx := t.Context()
	u := fx.user(t, "ann@hestami.example")
	for _, tc := range []struct{ email, says string }{
		{" ANN@Hestami.example", "the email you sign in with"},
		{"not an address", "is not an email address"},
		{"Ann <ann2@example.org>", "is not an email address"},
		{"ann@example.org\r\nBcc: x@example.com", "is not an email address"},
	} {
		_, err := fx.codes.BeginSecondaryEmail(ctx, u, tc.email, fx.client)
		wantErr(t, "BeginSecondaryEmail("+tc.email+")", err, auth.CodeInvalid, tc.says)
	}
	if n := len(fx.mail.Messages()); n != 0 {
		t.Errorf("%d mails sent for refused addresses", n)
	}
	// No verified secondary email: nowhere to send an email challenge.
	_, err := fx.codes.SendChallenge(ctx, u, auth.MethodEmail, "", fx.client)
	wantErr(t, "SendChallenge(email) without a secondary email", err, auth.CodeNotFound, "no verified second email")
	wantErr(t, "ConfirmSecondaryEmail without a code", fx.codes.ConfirmSecondaryEmail(ctx, u, "123456", fx.client), auth.CodeInvalid, "no code waiting")
	wantErr(t, "ConfirmSecondaryEmail(not a code)", fx.codes.ConfirmSecondaryEmail(ctx, u, "12a456", fx.client), auth.CodeInvalid, "6 digits")
	_, err = fx.codes.SendChallenge(ctx, u, "otp", "", fx.client)
	wantErr(t, "SendChallenge(otp)", err, auth.CodeInvalid, "neither")
	if got := outcomes(fx.events(t, u, "mfa.email.enrol.send")); got != "failure,failure,failure,failure" {
		t.Errorf("refusals audited %s", got)
	}
}

func TestCodesSMS(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{})
	ctx := t.Context()
	u := fx.user(t, "ann@hestami.example")

	sent, err := fx.codes.BeginSMS(ctx, u, "(415) 555-2671", "us", fx.client)
	if err != nil {
		t.Fatal(err)
	}
	if sent.Method != auth.MethodSMS || sent.FactorID == "" || sent.To != "+1 ••• ••• 2671" || !sent.ExpiresAt.Equal(fx.clock.now().Add(5*time.Minute)) {
		t.Errorf("BeginSMS = %+v", sent)
	}
	to, code := fx.lastSMS(t)
	if to != "+14155552671" {
		t.Fatalf("code texted to %s, want +14155552671", to)
	}
	f, err := fx.mfa.Factor(ctx, u.ID, sent.FactorID)
	if err != nil || f.Method != auth.MethodSMS || f.Confirmed || f.Label != "+1 ••• ••• 2671" || string(f.Data) != "+14155552671" {
		t.Fatalf("factor before confirmation: %+v, %v", f, err)
	}
	// An unconfirmed number is no factor yet.
	_, err = fx.codes.SendChallenge(ctx, u, auth.MethodSMS, "", fx.client)
	wantErr(t, "SendChallenge(sms) before confirmation", err, auth.CodeNotFound, "no phone number")

	wantErr(t, "ConfirmSMS(wrong)", fx.codes.ConfirmSMS(ctx, u, sent.FactorID, wrong(code), fx.client), auth.CodeUnauthorized, "not right")
	wantErr(t, "ConfirmSMS(another factor)", fx.codes.ConfirmSMS(ctx, u, "00000000-0000-4000-8000-000000000000", code, fx.client), auth.CodeInvalid, "another number")
	if err := fx.codes.ConfirmSMS(ctx, u, sent.FactorID, code, fx.client); err != nil {
		t.Fatalf("ConfirmSMS = %v", err)
	}
	if f, _ := fx.mfa.Factor(ctx, u.ID, sent.FactorID); !f.Confirmed {
		t.Fatal("factor not confirmed")
	}
	_, err = fx.codes.BeginSMS(ctx, u, "+1 415 555 2671", "", fx.client)
	wantErr(t, "BeginSMS(the same number)", err, auth.CodeConflict, "set up for codes already")

	targets, err := fx.codes.Targets(ctx, u)
	if err != nil || len(targets) != 1 || targets[0] != (auth.CodeTarget{Method: auth.MethodSMS, FactorID: sent.FactorID, To: "+1 ••• ••• 2671"}) {
		t.Errorf("Targets = %+v, %v", targets, err)
	}
	ch, err := fx.codes.SendChallenge(ctx, u, auth.MethodSMS, sent.FactorID, fx.client)
	if err != nil || ch.FactorID != sent.FactorID {
		t.Fatalf("SendChallenge = %+v, %v", ch, err)
	}
	_, code = fx.lastSMS(t)
	if err := fx.codes.VerifyChallenge(ctx, u, auth.MethodSMS, code, fx.client); err != nil {
		t.Fatalf("VerifyChallenge = %v", err)
	}
	if n := len(fx.sms.Messages()); n != 2 {
		t.Errorf("Twilio got %d messages, want 2", n)
	}

	// Invalid numbers never reach Twilio.
	before := fx.sms.Requests()
	for _, raw := range []string{"12", "+44 909 879 0000", "415 555 2671"} {
		_, err := fx.codes.BeginSMS(ctx, u, raw, "", fx.client)
		wantErr(t, "BeginSMS("+raw+")", err, auth.CodeInvalid, "")
	}
	if fx.sms.Requests() != before {
		t.Error("an invalid number was sent to Twilio")
	}
	if got := outcomes(fx.events(t, u, "mfa.sms.enrol")); got != "failure,failure,success" {
		t.Errorf("mfa.sms.enrol audited %s", got)
	}
	if got := outcomes(fx.events(t, u, "mfa.sms.verify")); got != "success" {
		t.Errorf("mfa.sms.verify audited %s", got)
	}
}

// confirmedSMS enrols +14155552671 for u and returns its factor id.
func (fx *codesFixture) confirmedSMS(t *testing.T, u *auth.User) string {
	t.Helper()
	sent, err := fx.codes.BeginSMS(t.Context(), u, "+1 415 555 2671", "", fx.client)
	if err != nil {
		t.Fatal(err)
	}
	_, code := fx.lastSMS(t)
	if err := fx.codes.ConfirmSMS(t.Context(), u, sent.FactorID, code, fx.client); err != nil {
		t.Fatal(err)
	}
	return sent.FactorID
}

func TestCodesExpiry(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{})
	ctx := t.Context()
	u := fx.user(t, "ann@hestami.example")
	fx.confirmedSMS(t, u)

	for _, tc := range []struct {
		after time.Duration
		ok    bool
	}{
		{5*time.Minute - time.Second, true},
		{5 * time.Minute, false},
		{time.Hour, false},
	} {
		if _, err := fx.codes.SendChallenge(ctx, u, auth.MethodSMS, "", fx.client); err != nil {
			t.Fatal(err)
		}
		_, code := fx.lastSMS(t)
		fx.clock.add(tc.after)
		err := fx.codes.VerifyChallenge(ctx, u, auth.MethodSMS, code, fx.client)
		if tc.ok && err != nil {
			t.Errorf("after %s: VerifyChallenge = %v, want it to work", tc.after, err)
		}
		if !tc.ok {
			wantErr(t, "VerifyChallenge after "+tc.after.String(), err, auth.CodeUnauthorized, "expired: codes work for 5 minutes. Ask for a new one")
		}
		fx.clock.add(16 * time.Minute) // out of the sending window
	}
	evs := fx.events(t, u, "mfa.sms.verify")
	if len(evs) != 3 || evs[1].Detail != "code expired" {
		t.Errorf("expiry audited %+v", evs)
	}
}

func TestCodesSingleUseConcurrent(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{VerifyPerUser: auth.Limit{Events: 100, Window: time.Minute}, VerifyPerIP: auth.Limit{Events: 100, Window: time.Minute}, MaxAttempts: 50})
	ctx := t.Context()
	u := fx.user(t, "ann@hestami.example")
	fx.confirmedSMS(t, u)
	if _, err := fx.codes.SendChallenge(ctx, u, auth.MethodSMS, "", fx.client); err != nil {
		t.Fatal(err)
	}
	_, code := fx.lastSMS(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, used int
	start := make(chan struct{})
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := fx.codes.VerifyChallenge(ctx, u, auth.MethodSMS, code, fx.client)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case auth.ErrorCode(err) == auth.CodeUnauthorized && strings.Contains(auth.ErrorMessage(err), "used already"):
				used++
			default:
				t.Errorf("VerifyChallenge = %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok != 1 || used != 19 {
		t.Errorf("20 concurrent verifications of one code: %d worked, %d refused as used; want 1 and 19", ok, used)
	}
}

func TestCodesMaxAttempts(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{})
	ctx := t.Context()
	u := fx.user(t, "ann@hestami.example")
	fx.confirmedSMS(t, u)
	if _, err := fx.codes.SendChallenge(ctx, u, auth.MethodSMS, "", fx.client); err != nil {
		t.Fatal(err)
	}
	_, code := fx.lastSMS(t)
	for i, says := range []string{"4 tries left", "3 tries left", "2 tries left", "1 try left", "last try"} {
		err := fx.codes.VerifyChallenge(ctx, u, auth.MethodSMS, wrong(code), fx.client)
		wantErr(t, "wrong code "+string(rune('1'+i)), err, auth.CodeUnauthorized, says)
	}
	wantErr(t, "the right code after 5 wrong ones", fx.codes.VerifyChallenge(ctx, u, auth.MethodSMS, code, fx.client),
		auth.CodeUnauthorized, "too many wrong tries")
	// A new code works.
	if _, err := fx.codes.SendChallenge(ctx, u, auth.MethodSMS, "", fx.client); err != nil {
		t.Fatal(err)
	}
	_, code = fx.lastSMS(t)
	if err := fx.codes.VerifyChallenge(ctx, u, auth.MethodSMS, code, fx.client); err != nil {
		t.Fatalf("a new code after an exhausted one = %v", err)
	}
}

func TestCodesSendingLimits(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{})
	ctx := t.Context()
	u := fx.user(t, "ann@hestami.example")

	// Per number: 3 in 15 minutes.
	for i := range 3 {
		if _, err := fx.codes.BeginSMS(ctx, u, "+1 415 555 2671", "", fx.client); err != nil {
			t.Fatalf("code %d: %v", i+1, err)
		}
	}
	before := fx.sms.Requests()
	_, err := fx.codes.BeginSMS(ctx, u, "+1 415 555 2671", "", fx.client)
	wantErr(t, "a 4th code to one number", err, auth.CodeRateLimited, "Try again in 15 minutes")
	if fx.sms.Requests() != before {
		t.Error("a rate-limited code was sent")
	}
	// Per user: 5 in 15 minutes, whatever the destination (3 SMS so far, and a
	// refused one that does not count).
	if _, err := fx.codes.BeginSecondaryEmail(ctx, u, "ann.backup@example.org", fx.client); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.codes.BeginSMS(ctx, u, "+44 7911 123456", "", fx.client); err != nil {
		t.Fatal(err)
	}
	_, err = fx.codes.BeginSecondaryEmail(ctx, u, "ann.backup@example.org", fx.client)
	wantErr(t, "a 6th code for one user", err, auth.CodeRateLimited, "You asked for too many codes")
	if got := outcomes(fx.events(t, u, "mfa.email.enrol.send")); got != "success,failure" {
		t.Errorf("mfa.email.enrol.send audited %s", got)
	}
	// The window slides.
	fx.clock.add(15 * time.Minute)
	if _, err := fx.codes.BeginSMS(ctx, u, "+1 415 555 2671", "", fx.client); err != nil {
		t.Fatalf("after 15 minutes: %v", err)
	}
}

func TestCodesLimitsPerIPAndVerification(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{
		SendPerIP:     auth.Limit{Events: 2, Window: time.Hour},
		VerifyPerUser: auth.Limit{Events: 3, Window: time.Hour},
	})
	ctx := t.Context()
	ann, bob, cat := fx.user(t, "ann@hestami.example"), fx.user(t, "bob@hestami.example"), fx.user(t, "cat@hestami.example")
	if _, err := fx.codes.BeginSecondaryEmail(ctx, ann, "ann@example.org", fx.client); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.codes.BeginSecondaryEmail(ctx, bob, "bob@example.org", fx.client); err != nil {
		t.Fatal(err)
	}
	_, code := fx.lastMail(t)
	_, err := fx.codes.BeginSecondaryEmail(ctx, cat, "cat@example.org", fx.client)
	wantErr(t, "a 3rd code from one address", err, auth.CodeRateLimited, "Try again in 1 hour")
	other := auth.Client{IP: "203.0.113.9", UserAgent: "elsewhere"}
	if _, err := fx.codes.BeginSecondaryEmail(ctx, cat, "cat@example.org", other); err != nil {
		t.Fatalf("from another address: %v", err)
	}

	// Verification: 3 per user in the hour, across codes, right or wrong.
	for range 2 {
		wantErr(t, "wrong code", fx.codes.ConfirmSecondaryEmail(ctx, bob, wrong(code), fx.client), auth.CodeUnauthorized, "not right")
	}
	if err := fx.codes.ConfirmSecondaryEmail(ctx, bob, code, fx.client); err != nil {
		t.Fatalf("right code on the 3rd try: %v", err)
	}
	// A success forgets the user's failures.
	wantErr(t, "after success", fx.codes.ConfirmSecondaryEmail(ctx, bob, code, fx.client), auth.CodeUnauthorized, "used already")
	for range 2 {
		fx.codes.ConfirmSecondaryEmail(ctx, bob, code, fx.client)
	}
	wantErr(t, "a 4th try since the success", fx.codes.ConfirmSecondaryEmail(ctx, bob, code, fx.client), auth.CodeRateLimited, "Too many tries. Try again in")
}

func TestCodesSendFailures(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{})
	ctx := t.Context()
	u := fx.user(t, "ann@hestami.example")

	fx.sms.Fail(&twiliotest.Failure{Status: 400, Code: 21614, Message: "'To' number is not a valid mobile number"})
	_, err := fx.codes.BeginSMS(ctx, u, "+1 415 555 2671", "", fx.client)
	wantErr(t, "BeginSMS to a landline", err, auth.CodeInvalid, "cannot receive text messages")
	fx.sms.Fail(&twiliotest.Failure{Status: 401, Code: 20003, Message: "Authenticate"})
	_, err = fx.codes.BeginSMS(ctx, u, "+1 415 555 2671", "", fx.client)
	wantErr(t, "BeginSMS with Twilio refusing our credentials", err, auth.CodeUnavailable, "could not send the text message")
	if !strings.Contains(fx.log.String(), "20003") {
		t.Errorf("the operator's cause is not in the log:\n%s", fx.log)
	}

	fx.mail.SetDown(true)
	_, err = fx.codes.BeginSecondaryEmail(ctx, u, "ann@example.org", fx.client)
	wantErr(t, "BeginSecondaryEmail with the mail server down", err, auth.CodeUnavailable, "could not send the email to a•••@example.org")
	if got := outcomes(fx.events(t, u, "mfa.sms.enrol.send")); got != "failure,failure" {
		t.Errorf("failed sends audited %s", got)
	}
}

func TestCodesDisabled(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{})
	ctx := t.Context()
	u := fx.user(t, "ann@hestami.example")
	c := auth.NewCodes(auth.CodesConfig{}, fx.store, fx.mfa, fx.mfa, nil, nil, nil, auth.NewMemoryLimiter(fx.clock.now), fx.svc.Audit, fx.clock.now, slog.New(slog.NewTextHandler(fx.log, nil)))
	if c.EmailEnabled() || c.SMSEnabled() {
		t.Error("Codes without senders says they are enabled")
	}
	_, err := c.BeginSMS(ctx, u, "+1 415 555 2671", "", fx.client)
	wantErr(t, "BeginSMS without a sender", err, auth.CodeUnavailable, "not available here")
	_, err = c.BeginSecondaryEmail(ctx, u, "ann@example.org", fx.client)
	wantErr(t, "BeginSecondaryEmail without a mailer", err, auth.CodeUnavailable, "not available here")
	_, err = c.SendChallenge(ctx, u, auth.MethodSMS, "", fx.client)
	wantErr(t, "SendChallenge(sms) without a sender", err, auth.CodeUnavailable, "not available here")
	if ts, err := c.Targets(ctx, u); err != nil || len(ts) != 0 {
		t.Errorf("Targets = %v, %v; want none", ts, err)
	}
}

func TestCodesDeleteExpired(t *testing.T) {
	t.Parallel()
	fx := newCodesFixture(t, auth.CodesConfig{})
	ctx := t.Context()
	u := fx.user(t, "ann@hestami.example")
	if _, err := fx.codes.BeginSecondaryEmail(ctx, u, "ann@example.org", fx.client); err != nil {
		t.Fatal(err)
	}
	fx.lastMail(t)
	fx.clock.add(time.Hour)
	if n, err := fx.codes.DeleteExpired(ctx); err != nil || n != 0 {
		t.Fatalf("DeleteExpired an hour later = %d, %v; want 0 (kept a day, to say expired)", n, err)
	}
	fx.clock.add(24 * time.Hour)
	if n, err := fx.codes.DeleteExpired(ctx); err != nil || n != 1 {
		t.Fatalf("DeleteExpired a day later = %d, %v; want 1", n, err)
	}
	if _, err := fx.store.Code(ctx, u.ID, auth.CodePurposeEnrol, auth.MethodEmail); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("code still stored: %v", err)
	}
}
