package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"time"

	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
)

// OIDCConfig configures a provider that speaks standard OpenID Connect, found
// through its issuer's discovery document (the development identity provider,
// Keycloak, Okta...).
type OIDCConfig struct {
	// Name is the provider's key in URLs and identities ("dev"); DisplayName is
	// its name for people ("Development sign-in").
	Name        string
	DisplayName string
	// Issuer is the issuer URL, exactly as in its ID tokens. The endpoints are
	// read from {Issuer}/.well-known/openid-configuration at the first sign-in,
	// except those set below.
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is our callback registered with the provider.
	RedirectURL string
	// Scopes are the sign-in scopes; default openid email profile. openid is
	// always requested.
	Scopes []string
	// AuthURL, TokenURL, JWKSURL and UserInfoURL override the discovered ones.
	AuthURL, TokenURL, JWKSURL, UserInfoURL string
	// HTTPClient makes the requests to the provider; default one with
	// DefaultTimeout.
	HTTPClient *http.Client
	// Now is the clock ID tokens' expiry is checked against; default time.Now.
	Now func() time.Time
}

// OIDC is a generic OpenID Connect provider.
type OIDC struct{ core *oidcCore }

var _ auth.Provider = (*OIDC)(nil)

// NewOIDC returns the provider cfg describes. It does not contact the issuer.
func NewOIDC(cfg OIDCConfig) (*OIDC, error) {
	var errs []error
	if !nameRE.MatchString(cfg.Name) {
		errs = append(errs, fmt.Errorf("Name %q: want a lower-case key such as dev", cfg.Name))
	}
	if !absoluteURL(cfg.Issuer) {
		errs = append(errs, fmt.Errorf("Issuer %q: want an absolute URL such as https://idp.example", cfg.Issuer))
	}
	errs = append(errs, checkClient(cfg.ClientID, cfg.RedirectURL)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("oidc provider %s: %w", cfg.Name, errors.Join(errs...))
	}
	scopes := cfg.Scopes
	if len(scopes) == 0 {
		scopes = []string{"openid", "email", "profile"}
	}
	if !slices.Contains(scopes, "openid") {
		scopes = append([]string{"openid"}, scopes...)
	}
	return &OIDC{core: &oidcCore{
		name: cfg.Name, display: or(cfg.DisplayName, cfg.Name),
		clientID: cfg.ClientID, clientSecret: cfg.ClientSecret, redirectURL: cfg.RedirectURL,
		scopes: mergeScopes(scopes, nil), authStyle: oauth2.AuthStyleInHeader, pkce: true,
		client: defaultClient(cfg.HTTPClient), now: cfg.Now,
		static:       endpoints{Issuer: cfg.Issuer, AuthURL: cfg.AuthURL, TokenURL: cfg.TokenURL, JWKSURL: cfg.JWKSURL, UserInfoURL: cfg.UserInfoURL},
		discoverFrom: cfg.Issuer,
	}}, nil
}

// Name implements auth.Provider.
func (p *OIDC) Name() string { return p.core.name }

// DisplayName implements auth.Provider.
func (p *OIDC) DisplayName() string { return p.core.display }

// AuthCodeURL implements auth.Provider. If the issuer cannot be discovered, it
// returns our callback with error=temporarily_unavailable.
func (p *OIDC) AuthCodeURL(r auth.AuthCodeRequest) string { return p.core.authCodeURL(r) }

// Exchange implements auth.Provider: the subject is the ID token's sub; the email
// comes from the ID token, else from userinfo, and is required.
func (p *OIDC) Exchange(ctx context.Context, code string, r auth.AuthCodeRequest) (*auth.Profile, error) {
	return p.core.standardProfile(ctx, code, r, "Allow access to your email address when you sign in, then try again.")
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

func absoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// checkClient reports what is wrong with a client registration.
func checkClient(clientID, redirectURL string) []error {
	var errs []error
	if clientID == "" {
		errs = append(errs, errors.New("ClientID is empty: register Hestami with the provider and set its client id"))
	}
	if !absoluteURL(redirectURL) {
		errs = append(errs, fmt.Errorf("RedirectURL %q: want our absolute callback URL, as registered with the provider", redirectURL))
	}
	return errs
}
