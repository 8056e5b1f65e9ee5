package auth

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// TOTP makes and checks authenticator-app codes (RFC 6238: HMAC-SHA1, 6 digits,
// 30 s). Package totp implements it.
type TOTP interface {
	// Generate returns a new random secret (base32, for typing in by hand) and
	// its otpauth://totp/ URL (for the QR code) naming issuer and account.
	Generate(issuer, account string) (secret, url string, err error)
	// Validate reports whether code is secret's code at a time step within skew
	// steps of at's, and which step matched (so a code works once), comparing
	// in constant time.
	Validate(secret, code string, at time.Time, skew uint) (step int64, ok bool)
}

// The backup codes: BackupCodeCount at a time, each BackupCodeLength characters
// of backupAlphabet (5 bits each: 50 bits from crypto/rand), shown as
// xxxx-xxxx-xx.
const (
	BackupCodeCount  = 10
	BackupCodeLength = 10
)

// backupAlphabet is Crockford's base32 in lower case: no i, l, o or u, so no
// code has characters people mistake for others (0/o and 1/i/l are read as
// the digit).
const backupAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// totpSkew is how many 30 s steps either side of now a TOTP code may be from:
// phones whose clock is a little off still work.
const totpSkew = 1

// FactorsConfig is how Factors behaves.
type FactorsConfig struct {
	// Issuer names the service in authenticator apps; default "Hestami".
	Issuer string
}

// TOTPEnrolment is a TOTP factor being set up: show Secret (for typing in) and
// URL (as a QR code), then ConfirmTOTP it with FactorID and a first code.
type TOTPEnrolment struct {
	FactorID string
	// Secret is the base32 secret, for people who type it into their app.
	Secret string
	// URL is the otpauth://totp/ URL, for the QR code.
	URL string
}

// Factors manages a user's authenticator apps (TOTP) and backup codes, and the
// factor list of every method: setup, verification, removal and an
// administrator's reset. Every step that matters is audited; codes and secrets
// never reach the log or the audit trail.
type Factors struct {
	cfg    FactorsConfig
	store  FactorStore
	sealer *Sealer
	totp   TOTP
	audit  func(context.Context, *AuditEvent) error
	now    func() time.Time
	log    *slog.Logger
}

// NewFactors returns Factors keeping factors in store, TOTP secrets sealed by
// sealer. audit records security events ((*Service).Audit); now is the clock.
func NewFactors(cfg FactorsConfig, store FactorStore, sealer *Sealer, totp TOTP, audit func(context.Context, *AuditEvent) error, now func() time.Time, logger *slog.Logger) *Factors {
	cfg.Issuer = cmp.Or(cfg.Issuer, "Hestami")
	return &Factors{cfg: cfg, store: store, sealer: sealer, totp: totp, audit: audit, now: now, log: logger}
}

// record audits ev for u with c, at now; it returns the audit log's error.
func (f *Factors) record(ctx context.Context, u *User, c Client, ev *AuditEvent) error {
	if ev.ActorID == "" && u != nil {
		ev.ActorID = u.ID
	}
	ev.IP, ev.UserAgent = c.IP, c.UserAgent
	if ev.Time.IsZero() {
		ev.Time = f.now()
	}
	if ev.Outcome == "" {
		ev.Outcome = OutcomeSuccess
	}
	return f.audit(ctx, ev)
}

// failed audits a failure and returns err (the audit log's own error is
// logged: the person should see why their attempt failed).
func (f *Factors) failed(ctx context.Context, u *User, c Client, action, detail string, err error) error {
	if aerr := f.record(ctx, u, c, &AuditEvent{Action: action, Outcome: OutcomeFailure, Detail: detail}); aerr != nil {
		f.log.Error("audit log write failed", "action", action, "err", aerr)
	}
	return err
}

// sealingAD binds a sealed TOTP secret to its row: a secret copied into another
// user's (or another factor's) row does not open.
func sealingAD(userID, factorID string) []byte {
	return []byte("hestami/mfa/totp\x00" + userID + "\x00" + factorID)
}

var errNotSignedIn = Errorf(CodeUnauthorized, "You are signed out. Sign in again.")

