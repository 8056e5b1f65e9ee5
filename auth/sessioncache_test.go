package auth_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// cacheStore is an in-memory auth.Store with just what session validation and the
// revoking methods use, counting the queries that load a session. Other methods
// panic (the nil embedded Store).
type cacheStore struct {
	auth.Store

	mu       sync.Mutex
	users    map[string]*auth.User
	sessions map[string]*auth.Session
	loads    int // SessionUser calls
	touches  int // TouchSession calls
	// duringLoad, if set, runs inside SessionUser after the row was read and
	// before it is returned (an invalidation racing with a load).
	duringLoad func()
}

func newCacheStore() *cacheStore {
	return &cacheStore{users: map[string]*auth.User{}, sessions: map[string]*auth.Session{}}
}

func (s *cacheStore) SessionUser(ctx context.Context, id string) (*auth.Session, *auth.User, error) {
	s.mu.Lock()
	s.loads++
	sess, ok := s.sessions[id]
	var cs auth.Session
	var cu auth.User
	if ok {
		cs, cu = *sess, *s.users[sess.UserID]
		cs.Methods, cu.Roles = slices.Clone(sess.Methods), slices.Clone(cu.Roles)
	}
	during := s.duringLoad
	s.mu.Unlock()
	if !ok {
		return nil, nil, fmt.Errorf("session: %w", auth.ErrNotFound)
	}
	if during != nil {
		during()
	}
	return &cs, &cu, nil
}

func (s *cacheStore) TouchSession(ctx context.Context, id string, at time.Time, ip string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.touches++
	sess, ok := s.sessions[id]
	if !ok {
		return auth.ErrNotFound
	}
	sess.LastSeenAt = at
	if ip != "" {
		sess.IP = ip
	}
	return nil
}

func (s *cacheStore) CreateSession(ctx context.Context, sess *auth.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *sess
	s.sessions[sess.ID] = &c
	return nil
}

func (s *cacheStore) RevokeSession(ctx context.Context, userID, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok || sess.UserID != userID {
		return auth.ErrNotFound
	}
	if sess.RevokedAt.IsZero() {
		sess.RevokedAt = at
	}
	return nil
}

func (s *cacheStore) RevokeSessions(ctx context.Context, userID, keep string, at time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sess := range s.sessions {
		if sess.UserID == userID && sess.ID != keep && sess.RevokedAt.IsZero() {
			sess.RevokedAt = at
			n++
		}
	}
	return n, nil
}

func (s *cacheStore) User(ctx context.Context, id string) (*auth.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[id]
	if !ok {
		return nil, auth.ErrNotFound
	}
	c := *u
	c.Roles = slices.Clone(u.Roles)
	return &c, nil
}

func (s *cacheStore) SetRoles(ctx context.Context, userID string, roles []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[userID]
	if !ok {
		return auth.ErrNotFound
	}
	u.Roles = slices.Clone(roles)
	return nil
}

func (s *cacheStore) UpdateUser(ctx context.Context, u *auth.User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[u.ID]; !ok {
		return auth.ErrNotFound
	}
	c := *u
	c.Roles = slices.Clone(u.Roles)
	s.users[u.ID] = &c
	return nil
}

func (s *cacheStore) AppendAudit(ctx context.Context, e *auth.AuditEvent) error { return nil }

func (s *cacheStore) addUser(id string, t auth.UserType, roles ...string) *auth.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &auth.User{ID: id, Type: t, Email: id + "@hestami.example", Roles: roles}
	s.users[id] = u
	c := *u
	return &c
}

func (s *cacheStore) counts() (loads, touches int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads, s.touches
}

// cacheClock is a test clock moved by hand.
type cacheClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *cacheClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *cacheClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type cacheFixture struct {
	store *cacheStore
	clock *cacheClock
	svc   *auth.Service
	cfg   auth.Config
}

