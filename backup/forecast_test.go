package backup

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

var day0 = time.Date(2027, 1, 1, 3, 0, 0, 0, time.UTC)

// daily returns n backups a day apart from day0, the i-th of size(i) bytes.
func daily(t Type, n int, size func(i int) int64) []SizePoint {
	var out []SizePoint
	for i := range n {
		out = append(out, SizePoint{ID: fmt.Sprintf("%s-%d", t, i), Time: day0.AddDate(0, 0, i), Bytes: size(i)})
	}
	return out
}

func TestFitSizeTrend(t *testing.T) {
	tests := []struct {
		name   string
		points []SizePoint
		fitted bool
		perDay float64
		at     time.Time
		wantAt int64
		note   string
	}{
		{"exact line", daily(Physical, 3, func(i int) int64 { return int64(100 + 100*i) }), true, 100, day0.AddDate(0, 0, 3), 400, ""},
		{"noisy line: least squares", []SizePoint{
			{Time: day0, Bytes: 100}, {Time: day0.AddDate(0, 0, 1), Bytes: 130}, {Time: day0.AddDate(0, 0, 2), Bytes: 140}, {Time: day0.AddDate(0, 0, 3), Bytes: 190},
		}, true, 28, day0.AddDate(0, 0, 4), 210, ""}, // x̄ 1.5, ȳ 140: 140/5 per day
		{"order does not matter", []SizePoint{
			{Time: day0.AddDate(0, 0, 2), Bytes: 300}, {Time: day0, Bytes: 100}, {Time: day0.AddDate(0, 0, 1), Bytes: 200},
		}, true, 100, day0.AddDate(0, 0, 10), 1100, ""},
		{"shrinking never projects below zero", daily(Logical, 3, func(i int) int64 { return int64(300 - 100*i) }), true, -100, day0.AddDate(0, 0, 30), 0, ""},
		{"two points: held at the newest", daily(Logical, 2, func(i int) int64 { return int64(10 + i) }), false, 0, day0.AddDate(1, 0, 0), 11, "only 2 complete backup(s); a trend needs at least 3"},
		{"one instant: held at the newest", []SizePoint{{Time: day0, Bytes: 5}, {Time: day0, Bytes: 7}, {Time: day0, Bytes: 9}}, false, 0, day0.AddDate(0, 1, 0), 9, "same time"},
		{"nothing", nil, false, 0, day0, 0, "no complete backups"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := FitSizeTrend(tc.points)
			if tr.Fitted != tc.fitted || math.Abs(tr.BytesPerDay-tc.perDay) > 1e-9 || tr.Points != len(tc.points) {
				t.Errorf("trend = %+v, want fitted %v, %g bytes/day", tr, tc.fitted, tc.perDay)
			}
			if got := tr.At(tc.at); got != tc.wantAt {
				t.Errorf("At(%s) = %d, want %d", tc.at, got, tc.wantAt)
			}
			if !strings.Contains(tr.Note, tc.note) || (tc.note == "") != (tr.Note == "") {
				t.Errorf("note %q, want %q", tr.Note, tc.note)
			}
		})
	}
}

func TestWALRate(t *testing.T) {
	seg := func(name string, at time.Time, size int64) WALObject {
		f, err := ParseWALName(name)
		if err != nil {
			t.Fatal(err)
		}
		return WALObject{WALFile: f, ObjectInfo: ObjectInfo{Size: size, ModTime: at}}
	}
	tests := []struct {
		name     string
		wal      []WALObject
		wantRate float64
		wantSpan time.Duration
	}{
		{"three segments over a day", []WALObject{
			seg("000000010000000000000003", day0.Add(24*time.Hour), 4*mib),
			seg("000000010000000000000001", day0, 4*mib),
			seg("000000010000000000000002", day0.Add(12*time.Hour), 4*mib),
		}, 8 * mib, 24 * time.Hour},
		{"history files do not count", []WALObject{
			seg("000000010000000000000001", day0, 4*mib),
			seg("00000002.history", day0.Add(time.Hour), 100),
			seg("000000020000000000000002", day0.Add(6*time.Hour), 2*mib),
		}, 8 * mib, 6 * time.Hour},
		{"one segment", []WALObject{seg("000000010000000000000001", day0, mib)}, 0, 0},
		{"stored at one instant", []WALObject{seg("000000010000000000000001", day0, mib), seg("000000010000000000000002", day0, mib)}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rate, span := WALRate(tc.wal)
			if math.Abs(rate-tc.wantRate) > 1e-6 || span != tc.wantSpan {
				t.Errorf("WALRate = %g/day over %s, want %g over %s", rate, span, tc.wantRate, tc.wantSpan)
			}
		})
	}
}

