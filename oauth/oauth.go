// Package oauth signs people in with external identity providers: Google,
// Microsoft Entra ID, LinkedIn and GitHub, plus any OpenID Connect issuer (the
// development identity provider is used through NewOIDC). Each provider implements
// auth.Provider.
//
// Every sign-in uses the authorization code flow with state and a PKCE S256
// challenge; OpenID Connect providers also get a nonce, and their ID tokens are
// verified (signature against the provider's JWKS, issuer, audience, expiry, then
// the nonce) with github.com/coreos/go-oidc before anything in them is believed.
// golang.org/x/oauth2 redeems the codes.
//
// Constructing a provider never touches the network, so the service starts while a
// provider is unreachable: the real endpoints are written in the code, and where an
// issuer must be discovered (NewOIDC, a Microsoft tenant given by domain name) that
// happens at the first sign-in and is cached. A provider that cannot be reached
// fails that sign-in with auth.CodeUnavailable.
package oauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
)

// endpoints are an OpenID Connect provider's URLs.
type endpoints struct {
	// Issuer is the exact iss of the provider's ID tokens.
	Issuer      string
	AuthURL     string
	TokenURL    string
	JWKSURL     string
	UserInfoURL string
}

// DefaultTimeout bounds each request to a provider when the config gives no
// HTTPClient: a provider that hangs must not hold a sign-in for long.
const DefaultTimeout = 15 * time.Second

// signingAlgs are the ID token algorithms accepted: asymmetric ones only, never
// "none" or a MAC keyed with the client secret.
var signingAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512, oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.ES256, oidc.ES384, oidc.ES512, oidc.EdDSA,
}

func defaultClient(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return &http.Client{Timeout: DefaultTimeout}
}

// oidcCore is what the OpenID Connect providers share: the authorization URL with
// state, nonce and PKCE; the code exchange; ID token verification; userinfo.
type oidcCore struct {
	name, display          string
	clientID, clientSecret string
	redirectURL            string
	scopes                 []string // sign-in scopes, then the configured extra ones
	authStyle              oauth2.AuthStyle
	pkce                   bool
	nonceOptional          bool // LinkedIn: its ID tokens carry no nonce
	skipIssuerCheck        bool // Microsoft multi-tenant: the provider checks iss itself
	client                 *http.Client
	now                    func() time.Time
	static                 endpoints
	discoverFrom           string                 // issuer (or base) to discover missing endpoints from
	checkIssuer            func(iss string) error // for discovery: nil means iss must equal static.Issuer
	mu                     sync.Mutex
	resolved               *resolved
}

// resolved is a provider's complete set of endpoints and what is built from them.
type resolved struct {
	ep       endpoints
	conf     *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// resolve returns the provider's endpoints, discovering the missing ones the first
// time (and again after a failure).
func (c *oidcCore) resolve(ctx context.Context) (*resolved, error) {
	c.mu.Lock()
	r := c.resolved
	c.mu.Unlock()
	if r != nil {
		return r, nil
	}
	ep := c.static
	if ep.AuthURL == "" || ep.TokenURL == "" || ep.JWKSURL == "" || (ep.Issuer == "" && !c.skipIssuerCheck) {
		if c.discoverFrom == "" {
			return nil, fmt.Errorf("%s: endpoints incomplete and nothing to discover them from", c.name)
		}
		md, err := discover(ctx, c.client, c.discoverFrom)
		if err != nil {
			return nil, err
		}
		if c.checkIssuer != nil {
			err = c.checkIssuer(md.Issuer)
		} else if md.Issuer != ep.Issuer {
			err = fmt.Errorf("discovery at %s names issuer %q, want %q", c.discoverFrom, md.Issuer, ep.Issuer)
		}
		if err != nil {
			return nil, err
		}
		ep.Issuer = md.Issuer
		ep.AuthURL = or(ep.AuthURL, md.AuthURL)
		ep.TokenURL = or(ep.TokenURL, md.TokenURL)
		ep.JWKSURL = or(ep.JWKSURL, md.JWKSURL)
		ep.UserInfoURL = or(ep.UserInfoURL, md.UserInfoURL)
		if ep.AuthURL == "" || ep.TokenURL == "" || ep.JWKSURL == "" {
			return nil, fmt.Errorf("discovery at %s lacks the authorization, token or jwks endpoint", c.discoverFrom)
		}
	}
	r = &resolved{
		ep: ep,
		conf: &oauth2.Config{
			ClientID: c.clientID, ClientSecret: c.clientSecret, RedirectURL: c.redirectURL, Scopes: c.scopes,
			Endpoint: oauth2.Endpoint{AuthURL: ep.AuthURL, TokenURL: ep.TokenURL, AuthStyle: c.authStyle},
		},
		verifier: oidc.NewVerifier(ep.Issuer, &keySet{remote: oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), jwksClient(c.client)), ep.JWKSURL)},
			&oidc.Config{ClientID: c.clientID, SupportedSigningAlgs: signingAlgs, SkipIssuerCheck: c.skipIssuerCheck, Now: c.now}),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.resolved == nil {
		c.resolved = r
	}
	return c.resolved, nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// metadata is the part of an OpenID Connect discovery document we use.
