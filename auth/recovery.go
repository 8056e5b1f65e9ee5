package auth

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// RecoveryStatus is where an account recovery request stands.
type RecoveryStatus string

// The statuses of a recovery request. Verifying, AwaitingApproval and Approved
// are open (a user has at most one open request); the rest are final.
const (
	// RecoveryVerifying: codes were emailed; the person has to enter them.
	RecoveryVerifying RecoveryStatus = "verifying"
	// RecoveryAwaitingApproval: the codes were right; a support ticket is open
	// and staff with mfa:reset decide.
	RecoveryAwaitingApproval RecoveryStatus = "awaiting_approval"
	// RecoveryApproved: a recovery link was emailed; it works once, for 15
	// minutes.
	RecoveryApproved RecoveryStatus = "approved"
	// RecoveryRedeemed: the link was used and the user's factors were reset.
	RecoveryRedeemed RecoveryStatus = "redeemed"
	// RecoveryDenied: staff turned the request down.
	RecoveryDenied RecoveryStatus = "denied"
	// RecoveryCancelled: replaced by a newer request of the same user.
	RecoveryCancelled RecoveryStatus = "cancelled"
	// RecoveryFailed: too many wrong codes.
	RecoveryFailed RecoveryStatus = "failed"
	// RecoveryExpired: the codes or the recovery link expired unused.
	RecoveryExpired RecoveryStatus = "expired"
)

// Open reports whether a request in status s is still going.
func (s RecoveryStatus) Open() bool {
	return s == RecoveryVerifying || s == RecoveryAwaitingApproval || s == RecoveryApproved
}

// Label is s for people.
func (s RecoveryStatus) Label() string {
	switch s {
	case RecoveryVerifying:
		return "Waiting for the codes we emailed"
	case RecoveryAwaitingApproval:
		return "Awaiting approval by support"
	case RecoveryApproved:
		return "Approved: a recovery link was emailed"
	case RecoveryRedeemed:
		return "Completed"
	case RecoveryDenied:
		return "Declined by support"
	case RecoveryCancelled:
		return "Replaced by a newer request"
	case RecoveryFailed:
		return "Stopped after too many wrong codes"
	case RecoveryExpired:
		return "Expired"
	}
	return string(s)
}

// RecoveryRequest is a request by a user who lost every second factor to have
// them reset: proved by codes sent to their emails, approved by staff.
type RecoveryRequest struct {
	ID     string // a UUID, assigned by the store
	UserID string
	Status RecoveryStatus
	// Reason is the person's own words ("phone stolen").
	Reason string
	// PrimaryEmail and SecondaryEmail are where the codes went (SecondaryEmail
	// empty when the user had no verified secondary email).
	PrimaryEmail   string
	SecondaryEmail string
	// PrimaryCodeHash and SecondaryCodeHash are keyed hashes of the codes; the
	// codes themselves are never stored.
	PrimaryCodeHash   string
	SecondaryCodeHash string
	CodesExpireAt     time.Time
	// Attempts counts code verifications tried.
	Attempts  int
	IP        string
	UserAgent string
	CreatedAt time.Time
	// VerifiedAt is when the codes were entered right.
	VerifiedAt time.Time
	// TicketID is the helpdesk's ticket, once created.
	TicketID string
	// DecidedBy is the staff member who approved or denied, at DecidedAt, with
	// DecisionNote.
	DecidedBy    string
	DecidedAt    time.Time
	DecisionNote string
	// TokenHash is HashToken of the recovery link's token (approved requests);
	// it works until TokenExpiresAt.
	TokenHash      string
	TokenExpiresAt time.Time
	RedeemedAt     time.Time
}

// RecoveryStore keeps recovery requests.
type RecoveryStore interface {
	// CreateRecovery stores r under r.ID (a UUID the caller made, so the code
	// hashes can be bound to it). ErrConflict if the user has an
	// open request already (one open request per user, even under concurrent
	// calls); ErrNotFound if there is no such user.
	CreateRecovery(ctx context.Context, r *RecoveryRequest) error
	// Recovery returns the request with id; ErrNotFound if none.
	Recovery(ctx context.Context, id string) (*RecoveryRequest, error)
	// RecoveryByToken returns the request whose TokenHash is tokenHash;
	// ErrNotFound if none.
	RecoveryByToken(ctx context.Context, tokenHash string) (*RecoveryRequest, error)
	// Recoveries returns the user's requests, newest first, at most limit.
	Recoveries(ctx context.Context, userID string, limit int) ([]*RecoveryRequest, error)
	// RecoveriesByStatus returns the requests in status, oldest first, at most
	// limit.
	RecoveriesByStatus(ctx context.Context, status RecoveryStatus, limit int) ([]*RecoveryRequest, error)
	// AddRecoveryAttempt counts one code verification of the request while it is
	// in status RecoveryVerifying, atomically, and returns the new count; ErrNotFound
	// if there is no such request in that status.
	AddRecoveryAttempt(ctx context.Context, id string) (int, error)
	// UpdateRecovery saves r's Status, VerifiedAt, TicketID, DecidedBy,
	// DecidedAt, DecisionNote, TokenHash, TokenExpiresAt and RedeemedAt if the
	// stored request is still in status from (compare and set: of two
	// concurrent updates from one status, one wins); ErrConflict if it is in
	// another status, ErrNotFound if there is no such request.
	UpdateRecovery(ctx context.Context, r *RecoveryRequest, from RecoveryStatus) error
}

