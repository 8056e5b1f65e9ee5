package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// LockoutConfig is how Lockout counts failures and locks.
type LockoutConfig struct {
	// MaxFailures failed attempts within Window lock the key (default 5 in 15
	// minutes).
	MaxFailures int
	Window      time.Duration
	// BaseLock is the first lock's length (default 1 minute); each further lock
	// doubles it, up to MaxLock (default 1 hour).
	BaseLock time.Duration
	MaxLock  time.Duration
	// Memory is how long after its last lock ended a key remembers how many
	// locks it had (default 24 hours): after that, the next lock is BaseLock
	// again.
	Memory time.Duration
}

// DefaultLockoutConfig returns the defaults.
func DefaultLockoutConfig() LockoutConfig {
	return LockoutConfig{MaxFailures: 5, Window: 15 * time.Minute, BaseLock: time.Minute, MaxLock: time.Hour, Memory: 24 * time.Hour}
}

func (c LockoutConfig) withDefaults() LockoutConfig {
	d := DefaultLockoutConfig()
	if c.MaxFailures <= 0 {
		c.MaxFailures = d.MaxFailures
	}
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.BaseLock <= 0 {
		c.BaseLock = d.BaseLock
	}
	if c.MaxLock <= 0 {
		c.MaxLock = d.MaxLock
	}
	c.MaxLock = max(c.MaxLock, c.BaseLock)
	if c.Memory <= 0 {
		c.Memory = d.Memory
	}
	return c
}

// lockFor is the length of lock number n (0 for the first).
func (c LockoutConfig) lockFor(n int) time.Duration {
	d := c.BaseLock
	for range n {
		if d >= c.MaxLock {
			break
		}
		d *= 2
	}
	return min(d, c.MaxLock)
}

// LockoutState is one key's failures and locks.
type LockoutState struct {
	// Failures are the failed attempts inside the window, oldest first.
	Failures []time.Time `json:"failures,omitempty"`
	// Locks counts the locks so far (the next lasts BaseLock·2^Locks).
	Locks int `json:"locks,omitempty"`
	// LockedUntil is when the current (or last) lock ends.
	LockedUntil time.Time `json:"locked_until,omitzero"`
}

// IsZero reports whether s holds nothing worth keeping.
func (s LockoutState) IsZero() bool {
	return len(s.Failures) == 0 && s.Locks == 0 && s.LockedUntil.IsZero()
}

// LockoutStore keeps Lockout's state per key, shared by the replicas that share
// the store. MemoryLockoutStore keeps it in one process; package redis shares it.
type LockoutStore interface {
	// LockoutState returns key's state, the zero state if there is none.
	LockoutState(ctx context.Context, key string) (LockoutState, error)
	// UpdateLockout calls fn with key's state (the zero state if none) and
	// stores what fn leaves, atomically: concurrent updates of one key never
	// overwrite each other (fn may run more than once). A zero state deletes
	// the key; a stored state is forgotten ttl after the update. It returns
	// the stored state.
	UpdateLockout(ctx context.Context, key string, ttl time.Duration, fn func(*LockoutState)) (LockoutState, error)
}

// LockoutAttempt says whose attempt it is and from where.
type LockoutAttempt struct {
	UserID string
	// IP is the client's address. Unknown clients are locked per (user,
	// address; an IPv6 /64 counts as one address).
	IP string
	// Device is the id of the remembered ("trusted") device the attempt comes
	// from, if any: it has a budget of its own, so that failures elsewhere
	// (someone guessing from the same network) never lock the owner's own
	// browser out.
	Device string
}

func (a LockoutAttempt) key() string {
	if a.Device != "" {
		return "lockout:" + a.UserID + ":device:" + a.Device
	}
	return "lockout:" + a.UserID + ":ip:" + clientKey(a.IP)
}

// clientKey is the form an address is counted in: an IPv4 address (also when
// written IPv4-mapped), an IPv6 /64 (one subscriber's network), or "unknown".
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "unknown"
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// Lockout stops guessing of second factors: after MaxFailures failed attempts
// within Window, further attempts are refused for a while — BaseLock, doubling
// with each further lock up to MaxLock — and a success clears it all.
//
// It is built so that it cannot lock the real owner out for good: the lock
// applies per (user, client address), so a guesser elsewhere never locks the
// owner's network; a remembered device counts on its own; and no lock lasts
// longer than MaxLock. Guessing from many addresses is the job of the per-account
// rate limits (Throttle) and the failure-burst signal (Risk).
type Lockout struct {
	store LockoutStore
	cfg   LockoutConfig
	audit func(context.Context, *AuditEvent) error
	now   func() time.Time
	log   *slog.Logger
}

// NewLockout returns a Lockout over store; zero fields of cfg take
// DefaultLockoutConfig's values. audit is (*Service).Audit.
func NewLockout(store LockoutStore, cfg LockoutConfig, audit func(context.Context, *AuditEvent) error, now func() time.Time, logger *slog.Logger) *Lockout {
	return &Lockout{store: store, cfg: cfg.withDefaults(), audit: audit, now: now, log: logger}
}

// Config returns the lockout's configuration, defaults filled in.
func (l *Lockout) Config() LockoutConfig { return l.cfg }

// lockedError is the refusal while a lock lasts until until.
func lockedError(until, now time.Time) *Error {
	return RateLimitedError("Too many wrong codes from here, so we paused checking them.", until.Sub(now))
}

