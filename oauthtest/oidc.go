package oauthtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauth"
)

// Flavor is which provider the OpenID Connect fake behaves like.
type Flavor int

// The flavours.
const (
	// Plain: a standard issuer at the fake's URL, used through oauth.NewOIDC.
	Plain Flavor = iota
	// Google: include_granted_scopes adds the scopes granted before.
	Google
	// Microsoft: Entra ID v2.0 paths under {URL}/{tenant}/, an issuer per tenant
	// ({URL}/{tid}/v2.0), tid, oid and xms_edov claims; discovery for common,
	// organizations, tenant ids and the domains in Options.TenantDomains.
	Microsoft
	// LinkedIn: client credentials only in the POST body, no nonce in ID tokens,
	// email_verified as a string, and a code_verifier refused with invalid_client
	// unless Options.LinkedInPKCE.
	LinkedIn
)

// Tenant ids the Microsoft flavour's default users belong to.
const (
	TenantID      = "4a5b6c7d-1111-4222-8333-944455556666"
	OtherTenantID = "9f8e7d6c-aaaa-4bbb-8ccc-ddddeeeeffff"
)

// Claims are the person who signs in at the fake.
type Claims struct {
	Subject       string // sub
	Email         string // omitted when empty
	EmailVerified bool
	Name          string
	GivenName     string
	FamilyName    string
	Picture       string
	// Microsoft: the tenant id, the object id, and xms_edov.
	TenantID string
	ObjectID string
	EDOV     bool
	// Extra claims are added to (or replace) the ID token's and userinfo's.
	Extra map[string]any
}

// DefaultUser is the person who signs in at a fake of flavour f unless told
// otherwise.
func DefaultUser(f Flavor) Claims {
	c := Claims{
		Subject: "108723460123456789012", Email: "ana.lima@example.com", EmailVerified: true,
		Name: "Ana Lima", GivenName: "Ana", FamilyName: "Lima", Picture: "https://images.example/ana.png",
	}
	switch f {
	case Microsoft:
		c = Claims{
			Subject: "AAAAAAAAAAAAAAAAAAAAAJ3tDqz9yQ-pairwise", Email: "ana.lima@contoso.example", Name: "Ana Lima",
			TenantID: TenantID, ObjectID: "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5",
		}
	case LinkedIn:
		c.Subject = "782bbtaQ"
	}
	return c
}

// Options configure an OpenID Connect fake.
type Options struct {
	Flavor Flavor
	// ClientID and ClientSecret are the one client it knows; defaults
	// "test-client" and "test-secret".
	ClientID, ClientSecret string
	// User is who signs in; zero: DefaultUser(Flavor).
	User Claims
	// Fault is how it misbehaves, until SetFault changes it.
	Fault Fault
	// Now is its clock (ID token iat and exp); default time.Now.
	Now func() time.Time
	// TenantDomains (Microsoft) maps domain names to tenant ids for discovery of
	// a tenant given by domain.
	TenantDomains map[string]string
	// EmailInUserInfoOnly keeps the email out of the ID token; userinfo has it.
	EmailInUserInfoOnly bool
	// LinkedInPKCE makes the LinkedIn flavour accept PKCE, as LinkedIn does for
	// apps it has enabled PKCE for.
	LinkedInPKCE bool
}

// OIDC is a fake OpenID Connect provider on loopback.
type OIDC struct {
	srv   *httptest.Server
	opts  Options
	key   *rsa.PrivateKey
	kid   string
	now   func() time.Time
	mu    sync.Mutex
	user  Claims
	fault Fault
	codes map[string]*grant
	// tokens maps access tokens to the person they were issued for.
	tokens map[string]Claims
	// granted remembers each subject's granted scopes (Google's
	// include_granted_scopes).
	granted   map[string][]string
	lastAuth  url.Values
	lastToken url.Values
}

