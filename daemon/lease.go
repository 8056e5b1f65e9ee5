package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hestami/hestami/backup"
)

// leasePrefix holds the daemon's leases in the repository: locks/<kind>.json, one per
// kind of job, so that of all the daemons pointed at one repository only one runs a
// kind of job at a time.
const leasePrefix = "locks/"

// Lease defaults.
const (
	// DefaultLeaseTTL is how long a lease lasts without a heartbeat: a daemon that
	// crashed holds its leases this long at most.
	DefaultLeaseTTL = 10 * time.Minute
	// DefaultHeartbeat is how often a running job renews its lease; it must be much
	// shorter than the TTL, so that a slow storage request never lets a lease lapse.
	DefaultHeartbeat = time.Minute
	// DefaultTakeoverSettle is how long a daemon that took over an expired lease
	// waits before it reads the lease back to see whether another daemon took it
	// over at the same moment.
	DefaultTakeoverSettle = 2 * time.Second
)

// ErrLeaseHeld is matched (errors.Is) by *LeaseHeldError.
var ErrLeaseHeld = errors.New("lease held by another daemon")

// ErrLeaseLost means a lease this daemon held was taken over by another daemon.
var ErrLeaseLost = errors.New("lease lost to another daemon")

// LeaseHeldError says who holds a lease another daemon wanted.
type LeaseHeldError struct {
	Kind   string
	Holder LeaseRecord
}

func (e *LeaseHeldError) Error() string {
	h := e.Holder
	return fmt.Sprintf("%s is running on %s (pid %d) since %s; its lease expires at %s unless renewed",
		e.Kind, h.Host, h.PID, h.Acquired.UTC().Format(time.RFC3339), h.Expires.UTC().Format(time.RFC3339))
}

