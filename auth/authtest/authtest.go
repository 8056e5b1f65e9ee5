// Package authtest is the contract test suite for auth.Store: every
// implementation runs RunStore and passes the same tests, including the ones about
// concurrency (a sign-in state works once; a user's last identity cannot be
// removed, even by two removals at once).
package authtest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// RunStore runs the auth.Store contract against the stores newStore returns. Each
// subtest calls newStore once and expects a store of its own, empty; subtests run
// in parallel. Times given to the store are whole microseconds (PostgreSQL's
// precision) and come back Equal, in any location.
func RunStore(t *testing.T, newStore func(t *testing.T) auth.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s auth.Store)
	}{
		{"CreateUser", testCreateUser},
		{"CreateUserWithIdentity", testCreateUserWithIdentity},
		{"CreateUserWithLinkedIdentity", testCreateUserWithLinkedIdentity},
		{"UserNotFound", testUserNotFound},
		{"UsersByEmail", testUsersByEmail},
		{"Users", testUsers},
		{"UpdateUser", testUpdateUser},
		{"SetRoles", testSetRoles},
		{"Identities", testIdentities},
		{"IdentityBySubject", testIdentityBySubject},
		{"AddIdentityConflict", testAddIdentityConflict},
		{"UpdateIdentity", testUpdateIdentity},
		{"RemoveIdentity", testRemoveIdentity},
		{"RemoveIdentityConcurrent", testRemoveIdentityConcurrent},
		{"Session", testSession},
		{"TouchSession", testTouchSession},
		{"Sessions", testSessions},
		{"RevokeSession", testRevokeSession},
		{"RevokeSessions", testRevokeSessions},
		{"DeleteExpiredSessions", testDeleteExpiredSessions},
		{"LoginState", testLoginState},
		{"TakeLoginStateConcurrent", testTakeLoginStateConcurrent},
		{"DeleteExpiredLoginStates", testDeleteExpiredLoginStates},
		{"AppendAudit", testAppendAudit},
		{"AuditEvents", testAuditEvents},
		{"AuditEventsDefaultLimit", testAuditEventsDefaultLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// base is the suite's clock: fixed, whole seconds.
var base = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func newUser(t *testing.T, s auth.Store, typ auth.UserType, email, name string) *auth.User {
	t.Helper()
	u := &auth.User{Type: typ, Email: email, EmailVerified: true, Name: name, Roles: auth.DefaultRoles(typ)}
	if err := s.CreateUser(t.Context(), u, nil); err != nil {
		t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return u
}

func identity(userID, provider, subject string, created time.Time) *auth.Identity {
	return &auth.Identity{
		UserID: userID, Provider: provider, Subject: subject, Email: subject + "@" + provider + ".example",
		EmailVerified: true, Name: "Name of " + subject, AvatarURL: "https://" + provider + ".example/a/" + subject,
		Scopes: []string{"email", "openid", "profile"}, CreatedAt: created, LastUsedAt: created.Add(time.Minute),
	}
}

func link(t *testing.T, s auth.Store, id *auth.Identity) {
	t.Helper()
	if err := s.AddIdentity(t.Context(), id); err != nil {
		t.Fatalf("AddIdentity(%s %s): %v", id.Provider, id.Subject, err)
	}
}

func getUser(t *testing.T, s auth.Store, id string) *auth.User {
	t.Helper()
	u, err := s.User(t.Context(), id)
	if err != nil {
		t.Fatalf("User(%s): %v", id, err)
	}
	return u
}

func userIDs(us []*auth.User) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, u.ID)
	}
	return out
}

func names(us []*auth.User) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, u.Name)
	}
	return out
}

// sameUser compares what the store keeps of a user.
func sameUser(t *testing.T, what string, got, want *auth.User) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || got.Email != want.Email || got.EmailVerified != want.EmailVerified ||
		got.Name != want.Name || got.AvatarURL != want.AvatarURL || !slices.Equal(got.Roles, want.Roles) || got.Disabled != want.Disabled {
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}

func sameIdentity(t *testing.T, what string, got, want *auth.Identity) {
	t.Helper()
	if got.UserID != want.UserID || got.Provider != want.Provider || got.Subject != want.Subject || got.Email != want.Email ||
		got.EmailVerified != want.EmailVerified || got.Name != want.Name || got.AvatarURL != want.AvatarURL ||
		!slices.Equal(got.Scopes, want.Scopes) || !got.CreatedAt.Equal(want.CreatedAt) || !got.LastUsedAt.Equal(want.LastUsedAt) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: err = %v, want %v", what, err, target)
	}
}

func testCreateUser(t *testing.T, s auth.Store) {
	before := time.Now().Add(-time.Hour)
	u := &auth.User{Type: auth.TypeOwner, Email: "ann@example.com", EmailVerified: true, Name: "Ann",
		AvatarURL: "https://example.com/ann.png", Roles: []string{"owner"}}
	if err := s.CreateUser(t.Context(), u, nil); err != nil {
		t.Fatal(err)
	}
	if u.ID == "" || u.CreatedAt.Before(before) || u.UpdatedAt.Before(before) {
		t.Fatalf("CreateUser should assign ID, CreatedAt and UpdatedAt; got %+v", *u)
	}
	got := getUser(t, s, u.ID)
	sameUser(t, "User after CreateUser", got, u)
	if !got.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("User().CreatedAt = %v, CreateUser assigned %v", got.CreatedAt, u.CreatedAt)
	}
	if ids, err := s.Identities(t.Context(), u.ID); err != nil || len(ids) != 0 {
		t.Errorf("Identities of a user created without one = %v, %v; want none", ids, err)
	}

	staff := &auth.User{Type: auth.TypeStaff, Email: "ann@example.com", Disabled: true}
	if err := s.CreateUser(t.Context(), staff, nil); err != nil {
		t.Fatalf("a second account with the same email (emails are not unique): %v", err)
	}
	if staff.ID == u.ID {
		t.Fatalf("two users got the same ID %s", u.ID)
	}
	sameUser(t, "User with no roles, disabled", getUser(t, s, staff.ID), staff)
}

