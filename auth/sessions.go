package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

var errSignedOut = Errorf(CodeUnauthorized, "You are signed out (your session ended or was revoked). Sign in again.")

// Authenticate returns the session and user a session token signs in. It fails
// with CodeUnauthorized if the token is unknown, revoked, expired or idle too
// long, or the user is disabled. It records activity at most every TouchInterval.
//
// A session validated less than Config.SessionCacheTTL ago is served from memory
// (its timeouts are still checked against the clock on every request).
func (s *Service) Authenticate(ctx context.Context, token string, c Client) (*Session, *User, error) {
	if token == "" {
		return nil, nil, errSignedOut
	}
	return s.authenticate(ctx, HashToken(token), c)
}

// AuthenticateSessionID is Authenticate for a caller that proved the session
// by other means than its token: a bearer access token of the OpenID Connect
// provider, verified already, names the session it was issued from. The same
// checks apply. Never pass it an id taken from the request itself: session ids
// are not secrets (the API lists them).
func (s *Service) AuthenticateSessionID(ctx context.Context, id string, c Client) (*Session, *User, error) {
	if id == "" {
		return nil, nil, errSignedOut
	}
	return s.authenticate(ctx, id, c)
}

func (s *Service) authenticate(ctx context.Context, id string, c Client) (*Session, *User, error) {
	now := s.now()
	sess, u, ok := s.cache.get(id, now)
	if !ok {
		gen := s.cache.generation()
		var err error
		sess, u, err = s.store.SessionUser(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil, nil, errSignedOut
		}
		if err != nil {
			return nil, nil, fmt.Errorf("load session: %w", err)
		}
		if sess.Active(now) && !u.Disabled {
			s.cache.put(gen, sess, u, now)
		}
	}
	if !sess.Active(now) || u.Disabled {
		return nil, nil, errSignedOut
	}
	if now.Sub(sess.LastSeenAt) >= s.cfg.TouchInterval || (c.IP != "" && c.IP != sess.IP) {
		if err := s.store.TouchSession(ctx, sess.ID, now, c.IP); err != nil {
			return nil, nil, fmt.Errorf("record session activity: %w", err)
		}
		s.cache.touched(sess.ID, now, c.IP)
		sess.LastSeenAt = now
		if c.IP != "" {
			sess.IP = c.IP
		}
	}
	return sess, u, nil
}

// StartSession signs u in with a new session (for sign-ins that do not go through
// a Provider: the development identity provider, tests, a future passkey-only
// sign-in) and returns its token.
func (s *Service) StartSession(ctx context.Context, u *User, methods []string, c Client) (string, *Session, error) {
	return s.newSession(ctx, u, methods, c, s.now())
}

// RotateSession replaces sess with a new session carrying the same proof (after a
// privilege change) and returns the new token; the old token stops working.
func (s *Service) RotateSession(ctx context.Context, sess *Session, u *User, c Client) (string, *Session, error) {
	now := s.now()
	token, next, err := s.newSession(ctx, u, sess.Methods, c, now)
	if err != nil {
		return "", nil, err
	}
	next.AuthTime, next.ExpiresAt = sess.AuthTime, sess.ExpiresAt
	if err := s.revokeSession(ctx, sess.UserID, sess.ID, now); err != nil {
		return "", nil, fmt.Errorf("rotate session: %w", err)
	}
	return token, next, nil
}

// ElevateSession records that a second factor (method) was just verified in sess:
// it replaces sess with a new session (a privilege change rotates the id) whose
// Methods include method and whose MFAAt is now, and returns the new token.
func (s *Service) ElevateSession(ctx context.Context, sess *Session, u *User, method string, c Client) (string, *Session, error) {
	if !IsSecondFactor(method) {
		return "", nil, fmt.Errorf("elevate session: %q is not a second factor", method)
	}
	now := s.now()
	methods := append([]string{}, sess.Methods...)
	if !slices.Contains(methods, method) {
		methods = append(methods, method)
	}
	token := NewToken()
	next := &Session{
		ID: HashToken(token), UserID: sess.UserID, CreatedAt: now, LastSeenAt: now, ExpiresAt: sess.ExpiresAt,
		IdleTimeout: sess.IdleTimeout, IP: c.IP, UserAgent: truncate(c.UserAgent, 512), Methods: methods,
		AuthTime: sess.AuthTime, MFAAt: now,
	}
	if err := s.store.CreateSession(ctx, next); err != nil {
		return "", nil, fmt.Errorf("elevate session: %w", err)
	}
	if err := s.revokeSession(ctx, sess.UserID, sess.ID, now); err != nil {
		return "", nil, fmt.Errorf("elevate session: %w", err)
	}
	return token, next, nil
}

