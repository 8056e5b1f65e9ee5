// Package alerttest helps test notifications: Recorder is an in-memory alert.Sender
// that can be made to fail, and RunSender is the contract every alert.Sender
// implementation must pass against its real receiver.
package alerttest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/alert"
)

// ErrDown is what a Recorder returns while it is down.
var ErrDown = errors.New("receiver down")

// Recorder is an alert.Sender that keeps what it is sent. It is safe for concurrent use.
type Recorder struct {
	name     string
	mu       sync.Mutex
	sent     []alert.Notification
	down     bool
	attempts int
}

var _ alert.Sender = (*Recorder)(nil)

// NewRecorder returns a Recorder, up, named name.
func NewRecorder(name string) *Recorder { return &Recorder{name: name} }

// Name returns the name given to NewRecorder.
func (r *Recorder) Name() string { return r.name }

// Send records n, or returns ErrDown while the Recorder is down.
func (r *Recorder) Send(ctx context.Context, n alert.Notification) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.down {
		return ErrDown
	}
	r.sent = append(r.sent, n)
	return nil
}

// SetDown makes Send fail (true) or succeed (false).
func (r *Recorder) SetDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// Take returns what was delivered since the last Take, oldest first.
func (r *Recorder) Take() []alert.Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	sent := r.sent
	r.sent = nil
	return sent
}

// Attempts returns how many times Send was called, failed calls included.
func (r *Recorder) Attempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts
}

// Harness is one Sender wired to a real receiver that the test controls.
type Harness struct {
	Sender alert.Sender
	// Received returns every message the receiver accepted so far, oldest first, as
	// the text a person or a program there would read: a JSON payload's fields, a
	// chat message's text, a mail's decoded subject and body.
	Received func(t *testing.T) []string
	// SetDown makes the receiver refuse messages (true) or accept them (false).
	SetDown func(down bool)
	// Secrets (passwords, tokens in URLs) must appear in no error and in no Name.
	Secrets []string
}

// Sample returns a notification in state s with non-ASCII text, as tests send it.
func Sample(s alert.State) alert.Notification {
	first := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	n := alert.Notification{
		Alert: alert.Alert{
			Key:      "archiving-stalled",
			Severity: alert.Critical,
			Summary:  "Archivage bloqué — WAL archiving stalled on db1",
			Details:  "5 segments are waiting; the oldest since 05:06 UTC. Check hestami wal status.",
			Labels:   map[string]string{"instance": "db1", "cluster": "main"},
			Time:     first.Add(90 * time.Minute),
		},
		State:     s,
		FirstSeen: first,
		Count:     7,
	}
	switch s {
	case alert.Resolved:
		n.ResolvedAt = first.Add(2 * time.Hour)
	case alert.Event:
		n.Key, n.Severity, n.Summary = "backup-succeeded:physical", alert.Info, "Sauvegarde réussie — physical backup done"
		n.Details, n.FirstSeen, n.Count = "Backup 20250304T050607Z: 1.2 GiB in 3m4s.", n.Time, 1
	}
	return n
}

// RunSender runs the Sender contract against the harnesses newHarness makes, each
// with a fresh receiver that is up.
func RunSender(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("DeliversEveryState", func(t *testing.T) {
		h := newHarness(t)
		states := []alert.State{alert.Firing, alert.Repeat, alert.Resolved, alert.Event}
		for _, s := range states {
			if err := h.Sender.Send(t.Context(), Sample(s)); err != nil {
				t.Fatalf("Send(%s) = %v", s, err)
			}
		}
		got := h.Received(t)
		if len(got) != len(states) {
			t.Fatalf("receiver got %d messages, want %d: %q", len(got), len(states), got)
		}
		for i, s := range states {
			n := Sample(s)
			for _, want := range []string{n.Key, n.Summary, n.Details, string(n.Severity), string(s)} {
				if !strings.Contains(strings.ToLower(got[i]), strings.ToLower(want)) {
					t.Errorf("%s message does not mention %q:\n%s", s, want, got[i])
				}
			}
		}
	})
	t.Run("ReceiverDownIsAnError", func(t *testing.T) {
		h := newHarness(t)
		h.SetDown(true)
		err := h.Sender.Send(t.Context(), Sample(alert.Firing))
		if err == nil {
			t.Fatal("Send to a receiver that refuses = nil, want an error")
		}
		for _, secret := range h.Secrets {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the secret %q", err, secret)
			}
		}
		h.SetDown(false)
		if err := h.Sender.Send(t.Context(), Sample(alert.Firing)); err != nil {
			t.Fatalf("Send once the receiver is back = %v", err)
		}
		if got := h.Received(t); len(got) != 1 {
			t.Fatalf("receiver got %d messages, want 1", len(got))
		}
	})
	t.Run("CancelledContext", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := h.Sender.Send(ctx, Sample(alert.Firing)); err == nil {
			t.Fatal("Send with a cancelled context = nil, want an error")
		}
		if got := h.Received(t); len(got) != 0 {
			t.Fatalf("receiver got %d messages after a cancelled Send, want 0", len(got))
		}
	})
	t.Run("NameIsStableAndSecretFree", func(t *testing.T) {
		h := newHarness(t)
		name := h.Sender.Name()
		if name == "" || name != h.Sender.Name() {
			t.Fatalf("Name() = %q then %q, want the same non-empty name", name, h.Sender.Name())
		}
		for _, secret := range h.Secrets {
			if strings.Contains(name, secret) {
				t.Errorf("Name() = %q shows the secret %q", name, secret)
			}
		}
	})
}
