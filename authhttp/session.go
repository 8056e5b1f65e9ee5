package authhttp

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
)

// The cookies. All are Secure, HttpOnly and SameSite=Lax, with no Domain (they
// belong to the auth service's host alone).
const (
	// SessionCookie holds the session token.
	SessionCookie = "hestami_session"
	// LoginCookie binds a sign-in in progress to the browser that started it.
	LoginCookie = "hestami_login"
	// CSRFCookie is the double-submit value of the forms shown before sign-in.
	CSRFCookie = "hestami_csrf"
)

func (s *Server) setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if !expires.IsZero() {
		c.Expires = expires.UTC()
		c.MaxAge = max(1, int(expires.Sub(s.now()).Seconds()))
	}
	http.SetCookie(w, c)
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// setSession gives the browser the session token.
func (s *Server) setSession(w http.ResponseWriter, token string, sess *auth.Session) {
	s.setCookie(w, SessionCookie, token, sess.ExpiresAt)
}

// signedInUser is the session and user of a request that passed requireSession.
type signedInUser struct {
	sess  *auth.Session
	user  *auth.User
	mfa   *mfaState    // set by requireMFA when MFA is on
	token *AccessToken // the bearer access token of an API request; nil: the cookie
}

type ctxKey struct{}

// current returns the signed-in session and user (set by requireSession).
func current(r *http.Request) (*auth.Session, *auth.User) {
	v, _ := r.Context().Value(ctxKey{}).(*signedInUser)
	if v == nil {
		return nil, nil
	}
	return v.sess, v.user
}

// optionalSession returns the request's session if its cookie signs someone in.
func (s *Server) optionalSession(r *http.Request) (*auth.Session, *auth.User, bool) {
	if sess, u := current(r); sess != nil {
		return sess, u, true
	}
	token := cookieValue(r, SessionCookie)
	if token == "" {
		return nil, nil, false
	}
	sess, u, err := s.svc.Authenticate(r.Context(), token, s.client(r))
	if err != nil {
		if auth.ErrorCode(err) != auth.CodeUnauthorized {
			s.log.Error("authenticate session", "path", r.URL.Path, "err", err)
		}
		return nil, nil, false
	}
	return sess, u, true
}

// requireSession lets signed-in requests through to the route pattern. Others
// get 401 (the API, and forms), or are sent to the sign-in page and back
// (pages). An API request with an Authorization: Bearer header is signed in by
// that access token alone, whatever cookie it carries.
func (s *Server) requireSession(pattern string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if bearer, ok := bearerToken(r); ok && isAPI(r.URL.Path) {
			v, ok := s.bearerSession(w, r, pattern, bearer)
			if ok {
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, v)))
			}
			return
		}
		token := cookieValue(r, SessionCookie)
		var err error = errNotSignedIn
		var sess *auth.Session
		var u *auth.User
		if token != "" {
			sess, u, err = s.svc.Authenticate(r.Context(), token, s.client(r))
		}
		if err != nil {
			if auth.ErrorCode(err) != auth.CodeUnauthorized {
				s.fail(w, r, err)
				return
			}
			if token != "" {
				s.clearCookie(w, SessionCookie)
			}
			if isAPI(r.URL.Path) && s.tokens != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="hestami"`)
			}
			if r.Method == http.MethodGet && !isAPI(r.URL.Path) {
				q := url.Values{"return_to": {r.URL.RequestURI()}}
				if token != "" {
					q.Set("error", "session_ended")
				}
				http.Redirect(w, r, "/signin?"+q.Encode(), http.StatusSeeOther)
				return
			}
			s.fail(w, r, err)
			return
		}
		ctx := context.WithValue(r.Context(), ctxKey{}, &signedInUser{sess: sess, user: u})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

var errNotSignedIn = auth.Errorf(auth.CodeUnauthorized, "You are not signed in. Sign in, then try again.")

// requirePermission lets through only signed-in users holding p (the service
// checks again; this keeps a route from ever running for the wrong person).
func (s *Server) requirePermission(p auth.Permission) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, u := current(r)
			if u == nil {
				s.fail(w, r, errNotSignedIn)
				return
			}
			if !u.Can(p) {
				s.fail(w, r, auth.Errorf(auth.CodeForbidden, "This needs the %s permission, which your account does not have. Ask an administrator if you need it.", p))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// client describes the request's sender for sessions and the audit log.
func (s *Server) client(r *http.Request) auth.Client {
	return auth.Client{IP: s.clientIP(r), UserAgent: r.UserAgent()}
}

// clientIP is the connection's address, or, when the connection comes from a
// trusted proxy, the nearest address in X-Forwarded-For that is not a trusted
// proxy (read from the right: the left end is whatever the client claimed).
func (s *Server) clientIP(r *http.Request) string {
	return clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.proxies)
}

func clientIP(remoteAddr string, xff []string, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	var hops []string
	for _, v := range xff {
		for h := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	for i := len(hops) - 1; i >= 0 && isTrusted(addr, trusted); i-- {
		next, err := netip.ParseAddr(hops[i])
		if err != nil {
			break // garbage: the last trusted hop is the best we know
		}
		addr = next.Unmap()
	}
	return addr.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