// SignOut revokes the session.
func (s *Service) SignOut(ctx context.Context, sess *Session, c Client) error {
	if err := s.revokeSession(ctx, sess.UserID, sess.ID, s.now()); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("sign out: %w", err)
	}
	return s.audit(ctx, &AuditEvent{Action: "signout", ActorID: sess.UserID, IP: c.IP, UserAgent: c.UserAgent})
}

// Sessions lists the user's active sessions, newest first.
func (s *Service) Sessions(ctx context.Context, userID string) ([]*Session, error) {
	now := s.now()
	all, err := s.store.Sessions(ctx, userID, now)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	out := all[:0]
	for _, sess := range all {
		if sess.Active(now) {
			out = append(out, sess)
		}
	}
	return out, nil
}

// RevokeSession ends one of the target user's sessions; actor is the user doing it
// (the target themselves, or staff with sessions:manage).
func (s *Service) RevokeSession(ctx context.Context, actor *User, targetID, sessionID string, c Client) error {
	if err := s.mayManageSessions(actor, targetID); err != nil {
		return err
	}
	err := s.revokeSession(ctx, targetID, sessionID, s.now())
	if errors.Is(err, ErrNotFound) {
		return Errorf(CodeNotFound, "There is no such session (it may have ended already).")
	}
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	return s.audit(ctx, &AuditEvent{Action: "session.revoke", ActorID: actor.ID, SubjectID: other(actor.ID, targetID), IP: c.IP, UserAgent: c.UserAgent, Detail: "one session"})
}

// RevokeSessions ends all the target user's sessions except keep (the caller's own
// session when they sign out everywhere else; empty for all) and returns how many.
func (s *Service) RevokeSessions(ctx context.Context, actor *User, targetID, keep string, c Client) (int, error) {
	if err := s.mayManageSessions(actor, targetID); err != nil {
		return 0, err
	}
	n, err := s.revokeSessions(ctx, targetID, keep, s.now())
	if err != nil {
		return 0, fmt.Errorf("revoke sessions: %w", err)
	}
	return n, s.audit(ctx, &AuditEvent{Action: "session.revoke", ActorID: actor.ID, SubjectID: other(actor.ID, targetID), IP: c.IP, UserAgent: c.UserAgent, Detail: fmt.Sprintf("%d sessions", n)})
}

func (s *Service) mayManageSessions(actor *User, targetID string) error {
	if actor == nil {
		return errSignedOut
	}
	if actor.ID != targetID && !actor.Can(PermSessionsMgmt) {
		return Errorf(CodeForbidden, "You can only end your own sessions.")
	}
	return nil
}

// other returns target if it is not actor, else "".
func other(actor, target string) string {
	if actor == target {
		return ""
	}
	return target
}

// Unlink removes one of the user's identities, as long as another remains.
func (s *Service) Unlink(ctx context.Context, u *User, provider, subject string, c Client) error {
	ev := &AuditEvent{Action: "identity.unlink", ActorID: u.ID, Provider: provider, IP: c.IP, UserAgent: c.UserAgent}
	err := s.store.RemoveIdentity(ctx, u.ID, provider, subject)
	switch {
	case errors.Is(err, ErrConflict):
		ev.Outcome, ev.Detail = OutcomeFailure, "last sign-in method"
		_ = s.audit(ctx, ev)
		return Errorf(CodeConflict, "This is your only way to sign in. Link another account first, then remove this one.")
	case errors.Is(err, ErrNotFound):
		return Errorf(CodeNotFound, "That account is not linked to yours.")
	case err != nil:
		return fmt.Errorf("unlink: %w", err)
	}
	return s.audit(ctx, ev)
}