// Ticket is a support ticket about a recovery request.
type Ticket struct {
	Subject        string
	Body           string
	RequesterEmail string
	// RequestID is the recovery request's id (the helpdesk's external id).
	RequestID string
}

// Helpdesk opens support tickets. Package webhook implements it over a
// helpdesk's HTTP API.
type Helpdesk interface {
	// CreateTicket opens t and returns the helpdesk's ticket id.
	CreateTicket(ctx context.Context, t Ticket) (ticketID string, err error)
}

// RecoveryConfig is how Recovery behaves.
type RecoveryConfig struct {
	// PublicURL is the service's origin, for the recovery link
	// ({PublicURL}/mfa/recover?token=...) and links in tickets.
	PublicURL string
	// CodeKey keys the hashes of the emailed codes (HMAC-SHA256), so a copy of
	// the database does not give them away by brute force; at least 32 bytes.
	// Replicas share it.
	CodeKey []byte
	// CodeTTL is how long the emailed codes work (default 15 minutes);
	// TokenTTL how long the recovery link works once approved (default 15
	// minutes); MaxAttempts how many code verifications a request gets
	// (default 5).
	CodeTTL     time.Duration
	TokenTTL    time.Duration
	MaxAttempts int
	// RequestLimit bounds how many requests (each sending emails) a user may
	// file (default 3 per hour); IPLimit how many one client address may
	// (default 10 per hour).
	RequestLimit Limit
	IPLimit      Limit
}

// Recovery lets a user who lost every second factor get back in: they file a
// request, prove they still control their emails with two codes, a support ticket
// is opened, another staff member with mfa:reset approves, and a single-use link
// valid for 15 minutes resets their factors so they can enrol again. Every step is
// audited under "recovery.*".
type Recovery struct {
	cfg      RecoveryConfig
	store    RecoveryStore
	settings MFASettingsStore
	mailer   Mailer
	helpdesk Helpdesk
	limiter  Limiter
	reset    func(ctx context.Context, userID string) error
	audit    func(context.Context, *AuditEvent) error
	now      func() time.Time
	log      *slog.Logger
}

