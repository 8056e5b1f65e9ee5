// Package alert tells operators about problems and events: a backup failed, WAL
// archiving stalled, storage is filling up, a restore drill failed, a backup is far
// smaller than usual. A Manager de-duplicates ongoing problems (one message, then a
// reminder every RepeatInterval, then a "resolved" message) and hands notifications to
// Senders (webhooks, email), retrying those that failed. The package imports no outside
// dependency; senders live in packages named after what they speak (webhook, smtp).
package alert

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Severity says how urgently a person should look.
type Severity string

// Severities, from least to most urgent.
const (
	Info     Severity = "info"
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// ParseSeverity returns the severity named s (info, warning or critical).
func ParseSeverity(s string) (Severity, error) {
	switch sev := Severity(strings.ToLower(strings.TrimSpace(s))); sev {
	case Info, Warning, Critical:
		return sev, nil
	}
	return "", fmt.Errorf("%w: severity %q: want info, warning or critical", ErrInvalid, s)
}

// State is where a notification stands in its alert's life.
type State string

// States of a notification.
const (
	// Firing is the first message about a problem (or about a change of its severity).
	Firing State = "firing"
	// Repeat is a reminder that a problem still lasts, sent every RepeatInterval.
	Repeat State = "repeat"
	// Resolved says a problem that was notified has cleared.
	Resolved State = "resolved"
	// Event is a one-shot message with no de-duplication ("backup succeeded").
	Event State = "event"
)

// ErrInvalid is matched (errors.Is) by errors about an Alert the Manager cannot accept.
var ErrInvalid = errors.New("invalid alert")

// Alert is one observation of a problem or one event.
type Alert struct {
	// Key identifies the problem for de-duplication: "archiving-stalled",
	// "backup-failed:physical". Firing the same key again is the same problem.
	Key      string   `json:"key"`
	Severity Severity `json:"severity"`
	// Summary is one line for a subject or a chat message.
	Summary string `json:"summary"`
	// Details say what was seen and what to do next; may span lines.
	Details string            `json:"details,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Time is when it was observed; zero means now (the Manager's clock).
	Time time.Time `json:"time"`
}

// Validate reports what makes a unusable: it needs a key, a summary and a known severity.
func (a Alert) Validate() error {
	var errs []error
	if strings.TrimSpace(a.Key) == "" {
		errs = append(errs, errors.New("key is empty"))
	}
	if strings.TrimSpace(a.Summary) == "" {
		errs = append(errs, errors.New("summary is empty"))
	}
	switch a.Severity {
	case Info, Warning, Critical:
	default:
		errs = append(errs, fmt.Errorf("severity %q: want info, warning or critical", a.Severity))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w %q: %w", ErrInvalid, a.Key, errors.Join(errs...))
	}
	return nil
}

// clone returns a copy that shares no map with a.
func (a Alert) clone() Alert {
	a.Labels = maps.Clone(a.Labels)
	return a
}

// Notification is what a Sender delivers: the alert as last observed, plus where it
// stands.
type Notification struct {
	Alert
	State State `json:"state"`
	// FirstSeen is when this occurrence of the problem was first fired (for an
	// event: its time).
	FirstSeen time.Time `json:"first_seen"`
	// Count is how many times the problem was fired since FirstSeen (1 for an event).
	Count int `json:"count"`
	// ResolvedAt is when the problem cleared; zero unless State is Resolved.
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
}

// Sender delivers notifications to one destination (a webhook, a mailbox).
type Sender interface {
	// Send delivers n, and returns an error unless the receiver accepted it (the
	// Manager then keeps it pending and tries again on its next pass). Send must
	// respect ctx's deadline and cancellation.
	Send(ctx context.Context, n Notification) error
	// Name identifies the destination in logs and in the Manager's saved state, so
	// it must be unique among a Manager's senders and stable across restarts. It
	// must not contain secrets.
	Name() string
}

// Title is the notification's headline: what state or severity, and the summary.
// Mail subjects and chat messages start with it.
func (n Notification) Title() string {
	sev := strings.ToUpper(string(n.Severity))
	summary := oneLine(n.Summary)
	switch n.State {
	case Repeat:
		return fmt.Sprintf("%s (still firing): %s", sev, summary)
	case Resolved:
		return fmt.Sprintf("RESOLVED (%s): %s", n.Severity, summary)
	default:
		return fmt.Sprintf("%s: %s", sev, summary)
	}
}

// Text is the notification as plain text: the title, the details, then the facts
// (state, severity, key, times, count, labels), one per line. Times are in UTC.
func (n Notification) Text() string {
	var b strings.Builder
	b.WriteString(n.Title())
	b.WriteString("\n")
	if d := strings.TrimSpace(n.Details); d != "" {
		b.WriteString("\n")
		b.WriteString(d)
		b.WriteString("\n")
	}
	b.WriteString("\n")
	line := func(name, value string) { fmt.Fprintf(&b, "%-11s %s\n", name+":", value) }
	line("State", stateText(n.State))
	line("Severity", string(n.Severity))
	line("Alert", n.Key)
	switch n.State {
	case Event:
		line("Time", formatTime(n.Time))
	case Resolved:
		line("Since", formatTime(n.FirstSeen))
		line("Resolved", fmt.Sprintf("%s (lasted %s)", formatTime(n.ResolvedAt), roundDuration(n.ResolvedAt.Sub(n.FirstSeen))))
		line("Seen", times(n.Count))
	default:
		line("Since", fmt.Sprintf("%s (%s ago)", formatTime(n.FirstSeen), roundDuration(n.Time.Sub(n.FirstSeen))))
		line("Last seen", formatTime(n.Time))
		line("Seen", times(n.Count))
	}
	if len(n.Labels) > 0 {
		var labels []string
		for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
			labels = append(labels, k+"="+n.Labels[k])
		}
		line("Labels", strings.Join(labels, ", "))
	}
	return b.String()
}

func stateText(s State) string {
	switch s {
	case Firing:
		return "firing"
	case Repeat:
		return "repeat (the problem still lasts)"
	case Resolved:
		return "resolved"
	case Event:
		return "event"
	}
	return string(s)
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// roundDuration keeps durations readable: "4h0m0s" rather than "4h0m0.123456s".
func roundDuration(d time.Duration) time.Duration {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second)
}

// oneLine joins the lines of s with spaces, so a summary cannot break a header.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
