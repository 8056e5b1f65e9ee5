package auth

import (
	"fmt"
	"testing"
	"time"
)

// TestMemoryLimiterDropsExpiredKeys checks memory stays bounded: keys whose
// events all left their window go away, keys still counting stay.
func TestMemoryLimiterDropsExpiredKeys(t *testing.T) {
	t.Parallel()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	m := NewMemoryLimiter(func() time.Time { return now })
	ctx := t.Context()
	short, long := Limit{Events: 5, Window: time.Minute}, Limit{Events: 5, Window: time.Hour}
	for i := range 1000 {
		if _, err := m.Allow(ctx, fmt.Sprintf("ip:%d", i), short); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		for range 20 { // more than Events: a key never holds more than Events times
			if _, err := m.Allow(ctx, fmt.Sprintf("user:%d", i), long); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := m.keyCount(); n != 1010 {
		t.Fatalf("%d keys, want 1010", n)
	}
	for i := range m.shards {
		for key, k := range m.shards[i].keys {
			if len(k.events) > 5 {
				t.Fatalf("key %s holds %d events, more than the limit's 5", key, len(k.events))
			}
		}
	}
	// Two minutes on, every shard that is used sweeps: touch each one.
	now = now.Add(2 * time.Minute)
	for i := range 1000 {
		if _, err := m.Allow(ctx, fmt.Sprintf("other:%d", i), long); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.keyCount(); n != 1010 {
		t.Fatalf("after the short window: %d keys, want the 10 long ones and the 1000 new ones", n)
	}
	for i := range 10 {
		if _, ok := m.shard(fmt.Sprintf("user:%d", i)).keys[fmt.Sprintf("user:%d", i)]; !ok {
			t.Fatalf("user:%d dropped while its events count", i)
		}
	}
}

// TestMemoryLimiterClockBackwards checks a clock stepping back neither panics nor
// frees a key early.
func TestMemoryLimiterClockBackwards(t *testing.T) {
	t.Parallel()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	m := NewMemoryLimiter(func() time.Time { return now })
	lim := Limit{Events: 1, Window: time.Minute}
	if res, _ := m.Allow(t.Context(), "k", lim); !res.Allowed {
		t.Fatal("first event refused")
	}
	now = now.Add(-time.Hour)
	res, err := m.Allow(t.Context(), "k", lim)
	if err != nil || res.Allowed {
		t.Fatalf("after the clock stepped back: %+v, %v; want refused", res, err)
	}
}
