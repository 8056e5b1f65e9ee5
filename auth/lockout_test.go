package auth_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/auth/authtest"
)

func TestMemoryLockoutStore(t *testing.T) {
	t.Parallel()
	authtest.RunLockoutStore(t, func(t *testing.T) authtest.LockoutStores {
		clock := newProtClock()
		s := auth.NewMemoryLockoutStore(clock.Now)
		ttl := 10 * time.Minute
		return authtest.LockoutStores{A: s, B: s, Now: clock.Now, Tick: func() { clock.Add(ttl / 20) }, TTL: ttl}
	})
}

// protAudit collects audit events in memory.
type protAudit struct {
	mu     sync.Mutex
	events []auth.AuditEvent
}

func (a *protAudit) Audit(_ context.Context, e *auth.AuditEvent) error {
	a.mu.Lock()
	a.events = append(a.events, *e)
	a.mu.Unlock()
	return nil
}

func (a *protAudit) actions(action string) []auth.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []auth.AuditEvent
	for _, e := range a.events {
		if e.Action == action {
			out = append(out, e)
		}
	}
	return out
}

func protLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// lockoutStep is one step of a lockout scenario: time passes, then an attempt
// fails (fail), succeeds (succeed) or is only checked.
type lockoutStep struct {
	wait    time.Duration
	from    auth.LockoutAttempt
	do      string        // "fail", "succeed" or "check"
	refused time.Duration // the lock's remaining time the step must be refused with; 0: accepted
}

func TestLockout(t *testing.T) {
	t.Parallel()
	home := auth.LockoutAttempt{UserID: "u1", IP: "203.0.113.10"}
	homeMapped := auth.LockoutAttempt{UserID: "u1", IP: "::ffff:203.0.113.10"}
	cafe := auth.LockoutAttempt{UserID: "u1", IP: "198.51.100.20"}
	v6 := auth.LockoutAttempt{UserID: "u1", IP: "2001:db8:1:2::10"}
	v6SameNet := auth.LockoutAttempt{UserID: "u1", IP: "2001:db8:1:2:ffff::1"}
	v6OtherNet := auth.LockoutAttempt{UserID: "u1", IP: "2001:db8:1:3::10"}
	laptop := auth.LockoutAttempt{UserID: "u1", IP: "203.0.113.10", Device: "dev-laptop"}
	phone := auth.LockoutAttempt{UserID: "u1", IP: "203.0.113.10", Device: "dev-phone"}
	otherUser := auth.LockoutAttempt{UserID: "u2", IP: "203.0.113.10"}
	fails := func(a auth.LockoutAttempt, n int) []lockoutStep {
		var out []lockoutStep
		for range n {
			out = append(out, lockoutStep{from: a, do: "fail"})
		}
		return out
	}
	lock := func(a auth.LockoutAttempt, d time.Duration) []lockoutStep {
		return append(fails(a, 4), lockoutStep{from: a, do: "fail", refused: d})
	}
	cat := func(parts ...[]lockoutStep) []lockoutStep {
		var out []lockoutStep
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	step := func(wait time.Duration, a auth.LockoutAttempt, do string, refused time.Duration) []lockoutStep {
		return []lockoutStep{{wait: wait, from: a, do: do, refused: refused}}
	}
	for _, tc := range []struct {
		name  string
		steps []lockoutStep
		locks int // "mfa.lockout" events
	}{
		{"four failures do not lock", cat(fails(home, 4), step(0, home, "check", 0)), 0},
		{"the fifth failure locks for a minute", cat(lock(home, time.Minute), step(0, home, "check", time.Minute),
			step(59*time.Second, home, "check", time.Second), step(time.Second, home, "check", 0)), 1},
		{"failures older than the window do not count", cat(fails(home, 4), step(15*time.Minute, home, "fail", 0),
			fails(home, 3), step(0, home, "check", 0)), 0},
		{"the window slides", cat(fails(home, 2), step(10*time.Minute, home, "fail", 0), fails(home, 1),
			step(5*time.Minute, home, "fail", 0), step(0, home, "fail", 0), step(0, home, "fail", time.Minute)), 1},
		{"each further lock doubles", cat(
			lock(home, time.Minute), step(time.Minute, home, "check", 0),
			lock(home, 2*time.Minute), step(2*time.Minute, home, "check", 0),
			lock(home, 4*time.Minute), step(4*time.Minute, home, "check", 0),
			lock(home, 8*time.Minute), step(8*time.Minute, home, "check", 0),
			lock(home, 16*time.Minute), step(16*time.Minute, home, "check", 0),
			lock(home, 32*time.Minute), step(32*time.Minute, home, "check", 0),
			lock(home, time.Hour), step(time.Hour, home, "check", 0),
			lock(home, time.Hour), step(time.Hour-time.Second, home, "check", time.Second)), 8},
		{"a success resets failures and locks", cat(
			lock(home, time.Minute), step(time.Minute, home, "check", 0),
			lock(home, 2*time.Minute), step(2*time.Minute, home, "succeed", 0),
			fails(home, 4), step(0, home, "check", 0), step(0, home, "fail", time.Minute)), 3},
		{"failures while locked neither count nor lengthen the lock", cat(
			lock(home, time.Minute), step(30*time.Second, home, "fail", 30*time.Second), fails(home, 0),
			step(0, home, "fail", 30*time.Second), step(30*time.Second, home, "check", 0),
			fails(home, 4), step(0, home, "fail", 2*time.Minute)), 2},
		{"the lock level is forgotten a day after the last lock", cat(
			lock(home, time.Minute), step(time.Minute, home, "check", 0),
			lock(home, 2*time.Minute), step(2*time.Minute+24*time.Hour, home, "check", 0),
			lock(home, time.Minute)), 3},
		{"a lock is per address: another network is not locked", cat(lock(home, time.Minute),
			step(0, cafe, "check", 0), fails(cafe, 4), step(0, cafe, "check", 0), step(0, home, "check", time.Minute)), 1},
		{"an IPv4-mapped address is the same address", cat(lock(homeMapped, time.Minute), step(0, home, "check", time.Minute)), 1},
		{"an IPv6 /64 is one address", cat(fails(v6, 3), fails(v6SameNet, 1), step(0, v6SameNet, "fail", time.Minute),
			step(0, v6, "check", time.Minute), step(0, v6OtherNet, "check", 0)), 1},
		{"a remembered device has its own budget", cat(lock(home, time.Minute),
			step(0, laptop, "check", 0), fails(laptop, 4), step(0, laptop, "check", 0), step(0, laptop, "succeed", 0),
			step(0, home, "check", time.Minute)), 1},
		{"a remembered device locks itself, not others", cat(lock(laptop, time.Minute),
			step(0, phone, "check", 0), step(0, home, "check", 0)), 1},
		{"a lock is per user", cat(lock(home, time.Minute), step(0, otherUser, "check", 0)), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newProtClock()
			audit := &protAudit{}
			l := auth.NewLockout(auth.NewMemoryLockoutStore(clock.Now), auth.LockoutConfig{}, audit.Audit, clock.Now, protLog())
			ctx := t.Context()
			for i, s := range tc.steps {
				clock.Add(s.wait)
				var err error
				switch s.do {
				case "fail":
					err = l.Fail(ctx, s.from)
				case "succeed":
					if err = l.Check(ctx, s.from); err == nil {
						err = l.Succeed(ctx, s.from)
					}
				case "check":
					err = l.Check(ctx, s.from)
				}
				if s.refused == 0 {
					if err != nil {
						t.Fatalf("step %d (%s from %+v): %v", i+1, s.do, s.from, err)
					}
					continue
				}
				if auth.ErrorCode(err) != auth.CodeRateLimited {
					t.Fatalf("step %d (%s from %+v): %v, want refused for %s", i+1, s.do, s.from, err, s.refused)
				}
				if got, _ := auth.RetryAfter(err); got != s.refused {
					t.Fatalf("step %d (%s from %+v): refused for %s, want %s", i+1, s.do, s.from, got, s.refused)
				}
			}
			if got := len(audit.actions("mfa.lockout")); got != tc.locks {
				t.Fatalf("%d mfa.lockout events, want %d", got, tc.locks)
			}
		})
	}
}

