package authclient

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
)

// LoginConfig configures a Login.
type LoginConfig struct {
	// Client is the auth service; its Issuer is the OpenID Connect provider.
	// Required.
	Client *Client
	// ClientID and ClientSecret are the service's registration at the auth
	// service (auth.oidc.clients), whose redirect_uris must hold
	// PublicURL + PathPrefix + "/callback". No secret: a public client (PKCE
	// is its only proof).
	ClientID     string
	ClientSecret string
	// PublicURL is where browsers reach this service, such as
	// https://backups.hestami.example: https, or http on localhost (browsers
	// keep Secure cookies there). Required.
	PublicURL string
	// PathPrefix is where Mount puts the routes: PathPrefix + "/login",
	// "/callback" and "/logout" ("" or like "/auth").
	PathPrefix string
	// Sealer encrypts the cookies (AES-256-GCM). Give every replica the same
	// keys, and keep them across restarts, or everyone signs in again.
	// Required.
	Sealer *auth.Sealer
	// Scopes are asked for (default: openid, profile, email, offline_access;
	// offline_access gives the refresh token that keeps the browser signed in
	// beyond an access token's 15 minutes).
	Scopes []string
	// CookieName is the session cookie's name (default hestami_ + the client
	// id + _session; cookies are shared between the ports of one host, so it
	// must differ from the auth service's and other services' cookies).
	CookieName string
	// LoginTimeout is how long a person has to sign in (default 10 minutes).
	LoginTimeout time.Duration
	// ServiceName names the service on its pages ("Backup daemon").
	ServiceName string
	// Logger receives one line per refused or failed sign-in (nil: none).
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Login signs browsers in to a service's own pages through the auth service,
// and authenticates the service's requests: from the Authorization: Bearer
// header (API clients), else from its cookie (browsers).
type Login struct {
	client   *Client
	id       string
	secret   string
	public   string // without a trailing slash
	prefix   string
	sealer   *auth.Sealer
	scopes   []string
	cookie   string
	timeout  time.Duration
	name     string
	log      *slog.Logger
	now      func() time.Time
	redirect string

	mu sync.Mutex
	op *discovered // nil until the first successful discovery

	refreshMu sync.Mutex
	refreshed map[string]*refreshCall // by auth.HashToken of the refresh token
}

// discovered is what the issuer's discovery document gave.
type discovered struct {
	conf     oauth2.Config
	verifier *oidc.IDTokenVerifier
	revoke   string // revocation endpoint; "" if none
}

// refreshCall is one refresh of a refresh token: concurrent requests with the
// same cookie share it, and for refreshKeep afterwards they get its result
// rather than presenting the rotated token again (which the auth service
// would take for a leak, revoking the sign-in).
type refreshCall struct {
	done chan struct{}
	tok  *tokens
	err  error
	at   time.Time
}

const refreshKeep = time.Minute

// tokens is what the session cookie holds.
type tokens struct {
	Access  string `json:"a"`
	Refresh string `json:"r,omitempty"`
	// Expiry is the access token's, in Unix seconds.
	Expiry int64 `json:"e"`
	// Subject is the user id the ID token named at sign-in.
	Subject string `json:"s"`
}

// loginState is what the state cookie holds while a browser signs in.
type loginState struct {
	State    string `json:"st"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"nx"`
	Expires  int64  `json:"x"`
}

// NewLogin returns a Login, or an error naming every problem in cfg. The
// auth service is first asked (its discovery document) at the first sign-in.
func NewLogin(cfg LoginConfig) (*Login, error) {
	var problems []string
	if cfg.Client == nil {
		problems = append(problems, "Client is required (the auth service)")
	}
	if cfg.ClientID == "" {
		problems = append(problems, "ClientID is required (the service's client id at the auth service, auth.oidc.clients)")
	}
	if cfg.Sealer == nil {
		problems = append(problems, "Sealer is required (the key that encrypts the sign-in cookie)")
	}
	pub, err := checkURL(cfg.PublicURL)
	if err != nil {
		problems = append(problems, "PublicURL: "+err.Error())
	} else if pub.Scheme == "http" && !strings.EqualFold(pub.Hostname(), "localhost") && pub.Hostname() != "127.0.0.1" && pub.Hostname() != "::1" {
		problems = append(problems, fmt.Sprintf("PublicURL %q: http only on localhost", cfg.PublicURL))
	}
	prefix := strings.TrimRight(cfg.PathPrefix, "/")
	if prefix != "" && (!strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "?#{} ")) {
		problems = append(problems, fmt.Sprintf("PathPrefix %q: want a path such as /auth", cfg.PathPrefix))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("auth client login: %s", strings.Join(problems, "; "))
	}
	l := &Login{
		client: cfg.Client, id: cfg.ClientID, secret: cfg.ClientSecret, public: pub.String(), prefix: prefix,
		sealer: cfg.Sealer, scopes: cfg.Scopes, cookie: cfg.CookieName, timeout: cfg.LoginTimeout, name: cfg.ServiceName,
		log: cfg.Logger, now: cfg.Now, refreshed: map[string]*refreshCall{},
	}
	l.redirect = l.public + l.prefix + "/callback"
	if len(l.scopes) == 0 {
		l.scopes = []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess}
	}
	if l.cookie == "" {
		l.cookie = "hestami_" + cookieSafe(l.id) + "_session"
	}
	if l.timeout <= 0 {
		l.timeout = 10 * time.Minute
	}
	if l.name == "" {
		l.name = l.id
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

func cookieSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// RedirectURL is the callback to register for the client at the auth service.
func (l *Login) RedirectURL() string { return l.redirect }

// Mount registers GET PathPrefix/login, GET PathPrefix/callback and POST
// PathPrefix/logout on mux.
func (l *Login) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+l.prefix+"/login", l.ServeLogin)
	mux.HandleFunc("GET "+l.prefix+"/callback", l.ServeCallback)
	cop := http.NewCrossOriginProtection()
	mux.Handle("POST "+l.prefix+"/logout", cop.Handler(http.HandlerFunc(l.ServeLogout)))
}

