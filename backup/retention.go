package backup

import (
	"fmt"
	"sort"
	"time"
)

// RetentionPolicy is a grandfather-father-son policy for one backup type: keep the
// newest backup of each of the last Daily days, Weekly ISO weeks and Monthly months
// that have a backup (missing days do not use up the tiers).
type RetentionPolicy struct {
	Daily, Weekly, Monthly int
	// Location is the calendar days, weeks and months are counted in; nil: UTC.
	Location *time.Location
	// IncompleteGrace is how long an incomplete backup (failed, interrupted, or
	// still running) is left alone; older ones are deleted.
	IncompleteGrace time.Duration
}

// DefaultRetention is 7 daily, 4 weekly and 6 monthly backups.
func DefaultRetention() RetentionPolicy {
	return RetentionPolicy{Daily: 7, Weekly: 4, Monthly: 6, Location: time.UTC, IncompleteGrace: 24 * time.Hour}
}

// Validate checks the policy.
func (p RetentionPolicy) Validate() error {
	if p.Daily < 0 || p.Weekly < 0 || p.Monthly < 0 {
		return fmt.Errorf("retention: negative tier (daily %d, weekly %d, monthly %d)", p.Daily, p.Weekly, p.Monthly)
	}
	if p.Daily+p.Weekly+p.Monthly == 0 {
		return fmt.Errorf("retention: every tier is 0, which would delete every backup but the newest; keep at least one daily backup")
	}
	return nil
}

// RetentionCandidate is one backup as the planner sees it.
type RetentionCandidate struct {
	ID       string
	Time     time.Time // start time
	StopLSN  LSN
	Complete bool
	// Verified means the backup passed verification; a backup is deleted only once a
	// newer verified backup of its type exists.
	Verified bool
}

// RetentionDecision is the planner's verdict on one backup.
type RetentionDecision struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Keep bool      `json:"keep"`
	// Reasons lists why a backup is kept (the tiers it stands for: "daily
	// 2026-12-03", "weekly 2026-W49", "monthly 2026-11", "newest", ...) or deleted.
	Reasons []string `json:"reasons"`
}

// PlanRetention decides, for backups of one type, which to keep and which to delete
// at time now. It is a pure function of its arguments. Rules:
//   - the newest backup of each of the last Daily days, Weekly weeks and Monthly
//     months that have complete backups is kept, with its tiers as reasons;
//   - the newest complete backup, and any backup dated after now (a clock that
//     jumped), are always kept;
//   - a backup outside every tier is deleted only if a newer verified complete
//     backup exists; otherwise it is kept, "waiting for a verified newer backup";
//   - incomplete backups are kept within IncompleteGrace, then deleted (again only
//     once a newer verified backup exists).
//
// Backups are ordered by time, then stop LSN, never by name. Decisions come back
// oldest first.
func PlanRetention(cands []RetentionCandidate, p RetentionPolicy, now time.Time) []RetentionDecision {
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	sorted := append([]RetentionCandidate(nil), cands...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if !sorted[i].Time.Equal(sorted[j].Time) {
			return sorted[i].Time.Before(sorted[j].Time)
		}
		return sorted[i].StopLSN < sorted[j].StopLSN
	})
	reasons := make([][]string, len(sorted))

	// Tiers: walk complete backups up to now, newest first, one per bucket.
	tier := func(name string, n int, bucket func(time.Time) string) {
		if n == 0 {
			return
		}
		seen := map[string]bool{}
		for i := len(sorted) - 1; i >= 0 && len(seen) < n; i-- {
			c := sorted[i]
			if !c.Complete || c.Time.After(now) {
				continue
			}
			b := bucket(c.Time.In(loc))
			if seen[b] {
				continue
			}
			seen[b] = true
			reasons[i] = append(reasons[i], name+" "+b)
		}
	}
	tier("daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") })
	tier("weekly", p.Weekly, func(t time.Time) string {
		y, w := t.ISOWeek()
		return fmt.Sprintf("%04d-W%02d", y, w)
	})
	tier("monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") })

	newestComplete := -1
	for i := range sorted {
		if sorted[i].Complete && !sorted[i].Time.After(now) {
			newestComplete = i
		}
	}
	// newerVerified[i]: a verified complete backup exists after position i.
	newerVerified := make([]bool, len(sorted))
	found := false
	for i := len(sorted) - 1; i >= 0; i-- {
		newerVerified[i] = found
		if sorted[i].Complete && sorted[i].Verified {
			found = true
		}
	}

	out := make([]RetentionDecision, len(sorted))
	for i, c := range sorted {
		d := RetentionDecision{ID: c.ID, Time: c.Time, Reasons: reasons[i]}
		switch {
		case c.Time.After(now):
			d.Keep, d.Reasons = true, append(d.Reasons, "dated after now (clock change?): never deleted")
		case i == newestComplete:
			d.Keep, d.Reasons = true, append(d.Reasons, "newest complete backup")
		case len(d.Reasons) > 0:
			d.Keep = true
		case !c.Complete && now.Sub(c.Time) < p.IncompleteGrace:
			d.Keep, d.Reasons = true, []string{"incomplete: may still be running"}
		case !newerVerified[i]:
			d.Keep, d.Reasons = true, []string{"outside every tier, but kept until a newer backup has passed verification"}
		case !c.Complete:
			d.Reasons = []string{"incomplete (failed or interrupted)"}
		default:
			d.Reasons = []string{"outside every tier"}
		}
		out[i] = d
	}
	return out
}
