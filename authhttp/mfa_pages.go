package authhttp

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/qrcode"
)

// mfaRoutes are the MFA pages and API. They are always registered (so the
// OpenAPI document matches the route table); with MFA off they answer 404.
func (s *Server) mfaRoutes() []route {
	return []route{
		// The setup wizard.
		{"GET /mfa/setup", signedIn, "", s.mfaSetupPage},
		{"POST /mfa/setup/totp", signedIn, "", s.mfaSetupTOTP},
		{"GET /mfa/setup/totp/qr", signedIn, "", s.mfaTOTPQR},
		{"POST /mfa/setup/totp/confirm", signedIn, "", s.mfaSetupTOTPConfirm},
		{"POST /mfa/setup/email", signedIn, "", s.mfaSetupEmail},
		{"POST /mfa/setup/email/confirm", signedIn, "", s.mfaSetupEmailConfirm},
		{"POST /mfa/setup/sms", signedIn, "", s.mfaSetupSMS},
		{"POST /mfa/setup/sms/confirm", signedIn, "", s.mfaSetupSMSConfirm},
		{"POST /mfa/setup/passkey/begin", signedIn, "", s.mfaPasskeyRegisterBegin},
		{"POST /mfa/setup/passkey/finish", signedIn, "", s.mfaPasskeyRegisterFinish},
		{"POST /mfa/backup-codes/download", signedIn, "", s.mfaBackupCodesDownload},
		// The challenge.
		{"GET /mfa/challenge", signedIn, "", s.mfaChallengePage},
		{"POST /mfa/challenge", signedIn, "", s.mfaChallengeVerify},
		{"POST /mfa/challenge/send", signedIn, "", s.mfaChallengeSend},
		{"POST /mfa/challenge/passkey/begin", signedIn, "", s.mfaPasskeyAssertBegin},
		{"POST /mfa/challenge/passkey/finish", signedIn, "", s.mfaPasskeyAssertFinish},
		// Recovery.
		{"GET /mfa/recovery", signedIn, "", s.recoveryPage},
		{"POST /mfa/recovery", signedIn, "", s.recoveryRequest},
		{"POST /mfa/recovery/verify", signedIn, "", s.recoveryVerify},
		{"GET /mfa/recover", signedIn, "", s.recoverPage},
		{"POST /mfa/recover", signedIn, "", s.recoverRedeem},
		// Account → security.
		{"GET /account/security", signedIn, "", s.securityPage},
		{"POST /account/security/factors/{id}/remove", signedIn, "", s.securityRemoveFactor},
		{"POST /account/security/backup-codes", signedIn, "", s.securityRegenerateCodes},
		{"POST /account/security/devices/{id}/revoke", signedIn, "", s.securityRevokeDevice},
		{"POST /account/security/devices/revoke-all", signedIn, "", s.securityRevokeDevices},
		// Administration.
		{"POST /admin/users/{id}/mfa/deadline", signedIn, auth.PermMFAReset, s.adminMFADeadline},
		{"POST /admin/users/{id}/mfa/reset", signedIn, auth.PermMFAReset, s.adminMFAReset},
		{"GET /admin/recovery", signedIn, auth.PermMFAReset, s.adminRecoveryPage},
		{"POST /admin/recovery/{id}/approve", signedIn, auth.PermMFAReset, s.adminRecoveryApprove},
		{"POST /admin/recovery/{id}/deny", signedIn, auth.PermMFAReset, s.adminRecoveryDeny},

		// The JSON API.
		{"GET /api/v1/me/assurance", signedIn, "", s.apiAssurance},
		{"POST /api/v1/stepup", signedIn, "", s.apiStepUp},
		{"GET /api/v1/me/factors", signedIn, "", s.apiFactors},
		{"DELETE /api/v1/me/factors/{id}", signedIn, "", s.apiRemoveFactor},
		{"POST /api/v1/me/factors/totp", signedIn, "", s.apiTOTPBegin},
		{"POST /api/v1/me/factors/totp/{id}/confirm", signedIn, "", s.apiTOTPConfirm},
		{"POST /api/v1/me/factors/email", signedIn, "", s.apiEmailBegin},
		{"POST /api/v1/me/factors/email/confirm", signedIn, "", s.apiEmailConfirm},
		{"POST /api/v1/me/factors/sms", signedIn, "", s.apiSMSBegin},
		{"POST /api/v1/me/factors/sms/{id}/confirm", signedIn, "", s.apiSMSConfirm},
		{"POST /api/v1/me/factors/passkey/begin", signedIn, "", s.apiPasskeyRegisterBegin},
		{"POST /api/v1/me/factors/passkey/finish", signedIn, "", s.apiPasskeyRegisterFinish},
		{"POST /api/v1/me/backup-codes", signedIn, "", s.apiRegenerateCodes},
		{"POST /api/v1/mfa/challenge/send", signedIn, "", s.apiChallengeSend},
		{"POST /api/v1/mfa/challenge/verify", signedIn, "", s.apiChallengeVerify},
		{"POST /api/v1/mfa/challenge/passkey/begin", signedIn, "", s.apiPasskeyAssertBegin},
		{"POST /api/v1/mfa/challenge/passkey/finish", signedIn, "", s.apiPasskeyAssertFinish},
		{"GET /api/v1/me/devices", signedIn, "", s.apiDevices},
		{"DELETE /api/v1/me/devices/{id}", signedIn, "", s.apiRevokeDevice},
		{"DELETE /api/v1/me/devices", signedIn, "", s.apiRevokeDevices},
		{"GET /api/v1/me/recovery", signedIn, "", s.apiRecoveryStatus},
		{"POST /api/v1/me/recovery", signedIn, "", s.apiRecoveryRequest},
		{"POST /api/v1/me/recovery/verify", signedIn, "", s.apiRecoveryVerify},
		{"POST /api/v1/me/recovery/redeem", signedIn, "", s.apiRecoveryRedeem},
		{"GET /api/v1/recovery-requests", signedIn, auth.PermMFAReset, s.apiRecoveryPending},
		{"POST /api/v1/recovery-requests/{id}/approve", signedIn, auth.PermMFAReset, s.apiRecoveryApprove},
		{"POST /api/v1/recovery-requests/{id}/deny", signedIn, auth.PermMFAReset, s.apiRecoveryDeny},
		{"GET /api/v1/users/{id}/mfa", signedIn, auth.PermUsersRead, s.apiUserMFA},
		{"PUT /api/v1/users/{id}/mfa/deadline", signedIn, auth.PermMFAReset, s.apiUserMFADeadline},
		{"POST /api/v1/users/{id}/mfa/reset", signedIn, auth.PermMFAReset, s.apiUserMFAReset},
	}
}

