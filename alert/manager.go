package alert

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// DefaultRepeatInterval is how often an ongoing problem is notified again when
// Options.RepeatInterval is zero.
const DefaultRepeatInterval = 4 * time.Hour

// DefaultMaxPendingEvents is how many undelivered events are kept per sender when
// Options.MaxPendingEvents is zero.
const DefaultMaxPendingEvents = 100

// Options configure a Manager.
type Options struct {
	// Senders receive every notification. Their names must be unique.
	Senders []Sender
	// Store keeps the de-duplication state across restarts; nil keeps it in memory only.
	Store StateStore
	// RepeatInterval is how often a problem that still lasts is notified again;
	// zero means DefaultRepeatInterval.
	RepeatInterval time.Duration
	// Labels are added to every alert's labels (an alert's own label wins), e.g.
	// {"instance": "db1"}.
	Labels map[string]string
	// MaxPendingEvents bounds the undelivered events kept per sender (the oldest
	// are dropped, and logged); zero means DefaultMaxPendingEvents.
	MaxPendingEvents int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives delivery failures and dropped messages; nil discards them.
	Logger *slog.Logger
}

// Manager de-duplicates alerts and delivers notifications to its senders.
//
// A problem reported with Fire is sent once (State Firing), then again every
// RepeatInterval while it lasts (State Repeat), and once more when Resolve clears it
// (State Resolved). Firing it with another severity sends a new Firing message at
// once. Each sender is tracked on its own: a sender that failed is retried on the
// next pass (every Fire, Resolve, Event and Tick makes one) and, once it is back,
// gets what it missed, including a "resolved" message for a problem it was told of.
// A problem that clears before a sender could be told of it is not sent to it at all.
//
// The Manager is safe for concurrent use. Passes are serialized: a call waits for a
// pass already sending, bounded by its ctx and by the senders' own timeouts.
type Manager struct {
	senders   []Sender
	store     StateStore
	repeat    time.Duration
	labels    map[string]string
	maxEvents int
	now       func() time.Time
	log       *slog.Logger

	sendMu sync.Mutex // serializes passes, so no message is sent twice

	mu     sync.Mutex // guards everything below
	alerts map[string]*entry
	events map[string][]pendingEvent // by sender name
	seq    uint64
	dirty  bool
}

// entry is one problem's de-duplication state.
type entry struct {
	Alert      Alert                `json:"alert"`
	FirstSeen  time.Time            `json:"first_seen"`
	Count      int                  `json:"count"`
	Resolved   bool                 `json:"resolved,omitempty"`
	ResolvedAt time.Time            `json:"resolved_at,omitzero"`
	Deliveries map[string]*delivery `json:"deliveries"` // by sender name
}

// delivery is what one sender has been told of one problem.
type delivery struct {
	// Notified: the sender was told the problem fires, and not yet that it cleared.
	Notified bool `json:"notified"`
	// Severity is the severity the sender was last told.
	Severity Severity `json:"severity,omitempty"`
	// LastSent is when the sender was last told the problem fires.
	LastSent time.Time `json:"last_sent,omitzero"`
}

// pendingEvent is an event not yet delivered to one sender.
type pendingEvent struct {
	Seq          uint64       `json:"seq"`
	Notification Notification `json:"notification"`
}

// savedState is the blob in the StateStore.
type savedState struct {
	Version int                       `json:"version"`
	Alerts  map[string]*entry         `json:"alerts"`
	Events  map[string][]pendingEvent `json:"pending_events,omitempty"`
	Seq     uint64                    `json:"seq,omitempty"`
}

const stateVersion = 1