// NewRecovery returns Recovery. settings supplies the verified secondary email;
// helpdesk may be nil (no tickets: staff see requests in Pending only); limiter
// bounds requests (nil: unlimited, for tests only); reset removes every second
// factor and backup code of a user (FactorStore.DeleteFactors, or what
// auth.Factors offers); audit records security events (pass (*Service).Audit);
// now is the clock.
func NewRecovery(cfg RecoveryConfig, store RecoveryStore, settings MFASettingsStore, mailer Mailer, helpdesk Helpdesk, limiter Limiter,
	reset func(ctx context.Context, userID string) error, audit func(context.Context, *AuditEvent) error, now func() time.Time, logger *slog.Logger) (*Recovery, error) {
	if len(cfg.CodeKey) < 32 {
		return nil, fmt.Errorf("recovery: code key has %d bytes: want at least 32 random bytes", len(cfg.CodeKey))
	}
	if _, err := url.Parse(cfg.PublicURL); err != nil || cfg.PublicURL == "" {
		return nil, fmt.Errorf("recovery: public URL %q: want the service's origin (https://auth.hestami.example)", cfg.PublicURL)
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.CodeTTL <= 0 {
		cfg.CodeTTL = 15 * time.Minute
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 15 * time.Minute
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.RequestLimit.Events <= 0 {
		cfg.RequestLimit = Limit{Events: 3, Window: time.Hour}
	}
	if cfg.IPLimit.Events <= 0 {
		cfg.IPLimit = Limit{Events: 10, Window: time.Hour}
	}
	return &Recovery{cfg: cfg, store: store, settings: settings, mailer: mailer, helpdesk: helpdesk, limiter: limiter,
		reset: reset, audit: audit, now: now, log: logger}, nil
}

// record audits one step of a recovery.
func (r *Recovery) record(ctx context.Context, action, outcome string, actorID, subjectID string, c Client, detail string) error {
	return r.audit(ctx, &AuditEvent{Action: action, Outcome: outcome, ActorID: actorID, SubjectID: subjectID,
		IP: c.IP, UserAgent: c.UserAgent, Detail: detail})
}

// Request files a recovery request for u (signed in with their first factor, but
// without any second factor left) from client c, with the person's reason. It
// emails one code to u's primary email and a different one to the verified
// secondary email, if there is one; both work for 15 minutes. A request still
// waiting for codes is replaced (its codes stop working); while one awaits
// approval or its link is valid, a new one is refused (CodeConflict). Requests
// are rate limited per user and per client IP (CodeRateLimited). Audited as
// "recovery.request" and "recovery.codes_sent" (and their failures).
func (r *Recovery) Request(ctx context.Context, u *User, c Client, reason string) (*RecoveryRequest, error) {
	reason = strings.TrimSpace(reason)
	if len(reason) > 2000 {
		reason = reason[:2000]
	}
	if u.Email == "" {
		_ = r.record(ctx, "recovery.request", OutcomeFailure, u.ID, "", c, "account has no email")
		return nil, Errorf(CodeInvalid, "Your account has no email address to send recovery codes to. Contact support.")
	}
	if err := r.limit(ctx, u, c); err != nil {
		return nil, err
	}
	now := r.now()
	if err := r.closeStale(ctx, u, c, now); err != nil {
		return nil, err
	}
	set, err := r.settings.MFASettings(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("recovery request: %w", err)
	}
	req := &RecoveryRequest{
		ID: recoveryUUID(), UserID: u.ID, Status: RecoveryVerifying, Reason: reason, PrimaryEmail: u.Email,
		CodesExpireAt: now.Add(r.cfg.CodeTTL), IP: c.IP, UserAgent: truncate(c.UserAgent, 512), CreatedAt: now,
	}
	primary := recoveryCode()
	var secondary string
	if set.SecondaryEmailVerified && set.SecondaryEmail != "" && NormalizeEmail(set.SecondaryEmail) != NormalizeEmail(u.Email) {
		req.SecondaryEmail = set.SecondaryEmail
		for secondary == "" || secondary == primary {
			secondary = recoveryCode()
		}
	}
	// The hashes bind each code to the request and to the email it goes to.
	req.PrimaryCodeHash = r.codeHash(req.ID, "primary", primary)
	if secondary != "" {
		req.SecondaryCodeHash = r.codeHash(req.ID, "secondary", secondary)
	}
	if err := r.store.CreateRecovery(ctx, req); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, Errorf(CodeConflict, "Another recovery request of yours was filed at the same moment. Look at its status, or try again.")
		}
		return nil, fmt.Errorf("recovery request: %w", err)
	}
	if err := r.record(ctx, "recovery.request", OutcomeSuccess, u.ID, "", c, "request "+req.ID); err != nil {
		return nil, err
	}
	if err := r.sendCodes(ctx, u, req, primary, secondary, c); err != nil {
		return nil, err
	}
	return req, nil
}

func (r *Recovery) limit(ctx context.Context, u *User, c Client) error {
	if r.limiter == nil {
		return nil
	}
	for _, k := range []struct {
		key string
		l   Limit
	}{{"recovery:user:" + u.ID, r.cfg.RequestLimit}, {"recovery:ip:" + c.IP, r.cfg.IPLimit}} {
		if strings.HasSuffix(k.key, ":") {
			continue // no client IP
		}
		res, err := r.limiter.Allow(ctx, k.key, k.l)
		if err != nil {
			return fmt.Errorf("recovery request: rate limit: %w", err)
		}
		if !res.Allowed {
			_ = r.record(ctx, "recovery.request", OutcomeFailure, u.ID, "", c, "rate limited: "+strings.SplitN(k.key, ":", 3)[1])
			return Errorf(CodeRateLimited, "Too many recovery requests. Try again in %s.", recoveryWait(res.RetryAfter))
		}
	}
	return nil
}

// recoveryWait is d for people: "45 seconds", "12 minutes".
func recoveryWait(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%d seconds", max(1, int((d+time.Second-1)/time.Second)))
	}
	m := int((d + time.Minute - 1) / time.Minute)
	if m == 1 {
		return "1 minute"
	}
	return fmt.Sprintf("%d minutes", m)
}

