package auth

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Config is how the Service behaves.
type Config struct {
	// IdleTimeout and AbsoluteTimeout end sessions of owners and providers;
	// StaffIdleTimeout and StaffAbsoluteTimeout those of staff.
	IdleTimeout          time.Duration
	AbsoluteTimeout      time.Duration
	StaffIdleTimeout     time.Duration
	StaffAbsoluteTimeout time.Duration
	// LoginTimeout is how long a sign-in may take at the provider.
	LoginTimeout time.Duration
	// ReturnOrigins are the origins (scheme://host[:port]) a sign-in may return
	// to besides this service's own paths: the frontend's.
	ReturnOrigins []string
	// ProviderTypes restricts which user types may sign in with a provider (GitHub:
	// staff only). A provider not listed serves every type.
	ProviderTypes map[string][]UserType
	// TouchInterval is how stale a session's LastSeenAt may get before a request
	// writes it again (fewer writes; idle timeouts are this coarse).
	TouchInterval time.Duration
	// SessionCacheTTL is how long a validated session (with its user) is served
	// from memory before the store is asked again; 0 turns the cache off.
	// Revocations and user changes made through this Service take effect at once;
	// another replica's reach it through Invalidate (package postgres's
	// ListenInvalidations), or after this long at most.
	SessionCacheTTL time.Duration
	// SessionCacheSize bounds how many sessions the cache holds (0:
	// DefaultSessionCacheSize).
	SessionCacheSize int
}

// DefaultConfig returns the defaults: owners and providers stay signed in for 30
// days (7 idle), staff for 12 hours (1 idle).
func DefaultConfig() Config {
	return Config{
		IdleTimeout:          7 * 24 * time.Hour,
		AbsoluteTimeout:      30 * 24 * time.Hour,
		StaffIdleTimeout:     time.Hour,
		StaffAbsoluteTimeout: 12 * time.Hour,
		LoginTimeout:         10 * time.Minute,
		TouchInterval:        time.Minute,
		SessionCacheTTL:      2 * time.Second,
	}
}

// Service runs sign-in, linking, sessions and roles over a Store and Providers.
type Service struct {
	store     Store
	providers map[string]Provider
	order     []string
	cfg       Config
	now       func() time.Time
	log       *slog.Logger
	cache     *sessionCache // nil: off
}

// NewService returns a Service. now is the clock (time.Now in production).
func NewService(store Store, providers []Provider, cfg Config, now func() time.Time, logger *slog.Logger) *Service {
	s := &Service{store: store, providers: map[string]Provider{}, cfg: cfg, now: now, log: logger,
		cache: newSessionCache(cfg.SessionCacheTTL, cfg.SessionCacheSize)}
	for _, p := range providers {
		s.providers[p.Name()] = p
		s.order = append(s.order, p.Name())
	}
	return s
}

// Config returns the service's configuration.
func (s *Service) Config() Config { return s.cfg }

// Providers returns the configured providers in configuration order.
func (s *Service) Providers() []Provider {
	out := make([]Provider, 0, len(s.order))
	for _, n := range s.order {
		out = append(out, s.providers[n])
	}
	return out
}

// ProvidersFor returns the providers a user of type t may sign in with.
func (s *Service) ProvidersFor(t UserType) []Provider {
	var out []Provider
	for _, p := range s.Providers() {
		if s.providerServes(p.Name(), t) {
			out = append(out, p)
		}
	}
	return out
}

func (s *Service) providerServes(name string, t UserType) bool {
	types, ok := s.cfg.ProviderTypes[name]
	return !ok || slices.Contains(types, t)
}

// Store returns the service's store, for the parts of the platform that read it
// directly (the OpenID Connect provider).
func (s *Service) Store() Store { return s.store }

// Intent is what a sign-in is for.
type Intent string

// The intents.
const (
	IntentSignIn Intent = "signin"
	IntentLink   Intent = "link"
)

