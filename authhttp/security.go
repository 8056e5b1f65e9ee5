package authhttp

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
)

// factorView is a second factor as the pages show it.
type factorView struct {
	*auth.Factor
	MethodLabel string
}

func factorViews(fs []*auth.Factor) []factorView {
	out := make([]factorView, 0, len(fs))
	for _, f := range fs {
		out = append(out, factorView{f, auth.MFAMethodLabel(f.Method)})
	}
	return out
}

// deviceView is a device as the security page shows it.
type deviceView struct {
	*auth.Device
	Current    bool
	Remembered bool
}

// securityPage is the data of templates/security.html.
type securityPage struct {
	Decision   auth.MFADecision
	Deadline   time.Time
	Left       string
	Factors    []factorView
	HasFactors bool
	BackupLeft int
	DevicesOn  bool
	Devices    []deviceView
	Recovery   *auth.RecoveryRequest
}

// The notices the security page shows for ?done=.
var securityNotices = map[string]string{
	"removed":         "The method is removed.",
	"device_revoked":  "The device is revoked: it asks for your second factor at its next sign-in.",
	"devices_revoked": "Every device is revoked: each asks for your second factor at its next sign-in.",
}

// securityPage lists the user's second factors, backup codes and devices
// (GET /account/security).
func (s *Server) securityPage(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	p := s.newPage(r, "Security", nil)
	p.Notice = securityNotices[r.URL.Query().Get("done")]
	s.renderSecurity(w, r, http.StatusOK, p)
}

func (s *Server) renderSecurity(w http.ResponseWriter, r *http.Request, status int, p *page) {
	ctx := r.Context()
	_, u := current(r)
	st := currentMFA(r)
	d := &securityPage{Decision: st.decision, DevicesOn: s.mfa.Devices != nil}
	if a := st.decision.Action; a != auth.MFASetup && a != auth.MFASetupRequired {
		d.Decision.Reason = "" // "this device is remembered" and the like say nothing here
	}
	if !st.decision.Deadline.IsZero() {
		d.Deadline, d.Left = st.decision.Deadline, timeLeft(st.decision.Deadline.Sub(s.now()))
	}
	fs, err := s.mfa.Factors.List(ctx, u)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Factors, d.HasFactors = factorViews(fs), len(fs) > 0
	if d.BackupLeft, err = s.mfa.Factors.BackupCodesLeft(ctx, u); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.mfa.Devices != nil {
		devs, err := s.mfa.Devices.List(ctx, u)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		mine := ""
		if tok := cookieValue(r, auth.DeviceCookie); tok != "" {
			mine = auth.HashToken(tok)
		}
		now := s.now()
		for _, dev := range devs {
			d.Devices = append(d.Devices, deviceView{dev, dev.TokenHash == mine, dev.Trusted(now)})
		}
	}
	if s.mfa.Recovery != nil {
		if req, err := s.mfa.Recovery.Latest(ctx, u); err == nil {
			d.Recovery = req
		} else if auth.ErrorCode(err) != auth.CodeNotFound {
			s.fail(w, r, err)
			return
		}
	}
	p.Data = d
	s.render(w, r, status, "security", p)
}

// securityFail shows an action's error on the security page.
func (s *Server) securityFail(w http.ResponseWriter, r *http.Request, err error) {
	setRetryAfter(w, err)
	s.failOnPage(w, r, err, "Security", s.renderSecurity, http.StatusUnauthorized)
}

// removeFactor removes the user's factor id, refusing to leave a user whose
// policy requires MFA without a factor that satisfies it.
func (s *Server) removeFactor(r *http.Request, u *auth.User, id string) error {
	ctx := r.Context()
	fs, err := s.mfa.Factors.List(ctx, u)
	if err != nil {
		return err
	}
	var left []string
	found := false
	for _, f := range fs {
		if f.ID == id {
			found = true
			continue
		}
		left = append(left, f.Method)
	}
	if !found {
		return auth.Errorf(auth.CodeNotFound, "That method is not on your account (it may have been removed already).")
	}
	st := currentMFA(r)
	in := auth.MFAInput{User: u, Methods: left, Settings: st.settings, Now: s.now()}
	if d := auth.EvaluateMFA(s.mfa.Policy, in); d.Required && (d.Action == auth.MFASetupRequired || d.Action == auth.MFASetup || d.Action == auth.MFABlocked) {
		return auth.Errorf(auth.CodeConflict, "Your account must keep two-step verification. Add another method first, then remove this one.")
	}
	defer s.mfaCache.forget(u.ID)
	return s.mfa.Factors.Remove(ctx, u, id, s.client(r))
}