func TestForecastStorage(t *testing.T) {
	// Keep 3 daily and 2 monthly backups: small enough to count by hand.
	small := map[Type]RetentionPolicy{
		Physical: {Daily: 3, Monthly: 2, Location: time.UTC},
		Logical:  {Daily: 3, Monthly: 2, Location: time.UTC},
	}
	now := day0.Add(9*24*time.Hour + 9*time.Hour) // 2027-01-10 12:00, 10 daily backups taken
	type month struct {
		month    string
		retained int
		backups  int64
		window   float64 // days
		wal      int64
	}
	tests := []struct {
		name     string
		in       ForecastInput
		interval map[Type]time.Duration
		want     []month
		check    func(t *testing.T, f Forecast)
	}{
		{
			// Jan 31: the daily tier keeps Jan 29-31, the monthly Jan 31 (January is the
			// only month with backups). Feb 28: Feb 26-28, and the monthly tier Feb 28
			// and Jan 31. The window starts at the oldest daily backup (03:00 three days
			// before the month's end), and 1 GiB of WAL a day fills it.
			name: "flat daily physical backups",
			in: ForecastInput{Now: now, Months: 2, Policies: small, PITRTier: "daily", WALBytesPerDay: 1024 * mib,
				Backups: map[Type][]SizePoint{Physical: daily(Physical, 10, func(int) int64 { return 100 * mib })}},
			want: []month{
				{"2027-01", 3, 300 * mib, 2.875, int64(2.875 * 1024 * mib)},
				{"2027-02", 4, 400 * mib, 2.875, int64(2.875 * 1024 * mib)},
			},
			check: func(t *testing.T, f Forecast) {
				tf := f.Types[Physical]
				if !tf.Trend.Fitted || tf.Trend.BytesPerDay != 0 || tf.Interval != 24*time.Hour || !tf.IntervalEstimated {
					t.Errorf("physical: %+v, want a flat fitted trend and a daily interval estimated", tf)
				}
			},
		},
		{
			// 10 MiB more each day: Jan 29, 30, 31 are days 28-30 -> 380+390+400 MiB.
			name: "growing backups",
			in: ForecastInput{Now: now, Months: 1, Policies: small, PITRTier: "daily",
				Backups: map[Type][]SizePoint{Physical: daily(Physical, 10, func(i int) int64 { return int64(100+10*i) * mib })}},
			want: []month{{"2027-01", 3, 1170 * mib, 2.875, 0}},
		},
		{
			// Logical backups only: no window, so WAL is never pruned: 5 GiB stored now,
			// plus 1 GiB a day for the 21.5 days to Feb 1.
			name: "no physical backups: WAL keeps growing",
			in: ForecastInput{Now: now, Months: 1, Policies: small, WALBytesPerDay: 1024 * mib, WALStored: 5 * 1024 * mib,
				Backups: map[Type][]SizePoint{Logical: daily(Logical, 10, func(int) int64 { return 10 * mib })}},
			want: []month{{"2027-01", 3, 30 * mib, 0, int64(26.5 * 1024 * mib)}},
			check: func(t *testing.T, f Forecast) {
				if !f.Months[0].WALUnpruned {
					t.Error("WALUnpruned not set")
				}
			},
		},
		{
			// Weekly backups (an interval given, not estimated): by Jan 31, Jan 17, 24
			// and 31 are the last three with backups, and the monthly tier adds nothing.
			name: "interval given",
			in: ForecastInput{Now: now, Months: 1, Policies: small, Interval: map[Type]time.Duration{Physical: 7 * 24 * time.Hour},
				Backups: map[Type][]SizePoint{Physical: daily(Physical, 10, func(int) int64 { return mib })}},
			want: []month{{"2027-01", 3, 3 * mib, 14.875, 0}},
		},
		{
			// Two logical backups: no trend, held at the newest size; three physical
			// minutes apart: an hourly interval (the floor), so by Jan 31 the three
			// newest days hold the daily tier.
			name: "too few backups and manual ones",
			in: ForecastInput{Now: now, Months: 1, Policies: small,
				Backups: map[Type][]SizePoint{
					Logical: {{ID: "l1", Time: now.Add(-48 * time.Hour), Bytes: 5 * mib}, {ID: "l2", Time: now.Add(-24 * time.Hour), Bytes: 7 * mib}},
					Physical: {{ID: "p1", Time: now.Add(-3 * time.Minute), Bytes: mib}, {ID: "p2", Time: now.Add(-2 * time.Minute), Bytes: mib},
						{ID: "p3", Time: now.Add(-time.Minute), Bytes: mib}},
				}},
			want: []month{{"2027-01", 6, 3*mib + 21*mib, 2 + 1.0/1440, 0}},
			check: func(t *testing.T, f Forecast) {
				if tf := f.Types[Logical]; tf.Trend.Fitted || !strings.Contains(tf.Trend.Note, "only 2") || tf.Interval != 24*time.Hour {
					t.Errorf("logical: %+v, want no trend, a note and a daily interval", tf)
				}
				if tf := f.Types[Physical]; tf.Interval != MinForecastInterval {
					t.Errorf("physical interval %s, want the %s floor", tf.Interval, MinForecastInterval)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := ForecastStorage(tc.in)
			if len(f.Months) != len(tc.want) {
				t.Fatalf("%d months, want %d", len(f.Months), len(tc.want))
			}
			for i, w := range tc.want {
				g := f.Months[i]
				if g.Month != w.month || g.RetainedBackups != w.retained || g.BackupBytes != w.backups ||
					math.Abs(g.WindowDays-w.window) > 1e-9 || g.WALBytes != w.wal || g.TotalBytes != g.BackupBytes+g.WALBytes {
					t.Errorf("month %d = %s: %d backups, %d bytes, window %g days, WAL %d, total %d;\n want %s: %d backups, %d bytes, window %g days, WAL %d",
						i, g.Month, g.RetainedBackups, g.BackupBytes, g.WindowDays, g.WALBytes, g.TotalBytes, w.month, w.retained, w.backups, w.window, w.wal)
				}
			}
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}