// LoginState is a sign-in in progress, between the redirect to the provider and its
// callback. It is stored under the hash of the state parameter and taken once.
type LoginState struct {
	ID       string // HashToken(state)
	Provider string
	Intent   Intent
	// Binding is HashToken of the value of a cookie set in the browser that
	// started the sign-in: the callback must come from the same browser.
	Binding  string
	Nonce    string
	Verifier string
	ReturnTo string
	// UserType is the account type asked for, used when the sign-in creates one.
	UserType UserType
	// UserID is the signed-in user, for IntentLink.
	UserID    string
	Scopes    []string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// BeginRequest starts a sign-in or a link.
type BeginRequest struct {
	Provider string
	Intent   Intent
	ReturnTo string // already checked with SafeReturnTo
	UserType UserType
	// Binding is the browser's login-binding cookie if it has one (so sign-ins
	// in two tabs both work); empty to make a new one.
	Binding string
	// Session is the current session, required for IntentLink.
	Session *Session
	Scopes  []string
}

// Begin is where to send the browser, and the binding cookie value to set.
type Begin struct {
	RedirectURL string
	Binding     string
}

// BeginLogin records a new sign-in (state, nonce, PKCE verifier, bound to the
// browser) and returns the provider's URL.
func (s *Service) BeginLogin(ctx context.Context, r BeginRequest) (*Begin, error) {
	p, ok := s.providers[r.Provider]
	if !ok {
		return nil, Errorf(CodeNotFound, "Sign-in with %q is not available here.", r.Provider)
	}
	if r.Intent == "" {
		r.Intent = IntentSignIn
	}
	if r.Intent == IntentLink && r.Session == nil {
		return nil, Errorf(CodeUnauthorized, "Sign in first, then link another account from your account page.")
	}
	if r.UserType != "" && !r.UserType.Valid() {
		return nil, Errorf(CodeInvalid, "Unknown account type %q.", r.UserType)
	}
	binding := r.Binding
	if len(binding) < 32 {
		binding = NewToken()
	}
	state, now := NewToken(), s.now()
	ls := &LoginState{
		ID: HashToken(state), Provider: p.Name(), Intent: r.Intent, Binding: HashToken(binding),
		Nonce: NewToken(), Verifier: NewToken(), ReturnTo: r.ReturnTo, UserType: r.UserType,
		Scopes: r.Scopes, CreatedAt: now, ExpiresAt: now.Add(s.cfg.LoginTimeout),
	}
	if r.Session != nil && r.Intent == IntentLink {
		ls.UserID = r.Session.UserID
	}
	if err := s.store.PutLoginState(ctx, ls); err != nil {
		return nil, fmt.Errorf("begin sign-in with %s: %w", p.Name(), err)
	}
	return &Begin{
		RedirectURL: p.AuthCodeURL(AuthCodeRequest{State: state, Nonce: ls.Nonce, Verifier: ls.Verifier, Scopes: r.Scopes}),
		Binding:     binding,
	}, nil
}

// CompleteRequest is a provider's callback.
type CompleteRequest struct {
	Provider string
	State    string
	Code     string
	// ProviderError is the callback's error parameter (access_denied...), and
	// ProviderErrorDescription its description.
	ProviderError            string
	ProviderErrorDescription string
	// Binding is the browser's login-binding cookie.
	Binding string
	// Session is the browser's current session, if any (required for a link;
	// revoked on sign-in, so a session id planted before sign-in never becomes a
	// signed-in one).
	Session *Session
	Client  Client
}

// LoginResult is a completed sign-in or link.
type LoginResult struct {
	User *User
	// Token is the new session's token (sign-ins only): set it as the cookie.
	Token    string
	Session  *Session
	ReturnTo string
	Intent   Intent
	Provider string
	// Created is set when the sign-in created the account; Claimed when it was an
	// invited account signing in for the first time.
	Created, Claimed bool
}

// LinkRequiredError is returned when a sign-in's verified email belongs to an
// existing account: the person must sign in to that account first and link from
// there, so nobody takes over an account by controlling an email at some provider.
type LinkRequiredError struct {
	Provider  string   // the provider just used
	Email     string   // the matching email
	Providers []string // the existing account's sign-in methods
}

func (e *LinkRequiredError) Error() string {
	return fmt.Sprintf("an account with %s exists: sign in with %s and link %s from the account page", e.Email, strings.Join(e.Providers, " or "), e.Provider)
}

var errBadState = Errorf(CodeUnauthorized, "This sign-in link is not valid any more (it was used already, has expired, or was started in another browser). Start the sign-in again.")

// CompleteLogin finishes a sign-in or link from the provider's callback: it takes
// the state (once), checks it was started by this browser, redeems the code, and
// then signs the person in (creating or claiming the account if the rules allow)
// or links the identity to the signed-in user. Every outcome is audited.
func (s *Service) CompleteLogin(ctx context.Context, r CompleteRequest) (*LoginResult, error) {
	res, ev, err := s.completeLogin(ctx, r)
	ev.Provider = r.Provider
	ev.IP, ev.UserAgent = r.Client.IP, r.Client.UserAgent
	if ev.Action == "" {
		ev.Action = "signin"
	}
	if err != nil {
		ev.Outcome = OutcomeFailure
		if ev.Detail == "" {
			ev.Detail = err.Error()
		}
		s.log.Warn("sign-in failed", "provider", r.Provider, "action", ev.Action, "ip", r.Client.IP, "err", err)
	} else {
		ev.Outcome = OutcomeSuccess
	}
	if aerr := s.audit(ctx, &ev); aerr != nil && err == nil {
		return nil, aerr
	}
	return res, err
}

func (s *Service) completeLogin(ctx context.Context, r CompleteRequest) (*LoginResult, AuditEvent, error) {
	var ev AuditEvent
	if r.State == "" {
		ev.Detail = "callback without state"
		return nil, ev, errBadState
	}
	ls, err := s.store.TakeLoginState(ctx, HashToken(r.State))
	if errors.Is(err, ErrNotFound) {
		ev.Detail = "unknown or already used state"
		return nil, ev, errBadState
	}
	if err != nil {
		return nil, ev, fmt.Errorf("take sign-in state: %w", err)
	}
	if ls.Intent == IntentLink {
		ev.Action, ev.ActorID = "identity.link", ls.UserID
	}
	now := s.now()
	switch {
	case r.Binding == "" || subtle.ConstantTimeCompare([]byte(HashToken(r.Binding)), []byte(ls.Binding)) != 1:
		ev.Detail = "state started in another browser"
		return nil, ev, errBadState
	case ls.Provider != r.Provider:
		ev.Detail = "state issued for " + ls.Provider
		return nil, ev, errBadState
	case !now.Before(ls.ExpiresAt):
		ev.Detail = "state expired"
		return nil, ev, errBadState
	}
	p := s.providers[ls.Provider]
	if p == nil {
		return nil, ev, Errorf(CodeNotFound, "Sign-in with %q is not available any more.", ls.Provider)
	}
	res := &LoginResult{ReturnTo: ls.ReturnTo, Intent: ls.Intent, Provider: p.Name()}
	if r.ProviderError != "" {
		ev.Detail = "provider error " + r.ProviderError
		if r.ProviderError == "access_denied" {
			return res, ev, Errorf(CodeForbidden, "You cancelled the sign-in with %s, or did not allow Hestami to see your profile. You can try again, or use another sign-in method.", p.DisplayName())
		}
		return res, ev, Errorf(CodeUnavailable, "%s could not complete the sign-in (%s). Try again in a moment, or use another sign-in method.", p.DisplayName(), r.ProviderError)
	}
	if r.Code == "" {
		ev.Detail = "callback without code"
		return res, ev, Errorf(CodeInvalid, "%s did not send a sign-in code. Start the sign-in again.", p.DisplayName())
	}
	prof, err := p.Exchange(ctx, r.Code, AuthCodeRequest{State: r.State, Nonce: ls.Nonce, Verifier: ls.Verifier, Scopes: ls.Scopes})
	if err != nil {
		return res, ev, err
	}
	prof.Provider = p.Name()
	prof.Email = NormalizeEmail(prof.Email)
	if prof.Subject == "" {
		return res, ev, Errorf(CodeUnauthorized, "%s did not say who you are. Start the sign-in again.", p.DisplayName())
	}
	if ls.Intent == IntentLink {
		u, err := s.link(ctx, ls, r, prof, now, &ev)
		res.User = u
		return res, ev, err
	}
	return s.signIn(ctx, ls, r, prof, res, now, &ev)
}

// link adds prof's identity to the signed-in user who started the link.
func (s *Service) link(ctx context.Context, ls *LoginState, r CompleteRequest, prof *Profile, now time.Time, ev *AuditEvent) (*User, error) {
	if r.Session == nil || r.Session.UserID != ls.UserID || !r.Session.Active(now) {
		ev.Detail = "link completed outside the session that started it"
		return nil, Errorf(CodeUnauthorized, "Your session ended while linking. Sign in again, then link from your account page.")
	}
	u, err := s.store.User(ctx, ls.UserID)
	if err != nil {
		return nil, fmt.Errorf("link: load user: %w", err)
	}
	if !s.providerServes(prof.Provider, u.Type) {
		ev.Detail = "provider not allowed for " + string(u.Type)
		return nil, Errorf(CodeForbidden, "%s accounts cannot sign in to %s accounts.", s.providers[prof.Provider].DisplayName(), u.Type.Label())
	}
	id := identityFrom(prof, u.ID, now)
	existing, err := s.store.IdentityBySubject(ctx, prof.Provider, prof.Subject)
	switch {
	case err == nil && existing.UserID == u.ID:
		existing.Scopes = mergeScopes(existing.Scopes, prof.Scopes)
		existing.LastUsedAt = now
		ev.Detail = "already linked; profile refreshed"
		return u, s.store.UpdateIdentity(ctx, existing)
	case err == nil:
		ev.Detail = "identity linked to another user"
		ev.SubjectID = existing.UserID
		return nil, Errorf(CodeConflict, "That %s account is already linked to another Hestami account. Sign in with it and unlink it there first.", s.providers[prof.Provider].DisplayName())
	case !errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("link: look up identity: %w", err)
	}
	if err := s.store.AddIdentity(ctx, id); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, Errorf(CodeConflict, "That %s account was just linked to another Hestami account.", s.providers[prof.Provider].DisplayName())
		}
		return nil, fmt.Errorf("link: %w", err)
	}
	ev.Detail = "linked " + prof.Provider
	return u, nil
}