// BeginTOTP starts setting up an authenticator app for u: it makes a new
// secret, stores it sealed in an unconfirmed factor (replacing u's earlier
// unconfirmed ones: an abandoned setup) and returns what the setup page shows.
// The factor counts only once ConfirmTOTP accepted a first code. Audited as
// "mfa.totp.begin".
func (f *Factors) BeginTOTP(ctx context.Context, u *User, c Client) (*TOTPEnrolment, error) {
	if u == nil {
		return nil, errNotSignedIn
	}
	existing, err := f.store.Factors(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("begin totp: %w", err)
	}
	for _, old := range existing {
		if old.Method == MethodTOTP && !old.Confirmed {
			if err := f.store.DeleteFactor(ctx, u.ID, old.ID); err != nil && !errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("begin totp: remove abandoned setup: %w", err)
			}
		}
	}
	secret, url, err := f.totp.Generate(f.cfg.Issuer, cmp.Or(u.Email, u.ID))
	if err != nil {
		return nil, fmt.Errorf("begin totp: %w", err)
	}
	// The sealed secret is bound to the factor's id, which the store assigns:
	// create the factor first, then store the secret sealed for it.
	fac := &Factor{UserID: u.ID, Method: MethodTOTP, Label: "Authenticator app", Data: []byte{}}
	if err := f.store.CreateFactor(ctx, fac); err != nil {
		return nil, fmt.Errorf("begin totp: %w", err)
	}
	sealed, err := f.sealer.Seal([]byte(secret), sealingAD(u.ID, fac.ID))
	if err == nil {
		err = f.store.UpdateFactorData(ctx, u.ID, fac.ID, sealed)
	}
	if err != nil {
		_ = f.store.DeleteFactor(ctx, u.ID, fac.ID)
		return nil, fmt.Errorf("begin totp: store secret: %w", err)
	}
	if err := f.record(ctx, u, c, &AuditEvent{Action: "mfa.totp.begin", Detail: "factor " + fac.ID}); err != nil {
		return nil, err
	}
	return &TOTPEnrolment{FactorID: fac.ID, Secret: secret, URL: url}, nil
}

var (
	errTOTPWrong = Errorf(CodeUnauthorized, "That code is not right. Enter the 6-digit code your authenticator app shows now (check that your phone sets its time automatically).")
	errTOTPForm  = Errorf(CodeInvalid, "Enter the 6 digits your authenticator app shows, like 123456.")
)

// normalizeTOTP drops the spaces and dashes people type ("123 456") and
// reports whether what is left is 6 digits.
func normalizeTOTP(code string) (string, bool) {
	code = strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\t' {
			return -1
		}
		return r
	}, code)
	if len(code) != 6 {
		return code, false
	}
	for _, r := range code {
		if r < '0' || r > '9' {
			return code, false
		}
	}
	return code, true
}

// openSecret opens fac's sealed secret, and reports whether it should be
// resealed under the primary key.
func (f *Factors) openSecret(fac *Factor) (string, bool, error) {
	plain, keyID, err := f.sealer.Open(fac.Data, sealingAD(fac.UserID, fac.ID))
	if err != nil {
		return "", false, err
	}
	return string(plain), f.sealer.NeedsReseal(keyID), nil
}

// reseal seals secret again under the primary key (after a key rotation); a
// failure is logged, the old sealing still works.
func (f *Factors) reseal(ctx context.Context, fac *Factor, secret string) {
	sealed, err := f.sealer.Seal([]byte(secret), sealingAD(fac.UserID, fac.ID))
	if err == nil {
		err = f.store.UpdateFactorData(ctx, fac.UserID, fac.ID, sealed)
	}
	if err != nil {
		f.log.Error("reseal totp secret under the primary key failed; it still opens with its old key", "user", fac.UserID, "factor", fac.ID, "err", err)
		return
	}
	f.log.Info("resealed totp secret under the primary key", "user", fac.UserID, "factor", fac.ID, "key", f.sealer.Primary())
}