type metadata struct {
	Issuer      string `json:"issuer"`
	AuthURL     string `json:"authorization_endpoint"`
	TokenURL    string `json:"token_endpoint"`
	JWKSURL     string `json:"jwks_uri"`
	UserInfoURL string `json:"userinfo_endpoint"`
}

// discover reads base's /.well-known/openid-configuration.
func discover(ctx context.Context, client *http.Client, base string) (*metadata, error) {
	u := strings.TrimSuffix(base, "/") + "/.well-known/openid-configuration"
	var md metadata
	if err := getJSON(ctx, client, u, "", &md); err != nil {
		return nil, fmt.Errorf("discover %s: %w", base, err)
	}
	return &md, nil
}

// discoveryTimeout bounds discovery when AuthCodeURL, which has no context, needs
// it.
const discoveryTimeout = 10 * time.Second

// authCodeURL returns the authorization URL for r. If the endpoints cannot be
// discovered it returns the callback with error=temporarily_unavailable, so the
// browser lands back on our callback, which reports the provider as unavailable.
func (c *oidcCore) authCodeURL(r auth.AuthCodeRequest, extra ...oauth2.AuthCodeOption) string {
	ctx, cancel := context.WithTimeout(context.Background(), discoveryTimeout)
	defer cancel()
	res, err := c.resolve(ctx)
	if err != nil {
		return errorRedirect(c.redirectURL, r.State, "temporarily_unavailable", c.display+" could not be reached")
	}
	opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("scope", strings.Join(mergeScopes(c.scopes, r.Scopes), " "))}
	if r.Nonce != "" {
		opts = append(opts, oidc.Nonce(r.Nonce))
	}
	if c.pkce {
		opts = append(opts, oauth2.S256ChallengeOption(r.Verifier))
	}
	if r.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", r.LoginHint))
	}
	return res.conf.AuthCodeURL(r.State, append(opts, extra...)...)
}

// errorRedirect is redirectURL with an OAuth error response (RFC 6749 4.1.2.1).
func errorRedirect(redirectURL, state, code, description string) string {
	u, err := url.Parse(redirectURL)
	if err != nil {
		return redirectURL
	}
	q := u.Query()
	q.Set("error", code)
	q.Set("error_description", description)
	q.Set("state", state)
	u.RawQuery = q.Encode()
	return u.String()
}

// exchanged is a redeemed code: the token response and its verified ID token.
type exchanged struct {
	token   *oauth2.Token
	idToken *oidc.IDToken
	claims  claims
	scopes  []string
}

// exchange redeems code and verifies the ID token, including its nonce.
func (c *oidcCore) exchange(ctx context.Context, code string, r auth.AuthCodeRequest) (*exchanged, error) {
	res, err := c.resolve(ctx)
	if err != nil {
		return nil, unavailable(c.display, err)
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.client)
	var opts []oauth2.AuthCodeOption
	if c.pkce {
		opts = append(opts, oauth2.VerifierOption(r.Verifier))
	}
	tok, err := res.conf.Exchange(ctx, code, opts...)
	if err != nil {
		return nil, tokenError(c.display, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, untrusted(c.display, errors.New("token response without id_token"))
	}
	var rep verifyReport
	idt, err := res.verifier.Verify(context.WithValue(ctx, verifyReportKey{}, &rep), raw)
	if err != nil {
		if rep.unreachable != nil {
			return nil, unavailable(c.display, fmt.Errorf("fetch signing keys: %w", rep.unreachable))
		}
		return nil, untrusted(c.display, fmt.Errorf("verify id token: %w", err))
	}
	if !(idt.Nonce == "" && c.nonceOptional) && (r.Nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(r.Nonce)) != 1) {
		return nil, untrusted(c.display, errors.New("id token nonce does not match the sign-in's"))
	}
	x := &exchanged{token: tok, idToken: idt, scopes: grantedScopes(tok, mergeScopes(c.scopes, r.Scopes))}
	if err := idt.Claims(&x.claims); err != nil {
		return nil, untrusted(c.display, fmt.Errorf("id token claims: %w", err))
	}
	if x.claims.Subject == "" {
		return nil, untrusted(c.display, errors.New("id token without sub"))
	}
	return x, nil
}

