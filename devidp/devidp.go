// Package devidp is the development identity provider: a small OpenID Connect
// provider that signs anyone in as one of a few test users, without a password,
// so a newcomer can run `hestami dev` and sign in with no cloud credentials.
//
// The auth service talks to it like to any other OpenID Connect provider
// (discovery, authorization code with PKCE S256, state and nonce, client secret,
// ID tokens signed with a key published in the JWKS, userinfo), so the sign-in
// path exercised in development is the one used in production. Because it lets
// anyone in, New refuses to build one unless it is asked for explicitly (Dev) and
// its issuer is on the loopback interface. Its state lives in memory.
package devidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/hestami/hestami/auth"
)

// Lifetimes of what the provider hands out.
const (
	// requestTTL is how long the sign-in page stays usable.
	requestTTL = 10 * time.Minute
	// codeTTL is how long an authorization code can be redeemed.
	codeTTL = time.Minute
	// tokenTTL is how long ID and access tokens are valid.
	tokenTTL = time.Hour
)

// Errors from New.
var (
	// ErrNotDev: Options.Dev is false.
	ErrNotDev = errors.New("the development identity provider signs anyone in without a password; it only runs under `hestami dev` (or with auth.dev_mode: true)")
	// ErrNotLoopback: the issuer's host is not localhost, 127.0.0.1 or ::1.
	ErrNotLoopback = errors.New("the development identity provider must never be exposed: its issuer must be on localhost, 127.0.0.1 or ::1")
)

// Options configure an IdP.
type Options struct {
	// Dev must be true: it is the caller's statement that this is a development
	// setup (`hestami dev`, or auth.dev_mode: true).
	Dev bool
	// Issuer is the provider's public URL, where Handler is mounted:
	// "http://localhost:8080/dev/idp". Its host must be a loopback name.
	Issuer string
	// ClientID and ClientSecret are the one client (the auth service) allowed to
	// use the provider.
	ClientID, ClientSecret string
	// RedirectURIs are the client's callback URLs; authorization requests must use
	// one of them exactly.
	RedirectURIs []string
	// Users are who one can sign in as; nil means DefaultUsers.
	Users []User
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives sign-ins and refused requests; nil discards them.
	Logger *slog.Logger
}

// User is a test user one can sign in as.
type User struct {
	// Subject is the immutable `sub` claim.
	Subject string
	Email   string
	Name    string
	// Type is the account type: "staff", "owner" or "provider".
	Type string
	// Description says what the user is for: "Staff administrator (staff:admin)".
	Description string
	// Roles are the roles the account is meant to have. The provider does not
	// assert them (roles are Hestami's, not the identity provider's); `hestami
	// dev` creates the accounts with them, and the first sign-in claims the
	// account by its verified email.
	Roles []string
}

// DefaultUsers returns one test user for each kind of account: three staff
// members (admin, support, ops), a property owner and a service provider.
func DefaultUsers() []User {
	return []User{
		{Subject: "dev-admin", Email: "admin@hestami.local", Name: "Ada Admin", Type: "staff",
			Description: "Staff administrator (staff:admin)", Roles: []string{"staff:admin"}},
		{Subject: "dev-support", Email: "support@hestami.local", Name: "Sam Support", Type: "staff",
			Description: "Staff support agent (staff:support)", Roles: []string{"staff:support"}},
		{Subject: "dev-ops", Email: "ops@hestami.local", Name: "Olive Ops", Type: "staff",
			Description: "Staff operator: backups and restores (staff:ops)", Roles: []string{"staff:ops"}},
		{Subject: "dev-owner", Email: "owner@hestami.local", Name: "Oscar Owner", Type: "owner",
			Description: "Property owner (owner)", Roles: []string{"owner"}},
		{Subject: "dev-provider", Email: "provider@hestami.local", Name: "Priya Provider", Type: "provider",
			Description: "Service provider (provider)", Roles: []string{"provider"}},
	}
}

// IdP is the development OpenID Connect provider. Its methods are safe for
// concurrent use.
type IdP struct {
	issuer       string // as configured: the `iss` claim
	base         string // issuer without a trailing slash, for endpoint URLs
	path         string // the issuer's path without a trailing slash
	clientID     string
	clientSecret string
	redirectURIs []string
	users        []User
	now          func() time.Time
	log          *slog.Logger

	signer jose.Signer
	keys   jose.JSONWebKeySet

	mu       sync.Mutex
	requests map[string]*authRequest // sign-in pages shown, by their random id
	codes    map[string]*grant       // authorization codes issued
	tokens   map[string]*accessToken // access tokens issued
}