// LoginURL is the service's sign-in route, returning to next (a path on this
// service) afterwards.
func (l *Login) LoginURL(next string) string {
	return l.prefix + "/login?" + url.Values{"next": {safeNext(next)}}.Encode()
}

// StepUpURL is the auth service's step-up page, which sends the browser back
// through this service's sign-in (so that the cookie carries the fresh second
// factor) to next. The auth service must list this service's origin in
// auth.return_origins.
func (l *Login) StepUpURL(next string) string {
	return l.client.StepUpURL(l.public + l.LoginURL(next))
}

// safeNext keeps next if it is a path on this service, else "/".
func safeNext(next string) string {
	return auth.SafeReturnTo(next, nil, "/")
}

// provider returns the issuer's endpoints, discovering them at first use.
func (l *Login) provider(ctx context.Context) (*discovered, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.op != nil {
		return l.op, nil
	}
	issuer := l.client.Issuer()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, l.client.http), issuer)
	if err != nil {
		return nil, unavailable(issuer, fmt.Errorf("openid connect discovery: %w", err))
	}
	var extra struct {
		Revocation string `json:"revocation_endpoint"`
	}
	_ = p.Claims(&extra)
	d := &discovered{
		conf:     oauth2.Config{ClientID: l.id, ClientSecret: l.secret, Endpoint: p.Endpoint(), RedirectURL: l.redirect, Scopes: l.scopes},
		verifier: p.Verifier(&oidc.Config{ClientID: l.id, Now: l.now}),
		revoke:   extra.Revocation,
	}
	l.op = d
	return d, nil
}

func (l *Login) httpContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, l.client.http)
}

// The cookies' additional data: what each sealed value is for, and for which
// client.
func (l *Login) sessionAD() []byte { return []byte("hestami authclient session\x00" + l.id) }
func (l *Login) stateAD() []byte   { return []byte("hestami authclient login\x00" + l.id) }

func (l *Login) seal(v any, ad []byte) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	sealed, err := l.sealer.Seal(b, ad)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

