package oidcprovider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/hestami/hestami/auth"
)

// storage is the Provider as zitadel's op package sees it: op.Storage plus the
// optional interfaces that let it set claims and end sessions from the request.
// It implements no client-credentials, token-exchange or device grant.
type storage struct{ *Provider }

var (
	_ op.Storage                        = storage{}
	_ op.CanSetUserinfoFromRequest      = storage{}
	_ op.CanGetPrivateClaimsFromRequest = storage{}
	_ op.CanTerminateSessionFromRequest = storage{}
)

// errDead marks a token, code or grant that no longer proves anything: revoked,
// expired, replayed, or its session or user is gone. Other errors are the
// store's.
var errDead = errors.New("no longer valid")

func dead(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errDead)
}

// opAuthRequest is an AuthRequest as op sees it; sess is the session it was
// completed with, once its code is being redeemed.
type opAuthRequest struct {
	r    *AuthRequest
	sess *auth.Session
}

var _ op.AuthRequest = opAuthRequest{}

func (a opAuthRequest) GetID() string         { return a.r.ID }
func (a opAuthRequest) GetACR() string        { return acr(a.r.AMR) }
func (a opAuthRequest) GetAMR() []string      { return a.r.AMR }
func (a opAuthRequest) GetAudience() []string { return []string{a.r.ClientID} }
func (a opAuthRequest) GetAuthTime() time.Time {
	return a.r.AuthTime
}
func (a opAuthRequest) GetClientID() string { return a.r.ClientID }
func (a opAuthRequest) GetCodeChallenge() *oidc.CodeChallenge {
	if a.r.CodeChallenge == "" {
		return nil
	}
	return &oidc.CodeChallenge{Challenge: a.r.CodeChallenge, Method: oidc.CodeChallengeMethod(a.r.CodeChallengeMethod)}
}
func (a opAuthRequest) GetNonce() string       { return a.r.Nonce }
func (a opAuthRequest) GetRedirectURI() string { return a.r.RedirectURI }
func (a opAuthRequest) GetResponseType() oidc.ResponseType {
	return oidc.ResponseType(a.r.ResponseType)
}
func (a opAuthRequest) GetResponseMode() oidc.ResponseMode {
	return oidc.ResponseMode(a.r.ResponseMode)
}
func (a opAuthRequest) GetScopes() []string { return a.r.Scopes }
func (a opAuthRequest) GetState() string    { return a.r.State }
func (a opAuthRequest) GetSubject() string  { return a.r.UserID }
func (a opAuthRequest) Done() bool          { return !a.r.CompletedAt.IsZero() }

// refreshRequest is a refresh token being exchanged, as op sees it.
type refreshRequest struct {
	g      *Grant
	t      *Token
	scopes []string
}

var _ op.RefreshTokenRequest = (*refreshRequest)(nil)

func (r *refreshRequest) GetAMR() []string            { return r.g.AMR }
func (r *refreshRequest) GetAudience() []string       { return []string{r.g.ClientID} }
func (r *refreshRequest) GetAuthTime() time.Time      { return r.g.AuthTime }
func (r *refreshRequest) GetClientID() string         { return r.g.ClientID }
func (r *refreshRequest) GetScopes() []string         { return r.scopes }
func (r *refreshRequest) GetSubject() string          { return r.g.UserID }
func (r *refreshRequest) SetCurrentScopes(s []string) { r.scopes = s }

// mfaMethods are the amr values (RFC 8176 and ours) of a second factor, on
// top of auth.SecondFactorMethods (what auth.Service.ElevateSession records).
var mfaMethods = []string{"mfa", "otp", "hwk", "swk", "sms", "tel", "pin", "fpt", "face", "iris", "retina", "vbm", "email_otp", "backup_code"}

// The acr values: ACRMFA when the sign-in included a second factor, ACRSingle
// otherwise.
const (
	ACRMFA    = auth.ACRMFA
	ACRSingle = auth.ACRSingle
)