// newCacheFixture is a Service over a cacheStore with cfg (the defaults if
// change is nil) on a test clock.
func newCacheFixture(t *testing.T, change func(*auth.Config)) *cacheFixture {
	t.Helper()
	cfg := auth.DefaultConfig()
	if change != nil {
		change(&cfg)
	}
	f := &cacheFixture{store: newCacheStore(), clock: &cacheClock{t: time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)}, cfg: cfg}
	f.svc = auth.NewService(f.store, nil, cfg, f.clock.now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return f
}

var cacheClient = auth.Client{IP: "192.0.2.7", UserAgent: "test"}

// signIn starts a session for u and returns its token.
func (f *cacheFixture) signIn(t *testing.T, u *auth.User) (string, *auth.Session) {
	t.Helper()
	token, sess, err := f.svc.StartSession(t.Context(), u, []string{"google"}, cacheClient)
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	return token, sess
}

// authenticate is Authenticate that must succeed.
func (f *cacheFixture) authenticate(t *testing.T, token string) (*auth.Session, *auth.User) {
	t.Helper()
	sess, u, err := f.svc.Authenticate(t.Context(), token, cacheClient)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return sess, u
}

// signedOut checks that token signs nobody in any more.
func (f *cacheFixture) signedOut(t *testing.T, token, after string) {
	t.Helper()
	_, _, err := f.svc.Authenticate(t.Context(), token, cacheClient)
	if auth.ErrorCode(err) != auth.CodeUnauthorized {
		t.Fatalf("Authenticate after %s: err = %v, want unauthorized", after, err)
	}
}

func (f *cacheFixture) wantLoads(t *testing.T, want int, when string) {
	t.Helper()
	if got, _ := f.store.counts(); got != want {
		t.Fatalf("%s: %d session queries, want %d", when, got, want)
	}
}

func TestSessionCacheServesRepeatsFromMemory(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, nil)
	u := f.store.addUser("u1", auth.TypeOwner, "owner")
	token, _ := f.signIn(t, u)
	f.authenticate(t, token)
	f.wantLoads(t, 1, "first request")
	for range 3 {
		f.clock.add(500 * time.Millisecond)
		sess, got := f.authenticate(t, token)
		if got.ID != u.ID || sess.UserID != u.ID {
			t.Fatalf("cached request signed in %s (session of %s), want %s", got.ID, sess.UserID, u.ID)
		}
	}
	f.wantLoads(t, 1, "three more requests within the TTL")

	// What a caller does with its copy does not reach the cache.
	_, got := f.authenticate(t, token)
	got.Roles[0], got.Disabled = "staff:admin", true
	if _, again := f.authenticate(t, token); again.Roles[0] != "owner" || again.Disabled {
		t.Fatalf("a caller's change reached the cache: %+v", *again)
	}
}

func TestSessionCacheExpires(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, nil) // TTL 2s
	u := f.store.addUser("u1", auth.TypeOwner, "owner")
	token, _ := f.signIn(t, u)
	f.authenticate(t, token)
	f.clock.add(2*time.Second - time.Nanosecond)
	f.authenticate(t, token)
	f.wantLoads(t, 1, "just inside the TTL")
	f.clock.add(time.Nanosecond)
	f.authenticate(t, token)
	f.wantLoads(t, 2, "at the TTL")
	f.authenticate(t, token)
	f.wantLoads(t, 2, "after reloading")
}

func TestSessionCacheOff(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, func(c *auth.Config) { c.SessionCacheTTL = 0 })
	u := f.store.addUser("u1", auth.TypeOwner, "owner")
	token, _ := f.signIn(t, u)
	for range 3 {
		f.authenticate(t, token)
	}
	f.wantLoads(t, 3, "three requests without a cache")
}