func (l *Login) open(value string, ad []byte, v any) error {
	if len(value) > 8192 {
		return errors.New("cookie too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return fmt.Errorf("cookie: %w", auth.ErrSealMalformed)
	}
	plain, _, err := l.sealer.Open(b, ad)
	if err != nil {
		return err
	}
	return json.Unmarshal(plain, v)
}

// stateCookie is the name of the cookie of one sign-in in progress: several
// tabs may sign in at once.
func (l *Login) stateCookie(state string) string {
	return l.cookie + "_login_" + auth.HashToken(state)[:16]
}

func (l *Login) setCookie(w http.ResponseWriter, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// ServeLogin starts a sign-in (GET /login?next=PATH): it sends the browser to
// the auth service with a fresh state, nonce and PKCE verifier, kept in a
// short-lived sealed cookie.
func (l *Login) ServeLogin(w http.ResponseWriter, r *http.Request) {
	d, err := l.provider(r.Context())
	if err != nil {
		l.log.Error("sign-in: the auth service cannot be asked", "err", err)
		l.page(w, http.StatusServiceUnavailable, "Signing in is not possible right now", unavailableMessage(l.client.URL()), "", "")
		return
	}
	st := loginState{State: auth.NewToken(), Nonce: auth.NewToken(), Verifier: oauth2.GenerateVerifier(),
		Next: safeNext(r.URL.Query().Get("next")), Expires: l.now().Add(l.timeout).Unix()}
	v, err := l.seal(st, l.stateAD())
	if err != nil {
		l.log.Error("sign-in: seal the state", "err", err)
		l.page(w, http.StatusInternalServerError, "Signing in did not work", "Something went wrong on our side. Try again.", "", "")
		return
	}
	l.setCookie(w, l.stateCookie(st.State), v, l.prefix+"/callback", int(l.timeout.Seconds()))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, d.conf.AuthCodeURL(st.State, oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce)), http.StatusSeeOther)
}

// ServeCallback finishes a sign-in (GET /callback?code&state): the state must
// match the browser's state cookie, the code is exchanged with the PKCE
// verifier, the ID token verified with its nonce, and the tokens are kept in
// the session cookie.
func (l *Login) ServeCallback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	again := func(status int, heading, msg string) {
		l.page(w, status, heading, msg, l.LoginURL("/"), "Sign in again")
	}
	state := q.Get("state")
	var st loginState
	c, err := r.Cookie(l.stateCookie(state))
	if state == "" || err != nil {
		l.log.Warn("sign-in callback without its state cookie", "has_state", state != "")
		again(http.StatusBadRequest, "This sign-in cannot be finished", "It was started in another browser, took too long, or was finished already. Start again from here.")
		return
	}
	l.setCookie(w, c.Name, "", l.prefix+"/callback", -1) // a state works once
	if err := l.open(c.Value, l.stateAD(), &st); err != nil || subtle.ConstantTimeCompare([]byte(st.State), []byte(state)) != 1 {
		l.log.Warn("sign-in callback with a state cookie that does not open or match", "err", err)
		again(http.StatusBadRequest, "This sign-in cannot be finished", "Its cookie is not valid. Start again from here.")
		return
	}
	if l.now().Unix() > st.Expires {
		again(http.StatusBadRequest, "This sign-in took too long", "Start again from here.")
		return
	}
	if e := q.Get("error"); e != "" {
		l.log.Info("sign-in refused by the auth service", "error", e, "description", q.Get("error_description"))
		again(http.StatusForbidden, "You were not signed in", "The sign-in service did not sign you in ("+e+"). Try again.")
		return
	}
	d, err := l.provider(r.Context())
	if err != nil {
		l.page(w, http.StatusServiceUnavailable, "Signing in is not possible right now", unavailableMessage(l.client.URL()), "", "")
		return
	}
	ctx := l.httpContext(r.Context())
	tok, err := d.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			l.log.Warn("sign-in: the code was refused", "err", err)
			again(http.StatusBadRequest, "This sign-in cannot be finished", "The sign-in service refused it (it may have been used already). Start again from here.")
			return
		}
		l.log.Error("sign-in: code exchange", "err", err)
		l.page(w, http.StatusServiceUnavailable, "Signing in is not possible right now", unavailableMessage(l.client.URL()), "", "")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := d.verifier.Verify(ctx, raw)
	if err == nil && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		err = errors.New("nonce does not match")
	}
	if err != nil {
		l.log.Warn("sign-in: ID token refused", "err", err)
		again(http.StatusBadRequest, "This sign-in cannot be finished", "The sign-in service's answer could not be verified. Start again from here.")
		return
	}
	p, err := l.client.Principal(r.Context(), tok.AccessToken)
	if err == nil && p.UserID != idt.Subject {
		err = fmt.Errorf("access token of user %s, ID token of %s: %w", p.UserID, idt.Subject, ErrUnauthenticated)
	}
	if err != nil {
		l.Refuse(w, r, err)
		return
	}
	t := &tokens{Access: tok.AccessToken, Refresh: tok.RefreshToken, Expiry: tok.Expiry.Unix(), Subject: idt.Subject}
	if err := l.setSession(w, t); err != nil {
		l.log.Error("sign-in: seal the session", "err", err)
		l.page(w, http.StatusInternalServerError, "Signing in did not work", "Something went wrong on our side. Try again.", "", "")
		return
	}
	l.log.Info("signed in", "user", p.UserID, "email", p.Email)
	http.Redirect(w, r, st.Next, http.StatusSeeOther)
}

