package authhttp

import (
	"net/http"

	"github.com/hestami/hestami/auth"
)

var errNoRecoveryHere = auth.Errorf(auth.CodeNotFound, "Account recovery is not available on this service. Contact support.")

// recoveryOn answers 404 and returns false unless MFA and recovery are on.
func (s *Server) recoveryOn(w http.ResponseWriter, r *http.Request) bool {
	if !s.mfaOn(w, r) {
		return false
	}
	if s.mfa.Recovery == nil {
		s.fail(w, r, errNoRecoveryHere)
		return false
	}
	return true
}

// recoveryPageData is the data of templates/recovery.html.
type recoveryPageData struct {
	Request    *auth.RecoveryRequest
	CanRequest bool
}

var recoveryNotices = map[string]string{
	"requested": "We emailed you the codes. Enter them below.",
	"verified":  "Thank you. Your request now waits for support's approval; we will email you.",
}

// recoveryPage shows the user's recovery request, or the form to file one
// (GET /mfa/recovery).
func (s *Server) recoveryPage(w http.ResponseWriter, r *http.Request) {
	if !s.recoveryOn(w, r) {
		return
	}
	p := s.newPage(r, "Recover your account", nil)
	p.Notice = recoveryNotices[r.URL.Query().Get("done")]
	s.renderRecovery(w, r, http.StatusOK, p)
}

func (s *Server) renderRecovery(w http.ResponseWriter, r *http.Request, status int, p *page) {
	_, u := current(r)
	d := &recoveryPageData{}
	req, err := s.mfa.Recovery.Latest(r.Context(), u)
	switch {
	case err == nil:
		d.Request = req
	case auth.ErrorCode(err) != auth.CodeNotFound:
		s.fail(w, r, err)
		return
	}
	d.CanRequest = d.Request == nil || !d.Request.Status.Open() || d.Request.Status == auth.RecoveryVerifying
	p.Data = d
	s.render(w, r, status, "recovery", p)
}

func (s *Server) recoveryFail(w http.ResponseWriter, r *http.Request, err error) {
	setRetryAfter(w, err)
	s.failOnPage(w, r, err, "Recover your account", s.renderRecovery)
}