func acr(amr []string) string {
	for _, m := range amr {
		if auth.IsSecondFactor(m) || slices.Contains(mfaMethods, m) {
			return ACRMFA
		}
	}
	return ACRSingle
}

// CreateAuthRequest stores a validated authorization request, after the checks
// op leaves to us: PKCE with S256 for every client, the openid scope, and only
// the scopes the client may ask for.
func (s storage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	c, ok := s.clients[req.ClientID]
	if !ok {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge with code_challenge_method=S256")
	}
	if req.ResponseType != oidc.ResponseTypeCode {
		return nil, oidc.ErrUnauthorizedClient().WithDescription("only response_type=code is supported")
	}
	var scopes []string
	for _, sc := range req.Scopes {
		if c.IsScopeAllowed(sc) && !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	if !slices.Contains(scopes, oidc.ScopeOpenID) {
		return nil, oidc.ErrInvalidScope().WithDescription("the openid scope is required")
	}
	binding, _ := ctx.Value(bindingKey{}).(string)
	if binding == "" {
		return nil, oidc.ErrServerError().WithDescription("no browser binding")
	}
	now := s.now()
	r := &AuthRequest{
		ID: auth.NewToken(), ClientID: req.ClientID, RedirectURI: req.RedirectURI, Scopes: scopes,
		State: req.State, Nonce: req.Nonce, ResponseType: string(req.ResponseType), ResponseMode: string(req.ResponseMode),
		CodeChallenge: req.CodeChallenge, CodeChallengeMethod: string(req.CodeChallengeMethod),
		Prompt: req.Prompt, LoginHint: req.LoginHint, Binding: binding,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.LoginTimeout),
	}
	if req.MaxAge != nil {
		v := int64(*req.MaxAge)
		r.MaxAge = &v
	}
	if err := s.store.CreateAuthRequest(ctx, r); err != nil {
		return nil, fmt.Errorf("store auth request: %w", err)
	}
	return opAuthRequest{r: r}, nil
}

func (s storage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	r, err := s.store.AuthRequest(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("auth request: %w", err)
	}
	if !s.now().Before(r.ExpiresAt) {
		return nil, dead("auth request expired")
	}
	return opAuthRequest{r: r}, nil
}

// AuthRequestByCode finds the request of a code before op checks PKCE and the
// client; the code is redeemed only when the tokens are issued. A code redeemed
// before is a replay (the code leaked, or an attacker races the client): it
// revokes every token issued from the code (RFC 6749 section 4.1.2).
func (s storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	now := s.now()
	r, err := s.store.AuthRequestByCode(ctx, auth.HashToken(code))
	if err != nil {
		return nil, fmt.Errorf("find code: %w", err)
	}
	if !r.CodeUsedAt.IsZero() {
		return nil, s.codeReplayed(ctx, r)
	}
	if !now.Before(r.CodeExpiresAt) {
		return nil, dead("code expired")
	}
	sess, _, err := s.alive(ctx, r.UserID, r.SessionID, now)
	if err != nil {
		return nil, err
	}
	return opAuthRequest{r: r, sess: sess}, nil
}

func (s storage) codeReplayed(ctx context.Context, r *AuthRequest) error {
	s.log.Warn("oidc: authorization code used twice; revoking the tokens issued from it", "client", r.ClientID, "user", r.UserID)
	if err := s.store.RevokeGrant(ctx, r.ID, s.now()); err != nil && !errors.Is(err, auth.ErrNotFound) {
		return fmt.Errorf("revoke grant of replayed code: %w", err)
	}
	s.audit(ctx, &auth.AuditEvent{Action: "oidc.code_replay", Outcome: auth.OutcomeFailure, ActorID: r.UserID,
		Detail: "authorization code for client " + r.ClientID + " used twice; its tokens were revoked"})
	return dead("code used already")
}

