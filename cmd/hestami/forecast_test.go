package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/pgtest"
)

func TestBackupForecast(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	c := a.Cluster
	pgtest.Exec(t, c, "postgres", "CREATE TABLE items (id int, v text)")
	for i := range 3 {
		pgtest.Exec(t, c, "postgres", "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, $1::int) g", 20000*(i+1))
		mustRun(t, a.Config, "backup", "push", "--type", "logical")
	}
	mustRun(t, a.Config, "backup", "push", "--type", "physical")
	rows := listBackups(t, a.Config)
	var physicalStored int64
	for _, r := range rows {
		if r.Type == backup.Physical {
			physicalStored = r.StoredSize
		}
	}

	var rep forecastReport
	if err := json.Unmarshal([]byte(mustRun(t, a.Config, "backup", "forecast", "--months", "3", "--interval", "24h", "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Months) != 3 {
		t.Fatalf("%d months, want 3", len(rep.Months))
	}
	lg, ph := rep.Types[backup.Logical], rep.Types[backup.Physical]
	if !lg.Trend.Fitted || lg.Trend.Points != 3 || lg.IntervalHours != 24 || lg.IntervalEstimated {
		t.Errorf("logical: %+v, want a trend of 3 backups and the 24h interval given", lg)
	}
	if ph.Trend.Fitted || !strings.Contains(ph.Trend.Note, "only 1 complete backup(s)") {
		t.Errorf("physical: %+v, want no trend and a note saying why", ph)
	}
	for i, m := range rep.Months {
		// The physical size is held at the one backup's: each kept one is that size.
		if n := m.Retained[backup.Physical]; n < 1 || m.Bytes[backup.Physical] != int64(n)*physicalStored {
			t.Errorf("month %s: %d physical backups of %d bytes, want each of the %d bytes stored", m.Month, n, m.Bytes[backup.Physical], physicalStored)
		}
		if m.TotalBytes != m.BackupBytes+m.WALBytes || m.RetainedBackups != m.Retained[backup.Physical]+m.Retained[backup.Logical] {
			t.Errorf("month %s does not add up: %+v", m.Month, m)
		}
		if i > 0 && m.Month <= rep.Months[i-1].Month {
			t.Errorf("months out of order: %s after %s", m.Month, rep.Months[i-1].Month)
		}
	}
	// WAL: what the repository holds, and a rate measured from it.
	var walBytes int64
	filepath.Walk(filepath.Join(a.Repo, "wal"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			walBytes += fi.Size()
		}
		return nil
	})
	if rep.WALStored != walBytes || rep.WALBytesPerDay <= 0 || rep.Months[0].WALBytes <= 0 {
		t.Errorf("WAL stored %d (on disk %d), %g bytes/day, %d in the first month", rep.WALStored, walBytes, rep.WALBytesPerDay, rep.Months[0].WALBytes)
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "measured over") {
		t.Errorf("notes %q do not warn that the WAL rate rests on minutes", rep.Notes)
	}

	out := mustRun(t, a.Config, "backup", "forecast")
	for _, want := range []string{"MONTH", "RETAINED BACKUPS", "TOTAL", rep.Months[0].Month, "keeping 7 daily, 4 weekly, 6 monthly", "only 1 complete backup(s)", "Note: "} {
		if !strings.Contains(out, want) {
			t.Errorf("forecast output lacks %q:\n%s", want, out)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^\s*\d{4}-\d{2}\s`).FindAllString(out, -1)); n != 6 {
		t.Errorf("%d month rows, want 6 by default:\n%s", n, out)
	}

	_, err := runCLI(t, a.Config, "backup", "forecast", "--months", "0")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != ExitUsage {
		t.Errorf("--months 0: err = %v, want a usage error", err)
	}
}
