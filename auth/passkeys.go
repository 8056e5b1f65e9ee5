package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// PasskeyCeremonyTimeout is how long a passkey registration or assertion may take
// from its options to the browser's answer; the ceremony is refused after it.
const PasskeyCeremonyTimeout = 5 * time.Minute

// MaxPasskeys is how many passkeys one person may register: enough for a phone,
// a laptop and a few security keys, few enough that the list stays readable.
const MaxPasskeys = 20

// The kinds of passkey ceremonies.
const (
	CeremonyRegistration = "registration"
	CeremonyAssertion    = "assertion"
)

// ErrWebAuthnRejected is wrapped by a WebAuthn implementation when the browser's
// answer fails verification (bad signature, wrong origin or challenge, malformed
// data, a credential the user does not own): the person's side, not ours.
var ErrWebAuthnRejected = errors.New("webauthn response rejected")

// WebAuthn is the relying party's side of WebAuthn ceremonies (package webauthn
// implements it over go-webauthn). It keeps no state: the session it returns from
// a Begin is stored by the caller and handed back to the Finish. Credentials are
// the Data of the user's WebAuthn factors.
type WebAuthn interface {
	// BeginRegistration returns the options for navigator.credentials.create
	// (JSON {"publicKey": {...}}, binary fields base64url) to register a new
	// credential for u, excluding the credentials u has, and the ceremony's
	// session.
	BeginRegistration(u *User, credentials [][]byte) (options, session []byte, err error)
	// FinishRegistration verifies the browser's answer (a PublicKeyCredential as
	// JSON) against session and returns the new credential's Data. It returns an
	// error wrapping ErrWebAuthnRejected if the answer does not verify, and one
	// wrapping ErrConflict if the credential is one of credentials already.
	FinishRegistration(u *User, credentials [][]byte, session, response []byte) (credential []byte, err error)
	// BeginLogin returns the options for navigator.credentials.get (JSON
	// {"publicKey": {...}}) allowing only credentials, and the ceremony's session.
	BeginLogin(u *User, credentials [][]byte) (options, session []byte, err error)
	// FinishLogin verifies the browser's assertion against session and
	// credentials; an error wrapping ErrWebAuthnRejected if it does not verify.
	FinishLogin(u *User, credentials [][]byte, session, response []byte) (*WebAuthnAssertion, error)
}

// WebAuthnAssertion is a verified assertion.
type WebAuthnAssertion struct {
	// Index is the position in credentials of the credential that signed.
	Index int
	// Data is that credential updated (its sign count and flags), to store.
	Data []byte
	// CloneWarning is set when the authenticator's signature counter did not
	// go up (it was StoredCount and is now Count), or went backwards before: a
	// sign that the credential's key was copied. The signature itself verified.
	CloneWarning bool
	Count        uint32
	StoredCount  uint32
}

