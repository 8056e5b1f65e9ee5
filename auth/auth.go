// Package auth is the platform's sign-in domain: users of three types (staff,
// property owners, service providers), the external identities they sign in with
// (Google, Microsoft Entra ID, LinkedIn, GitHub), server-side sessions, roles and
// permissions, and the audit trail of all of it.
//
// It imports nothing outside the standard library. Storage (package postgres),
// the identity providers (package oauth), the OpenID Connect provider for the
// frontend (package oidcprovider) and the HTTP layer (package authhttp) plug in
// through the small interfaces declared here.
package auth

import (
	"strings"
	"time"
)

// UserType is what a user is to the marketplace; it decides which sign-in methods,
// roles and (later) MFA policies apply.
type UserType string

// The user types.
const (
	TypeStaff    UserType = "staff"
	TypeOwner    UserType = "owner"
	TypeProvider UserType = "provider"
)

// UserTypes lists every user type, in display order.
var UserTypes = []UserType{TypeStaff, TypeOwner, TypeProvider}

// Valid reports whether t is one of UserTypes.
func (t UserType) Valid() bool {
	return t == TypeStaff || t == TypeOwner || t == TypeProvider
}

// Label is t for people: "Staff", "Property owner", "Service provider".
func (t UserType) Label() string {
	switch t {
	case TypeStaff:
		return "Staff"
	case TypeOwner:
		return "Property owner"
	case TypeProvider:
		return "Service provider"
	}
	return string(t)
}

// User is a person with a Hestami account.
type User struct {
	ID   string // a UUID, assigned by the store
	Type UserType
	// Email is the primary email; EmailVerified says whether a provider (or the
	// administrator who created the account) vouched for it.
	Email         string
	EmailVerified bool
	Name          string
	AvatarURL     string
	Roles         []string
	// Disabled users cannot sign in, and their sessions stop working.
	Disabled  bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Identity is an external account (a provider and its immutable subject) linked to
// a user. A user can have several; each (Provider, Subject) belongs to one user.
type Identity struct {
	UserID   string
	Provider string
	// Subject is the provider's immutable identifier: Google and LinkedIn `sub`,
	// Microsoft `tid:oid`, GitHub's numeric id. Never an email.
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	AvatarURL     string
	// Scopes are the scopes the user granted, including ones added incrementally
	// (Google Calendar...).
	Scopes     []string
	CreatedAt  time.Time
	LastUsedAt time.Time
}

// Profile is what a provider says about the person who just signed in, mapped into
// one shape by the provider's own rules.
type Profile struct {
	Provider      string
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	AvatarURL     string
	// Scopes are the scopes granted in this exchange.
	Scopes []string
	// Tenant is the Microsoft Entra tenant id (tid), for the audit trail.
	Tenant string
}

// NormalizeEmail is the form emails are compared and looked up in.
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}
