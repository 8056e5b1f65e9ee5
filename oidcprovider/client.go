package oidcprovider

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/hestami/hestami/auth"
)

// Client is an application registered to sign people in through the provider:
// the Next.js frontend (confidential: it has a secret and runs on a server) or a
// public client (a browser or mobile app, PKCE only). Every client must use PKCE
// with S256.
type Client struct {
	ID   string
	Name string
	// Secret is a confidential client's secret; New hashes it and forgets it.
	Secret string
	// SecretHash is auth.HashToken of the secret (hex SHA-256: `printf %s "$SECRET"
	// | sha256sum`), as an alternative to Secret.
	SecretHash string
	// Public marks a client without a secret (PKCE is its only proof).
	Public bool
	// RedirectURIs are where codes may be sent; exact matches only. https, or http
	// on localhost / 127.0.0.1 for development.
	RedirectURIs []string
	// PostLogoutRedirectURIs are where end_session may send the browser back to.
	PostLogoutRedirectURIs []string
	// Scopes are the scopes the client may ask for; empty: openid, profile,
	// email and offline_access.
	Scopes []string
}

// DefaultScopes are the scopes a client may ask for when Client.Scopes is empty.
var DefaultScopes = []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess}

// client is a Client as the op package sees it.
type client struct {
	id, name     string
	secretHash   []byte // nil for public clients
	redirects    []string
	postLogout   []string
	scopes       []string
	loginURL     func(string) string
	idTokenTTL   time.Duration
	hasHTTPLocal bool
}

var _ op.Client = (*client)(nil)

func newClient(c Client, loginURL func(string) string, idTokenTTL time.Duration) (*client, error) {
	if c.ID == "" {
		return nil, fmt.Errorf("empty id")
	}
	out := &client{id: c.ID, name: c.Name, loginURL: loginURL, idTokenTTL: idTokenTTL,
		scopes: slices.Clone(c.Scopes), redirects: slices.Clone(c.RedirectURIs), postLogout: slices.Clone(c.PostLogoutRedirectURIs)}
	if out.name == "" {
		out.name = c.ID
	}
	if len(out.scopes) == 0 {
		out.scopes = slices.Clone(DefaultScopes)
	}
	if !slices.Contains(out.scopes, oidc.ScopeOpenID) {
		return nil, fmt.Errorf("scopes: openid missing (the provider signs people in; it needs openid)")
	}
	switch {
	case c.Public && (c.Secret != "" || c.SecretHash != ""):
		return nil, fmt.Errorf("a public client has no secret: remove the secret, or set public to false")
	case c.Public:
	case c.Secret != "":
		if len(c.Secret) < 32 {
			return nil, fmt.Errorf("secret: want at least 32 random characters (e.g. openssl rand -base64 48)")
		}
		h, _ := hex.DecodeString(auth.HashToken(c.Secret))
		out.secretHash = h
	case c.SecretHash != "":
		h, err := hex.DecodeString(strings.TrimSpace(c.SecretHash))
		if err != nil || len(h) != 32 {
			return nil, fmt.Errorf("secret hash: want the 64 hex digits of the secret's SHA-256")
		}
		out.secretHash = h
	default:
		return nil, fmt.Errorf("no secret: give a confidential client a secret, or mark it public (PKCE only)")
	}
	if len(out.redirects) == 0 {
		return nil, fmt.Errorf("redirect_uris: empty; want the client's callback, e.g. https://app.hestami.example/api/auth/callback/hestami")
	}
	for i, list := range [][]string{out.redirects, out.postLogout} {
		for _, raw := range list {
			local, err := checkRedirect(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", []string{"redirect_uris", "post_logout_redirect_uris"}[i], err)
			}
			out.hasHTTPLocal = out.hasHTTPLocal || local
		}
	}
	return out, nil
}

// checkRedirect accepts absolute https URLs without a fragment, and http ones on
// loopback hosts (development); it reports whether raw is the latter.
func checkRedirect(raw string) (httpLocal bool, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil {
		return false, fmt.Errorf("%q: want an absolute URL without a fragment", raw)
	}
	switch {
	case u.Scheme == "https":
		return false, nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return true, nil
	}
	return false, fmt.Errorf("%q: want https (http only on localhost or 127.0.0.1)", raw)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authenticate compares secret with the client's in constant time.
func (c *client) authenticate(secret string) bool {
	if c.secretHash == nil || secret == "" {
		return false
	}
	h, _ := hex.DecodeString(auth.HashToken(secret))
	return subtle.ConstantTimeCompare(h, c.secretHash) == 1
}

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return c.redirects }
func (c *client) PostLogoutRedirectURIs() []string { return c.postLogout }

func (c *client) ApplicationType() op.ApplicationType {
	if c.secretHash == nil {
		return op.ApplicationTypeUserAgent
	}
	return op.ApplicationTypeWeb
}

func (c *client) AuthMethod() oidc.AuthMethod {
	if c.secretHash == nil {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic // client_secret_post works too (Config.AuthMethodPost)
}

func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}

func (c *client) LoginURL(id string) string           { return c.loginURL(id) }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return c.idTokenTTL }

// DevMode lets op accept http redirect URIs; New admits them only on loopback
// hosts, and op still requires an exact match.
func (c *client) DevMode() bool { return c.hasHTTPLocal }

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) IsScopeAllowed(scope string) bool { return slices.Contains(c.scopes, scope) }

// IDTokenUserinfoClaimsAssertion puts the profile claims (email, name, roles...)
// in the ID token too: Auth.js reads the profile from the ID token.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