// ConfirmTOTP finishes setting up the authenticator app factorID of u with a
// first code (±1 step): the factor then counts, and that code cannot be used
// again. Errors (*Error): CodeInvalid for a code that is not 6 digits,
// CodeUnauthorized for a wrong code, CodeNotFound if u has no such setup (start
// again), CodeConflict if it is confirmed already. Audited as
// "mfa.totp.confirm" (success or failure).
func (f *Factors) ConfirmTOTP(ctx context.Context, u *User, factorID, code string, c Client) error {
	const action = "mfa.totp.confirm"
	if u == nil {
		return errNotSignedIn
	}
	code, ok := normalizeTOTP(code)
	if !ok {
		return f.failed(ctx, u, c, action, "malformed code", errTOTPForm)
	}
	fac, err := f.store.Factor(ctx, u.ID, factorID)
	if errors.Is(err, ErrNotFound) || (err == nil && fac.Method != MethodTOTP) {
		return f.failed(ctx, u, c, action, "no such setup", Errorf(CodeNotFound, "This authenticator setup was not found (it may have been replaced by a newer one). Start the setup again."))
	}
	if err != nil {
		return fmt.Errorf("confirm totp: %w", err)
	}
	if fac.Confirmed {
		return Errorf(CodeConflict, "This authenticator app is set up already.")
	}
	secret, needsReseal, err := f.openSecret(fac)
	if err != nil {
		f.log.Error("cannot open a totp secret: is a key missing from the MFA keys file?", "user", u.ID, "factor", fac.ID, "err", err)
		_ = f.failed(ctx, u, c, action, "secret cannot be opened", nil)
		return fmt.Errorf("confirm totp: %w", err)
	}
	now := f.now()
	step, ok := f.totp.Validate(secret, code, now, totpSkew)
	if !ok {
		return f.failed(ctx, u, c, action, "wrong code", errTOTPWrong)
	}
	fresh, err := f.store.UseTOTPStep(ctx, u.ID, fac.ID, step, now)
	if err != nil {
		return fmt.Errorf("confirm totp: %w", err)
	}
	if !fresh {
		f.log.Warn("replayed totp code", "user", u.ID, "factor", fac.ID, "ip", c.IP)
		return f.failed(ctx, u, c, action, "replayed code", errTOTPWrong)
	}
	if err := f.store.ConfirmFactor(ctx, u.ID, fac.ID, now); err != nil {
		return fmt.Errorf("confirm totp: %w", err)
	}
	if needsReseal {
		f.reseal(ctx, fac, secret)
	}
	return f.record(ctx, u, c, &AuditEvent{Action: action, Detail: "factor " + fac.ID})
}

// VerifyTOTP checks a code from any of u's confirmed authenticator apps (±1
// step of 30 s). A code works once: a code already accepted (a replay) gets
// the same answer as a wrong one. A secret still sealed under an old key is
// resealed under the primary. Errors (*Error): CodeInvalid for a code that is
// not 6 digits, CodeUnauthorized for a wrong or replayed code, CodeNotFound if
// u has no authenticator app; a plain (internal) error if no secret could be
// opened (a key missing from the keys file: logged). Audited as
// "mfa.totp.verify", failures with detail "wrong code" or "replayed code".
func (f *Factors) VerifyTOTP(ctx context.Context, u *User, code string, c Client) error {
	const action = "mfa.totp.verify"
	if u == nil {
		return errNotSignedIn
	}
	all, err := f.store.Factors(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("verify totp: %w", err)
	}
	var facs []*Factor
	for _, fac := range all {
		if fac.Method == MethodTOTP && fac.Confirmed {
			facs = append(facs, fac)
		}
	}
	if len(facs) == 0 {
		return f.failed(ctx, u, c, action, "no authenticator app", Errorf(CodeNotFound, "You have no authenticator app set up. Choose another way to verify."))
	}
	code, ok := normalizeTOTP(code)
	if !ok {
		return f.failed(ctx, u, c, action, "malformed code", errTOTPForm)
	}
	now := f.now()
	var openErr error
	for _, fac := range facs {
		secret, needsReseal, err := f.openSecret(fac)
		if err != nil {
			f.log.Error("cannot open a totp secret: is a key missing from the MFA keys file?", "user", u.ID, "factor", fac.ID, "err", err)
			openErr = err
			continue
		}
		step, ok := f.totp.Validate(secret, code, now, totpSkew)
		if !ok {
			continue
		}
		fresh, err := f.store.UseTOTPStep(ctx, u.ID, fac.ID, step, now)
		if err != nil {
			return fmt.Errorf("verify totp: %w", err)
		}
		if !fresh {
			f.log.Warn("replayed totp code", "user", u.ID, "factor", fac.ID, "ip", c.IP)
			return f.failed(ctx, u, c, action, "replayed code", errTOTPWrong)
		}
		if needsReseal {
			f.reseal(ctx, fac, secret)
		}
		return f.record(ctx, u, c, &AuditEvent{Action: action, Detail: "factor " + fac.ID})
	}
	if openErr != nil {
		_ = f.failed(ctx, u, c, action, "secret cannot be opened", nil)
		return fmt.Errorf("verify totp: %w", openErr)
	}
	return f.failed(ctx, u, c, action, "wrong code", errTOTPWrong)
}