// methodChoice is a second-factor method as the pages offer it.
type methodChoice struct {
	Method      string
	Label       string
	Recommended bool
	Current     bool
}

func methodChoices(methods []string, recommended, current string) []methodChoice {
	out := make([]methodChoice, 0, len(methods))
	for _, m := range methods {
		out = append(out, methodChoice{Method: m, Label: auth.MFAMethodLabel(m), Recommended: m == recommended, Current: m == current})
	}
	return out
}

// available keeps the methods this service can run (email and SMS need Codes
// with a sender, passkeys need Passkeys).
func (s *Server) available(methods []string) []string {
	var out []string
	for _, m := range methods {
		switch m {
		case auth.MethodEmail:
			if s.mfa.Codes == nil || !s.mfa.Codes.EmailEnabled() {
				continue
			}
		case auth.MethodSMS:
			if s.mfa.Codes == nil || !s.mfa.Codes.SMSEnabled() {
				continue
			}
		case auth.MethodWebAuthn:
			if s.mfa.Passkeys == nil {
				continue
			}
		}
		out = append(out, m)
	}
	return out
}

// returnTo is the request's return_to (query or form) if safe, else fallback.
func (s *Server) returnTo(r *http.Request, fallback string) string {
	v := r.FormValue("return_to")
	return s.safeReturnTo(v, fallback)
}

// mfaSetupPage is the data of templates/mfa_setup.html.
type mfaSetupPage struct {
	Action    auth.MFAAction
	Reason    string
	Blocked   bool
	Prompt    bool
	Skippable bool
	Deadline  time.Time
	Left      string // "23 hours left"
	Methods   []methodChoice
	Enrolled  []string // labels of the methods set up already
	ReturnTo  string
	// Method is the setup form shown open (from ?method=), if any.
	Method      string
	PhoneRegion string
	EmailSent   *auth.CodeSent
	SMSSent     *auth.CodeSent
	Email       string
	Phone       string
}

// mfaSetupNotices are the setup page's ?done= notices.
var mfaSetupNotices = map[string]string{
	"passkey": "Your passkey is set up.",
}

