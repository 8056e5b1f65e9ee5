package authhttp

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/hestami/hestami/auth"
)

// adminUsersPage is the data of templates/admin_users.html.
type adminUsersPage struct {
	Query string
	Type  auth.UserType
	Types []auth.UserType
	Users []*auth.User
	Limit int
}

const adminListLimit = 100

func (s *Server) adminUsers(w http.ResponseWriter, r *http.Request) {
	_, actor := current(r)
	q := r.URL.Query()
	d := &adminUsersPage{Query: strings.TrimSpace(q.Get("q")), Types: auth.UserTypes, Limit: adminListLimit}
	if t := auth.UserType(q.Get("type")); t.Valid() {
		d.Type = t
	}
	users, err := s.svc.Users(r.Context(), actor, auth.UserFilter{Type: d.Type, Query: d.Query, Limit: adminListLimit})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Users = users
	s.render(w, r, http.StatusOK, "admin_users", s.newPage(r, "Users", d))
}

// adminUserPage is the data of templates/admin_user.html.
type adminUserPage struct {
	Target      *auth.User
	Self        bool
	Roles       []roleChoice
	Identities  []identityView
	Sessions    []*auth.Session
	CanRoles    bool
	CanManage   bool
	CanSessions bool
	// MFA is the user's two-step verification (nil with MFA off).
	MFA *adminMFAView
}

type roleChoice struct {
	auth.Role
	Checked bool
}

var adminNotices = map[string]string{
	"roles":        "Roles saved.",
	"disabled":     "The account is disabled and its sessions are ended.",
	"enabled":      "The account is enabled.",
	"sessions":     "The account's sessions are ended.",
	"mfa_deadline": "The two-step verification deadline is extended.",
	"mfa_reset":    "Two-step verification is reset: the account's factors, backup codes and remembered devices are gone, its sessions ended, and it sets up again at its next sign-in.",
}

func (s *Server) adminUser(w http.ResponseWriter, r *http.Request) {
	p := s.newPage(r, "User", nil)
	p.Notice = adminNotices[r.URL.Query().Get("done")]
	s.renderAdminUser(w, r, http.StatusOK, p)
}

func (s *Server) renderAdminUser(w http.ResponseWriter, r *http.Request, status int, p *page) {
	_, actor := current(r)
	u, err := s.svc.User(r.Context(), actor, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ids, sessions, err := s.identitiesAndSessions(r.Context(), u.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := &adminUserPage{
		Target: u, Self: u.ID == actor.ID, Identities: ids, Sessions: sessions,
		CanRoles: actor.Can(auth.PermRolesManage), CanManage: actor.Can(auth.PermUsersManage), CanSessions: actor.Can(auth.PermSessionsMgmt),
	}
	if d.MFA, err = s.adminMFA(r, actor, u); err != nil {
		s.fail(w, r, err)
		return
	}
	for _, role := range auth.Roles {
		if slices.Contains(role.For, u.Type) {
			d.Roles = append(d.Roles, roleChoice{role, slices.Contains(u.Roles, role.Name)})
		}
	}
	p.Title = u.Email
	if p.Title == "" {
		p.Title = "User " + u.ID
	}
	p.Data = d
	s.render(w, r, status, "admin_user", p)
}

// adminFail shows an action's error on the user's page.
func (s *Server) adminFail(w http.ResponseWriter, r *http.Request, err error) {
	s.failOnPage(w, r, err, "User", s.renderAdminUser, http.StatusUnauthorized, http.StatusNotFound)
}

func adminUserURL(id, done string) string {
	return "/admin/users/" + url.PathEscape(id) + "?done=" + done
}

// adminSetRoles replaces a user's roles (POST /admin/users/{id}/roles).
func (s *Server) adminSetRoles(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.setRoles(w, r, id, r.PostForm["roles"], s.adminFail) {
		return
	}
	http.Redirect(w, r, adminUserURL(id, "roles"), http.StatusSeeOther)
}

// setRoles changes the target's roles; when the actor changed their own, their
// session is replaced (a privilege change gets a new session id) and the cookie
// reset. It reports whether it succeeded, having answered the request if not.
func (s *Server) setRoles(w http.ResponseWriter, r *http.Request, targetID string, roles []string, fail func(http.ResponseWriter, *http.Request, error)) bool {
	sess, actor := current(r)
	u, err := s.svc.SetRoles(r.Context(), actor, targetID, roles, s.client(r))
	if err != nil {
		fail(w, r, err)
		return false
	}
	if u.ID == actor.ID {
		token, next, err := s.svc.RotateSession(r.Context(), sess, u, s.client(r))
		if err != nil {
			s.fail(w, r, err)
			return false
		}
		s.setSession(w, token, next)
	}
	return true
}

// adminSetDisabled disables or enables an account (POST /admin/users/{id}/disabled).
func (s *Server) adminSetDisabled(w http.ResponseWriter, r *http.Request) {
	_, actor := current(r)
	id := r.PathValue("id")
	disabled := r.PostFormValue("disabled") == "true"
	if _, err := s.svc.SetDisabled(r.Context(), actor, id, disabled, s.client(r)); err != nil {
		s.adminFail(w, r, err)
		return
	}
	done := "enabled"
	if disabled {
		done = "disabled"
	}
	http.Redirect(w, r, adminUserURL(id, done), http.StatusSeeOther)
}

// adminRevokeSessions ends a user's sessions (POST /admin/users/{id}/sessions/revoke);
// an administrator ending their own keeps the one they are using.
func (s *Server) adminRevokeSessions(w http.ResponseWriter, r *http.Request) {
	sess, actor := current(r)
	id := r.PathValue("id")
	keep := ""
	if id == actor.ID {
		keep = sess.ID
	}
	if _, err := s.svc.RevokeSessions(r.Context(), actor, id, keep, s.client(r)); err != nil {
		s.adminFail(w, r, err)
		return
	}
	http.Redirect(w, r, adminUserURL(id, "sessions"), http.StatusSeeOther)
}

// adminAuditPage is the data of templates/admin_audit.html.
type adminAuditPage struct {
	UserID string
	Action string
	Events []*auth.AuditEvent
	Limit  int
}

const auditPageLimit = 200

func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request) {
	_, actor := current(r)
	q := r.URL.Query()
	d := &adminAuditPage{UserID: strings.TrimSpace(q.Get("user")), Action: strings.TrimSpace(q.Get("action")), Limit: auditPageLimit}
	if d.UserID != "" && !isUserID(d.UserID) {
		s.fail(w, r, errBadUserFilter)
		return
	}
	events, err := s.svc.AuditEvents(r.Context(), actor, auth.AuditFilter{UserID: d.UserID, Action: d.Action, Limit: auditPageLimit})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Events = events
	s.render(w, r, http.StatusOK, "admin_audit", s.newPage(r, "Audit log", d))
}