// Reseal seals u's TOTP secrets that are under an old key again under the
// primary key, and returns how many it resealed. VerifyTOTP does this on its
// own; Reseal is for rotating every secret without waiting for sign-ins.
func (f *Factors) Reseal(ctx context.Context, u *User) (int, error) {
	all, err := f.store.Factors(ctx, u.ID)
	if err != nil {
		return 0, fmt.Errorf("reseal: %w", err)
	}
	n := 0
	for _, fac := range all {
		if fac.Method != MethodTOTP || len(fac.Data) == 0 {
			continue
		}
		plain, keyID, err := f.sealer.Open(fac.Data, sealingAD(fac.UserID, fac.ID))
		if err != nil {
			return n, fmt.Errorf("reseal factor %s: %w", fac.ID, err)
		}
		if !f.sealer.NeedsReseal(keyID) {
			continue
		}
		sealed, err := f.sealer.Seal(plain, sealingAD(fac.UserID, fac.ID))
		if err != nil {
			return n, fmt.Errorf("reseal factor %s: %w", fac.ID, err)
		}
		if err := f.store.UpdateFactorData(ctx, u.ID, fac.ID, sealed); err != nil {
			return n, fmt.Errorf("reseal factor %s: %w", fac.ID, err)
		}
		n++
	}
	return n, nil
}

// newBackupCode returns a random backup code, normalized (10 characters of
// backupAlphabet).
func newBackupCode() (string, error) {
	b := make([]byte, BackupCodeLength)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = backupAlphabet[b[i]&31] // 256 is a multiple of 32: no bias
	}
	return string(b), nil
}

// FormatBackupCode shows a normalized backup code as xxxx-xxxx-xx.
func FormatBackupCode(code string) string {
	if len(code) != BackupCodeLength {
		return code
	}
	return code[:4] + "-" + code[4:8] + "-" + code[8:]
}

// NormalizeBackupCode reads a backup code as typed: case, spaces and dashes
// do not matter, and o, i and l are read as 0, 1 and 1. It reports false if
// the result is not 10 characters of the codes' alphabet.
func NormalizeBackupCode(code string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToLower(code) {
		switch r {
		case ' ', '-', '\t', '\n', '\r':
			continue
		case 'o':
			r = '0'
		case 'i', 'l':
			r = '1'
		}
		if r > 127 || !strings.ContainsRune(backupAlphabet, r) {
			return "", false
		}
		b.WriteRune(r)
	}
	if b.Len() != BackupCodeLength {
		return "", false
	}
	return b.String(), true
}

// HashBackupCode is the stored form of a normalized backup code of user: the
// SHA-256 of the code and the user id, so one hash never matches another
// user's code.
func HashBackupCode(userID, code string) string {
	sum := sha256.Sum256([]byte("hestami/mfa/backup\x00" + userID + "\x00" + code))
	return hex.EncodeToString(sum[:])
}