// NewManager returns a Manager that resumes from opts.Store's saved state. A state
// blob that cannot be read is logged and the Manager starts empty (at worst an ongoing
// problem is notified again) rather than leaving the daemon without alerts; a store
// that fails to load is an error.
func NewManager(ctx context.Context, opts Options) (*Manager, error) {
	m := &Manager{
		store:     opts.Store,
		repeat:    cmp.Or(opts.RepeatInterval, DefaultRepeatInterval),
		labels:    maps.Clone(opts.Labels),
		maxEvents: cmp.Or(opts.MaxPendingEvents, DefaultMaxPendingEvents),
		now:       opts.Now,
		log:       opts.Logger,
		alerts:    map[string]*entry{},
		events:    map[string][]pendingEvent{},
	}
	if m.repeat < 0 {
		return nil, fmt.Errorf("alert manager: repeat interval %s: want a positive duration", m.repeat)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	names := map[string]bool{}
	for i, s := range opts.Senders {
		if s == nil {
			return nil, fmt.Errorf("alert manager: sender %d is nil", i)
		}
		name := s.Name()
		if name == "" {
			return nil, fmt.Errorf("alert manager: sender %d has no name", i)
		}
		if names[name] {
			return nil, fmt.Errorf("alert manager: two senders are named %q: give each notification channel a distinct name", name)
		}
		names[name] = true
		m.senders = append(m.senders, s)
	}
	if m.store != nil {
		blob, err := m.store.Load(ctx)
		if err != nil {
			return nil, fmt.Errorf("alert manager: %w", err)
		}
		if len(blob) > 0 {
			if err := m.restore(blob, names); err != nil {
				m.log.Error("alert state is unreadable; starting without it, so ongoing problems may be notified again",
					"err", err)
				m.alerts = map[string]*entry{}
				m.events = map[string][]pendingEvent{}
			}
		}
	}
	return m, nil
}

// restore loads a saved blob, forgetting senders that are no longer configured (so
// their pending messages do not keep problems around forever).
func (m *Manager) restore(blob []byte, senders map[string]bool) error {
	var st savedState
	if err := json.Unmarshal(blob, &st); err != nil {
		return fmt.Errorf("decode alert state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("alert state version %d: want %d", st.Version, stateVersion)
	}
	for key, e := range st.Alerts {
		if e == nil || e.Alert.Key != key {
			return fmt.Errorf("alert state: malformed entry %q", key)
		}
		if e.Deliveries == nil {
			e.Deliveries = map[string]*delivery{}
		}
		for name, d := range e.Deliveries {
			if !senders[name] || d == nil {
				delete(e.Deliveries, name)
			}
		}
		m.alerts[key] = e
	}
	for name, evs := range st.Events {
		if senders[name] && len(evs) > 0 {
			m.events[name] = evs
		}
	}
	m.seq = st.Seq
	return nil
}

// Fire reports that the problem a.Key is happening now. The first Fire of a key is
// sent at once; later ones are sent only when RepeatInterval has passed since the
// last message to a sender, or when the severity changed. It returns ErrInvalid for
// an alert without key, summary or valid severity, and an error if the state could
// not be saved. Delivery failures are logged and retried, never returned.
func (m *Manager) Fire(ctx context.Context, a Alert) error {
	if err := a.Validate(); err != nil {
		return err
	}
	a = m.prepare(a)
	m.mu.Lock()
	e := m.alerts[a.Key]
	if e == nil {
		e = &entry{FirstSeen: a.Time, Deliveries: map[string]*delivery{}}
		m.alerts[a.Key] = e
	}
	// A problem that fires again before every "resolved" went out is the same
	// occurrence: senders still waiting for "resolved" simply keep it firing.
	e.Resolved, e.ResolvedAt = false, time.Time{}
	e.Alert = a
	e.Count++
	m.dirty = true
	m.mu.Unlock()
	return m.Tick(ctx)
}

// Resolve reports that the problem key has cleared: senders that were told of it get
// a Resolved message. Resolving a key that is not firing does nothing. It returns an
// error only if the state could not be saved.
func (m *Manager) Resolve(ctx context.Context, key string) error {
	m.mu.Lock()
	if e := m.alerts[key]; e != nil && !e.Resolved {
		e.Resolved, e.ResolvedAt = true, m.now()
		m.dirty = true
	}
	m.mu.Unlock()
	return m.Tick(ctx)
}

// Event sends a one-shot notification (State Event) with no de-duplication, e.g.
// "backup succeeded". A sender that fails gets it on a later pass; at most
// MaxPendingEvents are kept per sender. Errors are as for Fire.
func (m *Manager) Event(ctx context.Context, a Alert) error {
	if err := a.Validate(); err != nil {
		return err
	}
	a = m.prepare(a)
	n := Notification{Alert: a, State: Event, FirstSeen: a.Time, Count: 1}
	m.mu.Lock()
	m.seq++
	for _, s := range m.senders {
		name := s.Name()
		m.events[name] = append(m.events[name], pendingEvent{Seq: m.seq, Notification: cloneNotification(n)})
	}
	m.dirty = true
	m.mu.Unlock()
	return m.Tick(ctx)
}

// Tick makes one delivery pass: it sends what is due (reminders of ongoing problems)
// and retries what failed. The daemon calls it periodically (Run does). It returns an
// error only if the state could not be saved.
func (m *Manager) Tick(ctx context.Context) error {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()

	jobs := m.due()
	results := m.send(ctx, jobs)
	return m.apply(ctx, results)
}

// Run calls Tick every interval until ctx is done, logging its errors.
func (m *Manager) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Tick(ctx); err != nil && ctx.Err() == nil {
				m.log.Error("notifications: pass failed", "err", err)
			}
		}
	}
}

// Active returns the problems firing now, sorted by key, as notifications in State
// Firing (for a status page or metrics).
func (m *Manager) Active() []Notification {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Notification
	for _, key := range slices.Sorted(maps.Keys(m.alerts)) {
		if e := m.alerts[key]; !e.Resolved {
			out = append(out, e.notification(Firing))
		}
	}
	return out
}

// prepare fills the time and the common labels, and copies the caller's map.
func (m *Manager) prepare(a Alert) Alert {
	a = a.clone()
	if a.Time.IsZero() {
		a.Time = m.now()
	}
	if len(m.labels) > 0 {
		labels := maps.Clone(m.labels)
		maps.Copy(labels, a.Labels)
		a.Labels = labels
	}
	return a
}

