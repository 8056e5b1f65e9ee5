// Package oidcprovider makes the auth service an OpenID Connect provider for the
// platform's own applications (the Next.js frontend, through Auth.js): they send
// people here to sign in, and get back an ID token, a short-lived access token
// and a rotating refresh token, never the tokens of Google or Microsoft.
//
// It is built on zitadel/oidc's op package, which speaks the protocol
// (discovery, JWKS, authorize, token, userinfo, revocation, introspection,
// end_session); this package decides the rules: PKCE with S256 for every client,
// exact redirect URIs, codes that work once (a replay revokes what the code
// gave), refresh tokens that rotate (a reuse revokes the grant), tokens that stop
// working when the session that issued them ends or the user is disabled, and an
// authorization request bound to the browser that started it.
//
// Signing in itself is the auth service's pages' job (package authhttp): the
// provider sends the browser to Config.LoginURL, and once the person is signed
// in the page calls Provider.Complete and redirects where it says.
package oidcprovider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rs/cors"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/hestami/hestami/auth"
)

// Config is how the provider behaves.
type Config struct {
	// Issuer is the provider's public URL: the auth service's public URL plus
	// "/oidc" (https://auth.hestami.example/oidc). It must be https, except on
	// localhost or 127.0.0.1 (development and tests).
	Issuer  string
	Clients []Client
	// AccessTokenTTL (default 15 minutes), IDTokenTTL (default 1 hour) and
	// RefreshTokenTTL (default 30 days) are the tokens' lifetimes; no token
	// outlives the session it came from.
	AccessTokenTTL, IDTokenTTL, RefreshTokenTTL time.Duration
	// RefreshReuseGrace is how long a refresh token, once exchanged, may be
	// exchanged again (two requests of the frontend refreshing at once) before a
	// reuse counts as a leak and revokes the grant. Default 0: never.
	RefreshReuseGrace time.Duration
	// LoginTimeout is how long a person has to sign in (default 10 minutes).
	LoginTimeout time.Duration
	// LoginURL is where the provider sends a browser to sign in for request
	// requestID: authhttp serves /oidc-login?id=...
	LoginURL func(requestID string) string
	// SigningKeyFile is a PEM private key (RSA of at least 2048 bits, or ECDSA
	// P-256) to sign tokens with. Empty: a key is generated once and kept in the
	// store.
	SigningKeyFile string
	// DefaultLogoutURL is where end_session sends the browser when the client
	// names no post_logout_redirect_uri; default: the issuer's origin + "/".
	DefaultLogoutURL string
}

// The defaults.
const (
	DefaultAccessTokenTTL  = 15 * time.Minute
	DefaultIDTokenTTL      = time.Hour
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultLoginTimeout    = 10 * time.Minute
	// codeTTL is how long an authorization code may wait to be redeemed.
	codeTTL = time.Minute
)

// Provider is the OpenID Connect provider.
type Provider struct {
	cfg     Config
	issuer  string // without a trailing slash
	path    string // the issuer's path: "/oidc"
	secure  bool   // cookies are Secure
	clients map[string]*client
	store   Store
	users   UserSource
	now     func() time.Time
	log     *slog.Logger
	key     *signingKey
	keys    []*signingKey
	op      *op.Provider
}

