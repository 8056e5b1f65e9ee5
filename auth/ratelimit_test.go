package auth_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/auth/authtest"
)

// protClock is a fake clock for the protection tests, safe for concurrent use.
type protClock struct {
	mu sync.Mutex
	t  time.Time
}

func newProtClock() *protClock {
	return &protClock{t: time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (c *protClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *protClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestMemoryLimiter(t *testing.T) {
	t.Parallel()
	authtest.RunLimiter(t, func(t *testing.T) authtest.Limiters {
		clock := newProtClock()
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

func TestThrottle(t *testing.T) {
	t.Parallel()
	small := auth.RateLimits{
		SignInPerIP: auth.Limit{Events: 3, Window: time.Minute}, SignInPerAccount: auth.Limit{Events: 4, Window: time.Minute},
		VerifyPerIP: auth.Limit{Events: 3, Window: time.Minute}, VerifyPerAccount: auth.Limit{Events: 4, Window: time.Hour},
		SendPerIP: auth.Limit{Events: 2, Window: time.Minute}, SendPerAccount: auth.Limit{Events: 2, Window: time.Minute},
	}
	a := auth.Client{IP: "203.0.113.1"}
	aMapped := auth.Client{IP: "::ffff:203.0.113.1"}
	b := auth.Client{IP: "198.51.100.2"}
	c := auth.Client{IP: "192.0.2.3"}
	v6 := auth.Client{IP: "2001:db8:0:1::1"}
	v6Same := auth.Client{IP: "2001:db8:0:1:8000::2"}
	v6Other := auth.Client{IP: "2001:db8:0:2::1"}
	type call struct {
		do      string // signin, verify, send
		user    string
		from    auth.Client
		refused bool
	}
	calls := func(n int, c call) []call {
		out := make([]call, n)
		for i := range out {
			out[i] = c
		}
		return out
	}
	cat := func(parts ...[]call) []call {
		var out []call
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		calls []call
	}{
		{"per address", cat(calls(3, call{"verify", "u1", a, false}), calls(1, call{"verify", "u2", a, true}), calls(1, call{"verify", "u2", b, false}))},
		{"an IPv4-mapped address is the address", cat(calls(3, call{"signin", "", aMapped, false}), calls(1, call{"signin", "", a, true}))},
		{"an IPv6 /64 is one address", cat(calls(2, call{"signin", "", v6, false}), calls(1, call{"signin", "", v6Same, false}),
			calls(1, call{"signin", "", v6Same, true}), calls(1, call{"signin", "", v6Other, false}))},
		{"per account, across addresses", cat(calls(2, call{"verify", "u1", a, false}), calls(2, call{"verify", "u1", b, false}),
			calls(1, call{"verify", "u1", c, true}), calls(1, call{"verify", "u2", c, false}))},
		{"refused by address: the account's budget is untouched", cat(calls(3, call{"verify", "u9", a, false}), calls(5, call{"verify", "u1", a, true}),
			calls(3, call{"verify", "u1", b, false}), calls(1, call{"verify", "u1", c, false}), calls(1, call{"verify", "u1", c, true}))},
		{"unknown account: only the address counts", cat(calls(3, call{"signin", "", a, false}), calls(1, call{"signin", "", a, true}))},
		{"actions count apart", cat(calls(3, call{"signin", "u1", a, false}), calls(3, call{"verify", "u1", a, false}),
			calls(2, call{"send", "u1", b, false}), calls(1, call{"send", "u1", c, true}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newProtClock()
			th := auth.NewThrottle(auth.NewMemoryLimiter(clock.Now), small, protLog())
			for i, c := range tc.calls {
				var err error
				switch c.do {
				case "signin":
					err = th.SignIn(t.Context(), c.user, c.from)
				case "verify":
					err = th.Verify(t.Context(), c.user, c.from)
				case "send":
					err = th.Send(t.Context(), c.user, c.from)
				}
				if c.refused != (auth.ErrorCode(err) == auth.CodeRateLimited) || (err != nil && !c.refused) {
					t.Fatalf("call %d (%+v): %v, want refused %v", i+1, c, err, c.refused)
				}
			}
		})
	}
}

func TestThrottleMessagesAndDefaults(t *testing.T) {
	t.Parallel()
	clock := newProtClock()
	th := auth.NewThrottle(auth.NewMemoryLimiter(clock.Now), auth.RateLimits{SendPerAccount: auth.Limit{Events: 1, Window: time.Hour}}, protLog())
	if got := th.Limits(); got.SendPerAccount.Events != 1 || got.SignInPerIP != auth.DefaultRateLimits().SignInPerIP {
		t.Fatalf("limits %+v", got)
	}
	cl := auth.Client{IP: "203.0.113.1"}
	if err := th.Send(t.Context(), "u1", cl); err != nil {
		t.Fatal(err)
	}
	clock.Add(20 * time.Minute)
	err := th.Send(t.Context(), "u1", cl)
	if want := "Too many codes sent. Try again in 40 minutes."; auth.ErrorMessage(err) != want {
		t.Fatalf("message %q, want %q", auth.ErrorMessage(err), want)
	}
	if d, ok := auth.RetryAfter(err); !ok || d != 40*time.Minute {
		t.Fatalf("RetryAfter %s %v", d, ok)
	}
	for range 30 {
		if err := th.Verify(t.Context(), "", cl); err != nil {
			t.Fatal(err)
		}
	}
	if err := th.Verify(t.Context(), "", cl); auth.ErrorMessage(err) != "Too many attempts to verify a code. Try again in 10 minutes." {
		t.Fatalf("31st verification: %v", err)
	}
}
