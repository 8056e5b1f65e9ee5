package authhttp

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/hestami/hestami/auth"
)

// The MFA API's JSON shapes; openapi.json describes each.

type factorJSON struct {
	ID         string     `json:"id"`
	Method     string     `json:"method"`
	Label      string     `json:"label"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

func factorsOut(fs []*auth.Factor) []factorJSON {
	out := make([]factorJSON, 0, len(fs))
	for _, f := range fs {
		out = append(out, factorJSON{f.ID, f.Method, f.Label, f.CreatedAt, optTime(f.LastUsedAt)})
	}
	return out
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// assuranceJSON is how strongly a session proved who is behind it, for other
// services deciding whether to ask for a step-up.
type assuranceJSON struct {
	// Methods are the amr values: the sign-in provider and the second factors.
	Methods       []string `json:"methods"`
	SecondFactors []string `json:"second_factors"`
	// AAL is 2 with a second factor in the session, else 1.
	AAL int    `json:"aal"`
	ACR string `json:"acr"`
	// AuthTime is the sign-in; MFAAt the latest second factor (absent: none).
	AuthTime       time.Time  `json:"auth_time"`
	AuthAgeSeconds int64      `json:"auth_age_seconds"`
	MFAAt          *time.Time `json:"mfa_at,omitempty"`
	MFAAgeSeconds  *int64     `json:"mfa_age_seconds,omitempty"`
}

func (s *Server) assuranceOut(sess *auth.Session) assuranceJSON {
	now := s.now()
	a := assuranceJSON{Methods: sess.Methods, SecondFactors: sess.SecondFactors(), AAL: 1, ACR: auth.SessionACR(sess.Methods),
		AuthTime: sess.AuthTime.UTC(), AuthAgeSeconds: int64(now.Sub(sess.AuthTime) / time.Second)}
	if a.Methods == nil {
		a.Methods = []string{}
	}
	if a.SecondFactors == nil {
		a.SecondFactors = []string{}
	}
	if len(a.SecondFactors) > 0 && !sess.MFAAt.IsZero() {
		a.AAL = 2
		a.MFAAt = optTime(sess.MFAAt)
		age := int64(now.Sub(sess.MFAAt) / time.Second)
		a.MFAAgeSeconds = &age
	}
	return a
}

type codeSentJSON struct {
	Method    string    `json:"method"`
	FactorID  string    `json:"factor_id,omitempty"`
	To        string    `json:"to"`
	ExpiresAt time.Time `json:"expires_at"`
}

func sentOut(c *auth.CodeSent) codeSentJSON {
	return codeSentJSON{c.Method, c.FactorID, c.To, c.ExpiresAt.UTC()}
}

type deviceJSON struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Browser      string     `json:"browser"`
	OS           string     `json:"os"`
	Current      bool       `json:"current"`
	FirstSeen    time.Time  `json:"first_seen"`
	LastSeen     time.Time  `json:"last_seen"`
	LastIP       string     `json:"last_ip"`
	LastLocation string     `json:"last_location,omitempty"`
	TrustedUntil *time.Time `json:"trusted_until,omitempty"`
}

type recoveryJSON struct {
	ID             string              `json:"id"`
	UserID         string              `json:"user_id"`
	Status         auth.RecoveryStatus `json:"status"`
	Reason         string              `json:"reason"`
	PrimaryEmail   string              `json:"primary_email"`
	SecondaryEmail string              `json:"secondary_email,omitempty"`
	CodesExpireAt  time.Time           `json:"codes_expire_at"`
	CreatedAt      time.Time           `json:"created_at"`
	VerifiedAt     *time.Time          `json:"verified_at,omitempty"`
	TicketID       string              `json:"ticket_id,omitempty"`
	DecidedBy      string              `json:"decided_by,omitempty"`
	DecidedAt      *time.Time          `json:"decided_at,omitempty"`
	DecisionNote   string              `json:"decision_note,omitempty"`
	TokenExpiresAt *time.Time          `json:"token_expires_at,omitempty"`
	RedeemedAt     *time.Time          `json:"redeemed_at,omitempty"`
}

func recoveryOut(r *auth.RecoveryRequest) recoveryJSON {
	return recoveryJSON{
		ID: r.ID, UserID: r.UserID, Status: r.Status, Reason: r.Reason, PrimaryEmail: r.PrimaryEmail, SecondaryEmail: r.SecondaryEmail,
		CodesExpireAt: r.CodesExpireAt.UTC(), CreatedAt: r.CreatedAt.UTC(), VerifiedAt: optTime(r.VerifiedAt), TicketID: r.TicketID,
		DecidedBy: r.DecidedBy, DecidedAt: optTime(r.DecidedAt), DecisionNote: r.DecisionNote,
		TokenExpiresAt: optTime(r.TokenExpiresAt), RedeemedAt: optTime(r.RedeemedAt),
	}
}

// readBody decodes an optional JSON body: an empty body leaves v as it is.
func readBody(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil
	}
	return readJSON(w, r, v)
}

// apiAssurance reports the session's assurance (GET /api/v1/me/assurance).
func (s *Server) apiAssurance(w http.ResponseWriter, r *http.Request) {
	sess, _ := current(r)
	writeJSON(w, http.StatusOK, s.assuranceOut(sess))
}

// apiStepUp asks for a fresh second factor (POST /api/v1/stepup): it answers
// whether the session's is recent enough (at most max_age seconds old, and
// never older than the policy's step-up age) and, if not, what to verify and
// where; verifying through /api/v1/mfa/challenge/verify (or the page) then
// makes it fresh. With purpose high-value or sensitive it answers what the
// policy requires of the user's type for that.
func (s *Server) apiStepUp(w http.ResponseWriter, r *http.Request) {
	var in struct {
		MaxAge   *int            `json:"max_age"`
		ReturnTo string          `json:"return_to"`
		Purpose  auth.MFAPurpose `json:"purpose"`
	}
	if !s.mfaOn(w, r) || !s.decoded(w, r, readBody, &in) {
		return
	}
	switch in.Purpose {
	case "":
		in.Purpose = auth.PurposeStepUp
	case auth.PurposeStepUp, auth.PurposeHighValue, auth.PurposeSensitive:
	default:
		s.fail(w, r, auth.Errorf(auth.CodeInvalid, "purpose must be step-up, high-value or sensitive; got %q.", in.Purpose))
		return
	}
	sess, u := current(r)
	policy := s.mfa.Policy
	if in.MaxAge != nil {
		if *in.MaxAge < 0 {
			s.fail(w, r, auth.Errorf(auth.CodeInvalid, "max_age is a number of seconds, 0 or more."))
			return
		}
		d := max(time.Duration(*in.MaxAge)*time.Second, time.Nanosecond)
		if d < policy.StepUpMaxAge || policy.StepUpMaxAge <= 0 {
			policy.StepUpMaxAge = d
		}
		if d < policy.SensitiveMaxAge || policy.SensitiveMaxAge <= 0 {
			policy.SensitiveMaxAge = d
		}
	}
	st := currentMFA(r)
	methods := st.methods
	left := 0
	if len(methods) > 0 {
		var err error
		if left, err = s.mfa.Factors.BackupCodesLeft(r.Context(), u); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	d := auth.EvaluateMFA(policy, auth.MFAInput{User: u, Methods: methods, BackupCodesLeft: left, Settings: st.settings, Session: sess,
		Purpose: in.Purpose, TrustedDevice: st.trusted, Now: s.now()})
	out := map[string]any{"satisfied": d.Action == auth.MFAAllow, "assurance": s.assuranceOut(sess), "max_age_seconds": int64(policy.StepUpMaxAge / time.Second)}
	if d.Action != auth.MFAAllow {
		need := mfaNeedOut(d, s.safeReturnTo(in.ReturnTo, ""))
		if d.Action == auth.MFAChallenge {
			need.Location += sep(s.safeReturnTo(in.ReturnTo, "")) + "purpose=step-up"
		}
		out["mfa"] = need
	}
	writeJSON(w, http.StatusOK, out)
}

// apiFactors lists the user's factors (GET /api/v1/me/factors).
func (s *Server) apiFactors(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	_, u := current(r)
	fs, err := s.mfa.Factors.List(r.Context(), u)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	left, err := s.mfa.Factors.BackupCodesLeft(r.Context(), u)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"factors": factorsOut(fs), "backup_codes_left": left, "mfa": mfaNeedOut(currentMFA(r).decision, "")})
}

// apiRemoveFactor removes a factor (DELETE /api/v1/me/factors/{id}).
func (s *Server) apiRemoveFactor(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) || !s.needFresh(w, r, "") {
		return
	}
	_, u := current(r)
	s.noContent(w, r, s.removeFactor(r, u, r.PathValue("id")))
}

// apiTOTPBegin starts an authenticator app setup (POST /api/v1/me/factors/totp).
func (s *Server) apiTOTPBegin(w http.ResponseWriter, r *http.Request) {
	var in struct{}
	if !s.mfaOn(w, r) || !s.needFresh(w, r, "") || !s.decoded(w, r, readBody, &in) {
		return
	}
	_, u := current(r)
	en, err := s.mfa.Factors.BeginTOTP(r.Context(), u, s.client(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sealed, err := s.seal(totpSealPurpose, u.ID, totpEnrolment{FactorID: en.FactorID, Secret: en.Secret, URL: en.URL}, 30*time.Minute)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{
		"factor_id": en.FactorID, "secret": en.Secret, "otpauth_url": en.URL, "qr_code_url": "/mfa/setup/totp/qr?e=" + sealed,
	})
}

// codeJSON is the body of the confirm endpoints.
type codeJSON struct {
	Code string `json:"code"`
}

// apiConfirmFactor confirms a factor being set up with the body's first code:
// confirm runs under the lockout and rate limits (s.guarded), and then the
// answer is apiFactorAdded's for method.
func (s *Server) apiConfirmFactor(w http.ResponseWriter, r *http.Request, method string, confirm func(u *auth.User, code string) error) {
	var in codeJSON
	if !s.decoded(w, r, readJSON, &in) {
		return
	}
	_, u := current(r)
	if err := s.guarded(w, r, u, func() error { return confirm(u, in.Code) }); err != nil {
		s.fail(w, r, err)
		return
	}
	s.apiFactorAdded(w, r, method, http.StatusOK)
}

// apiFactorAdded elevates the session with the new factor and answers with its
// assurance, and the backup codes when it was the first factor.
func (s *Server) apiFactorAdded(w http.ResponseWriter, r *http.Request, method string, status int) {
	sess, u := current(r)
	next, err := s.elevate(w, r, sess, u, method, false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := s.assuranceBody(next)
	left, err := s.mfa.Factors.BackupCodesLeft(r.Context(), u)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if left == 0 {
		codes, err := s.mfa.Factors.GenerateBackupCodes(r.Context(), u, s.client(r))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out["backup_codes"] = codes
	}
	writeJSON(w, status, out)
}

// apiTOTPConfirm confirms an authenticator app with a first code
// (POST /api/v1/me/factors/totp/{id}/confirm).
func (s *Server) apiTOTPConfirm(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	s.apiConfirmFactor(w, r, auth.MethodTOTP, func(u *auth.User, code string) error {
		return s.mfa.Factors.ConfirmTOTP(r.Context(), u, r.PathValue("id"), code, s.client(r))
	})
}

// codesOn answers 503 unless email and SMS codes are configured.
func (s *Server) codesOn(w http.ResponseWriter, r *http.Request) bool {
	if s.mfa.Codes == nil {
		s.fail(w, r, auth.Errorf(auth.CodeUnavailable, "Codes by email or text message are not available here. Use another method."))
		return false
	}
	return true
}

// apiEmailBegin sends a code to a secondary email being set up
// (POST /api/v1/me/factors/email).
func (s *Server) apiEmailBegin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email string `json:"email"`
	}
	if !s.mfaOn(w, r) || !s.codesOn(w, r) || !s.needFresh(w, r, "") || !s.decoded(w, r, readJSON, &in) {
		return
	}
	_, u := current(r)
	if err := s.limitSend(r, u); err != nil {
		s.fail(w, r, err)
		return
	}
	sent, err := s.mfa.Codes.BeginSecondaryEmail(r.Context(), u, in.Email, s.client(r))
	reply(s, w, r, sent, err, http.StatusAccepted, sentBody)
}

// apiEmailConfirm confirms the secondary email with its code
// (POST /api/v1/me/factors/email/confirm).
func (s *Server) apiEmailConfirm(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) || !s.codesOn(w, r) {
		return
	}
	s.apiConfirmFactor(w, r, auth.MethodEmail, func(u *auth.User, code string) error {
		return s.mfa.Codes.ConfirmSecondaryEmail(r.Context(), u, code, s.client(r))
	})
}

// apiSMSBegin texts a code to a number being set up
// (POST /api/v1/me/factors/sms).
func (s *Server) apiSMSBegin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Number string `json:"number"`
		Region string `json:"region"`
	}
	if !s.mfaOn(w, r) || !s.codesOn(w, r) || !s.needFresh(w, r, "") || !s.decoded(w, r, readJSON, &in) {
		return
	}
	if in.Region == "" {
		in.Region = s.mfa.PhoneRegion
	}
	_, u := current(r)
	if err := s.limitSend(r, u); err != nil {
		s.fail(w, r, err)
		return
	}
	sent, err := s.mfa.Codes.BeginSMS(r.Context(), u, in.Number, in.Region, s.client(r))
	reply(s, w, r, sent, err, http.StatusAccepted, sentBody)
}

// apiSMSConfirm confirms a number with its code
// (POST /api/v1/me/factors/sms/{id}/confirm).
func (s *Server) apiSMSConfirm(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) || !s.codesOn(w, r) {
		return
	}
	s.apiConfirmFactor(w, r, auth.MethodSMS, func(u *auth.User, code string) error {
		return s.mfa.Codes.ConfirmSMS(r.Context(), u, r.PathValue("id"), code, s.client(r))
	})
}

// passkeysOn answers 503 unless passkeys are configured.
func (s *Server) passkeysOn(w http.ResponseWriter, r *http.Request) bool {
	if s.mfa.Passkeys == nil {
		s.fail(w, r, errNoPasskeys)
		return false
	}
	return true
}

// apiPasskeyRegisterBegin starts adding a passkey
// (POST /api/v1/me/factors/passkey/begin).
func (s *Server) apiPasskeyRegisterBegin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
	}
	if !s.mfaOn(w, r) || !s.passkeysOn(w, r) || !s.needFresh(w, r, "") || !s.decoded(w, r, readBody, &in) {
		return
	}
	_, u := current(r)
	opts, id, err := s.mfa.Passkeys.BeginRegistration(r.Context(), u, in.Name, s.client(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, passkeyBegin{id, opts})
}

// passkeyFinishJSON is the body of the passkey finish endpoints.
type passkeyFinishJSON struct {
	Ceremony string          `json:"ceremony"`
	Response json.RawMessage `json:"response"`
	Remember bool            `json:"remember"`
}

// apiPasskeyRegisterFinish stores the new passkey
// (POST /api/v1/me/factors/passkey/finish).
func (s *Server) apiPasskeyRegisterFinish(w http.ResponseWriter, r *http.Request) {
	var in passkeyFinishJSON
	if !s.mfaOn(w, r) || !s.passkeysOn(w, r) || !s.decoded(w, r, readJSON, &in) {
		return
	}
	_, u := current(r)
	if _, err := s.mfa.Passkeys.FinishRegistration(r.Context(), u, in.Ceremony, in.Response, s.client(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	s.apiFactorAdded(w, r, auth.MethodWebAuthn, http.StatusCreated)
}

// apiRegenerateCodes makes a new set of backup codes
// (POST /api/v1/me/backup-codes).
func (s *Server) apiRegenerateCodes(w http.ResponseWriter, r *http.Request) {
	var in struct{}
	if !s.mfaOn(w, r) || !s.needFresh(w, r, "") || !s.decoded(w, r, readBody, &in) {
		return
	}
	_, u := current(r)
	if len(currentMFA(r).methods) == 0 {
		s.fail(w, r, auth.Errorf(auth.CodeConflict, "Set up a method first: backup codes come with it."))
		return
	}
	codes, err := s.mfa.Factors.GenerateBackupCodes(r.Context(), u, s.client(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"codes": codes})
}

// apiChallengeSend sends a challenge code by email or SMS
// (POST /api/v1/mfa/challenge/send).
func (s *Server) apiChallengeSend(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Method   string `json:"method"`
		FactorID string `json:"factor_id"`
	}
	if !s.mfaOn(w, r) || !s.codesOn(w, r) || !s.decoded(w, r, readJSON, &in) {
		return
	}
	_, u := current(r)
	if err := s.limitSend(r, u); err != nil {
		s.fail(w, r, err)
		return
	}
	sent, err := s.mfa.Codes.SendChallenge(r.Context(), u, in.Method, in.FactorID, s.client(r))
	reply(s, w, r, sent, err, http.StatusAccepted, sentBody)
}

// apiChallengeVerify verifies a second factor (POST /api/v1/mfa/challenge/verify):
// the session is elevated (its cookie replaced) and its MFAAt set, which also
// answers a step-up.
func (s *Server) apiChallengeVerify(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Method   string `json:"method"`
		Code     string `json:"code"`
		Remember bool   `json:"remember"`
	}
	if !s.mfaOn(w, r) || !s.decoded(w, r, readJSON, &in) {
		return
	}
	sess, u := current(r)
	if !slices.Contains(currentMFA(r).methods, in.Method) && in.Method != auth.MethodBackupCode {
		s.fail(w, r, auth.Errorf(auth.CodeInvalid, "You have no %s set up. Use one of the methods listed in accepted_methods.", auth.MFAMethodLabel(in.Method)))
		return
	}
	if err := s.checkSecondFactor(w, r, u, in.Method, in.Code); err != nil {
		s.fail(w, r, err)
		return
	}
	next, err := s.elevate(w, r, sess, u, in.Method, in.Remember)
	reply(s, w, r, next, err, http.StatusOK, s.assuranceBody)
}

// apiPasskeyAssertBegin starts a passkey challenge
// (POST /api/v1/mfa/challenge/passkey/begin).
func (s *Server) apiPasskeyAssertBegin(w http.ResponseWriter, r *http.Request) {
	var in struct{}
	if !s.mfaOn(w, r) || !s.passkeysOn(w, r) || !s.decoded(w, r, readBody, &in) {
		return
	}
	_, u := current(r)
	opts, id, err := s.mfa.Passkeys.BeginAssertion(r.Context(), u, s.client(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, passkeyBegin{id, opts})
}

// apiPasskeyAssertFinish checks a passkey answer and elevates the session
// (POST /api/v1/mfa/challenge/passkey/finish).
func (s *Server) apiPasskeyAssertFinish(w http.ResponseWriter, r *http.Request) {
	var in passkeyFinishJSON
	if !s.mfaOn(w, r) || !s.passkeysOn(w, r) || !s.decoded(w, r, readJSON, &in) {
		return
	}
	sess, u := current(r)
	if err := s.checkPasskey(w, r, u, in.Ceremony, string(in.Response)); err != nil {
		s.fail(w, r, err)
		return
	}
	next, err := s.elevate(w, r, sess, u, auth.MethodWebAuthn, in.Remember)
	reply(s, w, r, next, err, http.StatusOK, s.assuranceBody)
}

// apiDevices lists the user's devices (GET /api/v1/me/devices).
func (s *Server) apiDevices(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	if s.mfa.Devices == nil {
		s.fail(w, r, errNoDevices)
		return
	}
	_, u := current(r)
	devs, err := s.mfa.Devices.List(r.Context(), u)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	mine := ""
	if tok := cookieValue(r, auth.DeviceCookie); tok != "" {
		mine = auth.HashToken(tok)
	}
	now := s.now()
	out := make([]deviceJSON, 0, len(devs))
	for _, d := range devs {
		j := deviceJSON{ID: d.ID, Name: d.Name, Browser: d.Browser, OS: d.OS, Current: d.TokenHash == mine, FirstSeen: d.FirstSeen.UTC(),
			LastSeen: d.LastSeen.UTC(), LastIP: d.LastIP, LastLocation: d.LastLocation}
		if d.Trusted(now) {
			j.TrustedUntil = optTime(d.TrustedUntil)
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

// apiRevokeDevice revokes one device (DELETE /api/v1/me/devices/{id}).
func (s *Server) apiRevokeDevice(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	s.noContent(w, r, s.revokeDevice(w, r, r.PathValue("id")))
}

// apiRevokeDevices revokes every device (DELETE /api/v1/me/devices).
func (s *Server) apiRevokeDevices(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	if s.mfa.Devices == nil {
		s.fail(w, r, errNoDevices)
		return
	}
	_, u := current(r)
	n, err := s.mfa.Devices.RevokeAll(r.Context(), u, s.client(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.clearCookie(w, TrustCookie)
	writeJSON(w, http.StatusOK, revokedBody(n))
}

// apiRecoveryStatus is the user's latest recovery request
// (GET /api/v1/me/recovery).
func (s *Server) apiRecoveryStatus(w http.ResponseWriter, r *http.Request) {
	if !s.recoveryOn(w, r) {
		return
	}
	_, u := current(r)
	req, err := s.mfa.Recovery.Latest(r.Context(), u)
	reply(s, w, r, req, err, http.StatusOK, recoveryBody)
}

// apiRecoveryRequest files a recovery request (POST /api/v1/me/recovery).
func (s *Server) apiRecoveryRequest(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Reason string `json:"reason"`
	}
	if !s.recoveryOn(w, r) || !s.decoded(w, r, readJSON, &in) {
		return
	}
	_, u := current(r)
	req, err := s.mfa.Recovery.Request(r.Context(), u, s.client(r), in.Reason)
	reply(s, w, r, req, err, http.StatusCreated, recoveryBody)
}

// apiRecoveryVerify checks the emailed codes (POST /api/v1/me/recovery/verify).
func (s *Server) apiRecoveryVerify(w http.ResponseWriter, r *http.Request) {
	var in struct {
		RequestID     string `json:"request_id"`
		PrimaryCode   string `json:"primary_code"`
		SecondaryCode string `json:"secondary_code"`
	}
	if !s.recoveryOn(w, r) || !s.decoded(w, r, readJSON, &in) {
		return
	}
	_, u := current(r)
	req, err := s.mfa.Recovery.VerifyCodes(r.Context(), u, in.RequestID, in.PrimaryCode, in.SecondaryCode, s.client(r))
	reply(s, w, r, req, err, http.StatusOK, recoveryBody)
}

// apiRecoveryRedeem redeems the recovery token: the user's factors are reset
// (POST /api/v1/me/recovery/redeem).
func (s *Server) apiRecoveryRedeem(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token string `json:"token"`
	}
	if !s.recoveryOn(w, r) || !s.decoded(w, r, readJSON, &in) {
		return
	}
	if err := s.redeem(w, r, in.Token); err != nil {
		s.fail(w, r, err)
		return
	}
	sess, u := current(r)
	st, err := s.mfaCheck(r, sess, u, auth.PurposeSignIn, auth.MFARisk{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"mfa": mfaNeedOut(st.decision, "")})
}

// apiRecoveryPending lists requests awaiting approval
// (GET /api/v1/recovery-requests).
func (s *Server) apiRecoveryPending(w http.ResponseWriter, r *http.Request) {
	if !s.recoveryOn(w, r) {
		return
	}
	_, actor := current(r)
	reqs, err := s.mfa.Recovery.Pending(r.Context(), actor)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]recoveryJSON, 0, len(reqs))
	for _, req := range reqs {
		out = append(out, recoveryOut(req))
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": out})
}

// apiRecoveryApprove approves a request
// (POST /api/v1/recovery-requests/{id}/approve).
func (s *Server) apiRecoveryApprove(w http.ResponseWriter, r *http.Request) {
	var in struct{}
	if !s.recoveryOn(w, r) || !s.decoded(w, r, readBody, &in) {
		return
	}
	_, actor := current(r)
	req, err := s.mfa.Recovery.Approve(r.Context(), actor, r.PathValue("id"), s.client(r))
	reply(s, w, r, req, err, http.StatusOK, recoveryBody)
}

// apiRecoveryDeny denies a request (POST /api/v1/recovery-requests/{id}/deny).
func (s *Server) apiRecoveryDeny(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Note string `json:"note"`
	}
	if !s.recoveryOn(w, r) || !s.decoded(w, r, readBody, &in) {
		return
	}
	_, actor := current(r)
	req, err := s.mfa.Recovery.Deny(r.Context(), actor, r.PathValue("id"), in.Note, s.client(r))
	reply(s, w, r, req, err, http.StatusOK, recoveryBody)
}

// apiUserMFA is a user's MFA state for staff (GET /api/v1/users/{id}/mfa).
func (s *Server) apiUserMFA(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	_, actor := current(r)
	u, err := s.svc.User(r.Context(), actor, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v, err := s.adminMFA(r, actor, u)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	fs := make([]*auth.Factor, 0, len(v.Factors))
	for _, f := range v.Factors {
		fs = append(fs, f.Factor)
	}
	writeJSON(w, http.StatusOK, map[string]any{"factors": factorsOut(fs), "backup_codes_left": v.BackupLeft,
		"deadline": optTime(v.Deadline), "required": v.Required, "action": v.Action})
}

// apiUserMFADeadline sets a user's setup deadline
// (PUT /api/v1/users/{id}/mfa/deadline).
func (s *Server) apiUserMFADeadline(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Deadline time.Time `json:"deadline"`
	}
	if !s.mfaOn(w, r) || !s.decoded(w, r, readJSON, &in) {
		return
	}
	_, actor := current(r)
	if err := s.extendDeadline(r, actor, r.PathValue("id"), in.Deadline); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deadline": in.Deadline.UTC()})
}

// apiUserMFAReset resets a user's MFA (POST /api/v1/users/{id}/mfa/reset).
func (s *Server) apiUserMFAReset(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Reason string `json:"reason"`
	}
	if !s.mfaOn(w, r) || !s.decoded(w, r, readJSON, &in) {
		return
	}
	_, actor := current(r)
	s.noContent(w, r, s.resetMFA(r, actor, r.PathValue("id"), in.Reason))
}