// PasskeyCeremony is a passkey registration or assertion in progress, between
// the options sent to the browser and its answer. It is stored under the hash of
// its id (the id is a bearer secret the page holds) and taken once.
type PasskeyCeremony struct {
	ID     string // HashToken(ceremony id)
	UserID string
	Kind   string // CeremonyRegistration or CeremonyAssertion
	// Name is the label the person gave the passkey being registered.
	Name string
	// Session is the WebAuthn implementation's ceremony state (the challenge...).
	Session   []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// PasskeyCeremonyStore keeps passkey ceremonies in progress. Package postgres
// implements it (PasskeyStore).
type PasskeyCeremonyStore interface {
	// PutPasskeyCeremony stores c under c.ID.
	PutPasskeyCeremony(ctx context.Context, c *PasskeyCeremony) error
	// TakePasskeyCeremony deletes the ceremony with id and returns it: a
	// ceremony is finished once, even by concurrent requests. ErrNotFound if
	// there is none (never started, or taken already).
	TakePasskeyCeremony(ctx context.Context, id string) (*PasskeyCeremony, error)
	// DeleteExpiredPasskeyCeremonies removes ceremonies that expired before
	// before and returns how many.
	DeleteExpiredPasskeyCeremonies(ctx context.Context, before time.Time) (int, error)
}

// Passkeys registers passkeys (and security keys) as second factors and checks
// them: the phishing-resistant method, recommended for staff. A passkey is a
// Factor with Method MethodWebAuthn whose Data is the credential.
//
// Each ceremony has two steps. Begin returns the options for the browser and a
// ceremony id; the page keeps the id and sends it back with the browser's answer
// to Finish. A ceremony works once, for the user who began it, for
// PasskeyCeremonyTimeout. Every step is audited (actions mfa.webauthn.enrol.begin,
// mfa.webauthn.enrol, mfa.webauthn.verify.begin, mfa.webauthn.verify).
type Passkeys struct {
	wa         WebAuthn
	factors    FactorStore
	ceremonies PasskeyCeremonyStore
	audit      func(context.Context, *AuditEvent) error
	now        func() time.Time
	log        *slog.Logger
}

// NewPasskeys returns Passkeys over the relying party wa, the factor store and
// the ceremony store. audit records events ((*Service).Audit); now is the clock.
func NewPasskeys(wa WebAuthn, factors FactorStore, ceremonies PasskeyCeremonyStore, audit func(context.Context, *AuditEvent) error, now func() time.Time, logger *slog.Logger) *Passkeys {
	return &Passkeys{wa: wa, factors: factors, ceremonies: ceremonies, audit: audit, now: now, log: logger}
}

var (
	errPasskeyCeremony = Errorf(CodeUnauthorized, "This passkey request is not valid any more (it was used already, has expired, or was started elsewhere). Start again.")
	errPasskeyRejected = Errorf(CodeUnauthorized, "Your passkey's answer could not be verified. Try again with a passkey registered for this account, or use another method.")
	errPasskeyClone    = Errorf(CodeUnauthorized, "This passkey may have been copied (its signature counter went backwards), so it was not accepted. Use another method, remove this passkey from your security page and add it again; tell support if you did not expect this.")
	errNoPasskeys      = Errorf(CodeNotFound, "You have no passkey for this account. Use another method, or add a passkey from your security page.")
)

// BeginRegistration starts registering a passkey for u, named name ("Passkey" if
// empty; at most 64 characters, no control characters: CodeInvalid otherwise).
// It returns the options for navigator.credentials.create (JSON {"publicKey":
// {...}}; webauthn.Script's begin answer puts them under "options") and the
// ceremony id to hand back to FinishRegistration. CodeConflict if u has
// MaxPasskeys already. Audited as mfa.webauthn.enrol.begin.
func (p *Passkeys) BeginRegistration(ctx context.Context, u *User, name string, c Client) (options []byte, ceremonyID string, err error) {
	name, err = passkeyName(name)
	if err != nil {
		return nil, "", err
	}
	keys, err := p.passkeys(ctx, u.ID, false)
	if err != nil {
		return nil, "", err
	}
	if len(keys) >= MaxPasskeys {
		return nil, "", Errorf(CodeConflict, "You have %d passkeys, the most one account may have. Remove one you no longer use, then add the new one.", len(keys))
	}
	options, session, err := p.wa.BeginRegistration(u, passkeyCredentials(keys))
	if err != nil {
		return nil, "", fmt.Errorf("begin passkey registration: %w", err)
	}
	id, err := p.putCeremony(ctx, u, CeremonyRegistration, name, session)
	if err != nil {
		return nil, "", err
	}
	return options, id, p.audit(ctx, p.event("mfa.webauthn.enrol.begin", u, c, OutcomeSuccess, fmt.Sprintf("registering %q", name)))
}

// FinishRegistration checks the browser's answer to the registration ceremonyID
// (a PublicKeyCredential as JSON, the hidden field webauthn.Script fills) and
// stores the passkey as a confirmed factor labelled with the name given to
// BeginRegistration. It returns the factor without its Data. Errors: CodeUnauthorized
// if the ceremony is unknown, used, expired or another user's, or the answer does
// not verify; CodeConflict if the passkey is registered already. Audited as
// mfa.webauthn.enrol, success or failure.
func (p *Passkeys) FinishRegistration(ctx context.Context, u *User, ceremonyID string, response []byte, c Client) (*Factor, error) {
	f, detail, err := p.finishRegistration(ctx, u, ceremonyID, response)
	ev := p.event("mfa.webauthn.enrol", u, c, OutcomeSuccess, detail)
	if err != nil {
		ev.Outcome = OutcomeFailure
		p.log.Warn("passkey registration refused", "user", u.ID, "ip", c.IP, "detail", detail, "err", err)
	}
	if aerr := p.audit(ctx, ev); aerr != nil && err == nil {
		return nil, aerr
	}
	return f, err
}

func (p *Passkeys) finishRegistration(ctx context.Context, u *User, ceremonyID string, response []byte) (*Factor, string, error) {
	cer, detail, err := p.takeCeremony(ctx, u, ceremonyID, CeremonyRegistration)
	if err != nil {
		return nil, detail, err
	}
	keys, err := p.passkeys(ctx, u.ID, false)
	if err != nil {
		return nil, "loading passkeys failed", err
	}
	cred, err := p.wa.FinishRegistration(u, passkeyCredentials(keys), cer.Session, response)
	switch {
	case errors.Is(err, ErrWebAuthnRejected):
		return nil, "answer rejected: " + passkeyDetail(err.Error()), errPasskeyRejected.WithCause(err)
	case errors.Is(err, ErrConflict):
		return nil, "passkey registered already", Errorf(CodeConflict, "This passkey is registered for your account already; it is in your list of passkeys.").WithCause(err)
	case err != nil:
		return nil, "verification failed on our side", fmt.Errorf("finish passkey registration: %w", err)
	}
	now := p.now()
	f := &Factor{UserID: u.ID, Method: MethodWebAuthn, Label: cer.Name, Data: cred, Confirmed: true, CreatedAt: now}
	if err := p.factors.CreateFactor(ctx, f); err != nil {
		return nil, "storing the passkey failed", fmt.Errorf("store passkey: %w", err)
	}
	// The browser proved the credential works; ConfirmFactor makes sure of it
	// whatever CreateFactor does with Confirmed.
	if err := p.factors.ConfirmFactor(ctx, u.ID, f.ID, now); err != nil {
		return nil, "confirming the passkey failed", fmt.Errorf("confirm passkey: %w", err)
	}
	f.Confirmed, f.Data = true, nil
	return f, fmt.Sprintf("passkey %q registered (factor %s)", f.Label, f.ID), nil
}

// BeginAssertion starts checking one of u's passkeys (a second factor at sign-in
// or a step-up). It returns the options for navigator.credentials.get (JSON
// {"publicKey": {...}} allowing only u's confirmed passkeys) and the ceremony id
// to hand back to FinishAssertion. CodeNotFound if u has no passkey. Audited as
// mfa.webauthn.verify.begin.
func (p *Passkeys) BeginAssertion(ctx context.Context, u *User, c Client) (options []byte, ceremonyID string, err error) {
	keys, err := p.passkeys(ctx, u.ID, true)
	if err != nil {
		return nil, "", err
	}
	if len(keys) == 0 {
		return nil, "", errNoPasskeys
	}
	options, session, err := p.wa.BeginLogin(u, passkeyCredentials(keys))
	if err != nil {
		return nil, "", fmt.Errorf("begin passkey assertion: %w", err)
	}
	id, err := p.putCeremony(ctx, u, CeremonyAssertion, "", session)
	if err != nil {
		return nil, "", err
	}
	return options, id, p.audit(ctx, p.event("mfa.webauthn.verify.begin", u, c, OutcomeSuccess, fmt.Sprintf("%d passkeys allowed", len(keys))))
}

// FinishAssertion checks the browser's answer to the assertion ceremonyID: a
// signature by one of u's confirmed passkeys over this ceremony's challenge, from
// this service's origin. On success it records the passkey's new sign count and
// when it was used; the caller then elevates the session with MethodWebAuthn.
// Errors are CodeUnauthorized: the ceremony is unknown, used, expired or another
// user's; the answer does not verify; or the passkey's signature counter went
// backwards (a possibly copied key: the passkey is flagged and refused from then
// on, until removed and added again). Audited as mfa.webauthn.verify.
func (p *Passkeys) FinishAssertion(ctx context.Context, u *User, ceremonyID string, response []byte, c Client) error {
	detail, err := p.finishAssertion(ctx, u, ceremonyID, response)
	ev := p.event("mfa.webauthn.verify", u, c, OutcomeSuccess, detail)
	if err != nil {
		ev.Outcome = OutcomeFailure
		p.log.Warn("passkey assertion refused", "user", u.ID, "ip", c.IP, "detail", detail, "err", err)
	}
	if aerr := p.audit(ctx, ev); aerr != nil && err == nil {
		return aerr
	}
	return err
}

func (p *Passkeys) finishAssertion(ctx context.Context, u *User, ceremonyID string, response []byte) (string, error) {
	cer, detail, err := p.takeCeremony(ctx, u, ceremonyID, CeremonyAssertion)
	if err != nil {
		return detail, err
	}
	keys, err := p.passkeys(ctx, u.ID, true)
	if err != nil {
		return "loading passkeys failed", err
	}
	if len(keys) == 0 {
		return "no passkey left", errNoPasskeys
	}
	res, err := p.wa.FinishLogin(u, passkeyCredentials(keys), cer.Session, response)
	switch {
	case errors.Is(err, ErrWebAuthnRejected):
		return "answer rejected: " + passkeyDetail(err.Error()), errPasskeyRejected.WithCause(err)
	case err != nil:
		return "verification failed on our side", fmt.Errorf("finish passkey assertion: %w", err)
	case res.Index < 0 || res.Index >= len(keys):
		return "verification failed on our side", fmt.Errorf("finish passkey assertion: credential index %d of %d", res.Index, len(keys))
	}
	f := keys[res.Index]
	if err := p.factors.UpdateFactorData(ctx, u.ID, f.ID, res.Data); err != nil {
		return "storing the sign count failed", fmt.Errorf("store passkey sign count: %w", err)
	}
	if res.CloneWarning {
		p.log.Warn("passkey signature counter went backwards: possibly a copied key", "user", u.ID, "factor", f.ID, "stored_count", res.StoredCount, "count", res.Count)
		return fmt.Sprintf("passkey %q (factor %s): signature counter went backwards (stored %d, got %d): possibly a copied key", f.Label, f.ID, res.StoredCount, res.Count), errPasskeyClone
	}
	if err := p.factors.TouchFactor(ctx, u.ID, f.ID, p.now()); err != nil {
		return "recording the use failed", fmt.Errorf("record passkey use: %w", err)
	}
	return fmt.Sprintf("passkey %q (factor %s)", f.Label, f.ID), nil
}

// DeleteExpired removes ceremonies that ran out of time (Begin does it too, so
// calling it is optional) and returns how many.
func (p *Passkeys) DeleteExpired(ctx context.Context) (int, error) {
	n, err := p.ceremonies.DeleteExpiredPasskeyCeremonies(ctx, p.now())
	if err != nil {
		return 0, fmt.Errorf("delete expired passkey ceremonies: %w", err)
	}
	return n, nil
}

// passkeys returns the user's WebAuthn factors (only confirmed ones if
// confirmed).
func (p *Passkeys) passkeys(ctx context.Context, userID string, confirmed bool) ([]*Factor, error) {
	all, err := p.factors.Factors(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("load passkeys: %w", err)
	}
	var out []*Factor
	for _, f := range all {
		if f.Method == MethodWebAuthn && (f.Confirmed || !confirmed) {
			out = append(out, f)
		}
	}
	return out, nil
}

func passkeyCredentials(keys []*Factor) [][]byte {
	out := make([][]byte, len(keys))
	for i, f := range keys {
		out[i] = f.Data
	}
	return out
}

func (p *Passkeys) putCeremony(ctx context.Context, u *User, kind, name string, session []byte) (string, error) {
	now := p.now()
	if _, err := p.ceremonies.DeleteExpiredPasskeyCeremonies(ctx, now); err != nil {
		p.log.Warn("deleting expired passkey ceremonies failed", "err", err)
	}
	id := NewToken()
	c := &PasskeyCeremony{ID: HashToken(id), UserID: u.ID, Kind: kind, Name: name, Session: session, CreatedAt: now, ExpiresAt: now.Add(PasskeyCeremonyTimeout)}
	if err := p.ceremonies.PutPasskeyCeremony(ctx, c); err != nil {
		return "", fmt.Errorf("store passkey %s: %w", kind, err)
	}
	return id, nil
}

// takeCeremony takes the ceremony id (once) and checks it is u's, of kind and
// not expired; on failure it returns the audit detail and errPasskeyCeremony.
func (p *Passkeys) takeCeremony(ctx context.Context, u *User, id, kind string) (*PasskeyCeremony, string, error) {
	if id == "" {
		return nil, "no ceremony id", errPasskeyCeremony
	}
	c, err := p.ceremonies.TakePasskeyCeremony(ctx, HashToken(id))
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, "unknown or already used ceremony", errPasskeyCeremony
	case err != nil:
		return nil, "loading the ceremony failed", fmt.Errorf("take passkey %s: %w", kind, err)
	case c.UserID != u.ID:
		return nil, "ceremony begun by another user", errPasskeyCeremony
	case c.Kind != kind:
		return nil, "ceremony begun as a " + c.Kind, errPasskeyCeremony
	case !p.now().Before(c.ExpiresAt):
		return nil, "ceremony expired", errPasskeyCeremony
	}
	return c, "", nil
}

func (p *Passkeys) event(action string, u *User, c Client, outcome, detail string) *AuditEvent {
	return &AuditEvent{Action: action, Outcome: outcome, ActorID: u.ID, IP: c.IP, UserAgent: c.UserAgent, Detail: detail}
}

// passkeyName checks and tidies the label a person gives a passkey.
func passkeyName(name string) (string, error) {
	name = strings.Join(strings.Fields(name), " ")
	if name == "" {
		return "Passkey", nil
	}
	if utf8.RuneCountInString(name) > 64 || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return "", Errorf(CodeInvalid, "Give the passkey a name of at most 64 characters (letters, digits, spaces and punctuation), such as “Work laptop” or “YubiKey”.")
	}
	return name, nil
}

// passkeyDetail cuts s to a length fit for an audit detail.
func passkeyDetail(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
