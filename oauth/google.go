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

// Google's endpoints (https://accounts.google.com/.well-known/openid-configuration).
const (
	GoogleIssuer      = "https://accounts.google.com"
	GoogleAuthURL     = "https://accounts.google.com/o/oauth2/v2/auth"
	GoogleTokenURL    = "https://oauth2.googleapis.com/token"
	GoogleJWKSURL     = "https://www.googleapis.com/oauth2/v3/certs"
	GoogleUserInfoURL = "https://openidconnect.googleapis.com/v1/userinfo"
)

// GoogleConfig configures sign-in with Google.
type GoogleConfig struct {
	ClientID     string
	ClientSecret string
	// RedirectURL is our callback, registered in the Google Cloud console.
	RedirectURL string
	// Scopes are requested at every sign-in on top of openid email profile. A
	// feature that needs more (Calendar) asks for them in the sign-in itself
	// (auth.AuthCodeRequest.Scopes): Google then adds them to what the person
	// granted before (include_granted_scopes).
	Scopes []string
	// OfflineAccess asks for a refresh token (access_type=offline), for features
	// that call Google while the person is away. Off by default.
	OfflineAccess bool
	// Issuer, AuthURL, TokenURL, JWKSURL and UserInfoURL override Google's.
	Issuer, AuthURL, TokenURL, JWKSURL, UserInfoURL string
	// HTTPClient makes the requests to Google; default one with DefaultTimeout.
	HTTPClient *http.Client
	// Now is the clock ID tokens' expiry is checked against; default time.Now.
	Now func() time.Time
}

// Google signs people in with their Google account (OpenID Connect). The identity
// is Google's sub, never the email.
type Google struct {
	core    *oidcCore
	offline bool
}

var _ auth.Provider = (*Google)(nil)

// NewGoogle returns the Google provider. It does not contact Google.
func NewGoogle(cfg GoogleConfig) (*Google, error) {
	if errs := checkClient(cfg.ClientID, cfg.RedirectURL); len(errs) > 0 {
		return nil, fmt.Errorf("google: %w", errors.Join(errs...))
	}
	return &Google{offline: cfg.OfflineAccess, core: &oidcCore{
		name: "google", display: "Google",
		clientID: cfg.ClientID, clientSecret: cfg.ClientSecret, redirectURL: cfg.RedirectURL,
		scopes:    mergeScopes([]string{"openid", "email", "profile"}, cfg.Scopes),
		authStyle: oauth2.AuthStyleInParams, pkce: true,
		client: defaultClient(cfg.HTTPClient), now: cfg.Now,
		static: endpoints{
			Issuer: or(cfg.Issuer, GoogleIssuer), AuthURL: or(cfg.AuthURL, GoogleAuthURL), TokenURL: or(cfg.TokenURL, GoogleTokenURL),
			JWKSURL: or(cfg.JWKSURL, GoogleJWKSURL), UserInfoURL: or(cfg.UserInfoURL, GoogleUserInfoURL),
		},
	}}, nil
}

// Name implements auth.Provider.
func (g *Google) Name() string { return "google" }

// DisplayName implements auth.Provider.
func (g *Google) DisplayName() string { return "Google" }

// AuthCodeURL implements auth.Provider. It always asks Google to include the
// scopes granted before (incremental authorization), and for a refresh token only
// if the config says so.
func (g *Google) AuthCodeURL(r auth.AuthCodeRequest) string {
	opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("include_granted_scopes", "true")}
	if g.offline {
		opts = append(opts, oauth2.AccessTypeOffline)
	}
	return g.core.authCodeURL(r, opts...)
}

// Exchange implements auth.Provider: Subject is sub, EmailVerified is Google's
// email_verified, Scopes are all the scopes granted (the token's scope).
func (g *Google) Exchange(ctx context.Context, code string, r auth.AuthCodeRequest) (*auth.Profile, error) {
	return g.core.standardProfile(ctx, code, r, "Sign in again and allow Hestami to see your email address.")
}
