package daemon_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/daemon"
	"github.com/hestami/hestami/file"
)

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func fileStorage(t *testing.T) backup.Storage {
	t.Helper()
	s, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func leaser(st backup.Storage, host string, clk *clock) *daemon.Leaser {
	return &daemon.Leaser{Storage: st, Host: host, PID: 1, TTL: 10 * time.Minute, Heartbeat: time.Minute, Settle: -1, Now: clk.Now}
}

// TestLeaseCrashedOwnerTakenOver: a lease whose holder crashed (stopped renewing) is
// refused to others until it expires, then taken over; the old holder, should it come
// back, finds it lost and cannot release the new holder's lease.
func TestLeaseCrashedOwnerTakenOver(t *testing.T) {
	ctx := t.Context()
	st := fileStorage(t)
	clk := newClock(time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC))
	a, b := leaser(st, "db1", clk), leaser(st, "db2", clk)

	la, err := a.Acquire(ctx, "physical")
	if err != nil {
		t.Fatalf("first Acquire: %v", err)
	}
	clk.Add(4 * time.Minute)
	if err := la.Renew(ctx); err != nil { // renewed once, then a crashes
		t.Fatalf("Renew: %v", err)
	}
	clk.Add(9 * time.Minute) // 1 minute before the renewed lease expires
	_, err = b.Acquire(ctx, "physical")
	var held *daemon.LeaseHeldError
	if !errors.As(err, &held) || held.Holder.Host != "db1" {
		t.Fatalf("Acquire of a live lease = %v, want a LeaseHeldError naming db1", err)
	}
	if !errors.Is(err, daemon.ErrLeaseHeld) {
		t.Errorf("errors.Is(%v, ErrLeaseHeld) = false", err)
	}
	if _, err := b.Acquire(ctx, "logical"); err != nil {
		t.Fatalf("another kind's lease is independent: %v", err)
	}

	clk.Add(2 * time.Minute) // expired
	lb, err := b.Acquire(ctx, "physical")
	if err != nil {
		t.Fatalf("Acquire of an expired lease: %v", err)
	}
	if h, err := b.Holder(ctx, "physical"); err != nil || h == nil || h.Host != "db2" {
		t.Fatalf("Holder = %+v, %v; want db2", h, err)
	}
	if err := la.Renew(ctx); !errors.Is(err, daemon.ErrLeaseLost) {
		t.Fatalf("the crashed holder's Renew = %v, want ErrLeaseLost", err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatalf("the old holder's Release: %v", err)
	}
	if h, _ := b.Holder(ctx, "physical"); h == nil || h.Host != "db2" {
		t.Fatalf("the old holder's Release removed the new holder's lease: %+v", h)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ := b.Holder(ctx, "physical"); h != nil {
		t.Fatalf("lease still held after Release: %+v", h)
	}
}

// hookStorage calls hooks around Put.
type hookStorage struct {
	backup.Storage
	beforePut, afterPut func(key string, ifAbsent bool)
}

func (h *hookStorage) Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	if h.beforePut != nil {
		h.beforePut(key, ifAbsent)
	}
	err := h.Storage.Put(ctx, key, r, ifAbsent)
	if h.afterPut != nil {
		h.afterPut(key, ifAbsent)
	}
	return err
}

// TestLeaseTakeoverRace: two daemons both find a lease expired and take it over, one
// writing just after the other; the one whose record was overwritten sees the other's
// token when it reads back after its settle time and backs off, so only one runs the
// job.
func TestLeaseTakeoverRace(t *testing.T) {
	ctx := t.Context()
	st := fileStorage(t)
	clk := newClock(time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC))
	if _, err := leaser(st, "db0", clk).Acquire(ctx, "physical"); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour) // db0 crashed: its lease expired

	bReady, goB, bWritten := make(chan struct{}), make(chan struct{}), make(chan struct{})
	b := leaser(&hookStorage{Storage: st,
		beforePut: func(key string, ifAbsent bool) {
			if !ifAbsent { // b has read the expired lease and is about to take it over
				close(bReady)
				<-goB
			}
		},
		afterPut: func(key string, ifAbsent bool) {
			if !ifAbsent {
				close(bWritten)
			}
		},
	}, "db2", clk)
	b.Settle = time.Second
	b.Wait = func(context.Context, time.Duration) error { return nil }
	type result struct {
		l   *daemon.Lease
		err error
	}
	bDone := make(chan result, 1)
	go func() {
		l, err := b.Acquire(ctx, "physical")
		bDone <- result{l, err}
	}()
	<-bReady

	a := leaser(st, "db1", clk)
	a.Settle = time.Second
	a.Wait = func(context.Context, time.Duration) error {
		// a has written its takeover; b, which read the lease before, writes now.
		close(goB)
		<-bWritten
		return nil
	}
	_, errA := a.Acquire(ctx, "physical")
	rb := <-bDone
	if rb.err != nil {
		t.Fatalf("the last writer's takeover failed: %v", rb.err)
	}
	var held *daemon.LeaseHeldError
	if !errors.As(errA, &held) || held.Holder.Host != "db2" {
		t.Fatalf("the overwritten takeover = %v, want a LeaseHeldError naming db2", errA)
	}
	if h, _ := a.Holder(ctx, "physical"); h == nil || h.Token != rb.l.Record().Token {
		t.Fatalf("holder = %+v, want db2's lease", h)
	}
}

// TestLeaseRenewAndRelease: a held lease renewed before its expiry stays held.
func TestLeaseRenewAndRelease(t *testing.T) {
	ctx := t.Context()
	st := fileStorage(t)
	clk := newClock(time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC))
	a, b := leaser(st, "db1", clk), leaser(st, "db2", clk)
	la, err := a.Acquire(ctx, "drill-physical")
	if err != nil {
		t.Fatal(err)
	}
	for range 30 { // half an hour of heartbeats, three TTLs
		clk.Add(time.Minute)
		if err := la.Renew(ctx); err != nil {
			t.Fatalf("Renew: %v", err)
		}
	}
	if _, err := b.Acquire(ctx, "drill-physical"); !errors.Is(err, daemon.ErrLeaseHeld) {
		t.Fatalf("Acquire of a renewed lease = %v, want ErrLeaseHeld", err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctx, "drill-physical"); err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
}