// Is lets errors.Is(err, ErrLeaseHeld) match.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// LeaseRecord is the content of a lease object.
type LeaseRecord struct {
	Kind     string    `json:"kind"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Token    string    `json:"token"`
	Acquired time.Time `json:"acquired"`
	Renewed  time.Time `json:"renewed"`
	Expires  time.Time `json:"expires"`
}

// Leaser takes and keeps leases in a repository's storage.
//
// A lease is created with a create-if-absent write, which object stores and the file
// storage do atomically, so of daemons racing for a free lease exactly one wins.
// Renewing and taking over are not atomic: object stores offer no compare-and-swap,
// so they read the lease, compare its token with their own and write. Two rules keep
// that safe enough for jobs that run once a day:
//
//   - a lease is renewed every Heartbeat and lasts TTL; with TTL much longer than
//     Heartbeat (10 min and 1 min by default) a live holder's lease never expires,
//     so only a crashed (or partitioned) daemon's lease is ever taken over;
//   - a daemon that takes over an expired lease writes its own record, waits Settle
//     and reads the lease back: if another daemon took it over at the same moment
//     and wrote last, the token is not its own and it backs off. Two takeovers are
//     only both believed if one daemon's read and write are further apart than
//     Settle, which is why Settle must be much longer than a storage request.
//
// A holder also reads the lease before each renewal and gives the job up
// (ErrLeaseLost) if its token is gone, so two holders overlap by at most one
// Heartbeat even when the rules above are broken (a daemon paused for longer than
// TTL).
type Leaser struct {
	Storage backup.Storage
	// Host and PID identify this daemon in lease records.
	Host string
	PID  int
	// TTL, Heartbeat and Settle default to DefaultLeaseTTL, DefaultHeartbeat and
	// DefaultTakeoverSettle.
	TTL       time.Duration
	Heartbeat time.Duration
	Settle    time.Duration
	// Now is the clock leases expire by; nil: time.Now.
	Now func() time.Time
	// Wait waits d (for the takeover settle); nil: a timer.
	Wait func(ctx context.Context, d time.Duration) error
}

// Lease is a lease this daemon holds.
type Lease struct {
	l   *Leaser
	rec LeaseRecord
}

// Record returns the lease as last written.
func (l *Lease) Record() LeaseRecord { return l.rec }

func leaseKey(kind string) string { return leasePrefix + kind + ".json" }

func (l *Leaser) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Leaser) ttl() time.Duration {
	if l.TTL > 0 {
		return l.TTL
	}
	return DefaultLeaseTTL
}

// HeartbeatInterval returns how often a held lease must be renewed.
func (l *Leaser) HeartbeatInterval() time.Duration {
	if l.Heartbeat > 0 {
		return l.Heartbeat
	}
	return DefaultHeartbeat
}

func (l *Leaser) settle() time.Duration {
	if l.Settle > 0 {
		return l.Settle
	}
	if l.Settle < 0 {
		return 0
	}
	return DefaultTakeoverSettle
}

func (l *Leaser) wait(ctx context.Context, d time.Duration) error {
	if l.Wait != nil {
		return l.Wait(ctx, d)
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// Acquire takes the lease of kind. It returns a *LeaseHeldError when another daemon
// holds it and it has not expired, and other errors when the storage fails.
func (l *Leaser) Acquire(ctx context.Context, kind string) (*Lease, error) {
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	now := l.now()
	rec := LeaseRecord{Kind: kind, Host: l.Host, PID: l.PID, Token: token, Acquired: now.UTC(), Renewed: now.UTC(), Expires: now.Add(l.ttl()).UTC()}
	key := leaseKey(kind)
	err = l.put(ctx, key, rec, true)
	if err == nil {
		return &Lease{l: l, rec: rec}, nil
	}
	if !errors.Is(err, backup.ErrExist) {
		return nil, fmt.Errorf("take lease %s: %w", key, err)
	}
	cur, err := l.read(ctx, key)
	if errors.Is(err, backup.ErrNotFound) {
		// Released between our write and our read: try once more.
		if err := l.put(ctx, key, rec, true); err == nil {
			return &Lease{l: l, rec: rec}, nil
		} else if !errors.Is(err, backup.ErrExist) {
			return nil, fmt.Errorf("take lease %s: %w", key, err)
		}
		if cur, err = l.read(ctx, key); err != nil {
			return nil, fmt.Errorf("take lease %s: %w", key, err)
		}
	} else if err != nil && !errors.Is(err, errBadLease) {
		return nil, fmt.Errorf("take lease %s: %w", key, err)
	}
	// An unreadable lease (a torn or foreign object) is treated as expired: leaving it
	// would stop the job for good.
	if err == nil && now.Before(cur.Expires) {
		return nil, &LeaseHeldError{Kind: kind, Holder: cur}
	}
	// Expired: its holder crashed. Take it over, then check that nobody else did.
	if err := l.put(ctx, key, rec, false); err != nil {
		return nil, fmt.Errorf("take over expired lease %s: %w", key, err)
	}
	if err := l.wait(ctx, l.settle()); err != nil {
		return nil, err
	}
	back, err := l.read(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("take over expired lease %s: read back: %w", key, err)
	}
	if back.Token != token {
		return nil, &LeaseHeldError{Kind: kind, Holder: back}
	}
	return &Lease{l: l, rec: rec}, nil
}

// Renew extends the lease by the TTL. It returns an error wrapping ErrLeaseLost when
// the lease is no longer this daemon's (it expired and was taken over).
func (ls *Lease) Renew(ctx context.Context) error {
	l := ls.l
	key := leaseKey(ls.rec.Kind)
	cur, err := l.read(ctx, key)
	if errors.Is(err, backup.ErrNotFound) || errors.Is(err, errBadLease) || (err == nil && cur.Token != ls.rec.Token) {
		holder := "nobody"
		if err == nil {
			holder = fmt.Sprintf("%s (pid %d)", cur.Host, cur.PID)
		}
		return fmt.Errorf("%w: lease %s is now held by %s", ErrLeaseLost, key, holder)
	}
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", key, err)
	}
	rec := ls.rec
	now := l.now()
	rec.Renewed, rec.Expires = now.UTC(), now.Add(l.ttl()).UTC()
	if err := l.put(ctx, key, rec, false); err != nil {
		return fmt.Errorf("renew lease %s: %w", key, err)
	}
	ls.rec = rec
	return nil
}

// Release gives the lease up, if it is still this daemon's.
func (ls *Lease) Release(ctx context.Context) error {
	l := ls.l
	key := leaseKey(ls.rec.Kind)
	cur, err := l.read(ctx, key)
	if errors.Is(err, backup.ErrNotFound) {
		return nil
	}
	if err != nil && !errors.Is(err, errBadLease) {
		return fmt.Errorf("release lease %s: %w", key, err)
	}
	if err == nil && cur.Token != ls.rec.Token {
		return nil // taken over: not ours to delete
	}
	if err := l.Storage.Delete(ctx, key); err != nil {
		return fmt.Errorf("release lease %s: %w", key, err)
	}
	return nil
}

// Holder returns the current record of the lease of kind, or nil when nobody holds it.
func (l *Leaser) Holder(ctx context.Context, kind string) (*LeaseRecord, error) {
	rec, err := l.read(ctx, leaseKey(kind))
	if errors.Is(err, backup.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

var errBadLease = errors.New("unreadable lease")

func (l *Leaser) read(ctx context.Context, key string) (LeaseRecord, error) {
	rc, err := l.Storage.Open(ctx, key)
	if err != nil {
		return LeaseRecord{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err != nil {
		return LeaseRecord{}, err
	}
	var rec LeaseRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.Token == "" {
		return LeaseRecord{}, fmt.Errorf("%w %s", errBadLease, key)
	}
	return rec, nil
}

func (l *Leaser) put(ctx context.Context, key string, rec LeaseRecord, ifAbsent bool) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return l.Storage.Put(ctx, key, bytes.NewReader(append(b, '\n')), ifAbsent)
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("lease token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