// closeStale makes room for a new request: it cancels a request still waiting
// for codes, expires one whose link or codes ran out, and refuses when one awaits
// approval or has a valid link.
func (r *Recovery) closeStale(ctx context.Context, u *User, c Client, now time.Time) error {
	reqs, err := r.store.Recoveries(ctx, u.ID, 5)
	if err != nil {
		return fmt.Errorf("recovery request: %w", err)
	}
	for _, old := range reqs {
		if !old.Status.Open() {
			continue
		}
		from := old.Status
		switch {
		case from == RecoveryAwaitingApproval:
			return Errorf(CodeConflict, "You already have a recovery request waiting for approval by support%s. You will get an email when it is decided.", ticketRef(old.TicketID))
		case from == RecoveryApproved && now.Before(old.TokenExpiresAt):
			return Errorf(CodeConflict, "Your recovery request was approved: use the link we emailed to %s (it works until %s UTC).", old.PrimaryEmail, old.TokenExpiresAt.UTC().Format("15:04"))
		case from == RecoveryApproved:
			old.Status = RecoveryExpired
		default:
			old.Status = RecoveryCancelled
		}
		err := r.store.UpdateRecovery(ctx, old, from)
		if err != nil && !errors.Is(err, ErrConflict) {
			return fmt.Errorf("recovery request: close request %s: %w", old.ID, err)
		}
		if err == nil {
			_ = r.record(ctx, "recovery."+string(old.Status), OutcomeSuccess, u.ID, "", c, "request "+old.ID+" replaced by a new one")
		}
	}
	return nil
}

func ticketRef(id string) string {
	if id == "" {
		return ""
	}
	return " (ticket " + id + ")"
}

// sendCodes emails the codes; a failure marks nothing but is audited, and the
// person is told to try again.
func (r *Recovery) sendCodes(ctx context.Context, u *User, req *RecoveryRequest, primary, secondary string, c Client) error {
	mins := int(r.cfg.CodeTTL / time.Minute)
	send := func(to, code, which string) error {
		text := fmt.Sprintf(`%s is your Hestami account recovery code (%s).

It expires in %d minutes. Enter it on the recovery page, together with the
other code if we sent one to your other email address.

Someone asked to reset the second factors of your Hestami account (authenticator
app, passkeys, backup codes). If it was not you, do not share this code: someone
may have access to the account you sign in with (Google, Microsoft, LinkedIn or
GitHub). Secure that account and tell support.
`, code, which, mins)
		return r.mailer.SendMail(ctx, Mail{To: to, Subject: "Your Hestami account recovery code", Text: text})
	}
	which := "the only code"
	if secondary != "" {
		which = "code 1 of 2, for your primary email"
	}
	if err := send(req.PrimaryEmail, primary, which); err != nil {
		_ = r.record(ctx, "recovery.codes_sent", OutcomeFailure, u.ID, "", c, "request "+req.ID+": mail to primary email failed")
		r.log.Error("send recovery code", "user", u.ID, "request", req.ID, "err", err)
		return Errorf(CodeUnavailable, "We could not send the recovery code to %s. Try again in a few minutes.", req.PrimaryEmail).WithCause(err)
	}
	sent := "primary email"
	if secondary != "" {
		if err := send(req.SecondaryEmail, secondary, "code 2 of 2, for your secondary email"); err != nil {
			_ = r.record(ctx, "recovery.codes_sent", OutcomeFailure, u.ID, "", c, "request "+req.ID+": mail to secondary email failed")
			r.log.Error("send recovery code", "user", u.ID, "request", req.ID, "err", err)
			return Errorf(CodeUnavailable, "We could not send the recovery code to %s. Try again in a few minutes.", req.SecondaryEmail).WithCause(err)
		}
		sent += " and secondary email"
	}
	return r.record(ctx, "recovery.codes_sent", OutcomeSuccess, u.ID, "", c, "request "+req.ID+": codes sent to "+sent)
}

// recoveryUUID is a random (version 4) UUID.
func recoveryUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// recoveryCode is 8 random digits.
func recoveryCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(100_000_000))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return fmt.Sprintf("%08d", n.Int64())
}

// codeHash is the keyed hash of a code, bound to the request and to which email
// it went to.
func (r *Recovery) codeHash(requestID, which, code string) string {
	m := hmac.New(sha256.New, r.cfg.CodeKey)
	m.Write([]byte("hestami recovery code v1\x00" + requestID + "\x00" + which + "\x00" + code))
	return hex.EncodeToString(m.Sum(nil))
}

