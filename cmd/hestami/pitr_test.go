package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// batches returns the distinct batch numbers in table events, e.g. "0,1,2".
func batches(t *testing.T, c *postgres.Cluster) string {
	t.Helper()
	var got *string
	pgtest.QueryRow(t, c, "postgres", "SELECT string_agg(DISTINCT batch::text, ',' ORDER BY batch::text) FROM events").Scan(&got)
	if got == nil {
		return ""
	}
	return *got
}

// TestPITR restores one backup to each kind of recovery target. The source cluster
// commits a batch of rows at a time, with a WAL switch after each, and records
// where each batch ended; every restore must hold exactly the batches before its
// target.
func TestPITR(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	src := a.Cluster
	pgtest.Exec(t, src, "postgres", "CREATE TABLE events (batch int NOT NULL, id int NOT NULL, payload text)")
	insert := "INSERT INTO events SELECT %d, g, repeat('x', 200) FROM generate_series(1, 2000) g"
	pgtest.Exec(t, src, "postgres", fmt.Sprintf(insert, 0))
	id := pushPhysicalBackup(t, a.Config)

	type point struct {
		xid  string    // the batch's transaction
		time time.Time // server clock right after its commit
		lsn  string    // WAL insert position right after its commit
	}
	points := map[int]point{}
	conn := pgtest.Connect(t, src, "postgres")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for b := 1; b <= 4; b++ {
		if b == 3 {
			if _, err := conn.Exec(ctx, "SELECT pg_create_restore_point('before_3')"); err != nil {
				t.Fatal(err)
			}
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var p point
		if _, err := tx.Exec(ctx, fmt.Sprintf(insert, b)); err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&p.xid); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT clock_timestamp(), pg_current_wal_lsn()::text").Scan(&p.time, &p.lsn); err != nil {
			t.Fatal(err)
		}
		points[b] = p
		switchWAL(t, src, a.Repo)
	}

	tests := []struct {
		name    string
		args    []string
		done    string // true once the target is reached
		batches string
	}{
		{"lsn", []string{"--target-lsn", points[1].lsn}, "SELECT pg_get_wal_replay_pause_state() = 'paused'", "0,1"},
		{"xid inclusive", []string{"--target-xid", points[2].xid}, "SELECT pg_get_wal_replay_pause_state() = 'paused'", "0,1,2"},
		{"time promote", []string{"--target-time", points[3].time.Format(time.RFC3339Nano), "--target-action", "promote"}, "SELECT NOT pg_is_in_recovery()", "0,1,2,3"},
		{"name", []string{"--target-name", "before_3", "--backup", id}, "SELECT pg_get_wal_replay_pause_state() = 'paused'", "0,1,2"},
		{"xid exclusive", []string{"--target-xid", points[4].xid, "--target-exclusive"}, "SELECT pg_get_wal_replay_pause_state() = 'paused'", "0,1,2,3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := pgtest.Prepare(t)
			out := mustRun(t, a.Config, append([]string{"restore", "--to", r.DataDir, "--hestami-path", a.Bin}, tt.args...)...)
			if !strings.Contains(out, "Restored backup "+id) {
				t.Errorf("restore output does not name backup %s:\n%s", id, out)
			}
			startRestored(t, r, nil)
			waitQuery(t, r, tt.done)
			if got := batches(t, r); got != tt.batches {
				t.Errorf("restored batches %q, want %q", got, tt.batches)
			}
		})
	}

	t.Run("verify reports a target never reached", func(t *testing.T) {
		t.Parallel()
		r := pgtest.Prepare(t)
		future := time.Now().Add(time.Hour).UTC().Format("2006-01-02 15:04:05+00")
		_, err := runCLI(t, a.Config, "restore", "--to", r.DataDir, "--hestami-path", a.Bin, "--verify",
			"--target-time", future, "--target-action", "promote", "--verify-timeout", "2m")
		if err == nil || !strings.Contains(err.Error(), "recovery ended before configured recovery target was reached") {
			t.Fatalf("restore --verify to a time after the archived WAL: err = %v, want the server's log saying the target was not reached", err)
		}
	})

	t.Run("end of WAL with verify", func(t *testing.T) {
		t.Parallel()
		r := pgtest.Prepare(t)
		out := mustRun(t, a.Config, "restore", "--to", r.DataDir, "--hestami-path", a.Bin, "--verify")
		for _, want := range []string{"Verified: recovery reached the end of the archived WAL (promoted) and the server answered a query", "RTO: "} {
			if !strings.Contains(out, want) {
				t.Errorf("restore --verify output lacks %q:\n%s", want, out)
			}
		}
		// The drill left a promoted cluster behind: it starts as a primary.
		startRestored(t, r, nil)
		var inRecovery bool
		pgtest.QueryRow(t, r, "postgres", "SELECT pg_is_in_recovery()").Scan(&inRecovery)
		if inRecovery {
			t.Error("after the --verify drill the restored cluster is still in recovery")
		}
		if got := batches(t, r); got != "0,1,2,3,4" {
			t.Errorf("restored batches %q, want all: 0,1,2,3,4", got)
		}
	})
}

