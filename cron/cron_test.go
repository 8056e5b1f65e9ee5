package cron

import (
	"strings"
	"testing"
	"time"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// runs returns every time s is due after from, up to to.
func runs(s *Schedule, from, to time.Time) []time.Time {
	var out []time.Time
	for t := s.Next(from); !t.IsZero() && !t.After(to); t = s.Next(t) {
		out = append(out, t)
	}
	return out
}

func TestNext(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	ny := mustLoad(t, "America/New_York")
	cases := []struct {
		name     string
		expr     string
		loc      *time.Location
		from, to time.Time
		want     []string // RFC 3339 in UTC
	}{
		{
			name: "daily in UTC",
			expr: "0 2 * * *", loc: time.UTC,
			from: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), to: time.Date(2026, 1, 3, 23, 0, 0, 0, time.UTC),
			want: []string{"2026-01-01T02:00:00Z", "2026-01-02T02:00:00Z", "2026-01-03T02:00:00Z"},
		},
		{
			name: "local wall clock across spring forward (Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST)",
			expr: "0 4 * * *", loc: berlin,
			from: time.Date(2026, 3, 28, 0, 0, 0, 0, berlin), to: time.Date(2026, 3, 30, 23, 0, 0, 0, berlin),
			// 04:00 CET = 03:00Z; 04:00 CEST = 02:00Z.
			want: []string{"2026-03-28T03:00:00Z", "2026-03-29T02:00:00Z", "2026-03-30T02:00:00Z"},
		},
		{
			name: "a time skipped by spring forward runs once, an hour later (Berlin 02:30)",
			expr: "30 2 * * *", loc: berlin,
			from: time.Date(2026, 3, 28, 0, 0, 0, 0, berlin), to: time.Date(2026, 3, 30, 23, 0, 0, 0, berlin),
			// 28th 02:30 CET = 01:30Z; 29th: 02:30 does not exist, 03:30 CEST = 01:30Z; 30th 02:30 CEST = 00:30Z.
			want: []string{"2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"},
		},
		{
			name: "a time repeated by fall back runs once (Berlin 02:30 on 25 October 2026)",
			expr: "30 2 * * *", loc: berlin,
			from: time.Date(2026, 10, 24, 12, 0, 0, 0, berlin), to: time.Date(2026, 10, 26, 23, 0, 0, 0, berlin),
			want: []string{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
		},
		{
			name: "hourly across fall back (New York, 1 November 2026): the repeated hour runs once",
			expr: "15 * * * *", loc: ny,
			from: time.Date(2026, 11, 1, 0, 0, 0, 0, ny), to: time.Date(2026, 11, 1, 3, 59, 0, 0, ny),
			// 00:15 EDT=04:15Z, 01:15 EDT=05:15Z, (01:15 EST=06:15Z skipped), 02:15 EST=07:15Z, 03:15 EST=08:15Z
			want: []string{"2026-11-01T04:15:00Z", "2026-11-01T05:15:00Z", "2026-11-01T07:15:00Z", "2026-11-01T08:15:00Z"},
		},
		{
			name: "a time skipped by spring forward west of UTC runs after the jump (New York 02:30 on 8 March 2026)",
			expr: "30 2 * * *", loc: ny,
			from: time.Date(2026, 3, 7, 12, 0, 0, 0, ny), to: time.Date(2026, 3, 9, 12, 0, 0, 0, ny),
			// 03:30 EDT = 07:30Z (not 01:30 EST, before the jump); then 02:30 EDT = 06:30Z.
			want: []string{"2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"},
		},
		{
			name: "weekly on Sundays",
			expr: "0 5 * * 0", loc: time.UTC,
			from: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), to: time.Date(2026, 1, 20, 0, 0, 0, 0, time.UTC),
			want: []string{"2026-01-04T05:00:00Z", "2026-01-11T05:00:00Z", "2026-01-18T05:00:00Z"},
		},
		{
			name: "CRON_TZ prefix overrides the zone",
			expr: "CRON_TZ=America/New_York 0 2 * * *", loc: time.UTC,
			from: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), to: time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC),
			want: []string{"2026-01-01T07:00:00Z", "2026-01-02T07:00:00Z"},
		},
		{
			name: "@daily descriptor",
			expr: "@daily", loc: berlin,
			from: time.Date(2026, 1, 1, 12, 0, 0, 0, berlin), to: time.Date(2026, 1, 3, 12, 0, 0, 0, berlin),
			want: []string{"2026-01-01T23:00:00Z", "2026-01-02T23:00:00Z"},
		},
		{
			name: "@every is absolute",
			expr: "@every 90m", loc: berlin,
			from: time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC), to: time.Date(2026, 3, 29, 3, 0, 0, 0, time.UTC),
			want: []string{"2026-03-29T01:30:00Z", "2026-03-29T03:00:00Z"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.expr, tc.loc)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range runs(s, tc.from, tc.to) {
				got = append(got, r.UTC().Format(time.RFC3339))
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("runs of %q in %s from %s to %s:\n got %v\nwant %v", tc.expr, tc.loc, tc.from, tc.to, got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, expr := range []string{"", "0 2 * *", "61 2 * * *", "0 2 * * * *", "CRON_TZ=Nowhere/Land 0 2 * * *", "@fortnightly"} {
		if _, err := Parse(expr, time.UTC); err == nil {
			t.Errorf("Parse(%q) = nil error", expr)
		} else if expr != "" && !strings.Contains(err.Error(), expr) && !strings.Contains(err.Error(), "Nowhere") {
			t.Errorf("Parse(%q) error does not quote the expression: %v", expr, err)
		}
	}
}

func TestNever(t *testing.T) {
	s, err := Parse("0 0 30 2 *", time.UTC) // 30 February
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); !got.IsZero() {
		t.Errorf("Next = %s, want never (zero)", got)
	}
}