func testCreateUserWithIdentity(t *testing.T, s auth.Store) {
	u := &auth.User{Type: auth.TypeProvider, Email: "bo@example.com", Name: "Bo", Roles: []string{"provider"}}
	id := identity("", "google", "1001", at(0))
	if err := s.CreateUser(t.Context(), u, id); err != nil {
		t.Fatal(err)
	}
	got, err := s.IdentityBySubject(t.Context(), "google", "1001")
	if err != nil {
		t.Fatalf("IdentityBySubject after CreateUser with it: %v", err)
	}
	want := *id
	want.UserID = u.ID
	sameIdentity(t, "identity created with the user", got, &want)
	ids, err := s.Identities(t.Context(), u.ID)
	if err != nil || len(ids) != 1 {
		t.Fatalf("Identities = %v, %v; want the one", ids, err)
	}
}

func testCreateUserWithLinkedIdentity(t *testing.T, s auth.Store) {
	first := &auth.User{Type: auth.TypeOwner, Email: "first@example.com"}
	if err := s.CreateUser(t.Context(), first, identity("", "github", "77", at(0))); err != nil {
		t.Fatal(err)
	}
	second := &auth.User{Type: auth.TypeOwner, Email: "second@example.com"}
	err := s.CreateUser(t.Context(), second, identity("", "github", "77", at(time.Hour)))
	wantErr(t, "CreateUser with an identity linked to another user", err, auth.ErrConflict)
	if us, err := s.UsersByEmail(t.Context(), "second@example.com"); err != nil || len(us) != 0 {
		t.Errorf("the failed CreateUser left a user behind: %q, %v", names(us), err)
	}
	if us, err := s.Users(t.Context(), auth.UserFilter{}); err != nil || len(us) != 1 {
		t.Errorf("Users = %d users, %v; want only the first", len(us), err)
	}
	if id, err := s.IdentityBySubject(t.Context(), "github", "77"); err != nil || id.UserID != first.ID {
		t.Errorf("the identity should still belong to the first user: %+v, %v", id, err)
	}
}

func testUserNotFound(t *testing.T, s auth.Store) {
	newUser(t, s, auth.TypeOwner, "someone@example.com", "Someone")
	for _, id := range []string{"00000000-0000-4000-8000-000000000000", "not-a-user-id", ""} {
		_, err := s.User(t.Context(), id)
		wantErr(t, fmt.Sprintf("User(%q)", id), err, auth.ErrNotFound)
	}
}

func testUsersByEmail(t *testing.T, s auth.Store) {
	a := newUser(t, s, auth.TypeOwner, "pat@example.com", "Pat owner")
	newUser(t, s, auth.TypeOwner, "other@example.com", "Other")
	b := newUser(t, s, auth.TypeProvider, "pat@example.com", "Pat provider")
	for _, email := range []string{"pat@example.com", "PAT@Example.COM", "  Pat@example.com "} {
		got, err := s.UsersByEmail(t.Context(), email)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(userIDs(got), []string{a.ID, b.ID}) {
			t.Errorf("UsersByEmail(%q) = %v, want %v (both, oldest first)", email, names(got), []string{a.Name, b.Name})
		}
	}
	got, err := s.UsersByEmail(t.Context(), "nobody@example.com")
	if err != nil || len(got) != 0 {
		t.Errorf("UsersByEmail(nobody) = %v, %v; want none and no error", got, err)
	}
	// An email given in another case is found in any case.
	c := newUser(t, s, auth.TypeOwner, "Mixed.Case@Example.com", "Mixed")
	got, err = s.UsersByEmail(t.Context(), "mixed.case@example.com")
	if err != nil || !slices.Equal(userIDs(got), []string{c.ID}) {
		t.Errorf("UsersByEmail for a user created with Mixed.Case@Example.com = %v, %v", names(got), err)
	}
}