// recoveryDigits keeps the digits of what the person typed.
func recoveryDigits(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

var errNoRecovery = Errorf(CodeNotFound, "There is no such recovery request for your account. Start a new one.")

// VerifyCodes checks the codes of u's request requestID: primaryCode from the
// primary email and, when one was sent there, secondaryCode from the secondary
// email (both required). A request allows 5 tries in all, within 15 minutes of
// the request; after the last wrong one it stops (start a new request). On
// success the request awaits approval, and a support ticket is opened through the
// helpdesk (when it fails, the request still awaits approval and staff see it in
// Pending; the failure is logged and audited). Errors: CodeUnauthorized for wrong
// codes (with the tries left), CodeForbidden when no tries are left, CodeInvalid
// for expired codes, CodeConflict when the request is past this step,
// CodeNotFound when u has no such request. Audited as "recovery.verify" and
// "recovery.ticket".
func (r *Recovery) VerifyCodes(ctx context.Context, u *User, requestID, primaryCode, secondaryCode string, c Client) (*RecoveryRequest, error) {
	req, err := r.store.Recovery(ctx, requestID)
	if errors.Is(err, ErrNotFound) || err == nil && req.UserID != u.ID {
		_ = r.record(ctx, "recovery.verify", OutcomeFailure, u.ID, "", c, "unknown request "+truncate(requestID, 64))
		return nil, errNoRecovery
	}
	if err != nil {
		return nil, fmt.Errorf("verify recovery codes: %w", err)
	}
	fail := func(detail string, e *Error) (*RecoveryRequest, error) {
		_ = r.record(ctx, "recovery.verify", OutcomeFailure, u.ID, "", c, "request "+req.ID+": "+detail)
		return nil, e
	}
	if req.Status != RecoveryVerifying {
		return fail("request is "+string(req.Status), Errorf(CodeConflict, "This recovery request is past entering codes: %s.", req.Status.Label()))
	}
	now := r.now()
	if !now.Before(req.CodesExpireAt) {
		req.Status = RecoveryExpired
		if err := r.store.UpdateRecovery(ctx, req, RecoveryVerifying); err != nil && !errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("verify recovery codes: %w", err)
		}
		return fail("codes expired", Errorf(CodeInvalid, "The recovery codes expired (they work for %d minutes). Start a new recovery request.", int(r.cfg.CodeTTL/time.Minute)))
	}
	// Count the try before comparing, so concurrent guesses share the budget.
	n, err := r.store.AddRecoveryAttempt(ctx, req.ID)
	if errors.Is(err, ErrNotFound) {
		return fail("request left verification", Errorf(CodeConflict, "This recovery request is past entering codes. Look at its status."))
	}
	if err != nil {
		return nil, fmt.Errorf("verify recovery codes: %w", err)
	}
	if n > r.cfg.MaxAttempts {
		return fail("no tries left", Errorf(CodeForbidden, "Too many wrong codes for this recovery request. Start a new one."))
	}
	ok := hmac.Equal([]byte(r.codeHash(req.ID, "primary", recoveryDigits(primaryCode))), []byte(req.PrimaryCodeHash))
	if req.SecondaryCodeHash != "" {
		ok2 := hmac.Equal([]byte(r.codeHash(req.ID, "secondary", recoveryDigits(secondaryCode))), []byte(req.SecondaryCodeHash))
		ok = ok && ok2
	}
	if !ok {
		left := r.cfg.MaxAttempts - n
		if left <= 0 {
			req.Status = RecoveryFailed
			if err := r.store.UpdateRecovery(ctx, req, RecoveryVerifying); err != nil && !errors.Is(err, ErrConflict) {
				return nil, fmt.Errorf("verify recovery codes: %w", err)
			}
			return fail(fmt.Sprintf("wrong codes, try %d of %d: request stopped", n, r.cfg.MaxAttempts),
				Errorf(CodeForbidden, "Those codes are not right, and that was the last try. Start a new recovery request."))
		}
		what := "That code is"
		if req.SecondaryCodeHash != "" {
			what = "The codes are"
		}
		return fail(fmt.Sprintf("wrong codes, try %d of %d", n, r.cfg.MaxAttempts),
			Errorf(CodeUnauthorized, "%s not right. Check the emails we sent and try again (%d %s left).", what, left, recoveryPlural(left, "try", "tries")))
	}
	req.Status, req.VerifiedAt = RecoveryAwaitingApproval, now
	if err := r.store.UpdateRecovery(ctx, req, RecoveryVerifying); err != nil {
		if errors.Is(err, ErrConflict) {
			return fail("request changed meanwhile", Errorf(CodeConflict, "This recovery request changed meanwhile. Look at its status."))
		}
		return nil, fmt.Errorf("verify recovery codes: %w", err)
	}
	if err := r.record(ctx, "recovery.verify", OutcomeSuccess, u.ID, "", c, "request "+req.ID+": codes verified, awaiting approval"); err != nil {
		return nil, err
	}
	r.openTicket(ctx, u, req, c)
	return req, nil
}

