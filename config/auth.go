package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Auth configures `hestami auth serve`, the sign-in service (docs/auth.md).
type Auth struct {
	// DatabaseURL is the service's PostgreSQL (HESTAMI_DATABASE_URL); empty: the
	// libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE).
	DatabaseURL string `yaml:"database_url"`
	// PublicURL is where browsers reach the service (https://auth.hestami.example):
	// provider callbacks and the OpenID Connect issuer derive from it.
	PublicURL string `yaml:"public_url"`
	// Listen is the address auth serve listens on (--listen overrides it).
	Listen string `yaml:"listen"`
	// Secret keys the service's form tokens (HESTAMI_AUTH_SECRET or
	// HESTAMI_AUTH_SECRET_FILE); at least 32 characters. Replicas share it.
	Secret string `yaml:"secret"`
	// DevMode enables the development identity provider (hestami dev sets it).
	// Never in production: it signs anyone in without a password.
	DevMode bool `yaml:"dev_mode"`
	// Migrate applies the schema migrations at start (under a lock, so replicas
	// can start together).
	Migrate bool `yaml:"migrate"`
	// ReturnOrigins are the frontend origins a sign-in may return to, and that
	// may send state-changing requests (https://app.hestami.example).
	ReturnOrigins []string `yaml:"return_origins"`
	// TrustedProxies are the reverse proxies (CIDR) whose X-Forwarded-For is
	// believed for the client IP.
	TrustedProxies []string      `yaml:"trusted_proxies"`
	Sessions       AuthSessions  `yaml:"sessions"`
	Providers      AuthProviders `yaml:"providers"`
	OIDC           AuthOIDC      `yaml:"oidc"`
	MFA            AuthMFA       `yaml:"mfa"`
	// Email sends people their codes and notices (to is not used: each mail goes
	// to its person).
	Email *Email `yaml:"email"`
}

// AuthSessions are the session lifetimes, by user type.
type AuthSessions struct {
	IdleTimeout          time.Duration `yaml:"idle_timeout"`
	AbsoluteTimeout      time.Duration `yaml:"absolute_timeout"`
	StaffIdleTimeout     time.Duration `yaml:"staff_idle_timeout"`
	StaffAbsoluteTimeout time.Duration `yaml:"staff_absolute_timeout"`
}

// AuthProviders are the identity providers people sign in with; each is on when
// its client id is set.
type AuthProviders struct {
	Google    OAuthProvider `yaml:"google"`
	Microsoft OAuthProvider `yaml:"microsoft"`
	LinkedIn  OAuthProvider `yaml:"linkedin"`
	GitHub    OAuthProvider `yaml:"github"`
}

// OAuthProvider is one provider's registration and, for tests, staging tenants
// and sovereign clouds, its endpoints.
type OAuthProvider struct {
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// UserTypes limits who may sign in with it (GitHub: [staff]); empty: all.
	UserTypes []string `yaml:"user_types"`
	// Issuer (OIDC providers) or, for Microsoft, the authority host
	// (https://login.microsoftonline.com); empty: the provider's real one.
	Issuer string `yaml:"issuer"`
	// AuthURL, TokenURL, JWKSURL, UserInfoURL and APIURL (GitHub's API) override
	// single endpoints.
	AuthURL     string `yaml:"auth_url"`
	TokenURL    string `yaml:"token_url"`
	JWKSURL     string `yaml:"jwks_url"`
	UserInfoURL string `yaml:"userinfo_url"`
	APIURL      string `yaml:"api_url"`
	// Tenant (Microsoft): a tenant id or domain for single-tenant sign-in, or
	// "organizations" / "common"; AllowedTenants restricts the last two.
	Tenant         string   `yaml:"tenant"`
	AllowedTenants []string `yaml:"allowed_tenants"`
	// Organization (GitHub): only members of this organization may sign in.
	Organization string `yaml:"organization"`
}

// Enabled reports whether the provider is configured.
func (p OAuthProvider) Enabled() bool { return p.ClientID != "" }

// AuthOIDC configures the OpenID Connect provider the frontend signs in through.
type AuthOIDC struct {
	// SigningKeyFile is a PEM private key for ID tokens; empty: one is generated
	// and kept in the database.
	SigningKeyFile  string        `yaml:"signing_key_file"`
	AccessTokenTTL  time.Duration `yaml:"access_token_ttl"`
	RefreshTokenTTL time.Duration `yaml:"refresh_token_ttl"`
	Clients         []OIDCClient  `yaml:"clients"`
}

