package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
)

// MicrosoftAuthority is Microsoft Entra ID's sign-in host in the global cloud.
// Sovereign clouds have their own: https://login.microsoftonline.us (US
// Government), https://login.chinacloudapi.cn (China).
const MicrosoftAuthority = "https://login.microsoftonline.com"

// The multi-tenant modes of MicrosoftConfig.Tenant.
const (
	MicrosoftCommon        = "common"        // work, school and personal accounts
	MicrosoftOrganizations = "organizations" // work and school accounts
	MicrosoftConsumers     = "consumers"     // personal accounts
)

// MicrosoftConfig configures sign-in with Microsoft Entra ID (the v2.0 endpoint).
type MicrosoftConfig struct {
	ClientID     string
	ClientSecret string
	// RedirectURL is our callback, registered in the app registration.
	RedirectURL string
	// Tenant is who may sign in: one tenant, by id (a GUID) or by one of its
	// verified domains (contoso.com); or MicrosoftOrganizations,
	// MicrosoftCommon (the default) or MicrosoftConsumers.
	Tenant string
	// AllowedTenants are the tenant ids (GUIDs) whose accounts may sign in; empty:
	// any tenant the Tenant mode admits.
	AllowedTenants []string
	// Authority is the sign-in host; default MicrosoftAuthority.
	Authority string
	// Scopes are requested at every sign-in on top of openid profile email.
	Scopes []string
	// AuthURL, TokenURL and JWKSURL override the ones derived from Authority and
	// Tenant.
	AuthURL, TokenURL, JWKSURL string
	// HTTPClient makes the requests to Microsoft; default one with DefaultTimeout.
	HTTPClient *http.Client
	// Now is the clock ID tokens' expiry is checked against; default time.Now.
	Now func() time.Time
}

// Microsoft signs people in with Microsoft Entra ID work or school accounts (and
// personal Microsoft accounts in the common and consumers modes).
//
// The identity is tid:oid, the tenant and the account's object id in it, which
// never change; never the email or preferred_username, which tenant
// administrators (and, for some accounts, their owners) can set to anything: the
// "nOAuth" account takeover. For the same reason the email counts as verified only
// when the token carries xms_edov=true, Microsoft's statement that the email's
// domain is verified as owned by the tenant.
//
// Every ID token's issuer must be {Authority}/{tid}/v2.0 for the token's own tid,
// and the tid must be the configured tenant or in AllowedTenants.
type Microsoft struct {
	core      *oidcCore
	authority string
	allowed   []string // lower-case tenant ids; empty: any
}

var _ auth.Provider = (*Microsoft)(nil)

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

var domainRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+$`)

// NewMicrosoft returns the Microsoft provider. It does not contact Microsoft; a
// tenant given by domain name is looked up at the first sign-in.
func NewMicrosoft(cfg MicrosoftConfig) (*Microsoft, error) {
	errs := checkClient(cfg.ClientID, cfg.RedirectURL)
	authority := strings.TrimSuffix(or(cfg.Authority, MicrosoftAuthority), "/")
	if !absoluteURL(authority) {
		errs = append(errs, fmt.Errorf("Authority %q: want a URL such as %s", cfg.Authority, MicrosoftAuthority))
	}
	tenant := strings.ToLower(or(cfg.Tenant, MicrosoftCommon))
	multi := tenant == MicrosoftCommon || tenant == MicrosoftOrganizations || tenant == MicrosoftConsumers
	if !multi && !guidRE.MatchString(tenant) && !domainRE.MatchString(tenant) {
		errs = append(errs, fmt.Errorf("Tenant %q: want a tenant id (GUID), a verified domain (contoso.com), organizations or common", cfg.Tenant))
	}
	var allowed []string
	for _, t := range cfg.AllowedTenants {
		if !guidRE.MatchString(t) {
			errs = append(errs, fmt.Errorf("AllowedTenants: %q is not a tenant id (a GUID, as shown in Entra ID's overview)", t))
		}
		allowed = append(allowed, strings.ToLower(t))
	}
	if guidRE.MatchString(tenant) && len(allowed) > 0 && !slices.Contains(allowed, tenant) {
		errs = append(errs, fmt.Errorf("AllowedTenants does not include the Tenant %s: nobody could sign in", tenant))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("microsoft: %w", errors.Join(errs...))
	}
	m := &Microsoft{authority: authority, allowed: allowed}
	base := authority + "/" + tenant
	core := &oidcCore{
		name: "microsoft", display: "Microsoft",
		clientID: cfg.ClientID, clientSecret: cfg.ClientSecret, redirectURL: cfg.RedirectURL,
		scopes:    mergeScopes([]string{"openid", "profile", "email"}, cfg.Scopes),
		authStyle: oauth2.AuthStyleInParams, pkce: true,
		client: defaultClient(cfg.HTTPClient), now: cfg.Now,
		static: endpoints{
			AuthURL:  or(cfg.AuthURL, base+"/oauth2/v2.0/authorize"),
			TokenURL: or(cfg.TokenURL, base+"/oauth2/v2.0/token"),
			JWKSURL:  or(cfg.JWKSURL, base+"/discovery/v2.0/keys"),
		},
	}
	switch {
	case multi:
		// One issuer per tenant: Exchange checks iss against the token's tid.
		core.skipIssuerCheck = true
	case guidRE.MatchString(tenant):
		core.static.Issuer = m.issuer(tenant)
	default:
		// A domain: its tenant id (in the issuer) is found by discovery.
		core.discoverFrom = base + "/v2.0"
		core.checkIssuer = func(iss string) error {
			tid := strings.TrimSuffix(strings.TrimPrefix(iss, authority+"/"), "/v2.0")
			if !guidRE.MatchString(tid) || iss != m.issuer(tid) {
				return fmt.Errorf("discovery for tenant %s names issuer %q, want %s/{tenant id}/v2.0", tenant, iss, authority)
			}
			if len(m.allowed) > 0 && !slices.Contains(m.allowed, strings.ToLower(tid)) {
				return fmt.Errorf("tenant %s is %s, which AllowedTenants does not include", tenant, tid)
			}
			return nil
		}
	}
	m.core = core
	return m, nil
}

func (m *Microsoft) issuer(tid string) string { return m.authority + "/" + tid + "/v2.0" }

// Name implements auth.Provider.
func (m *Microsoft) Name() string { return "microsoft" }

// DisplayName implements auth.Provider.
func (m *Microsoft) DisplayName() string { return "Microsoft" }

// AuthCodeURL implements auth.Provider.
func (m *Microsoft) AuthCodeURL(r auth.AuthCodeRequest) string { return m.core.authCodeURL(r) }

// Exchange implements auth.Provider: Subject is tid:oid, Tenant is tid, and the
// email is verified only with xms_edov.
func (m *Microsoft) Exchange(ctx context.Context, code string, r auth.AuthCodeRequest) (*auth.Profile, error) {
	x, err := m.core.exchange(ctx, code, r)
	if err != nil {
		return nil, err
	}
	c := x.claims
	if !guidRE.MatchString(c.TenantID) || c.ObjectID == "" {
		return nil, untrusted("Microsoft", fmt.Errorf("id token without tid or oid (tid %q, oid %q)", c.TenantID, c.ObjectID))
	}
	if x.idToken.Issuer != m.issuer(c.TenantID) {
		return nil, untrusted("Microsoft", fmt.Errorf("id token of tenant %s issued by %q, want %q", c.TenantID, x.idToken.Issuer, m.issuer(c.TenantID)))
	}
	if len(m.allowed) > 0 && !slices.Contains(m.allowed, strings.ToLower(c.TenantID)) {
		return nil, auth.Errorf(auth.CodeForbidden, "Accounts of your organization's Microsoft directory cannot sign in to Hestami. Sign in with another account, or ask your administrator to contact us.").
			WithCause(fmt.Errorf("tenant %s not allowed", c.TenantID))
	}
	if c.Email == "" {
		return nil, missingEmail("Microsoft", "Ask your administrator to give your account an email address, or use another sign-in method.")
	}
	return &auth.Profile{
		Provider: "microsoft", Subject: c.TenantID + ":" + c.ObjectID, Tenant: c.TenantID,
		Email: c.Email, EmailVerified: bool(c.EDOV), Name: c.name(), Scopes: x.scopes,
	}, nil
}
