package authhttp

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
)

// AccessToken is what a verified bearer access token says, as the API needs it.
type AccessToken struct {
	UserID   string
	ClientID string
	// SessionID is the auth.Session the token was issued from: the session's
	// second factors, revocation and timeouts apply to the token.
	SessionID string
	Scopes    []string
	Expiry    time.Time
}

// AccessTokens verifies the access tokens of the service's own OpenID Connect
// provider (cmd/hestami adapts oidcprovider.Provider.VerifyAccessToken).
type AccessTokens interface {
	// VerifyAccessToken checks token's signature, issuer and expiry, and that
	// neither it nor its grant was revoked. An invalid token is an *auth.Error
	// with CodeUnauthorized; any other error is the verifier's failure.
	VerifyAccessToken(ctx context.Context, token string) (*AccessToken, error)
}

// AccessTokensFunc is a function that is an AccessTokens.
type AccessTokensFunc func(ctx context.Context, token string) (*AccessToken, error)

// VerifyAccessToken calls f.
func (f AccessTokensFunc) VerifyAccessToken(ctx context.Context, token string) (*AccessToken, error) {
	return f(ctx, token)
}

var (
	errBearerOff = auth.Errorf(auth.CodeUnauthorized, "This service does not accept access tokens. Sign in on its pages instead.")
	errBadBearer = auth.Errorf(auth.CodeUnauthorized, "The access token is not valid (expired, revoked or malformed), or the sign-in it came from has ended. Sign in to the application again.")
	// errBearerMFA refuses the second-factor routes to access tokens.
	errBearerMFA = auth.Errorf(auth.CodeForbidden, "Second factors are set up, verified and recovered in the browser, on this service's pages, not with an access token. Verify there, then sign in to the application again.")
)

// bearerToken returns the token of an Authorization: Bearer header; ok is
// false when the request has no such header (another scheme is not a bearer).
func bearerToken(r *http.Request) (token string, ok bool) {
	h := r.Header.Get("Authorization")
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(rest), true
}

// bearerRefused reports whether an access token may not reach the route: the
// second-factor routes that change something (set up, remove or verify a
// factor, new backup codes, recovery). Verifying a factor rotates the session,
// which would end the token's grant; and a leaked token must not be able to
// add a factor to the account, or take it over through recovery.
func bearerRefused(pattern string) bool {
	method, path, _ := strings.Cut(pattern, " ")
	if method == http.MethodGet {
		return false
	}
	return strings.HasPrefix(path, "/api/v1/me/factors") || path == "/api/v1/me/backup-codes" ||
		strings.HasPrefix(path, "/api/v1/mfa/") || strings.HasPrefix(path, "/api/v1/me/recovery")
}

// bearerSession authenticates an API request by its access token: the token
// must verify, and the session it was issued from must still sign its user
// in. It answers the request and returns false if not.
//
// The session's recorded address is left as it is: the caller is an
// application acting for the person (the backup daemon), not their browser.
func (s *Server) bearerSession(w http.ResponseWriter, r *http.Request, pattern, token string) (*signedInUser, bool) {
	if s.tokens == nil {
		s.bearerFail(w, r, errBearerOff)
		return nil, false
	}
	if token == "" {
		s.bearerFail(w, r, errBadBearer)
		return nil, false
	}
	at, err := s.tokens.VerifyAccessToken(r.Context(), token)
	if err != nil {
		s.bearerFail(w, r, err)
		return nil, false
	}
	sess, u, err := s.svc.AuthenticateSessionID(r.Context(), at.SessionID, auth.Client{UserAgent: r.UserAgent()})
	if err == nil && u.ID != at.UserID {
		err = errBadBearer
	}
	if err != nil {
		s.bearerFail(w, r, err)
		return nil, false
	}
	if bearerRefused(pattern) {
		s.fail(w, r, errBearerMFA)
		return nil, false
	}
	return &signedInUser{sess: sess, user: u, token: at}, true
}

// viaBearer reports whether the request was signed in by an access token.
func viaBearer(r *http.Request) bool {
	v, _ := r.Context().Value(ctxKey{}).(*signedInUser)
	return v != nil && v.token != nil
}

// bearerFail answers a request whose access token did not sign anyone in
// (RFC 6750: 401 with WWW-Authenticate naming the error).
func (s *Server) bearerFail(w http.ResponseWriter, r *http.Request, err error) {
	if auth.ErrorCode(err) == auth.CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hestami", error="invalid_token"`)
		if err != errBearerOff && err != errBadBearer {
			err = errBadBearer.WithCause(err)
		}
	}
	s.fail(w, r, err)
}
