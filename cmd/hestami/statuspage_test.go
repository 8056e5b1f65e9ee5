package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/daemon"
	"github.com/hestami/hestami/pgtest"
)

// chromiumPath finds Debian's Chromium (scripts/install-deps.sh installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium in PATH: run scripts/install-deps.sh (it installs Debian's chromium package)")
	return ""
}

// browser starts a headless Chromium with a fresh profile and returns a context
// driving one tab of it.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root in CI
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	return ctx
}

// run runs a browser action and returns its value, failing the test on error.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return v
}

// TestStatusPageInBrowser takes real backups with the CLI, serves the daemon's
// monitoring handler on loopback and loads the status page in Chromium: the tables
// list the backups and the size chart has one point per complete backup, at its
// stored size.
func TestStatusPageInBrowser(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	c := a.Cluster
	pgtest.Exec(t, c, "postgres", "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	mustRun(t, a.Config, "backup", "push", "--type", "logical")
	mustRun(t, a.Config, "backup", "push", "--type", "physical")
	pgtest.Exec(t, c, "postgres", "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(20001, 80000) g")
	mustRun(t, a.Config, "backup", "push", "--type", "logical")
	mustRun(t, a.Config, "backup", "push", "--type", "physical")
	mustRun(t, a.Config, "backup", "verify", "latest")
	rows := listBackups(t, a.Config)
	if len(rows) != 4 {
		t.Fatalf("backup list = %+v, want 4 backups", rows)
	}

	// The handler the daemon serves, wired as the daemon wires it.
	p := NewProgram(strings.NewReader(""), &strings.Builder{}, &strings.Builder{}, func(k string) (string, bool) {
		if k == "HESTAMI_CONFIG" {
			return a.Config, true
		}
		return "", false
	})
	if err := p.setup(); err != nil {
		t.Fatal(err)
	}
	jobEnd := time.Now().Add(-time.Minute)
	h, err := p.daemonMonitoring(func() []daemon.JobStatus {
		return []daemon.JobStatus{
			{Name: "backup-physical", Next: jobEnd.Add(24 * time.Hour), LastStart: jobEnd.Add(-time.Second), LastEnd: jobEnd, LastDuration: time.Second, LastOutcome: daemon.OutcomeOK},
			{Name: "prune", Next: jobEnd.Add(time.Hour)},
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	ctx := browser(t)
	if err := chromedp.Do(ctx); err != nil { // starts the browser, for as long as the test
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("svg.chart"))); err != nil {
		t.Fatalf("load the status page: %v", err)
	}
	lang := run(t, ctx, chromedp.Evaluate[string](`document.documentElement.lang`))
	h1 := run(t, ctx, chromedp.Text(chromedp.CSS("h1")))
	summary := run(t, ctx, chromedp.Text(chromedp.CSS("#summary-h")))
	tableIDs := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("tr.backup")].map(r => r.dataset.backup)`))
	pointIDs := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("svg.chart g.point")].map(p => p.dataset.backup)`))
	pointBytes := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("svg.chart g.point")].map(p => p.dataset.bytes)`))
	chartWidth := run(t, ctx, chromedp.Evaluate[float64](`document.querySelector("svg.chart").getBoundingClientRect().width`))
	// Every marker is drawn, inside the chart's box.
	pointsInside := run(t, ctx, chromedp.Evaluate[bool](`(() => {
		const box = document.querySelector("svg.chart").getBoundingClientRect();
		return [...document.querySelectorAll("svg.chart g.point")].every(p => {
			const r = p.getBoundingClientRect();
			return r.width > 0 && r.left >= box.left && r.right <= box.right && r.top >= box.top && r.bottom <= box.bottom;
		});
	})()`))
	jobs := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("tr.job th")].map(th => th.textContent)`))
	png := run(t, ctx, chromedp.FullScreenshot(100))
	shot := filepath.Join(t.ArtifactDir(), "status-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)

	if lang != "en" || h1 != "Hestami backups" {
		t.Errorf("page: lang %q, h1 %q", lang, h1)
	}
	if summary == "" {
		t.Error("no summary heading")
	}
	var wantIDs, wantPoints, wantBytes []string
	for _, r := range rows {
		wantIDs = append(wantIDs, r.ID)
		if r.Status == backup.StatusComplete {
			wantPoints = append(wantPoints, r.ID)
			wantBytes = append(wantBytes, strconv.FormatInt(r.StoredSize, 10))
		}
	}
	sortedEq := func(a, b []string) bool {
		a, b = slices.Clone(a), slices.Clone(b)
		slices.Sort(a)
		slices.Sort(b)
		return slices.Equal(a, b)
	}
	if !sortedEq(tableIDs, wantIDs) {
		t.Errorf("the tables list %v, want %v", tableIDs, wantIDs)
	}
	if len(pointIDs) != len(wantPoints) || !sortedEq(pointIDs, wantPoints) {
		t.Errorf("the chart has points %v, want one per complete backup %v", pointIDs, wantPoints)
	}
	// Points come in series order, each series oldest first: physical, then logical.
	var physicalFirst []string
	for _, tp := range []backup.Type{backup.Physical, backup.Logical} {
		for _, r := range rows {
			if r.Type == tp && r.Status == backup.StatusComplete {
				physicalFirst = append(physicalFirst, strconv.FormatInt(r.StoredSize, 10))
			}
		}
	}
	if !slices.Equal(pointBytes, physicalFirst) || !sortedEq(pointBytes, wantBytes) {
		t.Errorf("chart sizes %v, want the stored sizes %v", pointBytes, physicalFirst)
	}
	if chartWidth < 300 || !pointsInside {
		t.Errorf("chart %v px wide, every point inside it: %v", chartWidth, pointsInside)
	}
	if !slices.Equal(jobs, []string{"backup-physical", "prune"}) {
		t.Errorf("the jobs table lists %v", jobs)
	}
	if len(png) < 10_000 {
		t.Errorf("screenshot of %d bytes", len(png))
	}

	// The same handler serves the metrics, the daemon's jobs included.
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("/metrics: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{`hestami_daemon_job_last_success{job="backup-physical"} 1`, `hestami_backups{status="complete",type="physical"} 2`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