func (s storage) SaveAuthCode(ctx context.Context, id, code string) error {
	if err := s.store.SaveAuthCode(ctx, id, auth.HashToken(code), s.now().Add(codeTTL)); err != nil {
		return fmt.Errorf("save code: %w", err)
	}
	return nil
}

// DeleteAuthRequest keeps the request: it expires on its own, and until then a
// replayed code is recognized as one.
func (s storage) DeleteAuthRequest(context.Context, string) error { return nil }

// alive returns the session and user that a grant stands on, or an errDead error
// if the session ended (revoked, expired, idle too long) or the user is disabled.
func (s storage) alive(ctx context.Context, userID, sessionID string, now time.Time) (*auth.Session, *auth.User, error) {
	sess, err := s.users.Session(ctx, sessionID)
	if errors.Is(err, auth.ErrNotFound) {
		return nil, nil, dead("session gone")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load session: %w", err)
	}
	if sess.UserID != userID || !sess.Active(now) {
		return nil, nil, dead("session ended")
	}
	u, err := s.users.User(ctx, userID)
	if errors.Is(err, auth.ErrNotFound) {
		return nil, nil, dead("user gone")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load user: %w", err)
	}
	if u.Disabled {
		return nil, nil, dead("user disabled")
	}
	return sess, u, nil
}

