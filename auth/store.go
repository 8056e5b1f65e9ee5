package auth

import (
	"context"
	"time"
)

// UserStore keeps users and their identities.
type UserStore interface {
	// CreateUser stores u, assigning u.ID, CreatedAt and UpdatedAt. If identity is
	// not nil it is linked to the new user in the same transaction. Returns
	// ErrConflict if identity's (Provider, Subject) is linked already.
	CreateUser(ctx context.Context, u *User, identity *Identity) error
	// User returns the user with id; ErrNotFound if there is none.
	User(ctx context.Context, id string) (*User, error)
	// UsersByEmail returns the users whose email equals email (NormalizeEmail'd),
	// oldest first; none is not an error.
	UsersByEmail(ctx context.Context, email string) ([]*User, error)
	// Users lists users matching f, newest first.
	Users(ctx context.Context, f UserFilter) ([]*User, error)
	// UpdateUser saves u's Email, EmailVerified, Name, AvatarURL and Disabled;
	// ErrNotFound if there is no such user.
	UpdateUser(ctx context.Context, u *User) error
	// SetRoles replaces the user's roles; ErrNotFound if there is no such user.
	SetRoles(ctx context.Context, userID string, roles []string) error

	// IdentityBySubject returns the identity; ErrNotFound if none is linked.
	IdentityBySubject(ctx context.Context, provider, subject string) (*Identity, error)
	// Identities returns the user's identities, oldest first.
	Identities(ctx context.Context, userID string) ([]*Identity, error)
	// AddIdentity links id to id.UserID; ErrConflict if (Provider, Subject) is
	// linked to any user already.
	AddIdentity(ctx context.Context, id *Identity) error
	// UpdateIdentity saves the profile fields, Scopes and LastUsedAt of the
	// identity (matched on Provider and Subject).
	UpdateIdentity(ctx context.Context, id *Identity) error
	// RemoveIdentity unlinks (provider, subject) from userID, refusing (with
	// ErrConflict) to remove the user's last identity. ErrNotFound if the user has
	// no such identity.
	RemoveIdentity(ctx context.Context, userID, provider, subject string) error
}

// UserFilter selects users in UserStore.Users.
type UserFilter struct {
	Type  UserType // empty: every type
	Query string   // a substring of the email or name; empty: all
	Limit int      // 0: 100
}

// SessionStore keeps sessions, keyed by the SHA-256 of their token.
type SessionStore interface {
	// CreateSession stores s (s.ID is the token's hash).
	CreateSession(ctx context.Context, s *Session) error
	// Session returns the session with id, revoked or not; ErrNotFound if none.
	Session(ctx context.Context, id string) (*Session, error)
	// SessionUser returns the session with id and its user in one round trip
	// (every authenticated request asks); ErrNotFound if there is no session.
	SessionUser(ctx context.Context, id string) (*Session, *User, error)
	// TouchSession sets the session's LastSeenAt (and IP, if not empty).
	TouchSession(ctx context.Context, id string, at time.Time, ip string) error
	// Sessions returns the user's sessions that are not revoked and end after
	// now, newest first.
	Sessions(ctx context.Context, userID string, now time.Time) ([]*Session, error)
	// RevokeSession marks the user's session id revoked at; ErrNotFound if the
	// user has no such session.
	RevokeSession(ctx context.Context, userID, id string, at time.Time) error
	// RevokeSessions marks every session of the user revoked, except keep (a
	// session id, or empty), and returns how many it revoked.
	RevokeSessions(ctx context.Context, userID, keep string, at time.Time) (int, error)
	// DeleteExpiredSessions removes sessions that ended before before.
	DeleteExpiredSessions(ctx context.Context, before time.Time) (int, error)
}

// LoginStateStore keeps the state of sign-ins in progress.
type LoginStateStore interface {
	// PutLoginState stores s under s.ID (the state parameter's hash).
	PutLoginState(ctx context.Context, s *LoginState) error
	// TakeLoginState deletes the state with id and returns it: a state works once,
	// even under concurrent callbacks. ErrNotFound if there is none (never issued,
	// or taken already).
	TakeLoginState(ctx context.Context, id string) (*LoginState, error)
	// DeleteExpiredLoginStates removes states that expired before before.
	DeleteExpiredLoginStates(ctx context.Context, before time.Time) (int, error)
}

// AuditLog is the append-only record of security events.
type AuditLog interface {
	// AppendAudit records e, assigning e.ID.
	AppendAudit(ctx context.Context, e *AuditEvent) error
	// AuditEvents returns events matching f, newest first.
	AuditEvents(ctx context.Context, f AuditFilter) ([]*AuditEvent, error)
}

// Store is everything the Service keeps; package postgres implements it.
type Store interface {
	UserStore
	SessionStore
	LoginStateStore
	AuditLog
}
