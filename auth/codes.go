package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/mail"
	"strings"
	"time"
)

// The purposes of one-time codes.
const (
	// CodePurposeEnrol proves a new destination (a secondary email, a phone
	// number) before it becomes a factor.
	CodePurposeEnrol = "enrol"
	// CodePurposeChallenge is a second factor at sign-in or step-up.
	CodePurposeChallenge = "challenge"
)

// OneTimeCode is a code sent by email or SMS, as stored: never the code itself,
// only its HMAC-SHA256 under a random per-code salt.
type OneTimeCode struct {
	ID     string // a UUID, assigned by the store
	UserID string
	// Purpose is CodePurposeEnrol or CodePurposeChallenge; Method is MethodEmail
	// or MethodSMS. A user has at most one live code per (Purpose, Method): a
	// new one replaces the old.
	Purpose string
	Method  string
	// FactorID is the SMS factor the code belongs to (empty for email).
	FactorID string
	// Destination is where the code went: the email address or the E.164
	// number.
	Destination string
	Salt        []byte
	Hash        []byte
	// Attempts counts verification attempts, right or wrong.
	Attempts  int
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero until the code worked
}

// CodeStore keeps one-time codes. Package postgres implements it.
type CodeStore interface {
	// PutCode stores c as the user's live code for (c.Purpose, c.Method),
	// replacing any earlier one (used or not), and assigns c.ID. A code of a
	// user that does not exist is ErrNotFound.
	PutCode(ctx context.Context, c *OneTimeCode) error
	// Code returns the user's latest code for purpose and method, used,
	// expired or not; ErrNotFound if there is none.
	Code(ctx context.Context, userID, purpose, method string) (*OneTimeCode, error)
	// AttemptCode counts one attempt at code id, atomically, if the code is
	// unused and has had fewer than max attempts, and returns the attempts
	// counted so far with true; it returns false (and counts nothing) when the
	// code is used, replaced, or out of attempts. Concurrent attempts never
	// count past max.
	AttemptCode(ctx context.Context, id string, max int) (int, bool, error)
	// UseCode marks code id used at at and reports whether it was unused:
	// under concurrent calls exactly one succeeds.
	UseCode(ctx context.Context, id string, at time.Time) (bool, error)
	// DeleteExpiredCodes removes codes that expired before before.
	DeleteExpiredCodes(ctx context.Context, before time.Time) (int, error)
}

// PhoneNumbers reads the phone numbers people type. Package phonenumber
// implements it.
type PhoneNumbers interface {
	// Normalize returns raw in E.164 form, reading national numbers in
	// defaultRegion (ISO 3166-1 alpha-2, "GB"). Errors are *Error with
	// CodeInvalid and a message for the person.
	Normalize(raw, defaultRegion string) (string, error)
	// Mask shows an E.164 number as "+1 ••• ••• 1234".
	Mask(e164 string) string
}

// CodesConfig is how Codes behaves. Zero fields take DefaultCodesConfig's value.
type CodesConfig struct {
	// Brand names the service in messages: "Hestami".
	Brand string
	// CodeLength is the number of digits (6).
	CodeLength int
	// SMSTTL and EmailTTL are how long a code works (5 and 10 minutes).
	SMSTTL   time.Duration
	EmailTTL time.Duration
	// MaxAttempts is how many tries one code gets, right or wrong (5); after
	// them the code is dead and the person asks for a new one.
	MaxAttempts int
	// Sending codes is limited per user, per destination (an email address or
	// a number) and per client IP.
	SendPerUser        Limit
	SendPerDestination Limit
	SendPerIP          Limit
	// Verifying codes is limited per user and per client IP, across codes (a
	// new code does not buy new guesses past these).
	VerifyPerUser Limit
	VerifyPerIP   Limit
	// Pepper, if set, is a server secret mixed into every code's hash, so a
	// copy of the database alone cannot try the million codes offline.
	Pepper []byte
}