// Check returns nil if a may be verified now, or the refusal while a lock lasts:
// an *Error with CodeRateLimited saying when to try again (RetryAfter(err) tells
// how long). Call it before checking a code, then Fail or Succeed with the
// result. Check reserves nothing: attempts sent at once all pass it before the
// first Fail lands, so pair it with Throttle.Verify, which counts each attempt
// atomically before it is checked.
func (l *Lockout) Check(ctx context.Context, a LockoutAttempt) error {
	st, err := l.store.LockoutState(ctx, a.key())
	if err != nil {
		return fmt.Errorf("check lockout: %w", err)
	}
	if now := l.now(); now.Before(st.LockedUntil) {
		return lockedError(st.LockedUntil, now)
	}
	return nil
}

// Fail records a failed attempt. If it locks the key, it audits "mfa.lockout"
// (with the lock's length) and returns the refusal (an *Error with
// CodeRateLimited); otherwise nil. A failure while a lock lasts (a request that
// raced the lock) only returns the refusal: it neither counts nor lengthens it.
func (l *Lockout) Fail(ctx context.Context, a LockoutAttempt) error {
	now := l.now()
	var locked, already bool
	st, err := l.store.UpdateLockout(ctx, a.key(), l.cfg.MaxLock+l.cfg.Memory+l.cfg.Window, func(s *LockoutState) {
		locked, already = l.cfg.fail(s, now)
	})
	if err != nil {
		return fmt.Errorf("record failed attempt: %w", err)
	}
	if !locked && !already {
		return nil
	}
	if already {
		return lockedError(st.LockedUntil, now)
	}
	d := st.LockedUntil.Sub(now)
	l.log.Warn("second-factor lockout", "user", a.UserID, "ip", a.IP, "remembered_device", a.Device != "", "lock", d, "locks", st.Locks)
	where := "address " + clientKey(a.IP)
	if a.Device != "" {
		where = "remembered device"
	}
	ev := &AuditEvent{Action: "mfa.lockout", Outcome: OutcomeFailure, ActorID: a.UserID, IP: a.IP,
		Detail: fmt.Sprintf("%d failures within %s from %s: locked for %s (lock %d)", l.cfg.MaxFailures, l.cfg.Window, where, d, st.Locks)}
	if err := l.audit(ctx, ev); err != nil {
		return fmt.Errorf("record failed attempt: %w", err)
	}
	return lockedError(st.LockedUntil, now)
}

// fail applies one failure at now to s and reports whether it locked s now, or
// s was locked already.
func (c LockoutConfig) fail(s *LockoutState, now time.Time) (locked, already bool) {
	if now.Before(s.LockedUntil) {
		return false, true
	}
	if !s.LockedUntil.IsZero() && now.Sub(s.LockedUntil) >= c.Memory {
		s.Locks, s.LockedUntil = 0, time.Time{}
	}
	kept := s.Failures[:0]
	for _, f := range s.Failures {
		if now.Sub(f) < c.Window && !f.After(now) {
			kept = append(kept, f)
		}
	}
	s.Failures = append(kept, now)
	if len(s.Failures) < c.MaxFailures {
		return false, false
	}
	s.LockedUntil = now.Add(c.lockFor(s.Locks))
	s.Locks++
	s.Failures = nil
	return true, false
}

// Succeed clears a's failures and locks (a successful verification).
func (l *Lockout) Succeed(ctx context.Context, a LockoutAttempt) error {
	if _, err := l.store.UpdateLockout(ctx, a.key(), time.Minute, func(s *LockoutState) { *s = LockoutState{} }); err != nil {
		return fmt.Errorf("clear lockout: %w", err)
	}
	return nil
}

// MemoryLockoutStore is a LockoutStore in this process (one replica,
// development). Expired keys are dropped as it is used; safe for concurrent use.
type MemoryLockoutStore struct {
	now       func() time.Time
	mu        sync.Mutex
	keys      map[string]memoryLockout
	lastSweep time.Time
}

type memoryLockout struct {
	state   LockoutState
	expires time.Time
}

var _ LockoutStore = (*MemoryLockoutStore)(nil)

// NewMemoryLockoutStore returns an empty store; now is its clock for expiry.
func NewMemoryLockoutStore(now func() time.Time) *MemoryLockoutStore {
	return &MemoryLockoutStore{now: now, keys: map[string]memoryLockout{}}
}

// LockoutState returns key's state, the zero state if there is none.
func (m *MemoryLockoutStore) LockoutState(_ context.Context, key string) (LockoutState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.keys[key]
	if !ok || !m.now().Before(e.expires) {
		return LockoutState{}, nil
	}
	return copyLockout(e.state), nil
}

// UpdateLockout applies fn to key's state under the store's lock.
func (m *MemoryLockoutStore) UpdateLockout(_ context.Context, key string, ttl time.Duration, fn func(*LockoutState)) (LockoutState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if now.Sub(m.lastSweep) >= time.Minute || now.Before(m.lastSweep) {
		m.lastSweep = now
		for k, e := range m.keys {
			if !now.Before(e.expires) {
				delete(m.keys, k)
			}
		}
	}
	var st LockoutState
	if e, ok := m.keys[key]; ok && now.Before(e.expires) {
		st = copyLockout(e.state)
	}
	fn(&st)
	if st.IsZero() {
		delete(m.keys, key)
		return st, nil
	}
	m.keys[key] = memoryLockout{state: copyLockout(st), expires: now.Add(ttl)}
	return st, nil
}

func copyLockout(s LockoutState) LockoutState {
	s.Failures = append([]time.Time(nil), s.Failures...)
	return s
}
