package auth_test

import (
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// TestAuthenticateSessionID: a session named by its id (what a verified bearer
// access token carries) signs its user in under the same rules as its token:
// an unknown or empty id, a revoked or idle session and a disabled user do not.
func TestAuthenticateSessionID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(t *testing.T, f *cacheFixture, u *auth.User, sess *auth.Session) string // returns the id to present
		ok     bool
	}{
		{"active session", func(t *testing.T, f *cacheFixture, u *auth.User, sess *auth.Session) string { return sess.ID }, true},
		{"empty id", func(*testing.T, *cacheFixture, *auth.User, *auth.Session) string { return "" }, false},
		{"unknown id", func(*testing.T, *cacheFixture, *auth.User, *auth.Session) string { return auth.HashToken("nobody") }, false},
		{"revoked", func(t *testing.T, f *cacheFixture, u *auth.User, sess *auth.Session) string {
			if err := f.svc.SignOut(t.Context(), sess, cacheClient); err != nil {
				t.Fatal(err)
			}
			return sess.ID
		}, false},
		{"idle too long", func(t *testing.T, f *cacheFixture, u *auth.User, sess *auth.Session) string {
			f.clock.add(sess.IdleTimeout + time.Second)
			return sess.ID
		}, false},
		{"user disabled", func(t *testing.T, f *cacheFixture, u *auth.User, sess *auth.Session) string {
			admin := f.store.addUser("admin", auth.TypeStaff, "staff:admin")
			if _, err := f.svc.SetDisabled(t.Context(), admin, u.ID, true, cacheClient); err != nil {
				t.Fatal(err)
			}
			return sess.ID
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newCacheFixture(t, nil)
			u := f.store.addUser("u1", auth.TypeStaff, "staff:ops")
			token, sess := f.signIn(t, u)
			f.authenticate(t, token) // cached: the checks must still apply
			id := tc.change(t, f, u, sess)
			got, gu, err := f.svc.AuthenticateSessionID(t.Context(), id, cacheClient)
			switch {
			case tc.ok && (err != nil || got.ID != sess.ID || gu.ID != u.ID):
				t.Fatalf("AuthenticateSessionID = %v, %v, %v; want the session and its user", got, gu, err)
			case !tc.ok && auth.ErrorCode(err) != auth.CodeUnauthorized:
				t.Fatalf("AuthenticateSessionID error %v, want unauthorized", err)
			}
		})
	}
}
