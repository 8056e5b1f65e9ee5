package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
)

// LinkedIn's OpenID Connect endpoints
// (https://www.linkedin.com/oauth/.well-known/openid-configuration).
const (
	LinkedInIssuer      = "https://www.linkedin.com/oauth"
	LinkedInAuthURL     = "https://www.linkedin.com/oauth/v2/authorization"
	LinkedInTokenURL    = "https://www.linkedin.com/oauth/v2/accessToken"
	LinkedInJWKSURL     = "https://www.linkedin.com/oauth/openid/jwks"
	LinkedInUserInfoURL = "https://api.linkedin.com/v2/userinfo"
)

// LinkedInConfig configures sign-in with LinkedIn.
type LinkedInConfig struct {
	ClientID     string
	ClientSecret string
	// RedirectURL is our callback, registered in the LinkedIn developer portal.
	RedirectURL string
	// Scopes are requested at every sign-in on top of openid profile email.
	Scopes []string
	// PKCE sends a PKCE challenge and verifier. Leave it off unless LinkedIn has
	// enabled PKCE for the app: for ordinary web apps LinkedIn's token endpoint
	// refuses a code_verifier (invalid_client).
	PKCE bool
	// Issuer, AuthURL, TokenURL, JWKSURL and UserInfoURL override LinkedIn's.
	Issuer, AuthURL, TokenURL, JWKSURL, UserInfoURL string
	// HTTPClient makes the requests to LinkedIn; default one with DefaultTimeout.
	HTTPClient *http.Client
	// Now is the clock ID tokens' expiry is checked against; default time.Now.
	Now func() time.Time
}

// LinkedIn signs people in with "Sign In with LinkedIn using OpenID Connect"
// (scopes openid profile email). LinkedIn retired the older Sign In with LinkedIn
// and its r_liteprofile and r_emailaddress scopes in 2023; they are not used.
//
// LinkedIn's differences from plain OpenID Connect, handled here: its token
// endpoint takes the client credentials in the POST body only; it does not echo
// the nonce in its ID tokens (so the nonce is checked only when present: the
// state, bound to the browser, and the client secret protect the code); PKCE is
// refused unless enabled for the app (LinkedInConfig.PKCE); and email_verified may
// come as the string "true". The identity is LinkedIn's sub.
type LinkedIn struct{ core *oidcCore }

var _ auth.Provider = (*LinkedIn)(nil)

// NewLinkedIn returns the LinkedIn provider. It does not contact LinkedIn.
func NewLinkedIn(cfg LinkedInConfig) (*LinkedIn, error) {
	if errs := checkClient(cfg.ClientID, cfg.RedirectURL); len(errs) > 0 {
		return nil, fmt.Errorf("linkedin: %w", errors.Join(errs...))
	}
	return &LinkedIn{core: &oidcCore{
		name: "linkedin", display: "LinkedIn",
		clientID: cfg.ClientID, clientSecret: cfg.ClientSecret, redirectURL: cfg.RedirectURL,
		scopes:    mergeScopes([]string{"openid", "profile", "email"}, cfg.Scopes),
		authStyle: oauth2.AuthStyleInParams, pkce: cfg.PKCE, nonceOptional: true,
		client: defaultClient(cfg.HTTPClient), now: cfg.Now,
		static: endpoints{
			Issuer: or(cfg.Issuer, LinkedInIssuer), AuthURL: or(cfg.AuthURL, LinkedInAuthURL), TokenURL: or(cfg.TokenURL, LinkedInTokenURL),
			JWKSURL: or(cfg.JWKSURL, LinkedInJWKSURL), UserInfoURL: or(cfg.UserInfoURL, LinkedInUserInfoURL),
		},
	}}, nil
}

// Name implements auth.Provider.
func (l *LinkedIn) Name() string { return "linkedin" }

// DisplayName implements auth.Provider.
func (l *LinkedIn) DisplayName() string { return "LinkedIn" }

// AuthCodeURL implements auth.Provider.
func (l *LinkedIn) AuthCodeURL(r auth.AuthCodeRequest) string { return l.core.authCodeURL(r) }

// Exchange implements auth.Provider: Subject is sub; the email and
// email_verified come from the ID token, or from userinfo when it lacks them.
func (l *LinkedIn) Exchange(ctx context.Context, code string, r auth.AuthCodeRequest) (*auth.Profile, error) {
	return l.core.standardProfile(ctx, code, r, "Add an email address to your LinkedIn account, or allow Hestami to see it, then sign in again.")
}