// issue stores the tokens of a response: for a code, it redeems the code and
// creates the grant; for a refresh token, it rotates it.
func (s storage) issue(ctx context.Context, req op.TokenRequest, withRefresh bool) (*Token, string, error) {
	now := s.now()
	is := &Issue{Now: now}
	var g *Grant
	var scopes []string
	switch r := req.(type) {
	case opAuthRequest:
		g = &Grant{ID: r.r.ID, ClientID: r.r.ClientID, UserID: r.r.UserID, SessionID: r.r.SessionID, Scopes: r.r.Scopes,
			AuthTime: r.r.AuthTime, AMR: r.r.AMR, CreatedAt: now, ExpiresAt: r.sess.ExpiresAt}
		is.Code, is.Grant, scopes = r.r.ID, g, r.r.Scopes
	case *refreshRequest:
		g, scopes, is.Rotate = r.g, r.scopes, r.t.ID
		if s.cfg.RefreshReuseGrace > 0 {
			is.RotateUsedSince = now.Add(-s.cfg.RefreshReuseGrace)
		}
	default:
		return nil, "", oidc.ErrUnsupportedGrantType()
	}
	is.Access = &Token{ID: auth.NewToken(), GrantID: g.ID, Scopes: scopes, CreatedAt: now, ExpiresAt: earliest(now.Add(s.cfg.AccessTokenTTL), g.ExpiresAt)}
	value := ""
	if withRefresh {
		value = auth.NewToken()
		is.Refresh = &Token{ID: auth.HashToken(value), GrantID: g.ID, Scopes: scopes, CreatedAt: now, ExpiresAt: earliest(now.Add(s.cfg.RefreshTokenTTL), g.ExpiresAt)}
	}
	err := s.store.IssueTokens(ctx, is)
	switch {
	case errors.Is(err, auth.ErrConflict) && is.Code != "":
		r := req.(opAuthRequest).r
		return nil, "", oidc.ErrInvalidGrant().WithDescription("invalid code").WithParent(s.codeReplayed(ctx, r))
	case errors.Is(err, auth.ErrConflict):
		return nil, "", oidc.ErrInvalidGrant().WithDescription("refresh token used already")
	case err != nil:
		return nil, "", fmt.Errorf("issue tokens: %w", err)
	}
	return is.Access, value, nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (s storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	at, _, err := s.issue(ctx, req, false)
	if err != nil {
		return "", time.Time{}, err
	}
	return at.ID, at.ExpiresAt, nil
}

// CreateAccessAndRefreshTokens issues an access token and a refresh token; when
// exchanging a refresh token it rotates it: the old one stops working in the
// same transaction, and only one of two concurrent exchanges wins.
func (s storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, _ string) (string, string, time.Time, error) {
	at, refresh, err := s.issue(ctx, req, true)
	if err != nil {
		return "", "", time.Time{}, err
	}
	return at.ID, refresh, at.ExpiresAt, nil
}

// TokenRequestByRefreshToken checks a refresh token before it is exchanged: it
// must be unused, unexpired and unrevoked, and its session must still be active
// and its user enabled. A refresh token used a second time means it leaked:
// the whole grant is revoked (OAuth 2.0 Security BCP, refresh token rotation).
func (s storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	now := s.now()
	t, err := s.store.RefreshToken(ctx, auth.HashToken(token))
	if err != nil {
		return nil, fmt.Errorf("refresh token: %w", err)
	}
	g, err := s.store.Grant(ctx, t.GrantID)
	if err != nil {
		return nil, fmt.Errorf("refresh token grant: %w", err)
	}
	if !t.UsedAt.IsZero() && (s.cfg.RefreshReuseGrace <= 0 || now.Sub(t.UsedAt) >= s.cfg.RefreshReuseGrace) {
		if g.RevokedAt.IsZero() {
			s.log.Warn("oidc: refresh token used twice; revoking its grant", "client", g.ClientID, "user", g.UserID)
			if err := s.store.RevokeGrant(ctx, g.ID, now); err != nil {
				return nil, fmt.Errorf("revoke grant of reused refresh token: %w", err)
			}
			s.audit(ctx, &auth.AuditEvent{Action: "oidc.refresh_reuse", Outcome: auth.OutcomeFailure, ActorID: g.UserID,
				Detail: "refresh token for client " + g.ClientID + " used after rotation; its grant was revoked"})
		}
		return nil, dead("refresh token used already")
	}
	if !t.RevokedAt.IsZero() || !g.RevokedAt.IsZero() {
		return nil, dead("refresh token revoked")
	}
	if !now.Before(t.ExpiresAt) {
		return nil, dead("refresh token expired")
	}
	sess, _, err := s.alive(ctx, g.UserID, g.SessionID, now)
	if err != nil {
		return nil, err
	}
	if now.Sub(sess.LastSeenAt) >= time.Minute {
		if err := s.users.TouchSession(ctx, sess.ID, now, ""); err != nil {
			return nil, fmt.Errorf("record session activity: %w", err)
		}
	}
	return &refreshRequest{g: g, t: t, scopes: slices.Clone(t.Scopes)}, nil
}

// TerminateSession revokes what the user gave the client, and signs the user
// out of the sessions those grants came from.
func (s storage) TerminateSession(ctx context.Context, userID, clientID string) error {
	grants, err := s.store.RevokeGrants(ctx, userID, clientID, s.now())
	if err != nil {
		return fmt.Errorf("revoke grants: %w", err)
	}
	for _, g := range grants {
		if err := s.signOut(ctx, g); err != nil {
			return err
		}
	}
	return nil
}

// TerminateSessionFromRequest is end_session. With an id_token_hint whose sid
// names a grant of that user and client, it revokes that grant and signs out its
// session; with a hint without sid, every grant of the user at the client. A
// request without a hint only redirects: nobody can be signed out by a link.
func (s storage) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	if req.UserID == "" || req.ClientID == "" || req.IDTokenHintClaims == nil {
		return req.RedirectURI, nil
	}
	sid := req.IDTokenHintClaims.SessionID
	if sid == "" {
		return req.RedirectURI, s.TerminateSession(ctx, req.UserID, req.ClientID)
	}
	g, err := s.store.Grant(ctx, sid)
	if errors.Is(err, auth.ErrNotFound) {
		return req.RedirectURI, nil
	}
	if err != nil {
		return "", fmt.Errorf("end session: %w", err)
	}
	if g.UserID != req.UserID || g.ClientID != req.ClientID {
		return req.RedirectURI, nil
	}
	if err := s.store.RevokeGrant(ctx, g.ID, s.now()); err != nil {
		return "", fmt.Errorf("end session: %w", err)
	}
	return req.RedirectURI, s.signOut(ctx, g)
}