// New checks o and returns an IdP with a freshly generated signing key.
func New(o Options) (*IdP, error) {
	if !o.Dev {
		return nil, ErrNotDev
	}
	iss, err := url.Parse(o.Issuer)
	if err != nil || iss.Scheme != "http" && iss.Scheme != "https" || iss.Host == "" ||
		iss.User != nil || iss.RawQuery != "" || iss.Fragment != "" {
		return nil, fmt.Errorf("development identity provider: issuer %q must be an http(s) URL without query or fragment, like http://localhost:8080/dev/idp", o.Issuer)
	}
	if !isLoopback(iss.Hostname()) {
		return nil, fmt.Errorf("development identity provider: issuer %q: %w", o.Issuer, ErrNotLoopback)
	}
	if o.ClientID == "" || o.ClientSecret == "" {
		return nil, errors.New("development identity provider: a client id and a client secret are required")
	}
	if len(o.RedirectURIs) == 0 {
		return nil, errors.New("development identity provider: at least one redirect URI is required")
	}
	for _, r := range o.RedirectURIs {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Fragment != "" {
			return nil, fmt.Errorf("development identity provider: redirect URI %q must be an absolute http(s) URL without fragment", r)
		}
	}
	users := o.Users
	if users == nil {
		users = DefaultUsers()
	}
	if err := checkUsers(users); err != nil {
		return nil, fmt.Errorf("development identity provider: %w", err)
	}
	p := &IdP{
		issuer:       o.Issuer,
		base:         strings.TrimSuffix(o.Issuer, "/"),
		path:         strings.TrimSuffix(iss.EscapedPath(), "/"),
		clientID:     o.ClientID,
		clientSecret: o.ClientSecret,
		redirectURIs: append([]string(nil), o.RedirectURIs...),
		users:        append([]User(nil), users...),
		now:          o.Now,
		log:          o.Logger,
		requests:     map[string]*authRequest{},
		codes:        map[string]*grant{},
		tokens:       map[string]*accessToken{},
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := p.generateKey(); err != nil {
		return nil, fmt.Errorf("development identity provider: %w", err)
	}
	p.log.Warn("development identity provider enabled: anyone can sign in as a test user without a password",
		"issuer", p.issuer, "users", len(p.users))
	return p, nil
}

// Issuer returns the issuer URL, as configured.
func (p *IdP) Issuer() string { return p.issuer }

// Users returns the test users one can sign in as.
func (p *IdP) Users() []User { return append([]User(nil), p.users...) }

func isLoopback(host string) bool {
	return strings.EqualFold(host, "localhost") || host == "127.0.0.1" || host == "::1"
}

func checkUsers(users []User) error {
	if len(users) == 0 {
		return errors.New("no test users")
	}
	seen := map[string]bool{}
	for _, u := range users {
		switch {
		case u.Subject == "" || u.Email == "":
			return fmt.Errorf("test user %q: subject and email are required", u.Email)
		case seen[u.Subject]:
			return fmt.Errorf("test user %q: subject %q is used twice", u.Email, u.Subject)
		case !auth.UserType(u.Type).Valid():
			return fmt.Errorf("test user %q: type must be staff, owner or provider, not %q", u.Email, u.Type)
		}
		seen[u.Subject] = true
	}
	return nil
}

func (p *IdP) user(subject string) (User, bool) {
	for _, u := range p.users {
		if u.Subject == subject {
			return u, true
		}
	}
	return User{}, false
}

// generateKey makes the RSA key ID tokens are signed with, and the key set that
// publishes its public half.
func (p *IdP) generateKey() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("signing key id: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	p.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	p.keys = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}
	return nil
}

// Handler serves the provider's endpoints under the issuer's path: mount it there
// (mux.Handle("/dev/idp/", idp.Handler()) for the issuer
// http://localhost:8080/dev/idp). Requests whose path has that prefix stripped
// already (http.StripPrefix) are served too.
//
//	GET  /.well-known/openid-configuration  discovery
//	GET  /jwks                              the public signing key
//	GET  /authorize                         the sign-in page (POST: the choice)
//	POST /token                             code for tokens
//	GET  /userinfo                          the user, for a bearer access token
func (p *IdP) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("/authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	mux.HandleFunc("POST /userinfo", p.userinfo)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if p.path != "" && strings.HasPrefix(r.URL.Path, p.path+"/") {
			r2 := new(http.Request)
			*r2 = *r
			r2.URL = new(url.URL)
			*r2.URL = *r.URL
			r2.URL.Path = strings.TrimPrefix(r.URL.Path, p.path)
			r2.URL.RawPath = ""
			r = r2
		}
		mux.ServeHTTP(w, r)
	})
}

func (p *IdP) endpoint(name string) string { return p.base + name }

func (p *IdP) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.issuer,
		"authorization_endpoint":                p.endpoint("/authorize"),
		"token_endpoint":                        p.endpoint("/token"),
		"userinfo_endpoint":                     p.endpoint("/userinfo"),
		"jwks_uri":                              p.endpoint("/jwks"),
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		"scopes_supported":                      []string{"openid", "email", "profile"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "name"},
	})
}

func (p *IdP) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, p.keys)
}

// sweepLocked forgets what has expired. p.mu must be held.
func (p *IdP) sweepLocked(now time.Time) {
	for id, r := range p.requests {
		if !now.Before(r.expires) {
			delete(p.requests, id)
		}
	}
	for t, a := range p.tokens {
		if !now.Before(a.expires) {
			delete(p.tokens, t)
		}
	}
	for c, g := range p.codes {
		// A redeemed code is kept while its access token lives, so a replay
		// can still revoke it.
		if !now.Before(g.expires) && p.tokens[g.accessToken] == nil {
			delete(p.codes, c)
		}
	}
}
