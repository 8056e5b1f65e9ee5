package daemon

import (
	"sort"
	"time"
)

// Schedule says when a job is due.
type Schedule interface {
	// Next returns the first time after t the job is due, or the zero time if it
	// never is again.
	Next(t time.Time) time.Time
}

// ScheduleParser turns the configuration's schedule expressions into Schedules. The
// cron package implements it.
type ScheduleParser interface {
	// Parse parses expr (a cron expression) evaluated in time zone loc; it returns an
	// error that quotes expr when it is not valid.
	Parse(expr string, loc *time.Location) (Schedule, error)
}

// Every is a Schedule due every interval, counted from the zero time: every minute
// on the minute, for instance. It serves the daemon's own periodic checks.
type Every time.Duration

// Next implements Schedule.
func (e Every) Next(t time.Time) time.Time {
	d := time.Duration(e)
	if d <= 0 {
		return time.Time{}
	}
	return t.Truncate(d).Add(d)
}

// Scheduler decides which jobs are due. It is a pure bookkeeper with no clock and no
// goroutine of its own: the daemon (or a test) tells it the time.
//
// A job that was due several times since it last ran (the daemon was down, or the
// job overran) runs once, not once per missed slot: a backup taken now covers them
// all. Not safe for concurrent use; the Daemon guards it.
type Scheduler struct {
	entries []*scheduled
}

type scheduled struct {
	name     string
	schedule Schedule
	next     time.Time // zero: never due again
}

// Add schedules job name, first due at schedule.Next(from).
func (s *Scheduler) Add(name string, schedule Schedule, from time.Time) {
	s.entries = append(s.entries, &scheduled{name: name, schedule: schedule, next: schedule.Next(from)})
}

// Due returns the jobs due at now, the earliest first, and moves each to its next
// time after now.
func (s *Scheduler) Due(now time.Time) []DueJob {
	var out []DueJob
	for _, e := range s.entries {
		if e.next.IsZero() || e.next.After(now) {
			continue
		}
		out = append(out, DueJob{Name: e.name, At: e.next})
		e.next = e.schedule.Next(now)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// Next returns the earliest time a job is due, or the zero time if none ever is.
func (s *Scheduler) Next() time.Time {
	var t time.Time
	for _, e := range s.entries {
		if !e.next.IsZero() && (t.IsZero() || e.next.Before(t)) {
			t = e.next
		}
	}
	return t
}

// NextOf returns when job name is next due (zero: never, or no such job).
func (s *Scheduler) NextOf(name string) time.Time {
	for _, e := range s.entries {
		if e.name == name {
			return e.next
		}
	}
	return time.Time{}
}

// DueNow makes job name due at now (a run missed while the daemon was down).
func (s *Scheduler) DueNow(name string, now time.Time) {
	for _, e := range s.entries {
		if e.name == name && (e.next.IsZero() || e.next.After(now)) {
			e.next = now
		}
	}
}

// Schedule returns job name's schedule, or nil.
func (s *Scheduler) Schedule(name string) Schedule {
	for _, e := range s.entries {
		if e.name == name {
			return e.schedule
		}
	}
	return nil
}

// DueJob is a job the Scheduler found due.
type DueJob struct {
	Name string
	// At is the time it was due (at or before the time it was found due).
	At time.Time
}