// mfaSetupPage is the wizard's first step: the deadline (staff), and the
// methods to choose from (GET /mfa/setup).
func (s *Server) mfaSetupPage(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	st := currentMFA(r)
	returnTo := s.returnTo(r, "/account")
	if st.decision.Action == auth.MFAChallenge {
		http.Redirect(w, r, mfaURL("/mfa/challenge", returnTo), http.StatusSeeOther)
		return
	}
	p := s.newPage(r, "Set up two-step verification", nil)
	p.Notice = mfaSetupNotices[r.URL.Query().Get("done")]
	s.renderSetup(w, r, http.StatusOK, p, &mfaSetupPage{Method: r.URL.Query().Get("method"), Prompt: r.URL.Query().Get("prompt") == "1"})
}

// renderSetup shows the wizard's first step with d's form state.
func (s *Server) renderSetup(w http.ResponseWriter, r *http.Request, status int, p *page, d *mfaSetupPage) {
	st := currentMFA(r)
	dec := st.decision
	d.Action, d.Reason, d.ReturnTo, d.PhoneRegion = dec.Action, dec.Reason, s.returnTo(r, "/account"), s.mfa.PhoneRegion
	d.Blocked = dec.Action == auth.MFABlocked
	d.Skippable = !dec.Action.Gates()
	if dec.Action != auth.MFAPrompt {
		d.Prompt = false
	}
	if !dec.Deadline.IsZero() {
		d.Deadline = dec.Deadline
		d.Left = timeLeft(dec.Deadline.Sub(s.now()))
	}
	offer := dec.AcceptedMethods
	if dec.Action == auth.MFAAllow || len(offer) == 0 {
		offer = []string{auth.MethodWebAuthn, auth.MethodTOTP, auth.MethodEmail, auth.MethodSMS}
	}
	recommended := dec.Recommended
	if recommended == "" {
		recommended = s.mfa.Policy.Types[currentUser(r).Type].Recommended
	}
	d.Methods = methodChoices(s.available(offer), recommended, d.Method)
	for _, m := range st.methods {
		d.Enrolled = append(d.Enrolled, auth.MFAMethodLabel(m))
	}
	if d.Blocked {
		p.Title = "Signing in is blocked"
	}
	p.Data = d
	s.render(w, r, status, "mfa_setup", p)
}

// setupFail shows an error of a setup step on the wizard's first step, with the
// form the person was filling in open again.
func (s *Server) setupFail(w http.ResponseWriter, r *http.Request, err error, d *mfaSetupPage) {
	status := errorStatus(err)
	if status >= 500 || status == http.StatusUnauthorized && auth.ErrorCode(err) != auth.CodeUnauthorized {
		s.fail(w, r, err)
		return
	}
	s.logFailure(r, status, err)
	setRetryAfter(w, err)
	p := s.newPage(r, "Set up two-step verification", nil)
	p.Error = auth.ErrorMessage(err)
	s.renderSetup(w, r, status, p, d)
}

func currentUser(r *http.Request) *auth.User {
	_, u := current(r)
	return u
}

// timeLeft is d for the deadline notice, rounded: "23 hours left", "40
// minutes left".
func timeLeft(d time.Duration) string {
	switch {
	case d <= 0:
		return "no time left"
	case d < 2*time.Minute:
		return "1 minute left"
	case d < 2*time.Hour:
		return fmt.Sprintf("%d minutes left", int(d.Round(time.Minute)/time.Minute))
	case d < 72*time.Hour:
		return fmt.Sprintf("%d hours left", int(d.Round(time.Hour)/time.Hour))
	}
	return fmt.Sprintf("%d days left", int(d.Round(24*time.Hour)/(24*time.Hour)))
}

// needFresh makes a change to the account's factors wait for a fresh second
// factor (step-up) when the user has any: someone who found a signed-in
// browser, or a remembered device, must not swap the factors. It reports
// whether the request may go on, having answered it if not.
func (s *Server) needFresh(w http.ResponseWriter, r *http.Request, returnTo string) bool {
	sess, u := current(r)
	st := currentMFA(r)
	if len(st.methods) == 0 {
		return true
	}
	fresh, err := s.mfaCheck(r, sess, u, auth.PurposeStepUp, auth.MFARisk{})
	if err != nil {
		s.fail(w, r, err)
		return false
	}
	if fresh.decision.Action == auth.MFAAllow {
		return true
	}
	if isAPI(r.URL.Path) || wantsJSON(r) {
		s.mfaRequired(w, r, fresh.decision)
		return false
	}
	http.Redirect(w, r, mfaURL("/mfa/challenge", returnTo)+sep(returnTo)+"purpose=step-up", http.StatusSeeOther)
	return false
}