// TestPITRTimeline restores to a point in the past with promote, so the restored
// server continues on timeline 2 and archives into the same repository; later
// restores, from a backup of timeline 2 or from the first backup, follow timeline 2.
func TestPITRTimeline(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	src := a.Cluster
	pgtest.Exec(t, src, "postgres", "CREATE TABLE events (batch int NOT NULL)")
	pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (0)") // before the backup
	first := pushPhysicalBackup(t, a.Config)
	pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (1)")
	var cut time.Time
	pgtest.QueryRow(t, src, "postgres", "SELECT clock_timestamp()").Scan(&cut)
	pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (2)") // lost: after the target
	switchWAL(t, src, a.Repo)

	// Restore to the cut and promote: timeline 2, archiving like the source did.
	r2 := pgtest.Prepare(t)
	mustRun(t, a.Config, "restore", "--to", r2.DataDir, "--hestami-path", a.Bin,
		"--target-time", cut.Format(time.RFC3339Nano), "--target-action", "promote")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := src.Stop(ctx); err != nil { // the old primary is gone
		t.Fatal(err)
	}
	startRestored(t, r2, map[string]string{
		"archive_mode":    "on",
		"archive_command": fmt.Sprintf("'%s' --config '%s' wal push %%p", a.Bin, a.Config),
	})
	waitQuery(t, r2, "SELECT NOT pg_is_in_recovery()")
	var walFile string
	pgtest.QueryRow(t, r2, "postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&walFile)
	if !strings.HasPrefix(walFile, "00000002") {
		t.Fatalf("the promoted server writes %s, want timeline 2", walFile)
	}
	if got := batches(t, r2); got != "0,1" {
		t.Fatalf("restored to the cut: batches %q, want 0,1", got)
	}
	pgtest.Exec(t, r2, "postgres", "INSERT INTO events VALUES (3)")
	switchWAL(t, r2, a.Repo)
	waitArchived(t, a.Repo, "00000002.history")

	// A backup of the promoted server, on timeline 2, then more WAL after it.
	cfg2 := writeTestConfig(t, a.Repo, r2.Port)
	second := pushPhysicalBackup(t, cfg2)
	if m := showBackup(t, cfg2, second); m.Timeline != 2 || !strings.HasPrefix(m.StopWAL, "00000002") {
		t.Errorf("backup of the promoted server: timeline %d, stop WAL %s; want timeline 2", m.Timeline, m.StopWAL)
	}
	pgtest.Exec(t, r2, "postgres", "INSERT INTO events VALUES (4)")
	switchWAL(t, r2, a.Repo)

	var tl2Status []backup.TimelineStatus
	for _, tl := range mustTimelines(t, a.Repo) {
		if tl.Timeline == 2 {
			tl2Status = append(tl2Status, tl)
		}
	}
	if len(tl2Status) != 1 || !tl2Status[0].History || tl2Status[0].Segments == 0 {
		t.Errorf("timeline 2 in the repository: %+v, want segments and its history file", tl2Status)
	}

	for _, tt := range []struct{ name, backup string }{
		{"latest backup (timeline 2)", "latest"},
		{"first backup follows timeline 2", first},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := pgtest.Prepare(t)
			out := mustRun(t, cfg2, "restore", "--to", r.DataDir, "--hestami-path", a.Bin, "--backup", tt.backup)
			want := tt.backup
			if want == "latest" {
				want = second
			}
			if !strings.Contains(out, "Restored backup "+want) {
				t.Errorf("restored the wrong backup, want %s:\n%s", want, out)
			}
			// The backup of timeline 2 carries the first restore's recovery target in
			// postgresql.auto.conf: it must have been disabled.
			conf, err := os.ReadFile(filepath.Join(r.DataDir, "postgresql.auto.conf"))
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(conf), "\n") {
				if strings.HasPrefix(line, "recovery_target_time") {
					t.Errorf("postgresql.auto.conf still sets %q", line)
				}
			}
			startRestored(t, r, nil)
			waitQuery(t, r, "SELECT NOT pg_is_in_recovery()")
			if got := batches(t, r); got != "0,1,3,4" {
				t.Errorf("batches %q, want 0,1,3,4 (timeline 2's, without the lost batch 2)", got)
			}
		})
	}
}

// mustTimelines reads the archived WAL's timelines from a file repository.
func mustTimelines(t *testing.T, repoDir string) []backup.TimelineStatus {
	t.Helper()
	st, err := openStorage(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	repo := &backup.Repository{Storage: st}
	tls, err := repo.Timelines(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return tls
}