// OIDCClient is a first-party application (the Next.js frontend).
type OIDCClient struct {
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// Secret or SecretFile: a confidential client's secret; neither: a public
	// client (PKCE only).
	Secret                 string   `yaml:"secret"`
	SecretFile             string   `yaml:"secret_file"`
	RedirectURIs           []string `yaml:"redirect_uris"`
	PostLogoutRedirectURIs []string `yaml:"post_logout_redirect_uris"`
}

// DefaultAuth is the auth service's default configuration.
func DefaultAuth() Auth {
	return Auth{
		PublicURL: "http://localhost:8080",
		Listen:    "127.0.0.1:8080",
		Migrate:   true,
		Sessions: AuthSessions{
			IdleTimeout: 7 * 24 * time.Hour, AbsoluteTimeout: 30 * 24 * time.Hour,
			StaffIdleTimeout: time.Hour, StaffAbsoluteTimeout: 12 * time.Hour,
		},
		OIDC: AuthOIDC{AccessTokenTTL: 15 * time.Minute, RefreshTokenTTL: 30 * 24 * time.Hour},
		MFA:  DefaultAuthMFA(),
	}
}

// authEnv reads the auth service's environment variables.
func (a *Auth) loadEnv(str func(string, *string), list func(string, *[]string), boolean func(string, *bool)) {
	str("HESTAMI_DATABASE_URL", &a.DatabaseURL)
	str("HESTAMI_AUTH_PUBLIC_URL", &a.PublicURL)
	str("HESTAMI_AUTH_LISTEN", &a.Listen)
	str("HESTAMI_AUTH_SECRET", &a.Secret)
	boolean("HESTAMI_AUTH_DEV_MODE", &a.DevMode)
	list("HESTAMI_AUTH_RETURN_ORIGINS", &a.ReturnOrigins)
	list("HESTAMI_AUTH_TRUSTED_PROXIES", &a.TrustedProxies)
	for name, p := range map[string]*OAuthProvider{"GOOGLE": &a.Providers.Google, "MICROSOFT": &a.Providers.Microsoft,
		"LINKEDIN": &a.Providers.LinkedIn, "GITHUB": &a.Providers.GitHub} {
		str("HESTAMI_"+name+"_CLIENT_ID", &p.ClientID)
		str("HESTAMI_"+name+"_CLIENT_SECRET", &p.ClientSecret)
	}
	str("HESTAMI_MICROSOFT_TENANT", &a.Providers.Microsoft.Tenant)
	list("HESTAMI_MICROSOFT_ALLOWED_TENANTS", &a.Providers.Microsoft.AllowedTenants)
	str("HESTAMI_GITHUB_ORGANIZATION", &a.Providers.GitHub.Organization)
	a.MFA.loadEnv(str)
	daemon := BackupDaemonClient{ClientID: DefaultDaemon().Auth.ClientID}
	str("HESTAMI_AUTH_BACKUP_DAEMON_URL", &daemon.URL)
	str("HESTAMI_AUTH_BACKUP_DAEMON_CLIENT_ID", &daemon.ClientID)
	str("HESTAMI_AUTH_BACKUP_DAEMON_CLIENT_SECRET_FILE", &daemon.SecretFile)
	if daemon.URL != "" {
		a.RegisterBackupDaemon(daemon)
	}
}

// BackupDaemonClient is the backup daemon's registration at the auth service,
// as the environment gives it (HESTAMI_AUTH_BACKUP_DAEMON_*), so that a
// deployment needs no configuration file for it.
type BackupDaemonClient struct {
	// URL is where browsers reach the daemon: its daemon.auth.public_url.
	URL string
	// ClientID is its daemon.auth.client_id (default backup-daemon).
	ClientID string
	// SecretFile holds the client's secret, the daemon's
	// daemon.auth.client_secret_file ("": a public client, PKCE only).
	SecretFile string
}

// RegisterBackupDaemon adds d to the OpenID Connect clients, with redirect URI
// d.URL + "/callback" (where the daemon's sign-in comes back), replacing a
// client of the same id from the file, and adds d.URL's origin to the return
// origins (a step-up's way back to the daemon).
func (a *Auth) RegisterBackupDaemon(d BackupDaemonClient) {
	base := strings.TrimRight(d.URL, "/")
	c := OIDCClient{ID: d.ClientID, Name: "Backup daemon", SecretFile: d.SecretFile, RedirectURIs: []string{base + "/callback"}}
	if i := slices.IndexFunc(a.OIDC.Clients, func(o OIDCClient) bool { return o.ID == c.ID }); i >= 0 {
		a.OIDC.Clients[i] = c
	} else {
		a.OIDC.Clients = append(a.OIDC.Clients, c)
	}
	if u, err := url.Parse(base); err == nil && u.Scheme != "" && u.Host != "" {
		origin := u.Scheme + "://" + u.Host
		if !slices.Contains(a.ReturnOrigins, origin) {
			a.ReturnOrigins = append(a.ReturnOrigins, origin)
		}
	}
}

