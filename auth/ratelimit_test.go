package auth_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/auth/authtest"
)

// testClock is a fake clock for the protection tests, safe for concurrent use.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestMemoryLimiter(t *testing.T) {
	t.Parallel()
	authtest.RunLimiter(t, func(t *testing.T) authtest.Limiters {
		clock := newTestClock()
		l := auth.NewMemoryLimiter(clock.Now)
		window := 10 * time.Minute
		return authtest.Limiters{A: l, B: l, Now: clock.Now, Tick: func() { clock.Add(window / 50) }, Window: window}
	})
}

func TestRateLimitedError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		wait time.Duration
		want string
	}{
		{300 * time.Millisecond, "Too many codes. Try again in a second."},
		{1500 * time.Millisecond, "Too many codes. Try again in 2 seconds."},
		{time.Minute, "Too many codes. Try again in a minute."},
		{61 * time.Second, "Too many codes. Try again in 2 minutes."},
		{59 * time.Minute, "Too many codes. Try again in 59 minutes."},
		{time.Hour, "Too many codes. Try again in an hour."},
		{3*time.Hour + time.Second, "Too many codes. Try again in 4 hours."},
	} {
		err := auth.RateLimitedError("Too many codes.", tc.wait)
		if got := auth.ErrorMessage(err); got != tc.want {
			t.Errorf("wait %s: message %q, want %q", tc.wait, got, tc.want)
		}
		if auth.ErrorCode(err) != auth.CodeRateLimited {
			t.Errorf("wait %s: code %s", tc.wait, auth.ErrorCode(err))
		}
		if got, ok := auth.RetryAfter(err); !ok || got != tc.wait {
			t.Errorf("wait %s: RetryAfter = %s, %v", tc.wait, got, ok)
		}
	}
	if _, ok := auth.RetryAfter(errors.New("other")); ok {
		t.Error("RetryAfter of a plain error says ok")
	}
}
