// Package cron parses cron expressions into schedules for the backup daemon, through
// github.com/robfig/cron. It adds what a backup schedule needs and the library
// leaves out: expressions are evaluated on the wall clock of a time zone, so that a
// daylight-saving change neither skips a run nor makes one run twice.
package cron

import (
	"fmt"
	"strings"
	"time"

	robfig "github.com/robfig/cron/v3"

	"github.com/hestami/hestami/daemon"
)

// parser accepts the standard five fields (minute, hour, day of month, month, day of
// week) and the descriptors @yearly, @monthly, @weekly, @daily, @hourly and @every.
var parser = robfig.NewParser(robfig.Minute | robfig.Hour | robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// Schedule is a parsed cron expression in a time zone.
//
// Calendar expressions are evaluated on the zone's wall clock: "30 2 * * *" is due
// once a day at 02:30 local time. On the day the clock goes forward past 02:30 it
// is due as much later as the clock jumped (03:30); on the day the clock goes back
// over 02:30 it is due only at the first 02:30. @every durations are absolute.
type Schedule struct {
	expr  string
	loc   *time.Location
	spec  robfig.Schedule // evaluated in UTC on wall-clock times
	every time.Duration   // @every: a constant delay instead
}

var _ daemon.Schedule = (*Schedule)(nil)

// Parse parses a five-field cron expression or a descriptor, in time zone loc (nil:
// UTC). A "CRON_TZ=Zone " prefix overrides loc for this expression.
func Parse(expr string, loc *time.Location) (*Schedule, error) {
	s := strings.TrimSpace(expr)
	if loc == nil {
		loc = time.UTC
	}
	for _, prefix := range []string{"CRON_TZ=", "TZ="} {
		if rest, ok := strings.CutPrefix(s, prefix); ok {
			name, spec, _ := strings.Cut(rest, " ")
			l, err := time.LoadLocation(name)
			if err != nil {
				return nil, fmt.Errorf("cron expression %q: time zone %q: %w", expr, name, err)
			}
			loc, s = l, strings.TrimSpace(spec)
			break
		}
	}
	if s == "" {
		return nil, fmt.Errorf("cron expression %q is empty: want five fields (minute hour day-of-month month day-of-week), e.g. \"0 2 * * *\"", expr)
	}
	sched, err := parser.Parse("CRON_TZ=UTC " + s)
	if err != nil {
		return nil, fmt.Errorf("cron expression %q: %w (want five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\", or @daily)", expr, err)
	}
	out := &Schedule{expr: strings.TrimSpace(expr), loc: loc, spec: sched}
	if cd, ok := sched.(robfig.ConstantDelaySchedule); ok {
		out.every = cd.Delay
	}
	return out, nil
}

// Parser implements daemon.ScheduleParser.
type Parser struct{}

var _ daemon.ScheduleParser = Parser{}

// Parse implements daemon.ScheduleParser.
func (Parser) Parse(expr string, loc *time.Location) (daemon.Schedule, error) {
	return Parse(expr, loc)
}

// String returns the expression as given.
func (s *Schedule) String() string { return s.expr }

// Location returns the time zone the schedule is evaluated in.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next returns the first time after t the schedule is due, or the zero time if it
// never is (an expression such as "0 0 30 2 *").
func (s *Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		return s.spec.Next(t)
	}
	// Work on wall-clock times written as UTC, so DST transitions do not exist for
	// the library, then map each candidate back into the zone. A wall time that
	// occurs twice maps to its first occurrence; one that does not occur maps past
	// the gap; candidates not after t are passed over.
	wall := wallClock(t.In(s.loc))
	for range 10 {
		next := s.spec.Next(wall)
		if next.IsZero() {
			return time.Time{}
		}
		at := resolve(next, s.loc)
		if at.After(t) {
			return at
		}
		wall = next
	}
	return time.Time{}
}

// resolve returns the instant wall-clock time wall (written as UTC) names in loc:
// its first occurrence when the clock went back over it, and, when the clock jumped
// over it, the instant as far past the jump as wall was into it (02:30 in a gap from
// 02:00 to 03:00 is 03:30). time.Date leaves both cases unspecified.
func resolve(wall time.Time, loc *time.Location) time.Time {
	approx := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), wall.Nanosecond(), loc)
	// Zone transitions are months apart: the offsets a day either side are the
	// only ones that can apply.
	before := approx.Add(-24 * time.Hour)
	var best time.Time
	for _, probe := range []time.Time{before, approx, approx.Add(24 * time.Hour)} {
		_, off := probe.Zone()
		t := wall.Add(-time.Duration(off) * time.Second).In(loc)
		if wallClock(t).Equal(wall) && (best.IsZero() || t.Before(best)) {
			best = t
		}
	}
	if !best.IsZero() {
		return best
	}
	_, off := before.Zone() // in a gap: count from the offset before the jump
	return wall.Add(-time.Duration(off) * time.Second).In(loc)
}

// wallClock returns t's wall-clock fields as a UTC time.
func wallClock(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}