// validate reports the auth section's problems. Secrets are checked by
// ValidateServe, since only auth serve needs them.
func (a Auth) validate(bad func(field, format string, args ...any)) {
	if u, err := url.Parse(a.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" && u.Path != "/" {
		bad("auth.public_url", "%q: want an origin such as https://auth.hestami.example", a.PublicURL)
	}
	for i, o := range a.ReturnOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			bad(fmt.Sprintf("auth.return_origins[%d]", i), "%q: want an origin such as https://app.hestami.example", o)
		}
	}
	for i, p := range a.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("auth.trusted_proxies[%d]", i), "%q: want a CIDR such as 10.0.0.0/8", p)
		}
	}
	for field, d := range map[string]time.Duration{"auth.sessions.idle_timeout": a.Sessions.IdleTimeout,
		"auth.sessions.absolute_timeout": a.Sessions.AbsoluteTimeout, "auth.sessions.staff_idle_timeout": a.Sessions.StaffIdleTimeout,
		"auth.sessions.staff_absolute_timeout": a.Sessions.StaffAbsoluteTimeout, "auth.oidc.access_token_ttl": a.OIDC.AccessTokenTTL,
		"auth.oidc.refresh_token_ttl": a.OIDC.RefreshTokenTTL} {
		if d <= 0 {
			bad(field, "%s: want a positive duration, e.g. 12h", d)
		}
	}
	for name, p := range map[string]OAuthProvider{"google": a.Providers.Google, "microsoft": a.Providers.Microsoft,
		"linkedin": a.Providers.LinkedIn, "github": a.Providers.GitHub} {
		for i, t := range p.UserTypes {
			if !slices.Contains([]string{"staff", "owner", "provider"}, t) {
				bad(fmt.Sprintf("auth.providers.%s.user_types[%d]", name, i), "%q: want staff, owner or provider", t)
			}
		}
		if p.Enabled() && p.ClientSecret == "" {
			bad("auth.providers."+name+".client_secret", "empty: set HESTAMI_%s_CLIENT_SECRET (or _FILE) with the secret of client %s", strings.ToUpper(name), p.ClientID)
		}
	}
	a.MFA.validate(bad)
	for i, c := range a.OIDC.Clients {
		field := fmt.Sprintf("auth.oidc.clients[%d]", i)
		if c.ID == "" {
			bad(field+".id", "empty")
		}
		if len(c.RedirectURIs) == 0 {
			bad(field+".redirect_uris", "empty: want the client's callback, e.g. https://app.hestami.example/api/auth/callback/hestami")
		}
		for j, r := range c.RedirectURIs {
			if u, err := url.Parse(r); err != nil || u.Scheme == "" || u.Host == "" || u.Fragment != "" {
				bad(fmt.Sprintf("%s.redirect_uris[%d]", field, j), "%q: want an absolute URL without a fragment", r)
			}
		}
	}
}

// ValidateServe checks what auth serve needs beyond Validate: a secret, and no
// development identity provider on a public URL.
func (a Auth) ValidateServe() error {
	var errs []string
	if len(a.Secret) < 32 && !a.DevMode {
		errs = append(errs, "auth.secret: want at least 32 random characters (HESTAMI_AUTH_SECRET or HESTAMI_AUTH_SECRET_FILE; e.g. openssl rand -base64 48)")
	}
	if a.DevMode {
		if u, err := url.Parse(a.PublicURL); err != nil || !isLoopbackHost(u.Hostname()) {
			errs = append(errs, fmt.Sprintf("auth.dev_mode: the development identity provider signs anyone in without a password; it only runs on localhost, not on %s", a.PublicURL))
		}
	} else if u, err := url.Parse(a.PublicURL); err == nil && u.Scheme != "https" && !isLoopbackHost(u.Hostname()) {
		errs = append(errs, fmt.Sprintf("auth.public_url: %s: browsers only keep the Secure session cookie over https; use https (TLS at your proxy)", a.PublicURL))
	}
	errs = append(errs, a.MFA.validateServe(a.DevMode)...)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}