// signIn signs in the identity's user, claims an invited account, or creates one.
func (s *Service) signIn(ctx context.Context, ls *LoginState, r CompleteRequest, prof *Profile, res *LoginResult, now time.Time, ev *AuditEvent) (*LoginResult, AuditEvent, error) {
	disp := s.providers[prof.Provider].DisplayName()
	var u *User
	existing, err := s.store.IdentityBySubject(ctx, prof.Provider, prof.Subject)
	switch {
	case err == nil:
		if u, err = s.store.User(ctx, existing.UserID); err != nil {
			return res, *ev, fmt.Errorf("sign in: load user: %w", err)
		}
		existing.Email, existing.EmailVerified, existing.Name, existing.AvatarURL = prof.Email, prof.EmailVerified, prof.Name, prof.AvatarURL
		existing.Scopes = mergeScopes(existing.Scopes, prof.Scopes)
		existing.LastUsedAt = now
		if err := s.store.UpdateIdentity(ctx, existing); err != nil {
			return res, *ev, fmt.Errorf("sign in: update identity: %w", err)
		}
	case errors.Is(err, ErrNotFound):
		u, err = s.newIdentity(ctx, ls, prof, res, now, ev)
		if err != nil {
			return res, *ev, err
		}
	default:
		return res, *ev, fmt.Errorf("sign in: look up identity: %w", err)
	}
	ev.ActorID = u.ID
	if u.Disabled {
		ev.Detail = "account disabled"
		return res, *ev, Errorf(CodeForbidden, "This Hestami account is disabled. Contact support if you think this is a mistake.")
	}
	if !s.providerServes(prof.Provider, u.Type) {
		ev.Detail = "provider not allowed for " + string(u.Type)
		return res, *ev, Errorf(CodeForbidden, "%s accounts cannot sign in with %s. Use another sign-in method.", u.Type.Label(), disp)
	}
	token, sess, err := s.newSession(ctx, u, []string{prof.Provider}, r.Client, now)
	if err != nil {
		return res, *ev, err
	}
	if r.Session != nil { // never let a session from before the sign-in live on
		_ = s.revokeSession(ctx, r.Session.UserID, r.Session.ID, now)
	}
	res.User, res.Token, res.Session = u, token, sess
	return res, *ev, nil
}

