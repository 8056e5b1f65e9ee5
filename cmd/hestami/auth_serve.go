package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
	"github.com/hestami/hestami/config"
	"github.com/hestami/hestami/devidp"
	"github.com/hestami/hestami/oauth"
	"github.com/hestami/hestami/oidcprovider"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/prometheus"
)

// DefaultAuthListen is where auth serve listens.
const DefaultAuthListen = "127.0.0.1:8080"

// authServeDeps is what a test or hestami dev puts into auth serve.
type authServeDeps struct {
	// Now is the service's clock (nil: time.Now).
	Now func() time.Time
	// Listening is told the address the server listens on.
	Listening func(net.Addr)
	// Ready is called once the server answers, with the public URL.
	Ready func(publicURL string)
	// DevUsers seeds the development identity provider's staff accounts.
	DevUsers bool
}

func (p *Program) authServeCommand() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR]",
		Short: "Run the sign-in service",
		Long: `Serves, until stopped (SIGTERM or Ctrl-C):

  /signin, /account, /admin       the sign-in, account and administration pages
  /auth/{provider}/callback       the identity providers' callbacks
  /api/v1/...                     the JSON API (described at /api/openapi.json)
  /oidc/...                       the OpenID Connect provider for the frontend
  /healthz, /readyz, /metrics     health and Prometheus metrics

Providers are on when their client ids are set (HESTAMI_GOOGLE_CLIENT_ID ...).
auth.public_url (HESTAMI_AUTH_PUBLIC_URL) is where browsers reach the service; it
must be https except on localhost. Migrations are applied at start. See
docs/auth.md and docs/configuration.md.`,
		Example: `  HESTAMI_DATABASE_URL=postgres://hestami@db/hestami HESTAMI_AUTH_SECRET_FILE=/run/secrets/auth \
  HESTAMI_AUTH_PUBLIC_URL=https://auth.hestami.example hestami auth serve --listen 0.0.0.0:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := p.cfg.Auth
			if listen != "" {
				cfg.Listen = listen
			}
			return p.serveAuth(cmd.Context(), cfg, authServeDeps{})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on (default auth.listen, "+DefaultAuthListen+")")
	return cmd
}

// serveAuth runs the auth service with cfg until ctx ends.
func (p *Program) serveAuth(ctx context.Context, cfg config.Auth, deps authServeDeps) error {
	if err := cfg.ValidateServe(); err != nil {
		return err
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (another service on that port? pass --listen)", cfg.Listen, err)
	}
	defer ln.Close()
	public := strings.TrimRight(cfg.PublicURL, "/")
	pool, err := postgres.OpenPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if cfg.Migrate {
		if _, err := postgres.MigrateUp(ctx, pool, p.logger); err != nil {
			return fmt.Errorf("migrate the auth database: %w", err)
		}
	}
	store := postgres.NewAuthStore(pool)
	secret := cfg.Secret
	if secret == "" && cfg.DevMode {
		secret = auth.NewToken() // dev without a secret: forms and TOTP secrets last one run
	}
	csrfKey, err := deriveKey(secret, "csrf")
	if err != nil {
		return fmt.Errorf("derive the form key: %w", err)
	}
	clients, err := oidcClients(cfg.OIDC.Clients)
	if err != nil {
		return err
	}
	providers, err := authProviders(cfg, public)
	if err != nil {
		return err
	}
	var devHandler http.Handler
	if cfg.DevMode {
		idp, prov, err := devIdentityProvider(public)
		if err != nil {
			return err
		}
		devHandler = idp.Handler()
		providers = append(providers, prov)
	}
	if len(providers) == 0 {
		return errors.New("no identity provider is configured: set HESTAMI_GOOGLE_CLIENT_ID and HESTAMI_GOOGLE_CLIENT_SECRET (or Microsoft, LinkedIn, GitHub; see docs/auth.md), or run hestami dev")
	}
	scfg := auth.DefaultConfig()
	scfg.IdleTimeout, scfg.AbsoluteTimeout = cfg.Sessions.IdleTimeout, cfg.Sessions.AbsoluteTimeout
	scfg.StaffIdleTimeout, scfg.StaffAbsoluteTimeout = cfg.Sessions.StaffIdleTimeout, cfg.Sessions.StaffAbsoluteTimeout
	scfg.ReturnOrigins = cfg.ReturnOrigins
	scfg.ProviderTypes = providerTypes(cfg)
	svc := auth.NewService(store, providers, scfg, now, p.logger)
	mfa, err := p.buildMFA(ctx, cfg, secret, public, pool, svc, now)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range mfa.close {
			c()
		}
	}()
	if deps.DevUsers {
		if err := seedDevUsers(ctx, svc, store); err != nil {
			return err
		}
	}
	op, err := oidcprovider.New(ctx, oidcprovider.Config{
		Issuer: public + "/oidc", Clients: clients, AccessTokenTTL: cfg.OIDC.AccessTokenTTL, RefreshTokenTTL: cfg.OIDC.RefreshTokenTTL,
		LoginURL:       func(id string) string { return public + "/oidc-login?id=" + url.QueryEscape(id) },
		SigningKeyFile: cfg.OIDC.SigningKeyFile,
	}, postgres.NewOIDCStore(pool), store, now, p.logger)
	if err != nil {
		return fmt.Errorf("openid connect provider: %w", err)
	}
	metrics := prometheus.NewAuthMetrics()
	var proxies []netip.Prefix
	for _, s := range cfg.TrustedProxies {
		proxies = append(proxies, netip.MustParsePrefix(s)) // Validate checked them
	}
	srv, err := authhttp.New(authhttp.Options{
		Service: svc, PublicURL: public, Logger: p.logger, Now: now, CSRFKey: csrfKey,
		Ready:  func(ctx context.Context) error { return pool.Ping(ctx) },
		DevIdP: devHandler, TrustedProxies: proxies, DevMode: cfg.DevMode,
		OIDC: op, OIDCHandler: op.Handler(), Metrics: metrics, MetricsHandler: metrics.Handler(p.logger),
		MFA: mfa.opts, AccessTokens: accessTokens(op),
	})
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if deps.Listening != nil {
		deps.Listening(ln.Addr())
	}
	go cleanExpired(ctx, store, op, mfa, now, p.logger)
	// Other replicas' revocations and user changes end this one's cached sessions.
	listenCtx, stopListening := context.WithCancel(ctx)
	listened := make(chan struct{})
	go func() {
		defer close(listened)
		postgres.ListenInvalidations(listenCtx, pool, svc.Invalidate, p.logger)
	}()
	defer func() {
		stopListening()
		<-listened
	}()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	p.logger.Info("auth service listening", "addr", ln.Addr().String(), "public_url", public, "providers", providerNames(providers), "dev_mode", cfg.DevMode)
	if deps.Ready != nil {
		deps.Ready(public)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("auth service: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("stop the auth service: %w", err)
	}
	return nil
}

// accessTokens lets the API take the OpenID Connect provider's access tokens
// (Authorization: Bearer), for services such as the backup daemon.
func accessTokens(op *oidcprovider.Provider) authhttp.AccessTokens {
	return authhttp.AccessTokensFunc(func(ctx context.Context, token string) (*authhttp.AccessToken, error) {
		at, err := op.VerifyAccessToken(ctx, token)
		if err != nil {
			return nil, err
		}
		return &authhttp.AccessToken{UserID: at.UserID, ClientID: at.ClientID, SessionID: at.SessionID, Scopes: at.Scopes, Expiry: at.Expiry}, nil
	})
}

// authProviders builds the configured identity providers, their callbacks under
// public.
func authProviders(cfg config.Auth, public string) ([]auth.Provider, error) {
	cb := func(name string) string { return public + "/auth/" + name + "/callback" }
	var out []auth.Provider
	var errs []error
	add := func(p auth.Provider, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		out = append(out, p)
	}
	if g := cfg.Providers.Google; g.Enabled() {
		add(oauth.NewGoogle(oauth.GoogleConfig{ClientID: g.ClientID, ClientSecret: g.ClientSecret, RedirectURL: cb("google"),
			Issuer: g.Issuer, AuthURL: g.AuthURL, TokenURL: g.TokenURL, JWKSURL: g.JWKSURL, UserInfoURL: g.UserInfoURL}))
	}
	if m := cfg.Providers.Microsoft; m.Enabled() {
		add(oauth.NewMicrosoft(oauth.MicrosoftConfig{ClientID: m.ClientID, ClientSecret: m.ClientSecret, RedirectURL: cb("microsoft"),
			Tenant: m.Tenant, AllowedTenants: m.AllowedTenants, Authority: m.Issuer, AuthURL: m.AuthURL, TokenURL: m.TokenURL, JWKSURL: m.JWKSURL}))
	}
	if l := cfg.Providers.LinkedIn; l.Enabled() {
		add(oauth.NewLinkedIn(oauth.LinkedInConfig{ClientID: l.ClientID, ClientSecret: l.ClientSecret, RedirectURL: cb("linkedin"),
			Issuer: l.Issuer, AuthURL: l.AuthURL, TokenURL: l.TokenURL, JWKSURL: l.JWKSURL, UserInfoURL: l.UserInfoURL}))
	}
	if g := cfg.Providers.GitHub; g.Enabled() {
		add(oauth.NewGitHub(oauth.GitHubConfig{ClientID: g.ClientID, ClientSecret: g.ClientSecret, RedirectURL: cb("github"),
			Organization: g.Organization, AuthURL: g.AuthURL, TokenURL: g.TokenURL, APIURL: g.APIURL}))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("identity providers: %w", err)
	}
	return out, nil
}

// oidcClients reads the OpenID Connect clients' secrets.
func oidcClients(cs []config.OIDCClient) ([]oidcprovider.Client, error) {
	out := make([]oidcprovider.Client, 0, len(cs))
	for _, c := range cs {
		secret := c.Secret
		if c.SecretFile != "" {
			b, err := os.ReadFile(c.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("auth.oidc.clients %s: secret_file: %w", c.ID, err)
			}
			secret = strings.TrimSpace(string(b))
		}
		out = append(out, oidcprovider.Client{ID: c.ID, Name: c.Name, Secret: secret, Public: secret == "",
			RedirectURIs: c.RedirectURIs, PostLogoutRedirectURIs: c.PostLogoutRedirectURIs})
	}
	return out, nil
}

// providerTypes maps the providers' user_types into the service's config. GitHub
// serves staff only unless configured otherwise.
func providerTypes(cfg config.Auth) map[string][]auth.UserType {
	out := map[string][]auth.UserType{"github": {auth.TypeStaff}}
	for name, p := range map[string]config.OAuthProvider{"google": cfg.Providers.Google, "microsoft": cfg.Providers.Microsoft,
		"linkedin": cfg.Providers.LinkedIn, "github": cfg.Providers.GitHub} {
		if len(p.UserTypes) == 0 {
			continue
		}
		types := make([]auth.UserType, len(p.UserTypes))
		for i, t := range p.UserTypes {
			types[i] = auth.UserType(t)
		}
		out[name] = types
	}
	return out
}

func providerNames(ps []auth.Provider) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name()
	}
	return strings.Join(names, ",")
}

// devClientSecret is the development identity provider's client secret: it only
// ever runs on loopback, inside one process.
const devClientSecret = "hestami-dev-only-client-secret"

// devIdentityProvider starts the development identity provider at
// public/dev/idp and returns it with the auth.Provider that signs in through it.
func devIdentityProvider(public string) (*devidp.IdP, auth.Provider, error) {
	issuer := public + "/dev/idp"
	callback := public + "/auth/dev/callback"
	idp, err := devidp.New(devidp.Options{Dev: true, Issuer: issuer, ClientID: "hestami-auth", ClientSecret: devClientSecret, RedirectURIs: []string{callback}})
	if err != nil {
		return nil, nil, err
	}
	prov, err := oauth.NewOIDC(oauth.OIDCConfig{Name: "dev", DisplayName: "Development sign-in", Issuer: issuer,
		ClientID: "hestami-auth", ClientSecret: devClientSecret, RedirectURL: callback})
	if err != nil {
		return nil, nil, err
	}
	return idp, prov, nil
}

// seedDevUsers creates the development identity provider's staff accounts with
// their roles (owners and providers sign up on their own), once.
func seedDevUsers(ctx context.Context, svc *auth.Service, store auth.Store) error {
	for _, u := range devidp.DefaultUsers() {
		if u.Type != string(auth.TypeStaff) {
			continue
		}
		existing, err := store.UsersByEmail(ctx, u.Email)
		if err != nil {
			return err
		}
		if len(existing) > 0 {
			continue
		}
		if _, err := svc.CreateUser(ctx, nil, auth.NewUser{Type: auth.TypeStaff, Email: u.Email, Name: u.Name, Roles: u.Roles}, auth.Client{UserAgent: "hestami dev"}); err != nil {
			return fmt.Errorf("create development user %s: %w", u.Email, err)
		}
	}
	return nil
}

// cleanExpired removes ended sessions, sign-ins, OpenID Connect grants and MFA
// codes and ceremonies hourly.
func cleanExpired(ctx context.Context, store auth.Store, op *oidcprovider.Provider, mfa *mfaStack, now func() time.Time, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := store.DeleteExpiredLoginStates(ctx, now()); err != nil && ctx.Err() == nil {
			log.Warn("remove expired sign-in states", "err", err)
		}
		if _, err := store.DeleteExpiredSessions(ctx, now().Add(-24*time.Hour)); err != nil && ctx.Err() == nil {
			log.Warn("remove expired sessions", "err", err)
		}
		if _, err := op.DeleteExpired(ctx); err != nil && ctx.Err() == nil {
			log.Warn("remove expired OpenID Connect requests and tokens", "err", err)
		}
		mfa.housekeeping(ctx, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
