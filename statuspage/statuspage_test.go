package statuspage

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
)

type fakeSource struct {
	o   *backup.Overview
	err error
}

func (f fakeSource) Overview(context.Context) (*backup.Overview, error) { return f.o, f.err }

var now = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func complete(t backup.Type, id string, start time.Time, stored int64) backup.BackupSummary {
	return backup.BackupSummary{ID: id, Type: t, Status: backup.StatusComplete, StartTime: start, StopTime: start.Add(90 * time.Second),
		Size: stored * 3, StoredSize: stored}
}

func sampleOverview() *backup.Overview {
	free := uint64(30 << 30)
	last := now.Add(-2 * time.Minute)
	failed := now.Add(-time.Hour)
	o := &backup.Overview{
		Time:    now,
		Storage: "file:///backup",
		Backups: []backup.BackupSummary{
			complete(backup.Physical, "physical-20261201T030000Z", now.Add(-81*time.Hour), 100<<20),
			complete(backup.Logical, "logical-20261201T040000Z", now.Add(-80*time.Hour), 20<<20),
			complete(backup.Physical, "physical-20261202T030000Z", now.Add(-57*time.Hour), 110<<20),
			complete(backup.Physical, "physical-20261203T030000Z", now.Add(-33*time.Hour), 125<<20),
			{ID: "physical-20261204T030000Z", Type: backup.Physical, Status: backup.StatusIncomplete, StartTime: now.Add(-9 * time.Hour), StoredSize: 5 << 20},
			complete(backup.Logical, "logical-20261204T040000Z", now.Add(-8*time.Hour), 22<<20),
		},
		Archiver: &backup.ArchiverStats{ArchivedCount: 120, LastArchivedWAL: "000000010000000000000078", LastArchivedTime: &last,
			FailedCount: 2, LastFailedWAL: "000000010000000000000070", LastFailedTime: &failed, CurrentWAL: "000000010000000000000079", LagSeconds: 120},
		Timelines: []backup.TimelineStatus{
			{Timeline: 1, Segments: 100, First: "000000010000000000000001", Last: "000000010000000000000078", LastTime: last, StoredSize: 300 << 20,
				Gaps: []backup.Gap{{After: "000000010000000000000010", Before: "000000010000000000000014", Missing: 3}}},
			{Timeline: 2, Segments: 4, First: "000000020000000000000078", Last: "00000002000000000000007B", LastTime: last, History: true, StoredSize: 12 << 20, Gaps: []backup.Gap{}},
		},
		Drills: []backup.DrillRecord{
			{Time: now.Add(-30 * time.Hour), BackupID: "physical-20261203T030000Z", Type: backup.Physical, OK: true, RTOSeconds: 95.5, RPOSeconds: 40, Checks: []string{"pg_amcheck: ok"}},
		},
		Usage: []backup.StorageUsage{{Name: "repository", URL: "file:///backup", Used: 700 << 20, Objects: 140, Free: &free}},
	}
	o.Backups[3].Verification = &backup.VerificationRecord{Time: now.Add(-20 * time.Hour), OK: true, Method: "restore-test"}
	return o
}

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestPage(t *testing.T) {
	h := NewHandler(fakeSource{o: sampleOverview()}, Options{})
	res, body := get(t, h, http.MethodGet, "/")
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q does not forbid external assets and scripts", csp)
	}
	for _, want := range []string{
		`<html lang="en">`,
		`<th scope="row"><code>physical-20261203T030000Z</code></th>`,
		`<tr class="backup problem" data-backup="physical-20261204T030000Z">`, // the incomplete one stands out
		`<tr class="timeline gap">`,
		`3 segment(s) missing between <code>000000010000000000000010</code> and <code>000000010000000000000014</code>`,
		"Timeline 1 has 1 gap(s)",
		"1m36s", // the drill's RTO
		"passed (restore-test)",
		"30.0 GiB", // free
		`role="img"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script") || regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(body) {
		t.Error("page has a script or an external asset")
	}
	// The chart: one marker per complete backup (3 physical, 2 logical), none for the
	// incomplete one, and valid XML.
	svg := body[strings.Index(body, "<svg") : strings.Index(body, "</svg>")+len("</svg>")]
	if n := strings.Count(svg, `class="point"`); n != 5 {
		t.Errorf("chart has %d points, want 5", n)
	}
	if strings.Contains(svg, "physical-20261204T030000Z") {
		t.Error("the chart shows the incomplete backup")
	}
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil {
		t.Errorf("chart is not well-formed XML: %v", err)
	}
}

func TestPageProblems(t *testing.T) {
	tests := []struct {
		name   string
		change func(o *backup.Overview)
		want   string // in the "Needs attention" list; "" for "All good"
	}{
		{"all good", func(o *backup.Overview) {
			o.Timelines[0].Gaps = nil
			o.Archiver.LastFailedTime = nil
			o.Backups = o.Backups[:4]
			o.Backups = append(o.Backups, complete(backup.Physical, "physical-20261204T030000Z", now.Add(-9*time.Hour), 1<<20),
				complete(backup.Logical, "logical-20261204T040000Z", now.Add(-8*time.Hour), 1<<20))
		}, ""},
		{"gap", func(o *backup.Overview) {}, "gap(s) in its archived WAL"},
		{"stale backup", func(o *backup.Overview) {}, "The newest complete physical backup (physical-20261203T030000Z) finished 32 h ago: older than 26 h."},
		{"archiver failing", func(o *backup.Overview) {
			t := now
			o.Archiver.LastFailedTime = &t
		}, "last attempt to archive WAL (000000010000000000000070) failed"},
		{"database down", func(o *backup.Overview) {
			o.Archiver, o.ArchiverError = nil, "connect to PostgreSQL at 127.0.0.1:5432 as postgres: refused"
		}, "archiver statistics are unavailable: connect to PostgreSQL"},
		{"failed drill", func(o *backup.Overview) {
			o.Drills = append(o.Drills, backup.DrillRecord{Time: now, BackupID: "logical-20261204T040000Z", Type: backup.Logical, Error: "restore failed: <boom>"})
		}, "The last restore drill (of logical-20261204T040000Z) failed: restore failed: &lt;boom&gt;"},
		{"no backups", func(o *backup.Overview) { o.Backups = nil }, "There is no complete logical backup."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := sampleOverview()
			tc.change(o)
			_, body := get(t, NewHandler(fakeSource{o: o}, Options{}), http.MethodGet, "/")
			if tc.want == "" {
				if !strings.Contains(body, "All good") || strings.Contains(body, "Needs attention") {
					t.Errorf("want All good, page says otherwise")
				}
				return
			}
			if !strings.Contains(body, "Needs attention") || !strings.Contains(body, tc.want) {
				t.Errorf("page does not say %q", tc.want)
			}
		})
	}
}

func TestPageRequests(t *testing.T) {
	h := NewHandler(fakeSource{o: sampleOverview()}, Options{})
	if res, _ := get(t, h, http.MethodGet, "/nothing"); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing = %d, want 404", res.StatusCode)
	}
	if res, _ := get(t, h, http.MethodPost, "/"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", res.StatusCode)
	}
	if res, body := get(t, h, http.MethodHead, "/"); res.StatusCode != http.StatusOK || body != "" || res.Header.Get("Content-Length") == "" {
		t.Errorf("HEAD / = %d with %d bytes of body", res.StatusCode, len(body))
	}
	down := NewHandler(fakeSource{err: context.DeadlineExceeded}, Options{})
	if res, body := get(t, down, http.MethodGet, "/"); res.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "deadline") {
		t.Errorf("GET / with the state unreadable = %d %q, want 503 without internals", res.StatusCode, body)
	}
}

func TestSizeChart(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		svg := string(sizeChart([]series{{Name: "physical"}}))
		if !strings.Contains(svg, "No complete backups yet") || strings.Contains(svg, `class="point"`) {
			t.Errorf("empty chart: %s", svg)
		}
	})
	t.Run("one point", func(t *testing.T) {
		svg := string(sizeChart([]series{{Name: "logical", Marker: "square", Points: []point{{ID: "logical-1", Time: now, Bytes: 0}}}}))
		if strings.Count(svg, `class="point"`) != 1 || strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
			t.Errorf("single zero-size point: %s", svg)
		}
	})
	t.Run("points lie on their sizes", func(t *testing.T) {
		svg := string(sizeChart([]series{{Name: "physical", Marker: "circle", Points: []point{
			{ID: "a", Time: now, Bytes: 0}, {ID: "b", Time: now.Add(time.Hour), Bytes: 4 << 20}}}}))
		// 4 MiB over 4 ticks: 1 MiB steps, the top tick is 4 MiB and b sits on it.
		if !strings.Contains(svg, ">4.0 MiB</text>") || !strings.Contains(svg, ">0 B</text>") {
			t.Errorf("y axis labels missing: %s", svg)
		}
		cy := regexp.MustCompile(`data-backup="b"[^>]*><circle cx="([\d.]+)" cy="([\d.]+)"`).FindStringSubmatch(svg)
		if cy == nil || cy[1] != "744.0" || cy[2] != "16.0" {
			t.Errorf("point b at %v, want the top right corner of the plot (744.0, 16.0)", cy)
		}
	})
}

func TestSizeTicks(t *testing.T) {
	tests := []struct {
		max      int64
		wantStep int64
	}{
		{0, 1},
		{3, 1},
		{1000, 250},
		{4 << 20, 1 << 20},
		{5 << 30, 2 << 30},
		{900 << 20, 250 << 20},
	}
	for _, tc := range tests {
		ticks, top := sizeTicks(tc.max, 4)
		if len(ticks) != 5 || ticks[1] != tc.wantStep || top < tc.max || top != ticks[4] {
			t.Errorf("sizeTicks(%d) = %v (top %d), want steps of %d covering it", tc.max, ticks, top, tc.wantStep)
		}
	}
}

func TestPageJobs(t *testing.T) {
	jobs := func() []Job {
		return []Job{
			{Name: "backup-physical", Next: now.Add(15 * time.Hour), LastEnd: now.Add(-9 * time.Hour), LastDuration: 95 * time.Second, LastOutcome: "ok"},
			{Name: "prune", LastEnd: now.Add(-time.Hour), LastDuration: time.Second, LastOutcome: "failed", LastError: "storage <unreachable>"},
			{Name: "drill-logical", Running: true},
		}
	}
	_, body := get(t, NewHandler(fakeSource{o: sampleOverview()}, Options{Jobs: jobs}), http.MethodGet, "/")
	for _, want := range []string{
		`<h2 id="jobs-h">Daemon jobs</h2>`,
		`<tr class="job problem">`,
		"The daemon&#39;s job prune failed 1 h ago: storage &lt;unreachable&gt;",
		"in 15 h",
		"never ran",
		"1m35s",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	_, body = get(t, NewHandler(fakeSource{o: sampleOverview()}, Options{}), http.MethodGet, "/")
	if strings.Contains(body, "Daemon jobs") {
		t.Error("a page without Options.Jobs shows a jobs section")
	}
}