func (s storage) signOut(ctx context.Context, g *Grant) error {
	err := s.users.RevokeSession(ctx, g.UserID, g.SessionID, s.now())
	if err != nil && !errors.Is(err, auth.ErrNotFound) {
		return fmt.Errorf("end session: %w", err)
	}
	s.audit(ctx, &auth.AuditEvent{Action: "signout", Outcome: auth.OutcomeSuccess, ActorID: g.UserID, Detail: "end_session from client " + g.ClientID})
	return nil
}

// RevokeToken is the revocation endpoint (RFC 7009). A refresh token revokes its
// whole grant; an access token only itself. Unknown tokens are not an error.
func (s storage) RevokeToken(ctx context.Context, tokenOrID, _, clientID string) *oidc.Error {
	now := s.now()
	t, err := s.store.RefreshToken(ctx, tokenOrID)
	kind := "refresh"
	if errors.Is(err, auth.ErrNotFound) {
		t, err = s.store.AccessToken(ctx, tokenOrID)
		kind = "access"
	}
	if errors.Is(err, auth.ErrNotFound) {
		return nil
	}
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	g, err := s.store.Grant(ctx, t.GrantID)
	if err != nil {
		return oidc.ErrServerError().WithParent(err)
	}
	if g.ClientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("the token was not issued to this client")
	}
	if kind == "refresh" {
		err = s.store.RevokeGrant(ctx, g.ID, now)
	} else {
		err = s.store.RevokeAccessToken(ctx, t.ID, now)
	}
	if err != nil && !errors.Is(err, auth.ErrNotFound) {
		return oidc.ErrServerError().WithParent(err)
	}
	return nil
}

func (s storage) GetRefreshTokenInfo(ctx context.Context, _ string, token string) (string, string, error) {
	t, err := s.store.RefreshToken(ctx, auth.HashToken(token))
	if errors.Is(err, auth.ErrNotFound) {
		return "", "", op.ErrInvalidRefreshToken
	}
	if err != nil {
		return "", "", err
	}
	g, err := s.store.Grant(ctx, t.GrantID)
	if err != nil {
		return "", "", err
	}
	return g.UserID, t.ID, nil
}

func (s storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{s.key.alg}, nil
}

func (s storage) KeySet(context.Context) ([]op.Key, error) {
	out := make([]op.Key, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, publicKey{k})
	}
	return out, nil
}

func (s storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("no client %q", id)
	}
	return c, nil
}

func (s storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || !c.authenticate(secret) {
		s.log.Warn("oidc: client authentication failed", "client", id)
		return errors.New("wrong client id or secret")
	}
	return nil
}

