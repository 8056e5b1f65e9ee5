package alert_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/alert/alerttest"
)

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 6, 1, 3, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newManager(t *testing.T, clk *clock, store alert.StateStore, log *slog.Logger, senders ...alert.Sender) *alert.Manager {
	t.Helper()
	m, err := alert.NewManager(t.Context(), alert.Options{
		Senders: senders, Store: store, Now: clk.Now, Logger: log, RepeatInterval: 4 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func problem(key string, sev alert.Severity) alert.Alert {
	return alert.Alert{Key: key, Severity: sev, Summary: "problem " + key, Details: "look at " + key}
}

// brief renders delivered notifications as "state key severity".
func brief(ns []alert.Notification) []string {
	var out []string
	for _, n := range ns {
		out = append(out, fmt.Sprintf("%s %s %s", n.State, n.Key, n.Severity))
	}
	return out
}

// TestManagerDeduplication drives one Manager with one sender through a script: each
// step moves the clock, does one thing, and says exactly what the sender must get.
func TestManagerDeduplication(t *testing.T) {
	t.Parallel()
	type step struct {
		after time.Duration // clock advance before the step
		op    string        // fire, resolve, event, tick, down, up, restart
		key   string
		sev   alert.Severity
		want  []string
	}
	const key = "archiving-stalled"
	tests := []struct {
		name  string
		steps []step
	}{
		{"FireSendsOnce", []step{
			{op: "fire", key: key, sev: alert.Critical, want: []string{"firing archiving-stalled critical"}},
			{after: time.Minute, op: "fire", key: key, sev: alert.Critical},
			{after: time.Hour, op: "tick"},
		}},
		{"RepeatAfterInterval", []step{
			{op: "fire", key: key, sev: alert.Warning, want: []string{"firing archiving-stalled warning"}},
			{after: 4*time.Hour - time.Second, op: "fire", key: key, sev: alert.Warning},
			{after: time.Second, op: "fire", key: key, sev: alert.Warning, want: []string{"repeat archiving-stalled warning"}},
			{after: time.Hour, op: "tick"},
			{after: 3 * time.Hour, op: "tick", want: []string{"repeat archiving-stalled warning"}},
		}},
		{"RepeatOnTickWithoutFire", []step{
			{op: "fire", key: key, sev: alert.Critical, want: []string{"firing archiving-stalled critical"}},
			{after: 4 * time.Hour, op: "tick", want: []string{"repeat archiving-stalled critical"}},
		}},
		{"ResolveSendsResolvedOnce", []step{
			{op: "fire", key: key, sev: alert.Critical, want: []string{"firing archiving-stalled critical"}},
			{after: time.Minute, op: "resolve", key: key, want: []string{"resolved archiving-stalled critical"}},
			{op: "resolve", key: key},
			{after: 5 * time.Hour, op: "tick"},
		}},
		{"ResolveNeverFired", []step{
			{op: "resolve", key: "never-fired"},
			{op: "tick"},
		}},
		{"FireAfterResolvedIsNew", []step{
			{op: "fire", key: key, sev: alert.Critical, want: []string{"firing archiving-stalled critical"}},
			{op: "resolve", key: key, want: []string{"resolved archiving-stalled critical"}},
			{after: time.Minute, op: "fire", key: key, sev: alert.Critical, want: []string{"firing archiving-stalled critical"}},
		}},
		{"SeverityChangeSendsAtOnce", []step{
			{op: "fire", key: key, sev: alert.Warning, want: []string{"firing archiving-stalled warning"}},
			{after: time.Minute, op: "fire", key: key, sev: alert.Critical, want: []string{"firing archiving-stalled critical"}},
			{after: time.Minute, op: "fire", key: key, sev: alert.Critical},
			{after: time.Minute, op: "fire", key: key, sev: alert.Warning, want: []string{"firing archiving-stalled warning"}},
		}},
		{"SenderDownThenUp", []step{
			{op: "down"},
			{op: "fire", key: key, sev: alert.Critical},
			{after: time.Minute, op: "tick"},
			{op: "up"},
			{after: time.Minute, op: "tick", want: []string{"firing archiving-stalled critical"}},
			{op: "down"},
			{after: time.Minute, op: "resolve", key: key},
			{after: time.Minute, op: "tick"},
			{op: "up"},
			{after: time.Minute, op: "tick", want: []string{"resolved archiving-stalled critical"}},
			{after: time.Minute, op: "tick"},
		}},
		{"ClearedBeforeAnyDeliveryIsDropped", []step{
			{op: "down"},
			{op: "fire", key: key, sev: alert.Critical},
			{after: time.Minute, op: "resolve", key: key},
			{op: "up"},
			{op: "tick"},
		}},
		{"FiresAgainBeforeResolvedWasDelivered", []step{
			{op: "fire", key: key, sev: alert.Critical, want: []string{"firing archiving-stalled critical"}},
			{op: "down"},
			{after: time.Minute, op: "resolve", key: key},
			{after: time.Minute, op: "fire", key: key, sev: alert.Critical},
			{op: "up"},
			{op: "tick"},
			{after: 4 * time.Hour, op: "tick", want: []string{"repeat archiving-stalled critical"}},
		}},
		{"RestartDoesNotResend", []step{
			{op: "fire", key: key, sev: alert.Critical, want: []string{"firing archiving-stalled critical"}},
			{after: time.Minute, op: "restart"},
			{op: "fire", key: key, sev: alert.Critical},
			{after: 4 * time.Hour, op: "tick", want: []string{"repeat archiving-stalled critical"}},
			{op: "restart"},
			{op: "resolve", key: key, want: []string{"resolved archiving-stalled critical"}},
			{op: "restart"},
			{op: "tick"},
		}},
		{"RestartKeepsPendingResolved", []step{
			{op: "fire", key: key, sev: alert.Critical, want: []string{"firing archiving-stalled critical"}},
			{op: "down"},
			{op: "resolve", key: key},
			{op: "restart"},
			{op: "up"},
			{op: "tick", want: []string{"resolved archiving-stalled critical"}},
		}},
		{"EventsAreNotDeduplicated", []step{
			{op: "event", key: "backup-succeeded", sev: alert.Info, want: []string{"event backup-succeeded info"}},
			{op: "event", key: "backup-succeeded", sev: alert.Info, want: []string{"event backup-succeeded info"}},
			{op: "tick"},
		}},
		{"EventsWaitForTheSender", []step{
			{op: "down"},
			{op: "event", key: "e1", sev: alert.Info},
			{op: "event", key: "e2", sev: alert.Info},
			{op: "restart"},
			{op: "up"},
			{op: "tick", want: []string{"event e1 info", "event e2 info"}},
			{op: "tick"},
		}},
		{"OrderOfMessages", []step{
			{op: "down"},
			{op: "fire", key: "b-later", sev: alert.Warning},
			{after: time.Minute, op: "fire", key: "a-earlier-key", sev: alert.Critical},
			{op: "event", key: "e1", sev: alert.Info},
			{op: "up"},
			{op: "tick", want: []string{"event e1 info", "firing b-later warning", "firing a-earlier-key critical"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			store := &alert.MemoryStore{}
			rec := alerttest.NewRecorder("rec")
			m := newManager(t, clk, store, nil, rec)
			for i, s := range tt.steps {
				clk.Advance(s.after)
				var err error
				switch s.op {
				case "fire":
					err = m.Fire(t.Context(), problem(s.key, s.sev))
				case "resolve":
					err = m.Resolve(t.Context(), s.key)
				case "event":
					err = m.Event(t.Context(), problem(s.key, s.sev))
				case "tick":
					err = m.Tick(t.Context())
				case "down":
					rec.SetDown(true)
				case "up":
					rec.SetDown(false)
				case "restart":
					m = newManager(t, clk, store, nil, rec)
				default:
					t.Fatalf("step %d: unknown op %q", i, s.op)
				}
				if err != nil {
					t.Fatalf("step %d (%s %s): %v", i, s.op, s.key, err)
				}
				if got := brief(rec.Take()); !slices.Equal(got, s.want) {
					t.Fatalf("step %d (%s %s): sender got %q, want %q", i, s.op, s.key, got, s.want)
				}
			}
		})
	}
}

func TestManagerNotificationFields(t *testing.T) {
	t.Parallel()
	clk := newClock()
	start := clk.Now()
	rec := alerttest.NewRecorder("rec")
	m, err := alert.NewManager(t.Context(), alert.Options{
		Senders: []alert.Sender{rec}, Now: clk.Now,
		Labels: map[string]string{"instance": "db1", "cluster": "default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := problem("disk-full", alert.Warning)
	a.Labels = map[string]string{"cluster": "main"}
	for range 3 {
		if err := m.Fire(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Hour) // default repeat interval: 4h
	}
	// Fired at 0h, 2h, 4h; now 6h: the 4h fire sent the repeat.
	got := rec.Take()
	if len(got) != 2 {
		t.Fatalf("got %q, want firing then repeat", brief(got))
	}
	r := got[1]
	if r.State != alert.Repeat || r.Count != 3 || !r.FirstSeen.Equal(start) || !r.Time.Equal(start.Add(4*time.Hour)) {
		t.Errorf("repeat = state %s count %d first seen %s time %s; want repeat, 3, %s, %s",
			r.State, r.Count, r.FirstSeen, r.Time, start, start.Add(4*time.Hour))
	}
	if r.Labels["instance"] != "db1" || r.Labels["cluster"] != "main" {
		t.Errorf("labels = %v, want the common instance=db1 and the alert's own cluster=main", r.Labels)
	}
	if a.Labels["instance"] != "" {
		t.Errorf("the caller's label map was changed: %v", a.Labels)
	}
	if act := m.Active(); len(act) != 1 || act[0].Key != "disk-full" || act[0].Count != 3 {
		t.Errorf("Active() = %+v, want disk-full seen 3 times", act)
	}
	if err := m.Resolve(t.Context(), "disk-full"); err != nil {
		t.Fatal(err)
	}
	res := rec.Take()
	if len(res) != 1 || res[0].State != alert.Resolved || !res[0].ResolvedAt.Equal(clk.Now()) || res[0].Count != 3 {
		t.Fatalf("after Resolve got %+v, want one resolved message at %s", res, clk.Now())
	}
	if act := m.Active(); len(act) != 0 {
		t.Errorf("Active() after Resolve = %v, want none", brief(act))
	}
}

func TestManagerTwoSendersOneDown(t *testing.T) {
	t.Parallel()
	clk := newClock()
	up, down := alerttest.NewRecorder("chat"), alerttest.NewRecorder("mail")
	down.SetDown(true)
	m := newManager(t, clk, &alert.MemoryStore{}, nil, up, down)
	ctx := t.Context()
	must(t, m.Fire(ctx, problem("a", alert.Critical)))
	must(t, m.Fire(ctx, problem("b", alert.Warning)))
	must(t, m.Resolve(ctx, "a"))
	if got, want := brief(up.Take()), []string{"firing a critical", "firing b warning", "resolved a critical"}; !slices.Equal(got, want) {
		t.Fatalf("working sender got %q, want %q", got, want)
	}
	// A sender's pass stops at its first failure: three passes, three attempts.
	if n := down.Attempts(); n != 3 {
		t.Errorf("the down sender was tried %d times in 3 passes, want 3 (one per pass)", n)
	}
	down.SetDown(false)
	clk.Advance(time.Minute)
	must(t, m.Tick(ctx))
	// "a" cleared before mail could be told: mail only hears of "b".
	if got, want := brief(down.Take()), []string{"firing b warning"}; !slices.Equal(got, want) {
		t.Fatalf("recovered sender got %q, want %q", got, want)
	}
	if got := up.Take(); len(got) != 0 {
		t.Fatalf("working sender got duplicates: %q", brief(got))
	}
}

func TestManagerRestartWithChangedSenders(t *testing.T) {
	t.Parallel()
	clk := newClock()
	store := &alert.MemoryStore{}
	old, kept := alerttest.NewRecorder("old"), alerttest.NewRecorder("kept")
	m := newManager(t, clk, store, nil, old, kept)
	must(t, m.Fire(t.Context(), problem("a", alert.Critical)))
	kept.Take()

	added := alerttest.NewRecorder("added")
	m = newManager(t, clk, store, nil, kept, added)
	must(t, m.Tick(t.Context()))
	if got := brief(added.Take()); !slices.Equal(got, []string{"firing a critical"}) {
		t.Fatalf("new sender got %q, want the ongoing problem", got)
	}
	if got := kept.Take(); len(got) != 0 {
		t.Fatalf("kept sender got %q again after restart", brief(got))
	}
	must(t, m.Resolve(t.Context(), "a"))
	if got := append(brief(kept.Take()), brief(added.Take())...); len(got) != 2 {
		t.Fatalf("got %q, want resolved on both senders", got)
	}
	if n := old.Attempts(); n != 1 {
		t.Errorf("removed sender tried %d times, want 1 (before it was removed)", n)
	}
	// The removed sender's firing record must not keep the problem around.
	blob, _ := store.Load(t.Context())
	if strings.Contains(string(blob), `"a"`) {
		t.Errorf("saved state still holds the resolved problem: %s", blob)
	}
}

func TestManagerConcurrentFire(t *testing.T) {
	t.Parallel()
	clk := newClock()
	rec := alerttest.NewRecorder("rec")
	m := newManager(t, clk, &alert.MemoryStore{}, nil, rec)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 10 {
				key := fmt.Sprintf("k%d", (i+j)%4)
				if err := m.Fire(t.Context(), problem(key, alert.Critical)); err != nil {
					t.Error(err)
				}
				if j%3 == 0 {
					if err := m.Tick(t.Context()); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	got := brief(rec.Take())
	slices.Sort(got)
	want := []string{"firing k0 critical", "firing k1 critical", "firing k2 critical", "firing k3 critical"}
	if !slices.Equal(got, want) {
		t.Fatalf("160 concurrent fires of 4 keys sent %q, want each key once", got)
	}
	if act := m.Active(); len(act) != 4 || act[0].Count+act[1].Count+act[2].Count+act[3].Count != 160 {
		t.Fatalf("Active() = %+v, want 4 problems seen 160 times in all", act)
	}
}

func TestManagerEventQueueIsBounded(t *testing.T) {
	t.Parallel()
	clk := newClock()
	rec := alerttest.NewRecorder("rec")
	rec.SetDown(true)
	var logs bytes.Buffer
	m, err := alert.NewManager(t.Context(), alert.Options{
		Senders: []alert.Sender{rec}, Now: clk.Now, MaxPendingEvents: 3,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		must(t, m.Event(t.Context(), problem(fmt.Sprintf("e%d", i), alert.Info)))
	}
	rec.SetDown(false)
	must(t, m.Tick(t.Context()))
	if got, want := brief(rec.Take()), []string{"event e2 info", "event e3 info", "event e4 info"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want the 3 newest events", got)
	}
	if !strings.Contains(logs.String(), "dropping the oldest") {
		t.Errorf("dropped events were not logged:\n%s", logs.String())
	}
}

func TestManagerRejectsInvalidAlerts(t *testing.T) {
	t.Parallel()
	rec := alerttest.NewRecorder("rec")
	m := newManager(t, newClock(), nil, nil, rec)
	for name, a := range map[string]alert.Alert{
		"NoKey":       {Severity: alert.Info, Summary: "s"},
		"NoSummary":   {Key: "k", Severity: alert.Info},
		"BadSeverity": {Key: "k", Severity: "urgent", Summary: "s"},
	} {
		if err := m.Fire(t.Context(), a); !errors.Is(err, alert.ErrInvalid) {
			t.Errorf("%s: Fire = %v, want ErrInvalid", name, err)
		}
		if err := m.Event(t.Context(), a); !errors.Is(err, alert.ErrInvalid) {
			t.Errorf("%s: Event = %v, want ErrInvalid", name, err)
		}
	}
	if got := rec.Take(); len(got) != 0 {
		t.Fatalf("invalid alerts were sent: %q", brief(got))
	}
}

func TestNewManagerOptions(t *testing.T) {
	t.Parallel()
	a, b := alerttest.NewRecorder("same"), alerttest.NewRecorder("same")
	if _, err := alert.NewManager(t.Context(), alert.Options{Senders: []alert.Sender{a, b}}); err == nil {
		t.Error("two senders with one name: want an error")
	}
	if _, err := alert.NewManager(t.Context(), alert.Options{Senders: []alert.Sender{alerttest.NewRecorder("")}}); err == nil {
		t.Error("a sender without a name: want an error")
	}
	if _, err := alert.NewManager(t.Context(), alert.Options{Store: failingStore{}}); err == nil {
		t.Error("a store that cannot load: want an error")
	}
}

func TestManagerUnreadableStateStartsEmpty(t *testing.T) {
	t.Parallel()
	store := &alert.MemoryStore{}
	must(t, store.Save(t.Context(), []byte("{not json")))
	var logs bytes.Buffer
	rec := alerttest.NewRecorder("rec")
	m := newManager(t, newClock(), store, slog.New(slog.NewTextHandler(&logs, nil)), rec)
	if !strings.Contains(logs.String(), "alert state is unreadable") {
		t.Errorf("unreadable state was not logged:\n%s", logs.String())
	}
	must(t, m.Fire(t.Context(), problem("a", alert.Critical)))
	if got := brief(rec.Take()); len(got) != 1 {
		t.Fatalf("got %q, want the alert sent", got)
	}
}

func TestManagerSaveFailureIsReturned(t *testing.T) {
	t.Parallel()
	rec := alerttest.NewRecorder("rec")
	store := &flakyStore{}
	m := newManager(t, newClock(), store, nil, rec)
	store.fail = true
	if err := m.Fire(t.Context(), problem("a", alert.Critical)); err == nil {
		t.Fatal("Fire with a failing store = nil, want the save error")
	}
	if got := brief(rec.Take()); len(got) != 1 {
		t.Fatalf("got %q: delivery must not depend on the store", got)
	}
	store.fail = false
	must(t, m.Tick(t.Context()))
	if !strings.Contains(string(store.blob), `"a"`) {
		t.Errorf("state not saved once the store works again: %s", store.blob)
	}
}

func TestManagerRun(t *testing.T) {
	t.Parallel()
	rec := alerttest.NewRecorder("rec")
	rec.SetDown(true)
	m := newManager(t, newClock(), nil, nil, rec)
	must(t, m.Fire(t.Context(), problem("a", alert.Critical)))
	rec.SetDown(false)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { m.Run(ctx, time.Millisecond); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	var got []alert.Notification
	for len(got) == 0 && time.Now().Before(deadline) {
		got = rec.Take()
		runtime.Gosched()
	}
	cancel()
	<-done
	if len(got) != 1 || got[0].State != alert.Firing {
		t.Fatalf("Run delivered %q, want the pending firing message", brief(got))
	}
}

type failingStore struct{}

func (failingStore) Load(context.Context) ([]byte, error) { return nil, errors.New("disk on fire") }
func (failingStore) Save(context.Context, []byte) error   { return errors.New("disk on fire") }

// flakyStore fails its saves while fail is set; used from one goroutine.
type flakyStore struct {
	fail bool
	blob []byte
}

func (s *flakyStore) Load(context.Context) ([]byte, error) { return s.blob, nil }
func (s *flakyStore) Save(_ context.Context, b []byte) error {
	if s.fail {
		return errors.New("disk full")
	}
	s.blob = b
	return nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