// recoveryRequest files a recovery request (POST /mfa/recovery).
func (s *Server) recoveryRequest(w http.ResponseWriter, r *http.Request) {
	if !s.recoveryOn(w, r) {
		return
	}
	_, u := current(r)
	if _, err := s.mfa.Recovery.Request(r.Context(), u, s.client(r), r.PostFormValue("reason")); err != nil {
		s.recoveryFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/mfa/recovery?done=requested", http.StatusSeeOther)
}

// recoveryVerify checks the emailed codes (POST /mfa/recovery/verify).
func (s *Server) recoveryVerify(w http.ResponseWriter, r *http.Request) {
	if !s.recoveryOn(w, r) {
		return
	}
	_, u := current(r)
	_, err := s.mfa.Recovery.VerifyCodes(r.Context(), u, r.PostFormValue("request"), r.PostFormValue("primary_code"), r.PostFormValue("secondary_code"), s.client(r))
	if err != nil {
		s.recoveryFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/mfa/recovery?done=verified", http.StatusSeeOther)
}

// recoverPage is where the emailed recovery link lands: a button that
// redeems it (GET /mfa/recover?token=); a GET never spends the token, so mail
// scanners that open links do not.
func (s *Server) recoverPage(w http.ResponseWriter, r *http.Request) {
	if !s.recoveryOn(w, r) {
		return
	}
	token := r.URL.Query().Get("token")
	if token == "" {
		s.fail(w, r, auth.Errorf(auth.CodeInvalid, "This recovery link is incomplete. Copy the whole link from the email."))
		return
	}
	s.render(w, r, http.StatusOK, "recover", s.newPage(r, "Reset your two-step verification", struct{ Token string }{token}))
}

// recoverRedeem redeems the recovery link: the user's factors are reset and
// they set up new ones (POST /mfa/recover).
func (s *Server) recoverRedeem(w http.ResponseWriter, r *http.Request) {
	if !s.recoveryOn(w, r) {
		return
	}
	if err := s.redeem(w, r, r.PostFormValue("token")); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/mfa/setup?done=recovered", http.StatusSeeOther)
}

// redeem spends a recovery token for the signed-in user and restarts their
// setup grace period; their remembered devices are forgotten.
func (s *Server) redeem(w http.ResponseWriter, r *http.Request, token string) error {
	_, u := current(r)
	ctx := r.Context()
	defer s.mfaCache.forget(u.ID)
	if _, err := s.mfa.Recovery.Redeem(ctx, u, token, s.client(r)); err != nil {
		return err
	}
	if err := s.restartGrace(r, u); err != nil {
		return err
	}
	if s.mfa.Devices != nil {
		if _, err := s.mfa.Devices.RevokeAll(ctx, u, s.client(r)); err != nil {
			return err
		}
		s.clearCookie(w, TrustCookie)
	}
	return nil
}

// recoveryView is a pending request on the admin page.
type recoveryView struct {
	*auth.RecoveryRequest
	Who string
	Own bool
}

// adminRecoveryPageData is the data of templates/admin_recovery.html.
type adminRecoveryPageData struct {
	Requests []recoveryView
}

var adminRecoveryNotices = map[string]string{
	"approved": "Approved: the user was emailed a recovery link that works once, for 15 minutes.",
	"denied":   "Denied: the user was told by email.",
}

// adminRecoveryPage lists the recovery requests awaiting approval
// (GET /admin/recovery).
func (s *Server) adminRecoveryPage(w http.ResponseWriter, r *http.Request) {
	if !s.recoveryOn(w, r) {
		return
	}
	p := s.newPage(r, "Recovery requests", nil)
	p.Notice = adminRecoveryNotices[r.URL.Query().Get("done")]
	s.renderAdminRecovery(w, r, http.StatusOK, p)
}

func (s *Server) renderAdminRecovery(w http.ResponseWriter, r *http.Request, status int, p *page) {
	_, actor := current(r)
	reqs, err := s.mfa.Recovery.Pending(r.Context(), actor)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := &adminRecoveryPageData{}
	for _, req := range reqs {
		v := recoveryView{RecoveryRequest: req, Own: req.UserID == actor.ID, Who: req.PrimaryEmail}
		d.Requests = append(d.Requests, v)
	}
	p.Data = d
	s.render(w, r, status, "admin_recovery", p)
}

func (s *Server) adminRecoveryFail(w http.ResponseWriter, r *http.Request, err error) {
	setRetryAfter(w, err)
	s.failOnPage(w, r, err, "Recovery requests", s.renderAdminRecovery, http.StatusUnauthorized)
}

// adminRecoveryApprove approves a request (POST /admin/recovery/{id}/approve).
func (s *Server) adminRecoveryApprove(w http.ResponseWriter, r *http.Request) {
	if !s.recoveryOn(w, r) {
		return
	}
	_, actor := current(r)
	if _, err := s.mfa.Recovery.Approve(r.Context(), actor, r.PathValue("id"), s.client(r)); err != nil {
		s.adminRecoveryFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/admin/recovery?done=approved", http.StatusSeeOther)
}

// adminRecoveryDeny turns a request down (POST /admin/recovery/{id}/deny).
func (s *Server) adminRecoveryDeny(w http.ResponseWriter, r *http.Request) {
	if !s.recoveryOn(w, r) {
		return
	}
	_, actor := current(r)
	if _, err := s.mfa.Recovery.Deny(r.Context(), actor, r.PathValue("id"), r.PostFormValue("note"), s.client(r)); err != nil {
		s.adminRecoveryFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/admin/recovery?done=denied", http.StatusSeeOther)
}
