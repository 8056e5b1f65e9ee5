package backup

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// MinTrendPoints is how many backups a size trend needs to be fitted.
const MinTrendPoints = 3

// SizePoint is one complete backup's stored size at its start time.
type SizePoint struct {
	ID    string    `json:"id"`
	Time  time.Time `json:"time"`
	Bytes int64     `json:"bytes"`
}

// SizeTrend is the stored size of a type's backups as a straight line over time.
type SizeTrend struct {
	// Points is how many backups the trend is made of.
	Points int `json:"points"`
	// Fitted says a line was fitted by least squares; false (fewer than
	// MinTrendPoints backups, or all at one time): sizes are held at the newest.
	Fitted bool `json:"fitted"`
	// BytesPerDay is the growth (negative: shrinking).
	BytesPerDay float64 `json:"bytes_per_day"`
	// Base is the size the line gives at Origin.
	Origin time.Time `json:"origin"`
	Base   float64   `json:"base_bytes"`
	// Note says why the trend is not fitted.
	Note string `json:"note,omitempty"`
}

// At returns the size the trend projects at t, never negative.
func (s SizeTrend) At(t time.Time) int64 {
	v := s.Base + s.BytesPerDay*t.Sub(s.Origin).Hours()/24
	if v < 0 || math.IsNaN(v) {
		return 0
	}
	return int64(math.Round(v))
}

// FitSizeTrend fits stored size against time by least squares. With fewer than
// MinTrendPoints points (or all at one instant) it holds the newest size flat and
// says so in Note; with none, the trend is of size 0.
func FitSizeTrend(points []SizePoint) SizeTrend {
	pts := slices.Clone(points)
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].Time.Before(pts[j].Time) })
	tr := SizeTrend{Points: len(pts)}
	if len(pts) == 0 {
		tr.Note = "no complete backups"
		return tr
	}
	last := pts[len(pts)-1]
	flat := func(note string) SizeTrend {
		tr.Origin, tr.Base, tr.Note = last.Time, float64(last.Bytes), note
		return tr
	}
	if len(pts) < MinTrendPoints {
		return flat(fmt.Sprintf("only %d complete backup(s); a trend needs at least %d: sizes held at the newest", len(pts), MinTrendPoints))
	}
	origin := pts[0].Time
	var sx, sy float64
	for _, p := range pts {
		sx += p.Time.Sub(origin).Hours() / 24
		sy += float64(p.Bytes)
	}
	n := float64(len(pts))
	mx, my := sx/n, sy/n
	var sxx, sxy float64
	for _, p := range pts {
		dx := p.Time.Sub(origin).Hours()/24 - mx
		sxx += dx * dx
		sxy += dx * (float64(p.Bytes) - my)
	}
	if sxx == 0 {
		return flat("every backup has the same time: no trend; sizes held at the newest")
	}
	slope := sxy / sxx
	tr.Fitted, tr.BytesPerDay, tr.Origin, tr.Base = true, slope, origin, my-slope*mx
	return tr
}

// WALRate returns how many stored bytes of WAL segments are archived per day,
// from when each was stored, and the span measured. Fewer than two segments, or
// all stored at one instant, give 0.
func WALRate(wal []WALObject) (bytesPerDay float64, span time.Duration) {
	var segs []WALObject
	for _, w := range wal {
		if w.Kind == WALSegment {
			segs = append(segs, w)
		}
	}
	if len(segs) < 2 {
		return 0, 0
	}
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].ModTime.Before(segs[j].ModTime) })
	span = segs[len(segs)-1].ModTime.Sub(segs[0].ModTime)
	if span <= 0 {
		return 0, 0
	}
	// n segments stored over n-1 intervals: the first one's bytes predate the span.
	var bytes int64
	for _, s := range segs[1:] {
		bytes += s.Size
	}
	return float64(bytes) / (span.Hours() / 24), span
}

// ForecastInput is what ForecastStorage projects from.
type ForecastInput struct {
	// Now is when the projection starts; months end in the physical policy's
	// time zone.
	Now    time.Time
	Months int
	// Backups are the complete backups of each type (any order).
	Backups map[Type][]SizePoint
	// Policies is the retention per type (missing: DefaultRetention).
	Policies map[Type]RetentionPolicy
	// Interval is how often each type is backed up; 0: estimated from Backups (the
	// median interval, at least MinForecastInterval; a day without two backups).
	Interval map[Type]time.Duration
	// PITRTier is the tier whose oldest physical backup starts the WAL window.
	PITRTier string
	// WALBytesPerDay is the rate WAL is archived at (see WALRate).
	WALBytesPerDay float64
	// WALStored is the WAL stored now; it only grows while no physical backup starts
	// a window.
	WALStored int64
}

// MinForecastInterval bounds an estimated backup interval from below: backups taken
// by hand minutes apart say little about the schedule.
const MinForecastInterval = time.Hour

// TypeForecast is how one type is projected.
type TypeForecast struct {
	Trend SizeTrend `json:"trend"`
	// Interval is the time between two projected backups; IntervalHours the same
	// for JSON.
	Interval      time.Duration `json:"-"`
	IntervalHours float64       `json:"interval_hours"`
	// IntervalEstimated says Interval was estimated from the existing backups.
	IntervalEstimated bool `json:"interval_estimated"`
}