// totpEnrolment is a TOTP setup in progress, sealed into the page (the secret
// is shown again if the first code is wrong, and drawn as the QR code).
type totpEnrolment struct {
	FactorID string `json:"f"`
	Secret   string `json:"s"`
	URL      string `json:"u"`
}

const totpSealPurpose = "totp-enrolment"

// mfaTOTPPage is the data of templates/mfa_totp.html.
type mfaTOTPPage struct {
	Enrolment string // sealed totpEnrolment
	Secret    string // grouped by four for reading
	RawSecret string
	QRURL     string
	ReturnTo  string
}

// mfaSetupTOTP starts an authenticator app setup and shows its QR code and key
// (POST /mfa/setup/totp).
func (s *Server) mfaSetupTOTP(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	returnTo := s.returnTo(r, "/account")
	if !s.needFresh(w, r, mfaURL("/mfa/setup", returnTo)) {
		return
	}
	_, u := current(r)
	en, err := s.mfa.Factors.BeginTOTP(r.Context(), u, s.client(r))
	if err != nil {
		s.setupFail(w, r, err, &mfaSetupPage{Method: auth.MethodTOTP})
		return
	}
	s.renderTOTP(w, r, http.StatusOK, "", totpEnrolment{FactorID: en.FactorID, Secret: en.Secret, URL: en.URL})
}

func (s *Server) renderTOTP(w http.ResponseWriter, r *http.Request, status int, msg string, en totpEnrolment) {
	_, u := current(r)
	sealed, err := s.seal(totpSealPurpose, u.ID, en, 30*time.Minute)
	if err != nil {
		s.fail(w, r, fmt.Errorf("seal totp setup: %w", err))
		return
	}
	p := s.newPage(r, "Set up an authenticator app", &mfaTOTPPage{
		Enrolment: sealed, Secret: groupSecret(en.Secret), RawSecret: en.Secret,
		QRURL: "/mfa/setup/totp/qr?e=" + sealed, ReturnTo: s.returnTo(r, "/account"),
	})
	p.Error = msg
	s.render(w, r, status, "mfa_totp", p)
}