func (e *entry) notification(s State) Notification {
	n := Notification{Alert: e.Alert.clone(), State: s, FirstSeen: e.FirstSeen, Count: e.Count}
	if s == Resolved {
		n.ResolvedAt = e.ResolvedAt
	}
	return n
}

func cloneNotification(n Notification) Notification {
	n.Alert = n.Alert.clone()
	return n
}

// job is one message to one sender.
type job struct {
	n        Notification
	key      string // alert key, for alert messages
	eventSeq uint64 // for events
	at       time.Time
}

// result is what became of the jobs given to one sender: the first delivered ones
// (a sender's pass stops at its first failure: the receiver is most likely down, and
// each further try would only wait for its timeout).
type result struct {
	sender    string
	delivered []job
}

// due lists, per sender, the messages to send now: pending events first (oldest
// first), then alerts by first-seen time.
func (m *Manager) due() map[string][]job {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	keys := slices.SortedFunc(maps.Keys(m.alerts), func(a, b string) int {
		return cmp.Or(m.alerts[a].FirstSeen.Compare(m.alerts[b].FirstSeen), cmp.Compare(a, b))
	})
	jobs := map[string][]job{}
	for _, s := range m.senders {
		name := s.Name()
		for _, ev := range m.events[name] {
			jobs[name] = append(jobs[name], job{n: cloneNotification(ev.Notification), eventSeq: ev.Seq, at: now})
		}
		for _, key := range keys {
			e := m.alerts[key]
			d := e.Deliveries[name]
			var state State
			switch {
			case e.Resolved:
				if d != nil && d.Notified {
					state = Resolved
				}
			case d == nil || !d.Notified || d.Severity != e.Alert.Severity:
				state = Firing
			case !now.Before(d.LastSent.Add(m.repeat)):
				state = Repeat
			}
			if state != "" {
				jobs[name] = append(jobs[name], job{n: e.notification(state), key: key, at: now})
			}
		}
	}
	return jobs
}

// send runs each sender's jobs in order, senders in parallel, without holding mu.
func (m *Manager) send(ctx context.Context, jobs map[string][]job) []result {
	results := make([]result, len(m.senders))
	var wg sync.WaitGroup
	for i, s := range m.senders {
		results[i].sender = s.Name()
		list := jobs[s.Name()]
		if len(list) == 0 {
			continue
		}
		wg.Go(func() {
			for _, j := range list {
				if err := s.Send(ctx, j.n); err != nil {
					m.log.Warn("notification not delivered; it will be retried on the next pass. "+
						"Check that the receiver is up and that its notifications settings are right",
						"sender", s.Name(), "alert", j.n.Key, "state", j.n.State, "err", err)
					return
				}
				results[i].delivered = append(results[i].delivered, j)
			}
		})
	}
	wg.Wait()
	return results
}

// apply records deliveries, forgets problems that every sender has been told are
// resolved, bounds the event queues, and saves the state if it changed.
func (m *Manager) apply(ctx context.Context, results []result) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range results {
		sentEvents := map[uint64]bool{}
		for _, j := range r.delivered {
			m.dirty = true
			if j.key == "" {
				sentEvents[j.eventSeq] = true
				continue
			}
			// Entries are only deleted here, under sendMu, so the entry is still there.
			e := m.alerts[j.key]
			d := e.Deliveries[r.sender]
			if d == nil {
				d = &delivery{}
				e.Deliveries[r.sender] = d
			}
			if j.n.State == Resolved {
				d.Notified = false
			} else {
				d.Notified, d.Severity, d.LastSent = true, j.n.Severity, j.at
			}
		}
		if len(sentEvents) > 0 {
			m.events[r.sender] = slices.DeleteFunc(m.events[r.sender], func(ev pendingEvent) bool { return sentEvents[ev.Seq] })
		}
		if q := m.events[r.sender]; len(q) > m.maxEvents {
			drop := len(q) - m.maxEvents
			m.log.Error("notifications: too many undelivered events; dropping the oldest. Check that the receiver is up",
				"sender", r.sender, "dropped", drop)
			m.events[r.sender] = slices.Clone(q[drop:])
			m.dirty = true
		}
		if len(m.events[r.sender]) == 0 {
			delete(m.events, r.sender)
		}
	}
	for key, e := range m.alerts {
		if !e.Resolved {
			continue
		}
		told := false
		for _, d := range e.Deliveries {
			told = told || d.Notified
		}
		if !told {
			delete(m.alerts, key)
			m.dirty = true
		}
	}
	if !m.dirty || m.store == nil {
		return nil
	}
	blob, err := json.Marshal(savedState{Version: stateVersion, Alerts: m.alerts, Events: m.events, Seq: m.seq})
	if err != nil {
		return fmt.Errorf("encode alert state: %w", err)
	}
	if err := m.store.Save(ctx, blob); err != nil {
		return fmt.Errorf("alert manager: %w", err)
	}
	m.dirty = false
	return nil
}
