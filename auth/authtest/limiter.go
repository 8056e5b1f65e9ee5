package authtest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// Limiters is an auth.Limiter implementation under test: two instances that
// share their counts (two replicas of the service) and the clock they count by.
type Limiters struct {
	// A and B share counts: for a limiter that lives in one process, the same
	// limiter twice.
	A, B auth.Limiter
	// Now is the limiters' clock.
	Now func() time.Time
	// Tick lets a little time pass: it advances a fake clock, or waits one poll
	// interval of a real one.
	Tick func()
	// Window is the window of the tests that let time pass: long enough that a
	// few calls fit well inside it on this implementation (minutes for a fake
	// clock; some hundred milliseconds for a real one).
	Window time.Duration
	// Slack is how late, past the exact instant, a real clock may let the
	// limiter allow again (a fake clock: 0).
	Slack time.Duration
}

// RunLimiter runs the auth.Limiter contract against the limiters newLimiters
// returns: a sliding window, refused events not counted, keys independent, Reset,
// counts shared between the two instances, and exactly Events allowed under
// concurrent calls from both. Each subtest calls newLimiters once and expects
// fresh limiters; subtests run in parallel.
func RunLimiter(t *testing.T, newLimiters func(t *testing.T) Limiters) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, l Limiters)
	}{
		{"UpToLimit", testLimiterUpToLimit},
		{"BadLimit", testLimiterBadLimit},
		{"KeysIndependent", testLimiterKeysIndependent},
		{"Reset", testLimiterReset},
		{"SharedCounts", testLimiterSharedCounts},
		{"Concurrent", testLimiterConcurrent},
		{"WindowSlides", testLimiterWindowSlides},
		{"RetryAfterIsWhenAllowed", testLimiterRetryAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newLimiters(t))
		})
	}
}

func allow(t *testing.T, l auth.Limiter, key string, lim auth.Limit) auth.LimitResult {
	t.Helper()
	res, err := l.Allow(t.Context(), key, lim)
	if err != nil {
		t.Fatalf("Allow(%s, %+v): %v", key, lim, err)
	}
	if res.Allowed && res.RetryAfter != 0 {
		t.Errorf("Allow(%s): allowed with RetryAfter %s, want 0", key, res.RetryAfter)
	}
	if !res.Allowed && (res.RetryAfter <= 0 || res.RetryAfter > lim.Window) {
		t.Errorf("Allow(%s, %+v): refused with RetryAfter %s, want in (0, %s]", key, lim, res.RetryAfter, lim.Window)
	}
	return res
}

// wantAllowed calls Allow n times and checks the answers are want.
func wantAllowed(t *testing.T, l auth.Limiter, key string, lim auth.Limit, n int, want bool) {
	t.Helper()
	for i := range n {
		if got := allow(t, l, key, lim).Allowed; got != want {
			t.Fatalf("Allow(%s, %d events in %s) call %d: allowed %v, want %v", key, lim.Events, lim.Window, i+1, got, want)
		}
	}
}

var hour = auth.Limit{Events: 3, Window: time.Hour}

func testLimiterUpToLimit(t *testing.T, l Limiters) {
	wantAllowed(t, l.A, "signin:ip:192.0.2.1", hour, 3, true)
	// Refused events are not counted, however many: still refused, never more.
	wantAllowed(t, l.A, "signin:ip:192.0.2.1", hour, 5, false)
	one := auth.Limit{Events: 1, Window: time.Hour}
	wantAllowed(t, l.A, "once", one, 1, true)
	wantAllowed(t, l.A, "once", one, 1, false)
}

func testLimiterBadLimit(t *testing.T, l Limiters) {
	for _, lim := range []auth.Limit{{Events: 0, Window: time.Minute}, {Events: -1, Window: time.Minute}, {Events: 5, Window: 0}, {Events: 5, Window: -time.Second}} {
		if _, err := l.A.Allow(t.Context(), "k", lim); !errors.Is(err, auth.ErrBadLimit) {
			t.Errorf("Allow(%+v) = %v, want ErrBadLimit", lim, err)
		}
	}
}

func testLimiterKeysIndependent(t *testing.T, l Limiters) {
	wantAllowed(t, l.A, "verify:user:1", hour, 3, true)
	wantAllowed(t, l.A, "verify:user:1", hour, 1, false)
	wantAllowed(t, l.A, "verify:user:2", hour, 3, true)
	wantAllowed(t, l.A, "verify:user:10", hour, 3, true)
	wantAllowed(t, l.A, "verify:user:", hour, 3, true)
}

