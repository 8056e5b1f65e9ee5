package auth

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"sync"
	"time"
)

// The rate limits' semantics, shared by every Limiter implementation (the
// contract suite in package authtest checks them): a sliding window. An event is
// allowed when fewer than Limit.Events allowed events of the key happened in the
// Window before it; an event that is refused is not counted, so a client that
// keeps knocking gets in again as soon as its oldest event leaves the window.

// ErrBadLimit is returned by Limiter.Allow for a Limit with no events or no window.
var ErrBadLimit = errors.New("rate limit needs at least one event and a positive window")

// CheckLimit validates l for a Limiter implementation.
func CheckLimit(l Limit) error {
	if l.Events <= 0 || l.Window <= 0 {
		return fmt.Errorf("%w (got %d events in %s)", ErrBadLimit, l.Events, l.Window)
	}
	return nil
}

// MemoryLimiter is a Limiter that keeps its counts in this process: right for a
// single replica and for development. Several replicas share counts through
// package redis instead.
//
// Memory is bounded: a key holds at most Limit.Events timestamps, and keys whose
// events all left their window are dropped (swept at most once a minute per
// shard, on use). It is safe for concurrent use.
type MemoryLimiter struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [limiterShards]limiterShard
}

const (
	limiterShards = 32
	// limiterSweep is how often a shard drops keys whose events expired.
	limiterSweep = time.Minute
)

type limiterShard struct {
	mu        sync.Mutex
	keys      map[string]*limiterKey
	lastSweep time.Time
}

// limiterKey is one key's allowed events, oldest first, and the window they were
// last counted in.
type limiterKey struct {
	events []time.Time
	window time.Duration
}

var _ Limiter = (*MemoryLimiter)(nil)

// NewMemoryLimiter returns an empty MemoryLimiter; now is its clock (time.Now in
// production).
func NewMemoryLimiter(now func() time.Time) *MemoryLimiter {
	m := &MemoryLimiter{now: now, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].keys = map[string]*limiterKey{}
	}
	return m
}

func (m *MemoryLimiter) shard(key string) *limiterShard {
	return &m.shards[maphash.String(m.seed, key)%limiterShards]
}

// Allow records one event for key and reports whether it is within l; a refused
// event is not recorded, and RetryAfter says when the next one would be allowed.
// It returns ErrBadLimit (wrapped) for a limit with no events or no window.
func (m *MemoryLimiter) Allow(_ context.Context, key string, l Limit) (LimitResult, error) {
	if err := CheckLimit(l); err != nil {
		return LimitResult{}, err
	}
	now := m.now()
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	k := s.keys[key]
	if k == nil {
		k = &limiterKey{}
		s.keys[key] = k
	}
	k.window = l.Window
	k.expire(now)
	if n := len(k.events); n >= l.Events {
		// The event that must leave the window for the count to drop below
		// l.Events.
		retry := k.events[n-l.Events].Add(l.Window).Sub(now)
		return LimitResult{RetryAfter: max(retry, time.Nanosecond)}, nil
	}
	k.events = append(k.events, now)
	if extra := len(k.events) - l.Events; extra > 0 {
		k.events = append(k.events[:0], k.events[extra:]...)
	}
	return LimitResult{Allowed: true}, nil
}

// Reset forgets key's events.
func (m *MemoryLimiter) Reset(_ context.Context, key string) error {
	s := m.shard(key)
	s.mu.Lock()
	delete(s.keys, key)
	s.mu.Unlock()
	return nil
}

// keyCount is how many keys the limiter holds (for tests of the sweep).
func (m *MemoryLimiter) keyCount() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.keys)
		s.mu.Unlock()
	}
	return n
}

// expire drops the events that left the window at now.
func (k *limiterKey) expire(now time.Time) {
	i := 0
	for i < len(k.events) && !now.Before(k.events[i].Add(k.window)) {
		i++
	}
	if i > 0 {
		k.events = append(k.events[:0], k.events[i:]...)
	}
}

// sweep drops the shard's keys with no events left in their window, at most once
// per limiterSweep; s.mu is held.
func (s *limiterShard) sweep(now time.Time) {
	if now.Sub(s.lastSweep) < limiterSweep && !now.Before(s.lastSweep) {
		return
	}
	s.lastSweep = now
	for key, k := range s.keys {
		if n := len(k.events); n == 0 || !now.Before(k.events[n-1].Add(k.window)) {
			delete(s.keys, key)
		}
	}
}

// RetryAfterError carries how long a refused client should wait, for the HTTP
// layer's Retry-After header. Rate-limit and lockout errors (*Error with
// CodeRateLimited) wrap one; find it with RetryAfter.
type RetryAfterError struct {
	After time.Duration
}

func (e *RetryAfterError) Error() string { return "retry after " + e.After.String() }

// RetryAfter returns how long the client should wait before trying again, if err
// says so.
func RetryAfter(err error) (time.Duration, bool) {
	var r *RetryAfterError
	if errors.As(err, &r) {
		return r.After, true
	}
	return 0, false
}

