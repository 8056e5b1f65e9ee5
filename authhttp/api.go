package authhttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
)

// The API's JSON shapes; openapi.json describes each.

type userJSON struct {
	ID            string        `json:"id"`
	Type          auth.UserType `json:"type"`
	Email         string        `json:"email"`
	EmailVerified bool          `json:"email_verified"`
	Name          string        `json:"name"`
	AvatarURL     string        `json:"avatar_url,omitempty"`
	Roles         []string      `json:"roles"`
	Disabled      bool          `json:"disabled"`
	CreatedAt     time.Time     `json:"created_at"`
	UpdatedAt     time.Time     `json:"updated_at"`
}

func userOut(u *auth.User) userJSON {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return userJSON{u.ID, u.Type, u.Email, u.EmailVerified, u.Name, u.AvatarURL, roles, u.Disabled, u.CreatedAt, u.UpdatedAt}
}

type identityJSON struct {
	Provider      string    `json:"provider"`
	Subject       string    `json:"subject"`
	Email         string    `json:"email"`
	EmailVerified bool      `json:"email_verified"`
	Name          string    `json:"name"`
	Scopes        []string  `json:"scopes"`
	CreatedAt     time.Time `json:"created_at"`
	LastUsedAt    time.Time `json:"last_used_at"`
}

func identitiesOut(ids []*auth.Identity) []identityJSON {
	out := make([]identityJSON, 0, len(ids))
	for _, id := range ids {
		scopes := id.Scopes
		if scopes == nil {
			scopes = []string{}
		}
		out = append(out, identityJSON{id.Provider, id.Subject, id.Email, id.EmailVerified, id.Name, scopes, id.CreatedAt, id.LastUsedAt})
	}
	return out
}