// grant is an issued authorization code.
type grant struct {
	clientID, redirectURI string
	challenge, nonce      string
	scopes                []string
	user                  Claims
	issued                time.Time
}

// codeTTL is how long a code may wait to be redeemed.
const codeTTL = 5 * time.Minute

// rogueKey signs FaultUnknownKey's tokens; one for the process is enough.
var rogueKey = sync.OnceValue(func() *rsa.PrivateKey { return newKey() })

func newKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("oauthtest: generate RSA key: " + err.Error())
	}
	return k
}

// NewOIDC starts a fake OpenID Connect provider; it stops when the test ends (or
// at Close, to simulate an outage).
func NewOIDC(t testing.TB, o Options) *OIDC {
	t.Helper()
	if o.ClientID == "" {
		o.ClientID = "test-client"
	}
	if o.ClientSecret == "" {
		o.ClientSecret = "test-secret"
	}
	if o.User.Subject == "" {
		o.User = DefaultUser(o.Flavor)
	}
	f := &OIDC{
		opts: o, key: newKey(), kid: "key-" + randomToken()[:8], now: o.Now,
		user: o.User, fault: o.Fault,
		codes: map[string]*grant{}, tokens: map[string]Claims{}, granted: map[string][]string{},
	}
	if f.now == nil {
		f.now = time.Now
	}
	mux := http.NewServeMux()
	if o.Flavor == Microsoft {
		mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", f.discovery)
		mux.HandleFunc("GET /{tenant}/oauth2/v2.0/authorize", f.authorize)
		mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", f.token)
		mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", f.jwks)
		mux.HandleFunc("GET /oidc/userinfo", f.userinfo)
	} else {
		mux.HandleFunc("GET /.well-known/openid-configuration", f.discovery)
		mux.HandleFunc("GET /authorize", f.authorize)
		mux.HandleFunc("POST /token", f.token)
		mux.HandleFunc("GET /jwks", f.jwks)
		mux.HandleFunc("GET /userinfo", f.userinfo)
	}
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the fake's base URL: the issuer (Plain, Google, LinkedIn) or the
// authority (Microsoft).
func (f *OIDC) URL() string { return f.srv.URL }

// ClientID is the client the fake knows.
func (f *OIDC) ClientID() string { return f.opts.ClientID }

// ClientSecret is its secret.
func (f *OIDC) ClientSecret() string { return f.opts.ClientSecret }

// Close stops the fake: the provider is down.
func (f *OIDC) Close() { f.srv.Close() }

// SetUser makes c the person who signs in next.
func (f *OIDC) SetUser(c Claims) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.user = c
}

// User is the person who signs in next.
func (f *OIDC) User() Claims {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.user
}

// SetFault makes the fake misbehave as fault from now on (FaultNone: behave).
func (f *OIDC) SetFault(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = fault
}

// LastAuthorization is the query of the last authorization request.
func (f *OIDC) LastAuthorization() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastAuth
}

// LastTokenRequest is the form of the last token request (client_secret
// redacted), with the header's client id, if any, as "basic_client_id".
func (f *OIDC) LastTokenRequest() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastToken
}

// Issuer is the issuer of the Plain, Google and LinkedIn flavours' ID tokens,
// and of tenant tid's for Microsoft.
func (f *OIDC) Issuer(tid string) string {
	if f.opts.Flavor == Microsoft {
		return f.srv.URL + "/" + tid + "/v2.0"
	}
	return f.srv.URL
}

func (f *OIDC) endpoint(tenant, path string) string {
	if f.opts.Flavor == Microsoft {
		switch path {
		case "authorize", "token":
			return f.srv.URL + "/" + tenant + "/oauth2/v2.0/" + path
		case "jwks":
			return f.srv.URL + "/" + tenant + "/discovery/v2.0/keys"
		case "userinfo":
			return f.srv.URL + "/oidc/userinfo"
		}
	}
	return f.srv.URL + "/" + path
}