// GenerateBackupCodes makes u a new set of BackupCodeCount backup codes and
// returns them formatted (xxxx-xxxx-xx): show them once, they are stored only
// as hashes. The old set stops working. Audited as "mfa.backup.generate".
func (f *Factors) GenerateBackupCodes(ctx context.Context, u *User, c Client) ([]string, error) {
	if u == nil {
		return nil, errNotSignedIn
	}
	before, err := f.store.BackupCodesLeft(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("generate backup codes: %w", err)
	}
	codes := make([]string, 0, BackupCodeCount)
	hashes := make([]string, 0, BackupCodeCount)
	seen := map[string]bool{}
	for len(codes) < BackupCodeCount {
		code, err := newBackupCode()
		if err != nil {
			return nil, fmt.Errorf("generate backup codes: %w", err)
		}
		if seen[code] {
			continue
		}
		seen[code] = true
		codes = append(codes, FormatBackupCode(code))
		hashes = append(hashes, HashBackupCode(u.ID, code))
	}
	if err := f.store.ReplaceBackupCodes(ctx, u.ID, hashes, f.now()); err != nil {
		return nil, fmt.Errorf("generate backup codes: %w", err)
	}
	detail := fmt.Sprintf("%d codes", BackupCodeCount)
	if before > 0 {
		detail += fmt.Sprintf("; %d unused codes of the old set invalidated", before)
	}
	if err := f.record(ctx, u, c, &AuditEvent{Action: "mfa.backup.generate", Detail: detail}); err != nil {
		return nil, err
	}
	return codes, nil
}

// VerifyBackupCode uses one of u's backup codes (as typed: case, spaces and
// dashes ignored) and returns how many are left. Each code works once, even
// under concurrent requests. Errors (*Error): CodeInvalid for input that is
// not a backup code's shape, CodeUnauthorized for a wrong or used code.
// Audited as "mfa.backup.verify" with the codes left (failures too).
func (f *Factors) VerifyBackupCode(ctx context.Context, u *User, code string, c Client) (left int, err error) {
	const action = "mfa.backup.verify"
	if u == nil {
		return 0, errNotSignedIn
	}
	norm, ok := NormalizeBackupCode(code)
	if !ok {
		return 0, f.failed(ctx, u, c, action, "malformed code", Errorf(CodeInvalid, "A backup code has 10 letters and digits, like 7kq2-m9xd-4t. Enter one of yours."))
	}
	used, err := f.store.UseBackupCode(ctx, u.ID, HashBackupCode(u.ID, norm), f.now())
	if err != nil {
		return 0, fmt.Errorf("verify backup code: %w", err)
	}
	left, err = f.store.BackupCodesLeft(ctx, u.ID)
	if err != nil {
		return 0, fmt.Errorf("verify backup code: %w", err)
	}
	if !used {
		return left, f.failed(ctx, u, c, action, fmt.Sprintf("wrong or used code; %d left", left),
			Errorf(CodeUnauthorized, "That backup code is not right, or it was used already (each code works once). Try another of your codes."))
	}
	if err := f.record(ctx, u, c, &AuditEvent{Action: action, Detail: fmt.Sprintf("%d codes left", left)}); err != nil {
		return left, err
	}
	return left, nil
}

// BackupCodesLeft counts u's unused backup codes.
func (f *Factors) BackupCodesLeft(ctx context.Context, u *User) (int, error) {
	if u == nil {
		return 0, errNotSignedIn
	}
	n, err := f.store.BackupCodesLeft(ctx, u.ID)
	if err != nil {
		return 0, fmt.Errorf("backup codes left: %w", err)
	}
	return n, nil
}

// List returns u's confirmed factors of every method, oldest first, without
// their Data (secrets, numbers and credentials stay in the store).
func (f *Factors) List(ctx context.Context, u *User) ([]*Factor, error) {
	if u == nil {
		return nil, errNotSignedIn
	}
	all, err := f.store.Factors(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("list factors: %w", err)
	}
	out := make([]*Factor, 0, len(all))
	for _, fac := range all {
		if fac.Confirmed {
			c := *fac
			c.Data = nil
			out = append(out, &c)
		}
	}
	return out, nil
}

