// Package authclient is what another service (first the backup daemon) needs to
// trust the auth service (hestami auth serve) for who is calling and what they
// may do:
//
//   - Client asks the auth service who an access token stands for
//     (GET /api/v1/me with the token as a bearer) and returns a Principal: the
//     user, the permissions their roles grant, and how and when their session
//     proved who they are (second factors, for step-up).
//   - Login signs browsers in to the service's own pages, which live on another
//     origin than the auth service and cannot read its cookie: the service is
//     an OpenID Connect client of the auth service (authorization code with
//     PKCE, state and nonce), and keeps the tokens in an encrypted cookie.
//     Require and RequireMFA are the middleware that guard routes with both.
//
// Every failure closes: an auth service that cannot be reached signs nobody in.
package authclient

import (
	"context"
	"slices"
	"time"
)

// Principal is who a request is from, as the auth service says.
type Principal struct {
	UserID string
	Email  string
	Name   string
	// Type is the user type: staff, owner or provider.
	Type string
	// Permissions are what the user's roles grant ("backup:read", ...).
	Permissions []string
	// Methods are how the session proved who the person is (OIDC amr values:
	// the sign-in provider, then second factors such as "otp" or "hwk").
	Methods []string
	// AuthTime is when the person signed in; MFAAt when a second factor was
	// last verified in the session (zero: never).
	AuthTime time.Time
	MFAAt    time.Time
	// SessionID is the auth service's session the token stands on: the same
	// for every token of one sign-in, different for another person or another
	// sign-in (a two-person rule compares UserID, not this).
	SessionID string
}

// Can reports whether the principal holds permission perm.
func (p *Principal) Can(perm string) bool {
	return p != nil && slices.Contains(p.Permissions, perm)
}

// MFAWithin reports whether a second factor was verified in the principal's
// session at most d before now (step-up: "verified in the last 5 minutes").
func (p *Principal) MFAWithin(d time.Duration, now time.Time) bool {
	return p != nil && !p.MFAAt.IsZero() && now.Sub(p.MFAAt) <= d
}

func (p *Principal) clone() *Principal {
	c := *p
	c.Permissions, c.Methods = slices.Clone(p.Permissions), slices.Clone(p.Methods)
	return &c
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p (what Require does for the handlers it
// guards).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal Require or RequireMFA put in ctx; nil if
// none.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