func recoveryPlural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// openTicket opens the support ticket of a verified request, best effort.
func (r *Recovery) openTicket(ctx context.Context, u *User, req *RecoveryRequest, c Client) {
	if r.helpdesk == nil {
		return
	}
	name := u.Name
	if name == "" {
		name = u.Email
	}
	secondary := "none verified"
	if req.SecondaryEmail != "" {
		secondary = req.SecondaryEmail + " (code verified)"
	}
	body := fmt.Sprintf(`%s (%s, %s account) lost every second factor and asks to reset them.

Reason given: %s

Identity checks passed:
  Primary email:   %s (code verified; email verified at sign-up: %t)
  Secondary email: %s

Request %s, filed %s UTC from %s (%s).
User id: %s

A staff member with the mfa:reset permission, other than this user, approves or
denies it at %s/admin/recovery (the account: %s/admin/users/%s). On approval the user gets a single-use link, valid
%d minutes, to set up their second factors again. Before approving, confirm the
person's identity through a channel you trust (a call to the number on file, a
video call).
`, name, u.Email, u.Type.Label(), cmp.Or(req.Reason, "(none)"), req.PrimaryEmail, u.EmailVerified, secondary,
		req.ID, req.CreatedAt.UTC().Format("2006-01-02 15:04"), cmp.Or(req.IP, "unknown IP"), DeviceName(req.UserAgent), u.ID,
		r.cfg.PublicURL, r.cfg.PublicURL, u.ID, int(r.cfg.TokenTTL/time.Minute))
	id, err := r.helpdesk.CreateTicket(ctx, Ticket{Subject: "Account recovery: " + name + " (" + u.Type.Label() + ")", Body: body, RequesterEmail: req.PrimaryEmail, RequestID: req.ID})
	if err != nil {
		r.log.Error("create recovery ticket", "request", req.ID, "err", err)
		_ = r.record(ctx, "recovery.ticket", OutcomeFailure, u.ID, "", c, "request "+req.ID+": helpdesk refused: "+truncate(err.Error(), 200))
		return
	}
	req.TicketID = truncate(id, 200)
	if err := r.store.UpdateRecovery(ctx, req, RecoveryAwaitingApproval); err != nil {
		r.log.Error("save recovery ticket id", "request", req.ID, "ticket", id, "err", err)
	}
	_ = r.record(ctx, "recovery.ticket", OutcomeSuccess, u.ID, "", c, "request "+req.ID+": ticket "+req.TicketID)
}

// mayDecide checks that approver may decide on req: mfa:reset, and never their
// own request.
func (r *Recovery) mayDecide(ctx context.Context, action string, approver *User, requestID string, c Client) (*RecoveryRequest, error) {
	if approver == nil {
		return nil, errSignedOut
	}
	if !approver.Can(PermMFAReset) {
		_ = r.record(ctx, action, OutcomeFailure, approver.ID, "", c, "no "+string(PermMFAReset)+" permission: request "+truncate(requestID, 64))
		return nil, Errorf(CodeForbidden, "Deciding on recovery requests needs the %s permission.", PermMFAReset)
	}
	req, err := r.store.Recovery(ctx, requestID)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeNotFound, "There is no recovery request %s.", requestID)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", action, err)
	}
	if req.UserID == approver.ID {
		_ = r.record(ctx, action, OutcomeFailure, approver.ID, "", c, "own request "+req.ID)
		return nil, Errorf(CodeForbidden, "You cannot decide on your own recovery request; another staff member with %s has to.", PermMFAReset)
	}
	if req.Status != RecoveryAwaitingApproval {
		_ = r.record(ctx, action, OutcomeFailure, approver.ID, req.UserID, c, "request "+req.ID+" is "+string(req.Status))
		return nil, Errorf(CodeConflict, "This recovery request is not awaiting approval: %s.", req.Status.Label())
	}
	return req, nil
}