func testUsers(t *testing.T, s auth.Store) {
	newUser(t, s, auth.TypeStaff, "alice@hestami.example", "Alice Admin")
	newUser(t, s, auth.TypeOwner, "bob@example.com", "Bob")
	newUser(t, s, auth.TypeProvider, "carol@plumbing.example", "Carol's 100% Plumbing")
	newUser(t, s, auth.TypeOwner, "dan@example.com", "Dan")
	for _, tc := range []struct {
		name string
		f    auth.UserFilter
		want []string
	}{
		{"all, newest first", auth.UserFilter{}, []string{"Dan", "Carol's 100% Plumbing", "Bob", "Alice Admin"}},
		{"type", auth.UserFilter{Type: auth.TypeOwner}, []string{"Dan", "Bob"}},
		{"email substring", auth.UserFilter{Query: "hestami"}, []string{"Alice Admin"}},
		{"name substring, any case", auth.UserFilter{Query: "PLUMB"}, []string{"Carol's 100% Plumbing"}},
		{"percent is literal", auth.UserFilter{Query: "100%"}, []string{"Carol's 100% Plumbing"}},
		{"lone percent", auth.UserFilter{Query: "%"}, []string{"Carol's 100% Plumbing"}},
		{"underscore is literal", auth.UserFilter{Query: "_"}, nil},
		{"type and query", auth.UserFilter{Type: auth.TypeOwner, Query: "example.com"}, []string{"Dan", "Bob"}},
		{"type and query, none", auth.UserFilter{Type: auth.TypeStaff, Query: "bob"}, nil},
		{"limit", auth.UserFilter{Limit: 2}, []string{"Dan", "Carol's 100% Plumbing"}},
	} {
		got, err := s.Users(t.Context(), tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(names(got), tc.want) {
			t.Errorf("Users(%s %+v) = %q, want %q", tc.name, tc.f, names(got), tc.want)
		}
	}
}

func testUpdateUser(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeOwner, "old@example.com", "Old")
	other := newUser(t, s, auth.TypeOwner, "other@example.com", "Other")
	u.Email, u.EmailVerified, u.Name, u.AvatarURL, u.Disabled = "new@example.com", false, "New", "https://example.com/new.png", true
	if err := s.UpdateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	got := getUser(t, s, u.ID)
	sameUser(t, "User after UpdateUser", got, u)
	if got.UpdatedAt.Before(got.CreatedAt) {
		t.Errorf("UpdatedAt %v is before CreatedAt %v", got.UpdatedAt, got.CreatedAt)
	}
	if us, _ := s.UsersByEmail(t.Context(), "new@example.com"); !slices.Equal(userIDs(us), []string{u.ID}) {
		t.Errorf("UsersByEmail(new email) = %v, want the updated user", names(us))
	}
	if us, _ := s.UsersByEmail(t.Context(), "old@example.com"); len(us) != 0 {
		t.Errorf("UsersByEmail(old email) = %v, want none", names(us))
	}
	// Type and roles are not UpdateUser's to change.
	changed := *got
	changed.Type, changed.Roles = auth.TypeStaff, []string{"staff:admin"}
	if err := s.UpdateUser(t.Context(), &changed); err != nil {
		t.Fatal(err)
	}
	if after := getUser(t, s, u.ID); after.Type != auth.TypeOwner || !slices.Equal(after.Roles, []string{"owner"}) {
		t.Errorf("UpdateUser changed the type or roles: %+v", *after)
	}
	sameUser(t, "the other user", getUser(t, s, other.ID), other)

	missing := *u
	missing.ID = "00000000-0000-4000-8000-000000000000"
	wantErr(t, "UpdateUser of an unknown user", s.UpdateUser(t.Context(), &missing), auth.ErrNotFound)
}

func testSetRoles(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeStaff, "staff@hestami.example", "Staff")
	other := newUser(t, s, auth.TypeStaff, "other@hestami.example", "Other")
	for _, roles := range [][]string{{"staff:admin", "staff:ops"}, {"staff:support"}, nil} {
		if err := s.SetRoles(t.Context(), u.ID, roles); err != nil {
			t.Fatal(err)
		}
		if got := getUser(t, s, u.ID).Roles; !slices.Equal(got, roles) {
			t.Errorf("roles after SetRoles(%q) = %q", roles, got)
		}
	}
	if got := getUser(t, s, other.ID).Roles; len(got) != 0 {
		t.Errorf("SetRoles changed another user's roles: %q", got)
	}
	wantErr(t, "SetRoles of an unknown user", s.SetRoles(t.Context(), "00000000-0000-4000-8000-000000000000", []string{"staff:admin"}), auth.ErrNotFound)
}

func testIdentities(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeOwner, "ids@example.com", "Ids")
	other := newUser(t, s, auth.TypeOwner, "other@example.com", "Other")
	second := identity(u.ID, "microsoft", "tid:oid", at(time.Hour))
	first := identity(u.ID, "google", "g-1", at(-time.Hour))
	third := identity(u.ID, "linkedin", "li-1", at(2*time.Hour))
	third.Scopes = nil
	for _, id := range []*auth.Identity{second, first, third, identity(other.ID, "github", "9", at(0))} {
		link(t, s, id)
	}
	got, err := s.Identities(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Identities = %d, want 3 (not the other user's)", len(got))
	}
	for i, want := range []*auth.Identity{first, second, third} {
		sameIdentity(t, fmt.Sprintf("Identities()[%d] (oldest first)", i), got[i], want)
	}
	if got, err := s.Identities(t.Context(), newUser(t, s, auth.TypeOwner, "none@example.com", "None").ID); err != nil || len(got) != 0 {
		t.Errorf("Identities of a user with none = %v, %v", got, err)
	}
}

func testIdentityBySubject(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeOwner, "sub@example.com", "Sub")
	id := identity(u.ID, "google", "sub-1", at(0))
	link(t, s, id)
	got, err := s.IdentityBySubject(t.Context(), "google", "sub-1")
	if err != nil {
		t.Fatal(err)
	}
	sameIdentity(t, "IdentityBySubject", got, id)
	for _, ps := range [][2]string{{"google", "sub-2"}, {"linkedin", "sub-1"}, {"google", "SUB-1"}} {
		_, err := s.IdentityBySubject(t.Context(), ps[0], ps[1])
		wantErr(t, fmt.Sprintf("IdentityBySubject(%s, %s)", ps[0], ps[1]), err, auth.ErrNotFound)
	}
}