// The session's own timeouts are checked on every request, cached or not.
func TestSessionCacheChecksTimeouts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*auth.Config)
	}{
		{"absolute", func(c *auth.Config) { c.AbsoluteTimeout, c.SessionCacheTTL = 10*time.Second, time.Hour }},
		{"idle", func(c *auth.Config) {
			c.IdleTimeout, c.TouchInterval, c.SessionCacheTTL = 10*time.Second, time.Hour, time.Hour
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newCacheFixture(t, tc.change)
			u := f.store.addUser("u1", auth.TypeOwner, "owner")
			token, _ := f.signIn(t, u)
			f.authenticate(t, token)
			f.clock.add(10*time.Second - time.Nanosecond)
			f.authenticate(t, token)
			f.clock.add(time.Nanosecond)
			f.signedOut(t, token, "the timeout, from the cache")
			f.wantLoads(t, 1, "timeouts")
		})
	}
}

// Activity is still written at most every TouchInterval while the session is
// served from memory.
func TestSessionCacheTouches(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, func(c *auth.Config) { c.SessionCacheTTL = time.Hour })
	u := f.store.addUser("u1", auth.TypeOwner, "owner")
	token, _ := f.signIn(t, u)
	for _, step := range []struct {
		after       time.Duration
		wantTouches int
	}{{0, 0}, {30 * time.Second, 0}, {31 * time.Second, 1}, {30 * time.Second, 1}, {31 * time.Second, 2}} {
		f.clock.add(step.after)
		sess, _ := f.authenticate(t, token)
		if _, touches := f.store.counts(); touches != step.wantTouches {
			t.Fatalf("at %s: %d touches, want %d", sess.LastSeenAt, touches, step.wantTouches)
		}
	}
	f.wantLoads(t, 1, "touches")
	// A request from another address records it at once, and so does the next
	// one from the first address.
	sess, _, err := f.svc.Authenticate(t.Context(), token, auth.Client{IP: "198.51.100.1"})
	if err != nil {
		t.Fatal(err)
	}
	if sess.IP != "198.51.100.1" {
		t.Fatalf("session IP %q after a request from 198.51.100.1", sess.IP)
	}
	if sess, _ = f.authenticate(t, token); sess.IP != cacheClient.IP {
		t.Fatalf("session IP %q after a request from %s", sess.IP, cacheClient.IP)
	}
	if _, touches := f.store.counts(); touches != 4 {
		t.Fatalf("%d touches, want 4 (the new address, then back to the old)", touches)
	}
	f.wantLoads(t, 1, "address changes")
}

