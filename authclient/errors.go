package authclient

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// The errors to match with errors.Is.
var (
	// ErrUnauthenticated: no credentials, or the auth service refused them (an
	// expired, revoked or forged token; a session that was signed out or ended).
	ErrUnauthenticated = errors.New("not signed in")
	// ErrForbidden: signed in, but not allowed (a missing permission, or the
	// auth service refused the session, e.g. by its IP rules).
	ErrForbidden = errors.New("not allowed")
	// ErrUnavailable: the auth service could not be asked (down, unreachable,
	// or answering with errors). Nobody is signed in meanwhile: fail closed.
	ErrUnavailable = errors.New("the auth service is unreachable")
)

// Error is an answer of the auth service that refused a request or failed.
// errors.Is matches it to ErrUnauthenticated (401), ErrForbidden (403) or
// ErrUnavailable (429 and 5xx).
type Error struct {
	Status int
	// Code is the auth service's error code (unauthorized, forbidden...).
	Code string
	// Message is the auth service's message, written for people.
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("auth service answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Is matches e to the sentinel of its status.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnauthenticated:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrUnavailable:
		return e.Status == http.StatusTooManyRequests || e.Status >= 500
	}
	return false
}

// MFARequiredError says the principal's session needs a second factor first:
// the auth service's MFA policy still wants one (Code mfa_required, or
// mfa_blocked when a staff member's setup deadline passed), or a route wants
// one verified recently (Action "step_up", from RequireMFA).
type MFARequiredError struct {
	Code string
	// Action is the auth service's MFA action (challenge, setup_required,
	// blocked) or "step_up".
	Action          string
	AcceptedMethods []string
	// Reason says why, for people.
	Reason string
	// Location is the page (an absolute URL) where the person resolves it.
	Location string
	// MaxAge is how recent a step-up's second factor must be.
	MaxAge time.Duration
}

func (e *MFARequiredError) Error() string {
	if e.Reason != "" {
		return "second factor required: " + e.Reason
	}
	return "second factor required (" + e.Action + ")"
}

// PermissionError says the principal lacks a permission a route needs. It
// matches ErrForbidden.
type PermissionError struct {
	Permission string
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("this needs the %s permission, which your account does not have; ask an administrator if you need it", e.Permission)
}

// Is matches ErrForbidden.
func (e *PermissionError) Is(target error) bool { return target == ErrForbidden }

// unavailable wraps err (a network failure) as ErrUnavailable, naming url.
func unavailable(url string, err error) error {
	return fmt.Errorf("%w at %s: %w", ErrUnavailable, url, err)
}