func testAddIdentityConflict(t *testing.T, s auth.Store) {
	a := newUser(t, s, auth.TypeOwner, "a@example.com", "A")
	b := newUser(t, s, auth.TypeOwner, "b@example.com", "B")
	link(t, s, identity(a.ID, "github", "42", at(0)))
	wantErr(t, "AddIdentity of an identity linked to another user", s.AddIdentity(t.Context(), identity(b.ID, "github", "42", at(time.Hour))), auth.ErrConflict)
	wantErr(t, "AddIdentity of an identity linked already", s.AddIdentity(t.Context(), identity(a.ID, "github", "42", at(time.Hour))), auth.ErrConflict)
	if id, err := s.IdentityBySubject(t.Context(), "github", "42"); err != nil || id.UserID != a.ID {
		t.Errorf("the identity should still be A's: %+v, %v", id, err)
	}
	if ids, err := s.Identities(t.Context(), b.ID); err != nil || len(ids) != 0 {
		t.Errorf("B's identities = %v, %v; want none", ids, err)
	}
	// The same subject at another provider is another identity.
	link(t, s, identity(b.ID, "google", "42", at(0)))
	// A user that does not exist gets nothing linked.
	if err := s.AddIdentity(t.Context(), identity("00000000-0000-4000-8000-000000000000", "linkedin", "x", at(0))); err == nil {
		t.Error("AddIdentity to a user that does not exist succeeded")
	}
	if _, err := s.IdentityBySubject(t.Context(), "linkedin", "x"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("identity of a user that does not exist: %v, want ErrNotFound", err)
	}
}

func testUpdateIdentity(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeOwner, "upd@example.com", "Upd")
	other := newUser(t, s, auth.TypeOwner, "other@example.com", "Other")
	id := identity(u.ID, "google", "g-9", at(0))
	keep := identity(u.ID, "github", "g-9", at(time.Minute))
	link(t, s, id)
	link(t, s, keep)
	changed := *id
	changed.Email, changed.EmailVerified, changed.Name, changed.AvatarURL = "renamed@gmail.example", false, "Renamed", "https://g.example/new"
	changed.Scopes = []string{"email", "openid", "profile", "https://www.googleapis.com/auth/calendar"}
	changed.LastUsedAt = at(48 * time.Hour)
	// Neither the owner nor the creation time is UpdateIdentity's to change.
	changed.UserID, changed.CreatedAt = other.ID, at(time.Hour)
	if err := s.UpdateIdentity(t.Context(), &changed); err != nil {
		t.Fatal(err)
	}
	got, err := s.IdentityBySubject(t.Context(), "google", "g-9")
	if err != nil {
		t.Fatal(err)
	}
	want := changed
	want.UserID, want.CreatedAt = u.ID, id.CreatedAt
	sameIdentity(t, "identity after UpdateIdentity", got, &want)
	gotKeep, err := s.IdentityBySubject(t.Context(), "github", "g-9")
	if err != nil {
		t.Fatal(err)
	}
	sameIdentity(t, "the user's other identity", gotKeep, keep)
}

func testRemoveIdentity(t *testing.T, s auth.Store) {
	ctx := t.Context()
	u := newUser(t, s, auth.TypeOwner, "rm@example.com", "Rm")
	other := newUser(t, s, auth.TypeOwner, "other@example.com", "Other")
	link(t, s, identity(u.ID, "google", "g", at(0)))
	link(t, s, identity(u.ID, "github", "h", at(time.Minute)))
	link(t, s, identity(other.ID, "linkedin", "l", at(0)))
	link(t, s, identity(other.ID, "github", "o", at(0)))

	wantErr(t, "RemoveIdentity of an identity the user does not have", s.RemoveIdentity(ctx, u.ID, "linkedin", "nope"), auth.ErrNotFound)
	wantErr(t, "RemoveIdentity of another user's identity", s.RemoveIdentity(ctx, u.ID, "linkedin", "l"), auth.ErrNotFound)
	if _, err := s.IdentityBySubject(ctx, "linkedin", "l"); err != nil {
		t.Errorf("the other user's identity is gone: %v", err)
	}
	if err := s.RemoveIdentity(ctx, u.ID, "google", "g"); err != nil {
		t.Fatalf("RemoveIdentity of one of two: %v", err)
	}
	if _, err := s.IdentityBySubject(ctx, "google", "g"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("the removed identity is still there: %v", err)
	}
	wantErr(t, "RemoveIdentity of the last identity", s.RemoveIdentity(ctx, u.ID, "github", "h"), auth.ErrConflict)
	if ids, err := s.Identities(ctx, u.ID); err != nil || len(ids) != 1 || ids[0].Subject != "h" {
		t.Errorf("after refusing to remove the last identity: %v, %v", ids, err)
	}
	none := newUser(t, s, auth.TypeOwner, "none@example.com", "None")
	wantErr(t, "RemoveIdentity for a user with no identities", s.RemoveIdentity(ctx, none.ID, "github", "h"), auth.ErrNotFound)
	wantErr(t, "RemoveIdentity for a user that does not exist", s.RemoveIdentity(ctx, "00000000-0000-4000-8000-000000000000", "github", "h"), auth.ErrNotFound)
}

