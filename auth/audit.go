package auth

import "time"

// AuditEvent is one line of the security audit log.
type AuditEvent struct {
	ID   int64
	Time time.Time
	// Action is what happened: "signin", "signup", "signout", "identity.link",
	// "identity.unlink", "identity.claim", "session.revoke", "role.change",
	// "user.create", "user.update".
	Action string
	// Outcome is "success" or "failure".
	Outcome string
	// ActorID is the user who acted (empty when nobody is signed in yet).
	ActorID string
	// SubjectID is the user acted on, when it is not the actor.
	SubjectID string
	Provider  string
	IP        string
	UserAgent string
	// Detail is a short, secret-free explanation ("state already used",
	// "roles staff:support -> staff:admin").
	Detail string
}

// The outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// AuditFilter selects audit events.
type AuditFilter struct {
	UserID string // actor or subject; empty: all
	Action string // empty: all
	Since  time.Time
	Limit  int // 0: 100
}

// Client describes who is making a request, for sessions and the audit log.
type Client struct {
	IP        string
	UserAgent string
}