func testLimiterReset(t *testing.T, l Limiters) {
	ctx := t.Context()
	if err := l.A.Reset(ctx, "never-used"); err != nil {
		t.Fatalf("Reset of an unknown key: %v", err)
	}
	wantAllowed(t, l.A, "k", hour, 3, true)
	wantAllowed(t, l.A, "other", hour, 3, true)
	wantAllowed(t, l.A, "k", hour, 1, false)
	if err := l.A.Reset(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	wantAllowed(t, l.A, "k", hour, 3, true)
	wantAllowed(t, l.A, "k", hour, 1, false)
	// Reset touched only its key.
	wantAllowed(t, l.A, "other", hour, 1, false)
}

func testLimiterSharedCounts(t *testing.T, l Limiters) {
	ctx := t.Context()
	wantAllowed(t, l.A, "sms:number:+15550100", hour, 2, true)
	wantAllowed(t, l.B, "sms:number:+15550100", hour, 1, true)
	wantAllowed(t, l.A, "sms:number:+15550100", hour, 1, false)
	wantAllowed(t, l.B, "sms:number:+15550100", hour, 1, false)
	// A reset through one instance is seen by the other.
	if err := l.B.Reset(ctx, "sms:number:+15550100"); err != nil {
		t.Fatal(err)
	}
	wantAllowed(t, l.A, "sms:number:+15550100", hour, 3, true)
	wantAllowed(t, l.B, "sms:number:+15550100", hour, 1, false)
}

func testLimiterConcurrent(t *testing.T, l Limiters) {
	lim := auth.Limit{Events: 10, Window: time.Hour}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 64)
	for i := range 64 {
		lm := l.A
		if i%2 == 1 {
			lm = l.B
		}
		wg.Go(func() {
			<-start
			res, err := lm.Allow(context.WithoutCancel(t.Context()), "race", lim)
			if err != nil {
				errs <- err
				return
			}
			if res.Allowed {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := allowed.Load(); got != int64(lim.Events) {
		t.Fatalf("64 concurrent events against %d allowed: %d allowed", lim.Events, got)
	}
}

// until ticks the clock until Allow(key) through lm is allowed, and returns when
// (by the limiters' clock) it was. It fails after 100 windows.
func until(t *testing.T, l Limiters, lm auth.Limiter, key string, lim auth.Limit) time.Time {
	t.Helper()
	deadline := l.Now().Add(100 * lim.Window)
	for {
		if allow(t, lm, key, lim).Allowed {
			return l.Now()
		}
		if l.Now().After(deadline) {
			t.Fatalf("Allow(%s) still refused after 100 windows of %s", key, lim.Window)
		}
		l.Tick()
	}
}

// tickFor ticks until d passed since from.
func tickFor(l Limiters, from time.Time, d time.Duration) {
	for l.Now().Sub(from) < d {
		l.Tick()
	}
}

// testLimiterWindowSlides checks the window slides: an event counts for exactly
// Window after it, not until some fixed boundary.
func testLimiterWindowSlides(t *testing.T, l Limiters) {
	lim := auth.Limit{Events: 2, Window: l.Window}
	// The first event happens between t0 and t0done (by the limiters' clock,
	// which may count in microseconds).
	t0 := l.Now().Truncate(time.Microsecond)
	wantAllowed(t, l.A, "slide", lim, 1, true)
	t0done := l.Now()
	tickFor(l, t0, l.Window/2)
	t1 := l.Now()
	wantAllowed(t, l.B, "slide", lim, 1, true)
	wantAllowed(t, l.A, "slide", lim, 1, false)

	// The first event leaves the window Window after it was made, not before.
	got := until(t, l, l.A, "slide", lim)
	if early := t0.Add(lim.Window).Sub(got); early > 0 {
		t.Fatalf("allowed again %s after the first event, before its window of %s ended", got.Sub(t0), lim.Window)
	}
	if late := got.Sub(t0done.Add(lim.Window)); late > l.Slack {
		t.Fatalf("allowed again %s after the first event: %s later than its window of %s", got.Sub(t0), late, lim.Window)
	}
	// The second event still counts: one leaving the window made room for one.
	res := allow(t, l.B, "slide", lim)
	if res.Allowed {
		t.Fatalf("allowed a third event while the second (%s old) was inside the window of %s", l.Now().Sub(t1), lim.Window)
	}
	if res.RetryAfter > lim.Window/2+l.Slack {
		t.Errorf("RetryAfter %s, want at most %s (when the second event leaves the window)", res.RetryAfter, lim.Window/2)
	}
}

// testLimiterRetryAfter checks a refused event's RetryAfter: allowed once it
// passed, and (on a fake clock) not a moment before.
func testLimiterRetryAfter(t *testing.T, l Limiters) {
	lim := auth.Limit{Events: 3, Window: l.Window}
	wantAllowed(t, l.A, "retry", lim, 3, true)
	// The refusal is decided between before and after.
	before := l.Now().Truncate(time.Microsecond)
	res := allow(t, l.B, "retry", lim)
	after := l.Now()
	if res.Allowed {
		t.Fatal("fourth event allowed")
	}
	got := until(t, l, l.A, "retry", lim)
	if got.Before(before.Add(res.RetryAfter)) {
		t.Fatalf("allowed again %s after the refusal, before its RetryAfter of %s", got.Sub(before), res.RetryAfter)
	}
	if late := got.Sub(after.Add(res.RetryAfter)); late > l.Slack {
		t.Fatalf("allowed again %s after its RetryAfter of %s (slack %s)", late, res.RetryAfter, l.Slack)
	}
}
