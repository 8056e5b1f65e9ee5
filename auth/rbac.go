package auth

import (
	"slices"
	"sort"
)

// Permission names an action: "resource:verb".
type Permission string

// The permissions. Backup permissions are checked by the backup daemon's API.
const (
	PermUsersRead     Permission = "users:read"
	PermUsersManage   Permission = "users:manage"
	PermRolesManage   Permission = "roles:manage"
	PermAuditRead     Permission = "audit:read"
	PermSessionsMgmt  Permission = "sessions:manage"
	PermMFAReset      Permission = "mfa:reset"
	PermBackupRead    Permission = "backup:read"
	PermBackupRun     Permission = "backup:run"
	PermBackupRestore Permission = "backup:restore"
	// PermMarketplace: the marketplace itself (owners and providers).
	PermMarketplace Permission = "marketplace:use"
)

// Role is a named set of permissions, assignable to users of certain types.
type Role struct {
	Name        string
	Description string
	Permissions []Permission
	// For lists the user types the role may be given to.
	For []UserType
}

// Roles are the platform's roles. They are code, not data: a change is reviewed
// like any other.
var Roles = []Role{
	{Name: "staff:admin", Description: "Administers users, roles, sessions and backups", For: []UserType{TypeStaff},
		Permissions: []Permission{PermUsersRead, PermUsersManage, PermRolesManage, PermAuditRead, PermSessionsMgmt, PermMFAReset, PermBackupRead, PermBackupRun, PermBackupRestore}},
	{Name: "staff:support", Description: "Helps users: reads accounts, ends sessions, resets MFA", For: []UserType{TypeStaff},
		Permissions: []Permission{PermUsersRead, PermSessionsMgmt, PermMFAReset, PermAuditRead}},
	{Name: "staff:ops", Description: "Runs the platform: backups, verification, restores", For: []UserType{TypeStaff},
		Permissions: []Permission{PermBackupRead, PermBackupRun, PermBackupRestore, PermAuditRead}},
	{Name: "owner", Description: "Property owner on the marketplace", For: []UserType{TypeOwner},
		Permissions: []Permission{PermMarketplace}},
	{Name: "provider", Description: "Service provider on the marketplace", For: []UserType{TypeProvider},
		Permissions: []Permission{PermMarketplace}},
}

// RoleByName returns the role called name.
func RoleByName(name string) (Role, bool) {
	for _, r := range Roles {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// DefaultRoles are the roles a new user of type t gets.
func DefaultRoles(t UserType) []string {
	switch t {
	case TypeOwner:
		return []string{"owner"}
	case TypeProvider:
		return []string{"provider"}
	}
	return nil
}

// ValidateRoles checks that every role exists and may be given to a user of type
// t; it returns the roles sorted and without duplicates.
func ValidateRoles(t UserType, roles []string) ([]string, error) {
	out := make([]string, 0, len(roles))
	for _, name := range roles {
		r, ok := RoleByName(name)
		if !ok {
			return nil, Errorf(CodeInvalid, "There is no role %q. Roles: %s.", name, roleNames())
		}
		if !slices.Contains(r.For, t) {
			return nil, Errorf(CodeInvalid, "Role %q cannot be given to a %s account.", name, t.Label())
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func roleNames() string {
	s := ""
	for i, r := range Roles {
		if i > 0 {
			s += ", "
		}
		s += r.Name
	}
	return s
}

// Permissions returns every permission u's roles grant; none if u is disabled.
func (u *User) Permissions() []Permission {
	if u == nil || u.Disabled {
		return nil
	}
	var out []Permission
	for _, name := range u.Roles {
		r, ok := RoleByName(name)
		if !ok || !slices.Contains(r.For, u.Type) {
			continue
		}
		for _, p := range r.Permissions {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Can reports whether u holds permission p.
func (u *User) Can(p Permission) bool {
	return slices.Contains(u.Permissions(), p)
}