type sessionJSON struct {
	ID         string    `json:"id"`
	Current    bool      `json:"current"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	AuthTime   time.Time `json:"auth_time"`
	// MFAAt is when a second factor was last verified in the session (absent:
	// never), for services that ask for a recent one.
	MFAAt     *time.Time `json:"mfa_at,omitempty"`
	Methods   []string   `json:"methods"`
	IP        string     `json:"ip"`
	UserAgent string     `json:"user_agent"`
}

func sessionOut(x *auth.Session, current string) sessionJSON {
	methods := x.Methods
	if methods == nil {
		methods = []string{}
	}
	return sessionJSON{x.ID, x.ID == current, x.CreatedAt, x.LastSeenAt, x.ExpiresAt, x.AuthTime, optTime(x.MFAAt), methods, x.IP, x.UserAgent}
}

type auditJSON struct {
	ID        int64     `json:"id"`
	Time      time.Time `json:"time"`
	Action    string    `json:"action"`
	Outcome   string    `json:"outcome"`
	ActorID   string    `json:"actor_id,omitempty"`
	SubjectID string    `json:"subject_id,omitempty"`
	Provider  string    `json:"provider,omitempty"`
	IP        string    `json:"ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// apiProviders lists the sign-in methods, for a frontend's buttons
// (GET /api/v1/providers[?type=owner]).
func (s *Server) apiProviders(w http.ResponseWriter, r *http.Request) {
	ps := s.svc.Providers()
	if t := r.URL.Query().Get("type"); t != "" {
		if !auth.UserType(t).Valid() {
			s.fail(w, r, auth.Errorf(auth.CodeInvalid, "type must be staff, owner or provider; got %q.", t))
			return
		}
		ps = s.svc.ProvidersFor(auth.UserType(t))
	}
	type providerJSON struct {
		Name        string `json:"name"`
		DisplayName string `json:"display_name"`
	}
	out := make([]providerJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, providerJSON{p.Name(), p.DisplayName()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": out})
}

// apiMe describes the signed-in user and their session (GET /api/v1/me).
func (s *Server) apiMe(w http.ResponseWriter, r *http.Request) {
	sess, u := current(r)
	perms := u.Permissions()
	if perms == nil {
		perms = []auth.Permission{}
	}
	out := meJSON{Permissions: perms, Session: sessionOut(sess, sess.ID), User: userOut(u)}
	if st := currentMFA(r); st != nil {
		need := mfaNeedOut(st.decision, "")
		out.MFA = &need
	}
	writeJSON(w, http.StatusOK, out)
}

// meJSON is the answer of GET /api/v1/me, which a signed-in frontend asks on
// every page: a struct, because encoding a map costs a sort of its keys and a
// reflection per value. The fields are in the order a map's keys would be.
type meJSON struct {
	MFA         *mfaNeedJSON      `json:"mfa,omitempty"`
	Permissions []auth.Permission `json:"permissions"`
	Session     sessionJSON       `json:"session"`
	User        userJSON          `json:"user"`
}

func (s *Server) apiIdentities(w http.ResponseWriter, r *http.Request) {
	_, u := current(r)
	ids, err := s.svc.Identities(r.Context(), u.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"identities": identitiesOut(ids)})
}

func (s *Server) apiUnlink(w http.ResponseWriter, r *http.Request) {
	_, u := current(r)
	s.noContent(w, r, s.svc.Unlink(r.Context(), u, r.PathValue("provider"), r.PathValue("subject"), s.client(r)))
}

func (s *Server) apiSessions(w http.ResponseWriter, r *http.Request) {
	sess, u := current(r)
	list, err := s.svc.Sessions(r.Context(), u.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]sessionJSON, 0, len(list))
	for _, x := range list {
		out = append(out, sessionOut(x, sess.ID))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (s *Server) apiRevokeSession(w http.ResponseWriter, r *http.Request) {
	sess, u := current(r)
	id := r.PathValue("id")
	if err := s.svc.RevokeSession(r.Context(), u, u.ID, id, s.client(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	if id == sess.ID {
		s.clearCookie(w, SessionCookie)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiRevokeOtherSessions(w http.ResponseWriter, r *http.Request) {
	sess, u := current(r)
	n, err := s.svc.RevokeSessions(r.Context(), u, u.ID, sess.ID, s.client(r))
	reply(s, w, r, n, err, http.StatusOK, revokedBody)
}

func (s *Server) apiSignout(w http.ResponseWriter, r *http.Request) {
	sess, _ := current(r)
	if err := s.svc.SignOut(r.Context(), sess, s.client(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	s.clearCookie(w, SessionCookie)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiRoles(w http.ResponseWriter, r *http.Request) {
	type roleJSON struct {
		Name        string            `json:"name"`
		Description string            `json:"description"`
		Permissions []auth.Permission `json:"permissions"`
		For         []auth.UserType   `json:"for"`
	}
	out := make([]roleJSON, 0, len(auth.Roles))
	for _, role := range auth.Roles {
		out = append(out, roleJSON{role.Name, role.Description, role.Permissions, role.For})
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": out})
}

// maxListLimit bounds ?limit on lists.
const maxListLimit = 500

func listLimit(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxListLimit {
		return 0, auth.Errorf(auth.CodeInvalid, "limit must be a number from 1 to %d; got %q.", maxListLimit, v)
	}
	return n, nil
}

func (s *Server) apiUsers(w http.ResponseWriter, r *http.Request) {
	_, actor := current(r)
	q := r.URL.Query()
	f := auth.UserFilter{Type: auth.UserType(q.Get("type")), Query: strings.TrimSpace(q.Get("q"))}
	if f.Type != "" && !f.Type.Valid() {
		s.fail(w, r, auth.Errorf(auth.CodeInvalid, "type must be staff, owner or provider; got %q.", f.Type))
		return
	}
	var err error
	if f.Limit, err = listLimit(q.Get("limit")); err != nil {
		s.fail(w, r, err)
		return
	}
	users, err := s.svc.Users(r.Context(), actor, f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]userJSON, 0, len(users))
	for _, u := range users {
		out = append(out, userOut(u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

// createUserJSON is the body of POST /api/v1/users.
type createUserJSON struct {
	Type  auth.UserType `json:"type"`
	Email string        `json:"email"`
	Name  string        `json:"name"`
	Roles []string      `json:"roles"`
}

func (s *Server) apiCreateUser(w http.ResponseWriter, r *http.Request) {
	var in createUserJSON
	if !s.decoded(w, r, readJSON, &in) {
		return
	}
	_, actor := current(r)
	u, err := s.svc.CreateUser(r.Context(), actor, auth.NewUser{Type: in.Type, Email: in.Email, Name: in.Name, Roles: in.Roles}, s.client(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/users/"+u.ID)
	writeJSON(w, http.StatusCreated, userOut(u))
}

func (s *Server) apiUser(w http.ResponseWriter, r *http.Request) {
	_, actor := current(r)
	u, err := s.svc.User(r.Context(), actor, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ids, err := s.svc.Identities(r.Context(), u.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": userOut(u), "identities": identitiesOut(ids)})
}

func (s *Server) apiSetRoles(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Roles []string `json:"roles"`
	}
	if !s.decoded(w, r, readJSON, &in) {
		return
	}
	if in.Roles == nil {
		s.fail(w, r, auth.Errorf(auth.CodeInvalid, `Send the roles as {"roles": [...]} (an empty list removes every role).`))
		return
	}
	id := r.PathValue("id")
	if !s.setRoles(w, r, id, in.Roles, s.fail) {
		return
	}
	_, actor := current(r)
	u, err := s.svc.User(r.Context(), actor, id)
	reply(s, w, r, u, err, http.StatusOK, userOut)
}

func (s *Server) apiSetDisabled(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Disabled *bool `json:"disabled"`
	}
	if !s.decoded(w, r, readJSON, &in) {
		return
	}
	if in.Disabled == nil {
		s.fail(w, r, auth.Errorf(auth.CodeInvalid, `Send {"disabled": true} or {"disabled": false}.`))
		return
	}
	_, actor := current(r)
	u, err := s.svc.SetDisabled(r.Context(), actor, r.PathValue("id"), *in.Disabled, s.client(r))
	reply(s, w, r, u, err, http.StatusOK, userOut)
}

func (s *Server) apiRevokeUserSessions(w http.ResponseWriter, r *http.Request) {
	sess, actor := current(r)
	id := r.PathValue("id")
	keep := ""
	if id == actor.ID {
		keep = sess.ID
	}
	n, err := s.svc.RevokeSessions(r.Context(), actor, id, keep, s.client(r))
	reply(s, w, r, n, err, http.StatusOK, revokedBody)
}

func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request) {
	_, actor := current(r)
	q := r.URL.Query()
	f := auth.AuditFilter{UserID: q.Get("user"), Action: q.Get("action")}
	if f.UserID != "" && !isUserID(f.UserID) {
		s.fail(w, r, errBadUserFilter)
		return
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			s.fail(w, r, auth.Errorf(auth.CodeInvalid, "since must be an RFC 3339 time such as 2026-01-02T15:04:05Z; got %q.", v))
			return
		}
		f.Since = t
	}
	var err error
	if f.Limit, err = listLimit(q.Get("limit")); err != nil {
		s.fail(w, r, err)
		return
	}
	events, err := s.svc.AuditEvents(r.Context(), actor, f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]auditJSON, 0, len(events))
	for _, e := range events {
		out = append(out, auditJSON{e.ID, e.Time, e.Action, e.Outcome, e.ActorID, e.SubjectID, e.Provider, e.IP, e.UserAgent, e.Detail})
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
}

// maxJSONBytes bounds a request body.
const maxJSONBytes = 64 << 10

// readJSON decodes the request's JSON body into v, refusing other content types,
// unknown fields, trailing data and bodies over maxJSONBytes.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return auth.Errorf(auth.CodeInvalid, "Send the body as JSON with Content-Type: application/json.")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return auth.Errorf(auth.CodeInvalid, "The body is larger than %d bytes.", maxJSONBytes)
		}
		return auth.Errorf(auth.CodeInvalid, "The body is not valid JSON for this request: %s.", jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return auth.Errorf(auth.CodeInvalid, "The body has data after its JSON value.")
	}
	return nil
}

// jsonProblem says what is wrong with a body without echoing it.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	case errors.Is(err, io.EOF):
		return "it is empty"
	}
	return "check the field names against the API's description at /api/openapi.json"
}