func testRemoveIdentityConcurrent(t *testing.T, s auth.Store) {
	const users = 12
	type result struct {
		user string
		err  error
	}
	var ids []string
	for i := range users {
		u := newUser(t, s, auth.TypeOwner, fmt.Sprintf("race%d@example.com", i), fmt.Sprint("Race ", i))
		link(t, s, identity(u.ID, "google", fmt.Sprint("g", i), at(0)))
		link(t, s, identity(u.ID, "github", fmt.Sprint("h", i), at(time.Minute)))
		ids = append(ids, u.ID)
	}
	start := make(chan struct{})
	results := make(chan result, 2*users)
	var wg sync.WaitGroup
	for i, id := range ids {
		for _, p := range [][2]string{{"google", fmt.Sprint("g", i)}, {"github", fmt.Sprint("h", i)}} {
			wg.Go(func() {
				<-start
				results <- result{id, s.RemoveIdentity(t.Context(), id, p[0], p[1])}
			})
		}
	}
	close(start)
	wg.Wait()
	close(results)
	removed, refused := map[string]int{}, map[string]int{}
	for r := range results {
		switch {
		case r.err == nil:
			removed[r.user]++
		case errors.Is(r.err, auth.ErrConflict):
			refused[r.user]++
		default:
			t.Errorf("RemoveIdentity: %v", r.err)
		}
	}
	for _, id := range ids {
		left, err := s.Identities(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if removed[id] != 1 || refused[id] != 1 || len(left) != 1 {
			t.Errorf("two concurrent removals of a user's two identities: %d removed, %d refused, %d left; want 1, 1, 1",
				removed[id], refused[id], len(left))
		}
	}
}

func newSession(userID string, created time.Time) *auth.Session {
	return &auth.Session{
		ID: auth.HashToken(auth.NewToken()), UserID: userID, CreatedAt: created, LastSeenAt: created,
		ExpiresAt: created.Add(30 * 24 * time.Hour), IdleTimeout: 7 * 24 * time.Hour,
		IP: "198.51.100.7", UserAgent: "Mozilla/5.0 (test)", Methods: []string{"google"}, AuthTime: created,
	}
}

func createSession(t *testing.T, s auth.Store, sess *auth.Session) *auth.Session {
	t.Helper()
	if err := s.CreateSession(t.Context(), sess); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return sess
}

func getSession(t *testing.T, s auth.Store, id string) *auth.Session {
	t.Helper()
	sess, err := s.Session(t.Context(), id)
	if err != nil {
		t.Fatalf("Session: %v", err)
	}
	return sess
}

func sameSession(t *testing.T, what string, got, want *auth.Session) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || !got.CreatedAt.Equal(want.CreatedAt) || !got.LastSeenAt.Equal(want.LastSeenAt) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || got.IdleTimeout != want.IdleTimeout || got.IP != want.IP || got.UserAgent != want.UserAgent ||
		!slices.Equal(got.Methods, want.Methods) || !got.AuthTime.Equal(want.AuthTime) || !got.RevokedAt.Equal(want.RevokedAt) ||
		!got.MFAAt.Equal(want.MFAAt) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}

func sessionIDs(ss []*auth.Session) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.ID[:8])
	}
	return out
}

func short(ss ...*auth.Session) []string { return sessionIDs(ss) }

func testSession(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeStaff, "sess@hestami.example", "Sess")
	sess := newSession(u.ID, at(0))
	sess.IdleTimeout = 90*time.Minute + 1500*time.Millisecond
	sess.Methods = []string{"microsoft", "otp"}
	sess.AuthTime = at(-time.Minute)
	sess.MFAAt = at(-30 * time.Second)
	createSession(t, s, sess)
	sameSession(t, "Session after CreateSession", getSession(t, s, sess.ID), sess)
	_, err := s.Session(t.Context(), auth.HashToken("never issued"))
	wantErr(t, "Session of an unknown id", err, auth.ErrNotFound)

	got, gotUser, err := s.SessionUser(t.Context(), sess.ID)
	if err != nil {
		t.Fatalf("SessionUser: %v", err)
	}
	sameSession(t, "SessionUser's session", got, sess)
	if gotUser.ID != u.ID || gotUser.Email != u.Email || gotUser.Type != u.Type || !slices.Equal(gotUser.Roles, u.Roles) {
		t.Errorf("SessionUser's user = %+v, want %+v", gotUser, u)
	}
	_, _, err = s.SessionUser(t.Context(), auth.HashToken("never issued"))
	wantErr(t, "SessionUser of an unknown id", err, auth.ErrNotFound)
}