// Whatever revokes a session or changes its user through the Service shows on
// the very next request, though the session was cached.
func TestSessionCacheRevocationIsImmediate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// act changes things for the session of user (token, sess); admin is a
		// staff administrator with a session of their own.
		act func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error
		// check says what the next request with the user's token must see.
		check func(t *testing.T, f *cacheFixture, token string)
	}{
		{"sign out", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			return f.svc.SignOut(t.Context(), sess, cacheClient)
		}, nil},
		{"revoke session", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			return f.svc.RevokeSession(t.Context(), user, user.ID, sess.ID, cacheClient)
		}, nil},
		{"revoke sessions (staff)", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			_, err := f.svc.RevokeSessions(t.Context(), admin, user.ID, "", cacheClient)
			return err
		}, nil},
		{"rotate", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			_, _, err := f.svc.RotateSession(t.Context(), sess, user, cacheClient)
			return err
		}, nil},
		{"elevate", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			_, _, err := f.svc.ElevateSession(t.Context(), sess, user, auth.MethodTOTP, cacheClient)
			return err
		}, nil},
		{"disable", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			_, err := f.svc.SetDisabled(t.Context(), admin, user.ID, true, cacheClient)
			return err
		}, nil},
		{"roles", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			_, err := f.svc.SetRoles(t.Context(), admin, user.ID, []string{"staff:support"}, cacheClient)
			return err
		}, func(t *testing.T, f *cacheFixture, token string) {
			_, u := f.authenticate(t, token)
			if !slices.Equal(u.Roles, []string{"staff:support"}) || !u.Can(auth.PermSessionsMgmt) || u.Can(auth.PermBackupRun) {
				t.Fatalf("roles on the next request: %v, want [staff:support]", u.Roles)
			}
		}},
		{"invalidate session", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			f.revokeBehindTheService(t, sess)
			f.svc.Invalidate(auth.InvalidateSession, sess.ID)
			return nil
		}, nil},
		{"invalidate user", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			f.revokeBehindTheService(t, sess)
			f.svc.Invalidate(auth.InvalidateUser, user.ID)
			return nil
		}, nil},
		{"invalidate all", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			f.revokeBehindTheService(t, sess)
			f.svc.Invalidate(auth.InvalidateAll, "")
			return nil
		}, nil},
		{"invalidate unknown kind", func(t *testing.T, f *cacheFixture, admin, user *auth.User, sess *auth.Session) error {
			f.revokeBehindTheService(t, sess)
			f.svc.Invalidate("grant", "g1")
			return nil
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newCacheFixture(t, func(c *auth.Config) { c.SessionCacheTTL = time.Hour })
			admin := f.store.addUser("admin", auth.TypeStaff, "staff:admin")
			user := f.store.addUser("user", auth.TypeStaff, "staff:ops")
			adminToken, _ := f.signIn(t, admin)
			token, sess := f.signIn(t, user)
			f.authenticate(t, adminToken)
			f.authenticate(t, token)
			f.authenticate(t, token)
			f.wantLoads(t, 2, "before")
			if err := tc.act(t, f, admin, user, sess); err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, f, token)
			} else {
				f.signedOut(t, token, tc.name)
			}
			// The administrator's own session was not touched by it.
			f.authenticate(t, adminToken)
			if tc.name != "invalidate all" && tc.name != "invalidate unknown kind" {
				f.wantLoads(t, 3, "after, the administrator's session still cached")
			}
		})
	}
}

// revokeBehindTheService revokes sess in the store only, as another replica does.
func (f *cacheFixture) revokeBehindTheService(t *testing.T, sess *auth.Session) {
	t.Helper()
	if err := f.store.RevokeSession(t.Context(), sess.UserID, sess.ID, f.clock.now()); err != nil {
		t.Fatal(err)
	}
}

// An invalidation that arrives while a request is loading the session keeps the
// (possibly stale) result out of the cache.
func TestSessionCacheInvalidationDuringLoad(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, func(c *auth.Config) { c.SessionCacheTTL = time.Hour })
	u := f.store.addUser("u1", auth.TypeOwner, "owner")
	token, sess := f.signIn(t, u)
	f.store.mu.Lock()
	f.store.duringLoad = func() {
		f.store.mu.Lock()
		f.store.sessions[sess.ID].RevokedAt = f.clock.now()
		f.store.duringLoad = nil
		f.store.mu.Unlock()
		f.svc.Invalidate(auth.InvalidateSession, sess.ID)
	}
	f.store.mu.Unlock()
	f.authenticate(t, token) // loaded before the revocation committed
	f.signedOut(t, token, "a revocation during the first load")
	f.wantLoads(t, 2, "after a revocation during a load")
}

// Many clients at once (run with -race).
func TestSessionCacheConcurrent(t *testing.T) {
	t.Parallel()
	f := newCacheFixture(t, func(c *auth.Config) { c.SessionCacheSize = 4 })
	var tokens []string
	for i := range 8 {
		u := f.store.addUser(fmt.Sprintf("u%d", i), auth.TypeOwner, "owner")
		token, _ := f.signIn(t, u)
		tokens = append(tokens, token)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				token := tokens[(g+i)%len(tokens)]
				if _, _, err := f.svc.Authenticate(context.Background(), token, cacheClient); err != nil {
					errs <- err
					return
				}
				if i%50 == 0 {
					f.svc.Invalidate(auth.InvalidateUser, fmt.Sprintf("u%d", g%8))
					f.clock.add(time.Second)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if loads, _ := f.store.counts(); loads >= 16*200 {
		t.Fatalf("%d loads for %d requests: nothing was cached", loads, 16*200)
	}
}