// GoogleConfig is an oauth.GoogleConfig for this fake.
func (f *OIDC) GoogleConfig(redirectURL string) oauth.GoogleConfig {
	return oauth.GoogleConfig{
		ClientID: f.opts.ClientID, ClientSecret: f.opts.ClientSecret, RedirectURL: redirectURL,
		Issuer: f.srv.URL, AuthURL: f.endpoint("", "authorize"), TokenURL: f.endpoint("", "token"),
		JWKSURL: f.endpoint("", "jwks"), UserInfoURL: f.endpoint("", "userinfo"), Now: f.opts.Now,
	}
}

// LinkedInConfig is an oauth.LinkedInConfig for this fake.
func (f *OIDC) LinkedInConfig(redirectURL string) oauth.LinkedInConfig {
	return oauth.LinkedInConfig{
		ClientID: f.opts.ClientID, ClientSecret: f.opts.ClientSecret, RedirectURL: redirectURL, PKCE: f.opts.LinkedInPKCE,
		Issuer: f.srv.URL, AuthURL: f.endpoint("", "authorize"), TokenURL: f.endpoint("", "token"),
		JWKSURL: f.endpoint("", "jwks"), UserInfoURL: f.endpoint("", "userinfo"), Now: f.opts.Now,
	}
}

// MicrosoftConfig is an oauth.MicrosoftConfig for this fake (its URL is the
// authority), signing in through tenant (common, organizations, a tenant id or a
// domain of Options.TenantDomains).
func (f *OIDC) MicrosoftConfig(redirectURL, tenant string) oauth.MicrosoftConfig {
	return oauth.MicrosoftConfig{
		ClientID: f.opts.ClientID, ClientSecret: f.opts.ClientSecret, RedirectURL: redirectURL,
		Authority: f.srv.URL, Tenant: tenant, Now: f.opts.Now,
	}
}

// OIDCConfig is an oauth.OIDCConfig for this fake, found by discovery.
func (f *OIDC) OIDCConfig(name, redirectURL string) oauth.OIDCConfig {
	return oauth.OIDCConfig{
		Name: name, DisplayName: "Test IdP", Issuer: f.srv.URL,
		ClientID: f.opts.ClientID, ClientSecret: f.opts.ClientSecret, RedirectURL: redirectURL, Now: f.opts.Now,
	}
}

// Provider is the oauth provider of the fake's flavour, configured for it:
// Google, Microsoft (tenant common), LinkedIn, or for Plain an oauth.OIDC named
// "oidc".
func (f *OIDC) Provider(t testing.TB, redirectURL string) auth.Provider {
	t.Helper()
	var p auth.Provider
	var err error
	switch f.opts.Flavor {
	case Google:
		p, err = oauth.NewGoogle(f.GoogleConfig(redirectURL))
	case Microsoft:
		p, err = oauth.NewMicrosoft(f.MicrosoftConfig(redirectURL, oauth.MicrosoftCommon))
	case LinkedIn:
		p, err = oauth.NewLinkedIn(f.LinkedInConfig(redirectURL))
	default:
		p, err = oauth.NewOIDC(f.OIDCConfig("oidc", redirectURL))
	}
	if err != nil {
		t.Fatalf("oauthtest: provider for the fake: %v", err)
	}
	return p
}

// discovery serves /.well-known/openid-configuration.
func (f *OIDC) discovery(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	issuer := f.srv.URL
	if f.opts.Flavor == Microsoft {
		switch tid := tenant; {
		case tid == "common" || tid == "organizations" || tid == "consumers":
			issuer = f.srv.URL + "/{tenantid}/v2.0"
		case f.opts.TenantDomains[tid] != "":
			issuer = f.Issuer(f.opts.TenantDomains[tid])
		case len(tid) == 36 && strings.Count(tid, "-") == 4:
			issuer = f.Issuer(tid)
		default:
			oauthError(w, http.StatusBadRequest, "invalid_tenant", "AADSTS90002: Tenant '"+tid+"' not found.")
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                issuer,
		"authorization_endpoint":                f.endpoint(tenant, "authorize"),
		"token_endpoint":                        f.endpoint(tenant, "token"),
		"jwks_uri":                              f.endpoint(tenant, "jwks"),
		"userinfo_endpoint":                     f.endpoint(tenant, "userinfo"),
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "email", "profile"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported":                      []string{"sub", "email", "email_verified", "name", "picture"},
	})
}

