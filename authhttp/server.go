// Package authhttp is the auth service over HTTP: the server-rendered sign-in,
// account and administration pages, the JSON API under /api/v1 (described by the
// OpenAPI document at /api/openapi.json), the providers' callbacks, and health and
// metrics endpoints. It turns requests into calls on auth.Service and its errors
// into status codes; the rules themselves live in package auth.
//
// With Options.MFA, sign-in also goes through the MFA policy (auth.EvaluateMFA):
// a session that still owes a second factor, or must set one up, reaches only
// the challenge, the setup wizard, recovery and sign-out; pages are sent there
// and the API answers 403 mfa_required. See MFAOptions and docs/mfa.md.
//
// Browsers are signed in by the session cookie hestami_session. Every state-changing
// request passes Go's http.CrossOriginProtection, and every form also carries a
// token: an HMAC of the session id once signed in, a signed double-submit cookie
// (hestami_csrf) before.
package authhttp

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
)

// OIDCLogin finishes the OpenID Connect provider's authorization requests once the
// browser is signed in (package oidcprovider's Provider is one).
type OIDCLogin interface {
	// Complete binds the authorization request requestID to the signed-in user and
	// session and returns where to send the browser next. An unknown or expired
	// request is an *auth.Error with CodeNotFound.
	Complete(ctx context.Context, requestID string, sess *auth.Session, u *auth.User) (string, error)
}

// Metrics records what the server does (package prometheus's AuthMetrics).
type Metrics interface {
	// ObserveRequest records one answered request: its route pattern ("GET
	// /account", "unmatched"), status code and duration.
	ObserveRequest(route string, status int, d time.Duration)
	// ObserveSignIn records one provider callback: the provider's name (one of
	// the configured providers, or "unknown") and its outcome.
	ObserveSignIn(provider, outcome string)
}

// Options configure a Server.
type Options struct {
	// Service does the work; required.
	Service *auth.Service
	// PublicURL is where browsers reach the service: https://auth.hestami.example,
	// or http://localhost:PORT in development and tests (browsers treat localhost
	// as secure, so the Secure cookies still work). Required.
	PublicURL string
	// Logger receives one line per failure; nil discards.
	Logger *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// CSRFKey is the HMAC key of the forms' tokens: 32 random bytes, the same on
	// every replica. Required.
	CSRFKey []byte
	// Ready reports whether the service can answer (a database ping), for
	// /readyz; nil: always ready.
	Ready func(ctx context.Context) error
	// OIDC finishes the OpenID Connect provider's sign-ins at /oidc-login, and
	// OIDCHandler is the provider itself, mounted at /oidc/. Both optional.
	OIDC        OIDCLogin
	OIDCHandler http.Handler
	// DevIdP is the development identity provider, mounted at /dev/idp/ (only
	// under `hestami dev`).
	DevIdP http.Handler
	// Metrics records requests and sign-ins (nil: not recorded), and
	// MetricsHandler serves them at /metrics (nil: no /metrics).
	Metrics        Metrics
	MetricsHandler http.Handler
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is believed;
	// the client's address is otherwise the connection's.
	TrustedProxies []netip.Prefix
	// DevMode shows a banner saying this is a development instance.
	DevMode bool
	// MFA turns on multi-factor authentication: the policy, the challenge and
	// setup pages, devices, recovery and their API (see MFAOptions). Nil: off.
	MFA *MFAOptions
	// AccessTokens, if set, lets the API (/api/v1/...) be called with
	// Authorization: Bearer and an access token of the service's own OpenID
	// Connect provider, for other services acting for the person (the backup
	// daemon). The token stands for the session it was issued from. Nil: the
	// API takes only the session cookie.
	AccessTokens AccessTokens
}

