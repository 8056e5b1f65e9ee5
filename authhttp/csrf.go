package authhttp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/hestami/hestami/auth"
)

// Every form carries a token named csrf, on top of http.CrossOriginProtection: a
// page from another site can neither read it nor compute it.
//
// Signed in, the token is HMAC-SHA256(key, session id): it changes with the
// session, and needs no storage. Before sign-in there is no session, so the token
// is HMAC-SHA256(key, the hestami_csrf cookie's random value): a signed double
// submit, which a cookie planted from a sibling domain cannot satisfy without the
// key.

const csrfField = "csrf"

// maxFormBytes bounds a form's body; ours are a few hundred bytes.
const maxFormBytes = 64 << 10

func (s *Server) mac(purpose, value string) []byte {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return m.Sum(nil)
}

// sessionToken is the form token of pages shown to a session.
func (s *Server) sessionToken(sess *auth.Session) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("session", sess.ID))
}

// preSessionToken is the form token of the sign-in page, for the browser holding
// the hestami_csrf cookie value.
func (s *Server) preSessionToken(cookie string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("signin", cookie))
}

func (s *Server) validToken(given string, want []byte) bool {
	b, err := base64.RawURLEncoding.DecodeString(given)
	return err == nil && hmac.Equal(b, want)
}

var errBadFormToken = auth.Errorf(auth.CodeForbidden, "This form has expired or did not come from this site, so nothing was done. Reload the page and try again.")

// requireFormToken refuses a signed-in form POST without its session's token.
func (s *Server) requireFormToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, _ := current(r)
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if sess == nil || !s.validToken(r.PostFormValue(csrfField), s.mac("session", sess.ID)) {
			s.log.Warn("form without a valid token refused", "path", r.URL.Path, "ip", s.clientIP(r))
			s.fail(w, r, errBadFormToken)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// csrfCookie returns the browser's hestami_csrf value, setting a new one if it
// has none.
func (s *Server) csrfCookie(w http.ResponseWriter, r *http.Request) string {
	if v := cookieValue(r, CSRFCookie); len(v) >= 32 {
		return v
	}
	v := auth.NewToken()
	s.setCookie(w, CSRFCookie, v, s.now().Add(24*time.Hour))
	return v
}

// checkPreSessionToken reports whether a sign-in form POST carries the token
// matching the browser's hestami_csrf cookie.
func (s *Server) checkPreSessionToken(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	cookie := cookieValue(r, CSRFCookie)
	if len(cookie) < 32 || !s.validToken(r.PostFormValue(csrfField), s.mac("signin", cookie)) {
		s.log.Warn("sign-in form without a valid token refused", "path", r.URL.Path, "ip", s.clientIP(r), "has_cookie", cookie != "")
		return false
	}
	return true
}