// Approve approves recovery request requestID: approver needs mfa:reset and may
// not be the request's user (CodeForbidden). It issues a single-use recovery link
// valid for 15 minutes and emails it to the user's primary email
// ({PublicURL}/mfa/recover?token=...); only the token's hash is kept. The
// approver should have confirmed the person's identity out of band first.
// CodeConflict if the request is not awaiting approval (decided already, or
// still verifying). Audited as "recovery.approve".
func (r *Recovery) Approve(ctx context.Context, approver *User, requestID string, c Client) (*RecoveryRequest, error) {
	req, err := r.mayDecide(ctx, "recovery.approve", approver, requestID, c)
	if err != nil {
		return nil, err
	}
	now := r.now()
	token := NewToken()
	req.Status, req.DecidedBy, req.DecidedAt = RecoveryApproved, approver.ID, now
	req.TokenHash, req.TokenExpiresAt = HashToken(token), now.Add(r.cfg.TokenTTL)
	if err := r.store.UpdateRecovery(ctx, req, RecoveryAwaitingApproval); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, Errorf(CodeConflict, "Someone decided on this recovery request meanwhile. Reload it.")
		}
		return nil, fmt.Errorf("approve recovery: %w", err)
	}
	if err := r.record(ctx, "recovery.approve", OutcomeSuccess, approver.ID, req.UserID, c, "request "+req.ID+ticketRef(req.TicketID)); err != nil {
		return nil, err
	}
	link := r.cfg.PublicURL + "/mfa/recover?token=" + url.QueryEscape(token)
	text := fmt.Sprintf(`Your request to recover your Hestami account was approved.

Open this link within %d minutes to set up your second factors again. It works
once, and only while you are signed in to your own account:

%s

If you did not ask for this, do not open the link and contact support at once.
`, int(r.cfg.TokenTTL/time.Minute), link)
	if err := r.mailer.SendMail(ctx, Mail{To: req.PrimaryEmail, Subject: "Your Hestami account recovery was approved", Text: text}); err != nil {
		r.log.Error("send recovery link", "request", req.ID, "err", err)
		_ = r.record(ctx, "recovery.link_sent", OutcomeFailure, approver.ID, req.UserID, c, "request "+req.ID+": mail failed")
		return req, Errorf(CodeUnavailable, "The request is approved, but the email with the recovery link could not be sent. The user can file a new request, or try approving a new one later.").WithCause(err)
	}
	return req, r.record(ctx, "recovery.link_sent", OutcomeSuccess, approver.ID, req.UserID, c, "request "+req.ID)
}

// Deny turns down recovery request requestID with a note for the user (emailed
// to their primary email). The same rules as Approve apply. Audited as
// "recovery.deny".
func (r *Recovery) Deny(ctx context.Context, approver *User, requestID, note string, c Client) (*RecoveryRequest, error) {
	req, err := r.mayDecide(ctx, "recovery.deny", approver, requestID, c)
	if err != nil {
		return nil, err
	}
	note = truncate(strings.TrimSpace(note), 2000)
	req.Status, req.DecidedBy, req.DecidedAt, req.DecisionNote = RecoveryDenied, approver.ID, r.now(), note
	if err := r.store.UpdateRecovery(ctx, req, RecoveryAwaitingApproval); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, Errorf(CodeConflict, "Someone decided on this recovery request meanwhile. Reload it.")
		}
		return nil, fmt.Errorf("deny recovery: %w", err)
	}
	if err := r.record(ctx, "recovery.deny", OutcomeSuccess, approver.ID, req.UserID, c, "request "+req.ID+ticketRef(req.TicketID)); err != nil {
		return nil, err
	}
	text := "Your request to recover your Hestami account was declined by support.\n\n"
	if note != "" {
		text += "Note from support: " + note + "\n\n"
	}
	text += "If you still cannot sign in, reply to this email or contact support.\n"
	if err := r.mailer.SendMail(ctx, Mail{To: req.PrimaryEmail, Subject: "Your Hestami account recovery request", Text: text}); err != nil {
		r.log.Error("send recovery denial", "request", req.ID, "err", err)
	}
	return req, nil
}

var errBadRecoveryLink = Errorf(CodeUnauthorized, "This recovery link is not valid (it was used already, or is incomplete). Copy the whole link from the email, or file a new recovery request.")

