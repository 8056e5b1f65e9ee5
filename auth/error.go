package auth

import (
	"errors"
	"fmt"
)

// Code classifies an Error; only the HTTP layer maps codes to status codes.
type Code string

// The error codes.
const (
	CodeInvalid      Code = "invalid"      // bad input: 400
	CodeNotFound     Code = "not_found"    // 404
	CodeConflict     Code = "conflict"     // 409
	CodeUnauthorized Code = "unauthorized" // not signed in, or the proof failed: 401
	CodeForbidden    Code = "forbidden"    // signed in, but not allowed: 403
	CodeRateLimited  Code = "rate_limited" // 429
	CodeUnavailable  Code = "unavailable"  // a provider or dependency is down: 503
	CodeInternal     Code = "internal"     // 500
)

// Error is the application's error: a Code, a Message safe to show to the person
// (what failed and what to do next), and the underlying error for the logs only.
type Error struct {
	Code    Code
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code and a message for the user; wrap the cause
// with WithCause.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithCause returns a copy of e that wraps err (logged, never shown).
func (e *Error) WithCause(err error) *Error {
	c := *e
	c.Err = err
	return &c
}

// ErrorCode returns the code of the first *Error in err's chain, CodeNotFound for
// ErrNotFound, CodeConflict for ErrConflict, and CodeInternal otherwise.
func ErrorCode(err error) Code {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, ErrNotFound):
		return CodeNotFound
	case errors.Is(err, ErrConflict):
		return CodeConflict
	}
	return CodeInternal
}

// ErrorMessage returns the message of the first *Error in err's chain, or a generic
// one: internal details are for the logs.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	switch ErrorCode(err) {
	case CodeNotFound:
		return "Not found."
	case CodeConflict:
		return "That conflicts with something that already exists."
	}
	return "Something went wrong on our side. Try again; if it keeps happening, contact support."
}

// Store errors. Implementations return them (wrapped is fine) so the service can
// tell the cases apart.
var (
	// ErrNotFound: no such user, identity, session or state.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique key is taken (an identity linked to another user, an
	// email in use).
	ErrConflict = errors.New("conflict")
)