// standardProfile redeems code and maps the standard OpenID Connect claims (sub,
// email, email_verified, name, picture) into a profile, completing the email from
// userinfo when the ID token lacks it; a missing email is refused with
// missingEmail and hint.
func (c *oidcCore) standardProfile(ctx context.Context, code string, r auth.AuthCodeRequest, hint string) (*auth.Profile, error) {
	x, err := c.exchange(ctx, code, r)
	if err != nil {
		return nil, err
	}
	if err := c.fillFromUserInfo(ctx, x); err != nil {
		return nil, err
	}
	if x.claims.Email == "" {
		return nil, missingEmail(c.display, hint)
	}
	return &auth.Profile{
		Provider: c.name, Subject: x.claims.Subject, Email: x.claims.Email, EmailVerified: bool(x.claims.EmailVerified),
		Name: x.claims.name(), AvatarURL: x.claims.Picture, Scopes: x.scopes,
	}, nil
}

// fillFromUserInfo completes x's claims from the userinfo endpoint when the ID
// token lacks the email (some providers only put it there). The answer must be
// about the same subject.
func (c *oidcCore) fillFromUserInfo(ctx context.Context, x *exchanged) error {
	if x.claims.Email != "" {
		return nil
	}
	res, err := c.resolve(ctx)
	if err != nil {
		return unavailable(c.display, err)
	}
	if res.ep.UserInfoURL == "" {
		return nil
	}
	var ui claims
	if err := getJSON(ctx, c.client, res.ep.UserInfoURL, x.token.AccessToken, &ui); err != nil {
		return apiError(c.display, fmt.Errorf("userinfo: %w", err))
	}
	if ui.Subject != x.claims.Subject {
		return untrusted(c.display, fmt.Errorf("userinfo is about %q, the id token about %q", ui.Subject, x.claims.Subject))
	}
	x.claims.Email, x.claims.EmailVerified = ui.Email, ui.EmailVerified
	x.claims.Name = or(x.claims.Name, ui.Name)
	x.claims.Picture = or(x.claims.Picture, ui.Picture)
	return nil
}

// claims are the ID token and userinfo claims the providers map profiles from.
type claims struct {
	Subject       string   `json:"sub"`
	Email         string   `json:"email"`
	EmailVerified flexBool `json:"email_verified"`
	Name          string   `json:"name"`
	GivenName     string   `json:"given_name"`
	FamilyName    string   `json:"family_name"`
	Picture       string   `json:"picture"`
	// Microsoft Entra ID: the tenant, the object id in it, and whether the
	// email's domain is verified as the tenant's.
	TenantID string   `json:"tid"`
	ObjectID string   `json:"oid"`
	EDOV     flexBool `json:"xms_edov"`
}

// name is the person's name, from its parts if need be.
func (c claims) name() string {
	if c.Name != "" {
		return c.Name
	}
	return strings.TrimSpace(c.GivenName + " " + c.FamilyName)
}

// flexBool is a boolean claim that some providers send as a string ("true") or a
// number (1). Anything else, including absence, is false.
type flexBool bool

// UnmarshalJSON accepts true, "true", "1", 1 as true and every other value as
// false; it fails only on malformed JSON.
func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*b = flexBool(v)
	case string:
		*b = flexBool(strings.EqualFold(v, "true") || v == "1")
	case float64:
		*b = v == 1
	default:
		*b = false
	}
	return nil
}

// missingEmail is the error for a provider that shared no email address.
func missingEmail(display, what string) error {
	return auth.Errorf(auth.CodeInvalid, "%s did not share an email address with Hestami. %s", display, what)
}