// Rate-limit error messages say when to try again, in words.
func waitWords(d time.Duration) string {
	switch {
	case d <= time.Second:
		return "a second"
	case d < time.Minute:
		return fmt.Sprintf("%d seconds", int(math.Ceil(d.Seconds())))
	case d <= time.Minute:
		return "a minute"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes", int(math.Ceil(d.Minutes())))
	case d <= time.Hour:
		return "an hour"
	}
	return fmt.Sprintf("%d hours", int(math.Ceil(d.Hours())))
}

// RateLimitedError is the *Error for a refused event: CodeRateLimited, the
// message "<what> Try again in <wait>.", wrapping a RetryAfterError.
func RateLimitedError(what string, wait time.Duration) *Error {
	return Errorf(CodeRateLimited, "%s Try again in %s.", what, waitWords(wait)).WithCause(&RetryAfterError{After: wait})
}

// RateLimits are the sign-in service's rate limits, per client address and per
// account, on sign-ins, second-factor verifications and codes sent. The
// per-account limits stop guessing spread over many addresses, which Lockout
// (per address) does not see.
type RateLimits struct {
	SignInPerIP      Limit
	SignInPerAccount Limit
	VerifyPerIP      Limit
	VerifyPerAccount Limit
	SendPerIP        Limit
	SendPerAccount   Limit
}

// DefaultRateLimits returns the defaults: sign-ins 30 per address and 20 per
// account in 10 minutes; verifications 30 per address in 10 minutes and 30 per
// account in an hour; codes sent 10 per address and 5 per account in 15 minutes.
func DefaultRateLimits() RateLimits {
	return RateLimits{
		SignInPerIP:      Limit{Events: 30, Window: 10 * time.Minute},
		SignInPerAccount: Limit{Events: 20, Window: 10 * time.Minute},
		VerifyPerIP:      Limit{Events: 30, Window: 10 * time.Minute},
		VerifyPerAccount: Limit{Events: 30, Window: time.Hour},
		SendPerIP:        Limit{Events: 10, Window: 15 * time.Minute},
		SendPerAccount:   Limit{Events: 5, Window: 15 * time.Minute},
	}
}

func (r RateLimits) withDefaults() RateLimits {
	d := DefaultRateLimits()
	for _, p := range []struct{ l, d *Limit }{
		{&r.SignInPerIP, &d.SignInPerIP}, {&r.SignInPerAccount, &d.SignInPerAccount},
		{&r.VerifyPerIP, &d.VerifyPerIP}, {&r.VerifyPerAccount, &d.VerifyPerAccount},
		{&r.SendPerIP, &d.SendPerIP}, {&r.SendPerAccount, &d.SendPerAccount},
	} {
		if p.l.Events <= 0 || p.l.Window <= 0 {
			*p.l = *p.d
		}
	}
	return r
}

// Throttle applies RateLimits through a Limiter (MemoryLimiter for one replica,
// package redis for several). Its methods count one event per call and return
// nil, or an *Error with CodeRateLimited saying when to try again (RetryAfter(err)
// tells how long). They do not audit: the caller audits the refused action.
type Throttle struct {
	lim    Limiter
	limits RateLimits
	log    *slog.Logger
}

// NewThrottle returns a Throttle; zero limits take DefaultRateLimits' values.
func NewThrottle(lim Limiter, limits RateLimits, logger *slog.Logger) *Throttle {
	return &Throttle{lim: lim, limits: limits.withDefaults(), log: logger}
}

// Limits returns the throttle's limits, defaults filled in.
func (t *Throttle) Limits() RateLimits { return t.limits }

// SignIn counts a sign-in attempt from c; userID is empty while the account is
// not known yet (then only the address counts).
func (t *Throttle) SignIn(ctx context.Context, userID string, c Client) error {
	return t.check(ctx, "signin", userID, c, t.limits.SignInPerIP, t.limits.SignInPerAccount, "Too many sign-in attempts.")
}

// Verify counts a second-factor verification (a code, a backup code, a passkey
// assertion) of userID from c.
func (t *Throttle) Verify(ctx context.Context, userID string, c Client) error {
	return t.check(ctx, "verify", userID, c, t.limits.VerifyPerIP, t.limits.VerifyPerAccount, "Too many attempts to verify a code.")
}

// Send counts a code sent (by email or SMS) to userID at c's request.
func (t *Throttle) Send(ctx context.Context, userID string, c Client) error {
	return t.check(ctx, "send", userID, c, t.limits.SendPerIP, t.limits.SendPerAccount, "Too many codes sent.")
}

// check counts the address first; an event refused there does not count
// against the account.
func (t *Throttle) check(ctx context.Context, what, userID string, c Client, perIP, perAccount Limit, msg string) error {
	keys := []struct {
		key string
		l   Limit
	}{{what + ":ip:" + clientKey(c.IP), perIP}}
	if userID != "" {
		keys = append(keys, struct {
			key string
			l   Limit
		}{what + ":user:" + userID, perAccount})
	}
	for _, k := range keys {
		res, err := t.lim.Allow(ctx, k.key, k.l)
		if err != nil {
			return fmt.Errorf("rate limit %s: %w", what, err)
		}
		if !res.Allowed {
			t.log.Warn("rate limited", "key", k.key, "ip", c.IP, "retry_after", res.RetryAfter)
			return RateLimitedError(msg, res.RetryAfter)
		}
	}
	return nil
}