// New returns a provider. It checks the configuration (reporting every problem)
// and loads the signing key, generating and storing one the first time. now is
// the clock (time.Now in production); the provider's own expiries follow it,
// while the times op writes into tokens (iat, the ID token's exp) follow the
// system clock.
func New(ctx context.Context, cfg Config, store Store, users UserSource, now func() time.Time, logger *slog.Logger) (*Provider, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{cfg: cfg, store: store, users: users, now: now, log: logger, clients: map[string]*client{}}
	if p.cfg.AccessTokenTTL <= 0 {
		p.cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if p.cfg.IDTokenTTL <= 0 {
		p.cfg.IDTokenTTL = DefaultIDTokenTTL
	}
	if p.cfg.RefreshTokenTTL <= 0 {
		p.cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if p.cfg.LoginTimeout <= 0 {
		p.cfg.LoginTimeout = DefaultLoginTimeout
	}
	var errs []string
	iss, err := url.Parse(strings.TrimSuffix(cfg.Issuer, "/"))
	switch {
	case cfg.Issuer == "":
		errs = append(errs, "issuer: empty; want the auth service's public URL + /oidc, e.g. https://auth.hestami.example/oidc")
	case err != nil || iss.Host == "" || iss.RawQuery != "" || iss.Fragment != "" || iss.User != nil:
		errs = append(errs, fmt.Sprintf("issuer: %q: want an absolute URL without query or fragment, e.g. https://auth.hestami.example/oidc", cfg.Issuer))
	case iss.Scheme == "http" && isLoopback(iss.Hostname()):
		p.secure = iss.Hostname() == "localhost"
	case iss.Scheme != "https":
		errs = append(errs, fmt.Sprintf("issuer: %q: must be https (http only on localhost or 127.0.0.1, for development); put TLS in front of the auth service", cfg.Issuer))
	default:
		p.secure = true
	}
	if len(errs) == 0 {
		p.issuer = iss.String()
		p.path = iss.EscapedPath()
	}
	if cfg.LoginURL == nil {
		errs = append(errs, "login URL: not set (the page that signs people in for a request)")
	}
	for i, c := range cfg.Clients {
		oc, err := newClient(c, cfg.LoginURL, p.cfg.IDTokenTTL)
		if err != nil {
			errs = append(errs, fmt.Sprintf("clients[%d] (%s): %v", i, c.ID, err))
			continue
		}
		if _, dup := p.clients[oc.id]; dup {
			errs = append(errs, fmt.Sprintf("clients[%d]: id %q is registered twice", i, oc.id))
		}
		p.clients[oc.id] = oc
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("oidc provider configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	if p.cfg.DefaultLogoutURL == "" {
		p.cfg.DefaultLogoutURL = (&url.URL{Scheme: iss.Scheme, Host: iss.Host, Path: "/"}).String()
	}

	p.key, p.keys, err = loadKeys(ctx, store, cfg.SigningKeyFile, now())
	if err != nil {
		return nil, err
	}
	opts := []op.Option{
		op.WithCrypto(randomCodes{}),
		op.WithCustomTokenEndpoint(op.NewEndpoint("token")),
		op.WithCustomIntrospectionEndpoint(op.NewEndpoint("introspect")),
		// Cross-origin calls (a browser client's token and userinfo requests)
		// carry bearer tokens and client credentials, never cookies.
		op.WithCORSOptions(&cors.Options{
			AllowedOrigins: []string{"*"},
			AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost},
			AllowedHeaders: []string{"Accept", "Authorization", "Content-Type"},
		}),
	}
	var algs []string
	for _, k := range p.keys {
		if !slices.Contains(algs, string(k.alg)) {
			algs = append(algs, string(k.alg))
		}
	}
	opts = append(opts, op.WithAccessTokenVerifierOpts(op.WithSupportedAccessTokenSigningAlgorithms(algs...)),
		op.WithIDTokenHintVerifierOpts(op.WithSupportedIDTokenHintSigningAlgorithms(algs...)))
	if iss.Scheme == "http" {
		opts = append(opts, op.WithAllowInsecure())
	}
	opCfg := &op.Config{
		DefaultLogoutRedirectURI: p.cfg.DefaultLogoutURL,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedClaims:          append(slices.Clone(op.DefaultSupportedClaims), "picture", "updated_at", "sid", ClaimUserType, ClaimRoles),
		SupportedScopes:          []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess},
	}
	p.op, err = op.NewProvider(opCfg, storage{p}, op.StaticIssuer(p.issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("oidc provider: %w", err)
	}
	logger.Info("oidc provider ready", "issuer", p.issuer, "clients", len(p.clients), "key", p.key.id, "alg", p.key.alg)
	return p, nil
}

// Issuer returns the issuer URL, without a trailing slash.
func (p *Provider) Issuer() string { return p.issuer }

// randomCodes makes op's authorization codes 256 random bits, stored by hash. op
// would otherwise encrypt the request id with a key we would have to keep; it
// never needs to decrypt anything, as access tokens are JWTs.
type randomCodes struct{}

func (randomCodes) Encrypt(string) (string, error) { return auth.NewToken(), nil }
func (randomCodes) Decrypt(string) (string, error) { return "", errors.New("not decryptable") }

// Handler serves everything under the issuer's path (discovery at
// /oidc/.well-known/openid-configuration, JWKS at /oidc/keys, /oidc/authorize,
// /oidc/token, /oidc/userinfo, /oidc/revoke, /oidc/introspect,
// /oidc/end_session). Mount it with mux.Handle("/oidc/", p.Handler()) on the
// server whose public URL is the issuer minus its path.
func (p *Provider) Handler() http.Handler {
	h := p.guard(p.op)
	if p.path != "" {
		h = http.StripPrefix(p.path, h)
	}
	return h
}

var errRequestGone = auth.Errorf(auth.CodeNotFound, "This sign-in request has expired or was used already. Go back to the application and sign in again.")

// LoginRequest is an authorization request waiting for the person to sign in, as
// the login page needs it.
type LoginRequest struct {
	ID         string
	ClientID   string
	ClientName string
	Scopes     []string
	LoginHint  string
	// SignInAfter is set when the client wants a recent sign-in (prompt=login,
	// max_age): a session that proved who the person is before it does not do,
	// the person must sign in again before Complete.
	SignInAfter time.Time
	// PromptNone: the client wants an answer without any page; if nobody is
	// signed in, answer with Fail(..., "login_required").
	PromptNone bool
	ExpiresAt  time.Time
}

// LoginRequest returns the request with id while it waits for a sign-in;
// CodeNotFound if it is unknown, expired or completed.
func (p *Provider) LoginRequest(ctx context.Context, id string) (*LoginRequest, error) {
	r, err := p.pending(ctx, id)
	if err != nil {
		return nil, err
	}
	c := p.clients[r.ClientID]
	lr := &LoginRequest{ID: r.ID, ClientID: r.ClientID, Scopes: r.Scopes, LoginHint: r.LoginHint,
		PromptNone: slices.Contains(r.Prompt, oidc.PromptNone), ExpiresAt: r.ExpiresAt, SignInAfter: p.signInAfter(r)}
	if c != nil {
		lr.ClientName = c.name
	}
	return lr, nil
}

func (p *Provider) signInAfter(r *AuthRequest) time.Time {
	var t time.Time
	if slices.Contains(r.Prompt, oidc.PromptLogin) {
		t = r.CreatedAt
	}
	if r.MaxAge != nil {
		if m := p.now().Add(-time.Duration(*r.MaxAge) * time.Second); m.After(t) {
			t = m
		}
	}
	return t
}

// pending loads a request that still waits for a sign-in.
func (p *Provider) pending(ctx context.Context, id string) (*AuthRequest, error) {
	if id == "" {
		return nil, errRequestGone
	}
	r, err := p.store.AuthRequest(ctx, id)
	if errors.Is(err, auth.ErrNotFound) {
		return nil, errRequestGone
	}
	if err != nil {
		return nil, fmt.Errorf("load sign-in request: %w", err)
	}
	if !p.now().Before(r.ExpiresAt) || !r.CompletedAt.IsZero() {
		return nil, errRequestGone
	}
	return r, nil
}

// Complete binds request requestID to the signed-in user u and their session sess
// (auth_time = sess.AuthTime, amr = sess.Methods), and returns the URL to send the
// browser to: the provider's callback, which sends the code to the client. The
// callback URL carries a one-time secret and works only in the browser that
// started the request (it holds the request's binding cookie).
//
// Errors are *auth.Error: CodeNotFound when the request is unknown, expired or
// completed already; CodeForbidden for a disabled user; CodeUnauthorized when
// the session has ended, or is older than the client allows (prompt=login,
// max_age: sign the person in again, then call Complete with the new session).
func (p *Provider) Complete(ctx context.Context, requestID string, sess *auth.Session, u *auth.User) (string, error) {
	if sess == nil || u == nil || sess.UserID != u.ID {
		return "", fmt.Errorf("complete sign-in request: session and user do not match")
	}
	r, err := p.pending(ctx, requestID)
	if err != nil {
		return "", err
	}
	now := p.now()
	if u.Disabled {
		return "", auth.Errorf(auth.CodeForbidden, "This account is disabled.")
	}
	if !sess.Active(now) {
		return "", auth.Errorf(auth.CodeUnauthorized, "You are signed out. Sign in again.")
	}
	if sess.AuthTime.Before(p.signInAfter(r)) {
		return "", auth.Errorf(auth.CodeUnauthorized, "This application asks you to sign in again.")
	}
	secret := auth.NewToken()
	r.UserID, r.SessionID, r.AuthTime, r.AMR = u.ID, sess.ID, sess.AuthTime, slices.Clone(sess.Methods)
	r.CompletedAt, r.Completion = now, auth.HashToken(secret)
	if err := p.store.CompleteAuthRequest(ctx, r); errors.Is(err, auth.ErrNotFound) {
		return "", errRequestGone
	} else if err != nil {
		return "", fmt.Errorf("complete sign-in request: %w", err)
	}
	return p.issuer + "/authorize/callback?" + url.Values{"id": {r.ID}, "k": {secret}}.Encode(), nil
}

// Fail ends request requestID without signing anyone in, and returns the URL that
// tells the client so: its redirect URI with error=errCode ("login_required"
// for prompt=none without a session, "access_denied" when the person cancels).
// CodeNotFound if the request is unknown, expired or completed.
func (p *Provider) Fail(ctx context.Context, requestID, errCode string) (string, error) {
	r, err := p.pending(ctx, requestID)
	if err != nil {
		return "", err
	}
	now := p.now()
	// Completed by nobody: it can no longer be completed, and its callback
	// never matches.
	r.CompletedAt, r.Completion = now, auth.HashToken(auth.NewToken())
	if err := p.store.CompleteAuthRequest(ctx, r); errors.Is(err, auth.ErrNotFound) {
		return "", errRequestGone
	} else if err != nil {
		return "", fmt.Errorf("end sign-in request: %w", err)
	}
	u, err := url.Parse(r.RedirectURI)
	if err != nil {
		return "", fmt.Errorf("end sign-in request: %w", err)
	}
	q := u.Query()
	q.Set("error", errCode)
	if r.State != "" {
		q.Set("state", r.State)
	}
	q.Set("iss", p.issuer)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// AccessToken is what a valid access token says.
type AccessToken struct {
	UserID   string
	ClientID string
	Scopes   []string
	// AuthTime and AMR are when and how the person signed in.
	AuthTime time.Time
	AMR      []string
	Expiry   time.Time
	// GrantID is the token's sid claim: the grant (one sign-in at one
	// client) it was issued from.
	GrantID string
	// SessionID is the id of the auth service's session (auth.Session.ID) the
	// grant stands on: the session's MFA state and revocation apply to the
	// token. A second factor verified later rotates the session, which ends
	// the grant: the client signs in again to carry the new proof.
	SessionID string
}

var errBadToken = auth.Errorf(auth.CodeUnauthorized, "The access token is not valid (expired, revoked or malformed). Sign in again.")

// VerifyAccessToken checks a bearer token for an API: its signature, issuer and
// expiry, and that it was not revoked, its session is still active and its user
// enabled. Errors are *auth.Error CodeUnauthorized, except a failing store.
func (p *Provider) VerifyAccessToken(ctx context.Context, token string) (*AccessToken, error) {
	ctx = op.ContextWithIssuer(ctx, p.issuer)
	v := p.op.AccessTokenVerifier(ctx)
	v.Offset = p.now().Sub(time.Now()) // expiry by the provider's clock
	claims, err := op.VerifyAccessToken[*oidc.AccessTokenClaims](ctx, token, v)
	if err != nil {
		return nil, errBadToken.WithCause(err)
	}
	t, g, _, err := storage{p}.liveAccessToken(ctx, claims.JWTID)
	if errors.Is(err, errDead) {
		return nil, errBadToken.WithCause(err)
	}
	if err != nil {
		return nil, fmt.Errorf("verify access token: %w", err)
	}
	if g.UserID != claims.Subject {
		return nil, errBadToken
	}
	return &AccessToken{UserID: g.UserID, ClientID: g.ClientID, Scopes: t.Scopes, AuthTime: g.AuthTime, AMR: g.AMR, Expiry: t.ExpiresAt,
		GrantID: g.ID, SessionID: g.SessionID}, nil
}

// DeleteExpired removes expired requests, tokens and grants; run it now and then.
func (p *Provider) DeleteExpired(ctx context.Context) (int, error) {
	n, err := p.store.DeleteExpired(ctx, p.now())
	if err != nil {
		return 0, fmt.Errorf("delete expired oidc data: %w", err)
	}
	return n, nil
}

func (p *Provider) audit(ctx context.Context, e *auth.AuditEvent) {
	if e.Time.IsZero() {
		e.Time = p.now()
	}
	if err := p.users.AppendAudit(ctx, e); err != nil {
		p.log.Error("oidc: audit log append failed", "action", e.Action, "err", err)
	}
}
