package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// loadCounter is an AuthStore counting the queries that validate a session.
type loadCounter struct {
	*postgres.AuthStore
	loads atomic.Int64
}

func (s *loadCounter) SessionUser(ctx context.Context, id string) (*auth.Session, *auth.User, error) {
	s.loads.Add(1)
	return s.AuthStore.SessionUser(ctx, id)
}

// syncBuffer is a log destination safe for the listener's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// listener runs ListenInvalidations until the test ends, records what it hands
// over, and passes it to svc (if not nil).
type listener struct {
	mu     sync.Mutex
	got    []string // "kind:id"
	starts chan struct{}
	log    syncBuffer
}

func startListener(t *testing.T, pool *pgxpool.Pool, svc *auth.Service) *listener {
	t.Helper()
	l := &listener{starts: make(chan struct{}, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		postgres.ListenInvalidations(ctx, pool, func(kind, id string) {
			if svc != nil {
				svc.Invalidate(kind, id)
			}
			l.mu.Lock()
			l.got = append(l.got, kind+":"+id)
			l.mu.Unlock()
			if kind == auth.InvalidateAll {
				l.starts <- struct{}{}
			}
		}, slog.New(slog.NewTextHandler(&l.log, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	l.waitListening(t)
	return l
}

// waitListening waits until the listener (re)starts listening.
func (l *listener) waitListening(t *testing.T) {
	t.Helper()
	select {
	case <-l.starts:
	case <-time.After(15 * time.Second):
		t.Fatalf("ListenInvalidations did not start listening within 15s; its log:\n%s", l.log.String())
	}
}

func (l *listener) received() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// eventually polls check until it returns nil, failing with its last error at the
// deadline.
func eventually(t *testing.T, within time.Duration, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", within, err)
		}
		<-tick.C
	}
}

func migrated(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool := openPool(t, url)
	if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	return pool
}

var replicaClient = auth.Client{IP: "192.0.2.10", UserAgent: "replica test"}

// Two replicas on one database, each with its own pool and session cache (kept an
// hour, so only an invalidation ends a cached session): what one revokes or
// changes, the other stops serving within milliseconds.
func TestInvalidationsAcrossReplicas(t *testing.T) {
	t.Parallel()
	url := pgtest.Database(t)
	poolA, poolB := migrated(t, url), openPool(t, url)
	cfg := auth.DefaultConfig()
	cfg.SessionCacheTTL = time.Hour
	logger := slog.New(slog.DiscardHandler)
	a := auth.NewService(postgres.NewAuthStore(poolA), nil, cfg, time.Now, logger)
	storeB := &loadCounter{AuthStore: postgres.NewAuthStore(poolB)}
	b := auth.NewService(storeB, nil, cfg, time.Now, logger)
	startListener(t, poolB, b)

	admin, err := a.CreateUser(t.Context(), nil, auth.NewUser{Type: auth.TypeStaff, Email: "admin@hestami.example", Roles: []string{"staff:admin"}}, replicaClient)
	if err != nil {
		t.Fatal(err)
	}
	signedOut := func(token string) func() error {
		return func() error {
			_, _, err := b.Authenticate(t.Context(), token, replicaClient)
			if auth.ErrorCode(err) != auth.CodeUnauthorized {
				return fmt.Errorf("replica B still signs the session in (err %v)", err)
			}
			return nil
		}
	}
	for i, tc := range []struct {
		name string
		act  func(t *testing.T, u *auth.User, sess *auth.Session) error
		// seen is what B must come to see; nil: the session signed out.
		seen func(token string) func() error
	}{
		{"sign out", func(t *testing.T, u *auth.User, sess *auth.Session) error {
			return a.SignOut(t.Context(), sess, replicaClient)
		}, nil},
		{"revoke own session", func(t *testing.T, u *auth.User, sess *auth.Session) error {
			return a.RevokeSession(t.Context(), u, u.ID, sess.ID, replicaClient)
		}, nil},
		{"administrator revokes every session", func(t *testing.T, u *auth.User, sess *auth.Session) error {
			_, err := a.RevokeSessions(t.Context(), admin, u.ID, "", replicaClient)
			return err
		}, nil},
		{"rotate", func(t *testing.T, u *auth.User, sess *auth.Session) error {
			_, _, err := a.RotateSession(t.Context(), sess, u, replicaClient)
			return err
		}, nil},
		{"disable", func(t *testing.T, u *auth.User, sess *auth.Session) error {
			_, err := a.SetDisabled(t.Context(), admin, u.ID, true, replicaClient)
			return err
		}, nil},
		{"roles", func(t *testing.T, u *auth.User, sess *auth.Session) error {
			_, err := a.SetRoles(t.Context(), admin, u.ID, []string{"staff:support"}, replicaClient)
			return err
		}, func(token string) func() error {
			return func() error {
				_, u, err := b.Authenticate(t.Context(), token, replicaClient)
				if err != nil {
					return err
				}
				if !slices.Equal(u.Roles, []string{"staff:support"}) {
					return fmt.Errorf("replica B still has roles %v", u.Roles)
				}
				return nil
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := a.CreateUser(t.Context(), nil, auth.NewUser{Type: auth.TypeStaff, Email: fmt.Sprintf("staff%d@hestami.example", i), Roles: []string{"staff:ops"}}, replicaClient)
			if err != nil {
				t.Fatal(err)
			}
			token, sess, err := a.StartSession(t.Context(), u, []string{"github"}, replicaClient)
			if err != nil {
				t.Fatal(err)
			}
			before := storeB.loads.Load()
			for range 3 {
				if _, _, err := b.Authenticate(t.Context(), token, replicaClient); err != nil {
					t.Fatalf("replica B: %v", err)
				}
			}
			if n := storeB.loads.Load() - before; n != 1 {
				t.Fatalf("replica B queried %d times for 3 requests, want 1 (the rest cached)", n)
			}
			if err := tc.act(t, u, sess); err != nil {
				t.Fatal(err)
			}
			check := signedOut(token)
			if tc.seen != nil {
				check = tc.seen(token)
			}
			took := eventually(t, 5*time.Second, check)
			t.Logf("replica B saw it after %s", took)
		})
	}
}

// The store publishes one notification per revoked session and per changed user,
// with the change (nothing for a change that matched no row).
func TestInvalidationPayloads(t *testing.T) {
	t.Parallel()
	url := pgtest.Database(t)
	pool := migrated(t, url)
	store := postgres.NewAuthStore(pool)
	ctx := t.Context()

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+postgres.InvalidationChannel); err != nil {
		t.Fatal(err)
	}

	u := &auth.User{Type: auth.TypeOwner, Email: "ann@hestami.example", Roles: []string{"owner"}}
	if err := store.CreateUser(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	var ids []string
	for range 3 {
		id := auth.HashToken(auth.NewToken())
		ids = append(ids, id)
		if err := store.CreateSession(ctx, &auth.Session{ID: id, UserID: u.ID, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour),
			IdleTimeout: time.Hour, AuthTime: now, Methods: []string{"google"}}); err != nil {
			t.Fatal(err)
		}
	}
	const nobody = "00000000-0000-4000-8000-000000000000"
	if err := store.RevokeSession(ctx, u.ID, ids[0], now); err != nil {
		t.Fatal(err)
	}
	if err := store.RevokeSession(ctx, u.ID, "no such session", now); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("RevokeSession(unknown) = %v, want ErrNotFound", err)
	}
	if n, err := store.RevokeSessions(ctx, u.ID, ids[2], now); err != nil || n != 1 {
		t.Fatalf("RevokeSessions = %d, %v; want 1 (one active besides the kept one)", n, err)
	}
	if err := store.SetRoles(ctx, u.ID, []string{"owner"}); err != nil {
		t.Fatal(err)
	}
	if err := store.SetRoles(ctx, nobody, []string{"owner"}); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("SetRoles(unknown) = %v, want ErrNotFound", err)
	}
	u.Disabled = true
	if err := store.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if u.UpdatedAt.IsZero() {
		t.Fatal("UpdateUser did not return the new UpdatedAt")
	}
	if err := store.UpdateUser(ctx, &auth.User{ID: nobody}); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("UpdateUser(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := pool.Exec(ctx, "SELECT pg_notify($1, 'end')", postgres.InvalidationChannel); err != nil {
		t.Fatal(err)
	}

	want := []string{"session:" + ids[0], "session:" + ids[1], "user:" + u.ID, "user:" + u.ID, "end"}
	var got []string
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(got) == 0 || got[len(got)-1] != "end" {
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, n.Payload)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("notifications:\n got %q\nwant %q", got, want)
	}
}

