package backup_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones these tests use, whatever the machine has

	"github.com/hestami/hestami/backup"
)

// daily returns complete, verified backups at hh:mm local time on every day from
// first to last, except the days skip says to leave out.
func daily(loc *time.Location, first, last time.Time, hh, mm int, skip func(time.Time) bool) []backup.RetentionCandidate {
	var out []backup.RetentionCandidate
	for d := first; !d.After(last); d = d.AddDate(0, 0, 1) {
		if skip != nil && skip(d) {
			continue
		}
		t := time.Date(d.Year(), d.Month(), d.Day(), hh, mm, 0, 0, loc)
		out = append(out, backup.RetentionCandidate{ID: t.UTC().Format("20060102T1504Z"), Time: t, Complete: true, Verified: true, StopLSN: backup.LSN(t.Unix())})
	}
	return out
}

func kept(ds []backup.RetentionDecision, loc *time.Location) []string {
	var out []string
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.Time.In(loc).Format("2006-01-02"))
		}
	}
	return out
}

func date(loc *time.Location, y int, m time.Month, d int) time.Time {
	return time.Date(y, m, d, 0, 0, 0, 0, loc)
}

func TestPlanRetentionGFS(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	policy := backup.DefaultRetention()
	policy.Location = berlin
	wantDefault := []string{"2026-07-31", "2026-08-31", "2026-09-30", "2026-10-31", "2026-11-15", "2026-11-22",
		"2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, berlin)
	for _, tc := range []struct {
		name   string
		cands  []backup.RetentionCandidate
		policy func(*backup.RetentionPolicy)
		now    time.Time
		want   []string
	}{
		{
			name:  "three years of daily backups across DST changes and a leap day",
			cands: daily(berlin, date(berlin, 2024, 1, 1), date(berlin, 2026, 12, 4), 2, 30, nil),
			now:   now, want: wantDefault,
		},
		{
			name: "every other day: the daily tier spans 13 days",
			cands: daily(berlin, date(berlin, 2026, 1, 1), date(berlin, 2026, 12, 4), 2, 30, func(d time.Time) bool {
				return d.YearDay()%2 == 1 // 2026-12-04 is day 338: kept
			}),
			now: now,
			// Monthly: the newest backup of each month (Sep 30 and Aug 31 are odd days).
			want: []string{"2026-07-31", "2026-08-30", "2026-09-29", "2026-10-31", "2026-11-14",
				"2026-11-22", "2026-11-24", "2026-11-26", "2026-11-28", "2026-11-30", "2026-12-02", "2026-12-04"},
		},
		{
			name:  "a month without backups does not use up a monthly slot",
			cands: daily(berlin, date(berlin, 2026, 1, 1), date(berlin, 2026, 12, 4), 2, 30, func(d time.Time) bool { return d.Month() == time.September }),
			now:   now,
			want: []string{"2026-06-30", "2026-07-31", "2026-08-31", "2026-10-31", "2026-11-15", "2026-11-22",
				"2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"},
		},
		{
			name:  "leap day is its own day and the newest of February",
			cands: daily(berlin, date(berlin, 2024, 2, 20), date(berlin, 2024, 3, 1), 2, 30, nil),
			now:   time.Date(2024, 3, 1, 12, 0, 0, 0, berlin),
			policy: func(p *backup.RetentionPolicy) {
				p.Daily, p.Weekly, p.Monthly = 1, 0, 2
			},
			want: []string{"2024-02-29", "2024-03-01"},
		},
		{
			name:   "custom tiers",
			cands:  daily(berlin, date(berlin, 2026, 10, 1), date(berlin, 2026, 12, 4), 2, 30, nil),
			now:    now,
			policy: func(p *backup.RetentionPolicy) { p.Daily, p.Weekly, p.Monthly = 2, 0, 0 },
			want:   []string{"2026-12-03", "2026-12-04"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy
			if tc.policy != nil {
				tc.policy(&p)
			}
			got := kept(backup.PlanRetention(tc.cands, p, tc.now), berlin)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("kept %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestPlanRetentionDailyPruning runs the planner every day for three years and
// deletes what it says, as the daemon does: the end state equals a one-shot plan.
func TestPlanRetentionDailyPruning(t *testing.T) {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	p := backup.DefaultRetention()
	p.Location = loc
	all := daily(loc, date(loc, 2024, 1, 1), date(loc, 2026, 12, 4), 1, 15, nil)
	var have []backup.RetentionCandidate
	for _, c := range all {
		have = append(have, c)
		var next []backup.RetentionCandidate
		for _, d := range backup.PlanRetention(have, p, c.Time.Add(time.Hour)) {
			if d.Keep {
				next = append(next, find(have, d.ID))
			}
		}
		have = next
		if len(have) > p.Daily+p.Weekly+p.Monthly {
			t.Fatalf("%s: %d backups kept, more than the tiers allow", c.Time, len(have))
		}
	}
	oneShot := kept(backup.PlanRetention(all, p, all[len(all)-1].Time.Add(time.Hour)), loc)
	var got []string
	for _, c := range have {
		got = append(got, c.Time.In(loc).Format("2006-01-02"))
	}
	if !slices.Equal(got, oneShot) {
		t.Fatalf("after daily pruning: %v\none-shot plan:        %v", got, oneShot)
	}
}

func find(cs []backup.RetentionCandidate, id string) backup.RetentionCandidate {
	for _, c := range cs {
		if c.ID == id {
			return c
		}
	}
	panic("unknown id " + id)
}

func TestPlanRetentionSafety(t *testing.T) {
	utc := time.UTC
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, utc)
	p := backup.RetentionPolicy{Daily: 2, Location: utc, IncompleteGrace: 24 * time.Hour}
	base := func() []backup.RetentionCandidate {
		return daily(utc, date(utc, 2026, 11, 28), date(utc, 2026, 12, 4), 3, 0, nil)
	}
	decisions := func(cs []backup.RetentionCandidate, now time.Time) map[string]backup.RetentionDecision {
		m := map[string]backup.RetentionDecision{}
		for _, d := range backup.PlanRetention(cs, p, now) {
			m[d.Time.Format("01-02T15")] = d
		}
		return m
	}
	t.Run("nothing deleted until a newer backup is verified", func(t *testing.T) {
		cs := base()
		for i := range cs {
			cs[i].Verified = cs[i].Time.Month() == time.November && cs[i].Time.Day() < 30 // only Nov 28 and 29
		}
		d := decisions(cs, now)
		if d["11-28T03"].Keep {
			t.Errorf("Nov 28 kept although Nov 29 is verified: %+v", d["11-28T03"])
		}
		for _, k := range []string{"11-29T03", "11-30T03", "12-01T03", "12-02T03"} {
			if !d[k].Keep || !strings.Contains(strings.Join(d[k].Reasons, ","), "verification") {
				t.Errorf("%s: %+v, want kept until a newer backup is verified", k, d[k])
			}
		}
	})
	t.Run("failed backups", func(t *testing.T) {
		cs := base()
		cs = append(cs,
			backup.RetentionCandidate{ID: "failed-old", Time: time.Date(2026, 12, 2, 4, 0, 0, 0, utc)},
			backup.RetentionCandidate{ID: "running", Time: time.Date(2026, 12, 4, 11, 0, 0, 0, utc)})
		d := decisions(cs, now)
		if d["12-02T04"].Keep || d["12-02T04"].Reasons[0] != "incomplete (failed or interrupted)" {
			t.Errorf("old incomplete backup: %+v, want deleted", d["12-02T04"])
		}
		if !d["12-04T11"].Keep {
			t.Errorf("recent incomplete backup deleted: %+v", d["12-04T11"])
		}
		if !d["12-04T03"].Keep || !d["12-03T03"].Keep {
			t.Error("an incomplete backup used up a daily slot")
		}
	})
	t.Run("a clock that jumped back keeps the future backups", func(t *testing.T) {
		cs := base()
		past := time.Date(2026, 12, 1, 12, 0, 0, 0, utc) // the clock now says Dec 1
		d := decisions(cs, past)
		for _, k := range []string{"12-02T03", "12-03T03", "12-04T03"} {
			if !d[k].Keep {
				t.Errorf("%s (after now) deleted", k)
			}
		}
		if !d["12-01T03"].Keep || !d["11-30T03"].Keep {
			t.Errorf("the daily tier at Dec 1 should hold Nov 30 and Dec 1: %+v %+v", d["11-30T03"], d["12-01T03"])
		}
		if d["11-29T03"].Keep {
			t.Errorf("Nov 29 kept at Dec 1 with 2 daily: %+v", d["11-29T03"])
		}
	})
	t.Run("the newest backup is kept even with empty tiers", func(t *testing.T) {
		cs := base()
		d := backup.PlanRetention(cs, backup.RetentionPolicy{Monthly: 0, Location: utc}, now)
		if !d[len(d)-1].Keep || d[len(d)-2].Keep {
			t.Errorf("decisions %+v", d)
		}
	})
	t.Run("DST: two backups on one local day keep only the newer", func(t *testing.T) {
		ny, err := time.LoadLocation("America/New_York")
		if err != nil {
			t.Fatal(err)
		}
		// 04:30 UTC is 00:30 EDT on Nov 1 2026, and 23:30 EST on Nov 1 the next night.
		cs := []backup.RetentionCandidate{
			{ID: "a", Time: time.Date(2026, 11, 1, 4, 30, 0, 0, utc), Complete: true, Verified: true},
			{ID: "b", Time: time.Date(2026, 11, 2, 4, 30, 0, 0, utc), Complete: true, Verified: true},
			{ID: "c", Time: time.Date(2026, 11, 3, 4, 30, 0, 0, utc), Complete: true, Verified: true},
		}
		ds := backup.PlanRetention(cs, backup.RetentionPolicy{Daily: 7, Location: ny}, time.Date(2026, 11, 3, 12, 0, 0, 0, utc))
		got := fmt.Sprint(ds[0].Keep, ds[1].Keep, ds[2].Keep)
		if got != "false true true" {
			t.Errorf("keep = %s, want false true true (a and b are both Nov 1 in New York): %+v", got, ds)
		}
	})
}