// mergeScopes is a followed by b's scopes that are not in it, without empties.
func mergeScopes(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	for _, s := range slices.Concat(a, b) {
		if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// grantedScopes are the scopes the token response says were granted (space- or,
// for GitHub, comma-separated); the requested ones when it does not say (RFC 6749
// 5.1: scope is omitted when it equals the request).
func grantedScopes(tok *oauth2.Token, requested []string) []string {
	s, _ := tok.Extra("scope").(string)
	if strings.TrimSpace(s) == "" {
		return slices.Clone(requested)
	}
	return mergeScopes(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' }), nil)
}

// The errors people see. Causes go to the logs through auth.Error.Err.

func unavailable(display string, err error) error {
	return auth.Errorf(auth.CodeUnavailable, "We could not reach %s to finish signing you in. Try again in a moment, or use another sign-in method.", display).WithCause(err)
}

func untrusted(display string, err error) error {
	return auth.Errorf(auth.CodeUnauthorized, "We could not verify the answer from %s, so you are not signed in. Start the sign-in again; if it keeps happening, use another sign-in method.", display).WithCause(err)
}

func misconfigured(display string, err error) error {
	return auth.Errorf(auth.CodeInternal, "Sign-in with %s is not set up correctly on our side. Use another sign-in method, and tell support.", display).WithCause(err)
}

// tokenError maps a failed code exchange: the provider unreachable or failing is
// CodeUnavailable; a refused code (expired, used, PKCE verifier mismatch) is
// CodeUnauthorized; a refused client is our misconfiguration.
func tokenError(display string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		switch {
		case re.Response != nil && (re.Response.StatusCode >= 500 || re.Response.StatusCode == http.StatusTooManyRequests):
			return unavailable(display, err)
		case re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client" ||
			re.ErrorCode == "incorrect_client_credentials" || re.ErrorCode == "redirect_uri_mismatch":
			return misconfigured(display, err)
		}
		return auth.Errorf(auth.CodeUnauthorized, "%s did not accept the sign-in (the link expired or was used already). Start the sign-in again.", display).WithCause(err)
	}
	if unreachable(err) {
		return unavailable(display, err)
	}
	return untrusted(display, fmt.Errorf("token response: %w", err))
}

// unreachable reports whether err means the provider could not be reached or
// answered with a server error, rather than that its answer was wrong.
func unreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	var se *statusError
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) || (errors.As(err, &se) && se.temporary())
}

// apiError maps a failed API call (userinfo, GitHub's API).
func apiError(display string, err error) error {
	var se *statusError
	if errors.As(err, &se) && !se.temporary() {
		return untrusted(display, err)
	}
	if unreachable(err) {
		return unavailable(display, err)
	}
	return untrusted(display, err)
}

// statusError is an HTTP answer with an unexpected status.
type statusError struct {
	URL    string
	Status int
	Body   string
	// Limited: a 403 that is GitHub's rate limit, not a refusal.
	Limited bool
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: %d %s", e.URL, e.Status, e.Body)
}

// temporary: the provider is failing or rate-limiting us.
func (e *statusError) temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Limited
}

// getJSON GETs u (with the bearer token, if any) and decodes its JSON answer into
// v; a status other than 200 is a *statusError.
func getJSON(ctx context.Context, client *http.Client, u, token string, v any) error {
	return getJSONWith(ctx, client, u, token, nil, v)
}

// getJSONWith is getJSON with extra request headers.
func getJSONWith(ctx context.Context, client *http.Client, u, token string, h http.Header, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	for k, vs := range h {
		req.Header[k] = vs
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("GET %s: read: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{URL: u, Status: resp.StatusCode, Body: strings.TrimSpace(string(body[:min(len(body), 200)])),
			Limited: resp.StatusCode == http.StatusForbidden && (resp.Header.Get("X-RateLimit-Remaining") == "0" || resp.Header.Get("Retry-After") != "")}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", u, err)
	}
	return nil
}

// keySet is go-oidc's remote JWKS, reporting (through the context's verifyReport)
// when the keys could not be fetched, so an unreachable JWKS counts as the provider
// being unavailable rather than as a bad signature: go-oidc's own error does not
// keep the cause.
type keySet struct{ remote *oidc.RemoteKeySet }

type verifyReportKey struct{}

type verifyReport struct{ unreachable error }

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	if err != nil && unreachable(err) {
		if rep, ok := ctx.Value(verifyReportKey{}).(*verifyReport); ok {
			rep.unreachable = err
		}
	}
	return payload, err
}

// jwksClient is c, except that a server error from the JWKS endpoint is returned as
// an error (go-oidc would otherwise lose its status).
func jwksClient(c *http.Client) *http.Client {
	cc := *c
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cc.Transport = statusTransport{base}
	return &cc
}

type statusTransport struct{ base http.RoundTripper }

func (t statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err == nil && (resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests) {
		resp.Body.Close()
		return nil, &statusError{URL: req.URL.String(), Status: resp.StatusCode}
	}
	return resp, err
}