// setSession gives the browser the session cookie. It lives as long as the
// browser session: the tokens inside end with the auth service's session.
func (l *Login) setSession(w http.ResponseWriter, t *tokens) error {
	v, err := l.seal(t, l.sessionAD())
	if err != nil {
		return err
	}
	if len(v)+len(l.cookie) > 4000 {
		l.log.Warn("the session cookie is longer than browsers keep", "bytes", len(v))
	}
	l.setCookie(w, l.cookie, v, "/", 0)
	return nil
}

func (l *Login) clearSession(w http.ResponseWriter) {
	l.setCookie(w, l.cookie, "", "/", -1)
}

// ServeLogout signs the browser out of this service (POST /logout): the
// refresh token is revoked at the auth service, which ends every token of
// this sign-in, and the cookie is cleared. The person stays signed in at the
// auth service; the page says so and links there.
func (l *Login) ServeLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if c, err := r.Cookie(l.cookie); err == nil {
		var t tokens
		if l.open(c.Value, l.sessionAD(), &t) == nil {
			l.client.Forget(t.Access)
			if err := l.revoke(r.Context(), t); err != nil {
				l.log.Warn("sign-out: revoke the tokens at the auth service", "err", err)
			}
		}
	}
	l.clearSession(w)
	l.page(w, http.StatusOK, "You are signed out of "+l.name,
		"You may still be signed in to the Hestami sign-in service; sign out there too on a shared computer.",
		l.client.URL()+"/account", "Go to the sign-in service")
}