// authorize serves the authorization endpoint: no UI, straight back to the
// client with a code or an error.
func (f *OIDC) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.lastAuth = q
	fault, user := f.fault, f.user
	f.mu.Unlock()
	redirectURI := q.Get("redirect_uri")
	if q.Get("client_id") != f.opts.ClientID || redirectURI == "" {
		http.Error(w, "unknown client or missing redirect_uri", http.StatusBadRequest)
		return
	}
	back := func(params url.Values) {
		if q.Has("state") {
			params.Set("state", q.Get("state"))
		}
		redirect(w, r, redirectURI, params)
	}
	scopes := splitScopes(q.Get("scope"))
	pkce := f.opts.Flavor != LinkedIn || f.opts.LinkedInPKCE
	switch {
	case q.Get("response_type") != "code":
		back(url.Values{"error": {"unsupported_response_type"}})
		return
	case !slices.Contains(scopes, "openid"):
		back(url.Values{"error": {"invalid_scope"}, "error_description": {"openid is required"}})
		return
	case pkce && (q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256"):
		back(url.Values{"error": {"invalid_request"}, "error_description": {"a PKCE S256 code_challenge is required"}})
		return
	case fault == FaultDenied:
		back(url.Values{"error": {"access_denied"}, "error_description": {"The user denied the request."}})
		return
	}
	g := &grant{
		clientID: q.Get("client_id"), redirectURI: redirectURI, nonce: q.Get("nonce"),
		scopes: scopes, user: user, issued: f.now(),
	}
	if pkce {
		g.challenge = q.Get("code_challenge")
	}
	code := randomToken()
	f.mu.Lock()
	if f.opts.Flavor == Google && q.Get("include_granted_scopes") == "true" {
		g.scopes = appendNew(f.granted[user.Subject], scopes...)
	}
	f.granted[user.Subject] = appendNew(f.granted[user.Subject], scopes...)
	f.codes[code] = g
	f.mu.Unlock()
	back(url.Values{"code": {code}})
}

func appendNew(a []string, b ...string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// token serves the token endpoint.
func (f *OIDC) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	form := r.PostForm
	id, secret, basic := r.BasicAuth()
	f.mu.Lock()
	f.lastToken = redactForm(form)
	if basic {
		f.lastToken.Set("basic_client_id", id)
	}
	fault := f.fault
	f.mu.Unlock()
	if fault == FaultTokenUnavailable {
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "try again later")
		return
	}
	switch {
	case basic && f.opts.Flavor == LinkedIn:
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed: send client_id and client_secret in the request body")
		return
	case basic && (form.Has("client_secret") || form.Has("client_id") && form.Get("client_id") != id):
		oauthError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method")
		return
	case basic:
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	default:
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id != f.opts.ClientID || secret != f.opts.ClientSecret {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	if f.opts.Flavor == LinkedIn && !f.opts.LinkedInPKCE && form.Has("code_verifier") {
		// What LinkedIn answers a web app that sends a verifier.
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	if form.Get("grant_type") != "authorization_code" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code")
		return
	}
	now := f.now()
	f.mu.Lock()
	g := f.codes[form.Get("code")]
	delete(f.codes, form.Get("code")) // a code works once, whatever happens next
	f.mu.Unlock()
	switch {
	case g == nil:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or already used code")
		return
	case now.Sub(g.issued) > codeTTL:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "code expired")
		return
	case g.clientID != id || g.redirectURI != form.Get("redirect_uri"):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "code issued to another client or redirect_uri")
		return
	case g.challenge != "" && s256(form.Get("code_verifier")) != g.challenge:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
		return
	}
	idToken, err := f.idToken(g, fault, now)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	at := randomToken()
	f.mu.Lock()
	f.tokens[at] = g.user
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": at, "token_type": "Bearer", "expires_in": 3600,
		"id_token": idToken, "scope": strings.Join(g.scopes, " "),
	})
}

