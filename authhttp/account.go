package authhttp

import (
	"context"
	"net/http"
	"slices"

	"github.com/hestami/hestami/auth"
)

// accountPage is the data of templates/account.html.
type accountPage struct {
	User        *auth.User
	Permissions []auth.Permission
	Identities  []identityView
	Linkable    []providerView
	Sessions    []sessionView
}

type identityView struct {
	*auth.Identity
	DisplayName string
}

type sessionView struct {
	*auth.Session
	Current bool
}

// The notices the account page shows for ?done=.
var accountNotices = map[string]string{
	"linked":           "The account is linked: you can sign in with it now.",
	"unlinked":         "The account is unlinked: it no longer signs you in.",
	"session_revoked":  "The session is ended.",
	"sessions_revoked": "Every other session is ended.",
}

func (s *Server) displayName(provider string) string {
	for _, p := range s.svc.Providers() {
		if p.Name() == provider {
			return p.DisplayName()
		}
	}
	return provider
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request) {
	p := s.newPage(r, "Your account", nil)
	p.Notice = accountNotices[r.URL.Query().Get("done")]
	s.renderAccount(w, r, http.StatusOK, p)
}

// renderAccount shows the account page with status (an action's error, if p.Error).
func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, status int, p *page) {
	sess, u := current(r)
	ids, sessions, err := s.identitiesAndSessions(r.Context(), u.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := &accountPage{User: u, Permissions: u.Permissions(), Identities: ids, Linkable: providerViews(s.svc.ProvidersFor(u.Type))}
	for _, x := range sessions {
		d.Sessions = append(d.Sessions, sessionView{x, x.ID == sess.ID})
	}
	// This device first.
	slices.SortStableFunc(d.Sessions, func(a, b sessionView) int {
		switch {
		case a.Current == b.Current:
			return 0
		case a.Current:
			return -1
		}
		return 1
	})
	p.Data = d
	s.render(w, r, status, "account", p)
}

// identitiesAndSessions loads a user's linked accounts, as the pages show
// them, and sessions.
func (s *Server) identitiesAndSessions(ctx context.Context, userID string) ([]identityView, []*auth.Session, error) {
	ids, err := s.svc.Identities(ctx, userID)
	if err != nil {
		return nil, nil, err
	}
	sessions, err := s.svc.Sessions(ctx, userID)
	if err != nil {
		return nil, nil, err
	}
	var views []identityView
	for _, id := range ids {
		views = append(views, identityView{id, s.displayName(id.Provider)})
	}
	return views, sessions, nil
}

// accountFail shows an action's error on the account page itself.
func (s *Server) accountFail(w http.ResponseWriter, r *http.Request, err error) {
	s.failOnPage(w, r, err, "Your account", s.renderAccount, http.StatusUnauthorized)
}

// accountUnlink removes a linked account (POST /account/identities/unlink).
func (s *Server) accountUnlink(w http.ResponseWriter, r *http.Request) {
	_, u := current(r)
	if err := s.svc.Unlink(r.Context(), u, r.PostFormValue("provider"), r.PostFormValue("subject"), s.client(r)); err != nil {
		s.accountFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/account?done=unlinked", http.StatusSeeOther)
}

// accountLink starts linking another account (POST /account/link/{provider}).
func (s *Server) accountLink(w http.ResponseWriter, r *http.Request) {
	sess, _ := current(r)
	s.beginLogin(w, r, auth.BeginRequest{Provider: r.PathValue("provider"), Intent: auth.IntentLink, ReturnTo: "/account", Session: sess})
}

// accountRevokeSession ends one of the user's sessions
// (POST /account/sessions/{id}/revoke).
func (s *Server) accountRevokeSession(w http.ResponseWriter, r *http.Request) {
	sess, u := current(r)
	id := r.PathValue("id")
	if err := s.svc.RevokeSession(r.Context(), u, u.ID, id, s.client(r)); err != nil {
		s.accountFail(w, r, err)
		return
	}
	if id == sess.ID {
		s.clearCookie(w, SessionCookie)
		http.Redirect(w, r, "/signin?done=signed_out", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/account?done=session_revoked", http.StatusSeeOther)
}

// accountRevokeOthers ends every session but this one
// (POST /account/sessions/revoke-others).
func (s *Server) accountRevokeOthers(w http.ResponseWriter, r *http.Request) {
	sess, u := current(r)
	if _, err := s.svc.RevokeSessions(r.Context(), u, u.ID, sess.ID, s.client(r)); err != nil {
		s.accountFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/account?done=sessions_revoked", http.StatusSeeOther)
}
