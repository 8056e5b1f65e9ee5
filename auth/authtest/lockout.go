package authtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// LockoutStores is an auth.LockoutStore implementation under test.
type LockoutStores struct {
	// A and B share their state (two replicas; the same store twice for one
	// that lives in one process).
	A, B auth.LockoutStore
	// Now is the stores' clock (for expiry); Tick lets a little time pass.
	Now  func() time.Time
	Tick func()
	// TTL is the time to live of the expiry test: minutes on a fake clock,
	// some hundred milliseconds on a real one.
	TTL time.Duration
}

// RunLockoutStore runs the auth.LockoutStore contract against the stores
// newStores returns: zero state for unknown keys, updates seen by both
// instances, a zero state deleting the key, expiry after the TTL, and no lost
// update under concurrent updates from both instances. Each subtest calls
// newStores once; subtests run in parallel.
func RunLockoutStore(t *testing.T, newStores func(t *testing.T) LockoutStores) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s LockoutStores)
	}{
		{"Unknown", testLockoutUnknown},
		{"UpdateAndRead", testLockoutUpdateAndRead},
		{"ZeroDeletes", testLockoutZeroDeletes},
		{"Expires", testLockoutExpires},
		{"Concurrent", testLockoutConcurrent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStores(t))
		})
	}
}

func lockoutState(t *testing.T, s auth.LockoutStore, key string) auth.LockoutState {
	t.Helper()
	st, err := s.LockoutState(t.Context(), key)
	if err != nil {
		t.Fatalf("LockoutState(%s): %v", key, err)
	}
	return st
}

func update(t *testing.T, s auth.LockoutStore, key string, ttl time.Duration, fn func(*auth.LockoutState)) auth.LockoutState {
	t.Helper()
	st, err := s.UpdateLockout(t.Context(), key, ttl, fn)
	if err != nil {
		t.Fatalf("UpdateLockout(%s): %v", key, err)
	}
	return st
}

func sameLockout(a, b auth.LockoutState) bool {
	if len(a.Failures) != len(b.Failures) || a.Locks != b.Locks || !a.LockedUntil.Equal(b.LockedUntil) {
		return false
	}
	for i := range a.Failures {
		if !a.Failures[i].Equal(b.Failures[i]) {
			return false
		}
	}
	return true
}

func testLockoutUnknown(t *testing.T, s LockoutStores) {
	if st := lockoutState(t, s.A, "lockout:nobody"); !st.IsZero() {
		t.Fatalf("unknown key: %+v", st)
	}
	var seen auth.LockoutState
	seen.Locks = -1
	update(t, s.A, "lockout:nobody", time.Hour, func(st *auth.LockoutState) { seen = *st })
	if !seen.IsZero() {
		t.Fatalf("UpdateLockout of an unknown key passed %+v", seen)
	}
}

func testLockoutUpdateAndRead(t *testing.T, s LockoutStores) {
	want := auth.LockoutState{Failures: []time.Time{base, base.Add(time.Second)}, Locks: 2, LockedUntil: base.Add(time.Hour)}
	got := update(t, s.A, "k", time.Hour, func(st *auth.LockoutState) { *st = want })
	if !sameLockout(got, want) {
		t.Fatalf("UpdateLockout returned %+v, want %+v", got, want)
	}
	for _, st := range []auth.LockoutState{lockoutState(t, s.A, "k"), lockoutState(t, s.B, "k")} {
		if !sameLockout(st, want) {
			t.Fatalf("read back %+v, want %+v", st, want)
		}
	}
	// Updates see the stored state, through either instance.
	update(t, s.B, "k", time.Hour, func(st *auth.LockoutState) {
		if !sameLockout(*st, want) {
			t.Errorf("fn got %+v, want %+v", *st, want)
		}
		st.Locks++
		st.Failures = st.Failures[1:]
	})
	got = lockoutState(t, s.A, "k")
	if got.Locks != 3 || len(got.Failures) != 1 || !got.Failures[0].Equal(base.Add(time.Second)) {
		t.Fatalf("after the second update: %+v", got)
	}
	if st := lockoutState(t, s.A, "other"); !st.IsZero() {
		t.Fatalf("another key: %+v", st)
	}
}

func testLockoutZeroDeletes(t *testing.T, s LockoutStores) {
	update(t, s.A, "k", time.Hour, func(st *auth.LockoutState) { st.Locks = 1 })
	got := update(t, s.B, "k", time.Hour, func(st *auth.LockoutState) { *st = auth.LockoutState{} })
	if !got.IsZero() {
		t.Fatalf("returned %+v", got)
	}
	if st := lockoutState(t, s.A, "k"); !st.IsZero() {
		t.Fatalf("after clearing: %+v", st)
	}
}

func testLockoutExpires(t *testing.T, s LockoutStores) {
	start := s.Now()
	update(t, s.A, "k", s.TTL, func(st *auth.LockoutState) { st.Locks = 1 })
	if st := lockoutState(t, s.B, "k"); st.Locks != 1 {
		t.Fatalf("just stored: %+v", st)
	}
	deadline := start.Add(100 * s.TTL)
	for !lockoutState(t, s.B, "k").IsZero() {
		if s.Now().After(deadline) {
			t.Fatalf("still there after 100 TTLs of %s", s.TTL)
		}
		s.Tick()
	}
	if gone := s.Now().Sub(start); gone < s.TTL {
		t.Fatalf("gone after %s, before its TTL of %s", gone, s.TTL)
	}
	// A stored state's TTL starts again at each update.
	update(t, s.A, "k", s.TTL, func(st *auth.LockoutState) { st.Locks = 5 })
	if st := lockoutState(t, s.A, "k"); st.Locks != 5 {
		t.Fatalf("stored after expiry: %+v", st)
	}
}

func testLockoutConcurrent(t *testing.T, s LockoutStores) {
	const n = 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		st := s.A
		if i%2 == 1 {
			st = s.B
		}
		wg.Go(func() {
			<-start
			_, err := st.UpdateLockout(context.WithoutCancel(t.Context()), "race", time.Hour, func(ls *auth.LockoutState) {
				ls.Locks++
				ls.Failures = append(ls.Failures, base.Add(time.Duration(ls.Locks)*time.Second))
			})
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := lockoutState(t, s.A, "race")
	if got.Locks != n || len(got.Failures) != n {
		t.Fatalf("%d concurrent updates: Locks %d, %d failures; an update was lost", n, got.Locks, len(got.Failures))
	}
}