// A listener whose connection dies connects again, says so (InvalidateAll: it may
// have missed some) and goes on delivering.
func TestListenInvalidationsReconnects(t *testing.T) {
	t.Parallel()
	url := pgtest.Database(t)
	pool := migrated(t, url)
	store := postgres.NewAuthStore(pool)
	l := startListener(t, pool, nil)

	var killed int
	eventually(t, 5*time.Second, func() error {
		err := pool.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'hestami auth invalidations' AND datname = current_database()`).Scan(&killed)
		if err == nil && killed != 1 {
			err = fmt.Errorf("%d listening connections, want 1", killed)
		}
		return err
	})
	l.waitListening(t)
	if log := l.log.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "retry_in") {
		t.Errorf("the lost connection was not logged as a warning with its retry:\n%s", log)
	}

	u := &auth.User{Type: auth.TypeOwner, Email: "bob@hestami.example", Roles: []string{"owner"}}
	if err := store.CreateUser(t.Context(), u, nil); err != nil {
		t.Fatal(err)
	}
	if err := store.SetRoles(t.Context(), u.ID, []string{"owner"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		got := l.received()
		want := []string{"all:", "all:", "user:" + u.ID}
		if !slices.Equal(got, want) {
			return fmt.Errorf("listener got %q, want %q", got, want)
		}
		return nil
	})
}