// idToken makes the ID token for g, spoiled as fault says.
func (f *OIDC) idToken(g *grant, fault Fault, now time.Time) (string, error) {
	u := g.user
	c := map[string]any{
		"iss": f.Issuer(u.TenantID), "sub": u.Subject, "aud": f.opts.ClientID,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if g.nonce != "" && f.opts.Flavor != LinkedIn {
		c["nonce"] = g.nonce
	}
	maps.Copy(c, f.profileClaims(u))
	if f.opts.EmailInUserInfoOnly {
		delete(c, "email")
		delete(c, "email_verified")
	}
	switch f.opts.Flavor {
	case Microsoft:
		c["ver"], c["nbf"] = "2.0", now.Unix()
	case LinkedIn:
		if v, ok := c["email_verified"].(bool); ok {
			c["email_verified"] = map[bool]string{true: "true", false: "false"}[v]
		}
	case Google:
		c["azp"] = f.opts.ClientID
	}
	maps.Copy(c, u.Extra)
	switch fault {
	case FaultWrongNonce:
		c["nonce"] = "not-" + g.nonce
	case FaultNoNonce:
		delete(c, "nonce")
	case FaultExpired:
		c["iat"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	case FaultWrongAudience:
		c["aud"] = "another-client"
	case FaultWrongIssuer:
		c["iss"] = f.srv.URL + "/other-issuer"
		if f.opts.Flavor == Microsoft {
			c["iss"] = "https://sts.windows.net/" + u.TenantID + "/"
		}
	case FaultWrongTenant:
		c["iss"] = f.Issuer(OtherTenantID)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	if fault == FaultUnsigned {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + ".", nil
	}
	key := f.key
	if fault == FaultUnknownKey {
		key = rogueKey()
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: f.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// profileClaims are u's claims about the person, in the flavour's shape.
func (f *OIDC) profileClaims(u Claims) map[string]any {
	c := map[string]any{"sub": u.Subject}
	set := func(k, v string) {
		if v != "" {
			c[k] = v
		}
	}
	set("name", u.Name)
	if f.opts.Flavor == Microsoft {
		set("tid", u.TenantID)
		set("oid", u.ObjectID)
		set("email", u.Email)
		set("preferred_username", u.Email)
		if u.EDOV {
			c["xms_edov"] = true
		}
		return c
	}
	set("given_name", u.GivenName)
	set("family_name", u.FamilyName)
	set("picture", u.Picture)
	if u.Email != "" {
		c["email"], c["email_verified"] = u.Email, u.EmailVerified
	}
	return c
}

// jwks serves the public key.
func (f *OIDC) jwks(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	fault := f.fault
	f.mu.Unlock()
	if fault == FaultJWKSUnavailable {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &f.key.PublicKey, KeyID: f.kid, Algorithm: string(jose.RS256), Use: "sig"},
	}})
}

// userinfo serves the userinfo endpoint.
func (f *OIDC) userinfo(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	u, ok := f.tokens[bearer(r)]
	fault := f.fault
	f.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		oauthError(w, http.StatusUnauthorized, "invalid_token", "unknown access token")
		return
	}
	c := f.profileClaims(u)
	maps.Copy(c, u.Extra)
	if fault == FaultUserInfoOtherSubject {
		c["sub"] = "someone-else"
	}
	writeJSON(w, http.StatusOK, c)
}