// Server is the auth service's HTTP interface.
type Server struct {
	svc     *auth.Service
	public  *url.URL
	log     *slog.Logger
	now     func() time.Time
	csrfKey []byte
	ready   func(ctx context.Context) error
	oidc    OIDCLogin
	metrics Metrics
	proxies []netip.Prefix
	dev     bool
	origins []string // auth.Config.ReturnOrigins

	tokens   AccessTokens // nil: no bearer tokens
	mfa      *MFAOptions  // nil: MFA off
	mfaCache *mfaCache
	sealer   *auth.Sealer

	mux     *http.ServeMux
	routes  []route
	pages   map[string]*template.Template
	handler http.Handler
}

// New returns a Server, or an error naming what is wrong with o.
func New(o Options) (*Server, error) {
	var problems []string
	if o.Service == nil {
		problems = append(problems, "Service is required")
	}
	pub, err := url.Parse(o.PublicURL)
	switch {
	case o.PublicURL == "":
		problems = append(problems, "PublicURL is required (the address browsers use, such as https://auth.hestami.example)")
	case err != nil || pub.Host == "" || pub.User != nil || pub.RawQuery != "" || pub.Fragment != "":
		problems = append(problems, fmt.Sprintf("PublicURL %q is not an absolute http(s) URL", o.PublicURL))
	case pub.Scheme != "https" && !(pub.Scheme == "http" && isLoopbackHost(pub.Hostname())):
		problems = append(problems, fmt.Sprintf("PublicURL %q must use https (http only for localhost): the session cookie is Secure", o.PublicURL))
	case strings.Trim(pub.Path, "/") != "":
		problems = append(problems, fmt.Sprintf("PublicURL %q has a path; serve the auth service at the root of its host", o.PublicURL))
	}
	if len(o.CSRFKey) < 32 {
		problems = append(problems, fmt.Sprintf("CSRFKey must be at least 32 random bytes, got %d", len(o.CSRFKey)))
	}
	if o.MFA != nil {
		problems = append(problems, o.MFA.validate()...)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("auth http server: %s", strings.Join(problems, "; "))
	}
	s := &Server{
		svc: o.Service, public: pub, log: o.Logger, now: o.Now, csrfKey: o.CSRFKey, ready: o.Ready,
		oidc: o.OIDC, metrics: o.Metrics, proxies: o.TrustedProxies, dev: o.DevMode,
		origins: o.Service.Config().ReturnOrigins, mfa: o.MFA, tokens: o.AccessTokens,
	}
	s.sealer = s.pageSealer()
	if s.mfa != nil {
		ttl := s.mfa.CacheTTL
		if ttl == 0 {
			ttl = DefaultMFACacheTTL
		}
		s.mfaCache = &mfaCache{ttl: ttl, users: map[string]mfaFacts{}}
		if s.mfa.PhoneRegion == "" {
			s.mfa.PhoneRegion = "US"
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.metrics == nil {
		s.metrics = noMetrics{}
	}
	if s.pages, err = parsePages(); err != nil {
		return nil, fmt.Errorf("auth http server: %w", err)
	}

	s.mux = http.NewServeMux()
	s.routes = s.routeTable()
	for _, rt := range s.routes {
		s.mux.Handle(rt.pattern, s.wrap(rt))
	}
	s.mux.HandleFunc("/", s.notFound)
	s.mux.Handle("GET /assets/", assetHandler())
	if o.MFA != nil && len(o.MFA.PasskeyScript) > 0 {
		s.mux.Handle("GET /assets/webauthn.js", scriptHandler(o.MFA.PasskeyScript))
	}
	if o.MetricsHandler != nil {
		s.mux.Handle("GET /metrics", o.MetricsHandler)
	}
	if o.OIDCHandler != nil {
		s.mux.Handle("/oidc/", o.OIDCHandler)
	}
	if o.DevIdP != nil {
		s.mux.Handle("/dev/idp/", o.DevIdP)
	}

	cop := http.NewCrossOriginProtection()
	for _, origin := range append([]string{pub.Scheme + "://" + pub.Host}, s.origins...) {
		if err := cop.AddTrustedOrigin(strings.TrimSuffix(origin, "/")); err != nil {
			return nil, fmt.Errorf("auth http server: return origin: %w", err)
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(s.crossOrigin))
	s.handler = s.observe(securityHeaders(cop.Handler(s.mux)))
	return s, nil
}

// Handler returns the server's handler: every page, the API and the mounts.
func (s *Server) Handler() http.Handler { return s.handler }

// CallbackURL is where provider sends browsers back to after sign-in, for the
// provider's registration (its redirect URI): PUBLIC/auth/PROVIDER/callback.
func CallbackURL(publicURL, provider string) string {
	return strings.TrimSuffix(publicURL, "/") + "/auth/" + url.PathEscape(provider) + "/callback"
}

// access says who may use a route.
type access int

const (
	public   access = iota // anyone
	signedIn               // a session; POSTs also carry the session's form token
)

// route is one registered endpoint. Every endpoint is in the one table
// (routeTable) so that the OpenAPI document can be checked against it.
type route struct {
	pattern string // "GET /account", "POST /api/v1/users"
	access  access
	perm    auth.Permission // required permission; empty: none
	h       http.HandlerFunc
}

func (s *Server) routeTable() []route {
	return append([]route{
		{"GET /{$}", public, "", s.root},
		{"GET /healthz", public, "", s.healthz},
		{"GET /readyz", public, "", s.readyz},
		{"GET /api/openapi.json", public, "", serveOpenAPI},

		{"GET /signin", public, "", s.signinPage},
		{"POST /signin/{provider}", public, "", s.signinStart},
		{"GET /auth/{provider}/callback", public, "", s.callback},
		{"GET /oidc-login", public, "", s.oidcLogin},
		{"POST /signout", signedIn, "", s.signout},

		{"GET /account", signedIn, "", s.accountPage},
		{"POST /account/identities/unlink", signedIn, "", s.accountUnlink},
		{"POST /account/link/{provider}", signedIn, "", s.accountLink},
		{"POST /account/sessions/{id}/revoke", signedIn, "", s.accountRevokeSession},
		{"POST /account/sessions/revoke-others", signedIn, "", s.accountRevokeOthers},

		{"GET /admin/users", signedIn, auth.PermUsersRead, s.adminUsers},
		{"GET /admin/users/{id}", signedIn, auth.PermUsersRead, s.adminUser},
		{"POST /admin/users/{id}/roles", signedIn, auth.PermRolesManage, s.adminSetRoles},
		{"POST /admin/users/{id}/disabled", signedIn, auth.PermUsersManage, s.adminSetDisabled},
		{"POST /admin/users/{id}/sessions/revoke", signedIn, auth.PermSessionsMgmt, s.adminRevokeSessions},
		{"GET /admin/audit", signedIn, auth.PermAuditRead, s.adminAudit},

		{"GET /api/v1/providers", public, "", s.apiProviders},
		{"GET /api/v1/me", signedIn, "", s.apiMe},
		{"GET /api/v1/me/identities", signedIn, "", s.apiIdentities},
		{"DELETE /api/v1/me/identities/{provider}/{subject}", signedIn, "", s.apiUnlink},
		{"GET /api/v1/me/sessions", signedIn, "", s.apiSessions},
		{"DELETE /api/v1/me/sessions/{id}", signedIn, "", s.apiRevokeSession},
		{"DELETE /api/v1/me/sessions", signedIn, "", s.apiRevokeOtherSessions},
		{"POST /api/v1/signout", signedIn, "", s.apiSignout},
		{"GET /api/v1/roles", signedIn, "", s.apiRoles},
		{"GET /api/v1/users", signedIn, auth.PermUsersRead, s.apiUsers},
		{"POST /api/v1/users", signedIn, auth.PermUsersManage, s.apiCreateUser},
		{"GET /api/v1/users/{id}", signedIn, auth.PermUsersRead, s.apiUser},
		{"PUT /api/v1/users/{id}/roles", signedIn, auth.PermRolesManage, s.apiSetRoles},
		{"PUT /api/v1/users/{id}/disabled", signedIn, auth.PermUsersManage, s.apiSetDisabled},
		{"DELETE /api/v1/users/{id}/sessions", signedIn, auth.PermSessionsMgmt, s.apiRevokeUserSessions},
		{"GET /api/v1/audit", signedIn, auth.PermAuditRead, s.apiAudit},
	}, s.mfaRoutes()...)
}

// wrap applies a route's access rules around its handler: the session, then the
// form token of signed-in pages' POSTs, then the permission.
func (s *Server) wrap(rt route) http.Handler {
	h := http.Handler(rt.h)
	if strings.Contains(rt.pattern, "/users/{id}") {
		h = s.requireUserID(h)
	}
	if rt.perm != "" {
		h = s.requirePermission(rt.perm)(h)
	}
	if rt.access == signedIn {
		if !isAPI(patternPath(rt.pattern)) && strings.HasPrefix(rt.pattern, "POST ") {
			h = s.requireFormToken(h)
		}
		h = s.requireMFA(rt.pattern, h)
		h = s.requireSession(rt.pattern, h)
	}
	return h
}

func patternPath(pattern string) string {
	_, path, _ := strings.Cut(pattern, " ")
	return path
}

func isAPI(path string) bool { return strings.HasPrefix(path, "/api/") }

func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := s.optionalSession(r); ok {
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: the database does not answer; see the service's log")
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// notFound answers paths no route matches, and methods a path does not allow.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		if m == r.Method {
			continue
		}
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, p := s.mux.Handler(r2); p != "/" && p != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.fail(w, r, &auth.Error{Code: "method_not_allowed", Message: fmt.Sprintf("%s is not allowed here; use %s.", r.Method, strings.Join(allow, " or "))})
		return
	}
	s.fail(w, r, auth.Errorf(auth.CodeNotFound, "There is no page at %s.", r.URL.Path))
}

// crossOrigin answers a state-changing request from another site.
func (s *Server) crossOrigin(w http.ResponseWriter, r *http.Request) {
	s.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path,
		"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "ip", s.clientIP(r))
	s.fail(w, r, errCrossOrigin)
}

var errCrossOrigin = auth.Errorf(auth.CodeForbidden, "This request came from another site, so it was refused. Go back to the page, reload it and try again.")

// securityHeaders sets the headers every response carries. Pages are personal
// (or carry tokens), so nothing is cached unless a handler says otherwise.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// observe records every request's route, status and duration.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			pattern := r.Pattern // set by the mux
			if pattern == "" {
				_, pattern = s.mux.Handler(r) // refused before the mux (cross-origin)
			}
			if pattern == "" || pattern == "/" {
				pattern = "unmatched"
			}
			s.metrics.ObserveRequest(pattern, rec.status(), time.Since(start))
		}()
		next.ServeHTTP(rec, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

type noMetrics struct{}

func (noMetrics) ObserveRequest(string, int, time.Duration) {}
func (noMetrics) ObserveSignIn(string, string)              {}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// errorStatus is the HTTP status of an error's code.
func errorStatus(err error) int {
	var lr *auth.LinkRequiredError
	if errors.As(err, &lr) {
		return http.StatusConflict
	}
	switch auth.ErrorCode(err) {
	case auth.CodeInvalid:
		return http.StatusBadRequest
	case auth.CodeUnauthorized:
		return http.StatusUnauthorized
	case auth.CodeForbidden:
		return http.StatusForbidden
	case auth.CodeNotFound:
		return http.StatusNotFound
	case auth.CodeConflict:
		return http.StatusConflict
	case auth.CodeRateLimited:
		return http.StatusTooManyRequests
	case auth.CodeUnavailable:
		return http.StatusServiceUnavailable
	case "method_not_allowed":
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}

// requireUserID answers 404 for a {id} that cannot be a user id, before it
// reaches the database as one.
func (s *Server) requireUserID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.PathValue("id"); !isUserID(id) {
			s.fail(w, r, auth.Errorf(auth.CodeNotFound, "There is no user %q.", id))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isUserID reports whether id has the form of a user id: a UUID.
func isUserID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

var errBadUserFilter = auth.Errorf(auth.CodeInvalid, "user must be a user id (a UUID, as on the user's page).")
