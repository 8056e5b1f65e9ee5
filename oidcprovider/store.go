package oidcprovider

import (
	"context"
	"time"

	"github.com/hestami/hestami/auth"
)

// AuthRequest is a client's authorization request, from /authorize until its code
// is redeemed (and kept until it expires, so that a replayed code is recognized).
type AuthRequest struct {
	// ID is random (256 bits); it is the id in the login URL and the callback.
	ID           string
	ClientID     string
	RedirectURI  string
	Scopes       []string
	State        string
	Nonce        string
	ResponseType string
	ResponseMode string
	// CodeChallenge and CodeChallengeMethod are the PKCE challenge ("S256").
	CodeChallenge       string
	CodeChallengeMethod string
	Prompt              []string
	// MaxAge is the max_age parameter in seconds; nil when the client sent none.
	MaxAge    *int64
	LoginHint string
	// Binding is auth.HashToken of the cookie that the browser which started the
	// request holds: only that browser can take the code.
	Binding   string
	CreatedAt time.Time
	ExpiresAt time.Time

	// Set by Complete, once the person signed in.
	UserID      string
	SessionID   string
	AuthTime    time.Time
	AMR         []string
	CompletedAt time.Time
	// Completion is auth.HashToken of the one-time secret in the callback URL
	// that Complete returned: only the browser that signed in can take the code.
	Completion string

	// CodeHash is auth.HashToken of the authorization code, once issued.
	CodeHash      string
	CodeExpiresAt time.Time
	// CodeUsedAt is when the code was first redeemed.
	CodeUsedAt time.Time
}

// Grant is what one sign-in gave one client: every access and refresh token
// issued from it belongs to it, and revoking it ends them all (a replayed code, a
// reused refresh token, a sign-out). Its ID is the ID of the AuthRequest it came
// from.
type Grant struct {
	ID        string
	ClientID  string
	UserID    string
	SessionID string
	Scopes    []string
	AuthTime  time.Time
	AMR       []string
	CreatedAt time.Time
	// ExpiresAt is the end of the session it came from: no token outlives it.
	ExpiresAt time.Time
	RevokedAt time.Time // zero while not revoked
}

// Token is an access token or a refresh token, as stored. Access tokens are JWTs
// whose jti is ID; refresh tokens are random and ID is their auth.HashToken.
type Token struct {
	ID        string
	GrantID   string
	Scopes    []string
	CreatedAt time.Time
	ExpiresAt time.Time
	// UsedAt is when a refresh token was exchanged (rotated); zero while unused.
	UsedAt    time.Time
	RevokedAt time.Time
}

// Issue is what one token response stores.
type Issue struct {
	// Code, when not empty, is the ID of the request whose code is redeemed:
	// its CodeUsedAt is set to Now, and Grant is created.
	Code  string
	Grant *Grant
	// Rotate, when not empty, is the ID of the refresh token exchanged: its
	// UsedAt is set to Now. A token used already rotates again only if it was
	// used at or after RotateUsedSince (the reuse grace; zero: never).
	Rotate          string
	RotateUsedSince time.Time
	Access          *Token
	Refresh         *Token // nil: no refresh token
	Now             time.Time
}

// StoredKey is a token signing key kept in the store.
type StoredKey struct {
	ID        string
	Algorithm string // a JOSE algorithm: "RS256", "ES256"
	// PrivateKey is the key in PKCS #8 DER.
	PrivateKey []byte
	CreatedAt  time.Time
}

// Store keeps the provider's authorization requests, grants, tokens and signing
// keys; package postgres implements it. Errors: auth.ErrNotFound and
// auth.ErrConflict (wrapped is fine) as documented on each method.
type Store interface {
	// CreateAuthRequest stores r.
	CreateAuthRequest(ctx context.Context, r *AuthRequest) error
	// AuthRequest returns the request with id, whatever its state; auth.ErrNotFound
	// if there is none.
	AuthRequest(ctx context.Context, id string) (*AuthRequest, error)
	// CompleteAuthRequest records who signed in for request r.ID (r.UserID,
	// SessionID, AuthTime, AMR, CompletedAt, Completion). auth.ErrNotFound if there
	// is no such request, or it expired before r.CompletedAt, or it was completed
	// already: a request is completed once.
	CompleteAuthRequest(ctx context.Context, r *AuthRequest) error
	// SaveAuthCode records the code issued for the completed request id.
	// auth.ErrNotFound if there is no completed request id; auth.ErrConflict if
	// it has a code already (one code per request).
	SaveAuthCode(ctx context.Context, id, codeHash string, expiresAt time.Time) error
	// AuthRequestByCode returns the request whose code has codeHash, whatever
	// its state; auth.ErrNotFound if there is none.
	AuthRequestByCode(ctx context.Context, codeHash string) (*AuthRequest, error)

	// Grant returns the grant with id, revoked or not; auth.ErrNotFound if none.
	Grant(ctx context.Context, id string) (*Grant, error)
	// RevokeGrant revokes grant id and every token issued from it. It is not an
	// error if it was revoked already; auth.ErrNotFound if there is no such grant.
	RevokeGrant(ctx context.Context, id string, at time.Time) error
	// RevokeGrants revokes every grant the user gave the client, and their
	// tokens, and returns the grants it revoked.
	RevokeGrants(ctx context.Context, userID, clientID string, at time.Time) ([]*Grant, error)

	// IssueTokens makes the writes of one token response in one transaction:
	// nothing of it is stored if any part fails. auth.ErrConflict if is.Code was
	// redeemed already or is.Rotate was used or revoked already (only one of two
	// concurrent calls wins).
	IssueTokens(ctx context.Context, is *Issue) error
	// AccessToken returns the access token with id; auth.ErrNotFound if none.
	AccessToken(ctx context.Context, id string) (*Token, error)
	// RefreshToken returns the refresh token with id (its hash); auth.ErrNotFound
	// if none.
	RefreshToken(ctx context.Context, id string) (*Token, error)
	// RevokeAccessToken revokes one access token; auth.ErrNotFound if none.
	RevokeAccessToken(ctx context.Context, id string, at time.Time) error

	// SigningKeys returns the stored signing keys, newest first.
	SigningKeys(ctx context.Context) ([]*StoredKey, error)
	// EnsureSigningKey stores k unless a signing key is stored already, and
	// returns the newest stored key: replicas starting at once all get the same.
	EnsureSigningKey(ctx context.Context, k *StoredKey) (*StoredKey, error)

	// DeleteExpired removes requests, tokens and grants that expired before
	// before, and returns how many rows it removed.
	DeleteExpired(ctx context.Context, before time.Time) (int, error)
}

// UserSource is what the provider reads and changes of the auth service's users
// and sessions; auth.Store satisfies it.
type UserSource interface {
	// User returns the user with id; auth.ErrNotFound if there is none.
	User(ctx context.Context, id string) (*auth.User, error)
	// Session returns the session with id, revoked or not; auth.ErrNotFound if none.
	Session(ctx context.Context, id string) (*auth.Session, error)
	// TouchSession records activity on the session (a refresh counts as use).
	TouchSession(ctx context.Context, id string, at time.Time, ip string) error
	// RevokeSession ends the user's session id (sign-out through end_session).
	RevokeSession(ctx context.Context, userID, id string, at time.Time) error
	// AppendAudit records a security event.
	AppendAudit(ctx context.Context, e *auth.AuditEvent) error
}

var _ UserSource = auth.Store(nil)