// newIdentity decides what an unknown identity signing in becomes: the first
// identity of an invited account with the same verified email, a new account, or
// a refusal (LinkRequiredError) when the verified email belongs to an account
// that has other sign-in methods.
func (s *Service) newIdentity(ctx context.Context, ls *LoginState, prof *Profile, res *LoginResult, now time.Time, ev *AuditEvent) (*User, error) {
	disp := s.providers[prof.Provider].DisplayName()
	if prof.Email != "" && prof.EmailVerified {
		users, err := s.store.UsersByEmail(ctx, prof.Email)
		if err != nil {
			return nil, fmt.Errorf("sign in: look up email: %w", err)
		}
		for _, u := range users {
			ids, err := s.store.Identities(ctx, u.ID)
			if err != nil {
				return nil, fmt.Errorf("sign in: identities: %w", err)
			}
			if len(ids) > 0 {
				names := make([]string, 0, len(ids))
				for _, id := range ids {
					n := id.Provider
					if p, ok := s.providers[n]; ok {
						n = p.DisplayName()
					}
					if !slices.Contains(names, n) {
						names = append(names, n)
					}
				}
				ev.Action, ev.SubjectID, ev.Detail = "identity.link", u.ID, "verified email matches an existing account: link required"
				return nil, &LinkRequiredError{Provider: disp, Email: prof.Email, Providers: names}
			}
			if !u.EmailVerified {
				continue
			}
			// An invited account (created by an administrator, never signed in):
			// the provider's verified email proves it.
			if !s.providerServes(prof.Provider, u.Type) {
				continue
			}
			if err := s.store.AddIdentity(ctx, identityFrom(prof, u.ID, now)); err != nil {
				return nil, fmt.Errorf("claim invited account: %w", err)
			}
			if u.Name == "" || u.AvatarURL == "" {
				u.Name, u.AvatarURL = cmp.Or(u.Name, prof.Name), cmp.Or(u.AvatarURL, prof.AvatarURL)
				if err := s.store.UpdateUser(ctx, u); err != nil {
					return nil, fmt.Errorf("claim invited account: %w", err)
				}
			}
			ev.Action, ev.Detail = "identity.claim", "invited account claimed by verified email"
			res.Claimed = true
			return u, nil
		}
	}
	t := ls.UserType
	if t == "" || t == TypeStaff {
		ev.Detail = "no account for this identity"
		if t == TypeStaff {
			return nil, Errorf(CodeForbidden, "There is no staff account for this %s account. Staff accounts are created by an administrator; sign in with the account whose email they used.", disp)
		}
		return nil, Errorf(CodeNotFound, "There is no Hestami account for this %s account yet. Choose whether you are a property owner or a service provider to create one.", disp)
	}
	if !s.providerServes(prof.Provider, t) {
		ev.Detail = "sign-up not allowed with this provider"
		return nil, Errorf(CodeForbidden, "%s accounts cannot be created with %s. Use another sign-in method.", t.Label(), disp)
	}
	u := &User{Type: t, Email: prof.Email, EmailVerified: prof.EmailVerified, Name: prof.Name, AvatarURL: prof.AvatarURL, Roles: DefaultRoles(t)}
	if err := s.store.CreateUser(ctx, u, identityFrom(prof, "", now)); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, Errorf(CodeConflict, "This %s account was just used to create another account. Sign in again.", disp)
		}
		return nil, fmt.Errorf("create account: %w", err)
	}
	ev.Action, ev.Detail = "signup", "account created as "+string(t)
	res.Created = true
	return u, nil
}