func testTouchSession(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeOwner, "touch@example.com", "Touch")
	sess := createSession(t, s, newSession(u.ID, at(0)))
	other := createSession(t, s, newSession(u.ID, at(0)))
	if err := s.TouchSession(t.Context(), sess.ID, at(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	want := *sess
	want.LastSeenAt = at(time.Hour)
	sameSession(t, "after TouchSession without an IP", getSession(t, s, sess.ID), &want)
	if err := s.TouchSession(t.Context(), sess.ID, at(2*time.Hour), "203.0.113.9"); err != nil {
		t.Fatal(err)
	}
	want.LastSeenAt, want.IP = at(2*time.Hour), "203.0.113.9"
	sameSession(t, "after TouchSession with an IP", getSession(t, s, sess.ID), &want)
	sameSession(t, "the session not touched", getSession(t, s, other.ID), other)
}

func testSessions(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeOwner, "list@example.com", "List")
	other := newUser(t, s, auth.TypeOwner, "other@example.com", "Other")
	now := at(10 * 24 * time.Hour)
	s1 := createSession(t, s, newSession(u.ID, at(0)))
	s3 := newSession(u.ID, at(2*time.Minute))
	s3.LastSeenAt = now.Add(-time.Hour)
	createSession(t, s, s3)
	s2 := newSession(u.ID, at(time.Minute))
	s2.LastSeenAt = now.Add(-time.Hour)
	createSession(t, s, s2)
	s1.LastSeenAt = now.Add(-time.Minute)
	if err := s.TouchSession(t.Context(), s1.ID, s1.LastSeenAt, ""); err != nil {
		t.Fatal(err)
	}
	revoked := newSession(u.ID, at(3*time.Minute))
	revoked.LastSeenAt = now
	createSession(t, s, revoked)
	if err := s.RevokeSession(t.Context(), u.ID, revoked.ID, now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	expired := newSession(u.ID, at(4*time.Minute))
	expired.LastSeenAt, expired.ExpiresAt = now.Add(-time.Minute), now.Add(-time.Second)
	createSession(t, s, expired)
	idle := newSession(u.ID, at(5*time.Minute)) // last seen 10 days ago, idle timeout 7 days
	createSession(t, s, idle)
	theirs := newSession(other.ID, at(6*time.Minute))
	theirs.LastSeenAt = now
	createSession(t, s, theirs)

	got, err := s.Sessions(t.Context(), u.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := short(s3, s2, s1); !slices.Equal(sessionIDs(got), want) {
		t.Fatalf("Sessions = %v, want %v (newest first, without revoked, expired, idle or other users' sessions)", sessionIDs(got), want)
	}
	sameSession(t, "Sessions()[0]", got[0], s3)
	if got, err := s.Sessions(t.Context(), newUser(t, s, auth.TypeOwner, "none@example.com", "None").ID, now); err != nil || len(got) != 0 {
		t.Errorf("Sessions of a user without any = %v, %v", got, err)
	}
}

func testRevokeSession(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeOwner, "rev@example.com", "Rev")
	other := newUser(t, s, auth.TypeOwner, "other@example.com", "Other")
	sess := createSession(t, s, newSession(u.ID, at(0)))
	keep := createSession(t, s, newSession(u.ID, at(0)))
	theirs := createSession(t, s, newSession(other.ID, at(0)))

	wantErr(t, "RevokeSession of another user's session", s.RevokeSession(t.Context(), u.ID, theirs.ID, at(time.Hour)), auth.ErrNotFound)
	wantErr(t, "RevokeSession of an unknown session", s.RevokeSession(t.Context(), u.ID, auth.HashToken("x"), at(time.Hour)), auth.ErrNotFound)
	sameSession(t, "the other user's session", getSession(t, s, theirs.ID), theirs)

	if err := s.RevokeSession(t.Context(), u.ID, sess.ID, at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	want := *sess
	want.RevokedAt = at(time.Hour)
	sameSession(t, "Session after RevokeSession (revoked sessions are still returned)", getSession(t, s, sess.ID), &want)
	sameSession(t, "the user's other session", getSession(t, s, keep.ID), keep)
	got, err := s.Sessions(t.Context(), u.ID, at(2*time.Hour))
	if err != nil || !slices.Equal(sessionIDs(got), short(keep)) {
		t.Errorf("Sessions after RevokeSession = %v, %v; want %v", sessionIDs(got), err, short(keep))
	}
}

func testRevokeSessions(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeOwner, "all@example.com", "All")
	other := newUser(t, s, auth.TypeOwner, "other@example.com", "Other")
	a1 := createSession(t, s, newSession(u.ID, at(0)))
	a2 := createSession(t, s, newSession(u.ID, at(time.Minute)))
	a3 := createSession(t, s, newSession(u.ID, at(2*time.Minute)))
	old := createSession(t, s, newSession(u.ID, at(3*time.Minute)))
	if err := s.RevokeSession(t.Context(), u.ID, old.ID, at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	theirs := createSession(t, s, newSession(other.ID, at(0)))

	n, err := s.RevokeSessions(t.Context(), u.ID, a2.ID, at(2*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("RevokeSessions keeping one = %d, %v; want 2", n, err)
	}
	for _, sess := range []*auth.Session{a1, a3} {
		if got := getSession(t, s, sess.ID).RevokedAt; !got.Equal(at(2 * time.Hour)) {
			t.Errorf("session %s RevokedAt = %v, want %v", sess.ID[:8], got, at(2*time.Hour))
		}
	}
	if got := getSession(t, s, a2.ID); !got.RevokedAt.IsZero() {
		t.Errorf("the kept session was revoked at %v", got.RevokedAt)
	}
	if got := getSession(t, s, old.ID).RevokedAt; !got.Equal(at(time.Hour)) {
		t.Errorf("a session revoked before keeps its revocation time: got %v, want %v", got, at(time.Hour))
	}
	sameSession(t, "the other user's session", getSession(t, s, theirs.ID), theirs)

	n, err = s.RevokeSessions(t.Context(), u.ID, "", at(3*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("RevokeSessions of all = %d, %v; want 1 (the one kept before)", n, err)
	}
	if n, err := s.RevokeSessions(t.Context(), u.ID, "", at(4*time.Hour)); err != nil || n != 0 {
		t.Errorf("RevokeSessions with none left = %d, %v; want 0", n, err)
	}
}

func testDeleteExpiredSessions(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeOwner, "gc@example.com", "GC")
	before := at(40 * 24 * time.Hour)
	ended := createSession(t, s, newSession(u.ID, at(0))) // ends after 30 days
	active := newSession(u.ID, at(20*24*time.Hour))
	active.LastSeenAt = before.Add(-time.Hour)
	createSession(t, s, active)
	idle := newSession(u.ID, at(25*24*time.Hour)) // idle since day 25, 7 days max
	createSession(t, s, idle)
	revokedEarly := newSession(u.ID, at(20*24*time.Hour))
	revokedEarly.LastSeenAt = before.Add(-time.Hour)
	createSession(t, s, revokedEarly)
	if err := s.RevokeSession(t.Context(), u.ID, revokedEarly.ID, before.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	revokedLate := newSession(u.ID, at(20*24*time.Hour))
	revokedLate.LastSeenAt = before.Add(-time.Hour)
	createSession(t, s, revokedLate)
	if err := s.RevokeSession(t.Context(), u.ID, revokedLate.ID, before.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	n, err := s.DeleteExpiredSessions(t.Context(), before)
	if err != nil || n != 3 {
		t.Fatalf("DeleteExpiredSessions = %d, %v; want 3 (expired, idle too long, revoked before)", n, err)
	}
	for _, gone := range []*auth.Session{ended, idle, revokedEarly} {
		if _, err := s.Session(t.Context(), gone.ID); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("session %s should be deleted: %v", gone.ID[:8], err)
		}
	}
	for _, kept := range []*auth.Session{active, revokedLate} {
		if _, err := s.Session(t.Context(), kept.ID); err != nil {
			t.Errorf("session %s should be kept: %v", kept.ID[:8], err)
		}
	}
	if n, err := s.DeleteExpiredSessions(t.Context(), before); err != nil || n != 0 {
		t.Errorf("DeleteExpiredSessions again = %d, %v; want 0", n, err)
	}
}

func newLoginState(created time.Time) *auth.LoginState {
	return &auth.LoginState{
		ID: auth.HashToken(auth.NewToken()), Provider: "google", Intent: auth.IntentSignIn, Binding: auth.HashToken(auth.NewToken()),
		Nonce: auth.NewToken(), Verifier: auth.NewToken(), ReturnTo: "/account", UserType: auth.TypeOwner,
		CreatedAt: created, ExpiresAt: created.Add(10 * time.Minute),
	}
}

func sameLoginState(t *testing.T, what string, got, want *auth.LoginState) {
	t.Helper()
	if got.ID != want.ID || got.Provider != want.Provider || got.Intent != want.Intent || got.Binding != want.Binding ||
		got.Nonce != want.Nonce || got.Verifier != want.Verifier || got.ReturnTo != want.ReturnTo || got.UserType != want.UserType ||
		got.UserID != want.UserID || !slices.Equal(got.Scopes, want.Scopes) || !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}

func testLoginState(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeOwner, "login@example.com", "Login")
	signin := newLoginState(at(0))
	linking := newLoginState(at(0))
	linking.Intent, linking.UserID, linking.UserType, linking.Provider = auth.IntentLink, u.ID, "", "linkedin"
	linking.Scopes = []string{"https://www.googleapis.com/auth/calendar.readonly"}
	linking.ReturnTo = "https://app.hestami.example/settings?tab=accounts"
	for _, ls := range []*auth.LoginState{signin, linking} {
		if err := s.PutLoginState(t.Context(), ls); err != nil {
			t.Fatal(err)
		}
	}
	for _, ls := range []*auth.LoginState{linking, signin} {
		got, err := s.TakeLoginState(t.Context(), ls.ID)
		if err != nil {
			t.Fatalf("TakeLoginState(%s intent): %v", ls.Intent, err)
		}
		sameLoginState(t, "TakeLoginState", got, ls)
		_, err = s.TakeLoginState(t.Context(), ls.ID)
		wantErr(t, "TakeLoginState a second time", err, auth.ErrNotFound)
	}
	_, err := s.TakeLoginState(t.Context(), auth.HashToken("never issued"))
	wantErr(t, "TakeLoginState of a state never issued", err, auth.ErrNotFound)
}

func testTakeLoginStateConcurrent(t *testing.T, s auth.Store) {
	const takers, rounds = 32, 3
	for round := range rounds {
		ls := newLoginState(at(0))
		if err := s.PutLoginState(t.Context(), ls); err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			won, lost int
			other     []error
		)
		for range takers {
			wg.Go(func() {
				<-start
				got, err := s.TakeLoginState(t.Context(), ls.ID)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && got.Nonce == ls.Nonce:
					won++
				case errors.Is(err, auth.ErrNotFound):
					lost++
				default:
					other = append(other, fmt.Errorf("got %+v: %w", got, err))
				}
			})
		}
		close(start)
		wg.Wait()
		if won != 1 || lost != takers-1 || len(other) > 0 {
			t.Fatalf("round %d: %d concurrent TakeLoginState: %d won, %d not found, errors %v; want exactly one winner",
				round, takers, won, lost, errors.Join(other...))
		}
	}
}

func testDeleteExpiredLoginStates(t *testing.T, s auth.Store) {
	now := at(time.Hour)
	var states []*auth.LoginState
	for _, expires := range []time.Duration{-time.Hour, -time.Second, 0, time.Hour} {
		ls := newLoginState(now.Add(expires - 10*time.Minute))
		if err := s.PutLoginState(t.Context(), ls); err != nil {
			t.Fatal(err)
		}
		states = append(states, ls)
	}
	n, err := s.DeleteExpiredLoginStates(t.Context(), now)
	if err != nil || n != 2 {
		t.Fatalf("DeleteExpiredLoginStates = %d, %v; want 2 (those that expired before)", n, err)
	}
	for i, ls := range states {
		_, err := s.TakeLoginState(t.Context(), ls.ID)
		if deleted := errors.Is(err, auth.ErrNotFound); deleted != (i < 2) {
			t.Errorf("state expiring at %v: TakeLoginState = %v after deleting those expired before %v", ls.ExpiresAt, err, now)
		}
	}
}

func sameEvent(t *testing.T, what string, got, want *auth.AuditEvent) {
	t.Helper()
	g, w := *got, *want
	g.Time, w.Time = time.Time{}, time.Time{}
	if g != w || !got.Time.Equal(want.Time) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}

func testAppendAudit(t *testing.T, s auth.Store) {
	u := newUser(t, s, auth.TypeStaff, "admin@hestami.example", "Admin")
	v := newUser(t, s, auth.TypeOwner, "owner@example.com", "Owner")
	e1 := &auth.AuditEvent{Time: at(0), Action: "role.change", Outcome: auth.OutcomeSuccess, ActorID: u.ID, SubjectID: v.ID,
		IP: "2001:db8::1", UserAgent: "curl/8", Detail: `roles "owner" -> "owner"`}
	e2 := &auth.AuditEvent{Time: at(time.Second), Action: "signin", Outcome: auth.OutcomeFailure, Provider: "microsoft",
		IP: "192.0.2.1", Detail: "state already used"}
	for _, e := range []*auth.AuditEvent{e1, e2} {
		if err := s.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if e1.ID == 0 || e2.ID <= e1.ID {
		t.Fatalf("AppendAudit should assign increasing IDs; got %d then %d", e1.ID, e2.ID)
	}
	got, err := s.AuditEvents(t.Context(), auth.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("AuditEvents = %d events, want 2", len(got))
	}
	sameEvent(t, "newest event", got[0], e2)
	sameEvent(t, "oldest event", got[1], e1)
}

func testAuditEvents(t *testing.T, s auth.Store) {
	u1 := newUser(t, s, auth.TypeOwner, "u1@example.com", "U1").ID
	u2 := newUser(t, s, auth.TypeStaff, "u2@hestami.example", "U2").ID
	u3 := newUser(t, s, auth.TypeStaff, "u3@hestami.example", "U3").ID
	events := map[string]*auth.AuditEvent{
		"e1": {Time: at(0), Action: "signin", ActorID: u1},
		"e2": {Time: at(time.Minute), Action: "role.change", ActorID: u2, SubjectID: u1},
		"e3": {Time: at(2 * time.Minute), Action: "signin", ActorID: u2},
		"e4": {Time: at(3 * time.Minute), Action: "session.revoke", ActorID: u3, SubjectID: u2},
		"e5": {Time: at(4 * time.Minute), Action: "signin", Outcome: auth.OutcomeFailure, Provider: "google"},
		"e6": {Time: at(5 * time.Minute), Action: "signout", ActorID: u1},
	}
	// Appended out of time order: the log reads newest first by Time.
	for _, name := range []string{"e1", "e2", "e4", "e3", "e6", "e5"} {
		e := events[name]
		e.Detail = name
		if e.Outcome == "" {
			e.Outcome = auth.OutcomeSuccess
		}
		if err := s.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		f    auth.AuditFilter
		want string
	}{
		{"all", auth.AuditFilter{}, "e6 e5 e4 e3 e2 e1"},
		{"user as actor or subject", auth.AuditFilter{UserID: u1}, "e6 e2 e1"},
		{"another user", auth.AuditFilter{UserID: u2}, "e4 e3 e2"},
		{"action", auth.AuditFilter{Action: "signin"}, "e5 e3 e1"},
		{"since, inclusive", auth.AuditFilter{Since: at(3 * time.Minute)}, "e6 e5 e4"},
		{"limit", auth.AuditFilter{Limit: 2}, "e6 e5"},
		{"user and action", auth.AuditFilter{UserID: u2, Action: "signin"}, "e3"},
		{"user and since", auth.AuditFilter{UserID: u1, Since: at(2 * time.Minute)}, "e6"},
		{"user, action, since and limit", auth.AuditFilter{UserID: u1, Action: "signin", Since: at(-time.Hour), Limit: 1}, "e1"},
		{"unknown user", auth.AuditFilter{UserID: "00000000-0000-4000-8000-000000000000"}, ""},
		{"unknown action", auth.AuditFilter{Action: "nothing"}, ""},
	} {
		got, err := s.AuditEvents(t.Context(), tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var details []string
		for _, e := range got {
			details = append(details, e.Detail)
		}
		if strings.Join(details, " ") != tc.want {
			t.Errorf("AuditEvents(%s) = %q, want %q", tc.name, strings.Join(details, " "), tc.want)
		}
	}
}

func testAuditEventsDefaultLimit(t *testing.T, s auth.Store) {
	for i := range 105 {
		if err := s.AppendAudit(t.Context(), &auth.AuditEvent{Time: at(time.Duration(i) * time.Second), Action: "signin",
			Outcome: auth.OutcomeSuccess, Detail: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.AuditEvents(t.Context(), auth.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 {
		t.Fatalf("AuditEvents with no limit = %d events, want 100", len(got))
	}
	if got[0].Detail != "104" || got[99].Detail != "5" {
		t.Fatalf("AuditEvents with no limit: events %q to %q, want the newest 100 (104 down to 5)", got[0].Detail, got[99].Detail)
	}
}