func TestLockoutMessageAndAudit(t *testing.T) {
	t.Parallel()
	clock := newProtClock()
	audit := &protAudit{}
	l := auth.NewLockout(auth.NewMemoryLockoutStore(clock.Now), auth.LockoutConfig{MaxFailures: 3, BaseLock: 5 * time.Minute, MaxLock: 20 * time.Minute}, audit.Audit, clock.Now, protLog())
	if c := l.Config(); c.Window != 15*time.Minute || c.Memory != 24*time.Hour {
		t.Fatalf("defaults not filled in: %+v", c)
	}
	a := auth.LockoutAttempt{UserID: "u1", IP: "203.0.113.10"}
	var err error
	for range 3 {
		err = l.Fail(t.Context(), a)
	}
	if want := "Too many wrong codes from here, so we paused checking them. Try again in 5 minutes."; auth.ErrorMessage(err) != want {
		t.Fatalf("message %q, want %q", auth.ErrorMessage(err), want)
	}
	evs := audit.actions("mfa.lockout")
	if len(evs) != 1 {
		t.Fatalf("%d lockout events", len(evs))
	}
	ev := evs[0]
	if ev.Outcome != auth.OutcomeFailure || ev.ActorID != "u1" || ev.IP != "203.0.113.10" ||
		!strings.Contains(ev.Detail, "3 failures within 15m0s from address 203.0.113.10: locked for 5m0s (lock 1)") {
		t.Fatalf("audit event %+v", ev)
	}
	clock.Add(5 * time.Minute)
	for range 3 {
		err = l.Fail(t.Context(), a)
	}
	if got, _ := auth.RetryAfter(err); got != 10*time.Minute {
		t.Fatalf("second lock %s, want 10m", got)
	}
	clock.Add(10 * time.Minute)
	for range 3 {
		err = l.Fail(t.Context(), a)
	}
	if got, _ := auth.RetryAfter(err); got != 20*time.Minute {
		t.Fatalf("third lock %s, want the 20m cap", got)
	}
}

// TestLockoutConcurrentFailures checks that failures racing each other lock once,
// and every one of them past the limit is refused.
func TestLockoutConcurrentFailures(t *testing.T) {
	t.Parallel()
	clock := newProtClock()
	audit := &protAudit{}
	l := auth.NewLockout(auth.NewMemoryLockoutStore(clock.Now), auth.LockoutConfig{}, audit.Audit, clock.Now, protLog())
	a := auth.LockoutAttempt{UserID: "u1", IP: "203.0.113.10"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	for range 20 {
		wg.Go(func() {
			err := l.Fail(t.Context(), a)
			mu.Lock()
			defer mu.Unlock()
			if auth.ErrorCode(err) == auth.CodeRateLimited {
				refused++
			} else if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if refused != 16 || len(audit.actions("mfa.lockout")) != 1 {
		t.Fatalf("20 concurrent failures: %d refused (want 16: the fifth and every later one), %d locks (want 1)", refused, len(audit.actions("mfa.lockout")))
	}
}