// DefaultCodesConfig returns the defaults: six digits, 5 minutes by SMS and 10
// by email, 5 tries per code; at most 5 codes per user, 3 per destination and
// 20 per IP in 15 minutes; at most 10 verifications per user and 30 per IP in
// 15 minutes.
func DefaultCodesConfig() CodesConfig {
	return CodesConfig{
		Brand:              "Hestami",
		CodeLength:         6,
		SMSTTL:             5 * time.Minute,
		EmailTTL:           10 * time.Minute,
		MaxAttempts:        5,
		SendPerUser:        Limit{Events: 5, Window: 15 * time.Minute},
		SendPerDestination: Limit{Events: 3, Window: 15 * time.Minute},
		SendPerIP:          Limit{Events: 20, Window: 15 * time.Minute},
		VerifyPerUser:      Limit{Events: 10, Window: 15 * time.Minute},
		VerifyPerIP:        Limit{Events: 30, Window: 15 * time.Minute},
	}
}

func (c CodesConfig) withDefaults() CodesConfig {
	d := DefaultCodesConfig()
	if c.Brand == "" {
		c.Brand = d.Brand
	}
	if c.CodeLength <= 0 {
		c.CodeLength = d.CodeLength
	}
	c.CodeLength = min(c.CodeLength, 12)
	if c.SMSTTL <= 0 {
		c.SMSTTL = d.SMSTTL
	}
	if c.EmailTTL <= 0 {
		c.EmailTTL = d.EmailTTL
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	for _, l := range []struct {
		got *Limit
		def Limit
	}{
		{&c.SendPerUser, d.SendPerUser}, {&c.SendPerDestination, d.SendPerDestination}, {&c.SendPerIP, d.SendPerIP},
		{&c.VerifyPerUser, d.VerifyPerUser}, {&c.VerifyPerIP, d.VerifyPerIP},
	} {
		if l.got.Events <= 0 || l.got.Window <= 0 {
			*l.got = l.def
		}
	}
	return c
}

// Codes runs the second factors that are one-time codes sent to a person: by
// email to a verified secondary email (a backup method), and by SMS to a
// confirmed number (a fallback). It enrols both (proving the person receives
// the codes), sends challenges and verifies them. Codes are random digits,
// stored only as salted HMACs, work once, die after MaxAttempts tries or their
// TTL, and sending and verifying are rate limited. Every step is audited;
// codes are never logged.
type Codes struct {
	cfg      CodesConfig
	store    CodeStore
	factors  FactorStore
	settings MFASettingsStore
	mailer   Mailer
	sms      SMSSender
	phones   PhoneNumbers
	limiter  Limiter
	audit    func(context.Context, *AuditEvent) error
	now      func() time.Time
	log      *slog.Logger
}

// NewCodes returns Codes. mailer may be nil (no email codes), and so may sms
// and phones (no SMS codes): the methods for them then answer CodeUnavailable.
// limiter must not be nil. audit is (*Service).Audit; now the clock.
func NewCodes(cfg CodesConfig, store CodeStore, factors FactorStore, settings MFASettingsStore, mailer Mailer,
	sms SMSSender, phones PhoneNumbers, limiter Limiter, audit func(context.Context, *AuditEvent) error,
	now func() time.Time, logger *slog.Logger) *Codes {
	return &Codes{
		cfg: cfg.withDefaults(), store: store, factors: factors, settings: settings, mailer: mailer,
		sms: sms, phones: phones, limiter: limiter, audit: audit, now: now, log: logger,
	}
}

// Config returns the configuration in force (defaults filled in).
func (c *Codes) Config() CodesConfig { return c.cfg }

// EmailEnabled reports whether email codes can be sent (a mailer is configured).
func (c *Codes) EmailEnabled() bool { return c.mailer != nil }

// SMSEnabled reports whether SMS codes can be sent (a sender is configured).
func (c *Codes) SMSEnabled() bool { return c.sms != nil && c.phones != nil }

// CodeSent says where a code went, for the page that asks for it.
type CodeSent struct {
	Method string // MethodEmail or MethodSMS
	// FactorID is the factor the code belongs to: the new SMS factor for
	// ConfirmSMS, the factor a challenge went to; empty for an email
	// enrolment.
	FactorID string
	// To is the destination masked: "a•••@example.com", "+1 ••• ••• 1234".
	To        string
	ExpiresAt time.Time
}

var (
	errNoEmail = Errorf(CodeUnavailable, "Codes by email are not available here. Use another method.")
	errNoSMS   = Errorf(CodeUnavailable, "Codes by text message are not available here. Use another method.")
)

// BeginSecondaryEmail starts enrolling email as u's secondary email: it sends
// a code there (purpose enrol), which ConfirmSecondaryEmail takes. The address
// must differ from u's primary email (a second factor is a second mailbox).
// u's current secondary email, if any, keeps working until the new one is
// confirmed.
//
// Errors (*Error): CodeInvalid for an address that is not one or is the
// primary, CodeRateLimited when too many codes were asked for (the message
// says when to retry), CodeUnavailable when the mail could not be sent.
// Audited as "mfa.email.enrol.send".
func (c *Codes) BeginSecondaryEmail(ctx context.Context, u *User, email string, client Client) (*CodeSent, error) {
	ev := &AuditEvent{Action: "mfa.email.enrol.send", ActorID: u.ID, IP: client.IP, UserAgent: client.UserAgent}
	sent, err := c.beginSecondaryEmail(ctx, u, email, client, ev)
	return sent, c.finish(ctx, ev, err)
}

func (c *Codes) beginSecondaryEmail(ctx context.Context, u *User, email string, client Client, ev *AuditEvent) (*CodeSent, error) {
	if c.mailer == nil {
		ev.Detail = "no mailer configured"
		return nil, errNoEmail
	}
	addr := NormalizeEmail(email)
	if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr || !strings.Contains(addr, "@") {
		ev.Detail = "not an email address"
		return nil, Errorf(CodeInvalid, "%q is not an email address. Enter one like name@example.com.", strings.TrimSpace(email))
	}
	if addr == NormalizeEmail(u.Email) {
		ev.Detail = "primary email given as secondary"
		return nil, Errorf(CodeInvalid, "%s is the email you sign in with. Enter a different address, one that you read in another mailbox, so that it can stand in for your other factors.", addr)
	}
	ev.Detail = "to " + MaskEmail(addr)
	return c.send(ctx, u, CodePurposeEnrol, MethodEmail, "", addr, client, ev)
}

// ConfirmSecondaryEmail checks code against the code BeginSecondaryEmail sent
// and, when it is right, makes that address u's verified secondary email
// (MFASettings) and its email factor, replacing the previous one: email
// challenges then go there, and only there.
//
// Errors (*Error): CodeInvalid when no code is waiting or the input is not a
// code, CodeUnauthorized for a wrong, expired, used or exhausted code (the
// message says which, and what to do), CodeRateLimited after too many
// attempts. Audited as "mfa.email.enrol".
func (c *Codes) ConfirmSecondaryEmail(ctx context.Context, u *User, code string, client Client) error {
	ev := &AuditEvent{Action: "mfa.email.enrol", ActorID: u.ID, IP: client.IP, UserAgent: client.UserAgent}
	err := c.confirmSecondaryEmail(ctx, u, code, client, ev)
	return c.finish(ctx, ev, err)
}

func (c *Codes) confirmSecondaryEmail(ctx context.Context, u *User, code string, client Client, ev *AuditEvent) error {
	oc, err := c.check(ctx, u, CodePurposeEnrol, MethodEmail, code, client, ev)
	if err != nil {
		return err
	}
	addr := oc.Destination
	ev.Detail = "verified " + MaskEmail(addr)
	now := c.now()
	s, err := c.settings.MFASettings(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("confirm secondary email: %w", err)
	}
	s.UserID, s.SecondaryEmail, s.SecondaryEmailVerified = u.ID, addr, true
	if err := c.settings.SaveMFASettings(ctx, s); err != nil {
		return fmt.Errorf("confirm secondary email: %w", err)
	}
	fs, err := c.factors.Factors(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("confirm secondary email: %w", err)
	}
	for _, f := range fs {
		if f.Method == MethodEmail {
			if err := c.factors.DeleteFactor(ctx, u.ID, f.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("confirm secondary email: remove the previous one: %w", err)
			}
		}
	}
	f := &Factor{UserID: u.ID, Method: MethodEmail, Label: MaskEmail(addr), Data: []byte(addr)}
	if err := c.factors.CreateFactor(ctx, f); err != nil {
		return fmt.Errorf("confirm secondary email: %w", err)
	}
	if err := c.factors.ConfirmFactor(ctx, u.ID, f.ID, now); err != nil {
		return fmt.Errorf("confirm secondary email: %w", err)
	}
	return nil
}

// BeginSMS starts enrolling a phone number for SMS codes: it reads rawNumber
// (national numbers in region, an ISO 3166-1 code like "GB"; international
// ones start with +), stores an unconfirmed SMS factor labelled with the
// masked number (or reuses the unconfirmed one for the same number), and
// texts it a code, which ConfirmSMS takes with the returned FactorID.
//
// Errors (*Error): CodeInvalid for a number that is not valid (the message
// says why), CodeConflict when the number is enrolled already,
// CodeRateLimited, CodeUnavailable when the message could not be sent.
// Audited as "mfa.sms.enrol.send".
func (c *Codes) BeginSMS(ctx context.Context, u *User, rawNumber, region string, client Client) (*CodeSent, error) {
	ev := &AuditEvent{Action: "mfa.sms.enrol.send", ActorID: u.ID, IP: client.IP, UserAgent: client.UserAgent}
	sent, err := c.beginSMS(ctx, u, rawNumber, region, client, ev)
	return sent, c.finish(ctx, ev, err)
}

func (c *Codes) beginSMS(ctx context.Context, u *User, rawNumber, region string, client Client, ev *AuditEvent) (*CodeSent, error) {
	if !c.SMSEnabled() {
		ev.Detail = "no SMS sender configured"
		return nil, errNoSMS
	}
	number, err := c.phones.Normalize(rawNumber, region)
	if err != nil {
		ev.Detail = "invalid number"
		var e *Error
		if errors.As(err, &e) {
			return nil, err
		}
		return nil, Errorf(CodeInvalid, "That is not a phone number we can send codes to. Enter your mobile number with + and the country code.").WithCause(err)
	}
	ev.Detail = "to " + c.phones.Mask(number)
	fs, err := c.factors.Factors(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("begin sms enrolment: %w", err)
	}
	var factor *Factor
	for _, f := range fs {
		if f.Method != MethodSMS || !hmac.Equal(f.Data, []byte(number)) {
			continue
		}
		if f.Confirmed {
			ev.Detail += ": enrolled already"
			return nil, Errorf(CodeConflict, "%s is set up for codes already.", c.phones.Mask(number))
		}
		factor = f
	}
	if factor == nil {
		factor = &Factor{UserID: u.ID, Method: MethodSMS, Label: c.phones.Mask(number), Data: []byte(number)}
		if err := c.factors.CreateFactor(ctx, factor); err != nil {
			return nil, fmt.Errorf("begin sms enrolment: %w", err)
		}
	}
	return c.send(ctx, u, CodePurposeEnrol, MethodSMS, factor.ID, number, client, ev)
}

// ConfirmSMS checks code against the code BeginSMS sent for factorID and,
// when it is right, confirms that SMS factor.
//
// Errors (*Error): as ConfirmSecondaryEmail's, and CodeInvalid when the code
// waiting is for another number (enrolment started again since). Audited as
// "mfa.sms.enrol".
func (c *Codes) ConfirmSMS(ctx context.Context, u *User, factorID, code string, client Client) error {
	ev := &AuditEvent{Action: "mfa.sms.enrol", ActorID: u.ID, IP: client.IP, UserAgent: client.UserAgent}
	err := c.confirmSMS(ctx, u, factorID, code, client, ev)
	return c.finish(ctx, ev, err)
}

func (c *Codes) confirmSMS(ctx context.Context, u *User, factorID, code string, client Client, ev *AuditEvent) error {
	if !c.SMSEnabled() {
		ev.Detail = "no SMS sender configured"
		return errNoSMS
	}
	if oc, err := c.store.Code(ctx, u.ID, CodePurposeEnrol, MethodSMS); err == nil && oc.FactorID != factorID {
		ev.Detail = "code is for another number"
		return Errorf(CodeInvalid, "The code we sent last is for another number: you started setting up a number again since. Enter the newest code, on the newest page.")
	}
	oc, err := c.check(ctx, u, CodePurposeEnrol, MethodSMS, code, client, ev)
	if err != nil {
		return err
	}
	ev.Detail = "confirmed " + c.phones.Mask(oc.Destination)
	err = c.factors.ConfirmFactor(ctx, u.ID, oc.FactorID, c.now())
	if errors.Is(err, ErrNotFound) {
		ev.Detail += ": factor removed meanwhile"
		return Errorf(CodeNotFound, "That number was removed from your account meanwhile. Add it again.")
	}
	if err != nil {
		return fmt.Errorf("confirm sms: %w", err)
	}
	return nil
}

// SendChallenge sends u a code for signing in or stepping up (purpose
// challenge): method MethodEmail sends it to u's verified secondary email,
// MethodSMS to the confirmed SMS factor factorID (empty: u's first one).
//
// Errors (*Error): CodeInvalid for another method, CodeNotFound when u has no
// such confirmed factor, CodeRateLimited, CodeUnavailable when it could not
// be sent. Audited as "mfa.email.challenge.send" or "mfa.sms.challenge.send".
func (c *Codes) SendChallenge(ctx context.Context, u *User, method, factorID string, client Client) (*CodeSent, error) {
	ev := &AuditEvent{Action: "mfa." + method + ".challenge.send", ActorID: u.ID, IP: client.IP, UserAgent: client.UserAgent}
	if method != MethodEmail && method != MethodSMS {
		ev.Action = "mfa.challenge.send"
	}
	sent, err := c.sendChallenge(ctx, u, method, factorID, client, ev)
	return sent, c.finish(ctx, ev, err)
}

func (c *Codes) sendChallenge(ctx context.Context, u *User, method, factorID string, client Client, ev *AuditEvent) (*CodeSent, error) {
	switch method {
	case MethodEmail:
		if c.mailer == nil {
			ev.Detail = "no mailer configured"
			return nil, errNoEmail
		}
	case MethodSMS:
		if !c.SMSEnabled() {
			ev.Detail = "no SMS sender configured"
			return nil, errNoSMS
		}
	default:
		ev.Detail = fmt.Sprintf("method %q", method)
		return nil, Errorf(CodeInvalid, "Codes are sent by email or by text message; %q is neither.", method)
	}
	f, err := c.challengeFactor(ctx, u, method, factorID)
	if err != nil {
		ev.Detail = "no such factor"
		return nil, err
	}
	ev.Detail = "to " + f.Label
	return c.send(ctx, u, CodePurposeChallenge, method, f.ID, string(f.Data), client, ev)
}

// CodeTarget is somewhere a challenge code can go.
type CodeTarget struct {
	Method   string // MethodEmail or MethodSMS
	FactorID string
	To       string // masked: "a•••@example.com", "+1 ••• ••• 1234"
}

// Targets lists where SendChallenge can send u a code, for the challenge
// page: the verified secondary email (when email codes are enabled), then each
// confirmed SMS number (when SMS codes are), oldest first.
func (c *Codes) Targets(ctx context.Context, u *User) ([]CodeTarget, error) {
	var out []CodeTarget
	if c.mailer != nil {
		f, err := c.challengeFactor(ctx, u, MethodEmail, "")
		switch {
		case err == nil:
			out = append(out, CodeTarget{Method: MethodEmail, FactorID: f.ID, To: f.Label})
		case ErrorCode(err) != CodeNotFound:
			return nil, err
		}
	}
	if c.SMSEnabled() {
		fs, err := c.factors.Factors(ctx, u.ID)
		if err != nil {
			return nil, fmt.Errorf("code targets: %w", err)
		}
		for _, f := range fs {
			if f.Method == MethodSMS && f.Confirmed {
				out = append(out, CodeTarget{Method: MethodSMS, FactorID: f.ID, To: f.Label})
			}
		}
	}
	return out, nil
}

// DeleteExpired removes codes that expired more than a day ago (younger ones
// stay, so a late attempt hears "expired" rather than "no code"), for a
// periodic clean-up.
func (c *Codes) DeleteExpired(ctx context.Context) (int, error) {
	n, err := c.store.DeleteExpiredCodes(ctx, c.now().Add(-24*time.Hour))
	if err != nil {
		return 0, fmt.Errorf("delete expired codes: %w", err)
	}
	return n, nil
}

// challengeFactor is the confirmed factor a challenge goes to: for email, the
// email factor whose address is the verified secondary email (both must
// agree); for SMS, factorID or the first confirmed SMS factor.
func (c *Codes) challengeFactor(ctx context.Context, u *User, method, factorID string) (*Factor, error) {
	fs, err := c.factors.Factors(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("send code: %w", err)
	}
	var secondary string
	if method == MethodEmail {
		s, err := c.settings.MFASettings(ctx, u.ID)
		if err != nil {
			return nil, fmt.Errorf("send code: %w", err)
		}
		if s.SecondaryEmailVerified {
			secondary = NormalizeEmail(s.SecondaryEmail)
		}
	}
	for _, f := range fs {
		if f.Method != method || !f.Confirmed || factorID != "" && f.ID != factorID {
			continue
		}
		if method == MethodEmail && (secondary == "" || NormalizeEmail(string(f.Data)) != secondary) {
			continue
		}
		return f, nil
	}
	if method == MethodEmail {
		return nil, Errorf(CodeNotFound, "You have no verified second email to send a code to. Use another method, or add one from your security page once signed in.")
	}
	if factorID != "" {
		return nil, Errorf(CodeNotFound, "That phone number is not set up for codes on your account. Choose another one, or another method.")
	}
	return nil, Errorf(CodeNotFound, "You have no phone number set up for codes. Use another method.")
}

// VerifyChallenge checks code against the challenge code SendChallenge sent
// by method and, when it is right, spends it and records the factor's use.
// The caller then elevates the session (Service.ElevateSession with method).
//
// Errors (*Error): CodeInvalid when no code is waiting or the input is not a
// code, CodeUnauthorized for a wrong, expired, used or exhausted code (the
// message says which, and what to do), CodeRateLimited after too many
// attempts. Audited as "mfa.email.verify" or "mfa.sms.verify".
func (c *Codes) VerifyChallenge(ctx context.Context, u *User, method, code string, client Client) error {
	ev := &AuditEvent{Action: "mfa." + method + ".verify", ActorID: u.ID, IP: client.IP, UserAgent: client.UserAgent}
	if method != MethodEmail && method != MethodSMS {
		ev.Action = "mfa.verify"
		ev.Detail = fmt.Sprintf("method %q", method)
		return c.finish(ctx, ev, Errorf(CodeInvalid, "Codes are sent by email or by text message; %q is neither.", method))
	}
	oc, err := c.check(ctx, u, CodePurposeChallenge, method, code, client, ev)
	if err == nil {
		ev.Detail = "code sent to " + c.maskDestination(method, oc.Destination)
		if terr := c.factors.TouchFactor(ctx, u.ID, oc.FactorID, c.now()); terr != nil && !errors.Is(terr, ErrNotFound) {
			c.log.Warn("record factor use", "user", u.ID, "factor", oc.FactorID, "err", terr)
		}
	}
	return c.finish(ctx, ev, err)
}

// send makes a code, stores it, and sends it, within the sending limits.
func (c *Codes) send(ctx context.Context, u *User, purpose, method, factorID, dest string, client Client, ev *AuditEvent) (*CodeSent, error) {
	keys := []limitKey{
		{"code.send:" + method + ":" + HashToken(dest)[:32], c.cfg.SendPerDestination},
		{"code.send:user:" + u.ID, c.cfg.SendPerUser},
	}
	if client.IP != "" {
		keys = append(keys, limitKey{"code.send:ip:" + client.IP, c.cfg.SendPerIP})
	}
	if err := c.limit(ctx, keys, "You asked for too many codes. Try again %s, or use another method.", ev); err != nil {
		return nil, err
	}
	code, err := newCode(c.cfg.CodeLength)
	if err != nil {
		return nil, fmt.Errorf("send code: %w", err)
	}
	ttl := c.cfg.EmailTTL
	if method == MethodSMS {
		ttl = c.cfg.SMSTTL
	}
	now := c.now()
	oc := &OneTimeCode{
		UserID: u.ID, Purpose: purpose, Method: method, FactorID: factorID, Destination: dest,
		Salt: make([]byte, 16), CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	if _, err := rand.Read(oc.Salt); err != nil {
		return nil, fmt.Errorf("send code: %w", err)
	}
	oc.Hash = c.hash(oc.Salt, code)
	if err := c.store.PutCode(ctx, oc); err != nil {
		return nil, fmt.Errorf("send code: %w", err)
	}
	text := c.message(code, ttl)
	sent := &CodeSent{Method: method, FactorID: factorID, To: c.maskDestination(method, dest), ExpiresAt: oc.ExpiresAt}
	if method == MethodSMS {
		err = c.sms.SendSMS(ctx, SMS{To: dest, Body: text})
	} else {
		err = c.mailer.SendMail(ctx, Mail{To: dest, Subject: fmt.Sprintf("%s is your %s code", code, c.cfg.Brand), Text: text + "\n"})
	}
	if err != nil {
		ev.Detail += ": not sent"
		c.log.Warn("send code failed", "method", method, "purpose", purpose, "user", u.ID, "to", sent.To, "err", err)
		var e *Error
		if errors.As(err, &e) {
			return nil, err
		}
		what := "the email to " + sent.To
		if method == MethodSMS {
			what = "the text message to " + sent.To
		}
		return nil, Errorf(CodeUnavailable, "We could not send %s. Try again in a few minutes, or use another method.", what).WithCause(err)
	}
	return sent, nil
}

// message is the code's text: the code first (phones show the start in
// notifications, and autofill finds it), no links (SMS phishing looks like
// links).
func (c *Codes) message(code string, ttl time.Duration) string {
	return fmt.Sprintf("%s is your %s code. It expires in %s. If you didn't ask for it, ignore this message.", code, c.cfg.Brand, minutes(ttl))
}

// check verifies code against the user's live code for purpose and method,
// within the verification limits, and spends it when it is right.
func (c *Codes) check(ctx context.Context, u *User, purpose, method, code string, client Client, ev *AuditEvent) (*OneTimeCode, error) {
	code = normalizeCode(code)
	if len(code) != c.cfg.CodeLength || strings.Trim(code, "0123456789") != "" {
		ev.Detail = "not a code"
		return nil, Errorf(CodeInvalid, "Codes are %d digits. Enter the code from the newest message.", c.cfg.CodeLength)
	}
	keys := []limitKey{{"code.verify:user:" + u.ID, c.cfg.VerifyPerUser}}
	if client.IP != "" {
		keys = append(keys, limitKey{"code.verify:ip:" + client.IP, c.cfg.VerifyPerIP})
	}
	if err := c.limit(ctx, keys, "Too many tries. Try again %s.", ev); err != nil {
		return nil, err
	}
	oc, err := c.store.Code(ctx, u.ID, purpose, method)
	if errors.Is(err, ErrNotFound) {
		ev.Detail = "no code sent"
		return nil, Errorf(CodeInvalid, "There is no code waiting for you. Ask for a code first.")
	}
	if err != nil {
		return nil, fmt.Errorf("check code: %w", err)
	}
	now := c.now()
	switch {
	case !oc.UsedAt.IsZero():
		ev.Detail = "code used already"
		return nil, Errorf(CodeUnauthorized, "That code was used already; each code works once. Ask for a new one.")
	case !now.Before(oc.ExpiresAt):
		ev.Detail = "code expired"
		return nil, Errorf(CodeUnauthorized, "That code has expired: codes work for %s. Ask for a new one.", minutes(oc.ExpiresAt.Sub(oc.CreatedAt)))
	}
	attempts, ok, err := c.store.AttemptCode(ctx, oc.ID, c.cfg.MaxAttempts)
	if err != nil {
		return nil, fmt.Errorf("check code: %w", err)
	}
	if !ok {
		// Used, replaced or exhausted since it was read: say which.
		if now, err := c.store.Code(ctx, u.ID, purpose, method); err == nil && now.ID == oc.ID && !now.UsedAt.IsZero() {
			ev.Detail = "code used already (concurrent)"
			return nil, Errorf(CodeUnauthorized, "That code was used already; each code works once. Ask for a new one.")
		} else if err == nil && now.ID != oc.ID {
			ev.Detail = "code replaced by a newer one"
			return nil, Errorf(CodeUnauthorized, "A newer code was sent since; enter the code from the newest message.")
		}
		ev.Detail = "code out of attempts"
		return nil, Errorf(CodeUnauthorized, "That code had too many wrong tries and does not work any more. Ask for a new one.")
	}
	if !hmac.Equal(c.hash(oc.Salt, code), oc.Hash) {
		left := c.cfg.MaxAttempts - attempts
		ev.Detail = fmt.Sprintf("wrong code, %d tries left", left)
		if left <= 0 {
			return nil, Errorf(CodeUnauthorized, "That code is not right, and it was the last try for it. Ask for a new code.")
		}
		return nil, Errorf(CodeUnauthorized, "That code is not right. Check the newest message and try again (%d %s left).", left, plural(left, "try", "tries"))
	}
	used, err := c.store.UseCode(ctx, oc.ID, now)
	if err != nil {
		return nil, fmt.Errorf("check code: %w", err)
	}
	if !used {
		ev.Detail = "code used already (concurrent)"
		return nil, Errorf(CodeUnauthorized, "That code was used already; each code works once. Ask for a new one.")
	}
	for _, k := range keys[:1] { // a success forgets the user's failures, never the IP's
		if err := c.limiter.Reset(ctx, k.key); err != nil {
			c.log.Warn("reset rate limit", "key", k.key, "err", err)
		}
	}
	return oc, nil
}

type limitKey struct {
	key string
	l   Limit
}

// limit records one event for each key in turn and refuses with
// CodeRateLimited at the first that is over its limit (the keys after it do
// not count the refused event); msg has a %s for when to retry.
func (c *Codes) limit(ctx context.Context, keys []limitKey, msg string, ev *AuditEvent) error {
	for _, k := range keys {
		r, err := c.limiter.Allow(ctx, k.key, k.l)
		if err != nil {
			return fmt.Errorf("rate limit: %w", err)
		}
		if !r.Allowed {
			ev.Detail = strings.TrimPrefix(ev.Detail+"; ", "; ") + "rate limited (" + k.key[:strings.LastIndexByte(k.key, ':')] + ")"
			return Errorf(CodeRateLimited, msg, retryIn(r.RetryAfter))
		}
	}
	return nil
}

// finish audits ev with err's outcome and returns err (or the audit log's
// failure when there was no other).
func (c *Codes) finish(ctx context.Context, ev *AuditEvent, err error) error {
	ev.Outcome = OutcomeSuccess
	if err != nil {
		ev.Outcome = OutcomeFailure
		if ErrorCode(err) == CodeInternal {
			c.log.Error("one-time code", "action", ev.Action, "user", ev.ActorID, "err", err)
		}
	}
	if aerr := c.audit(ctx, ev); aerr != nil && err == nil {
		return aerr
	}
	return err
}

func (c *Codes) hash(salt []byte, code string) []byte {
	key := make([]byte, 0, len(c.cfg.Pepper)+len(salt))
	key = append(append(key, c.cfg.Pepper...), salt...)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(code))
	return m.Sum(nil)
}

func (c *Codes) maskDestination(method, dest string) string {
	if method == MethodSMS && c.phones != nil {
		return c.phones.Mask(dest)
	}
	return MaskEmail(dest)
}

// newCode returns n random decimal digits, uniformly distributed.
func newCode(n int) (string, error) {
	limit := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
	v, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%0*s", n, v.String()), nil
}

// normalizeCode drops what people type around a code: spaces and dashes.
func normalizeCode(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '\t', '\u00a0':
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// MaskEmail shows an address as "a•••@example.com".
func MaskEmail(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "•••"
	}
	r := []rune(addr[:at])
	return string(r[0]) + "•••" + addr[at:]
}

func minutes(d time.Duration) string {
	m := int((d + 30*time.Second) / time.Minute)
	if m < 1 {
		return "less than a minute"
	}
	return fmt.Sprintf("%d %s", m, plural(m, "minute", "minutes"))
}

// retryIn says when to try again: "in 3 minutes", "in a few seconds".
func retryIn(d time.Duration) string {
	switch {
	case d <= 0:
		return "in a moment"
	case d < time.Minute:
		return "in a few seconds"
	case d < time.Hour:
		m := int((d + time.Minute - 1) / time.Minute)
		return fmt.Sprintf("in %d %s", m, plural(m, "minute", "minutes"))
	}
	h := int((d + time.Hour - 1) / time.Hour)
	return fmt.Sprintf("in %d %s", h, plural(h, "hour", "hours"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
