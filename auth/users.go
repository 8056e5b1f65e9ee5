package auth

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
)

// NewUser is an account an administrator (or the CLI) creates. Its email is taken
// as verified: the first sign-in with a provider that verified the same email
// claims the account.
type NewUser struct {
	Type  UserType
	Email string
	Name  string
	Roles []string
}

// CreateUser creates an invited account. actor is nil for the command line (the
// first administrator); otherwise it needs users:manage, and roles:manage to give
// roles other than the type's default.
func (s *Service) CreateUser(ctx context.Context, actor *User, n NewUser, c Client) (*User, error) {
	if actor != nil && !actor.Can(PermUsersManage) {
		return nil, Errorf(CodeForbidden, "Creating accounts needs the %s permission.", PermUsersManage)
	}
	if !n.Type.Valid() {
		return nil, Errorf(CodeInvalid, "Account type must be one of staff, owner, provider; got %q.", n.Type)
	}
	email := NormalizeEmail(n.Email)
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return nil, Errorf(CodeInvalid, "%q is not an email address.", n.Email)
	}
	roles := n.Roles
	if len(roles) == 0 {
		roles = DefaultRoles(n.Type)
	}
	roles, err := ValidateRoles(n.Type, roles)
	if err != nil {
		return nil, err
	}
	if actor != nil && !slices.Equal(roles, DefaultRoles(n.Type)) && !actor.Can(PermRolesManage) {
		return nil, Errorf(CodeForbidden, "Giving roles needs the %s permission.", PermRolesManage)
	}
	existing, err := s.store.UsersByEmail(ctx, email)
	if err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	if len(existing) > 0 {
		return nil, Errorf(CodeConflict, "An account with %s exists already (id %s).", email, existing[0].ID)
	}
	u := &User{Type: n.Type, Email: email, EmailVerified: true, Name: strings.TrimSpace(n.Name), Roles: roles}
	if err := s.store.CreateUser(ctx, u, nil); err != nil {
		return nil, fmt.Errorf("create user: %w", err)
	}
	ev := &AuditEvent{Action: "user.create", SubjectID: u.ID, IP: c.IP, UserAgent: c.UserAgent,
		Detail: fmt.Sprintf("%s %s roles %s", u.Type, u.Email, strings.Join(roles, ","))}
	if actor != nil {
		ev.ActorID = actor.ID
	} else {
		ev.Detail += " (command line)"
	}
	return u, s.audit(ctx, ev)
}

// SetRoles replaces the target's roles; actor needs roles:manage. Nobody removes
// staff:admin from themselves, so an administrator cannot lock everybody out by
// mistake. The caller rotates the actor's own session if actor is the target.
func (s *Service) SetRoles(ctx context.Context, actor *User, targetID string, roles []string, c Client) (*User, error) {
	if actor == nil || !actor.Can(PermRolesManage) {
		return nil, Errorf(CodeForbidden, "Changing roles needs the %s permission.", PermRolesManage)
	}
	u, err := s.store.User(ctx, targetID)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeNotFound, "There is no user %s.", targetID)
	}
	if err != nil {
		return nil, fmt.Errorf("set roles: %w", err)
	}
	roles, err = ValidateRoles(u.Type, roles)
	if err != nil {
		return nil, err
	}
	if actor.ID == u.ID && slices.Contains(u.Roles, "staff:admin") && !slices.Contains(roles, "staff:admin") {
		return nil, Errorf(CodeForbidden, "You cannot remove staff:admin from yourself; ask another administrator.")
	}
	before := strings.Join(u.Roles, ",")
	err = s.store.SetRoles(ctx, u.ID, roles)
	s.cache.forgetUser(u.ID)
	if err != nil {
		return nil, fmt.Errorf("set roles: %w", err)
	}
	u.Roles = roles
	return u, s.audit(ctx, &AuditEvent{Action: "role.change", ActorID: actor.ID, SubjectID: u.ID, IP: c.IP, UserAgent: c.UserAgent,
		Detail: fmt.Sprintf("roles %q -> %q", before, strings.Join(roles, ","))})
}

// SetDisabled disables or re-enables the target's account; disabling ends every
// session. actor needs users:manage and cannot disable themselves.
func (s *Service) SetDisabled(ctx context.Context, actor *User, targetID string, disabled bool, c Client) (*User, error) {
	if actor == nil || !actor.Can(PermUsersManage) {
		return nil, Errorf(CodeForbidden, "Disabling accounts needs the %s permission.", PermUsersManage)
	}
	if actor.ID == targetID && disabled {
		return nil, Errorf(CodeForbidden, "You cannot disable your own account.")
	}
	u, err := s.store.User(ctx, targetID)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeNotFound, "There is no user %s.", targetID)
	}
	if err != nil {
		return nil, fmt.Errorf("disable user: %w", err)
	}
	u.Disabled = disabled
	err = s.store.UpdateUser(ctx, u)
	s.cache.forgetUser(u.ID)
	if err != nil {
		return nil, fmt.Errorf("disable user: %w", err)
	}
	if disabled {
		if _, err := s.revokeSessions(ctx, u.ID, "", s.now()); err != nil {
			return nil, fmt.Errorf("disable user: end sessions: %w", err)
		}
	}
	return u, s.audit(ctx, &AuditEvent{Action: "user.update", ActorID: actor.ID, SubjectID: u.ID, IP: c.IP, UserAgent: c.UserAgent,
		Detail: fmt.Sprintf("disabled=%t", disabled)})
}

// User returns the user with id for actor (themselves, or staff with users:read).
func (s *Service) User(ctx context.Context, actor *User, id string) (*User, error) {
	if actor == nil || actor.ID != id && !actor.Can(PermUsersRead) {
		return nil, Errorf(CodeForbidden, "Reading other accounts needs the %s permission.", PermUsersRead)
	}
	u, err := s.store.User(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeNotFound, "There is no user %s.", id)
	}
	return u, err
}

// Users lists users for actor (users:read).
func (s *Service) Users(ctx context.Context, actor *User, f UserFilter) ([]*User, error) {
	if actor == nil || !actor.Can(PermUsersRead) {
		return nil, Errorf(CodeForbidden, "Listing accounts needs the %s permission.", PermUsersRead)
	}
	return s.store.Users(ctx, f)
}

// Identities lists the user's linked sign-in methods.
func (s *Service) Identities(ctx context.Context, userID string) ([]*Identity, error) {
	return s.store.Identities(ctx, userID)
}

// AuditEvents lists audit events for actor (audit:read).
func (s *Service) AuditEvents(ctx context.Context, actor *User, f AuditFilter) ([]*AuditEvent, error) {
	if actor == nil || !actor.Can(PermAuditRead) {
		return nil, Errorf(CodeForbidden, "Reading the audit log needs the %s permission.", PermAuditRead)
	}
	return s.store.AuditEvents(ctx, f)
}
