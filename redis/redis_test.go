package redis_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/auth/authtest"
	"github.com/hestami/hestami/redis"
	"github.com/hestami/hestami/redis/redistest"
)

// open connects to url, closing the client when the test ends.
func open(t *testing.T, url string) *goredis.Client {
	t.Helper()
	c, err := redis.Open(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pollTick is the poll interval of tests that wait for real time to pass.
func pollTick() { time.Sleep(5 * time.Millisecond) }

// TestLimiter runs the Limiter contract on two clients (two replicas) of one
// server per subtest.
func TestLimiter(t *testing.T) {
	t.Parallel()
	authtest.RunLimiter(t, func(t *testing.T) authtest.Limiters {
		url := redistest.New(t)
		return authtest.Limiters{A: redis.NewLimiter(open(t, url)), B: redis.NewLimiter(open(t, url)),
			Now: time.Now, Tick: pollTick, Window: 300 * time.Millisecond, Slack: 150 * time.Millisecond}
	})
}

func TestLockoutStore(t *testing.T) {
	t.Parallel()
	authtest.RunLockoutStore(t, func(t *testing.T) authtest.LockoutStores {
		url := redistest.New(t)
		return authtest.LockoutStores{A: redis.NewLockoutStore(open(t, url)), B: redis.NewLockoutStore(open(t, url)),
			Now: time.Now, Tick: pollTick, TTL: 300 * time.Millisecond}
	})
}

// TestLimiterKeysExpire checks a key goes away with its window: Redis keeps no
// counts nobody needs.
func TestLimiterKeysExpire(t *testing.T) {
	t.Parallel()
	c := open(t, redistest.New(t))
	l := redis.NewLimiter(c)
	if _, err := l.Allow(t.Context(), "signin:ip:192.0.2.1", auth.Limit{Events: 5, Window: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(t.Context(), "*").Result()
	if err != nil || len(keys) != 1 || keys[0] != "hestami:limit:signin:ip:192.0.2.1" {
		t.Fatalf("keys %q, %v", keys, err)
	}
	ttl, err := c.PTTL(t.Context(), keys[0]).Result()
	if err != nil || ttl <= 9*time.Minute || ttl > 10*time.Minute {
		t.Fatalf("TTL %s, %v; want the window, 10m", ttl, err)
	}
	if err := l.Reset(t.Context(), "signin:ip:192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Exists(t.Context(), keys[0]).Result(); n != 0 {
		t.Fatal("Reset left the key")
	}
}

func protLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// memAudit collects audit events.
type memAudit struct {
	mu     sync.Mutex
	events []auth.AuditEvent
}

func (a *memAudit) Audit(_ context.Context, e *auth.AuditEvent) error {
	a.mu.Lock()
	a.events = append(a.events, *e)
	a.mu.Unlock()
	return nil
}

// TestTwoInstances runs two "service instances" — each with its own Redis
// client, Lockout and Throttle — against one Redis: failures and events through
// either count for both.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	clock := func() time.Time { return now }
	audit := &memAudit{}
	type instance struct {
		lockout  *auth.Lockout
		throttle *auth.Throttle
	}
	var inst [2]instance
	for i := range inst {
		c := open(t, url)
		inst[i] = instance{
			lockout: auth.NewLockout(redis.NewLockoutStore(c), auth.LockoutConfig{}, audit.Audit, clock, protLog()),
			throttle: auth.NewThrottle(redis.NewLimiter(c), auth.RateLimits{
				VerifyPerIP: auth.Limit{Events: 4, Window: time.Hour}, VerifyPerAccount: auth.Limit{Events: 6, Window: time.Hour}}, protLog()),
		}
	}
	ctx := t.Context()
	a := auth.LockoutAttempt{UserID: "u1", IP: "203.0.113.10"}
	for i := range 4 {
		if err := inst[i%2].lockout.Fail(ctx, a); err != nil {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	if err := inst[0].lockout.Check(ctx, a); err != nil {
		t.Fatalf("after four failures on two instances: %v", err)
	}
	err := inst[1].lockout.Fail(ctx, a)
	if d, _ := auth.RetryAfter(err); auth.ErrorCode(err) != auth.CodeRateLimited || d != time.Minute {
		t.Fatalf("fifth failure (across instances): %v, want a lock of 1m", err)
	}
	for i := range inst {
		if err := inst[i].lockout.Check(ctx, a); auth.ErrorCode(err) != auth.CodeRateLimited {
			t.Fatalf("instance %d does not see the lock: %v", i+1, err)
		}
	}
	if err := inst[0].lockout.Check(ctx, auth.LockoutAttempt{UserID: "u1", IP: "203.0.113.10", Device: "laptop"}); err != nil {
		t.Fatalf("the remembered device is locked too: %v", err)
	}
	now = now.Add(time.Minute)
	if err := inst[1].lockout.Check(ctx, a); err != nil {
		t.Fatalf("a minute later: %v", err)
	}
	// The next lock, on the other instance, is twice as long: the level is shared.
	for range 4 {
		_ = inst[0].lockout.Fail(ctx, a)
	}
	if d, _ := auth.RetryAfter(inst[1].lockout.Fail(ctx, a)); d != 2*time.Minute {
		t.Fatalf("second lock %s, want 2m", d)
	}
	if err := inst[0].lockout.Succeed(ctx, auth.LockoutAttempt{UserID: "u1", IP: "203.0.113.10", Device: "laptop"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if err := inst[0].lockout.Succeed(ctx, a); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		_ = inst[1].lockout.Fail(ctx, a)
	}
	if d, _ := auth.RetryAfter(inst[0].lockout.Fail(ctx, a)); d != time.Minute {
		t.Fatalf("after a success on the other instance, lock %s, want 1m again", d)
	}

	// Rate limits: per address, then per account, across both.
	cl := auth.Client{IP: "198.51.100.7"}
	for i := range 4 {
		if err := inst[i%2].throttle.Verify(ctx, "u2", cl); err != nil {
			t.Fatalf("verification %d: %v", i+1, err)
		}
	}
	if err := inst[0].throttle.Verify(ctx, "u2", cl); auth.ErrorCode(err) != auth.CodeRateLimited {
		t.Fatalf("fifth verification from one address over two instances: %v", err)
	}
	other := auth.Client{IP: "192.0.2.99"}
	for i := range 2 {
		if err := inst[i%2].throttle.Verify(ctx, "u2", other); err != nil {
			t.Fatalf("verification %d from another address: %v", i+1, err)
		}
	}
	if err := inst[1].throttle.Verify(ctx, "u2", other); auth.ErrorCode(err) != auth.CodeRateLimited {
		t.Fatalf("seventh verification of the account over two instances: %v", err)
	}
}

// TestConcurrentLockout checks that racing failures on two instances lock once.
func TestConcurrentLockout(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	audit := &memAudit{}
	var ls [2]*auth.Lockout
	for i := range ls {
		ls[i] = auth.NewLockout(redis.NewLockoutStore(open(t, url)), auth.LockoutConfig{}, audit.Audit, func() time.Time { return now }, protLog())
	}
	a := auth.LockoutAttempt{UserID: "u1", IP: "203.0.113.10"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	for i := range 30 {
		wg.Go(func() {
			err := ls[i%2].Fail(t.Context(), a)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case auth.ErrorCode(err) == auth.CodeRateLimited:
				refused++
			case err != nil:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	locks := 0
	for _, e := range audit.events {
		if e.Action == "mfa.lockout" {
			locks++
		}
	}
	if refused != 26 || locks != 1 {
		t.Fatalf("30 racing failures on two instances: %d refused (want 26), %d locks (want 1)", refused, locks)
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	const secret = "pw-Zq81-secret"
	srv := redistest.Start(t, redistest.Options{Password: secret})
	if c := open(t, srv.URL); c.Ping(t.Context()).Err() != nil {
		t.Fatal("no answer with the right password")
	}
	wrong := strings.Replace(srv.URL, secret, "not-"+secret+"-either", 1)
	for _, tc := range []struct {
		name, url, want string
	}{
		{"wrong password", wrong, "redis at " + srv.Addr},
		{"no password", "redis://" + srv.Addr + "/0", "redis at " + srv.Addr},
		{"nobody listening", "redis://:" + secret + "@127.0.0.1:1/0?max_retries=-1", "redis at 127.0.0.1:1"},
		{"not a URL", "redis://:" + secret + "@127.0.0.1:port/0", "redis URL: invalid port"},
		{"wrong scheme", "http://:" + secret + "@127.0.0.1:6379/0", "redis URL for 127.0.0.1:6379: redis: invalid URL scheme: http"},
		{"bad database", "redis://:" + secret + "@127.0.0.1:6379/x", "invalid database number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := redis.Open(t.Context(), tc.url, nil)
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestOpenTLS(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{TLS: true})
	if !strings.HasPrefix(srv.URL, "rediss://localhost:") {
		t.Fatalf("URL %s", srv.URL)
	}
	c, err := redis.Open(t.Context(), srv.URL, srv.RootCAs)
	if err != nil {
		t.Fatalf("rediss with the test CA: %v", err)
	}
	defer c.Close()
	l := redis.NewLimiter(c)
	if res, err := l.Allow(t.Context(), "k", auth.Limit{Events: 1, Window: time.Minute}); err != nil || !res.Allowed {
		t.Fatalf("Allow over TLS: %+v, %v", res, err)
	}
	// The system roots do not trust the test CA.
	if c, err := redis.Open(t.Context(), srv.URL, nil); err == nil {
		c.Close()
		t.Fatal("rediss with an untrusted certificate succeeded")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
	// Plain redis:// to a TLS port fails, with a hint.
	plain := strings.Replace(srv.URL, "rediss://", "redis://", 1)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if c, err := redis.Open(ctx, plain, nil); err == nil {
		c.Close()
		t.Fatal("redis:// to a TLS server succeeded")
	} else if !strings.Contains(err.Error(), "rediss://") {
		t.Errorf("plain to TLS: %v, want the rediss:// hint", err)
	}
}

// TestServerGone checks the limiter reports a failing Redis instead of allowing.
func TestServerGone(t *testing.T) {
	t.Parallel()
	// Without retries, so that the test does not wait for them.
	c := open(t, redistest.New(t)+"?max_retries=-1")
	l, s := redis.NewLimiter(c), redis.NewLockoutStore(c)
	if err := c.Do(t.Context(), "SHUTDOWN", "NOSAVE").Err(); err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "closed") {
		t.Logf("shutdown: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := l.Allow(ctx, "k", auth.Limit{Events: 1, Window: time.Minute}); err == nil {
		t.Fatal("Allow without a server succeeded")
	}
	if _, err := s.LockoutState(ctx, "k"); err == nil {
		t.Fatal("LockoutState without a server succeeded")
	}
	if _, err := s.UpdateLockout(ctx, "k", time.Minute, func(*auth.LockoutState) {}); err == nil {
		t.Fatal("UpdateLockout without a server succeeded")
	}
}
