package auth

import (
	"context"
	"time"
)

// The second-factor methods, named by their OIDC amr values (RFC 8176 where one
// exists). A session's Methods holds the first factor (the provider's name) and the
// second factors verified in it.
const (
	MethodTOTP       = "otp"    // an authenticator app (RFC 6238)
	MethodBackupCode = "backup" // one of the ten backup codes
	MethodEmail      = "email"  // a code sent to the verified secondary email
	MethodSMS        = "sms"    // a code sent by SMS (fallback only)
	MethodWebAuthn   = "hwk"    // a passkey or security key (WebAuthn)
)

// SecondFactorMethods lists the second-factor methods, strongest first.
var SecondFactorMethods = []string{MethodWebAuthn, MethodTOTP, MethodBackupCode, MethodEmail, MethodSMS}

// IsSecondFactor reports whether method is a second-factor method.
func IsSecondFactor(method string) bool {
	for _, m := range SecondFactorMethods {
		if m == method {
			return true
		}
	}
	return false
}

// Factor is an enrolled second factor. Backup codes are not factors (they are a
// set of their own, see FactorStore.ReplaceBackupCodes).
type Factor struct {
	ID     string // a UUID, assigned by the store
	UserID string
	// Method is MethodTOTP, MethodEmail, MethodSMS or MethodWebAuthn.
	Method string
	// Label is what the person sees: "Authenticator app", "+1 ••• ••• 1234",
	// "a•••@example.com", "YubiKey 5".
	Label string
	// Data is the method's material: for TOTP the secret sealed with a Sealer;
	// for SMS the E.164 number; for email the address; for WebAuthn the
	// credential (JSON). Never shown, never logged.
	Data []byte
	// Confirmed is set once the person proved the factor works (a first code,
	// a first assertion); unconfirmed factors do not count.
	Confirmed  bool
	CreatedAt  time.Time
	LastUsedAt time.Time
	// LastStep is the last TOTP time step accepted, so a code works once.
	LastStep int64
}

// FactorStore keeps second factors and backup codes.
type FactorStore interface {
	// CreateFactor stores f, assigning f.ID and CreatedAt.
	CreateFactor(ctx context.Context, f *Factor) error
	// Factor returns the user's factor id; ErrNotFound if the user has none such.
	Factor(ctx context.Context, userID, id string) (*Factor, error)
	// Factors returns the user's factors (confirmed or not), oldest first.
	Factors(ctx context.Context, userID string) ([]*Factor, error)
	// ConfirmFactor marks the user's factor confirmed at at; ErrNotFound if none.
	ConfirmFactor(ctx context.Context, userID, id string, at time.Time) error
	// UpdateFactorData replaces the factor's Data (re-sealing under a new key,
	// a WebAuthn sign count); ErrNotFound if none.
	UpdateFactorData(ctx context.Context, userID, id string, data []byte) error
	// UseTOTPStep records step as the factor's last accepted step if it is
	// greater than the one recorded, atomically; it returns false when it is not
	// (the code was used already: a replay).
	UseTOTPStep(ctx context.Context, userID, id string, step int64, at time.Time) (bool, error)
	// TouchFactor sets the factor's LastUsedAt.
	TouchFactor(ctx context.Context, userID, id string, at time.Time) error
	// DeleteFactor removes the user's factor; ErrNotFound if none.
	DeleteFactor(ctx context.Context, userID, id string) error
	// DeleteFactors removes every factor and backup code of the user (an MFA
	// reset) and returns how many factors it removed.
	DeleteFactors(ctx context.Context, userID string) (int, error)

	// ReplaceBackupCodes replaces the user's backup codes with hashes (the old
	// set stops working).
	ReplaceBackupCodes(ctx context.Context, userID string, hashes []string, at time.Time) error
	// UseBackupCode marks the user's unused code with hash used at at and
	// reports whether there was one: under concurrent requests exactly one
	// succeeds.
	UseBackupCode(ctx context.Context, userID, hash string, at time.Time) (bool, error)
	// BackupCodesLeft counts the user's unused backup codes.
	BackupCodesLeft(ctx context.Context, userID string) (int, error)
}

// MFASettings are the per-user settings the MFA policy reads.
type MFASettings struct {
	UserID string
	// Deadline is when a staff member must have set up MFA by (account creation
	// plus the grace period; an administrator can extend it).
	Deadline time.Time
	// Required is set when the user's organization requires MFA (owners).
	Required bool
	// ServiceTypes are a service provider's trades ("electrical", "gas"...),
	// for the policy's required service types.
	ServiceTypes []string
	// SecondaryEmail receives email codes once verified.
	SecondaryEmail         string
	SecondaryEmailVerified bool
}

// MFASettingsStore keeps MFASettings.
type MFASettingsStore interface {
	// MFASettings returns the user's settings; zero settings (with UserID set)
	// if none were stored.
	MFASettings(ctx context.Context, userID string) (*MFASettings, error)
	// SaveMFASettings stores s.
	SaveMFASettings(ctx context.Context, s *MFASettings) error
}

// Mail is one email to one person.
type Mail struct {
	To      string
	Subject string
	Text    string
}

// Mailer sends email to people (codes, new-device notices, recovery). Package
// smtp implements it.
type Mailer interface {
	// SendMail returns nil once the mail server accepted m.
	SendMail(ctx context.Context, m Mail) error
}

// SMS is one text message.
type SMS struct {
	To   string // E.164
	Body string
}

// SMSSender sends text messages. Package twilio implements it; LogSMSSender (in
// development) writes them to the log.
type SMSSender interface {
	// SendSMS returns nil once the provider accepted m.
	SendSMS(ctx context.Context, m SMS) error
}

// Limit is a rate limit: at most Events in Window.
type Limit struct {
	Events int
	Window time.Duration
}

// LimitResult is the answer of a Limiter.
type LimitResult struct {
	Allowed bool
	// RetryAfter is how long until the next event would be allowed (when not).
	RetryAfter time.Duration
}

// Limiter counts events per key ("signin:ip:203.0.113.9", "sms:number:+1...")
// against limits. Implementations: MemoryLimiter (one instance) and package redis
// (shared by several replicas).
type Limiter interface {
	// Allow records one event for key and reports whether it is within l.
	Allow(ctx context.Context, key string, l Limit) (LimitResult, error)
	// Reset forgets key's events (a successful verification).
	Reset(ctx context.Context, key string) error
}