// ForecastMonth is the storage retention needs at the end of one month.
type ForecastMonth struct {
	// Month is "2027-01"; End is the first instant after it.
	Month string    `json:"month"`
	End   time.Time `json:"end"`
	// Retained is how many backups of each type retention keeps then, Bytes their
	// stored size.
	Retained map[Type]int   `json:"retained"`
	Bytes    map[Type]int64 `json:"bytes"`
	// RetainedBackups and BackupBytes add the types up.
	RetainedBackups int   `json:"retained_backups"`
	BackupBytes     int64 `json:"backup_bytes"`
	// WindowDays is the point-in-time window's length then, WALBytes the WAL it
	// holds. WALUnpruned says no physical backup starts a window, so prune keeps
	// every WAL file: WALBytes is what is stored now plus what is archived until then.
	WindowDays  float64 `json:"pitr_window_days"`
	WALUnpruned bool    `json:"wal_unpruned,omitempty"`
	WALBytes    int64   `json:"wal_bytes"`
	TotalBytes  int64   `json:"total_bytes"`
}

// Forecast is a projection of the storage retention will need.
type Forecast struct {
	At             time.Time             `json:"at"`
	Types          map[Type]TypeForecast `json:"types"`
	WALBytesPerDay float64               `json:"wal_bytes_per_day"`
	Months         []ForecastMonth       `json:"months"`
}

// ForecastStorage projects, month by month, what the retention policies keep: it
// fits each type's size trend, adds a backup every Interval with the size the trend
// gives, and applies PlanRetention at each month's end (every backup assumed to pass
// verification, as the daemon verifies them). WAL is the archive rate times the
// point-in-time window's length then (from the start of the window's physical
// backup, as prune keeps it); the few segments older kept backups need are not
// counted. It is a pure function of its input.
func ForecastStorage(in ForecastInput) Forecast {
	f := Forecast{At: in.Now, Types: map[Type]TypeForecast{}, WALBytesPerDay: in.WALBytesPerDay}
	policy := func(t Type) RetentionPolicy {
		if p, ok := in.Policies[t]; ok {
			return p
		}
		return DefaultRetention()
	}
	loc := policy(Physical).Location
	if loc == nil {
		loc = time.UTC
	}
	if in.Months <= 0 {
		return f
	}
	// Month ends: the first instant of each following month.
	y, m, _ := in.Now.In(loc).Date()
	var ends []time.Time
	for i := 1; i <= in.Months; i++ {
		ends = append(ends, time.Date(y, m+time.Month(i), 1, 0, 0, 0, 0, loc))
	}
	horizon := ends[len(ends)-1]

	// Every backup, existing and projected, per type, oldest first.
	all := map[Type][]SizePoint{}
	for _, t := range []Type{Physical, Logical} {
		pts := slices.Clone(in.Backups[t])
		sort.SliceStable(pts, func(i, j int) bool { return pts[i].Time.Before(pts[j].Time) })
		if len(pts) == 0 {
			continue // nothing to project from
		}
		tf := TypeForecast{Trend: FitSizeTrend(pts), Interval: in.Interval[t]}
		if tf.Interval <= 0 {
			tf.Interval, tf.IntervalEstimated = estimateInterval(pts), true
		}
		tf.IntervalHours = tf.Interval.Hours()
		f.Types[t] = tf
		next := pts[len(pts)-1].Time.Add(tf.Interval)
		if next.Before(in.Now) {
			next = in.Now // overdue: the next one comes now
		}
		for i := 0; !next.After(horizon); i++ {
			pts = append(pts, SizePoint{ID: fmt.Sprintf("%s-forecast-%d", t, i), Time: next, Bytes: tf.Trend.At(next)})
			next = next.Add(tf.Interval)
		}
		all[t] = pts
	}

	for _, end := range ends {
		mon := ForecastMonth{Month: end.AddDate(0, -1, 0).Format("2006-01"), End: end, Retained: map[Type]int{}, Bytes: map[Type]int64{}}
		var physDecisions []RetentionDecision
		byID := map[string]*Manifest{}
		verified := map[string]bool{}
		for _, t := range []Type{Physical, Logical} {
			pts := all[t]
			if len(pts) == 0 {
				continue
			}
			size := map[string]int64{}
			var cands []RetentionCandidate
			for _, p := range pts {
				if p.Time.After(end) {
					break
				}
				size[p.ID] = p.Bytes
				cands = append(cands, RetentionCandidate{ID: p.ID, Time: p.Time, Complete: true, Verified: true})
				if t == Physical {
					byID[p.ID] = &Manifest{ID: p.ID, Type: Physical, StartTime: p.Time}
					verified[p.ID] = true
				}
			}
			ds := PlanRetention(cands, policy(t), end)
			for _, d := range ds {
				if d.Keep {
					mon.Retained[t]++
					mon.Bytes[t] += size[d.ID]
				}
			}
			mon.RetainedBackups += mon.Retained[t]
			mon.BackupBytes += mon.Bytes[t]
			if t == Physical {
				physDecisions = ds
			}
		}
		if w := PITRWindowStart(physDecisions, byID, verified, in.PITRTier); w != nil {
			mon.WindowDays = end.Sub(w.StartTime).Hours() / 24
			mon.WALBytes = int64(math.Round(in.WALBytesPerDay * mon.WindowDays))
		} else {
			mon.WALUnpruned = true
			mon.WALBytes = in.WALStored + int64(math.Round(in.WALBytesPerDay*end.Sub(in.Now).Hours()/24))
		}
		mon.TotalBytes = mon.BackupBytes + mon.WALBytes
		f.Months = append(f.Months, mon)
	}
	return f
}

// estimateInterval is the median interval between consecutive points (sorted), at
// least MinForecastInterval; a day when there are fewer than two.
func estimateInterval(pts []SizePoint) time.Duration {
	if len(pts) < 2 {
		return 24 * time.Hour
	}
	gaps := make([]int64, 0, len(pts)-1)
	for i := 1; i < len(pts); i++ {
		gaps = append(gaps, int64(pts[i].Time.Sub(pts[i-1].Time)))
	}
	d := time.Duration(median(gaps))
	return max(d, MinForecastInterval)
}
