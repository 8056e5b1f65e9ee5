package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
)

// GitHub's endpoints. GitHub Enterprise Server has https://HOST/login/oauth/...
// and its API at https://HOST/api/v3.
const (
	GitHubAuthURL  = "https://github.com/login/oauth/authorize"
	GitHubTokenURL = "https://github.com/login/oauth/access_token"
	GitHubAPIURL   = "https://api.github.com"
)

// GitHubConfig configures sign-in with GitHub (an OAuth app).
type GitHubConfig struct {
	ClientID     string
	ClientSecret string
	// RedirectURL is our callback, registered as the OAuth app's callback URL.
	RedirectURL string
	// Organization, if set, admits only active members of this GitHub
	// organization (it adds the read:org scope).
	Organization string
	// Scopes are requested on top of read:user user:email.
	Scopes []string
	// AuthURL, TokenURL and APIURL override GitHub's (GitHub Enterprise Server).
	AuthURL, TokenURL, APIURL string
	// HTTPClient makes the requests to GitHub; default one with DefaultTimeout.
	HTTPClient *http.Client
}

// GitHub signs people in with their GitHub account. GitHub speaks OAuth 2.0, not
// OpenID Connect: there is no ID token (and so no nonce); the code is protected
// by the state and PKCE, and the profile comes from GitHub's API with the access
// token. The identity is the numeric user id, which survives renames; the email
// is the account's primary email, and only if GitHub has verified it.
type GitHub struct {
	conf   *oauth2.Config
	api    string
	org    string
	client *http.Client
}

var _ auth.Provider = (*GitHub)(nil)

// NewGitHub returns the GitHub provider. It does not contact GitHub.
func NewGitHub(cfg GitHubConfig) (*GitHub, error) {
	errs := checkClient(cfg.ClientID, cfg.RedirectURL)
	api := strings.TrimSuffix(or(cfg.APIURL, GitHubAPIURL), "/")
	if !absoluteURL(api) {
		errs = append(errs, fmt.Errorf("APIURL %q: want a URL such as %s", cfg.APIURL, GitHubAPIURL))
	}
	if strings.ContainsAny(cfg.Organization, "/?#% ") {
		errs = append(errs, fmt.Errorf("Organization %q: want the organization's login, as in github.com/LOGIN", cfg.Organization))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("github: %w", errors.Join(errs...))
	}
	scopes := []string{"read:user", "user:email"}
	if cfg.Organization != "" {
		scopes = append(scopes, "read:org")
	}
	return &GitHub{
		conf: &oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, RedirectURL: cfg.RedirectURL,
			Scopes: mergeScopes(scopes, cfg.Scopes),
			Endpoint: oauth2.Endpoint{
				AuthURL: or(cfg.AuthURL, GitHubAuthURL), TokenURL: or(cfg.TokenURL, GitHubTokenURL),
				AuthStyle: oauth2.AuthStyleInParams,
			},
		},
		api: api, org: cfg.Organization, client: defaultClient(cfg.HTTPClient),
	}, nil
}

// Name implements auth.Provider.
func (g *GitHub) Name() string { return "github" }

// DisplayName implements auth.Provider.
func (g *GitHub) DisplayName() string { return "GitHub" }

// AuthCodeURL implements auth.Provider. r.Nonce is not used: GitHub has no ID
// token to carry it.
func (g *GitHub) AuthCodeURL(r auth.AuthCodeRequest) string {
	opts := []oauth2.AuthCodeOption{
		oauth2.SetAuthURLParam("scope", strings.Join(mergeScopes(g.conf.Scopes, r.Scopes), " ")),
		oauth2.S256ChallengeOption(r.Verifier),
	}
	if r.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login", r.LoginHint))
	}
	return g.conf.AuthCodeURL(r.State, opts...)
}

// githubUser is the part of GET /user we use.
type githubUser struct {
	ID        int64  `json:"id"`
	Login     string `json:"login"`
	Name      string `json:"name"`
	AvatarURL string `json:"avatar_url"`
}

// githubEmail is one entry of GET /user/emails.
type githubEmail struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

// Exchange implements auth.Provider: Subject is the numeric user id, Email the
// primary email, which must be verified (else CodeInvalid), and with an
// Organization configured the person must be an active member (else
// CodeForbidden).
func (g *GitHub) Exchange(ctx context.Context, code string, r auth.AuthCodeRequest) (*auth.Profile, error) {
	tok, err := g.conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, g.client), code, oauth2.VerifierOption(r.Verifier))
	if err != nil {
		return nil, tokenError("GitHub", err)
	}
	var u githubUser
	if err := g.get(ctx, tok, "/user", &u); err != nil {
		return nil, err
	}
	if u.ID <= 0 {
		return nil, untrusted("GitHub", errors.New("GET /user without an id"))
	}
	var emails []githubEmail
	if err := g.get(ctx, tok, "/user/emails", &emails); err != nil {
		return nil, err
	}
	var email string
	for _, e := range emails {
		if e.Primary && e.Verified && e.Email != "" {
			email = e.Email
		}
	}
	if email == "" {
		return nil, auth.Errorf(auth.CodeInvalid, "Your GitHub account's primary email address is not verified. Verify it at GitHub (Settings, Emails), then sign in again.")
	}
	if g.org != "" {
		if err := g.checkMember(ctx, tok); err != nil {
			return nil, err
		}
	}
	return &auth.Profile{
		Provider: "github", Subject: strconv.FormatInt(u.ID, 10), Email: email, EmailVerified: true,
		Name: or(u.Name, u.Login), AvatarURL: u.AvatarURL,
		Scopes: grantedScopes(tok, mergeScopes(g.conf.Scopes, r.Scopes)),
	}, nil
}

// checkMember requires an active membership of the configured organization.
func (g *GitHub) checkMember(ctx context.Context, tok *oauth2.Token) error {
	var m struct {
		State string `json:"state"`
	}
	err := g.get(ctx, tok, "/user/memberships/orgs/"+url.PathEscape(g.org), &m)
	switch {
	case err == nil && m.State == "active":
		return nil
	case err == nil && m.State == "pending":
		return auth.Errorf(auth.CodeForbidden, "Your invitation to the GitHub organization %s is still pending. Accept it at GitHub, then sign in again.", g.org)
	case err == nil, isStatus(err, http.StatusNotFound, http.StatusForbidden):
		// 404: not a member. 403: the organization has not approved Hestami.
		return auth.Errorf(auth.CodeForbidden, "Only members of the GitHub organization %s can sign in with GitHub. Ask an owner of %s to add you (or to approve Hestami's access), then sign in again.", g.org, g.org).WithCause(err)
	}
	return err
}

func isStatus(err error, codes ...int) bool {
	var se *statusError
	if !errors.As(err, &se) || se.temporary() {
		return false
	}
	for _, c := range codes {
		if se.Status == c {
			return true
		}
	}
	return false
}

var githubHeaders = http.Header{
	"Accept":               {"application/vnd.github+json"},
	"User-Agent":           {"hestami"},
	"X-Github-Api-Version": {"2022-11-28"},
}

// get GETs path from GitHub's API into v, mapping failures to auth errors.
func (g *GitHub) get(ctx context.Context, tok *oauth2.Token, path string, v any) error {
	if err := getJSONWith(ctx, g.client, g.api+path, tok.AccessToken, githubHeaders, v); err != nil {
		return apiError("GitHub", err)
	}
	return nil
}