func identityFrom(p *Profile, userID string, now time.Time) *Identity {
	return &Identity{
		UserID: userID, Provider: p.Provider, Subject: p.Subject, Email: p.Email, EmailVerified: p.EmailVerified,
		Name: p.Name, AvatarURL: p.AvatarURL, Scopes: p.Scopes, CreatedAt: now, LastUsedAt: now,
	}
}

func mergeScopes(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func (s *Service) timeouts(t UserType) (idle, absolute time.Duration) {
	if t == TypeStaff {
		return s.cfg.StaffIdleTimeout, s.cfg.StaffAbsoluteTimeout
	}
	return s.cfg.IdleTimeout, s.cfg.AbsoluteTimeout
}

// newSession stores a new session for u and returns its token.
func (s *Service) newSession(ctx context.Context, u *User, methods []string, c Client, now time.Time) (string, *Session, error) {
	idle, abs := s.timeouts(u.Type)
	token := NewToken()
	sess := &Session{
		ID: HashToken(token), UserID: u.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(abs),
		IdleTimeout: idle, IP: c.IP, UserAgent: truncate(c.UserAgent, 512), Methods: methods, AuthTime: now,
	}
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return "", nil, fmt.Errorf("create session: %w", err)
	}
	return token, sess, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (s *Service) audit(ctx context.Context, e *AuditEvent) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if e.Outcome == "" {
		e.Outcome = OutcomeSuccess
	}
	e.UserAgent = truncate(e.UserAgent, 512)
	if err := s.store.AppendAudit(ctx, e); err != nil {
		s.log.Error("audit log write failed", "action", e.Action, "err", err)
		return fmt.Errorf("write audit log: %w", err)
	}
	return nil
}

// Audit records e (Time defaults to now, Outcome to success).
func (s *Service) Audit(ctx context.Context, e *AuditEvent) error { return s.audit(ctx, e) }