// revoke revokes the sign-in's refresh token (its whole grant), or its access
// token when there is no refresh token (RFC 7009).
func (l *Login) revoke(ctx context.Context, t tokens) error {
	d, err := l.provider(ctx)
	if err != nil {
		return err
	}
	if d.revoke == "" {
		return errors.New("the auth service names no revocation endpoint")
	}
	form := url.Values{"token": {t.Refresh}, "token_type_hint": {"refresh_token"}}
	if t.Refresh == "" {
		form = url.Values{"token": {t.Access}, "token_type_hint": {"access_token"}}
	}
	if l.secret == "" {
		form.Set("client_id", l.id)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.revoke, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if l.secret != "" {
		req.SetBasicAuth(url.QueryEscape(l.id), url.QueryEscape(l.secret))
	}
	resp, err := l.client.http.Do(req)
	if err != nil {
		return unavailable(d.revoke, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revocation answered %d", resp.StatusCode)
	}
	return nil
}

// Authenticate returns who the request is from: the Authorization: Bearer
// header's access token if there is one (API clients), else the session
// cookie's (browsers). It changes nothing: a cookie whose access token has
// expired is ErrUnauthenticated here (Current refreshes it). Errors are those
// of Client.Principal; a forged or foreign cookie is ErrUnauthenticated.
func (l *Login) Authenticate(r *http.Request) (*Principal, error) {
	if bearer, ok := bearerToken(r); ok {
		return l.client.Principal(r.Context(), bearer)
	}
	t, err := l.cookieTokens(r)
	if err != nil {
		return nil, err
	}
	if l.expired(t) {
		return nil, fmt.Errorf("the sign-in's access token expired: %w", ErrUnauthenticated)
	}
	return l.principal(r.Context(), t)
}

// Current is Authenticate that also keeps a browser signed in: when the
// cookie's access token has expired it is refreshed and the new cookie set on
// w; a cookie that no longer signs anyone in is cleared.
func (l *Login) Current(w http.ResponseWriter, r *http.Request) (*Principal, error) {
	if bearer, ok := bearerToken(r); ok {
		return l.client.Principal(r.Context(), bearer)
	}
	t, err := l.cookieTokens(r)
	if errors.Is(err, errNoCookie) {
		return nil, err
	}
	if err == nil && l.expired(t) {
		t, err = l.refresh(r.Context(), t)
		if err == nil {
			err = l.setSession(w, t)
		}
	}
	if err != nil {
		if errors.Is(err, ErrUnauthenticated) {
			l.clearSession(w)
		}
		return nil, err
	}
	p, err := l.principal(r.Context(), t)
	if errors.Is(err, ErrUnauthenticated) {
		l.clearSession(w)
	}
	return p, err
}

var errNoCookie = fmt.Errorf("no credentials: %w", ErrUnauthenticated)

func (l *Login) cookieTokens(r *http.Request) (*tokens, error) {
	c, err := r.Cookie(l.cookie)
	if err != nil || c.Value == "" {
		return nil, errNoCookie
	}
	var t tokens
	if err := l.open(c.Value, l.sessionAD(), &t); err != nil || t.Access == "" {
		l.log.Warn("a session cookie that does not open was refused", "err", err)
		return nil, fmt.Errorf("session cookie not valid: %w", ErrUnauthenticated)
	}
	return &t, nil
}

// expired reports whether the cookie's access token is expired or about to.
func (l *Login) expired(t *tokens) bool {
	return !l.now().Add(10 * time.Second).Before(time.Unix(t.Expiry, 0))
}

func (l *Login) principal(ctx context.Context, t *tokens) (*Principal, error) {
	p, err := l.client.Principal(ctx, t.Access)
	if err == nil && p.UserID != t.Subject {
		return nil, fmt.Errorf("the cookie's token is another user's: %w", ErrUnauthenticated)
	}
	return p, err
}

// refresh exchanges the cookie's refresh token for new tokens; concurrent and
// repeated requests with the same cookie share one exchange.
func (l *Login) refresh(ctx context.Context, t *tokens) (*tokens, error) {
	if t.Refresh == "" {
		return nil, fmt.Errorf("the sign-in's access token expired: %w", ErrUnauthenticated)
	}
	key := auth.HashToken(t.Refresh)
	now := l.now()
	l.refreshMu.Lock()
	for k, c := range l.refreshed {
		if isDone(c) && now.Sub(c.at) > refreshKeep {
			delete(l.refreshed, k)
		}
	}
	call, ok := l.refreshed[key]
	if !ok {
		call = &refreshCall{done: make(chan struct{}), at: now}
		l.refreshed[key] = call
	}
	l.refreshMu.Unlock()
	if !ok {
		call.tok, call.err = l.exchangeRefresh(context.WithoutCancel(ctx), t)
		close(call.done)
	}
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return call.tok, call.err
}

func isDone(c *refreshCall) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (l *Login) exchangeRefresh(ctx context.Context, t *tokens) (*tokens, error) {
	d, err := l.provider(ctx)
	if err != nil {
		return nil, err
	}
	// An expiry in the past makes the token source refresh.
	tok, err := d.conf.TokenSource(l.httpContext(ctx), &oauth2.Token{RefreshToken: t.Refresh, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			l.log.Info("refresh refused by the auth service; signing in again", "err", err)
			return nil, fmt.Errorf("refresh the sign-in: %w", ErrUnauthenticated)
		}
		return nil, unavailable(d.conf.Endpoint.TokenURL, err)
	}
	next := &tokens{Access: tok.AccessToken, Refresh: tok.RefreshToken, Expiry: tok.Expiry.Unix(), Subject: t.Subject}
	if next.Refresh == "" {
		next.Refresh = t.Refresh
	}
	return next, nil
}

// bearerToken returns the token of an Authorization: Bearer header; ok is
// false without one.
func bearerToken(r *http.Request) (string, bool) {
	scheme, rest, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(rest), true
}
