package authhttp

import (
	"net/http"

	"github.com/hestami/hestami/auth"
)

// The common ends of the JSON API handlers. A handler keeps its own guards
// (mfaOn, recoveryOn, needFresh...) and service calls in view; these only
// take the body in and the outcome out.

// bodyReader decodes a request body: readJSON, or readBody where the body may
// be empty.
type bodyReader func(w http.ResponseWriter, r *http.Request, v any) error

// decoded reads the request's body into v with read; on a bad body it answers
// through s.fail and returns false.
func (s *Server) decoded(w http.ResponseWriter, r *http.Request, read bodyReader, v any) bool {
	if err := read(w, r, v); err != nil {
		s.fail(w, r, err)
		return false
	}
	return true
}

// reply answers a service call's outcome: err through s.fail, or else
// body(v) as JSON with status. body runs only when err is nil, so it may
// use v.
func reply[T, J any](s *Server, w http.ResponseWriter, r *http.Request, v T, err error, status int, body func(T) J) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, status, body(v))
}

// noContent answers a call that returns nothing: err through s.fail, or else
// 204 No Content.
func (s *Server) noContent(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// The bodies several handlers answer with.

func revokedBody(n int) map[string]int { return map[string]int{"revoked": n} }

func sentBody(c *auth.CodeSent) map[string]any { return map[string]any{"sent": sentOut(c)} }

func recoveryBody(req *auth.RecoveryRequest) map[string]any {
	return map[string]any{"request": recoveryOut(req)}
}

func (s *Server) assuranceBody(sess *auth.Session) map[string]any {
	return map[string]any{"assurance": s.assuranceOut(sess)}
}