// securityRemoveFactor removes a second factor
// (POST /account/security/factors/{id}/remove).
func (s *Server) securityRemoveFactor(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) || !s.needFresh(w, r, "/account/security") {
		return
	}
	_, u := current(r)
	if err := s.removeFactor(r, u, r.PathValue("id")); err != nil {
		s.securityFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/account/security?done=removed", http.StatusSeeOther)
}

// securityRegenerateCodes makes a new set of backup codes and shows it once
// (POST /account/security/backup-codes).
func (s *Server) securityRegenerateCodes(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) || !s.needFresh(w, r, "/account/security") {
		return
	}
	_, u := current(r)
	if len(currentMFA(r).methods) == 0 {
		s.securityFail(w, r, auth.Errorf(auth.CodeConflict, "Set up a method first: backup codes come with it."))
		return
	}
	codes, err := s.mfa.Factors.GenerateBackupCodes(r.Context(), u, s.client(r))
	if err != nil {
		s.securityFail(w, r, err)
		return
	}
	s.renderCodes(w, r, "Here is your new set of backup codes. The old codes no longer work.", codes, "/account/security")
}

// securityRevokeDevice revokes one device
// (POST /account/security/devices/{id}/revoke).
func (s *Server) securityRevokeDevice(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	if err := s.revokeDevice(w, r, r.PathValue("id")); err != nil {
		s.securityFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/account/security?done=device_revoked", http.StatusSeeOther)
}

// revokeDevice revokes the user's device id, forgetting the trust cookie when
// it is this browser.
func (s *Server) revokeDevice(w http.ResponseWriter, r *http.Request, id string) error {
	_, u := current(r)
	if s.mfa.Devices == nil {
		return errNoDevices
	}
	if err := s.mfa.Devices.Revoke(r.Context(), u, id, s.client(r)); err != nil {
		return err
	}
	if tok := cookieValue(r, auth.DeviceCookie); tok != "" {
		if devs, err := s.mfa.Devices.List(r.Context(), u); err == nil && !slices.ContainsFunc(devs, func(d *auth.Device) bool { return d.TokenHash == auth.HashToken(tok) }) {
			s.clearCookie(w, TrustCookie)
		}
	}
	return nil
}

var errNoDevices = auth.Errorf(auth.CodeNotFound, "Devices are not tracked on this service.")

// securityRevokeDevices revokes every device
// (POST /account/security/devices/revoke-all).
func (s *Server) securityRevokeDevices(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	_, u := current(r)
	if s.mfa.Devices == nil {
		s.securityFail(w, r, errNoDevices)
		return
	}
	if _, err := s.mfa.Devices.RevokeAll(r.Context(), u, s.client(r)); err != nil {
		s.securityFail(w, r, err)
		return
	}
	s.clearCookie(w, TrustCookie)
	http.Redirect(w, r, "/account/security?done=devices_revoked", http.StatusSeeOther)
}

// adminMFAView is the MFA section of the admin user page.
type adminMFAView struct {
	Factors    []factorView
	BackupLeft int
	Deadline   time.Time
	Required   bool
	Action     auth.MFAAction
	CanReset   bool
	// Recovery is the user's open recovery request, if any.
	Recovery *auth.RecoveryRequest
}

// adminMFA loads the MFA section of target's admin page (nil with MFA off).
func (s *Server) adminMFA(r *http.Request, actor, target *auth.User) (*adminMFAView, error) {
	if s.mfa == nil {
		return nil, nil
	}
	ctx := r.Context()
	fs, err := s.mfa.Factors.List(ctx, target)
	if err != nil {
		return nil, err
	}
	left, err := s.mfa.Factors.BackupCodesLeft(ctx, target)
	if err != nil {
		return nil, err
	}
	settings, err := s.mfa.Settings.MFASettings(ctx, target.ID)
	if err != nil {
		return nil, err
	}
	var methods []string
	for _, f := range fs {
		methods = append(methods, f.Method)
	}
	d := auth.EvaluateMFA(s.mfa.Policy, auth.MFAInput{User: target, Methods: methods, Settings: settings, Now: s.now()})
	v := &adminMFAView{Factors: factorViews(fs), BackupLeft: left, Deadline: d.Deadline, Required: d.Required, Action: d.Action,
		CanReset: actor.Can(auth.PermMFAReset) && actor.ID != target.ID}
	if v.Deadline.IsZero() {
		v.Deadline = settings.Deadline
	}
	if s.mfa.Recovery != nil {
		req, err := s.mfa.Recovery.Latest(ctx, target)
		switch {
		case err == nil && req.Status.Open():
			v.Recovery = req
		case err != nil && auth.ErrorCode(err) != auth.CodeNotFound:
			return nil, err
		}
	}
	return v, nil
}

// maxExtendDays bounds one extension of the setup deadline.
const maxExtendDays = 30

// extendDeadline sets target's MFA setup deadline to days from now, for actor
// (mfa:reset, not their own). Audited as "mfa.deadline.extend".
func (s *Server) extendDeadline(r *http.Request, actor *auth.User, targetID string, until time.Time) error {
	ctx := r.Context()
	c := s.client(r)
	if actor.ID == targetID {
		return auth.Errorf(auth.CodeForbidden, "You cannot extend your own deadline. Ask another staff member with the %s permission.", auth.PermMFAReset)
	}
	now := s.now()
	if !until.After(now) || until.After(now.Add(maxExtendDays*24*time.Hour)) {
		return auth.Errorf(auth.CodeInvalid, "The new deadline must be in the next %d days.", maxExtendDays)
	}
	target, err := s.svc.User(ctx, actor, targetID)
	if err != nil {
		return err
	}
	st, err := s.mfa.Settings.MFASettings(ctx, target.ID)
	if err != nil {
		return fmt.Errorf("extend mfa deadline: %w", err)
	}
	before := st.Deadline
	st.UserID, st.Deadline = target.ID, until.UTC()
	defer s.mfaCache.forget(target.ID)
	if err := s.mfa.Settings.SaveMFASettings(ctx, st); err != nil {
		return fmt.Errorf("extend mfa deadline: %w", err)
	}
	return s.svc.Audit(ctx, &auth.AuditEvent{Action: "mfa.deadline.extend", ActorID: actor.ID, SubjectID: target.ID, IP: c.IP, UserAgent: c.UserAgent,
		Detail: fmt.Sprintf("deadline %s -> %s", stamp(before), stamp(st.Deadline))})
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// resetMFA removes every factor of the target (Factors.Reset: mfa:reset, not
// one's own, with a reason), gives them a fresh setup grace period, forgets
// their remembered devices and ends their sessions.
func (s *Server) resetMFA(r *http.Request, actor *auth.User, targetID, reason string) error {
	ctx := r.Context()
	c := s.client(r)
	target, err := s.svc.User(ctx, actor, targetID)
	if err != nil {
		return err
	}
	defer s.mfaCache.forget(target.ID)
	if err := s.mfa.Factors.Reset(ctx, actor, target.ID, reason, c); err != nil {
		return err
	}
	if err := s.restartGrace(r, target); err != nil {
		return err
	}
	if s.mfa.Devices != nil {
		if _, err := s.mfa.Devices.RevokeAll(ctx, target, c); err != nil {
			return err
		}
	}
	if _, err := s.svc.RevokeSessions(ctx, actor, target.ID, "", c); err != nil && auth.ErrorCode(err) != auth.CodeForbidden {
		return err
	}
	return nil
}

// restartGrace gives u a new setup deadline (now plus the type's grace period)
// after their factors were reset, so the reset does not leave them blocked.
func (s *Server) restartGrace(r *http.Request, u *auth.User) error {
	grace := s.mfa.Policy.Types[u.Type].SetupGrace
	if grace <= 0 {
		return nil
	}
	st, err := s.mfa.Settings.MFASettings(r.Context(), u.ID)
	if err != nil {
		return fmt.Errorf("restart mfa grace period: %w", err)
	}
	st.UserID, st.Deadline = u.ID, s.now().Add(grace).UTC()
	defer s.mfaCache.forget(u.ID)
	if err := s.mfa.Settings.SaveMFASettings(r.Context(), st); err != nil {
		return fmt.Errorf("restart mfa grace period: %w", err)
	}
	return nil
}

// adminMFADeadline extends a user's setup deadline by the form's days
// (POST /admin/users/{id}/mfa/deadline).
func (s *Server) adminMFADeadline(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	_, actor := current(r)
	id := r.PathValue("id")
	days, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("days")))
	if err != nil || days < 1 || days > maxExtendDays {
		s.adminFail(w, r, auth.Errorf(auth.CodeInvalid, "Give the number of days, from 1 to %d.", maxExtendDays))
		return
	}
	if err := s.extendDeadline(r, actor, id, s.now().Add(time.Duration(days)*24*time.Hour)); err != nil {
		s.adminFail(w, r, err)
		return
	}
	http.Redirect(w, r, adminUserURL(id, "mfa_deadline"), http.StatusSeeOther)
}

// adminMFAReset resets a user's MFA (POST /admin/users/{id}/mfa/reset).
func (s *Server) adminMFAReset(w http.ResponseWriter, r *http.Request) {
	if !s.mfaOn(w, r) {
		return
	}
	_, actor := current(r)
	id := r.PathValue("id")
	if err := s.resetMFA(r, actor, id, r.PostFormValue("reason")); err != nil {
		s.adminFail(w, r, err)
		return
	}
	http.Redirect(w, r, adminUserURL(id, "mfa_reset"), http.StatusSeeOther)
}
