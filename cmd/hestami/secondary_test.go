package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/blobtest"
	"github.com/hestami/hestami/config"
	"github.com/hestami/hestami/pgtest"
)

// TestSecondaryStorage: with a local primary and an S3 secondary, backups and WAL
// land in both; with a WAL segment and the backup's base.tar gone from the primary,
// wal fetch and a point-in-time restore are served by the secondary; storage sync
// fills a gap in the secondary.
func TestSecondaryStorage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	tg := blobtest.S3(t)
	a := pgtest.NewArchivingWithSecondary(t, tg.URL, tg.Env, nil)
	src := a.Cluster
	cfg := config.Default().Storage
	cfg.AllowInsecureHTTP = true
	sec, err := openStorageWith(ctx, tg.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	prim, err := openStorage(a.Repo)
	if err != nil {
		t.Fatal(err)
	}

	pgtest.Exec(t, src, "postgres", "CREATE TABLE events (batch int NOT NULL)")
	pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (0)")
	out := mustRun(t, a.Config, "backup", "push", "--type", "physical")
	var id string
	if _, err := fmt.Sscanf(out, "Physical backup %s complete", &id); err != nil {
		t.Fatalf("backup push printed %q", out)
	}
	if !strings.Contains(out, "secondary: copied") {
		t.Errorf("backup push does not report the copy to the secondary:\n%s", out)
	}
	pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (1)")
	var cut time.Time
	pgtest.QueryRow(t, src, "postgres", "SELECT clock_timestamp()").Scan(&cut)
	pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (2)") // after the target
	var seg string
	pgtest.QueryRow(t, src, "postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&seg)
	switchWALArchived(t, src) // archive_command exits after the secondary copy

	// Both repositories hold the backup, the WAL and the marker.
	wf, err := backup.ParseWALName(seg)
	if err != nil {
		t.Fatal(err)
	}
	segKey := backup.WALKey(wf)
	baseKey := backup.BackupKey(id, "base.tar")
	for _, st := range []backup.Storage{prim, sec} {
		for _, key := range []string{"hestami.json", "backups/" + id + "/manifest.json.zst", baseKey, segKey} {
			if _, err := st.Stat(ctx, key); err != nil {
				t.Errorf("%s in %s: %v", key, st, err)
			}
		}
	}
	var rows []backupRow
	if err := json.Unmarshal([]byte(mustRun(t, a.Config, "backup", "list", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || !slices.Equal(rows[0].Locations, []string{"primary", "secondary"}) {
		t.Errorf("backup list rows %+v, want %s in primary and secondary", rows, id)
	}

	// The primary loses a WAL segment and the backup's base.tar.
	for _, key := range []string{segKey, baseKey} {
		if err := prim.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	dest := filepath.Join(t.TempDir(), seg)
	mustRun(t, a.Config, "wal", "fetch", seg, dest)
	if fi, err := os.Stat(dest); err != nil || fi.Size() != backup.DefaultSegmentSize {
		t.Fatalf("wal fetch from the secondary: %v, %v", fi, err)
	}
	var list []backupRow
	if err := json.Unmarshal([]byte(mustRun(t, a.Config, "backup", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Status != backup.StatusComplete {
		t.Errorf("backup list with base.tar only in the secondary: %+v", list)
	}

	r := pgtest.Prepare(t)
	r.Env = append(r.Env, tg.Env...) // for restore_command
	out = mustRun(t, a.Config, "restore", "--to", r.DataDir, "--hestami-path", a.Bin,
		"--target-time", cut.Format(time.RFC3339Nano), "--target-action", "promote")
	if !strings.Contains(out, "Restored backup "+id) {
		t.Errorf("restore output does not name backup %s:\n%s", id, out)
	}
	startRestored(t, r, nil)
	waitQuery(t, r, "SELECT NOT pg_is_in_recovery()")
	if got := batches(t, r); got != "0,1" {
		t.Errorf("restored from the secondary: batches %q, want 0,1", got)
	}

	// A gap in the secondary: storage sync copies it back from the primary.
	wal, err := prim.List(ctx, "wal/")
	if err != nil || len(wal) == 0 {
		t.Fatalf("primary WAL: %v, %v", wal, err)
	}
	gap := wal[0].Key
	if err := sec.Delete(ctx, gap); err != nil {
		t.Fatal(err)
	}
	// The secondary refusing writes does not fail archive_command.
	tg.Faults.Fail(-1, 403)
	pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (3)")
	pgtest.QueryRow(t, src, "postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&seg)
	switchWALArchived(t, src) // fails the test if archive_command failed
	tg.Faults.Fail(0, 0)
	if wf, err = backup.ParseWALName(seg); err != nil {
		t.Fatal(err)
	}
	missed := backup.WALKey(wf)
	if _, err := sec.Stat(ctx, missed); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("%s in the secondary while it refused writes: %v", missed, err)
	}
	var res backup.SyncResult
	if err := json.Unmarshal([]byte(mustRun(t, a.Config, "storage", "sync", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{gap, missed} {
		if !slices.Contains(res.WAL, key) {
			t.Errorf("storage sync copied %+v, want %s among it", res, key)
		}
		if _, err := sec.Stat(ctx, key); err != nil {
			t.Errorf("after storage sync, %s in the secondary: %v", key, err)
		}
	}

	// storage check: both storages pass, the repository is found in each.
	var reports []storageReport
	if err := json.Unmarshal([]byte(mustRun(t, a.Config, "storage", "check", "--json")), &reports); err != nil {
		t.Fatal(err)
	}
	if len(reports) != 2 || reports[0].Role != "primary" || reports[1].Role != "secondary" {
		t.Fatalf("storage check reports %+v", reports)
	}
	for _, rep := range reports {
		if !rep.OK || rep.Repository == nil || rep.Repository.SystemIdentifier == 0 {
			t.Errorf("storage check of %s: %+v", rep.Role, rep)
		}
	}
	if reports[0].FreeBytes == nil || *reports[0].FreeBytes == 0 {
		t.Errorf("storage check of the file primary reports no free space: %+v", reports[0])
	}
}

// TestStorageCheckFailures: a storage that refuses writes fails the check (exit 1)
// with the permission to grant; an empty directory passes with no repository yet.
func TestStorageCheckFailures(t *testing.T) {
	t.Parallel()
	tg := blobtest.S3(t)
	dir := t.TempDir()
	run := func(vars map[string]string) (string, error) {
		var stdout, stderr bytes.Buffer
		getenv := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
		err := NewProgram(strings.NewReader(""), &stdout, &stderr, getenv).Run(t.Context(), []string{"storage", "check"})
		t.Logf("storage check (err %v):\n%s%s", err, stdout.String(), stderr.String())
		return stdout.String(), err
	}
	out, err := run(map[string]string{"HESTAMI_STORAGE_URL": dir})
	if err != nil {
		t.Fatalf("storage check of an empty directory: %v", err)
	}
	if !strings.Contains(out, "none yet") {
		t.Errorf("storage check of an empty directory does not say there is no repository yet:\n%s", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, ".hestami-probe")); len(entries) != 0 {
		t.Errorf("probe objects left behind: %v", entries)
	}

	tg.Faults.Fail(-1, 403)
	out, err = run(map[string]string{"HESTAMI_STORAGE_URL": dir, "HESTAMI_SECONDARY_STORAGE_URL": tg.URL, "HESTAMI_STORAGE_ALLOW_HTTP": "1"})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != ExitError {
		t.Fatalf("storage check with a secondary refusing writes: %v, want exit 1", err)
	}
	if !strings.Contains(out, "s3:PutObject") || !strings.Contains(out, "secondary storage") {
		t.Errorf("storage check does not say which permission to grant on the secondary:\n%s", out)
	}
}