// groupSecret shows a base32 secret in groups of four.
func groupSecret(secret string) string {
	var b strings.Builder
	for i, c := range secret {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// mfaTOTPQR draws a TOTP setup's otpauth URL as a QR code
// (GET /mfa/setup/totp/qr?e=SEALED).
func (s *Server) mfaTOTPQR(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	_, u := current(r)
	var en totpEnrolment
	if err := s.unseal(totpSealPurpose, u.ID, r.URL.Query().Get("e"), &en); err != nil {
		s.fail(w, r, err)
		return
	}
	png, err := qrcode.PNG(en.URL, 256)
	if err != nil {
		s.fail(w, r, fmt.Errorf("totp qr code: %w", err))
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(png)
}

// mfaSetupTOTPConfirm checks the first code of an authenticator app; on
// success the session counts as verified with it and, for a first factor, the
// backup codes are made and shown (POST /mfa/setup/totp/confirm).
func (s *Server) mfaSetupTOTPConfirm(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	sess, u := current(r)
	var en totpEnrolment
	if err := s.unseal(totpSealPurpose, u.ID, r.PostFormValue("enrolment"), &en); err != nil {
		s.setupFail(w, r, err, &mfaSetupPage{})
		return
	}
	err := s.guarded(w, r, u, func() error {
		return s.mfa.Factors.ConfirmTOTP(r.Context(), u, en.FactorID, r.PostFormValue("code"), s.client(r))
	})
	if err != nil {
		status := errorStatus(err)
		if status >= 500 || auth.ErrorCode(err) == auth.CodeNotFound || auth.ErrorCode(err) == auth.CodeConflict {
			s.setupFail(w, r, err, &mfaSetupPage{Method: auth.MethodTOTP})
			return
		}
		s.logFailure(r, status, err)
		setRetryAfter(w, err)
		s.renderTOTP(w, r, status, auth.ErrorMessage(err), en)
		return
	}
	s.factorAdded(w, r, sess, u, auth.MethodTOTP, "Your authenticator app is set up.")
}

// factorAdded finishes a setup: the session is elevated with the new factor
// (its setup proved it), and a first factor gets its backup codes, shown once.
func (s *Server) factorAdded(w http.ResponseWriter, r *http.Request, sess *auth.Session, u *auth.User, method, notice string) {
	ctx := r.Context()
	if _, err := s.elevate(w, r, sess, u, method, false); err != nil {
		s.fail(w, r, err)
		return
	}
	returnTo := s.returnTo(r, "/account")
	left, err := s.mfa.Factors.BackupCodesLeft(ctx, u)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if left > 0 {
		http.Redirect(w, r, s.afterSetupURL(r, returnTo)+"#done", http.StatusSeeOther)
		return
	}
	codes, err := s.mfa.Factors.GenerateBackupCodes(ctx, u, s.client(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.renderCodes(w, r, notice, codes, s.afterSetupURL(r, returnTo))
}

// afterSetupURL is where a finished setup continues: returnTo if the policy is
// satisfied now, else the wizard again.
func (s *Server) afterSetupURL(r *http.Request, returnTo string) string {
	sess, u := current(r)
	st, err := s.mfaCheck(r, sess, u, auth.PurposeSignIn, auth.MFARisk{})
	if err != nil || st.decision.Action == auth.MFAAllow || st.decision.Action == auth.MFAPrompt {
		return returnTo
	}
	return mfaURL("/mfa/setup", returnTo)
}

// mfaCodesPage is the data of templates/mfa_codes.html.
type mfaCodesPage struct {
	Codes    []string
	Continue string
}

func (s *Server) renderCodes(w http.ResponseWriter, r *http.Request, notice string, codes []string, next string) {
	p := s.newPage(r, "Your backup codes", &mfaCodesPage{Codes: codes, Continue: next})
	p.Notice = notice
	s.render(w, r, http.StatusOK, "mfa_codes", p)
}

// mfaBackupCodesDownload hands the backup codes the page shows back as a text
// file, or a page to print (POST /mfa/backup-codes/download). The codes come
// from the page's own form: they are never stored, so this is the only way to
// give them again.
func (s *Server) mfaBackupCodesDownload(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	_, u := current(r)
	var codes []string
	for _, c := range r.PostForm["code"] {
		if n, ok := auth.NormalizeBackupCode(c); ok && len(codes) < auth.BackupCodeCount {
			codes = append(codes, auth.FormatBackupCode(n))
		}
	}
	if len(codes) == 0 {
		s.fail(w, r, auth.Errorf(auth.CodeInvalid, "There are no backup codes to save. Make a new set on your security page."))
		return
	}
	if r.PostFormValue("format") == "print" {
		s.render(w, r, http.StatusOK, "mfa_codes_print", s.newPage(r, "Backup codes", &mfaCodesPage{Codes: codes}))
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Hestami backup codes for %s\r\nMade %s. Each code works once.\r\n\r\n", u.Email, s.now().UTC().Format("2 Jan 2006 15:04 UTC"))
	for _, c := range codes {
		fmt.Fprintf(&b, "%s\r\n", c)
	}
	b.WriteString("\r\nKeep them somewhere safe, away from your phone. Making a new set makes these stop working.\r\n")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="hestami-backup-codes.txt"`)
	_, _ = w.Write([]byte(b.String()))
}

// mfaSetupEmail sends a code to the secondary email being set up
// (POST /mfa/setup/email).
func (s *Server) mfaSetupEmail(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	returnTo := s.returnTo(r, "/account")
	if !s.needFresh(w, r, mfaURL("/mfa/setup", returnTo)) {
		return
	}
	_, u := current(r)
	email := strings.TrimSpace(r.PostFormValue("email"))
	d := &mfaSetupPage{Method: auth.MethodEmail, Email: email}
	if s.mfa.Codes == nil {
		s.setupFail(w, r, auth.Errorf(auth.CodeUnavailable, "Codes by email are not available here. Choose another method."), d)
		return
	}
	if err := s.limitSend(r, u); err != nil {
		s.setupFail(w, r, err, d)
		return
	}
	sent, err := s.mfa.Codes.BeginSecondaryEmail(r.Context(), u, email, s.client(r))
	if err != nil {
		s.setupFail(w, r, err, d)
		return
	}
	d.EmailSent = sent
	p := s.newPage(r, "Set up two-step verification", nil)
	p.Notice = fmt.Sprintf("We sent a code to %s. Enter it below.", sent.To)
	s.renderSetup(w, r, http.StatusOK, p, d)
}

// mfaSetupEmailConfirm checks the code sent to the secondary email
// (POST /mfa/setup/email/confirm).
func (s *Server) mfaSetupEmailConfirm(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	sess, u := current(r)
	d := &mfaSetupPage{Method: auth.MethodEmail, EmailSent: &auth.CodeSent{Method: auth.MethodEmail, To: r.PostFormValue("to")}}
	if s.mfa.Codes == nil {
		s.setupFail(w, r, errMFAOff, d)
		return
	}
	err := s.guarded(w, r, u, func() error {
		return s.mfa.Codes.ConfirmSecondaryEmail(r.Context(), u, r.PostFormValue("code"), s.client(r))
	})
	if err != nil {
		s.setupFail(w, r, err, d)
		return
	}
	s.factorAdded(w, r, sess, u, auth.MethodEmail, "Your secondary email is set up for codes.")
}

// mfaSetupSMS texts a code to the phone number being set up
// (POST /mfa/setup/sms).
func (s *Server) mfaSetupSMS(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	returnTo := s.returnTo(r, "/account")
	if !s.needFresh(w, r, mfaURL("/mfa/setup", returnTo)) {
		return
	}
	_, u := current(r)
	phone := strings.TrimSpace(r.PostFormValue("phone"))
	region := strings.ToUpper(strings.TrimSpace(r.PostFormValue("region")))
	if region == "" {
		region = s.mfa.PhoneRegion
	}
	d := &mfaSetupPage{Method: auth.MethodSMS, Phone: phone}
	if s.mfa.Codes == nil {
		s.setupFail(w, r, auth.Errorf(auth.CodeUnavailable, "Codes by text message are not available here. Choose another method."), d)
		return
	}
	if err := s.limitSend(r, u); err != nil {
		s.setupFail(w, r, err, d)
		return
	}
	sent, err := s.mfa.Codes.BeginSMS(r.Context(), u, phone, region, s.client(r))
	if err != nil {
		s.setupFail(w, r, err, d)
		return
	}
	d.SMSSent = sent
	p := s.newPage(r, "Set up two-step verification", nil)
	p.Notice = fmt.Sprintf("We texted a code to %s. Enter it below.", sent.To)
	s.renderSetup(w, r, http.StatusOK, p, d)
}

// mfaSetupSMSConfirm checks the code texted to the number
// (POST /mfa/setup/sms/confirm).
func (s *Server) mfaSetupSMSConfirm(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	sess, u := current(r)
	factorID := r.PostFormValue("factor_id")
	d := &mfaSetupPage{Method: auth.MethodSMS, SMSSent: &auth.CodeSent{Method: auth.MethodSMS, FactorID: factorID, To: r.PostFormValue("to")}}
	if s.mfa.Codes == nil {
		s.setupFail(w, r, errMFAOff, d)
		return
	}
	err := s.guarded(w, r, u, func() error {
		return s.mfa.Codes.ConfirmSMS(r.Context(), u, factorID, r.PostFormValue("code"), s.client(r))
	})
	if err != nil {
		s.setupFail(w, r, err, d)
		return
	}
	s.factorAdded(w, r, sess, u, auth.MethodSMS, "Your phone is set up for codes by text message.")
}

// mfaChallengePage is the data of templates/mfa_challenge.html.
type mfaChallengePage struct {
	Reason       string
	Methods      []methodChoice
	Method       string
	Sent         *auth.CodeSent
	SentTo       string
	ReturnTo     string
	Purpose      string
	RememberDays int
	Recovery     bool
}

// challengeDecision is what the challenge page answers: the sign-in decision,
// or the step-up one when purpose=step-up.
func (s *Server) challengeDecision(r *http.Request) (auth.MFADecision, string, error) {
	st := currentMFA(r)
	purpose := r.FormValue("purpose")
	if purpose != string(auth.PurposeStepUp) || st.decision.Action.Gates() {
		return st.decision, "", nil
	}
	sess, u := current(r)
	up, err := s.mfaCheck(r, sess, u, auth.PurposeStepUp, auth.MFARisk{})
	if err != nil {
		return auth.MFADecision{}, "", err
	}
	return up.decision, purpose, nil
}

// mfaChallengePage asks for a second factor (GET /mfa/challenge): the methods
// the user has, the code form of the chosen one, "remember this device", and the
// way to recovery.
func (s *Server) mfaChallengePage(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	s.renderChallenge(w, r, http.StatusOK, "", nil)
}

func (s *Server) renderChallenge(w http.ResponseWriter, r *http.Request, status int, msg string, sent *auth.CodeSent) {
	dec, purpose, err := s.challengeDecision(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	returnTo := s.returnTo(r, "/account")
	if dec.Action != auth.MFAChallenge {
		if dec.Action.Gates() || dec.Action == auth.MFASetup {
			http.Redirect(w, r, mfaNeedOut(dec, returnTo).Location, http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, returnTo, http.StatusSeeOther)
		return
	}
	methods := s.available(dec.AcceptedMethods)
	method := r.FormValue("method")
	if !slices.Contains(methods, method) && len(methods) > 0 {
		// The strongest method, but backup codes only when nothing else is
		// left: they are for when the usual way fails.
		method = methods[0]
		if i := slices.IndexFunc(methods, func(m string) bool { return m != auth.MethodBackupCode }); i >= 0 {
			method = methods[i]
		}
	}
	d := &mfaChallengePage{
		Reason: dec.Reason, Methods: methodChoices(methods, "", method), Method: method, Sent: sent,
		ReturnTo: returnTo, Purpose: purpose, Recovery: s.mfa.Recovery != nil && purpose == "",
	}
	if sent == nil && r.URL.Query().Get("sent") != "" && (method == auth.MethodEmail || method == auth.MethodSMS) {
		d.SentTo = r.URL.Query().Get("sent")
	}
	if s.mfa.Devices != nil && purpose == "" {
		d.RememberDays = s.mfa.Devices.RememberDays()
	}
	p := s.newPage(r, "Two-step verification", d)
	p.Error = msg
	s.render(w, r, status, "mfa_challenge", p)
}

// mfaChallengeVerify checks a code (POST /mfa/challenge): on success the session
// is elevated, the device remembered if asked, and the browser continues.
func (s *Server) mfaChallengeVerify(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	sess, u := current(r)
	dec, _, err := s.challengeDecision(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	method := r.PostFormValue("method")
	if dec.Action == auth.MFAChallenge && !slices.Contains(dec.AcceptedMethods, method) {
		s.challengeFail(w, r, auth.Errorf(auth.CodeInvalid, "That method is not one you can use here. Choose one of the methods listed."))
		return
	}
	if err := s.checkSecondFactor(w, r, u, method, r.PostFormValue("code")); err != nil {
		s.challengeFail(w, r, err)
		return
	}
	s.challengePassed(w, r, sess, u, method)
}

// challengePassed elevates the session and continues to return_to, through
// the wizard if the policy still asks for a setup.
func (s *Server) challengePassed(w http.ResponseWriter, r *http.Request, sess *auth.Session, u *auth.User, method string) {
	remember := r.PostFormValue("remember") == "on" && r.PostFormValue("purpose") == ""
	if _, err := s.elevate(w, r, sess, u, method, remember); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, s.afterSetupURL(r, s.returnTo(r, "/account")), http.StatusSeeOther)
}

// challengeFail shows a failed verification on the challenge page.
func (s *Server) challengeFail(w http.ResponseWriter, r *http.Request, err error) {
	status := errorStatus(err)
	if status >= 500 {
		s.fail(w, r, err)
		return
	}
	s.logFailure(r, status, err)
	setRetryAfter(w, err)
	s.renderChallenge(w, r, status, auth.ErrorMessage(err), nil)
}

// mfaChallengeSend sends a code by email or SMS (POST /mfa/challenge/send).
func (s *Server) mfaChallengeSend(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	_, u := current(r)
	method := r.PostFormValue("method")
	if s.mfa.Codes == nil {
		s.challengeFail(w, r, auth.Errorf(auth.CodeUnavailable, "Codes by email or text message are not available here. Use another method."))
		return
	}
	if err := s.limitSend(r, u); err != nil {
		s.challengeFail(w, r, err)
		return
	}
	sent, err := s.mfa.Codes.SendChallenge(r.Context(), u, method, "", s.client(r))
	if err != nil {
		s.challengeFail(w, r, err)
		return
	}
	s.renderChallenge(w, r, http.StatusOK, "", sent)
}