// SetUserinfoFromScopes is deprecated in op; SetUserinfoFromRequest does the work.
func (s storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's claims.
func (s storage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	u, err := s.users.User(ctx, req.GetSubject())
	if err != nil {
		return fmt.Errorf("load user: %w", err)
	}
	setUserinfo(info, u, scopes)
	switch r := req.(type) {
	case opAuthRequest:
		info.AppendClaims("sid", r.r.ID)
	case *refreshRequest:
		info.AppendClaims("sid", r.g.ID)
		info.AppendClaims("acr", acr(r.g.AMR)) // op sets acr only from an AuthRequest
	}
	return nil
}

// The custom claims, in ID tokens, access tokens and userinfo.
const (
	ClaimUserType = "hestami_user_type"
	ClaimRoles    = "roles"
)

func setUserinfo(info *oidc.UserInfo, u *auth.User, scopes []string) {
	info.Subject = u.ID
	if slices.Contains(scopes, oidc.ScopeEmail) {
		info.Email = u.Email
		info.EmailVerified = oidc.Bool(u.EmailVerified)
	}
	if slices.Contains(scopes, oidc.ScopeProfile) {
		info.Name = u.Name
		info.Picture = u.AvatarURL
		info.UpdatedAt = oidc.FromTime(u.UpdatedAt)
	}
	info.AppendClaims(ClaimUserType, string(u.Type))
	info.AppendClaims(ClaimRoles, roles(u))
}

func roles(u *auth.User) []string {
	if u.Roles == nil {
		return []string{}
	}
	return u.Roles
}

// SetUserinfoFromToken is the userinfo endpoint: it answers only for a live
// access token whose session is active and whose user is enabled.
func (s storage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	t, g, u, err := s.liveAccessToken(ctx, tokenID)
	if err != nil {
		s.log.Debug("oidc: userinfo refused", "err", err)
		return oidc.ErrAccessDenied().WithDescription("the access token is not valid any more")
	}
	if g.UserID != subject {
		return oidc.ErrAccessDenied().WithDescription("the access token is not valid")
	}
	setUserinfo(info, u, t.Scopes)
	return nil
}

// liveAccessToken loads an access token and checks it still works.
func (s storage) liveAccessToken(ctx context.Context, id string) (*Token, *Grant, *auth.User, error) {
	now := s.now()
	t, err := s.store.AccessToken(ctx, id)
	if errors.Is(err, auth.ErrNotFound) {
		return nil, nil, nil, dead("unknown access token")
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load access token: %w", err)
	}
	if !t.RevokedAt.IsZero() {
		return nil, nil, nil, dead("access token revoked")
	}
	if !now.Before(t.ExpiresAt) {
		return nil, nil, nil, dead("access token expired")
	}
	g, err := s.store.Grant(ctx, t.GrantID)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load grant: %w", err)
	}
	if !g.RevokedAt.IsZero() {
		return nil, nil, nil, dead("grant revoked")
	}
	_, u, err := s.alive(ctx, g.UserID, g.SessionID, now)
	if err != nil {
		return nil, nil, nil, err
	}
	return t, g, u, nil
}

// SetIntrospectionFromToken answers introspection for the client the token was
// issued to.
func (s storage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	t, g, u, err := s.liveAccessToken(ctx, tokenID)
	if err != nil {
		return err
	}
	if g.UserID != subject || g.ClientID != clientID {
		return errors.New("token of another client")
	}
	info := new(oidc.UserInfo)
	setUserinfo(info, u, t.Scopes)
	resp.SetUserInfo(info)
	resp.Scope = t.Scopes
	resp.ClientID = g.ClientID
	resp.Audience = []string{g.ClientID}
	resp.Expiration = oidc.FromTime(t.ExpiresAt)
	resp.IssuedAt = oidc.FromTime(t.CreatedAt)
	resp.AuthTime = oidc.FromTime(g.AuthTime)
	resp.AuthenticationMethodsReferences = g.AMR
	resp.JWTID = t.ID
	return nil
}

func (s storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetPrivateClaimsFromRequest adds the scope, user type, roles and sid to access
// tokens.
func (s storage) GetPrivateClaimsFromRequest(ctx context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	u, err := s.users.User(ctx, req.GetSubject())
	if err != nil {
		return nil, fmt.Errorf("load user: %w", err)
	}
	claims := map[string]any{ClaimUserType: string(u.Type), ClaimRoles: roles(u), "scope": strings.Join(req.GetScopes(), " ")}
	switch r := req.(type) {
	case opAuthRequest:
		claims["sid"] = r.r.ID
	case *refreshRequest:
		claims["sid"] = r.g.ID
	}
	return claims, nil
}

func (s storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("private_key_jwt is not supported")
}

func (s storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

func (s storage) Health(context.Context) error { return nil }