// Redeem uses the recovery link's token for u (signed in with their first
// factor): it must be the token of u's approved request, unused and at most 15
// minutes old. It resets u's second factors and backup codes (the reset
// function), so the policy sends them to set up new ones. The token works once,
// even under concurrent requests. Errors: CodeUnauthorized for an unknown, used
// or other user's token, CodeInvalid for an expired one. Audited as
// "recovery.redeem".
func (r *Recovery) Redeem(ctx context.Context, u *User, token string, c Client) (*RecoveryRequest, error) {
	fail := func(detail string, e *Error) (*RecoveryRequest, error) {
		_ = r.record(ctx, "recovery.redeem", OutcomeFailure, u.ID, "", c, detail)
		return nil, e
	}
	if token == "" {
		return fail("no token", errBadRecoveryLink)
	}
	req, err := r.store.RecoveryByToken(ctx, HashToken(token))
	if errors.Is(err, ErrNotFound) {
		return fail("unknown token", errBadRecoveryLink)
	}
	if err != nil {
		return nil, fmt.Errorf("redeem recovery: %w", err)
	}
	if req.UserID != u.ID {
		return fail("token of another user's request "+req.ID, Errorf(CodeUnauthorized, "This recovery link belongs to another account. Sign in with the account that asked for it."))
	}
	if req.Status != RecoveryApproved {
		return fail("request "+req.ID+" is "+string(req.Status), errBadRecoveryLink)
	}
	now := r.now()
	if !now.Before(req.TokenExpiresAt) {
		req.Status = RecoveryExpired
		if err := r.store.UpdateRecovery(ctx, req, RecoveryApproved); err != nil && !errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("redeem recovery: %w", err)
		}
		return fail("request "+req.ID+": link expired", Errorf(CodeInvalid, "This recovery link expired (links work for %d minutes). File a new recovery request.", int(r.cfg.TokenTTL/time.Minute)))
	}
	req.Status, req.RedeemedAt = RecoveryRedeemed, now
	if err := r.store.UpdateRecovery(ctx, req, RecoveryApproved); err != nil {
		if errors.Is(err, ErrConflict) {
			return fail("request "+req.ID+": link used concurrently", errBadRecoveryLink)
		}
		return nil, fmt.Errorf("redeem recovery: %w", err)
	}
	if err := r.reset(ctx, u.ID); err != nil {
		// Give the link back, so the person can try again while it is valid.
		req.Status, req.RedeemedAt = RecoveryApproved, time.Time{}
		if uerr := r.store.UpdateRecovery(ctx, req, RecoveryRedeemed); uerr != nil {
			r.log.Error("release recovery link after a failed reset", "request", req.ID, "err", uerr)
		}
		_ = r.record(ctx, "recovery.redeem", OutcomeFailure, u.ID, "", c, "request "+req.ID+": reset failed")
		return nil, fmt.Errorf("redeem recovery: reset factors: %w", err)
	}
	return req, r.record(ctx, "recovery.redeem", OutcomeSuccess, u.ID, "", c, "request "+req.ID+": second factors reset, re-enrolment needed")
}

// Latest returns u's newest recovery request (for the status page); CodeNotFound
// if they never filed one.
func (r *Recovery) Latest(ctx context.Context, u *User) (*RecoveryRequest, error) {
	reqs, err := r.store.Recoveries(ctx, u.ID, 1)
	if err != nil {
		return nil, fmt.Errorf("recovery status: %w", err)
	}
	if len(reqs) == 0 {
		return nil, Errorf(CodeNotFound, "You have no recovery request.")
	}
	return reqs[0], nil
}

// Get returns recovery request id for actor: their own, or anyone's with
// mfa:reset. CodeNotFound otherwise.
func (r *Recovery) Get(ctx context.Context, actor *User, id string) (*RecoveryRequest, error) {
	if actor == nil {
		return nil, errSignedOut
	}
	req, err := r.store.Recovery(ctx, id)
	if errors.Is(err, ErrNotFound) || err == nil && req.UserID != actor.ID && !actor.Can(PermMFAReset) {
		return nil, Errorf(CodeNotFound, "There is no recovery request %s.", id)
	}
	if err != nil {
		return nil, fmt.Errorf("recovery request: %w", err)
	}
	return req, nil
}

// Pending lists the requests awaiting approval, oldest first, for approver
// (mfa:reset; CodeForbidden otherwise). It includes the approver's own requests,
// which they cannot decide on.
func (r *Recovery) Pending(ctx context.Context, approver *User) ([]*RecoveryRequest, error) {
	if approver == nil || !approver.Can(PermMFAReset) {
		return nil, Errorf(CodeForbidden, "Seeing recovery requests needs the %s permission.", PermMFAReset)
	}
	reqs, err := r.store.RecoveriesByStatus(ctx, RecoveryAwaitingApproval, 200)
	if err != nil {
		return nil, fmt.Errorf("pending recovery requests: %w", err)
	}
	return reqs, nil
}
