package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/blobtest"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// TestPITRObjectStores runs a point-in-time recovery through each object store, on
// its emulator: PostgreSQL's archive_command pushes WAL into the bucket, a physical
// backup goes there too, and a restore to a time between two commits, whose
// restore_command fetches the WAL back, holds exactly the rows committed before it.
func TestPITRObjectStores(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		target func(testing.TB) blobtest.Target
	}{
		{"s3", blobtest.S3},
		{"gs", blobtest.GCS},
		{"azblob", blobtest.Azure},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := tt.target(t)
			a := pgtest.NewArchivingTo(t, tg.URL, tg.Env, nil)
			src := a.Cluster
			pgtest.Exec(t, src, "postgres", "CREATE TABLE events (batch int NOT NULL)")
			pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (0)")
			id := pushPhysicalBackup(t, a.Config)
			pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (1)")
			var cut time.Time
			pgtest.QueryRow(t, src, "postgres", "SELECT clock_timestamp()").Scan(&cut)
			pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (2)") // after the target
			switchWALArchived(t, src)

			r := pgtest.Prepare(t)
			r.Env = append(r.Env, tg.Env...) // for restore_command
			out := mustRun(t, a.Config, "restore", "--to", r.DataDir, "--hestami-path", a.Bin,
				"--target-time", cut.Format(time.RFC3339Nano), "--target-action", "promote")
			if !strings.Contains(out, "Restored backup "+id) {
				t.Errorf("restore output does not name backup %s:\n%s", id, out)
			}
			startRestored(t, r, nil)
			waitQuery(t, r, "SELECT NOT pg_is_in_recovery()")
			if got := batches(t, r); got != "0,1" {
				t.Errorf("restored to a time between commits 1 and 2 from %s: batches %q, want 0,1", tt.name, got)
			}
		})
	}
}

// switchWALArchived ends the current WAL segment and waits until PostgreSQL reports
// it archived, failing at once if archive_command fails.
func switchWALArchived(t *testing.T, c *postgres.Cluster) {
	t.Helper()
	var seg string
	pgtest.QueryRow(t, c, "postgres", "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg)
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var archived string
		var failed int64
		pgtest.QueryRow(t, c, "postgres", "SELECT coalesce(last_archived_wal, ''), failed_count FROM pg_stat_archiver").Scan(&archived, &failed)
		if archived >= seg {
			return
		}
		if failed > 0 {
			t.Fatalf("archive_command failed %d times (see the server log below)", failed)
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAL segment %s not archived within a minute (last archived %q)", seg, archived)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-tick.C:
		}
	}
}