// Methods returns the methods of u's confirmed factors, strongest first and
// once each (what the MFA policy and the challenge page offer); backup codes
// are not included (see BackupCodesLeft).
func (f *Factors) Methods(ctx context.Context, u *User) ([]string, error) {
	facs, err := f.List(ctx, u)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range SecondFactorMethods {
		for _, fac := range facs {
			if fac.Method == m {
				out = append(out, m)
				break
			}
		}
	}
	return out, nil
}

// Remove deletes u's factor factorID (any method). Errors: CodeNotFound if u
// has no such factor. Audited as "mfa.factor.remove". Whether u may remove
// their last factor is the MFA policy's business, not checked here.
func (f *Factors) Remove(ctx context.Context, u *User, factorID string, c Client) error {
	if u == nil {
		return errNotSignedIn
	}
	fac, err := f.store.Factor(ctx, u.ID, factorID)
	if err == nil {
		err = f.store.DeleteFactor(ctx, u.ID, factorID)
	}
	if errors.Is(err, ErrNotFound) {
		return Errorf(CodeNotFound, "That sign-in factor is not on your account (it may have been removed already).")
	}
	if err != nil {
		return fmt.Errorf("remove factor: %w", err)
	}
	return f.record(ctx, u, c, &AuditEvent{Action: "mfa.factor.remove", Detail: fmt.Sprintf("%s factor %s (%s)", fac.Method, fac.ID, fac.Label)})
}

// maxReasonLength bounds the reason of a reset kept in the audit log.
const maxReasonLength = 200

// Reset removes every factor and backup code of the user targetID, so they set
// up MFA again: for staff with the mfa:reset permission, never on their own
// account, with a reason (kept in the audit log). Errors (*Error):
// CodeForbidden without the permission or on one's own account, CodeInvalid
// without a reason. Audited as "mfa.reset" (refusals too). Sessions are not
// ended here.
func (f *Factors) Reset(ctx context.Context, actor *User, targetID, reason string, c Client) error {
	const action = "mfa.reset"
	if actor == nil {
		return errNotSignedIn
	}
	fail := func(detail string, err error) error {
		if aerr := f.record(ctx, actor, c, &AuditEvent{Action: action, Outcome: OutcomeFailure, SubjectID: other(actor.ID, targetID), Detail: detail}); aerr != nil {
			f.log.Error("audit log write failed", "action", action, "err", aerr)
		}
		return err
	}
	if actor.ID == targetID {
		return fail("own account", Errorf(CodeForbidden, "You cannot reset MFA on your own account. Ask another staff member with the %s permission.", PermMFAReset))
	}
	if !actor.Can(PermMFAReset) {
		return fail("no "+string(PermMFAReset)+" permission", Errorf(CodeForbidden, "Resetting MFA needs the %s permission.", PermMFAReset))
	}
	reason = strings.Join(strings.Fields(reason), " ")
	if reason == "" {
		return Errorf(CodeInvalid, "Say why you are resetting this account's MFA (it goes into the audit log).")
	}
	if len(reason) > maxReasonLength {
		reason = reason[:maxReasonLength]
	}
	n, err := f.store.DeleteFactors(ctx, targetID)
	if err != nil {
		return fmt.Errorf("reset mfa of %s: %w", targetID, err)
	}
	return f.record(ctx, actor, c, &AuditEvent{Action: action, SubjectID: targetID,
		Detail: fmt.Sprintf("%d factors and the backup codes removed; reason: %s", n, reason)})
}

// RecoveryReset removes every factor and backup code of the user targetID,
// checking nothing: it is for the recovery flow only, once staff approved the
// user's request and the user redeemed the recovery token (see Recovery).
// Never expose it to a request directly. Audited as "mfa.reset" with detail
// "recovery".
func (f *Factors) RecoveryReset(ctx context.Context, targetID string) error {
	n, err := f.store.DeleteFactors(ctx, targetID)
	if err != nil {
		return fmt.Errorf("recovery reset of %s: %w", targetID, err)
	}
	return f.record(ctx, nil, Client{}, &AuditEvent{Action: "mfa.reset", ActorID: targetID,
		Detail: fmt.Sprintf("recovery: %d factors and the backup codes removed", n)})
}
