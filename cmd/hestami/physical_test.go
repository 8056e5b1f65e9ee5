package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// runCLI runs hestami in-process with HESTAMI_CONFIG=config and returns its stdout.
func runCLI(t *testing.T, config string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) (string, bool) {
		if k == "HESTAMI_CONFIG" {
			return config, true
		}
		return "", false
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	err := NewProgram(strings.NewReader(""), &stdout, &stderr, getenv).Run(ctx, args)
	t.Logf("hestami %s (err: %v)\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	return stdout.String(), err
}

// mustRun is runCLI failing the test on error.
func mustRun(t *testing.T, config string, args ...string) string {
	t.Helper()
	out, err := runCLI(t, config, args...)
	if err != nil {
		t.Fatalf("hestami %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// writeTestConfig writes a hestami config for repository repo and a server on port.
func writeTestConfig(t *testing.T, repo string, port int) string {
	t.Helper()
	path := filepath.Join(pgtest.Dir(t), "hestami.yaml")
	cfg := fmt.Sprintf("storage:\n  url: file://%s\npostgres:\n  host: 127.0.0.1\n  port: %d\n  user: postgres\n  database: postgres\n", repo, port)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// listBackups returns `backup list --json`.
func listBackups(t *testing.T, config string) []backupRow {
	t.Helper()
	var rows []backupRow
	if err := json.Unmarshal([]byte(mustRun(t, config, "backup", "list", "--json")), &rows); err != nil {
		t.Fatalf("backup list --json: %v", err)
	}
	return rows
}

// showBackup returns `backup show ID --json`.
func showBackup(t *testing.T, config, id string) *backup.Manifest {
	t.Helper()
	var m backup.Manifest
	if err := json.Unmarshal([]byte(mustRun(t, config, "backup", "show", id, "--json")), &m); err != nil {
		t.Fatalf("backup show --json: %v", err)
	}
	return &m
}

// pushPhysicalBackup takes a physical backup and returns its id.
func pushPhysicalBackup(t *testing.T, config string) string {
	t.Helper()
	out := mustRun(t, config, "backup", "push", "--type", "physical")
	var id string
	if _, err := fmt.Sscanf(out, "Physical backup %s complete", &id); err != nil {
		t.Fatalf("backup push printed %q, want a first line naming the backup", out)
	}
	return id
}

// waitArchived polls the file repository until WAL file name is archived.
func waitArchived(t *testing.T, repo, name string) {
	t.Helper()
	f, err := backup.ParseWALName(name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(repo, filepath.FromSlash(backup.WALKey(f)))
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAL %s not archived into %s within a minute", name, repo)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// switchWAL ends the current WAL segment and waits until it is archived.
func switchWAL(t *testing.T, c *postgres.Cluster, repo string) {
	t.Helper()
	var seg string
	pgtest.QueryRow(t, c, "postgres", "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg)
	waitArchived(t, repo, seg)
}

// waitQuery polls query (a boolean) on c until it is true.
func waitQuery(t *testing.T, c *postgres.Cluster, query string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var ok bool
		pgtest.QueryRow(t, c, "postgres", query).Scan(&ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q still false after 2 minutes", query)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startRestored starts a restored cluster with the test defaults overlaid by settings.
func startRestored(t *testing.T, c *postgres.Cluster, settings map[string]string) {
	t.Helper()
	all := pgtest.DefaultSettings()
	for k, v := range settings {
		all[k] = v
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := c.Start(ctx, all); err != nil {
		t.Fatalf("start the restored cluster: %v", err)
	}
}

// copyTree copies the directory src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

func TestPhysicalBackupAndRestore(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	c := a.Cluster
	tsDir := filepath.Join(pgtest.Dir(t), "ts")
	if err := os.Mkdir(tsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Chown(tsDir, c.User); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, c, "postgres", fmt.Sprintf("CREATE TABLESPACE extra LOCATION '%s'", tsDir))
	pgtest.Exec(t, c, "postgres", "CREATE TABLE base_rows AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	pgtest.Exec(t, c, "postgres", "CREATE TABLE ts_rows TABLESPACE extra AS SELECT g AS id FROM generate_series(1, 5000) g")
	var tsOID uint32
	pgtest.QueryRow(t, c, "postgres", "SELECT oid FROM pg_tablespace WHERE spcname = 'extra'").Scan(&tsOID)

	id := pushPhysicalBackup(t, a.Config)
	m := showBackup(t, a.Config, id)

	t.Run("manifest", func(t *testing.T) {
		if m.Type != backup.Physical || m.Timeline != 1 || m.StopLSN < m.StartLSN || m.PGVersion < backup.MinPhysicalVersion {
			t.Errorf("manifest: type %s, timeline %d, %s..%s, version %d", m.Type, m.Timeline, m.StartLSN, m.StopLSN, m.PGVersion)
		}
		if m.NextXID < 3 || m.SystemIdentifier == 0 || m.Host == "" || m.StartWAL == "" || m.StopWAL < m.StartWAL {
			t.Errorf("manifest: next xid %d, sysid %d, host %q, WAL %s..%s", m.NextXID, m.SystemIdentifier, m.Host, m.StartWAL, m.StopWAL)
		}
		if !bytes.HasPrefix(m.BackupLabel, []byte("START WAL LOCATION: "+m.StartLSN.String())) {
			t.Errorf("backup_label = %q, want it to start with the start LSN %s", m.BackupLabel, m.StartLSN)
		}
		if want := fmt.Sprintf("%d %s\n", tsOID, tsDir); string(m.TablespaceMap) != want {
			t.Errorf("tablespace_map = %q, want %q", m.TablespaceMap, want)
		}
		if len(m.Tablespaces) != 1 || m.Tablespaces[0] != (backup.Tablespace{OID: tsOID, Location: tsDir}) {
			t.Errorf("tablespaces = %+v, want %d at %s", m.Tablespaces, tsOID, tsDir)
		}
		var names []string
		var sum int64
		for _, f := range m.Files {
			names = append(names, f.Name)
			sum += f.Size
			stored, err := os.Stat(filepath.Join(a.Repo, filepath.FromSlash(backup.BackupKey(id, f.Name))))
			if err != nil || stored.Size() != f.StoredSize {
				t.Errorf("stored %s: %v, size %v, manifest says %d", f.Name, err, stored, f.StoredSize)
			}
		}
		want := []string{strconv.FormatUint(uint64(tsOID), 10) + ".tar", "base.tar", "backup_manifest"}
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("files %v, want %v", names, want)
		}
		if sum != m.Size || m.StoredSize >= m.Size {
			t.Errorf("size %d (files sum to %d), stored %d", m.Size, sum, m.StoredSize)
		}
		// The stop segment is archived: that is what made the backup complete.
		stop, _ := backup.ParseWALName(m.StopWAL)
		if _, err := os.Stat(filepath.Join(a.Repo, filepath.FromSlash(backup.WALKey(stop)))); err != nil {
			t.Errorf("stop segment not archived: %v", err)
		}
	})

	// Each later restore writes beside the running source: the tablespace must move.
	tsArg := func(t *testing.T) (string, string) {
		d := filepath.Join(pgtest.Dir(t), "ts-restored")
		return "--tablespace-map", fmt.Sprintf("%d=%s", tsOID, d)
	}

	t.Run("restore verified by pg_verifybackup then started", func(t *testing.T) {
		t.Parallel()
		r := pgtest.Prepare(t)
		flag, mapping := tsArg(t)
		newTS := strings.SplitN(mapping, "=", 2)[1]
		mustRun(t, a.Config, "restore", "--to", r.DataDir, "--hestami-path", a.Bin, flag, mapping)

		link, err := os.Readlink(filepath.Join(r.DataDir, "pg_tblspc", strconv.FormatUint(uint64(tsOID), 10)))
		if err != nil || link != newTS {
			t.Errorf("pg_tblspc link -> %q (%v), want %s", link, err, newTS)
		}
		if b, _ := os.ReadFile(filepath.Join(r.DataDir, "tablespace_map")); string(b) != fmt.Sprintf("%d %s\n", tsOID, newTS) {
			t.Errorf("tablespace_map = %q, want it to name %s", b, newTS)
		}
		if fi, err := os.Stat(r.DataDir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("data dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
		}
		// PostgreSQL's own manifest checks every restored file byte for byte
		// (tablespace_map was rewritten for the move; WAL comes from the archive).
		out, err := exec.Command(r.Bin.Path("pg_verifybackup"), "--no-parse-wal", "--ignore=tablespace_map", r.DataDir).CombinedOutput()
		if err != nil {
			t.Fatalf("pg_verifybackup: %v\n%s", err, out)
		}
		startRestored(t, r, nil)
		waitQuery(t, r, "SELECT NOT pg_is_in_recovery()")
		var n1, n2 int
		var v string
		pgtest.QueryRow(t, r, "postgres", "SELECT count(*), max(v) FROM base_rows").Scan(&n1, &v)
		pgtest.QueryRow(t, r, "postgres", "SELECT count(*) FROM ts_rows").Scan(&n2)
		if n1 != 20000 || n2 != 5000 {
			t.Errorf("restored %d base rows and %d tablespace rows, want 20000 and 5000", n1, n2)
		}
	})

	t.Run("corrupt object", func(t *testing.T) {
		t.Parallel()
		repo := filepath.Join(t.TempDir(), "repo")
		copyTree(t, a.Repo, repo)
		obj := filepath.Join(repo, filepath.FromSlash(backup.BackupKey(id, "base.tar")))
		b, err := os.ReadFile(obj)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x40
		if err := os.WriteFile(obj, b, 0o640); err != nil {
			t.Fatal(err)
		}
		cfg := writeTestConfig(t, repo, c.Port)
		dir := filepath.Join(t.TempDir(), "restore")
		flag, mapping := tsArg(t)
		_, err = runCLI(t, cfg, "restore", "--to", dir, "--hestami-path", a.Bin, flag, mapping)
		if !errors.Is(err, backup.ErrCorrupt) {
			t.Fatalf("restore from a damaged base.tar: err = %v, want ErrCorrupt", err)
		}
		for _, want := range []string{"base.tar", backup.BackupKey(id, "base.tar"), dir + " (and the tablespace directories", "incomplete", "remove it"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not say %q:\n%v", want, err)
			}
		}
	})

	t.Run("non-empty directory refused", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		keep := filepath.Join(dir, "precious")
		if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		flag, mapping := tsArg(t)
		_, err := runCLI(t, a.Config, "restore", "--to", dir, "--hestami-path", a.Bin, flag, mapping)
		if !errors.Is(err, backup.ErrDirNotEmpty) || !strings.Contains(err.Error(), "--move-aside") {
			t.Fatalf("restore into a non-empty dir: err = %v, want ErrDirNotEmpty mentioning --move-aside", err)
		}
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("the file in the refused directory is gone: %v", err)
		}

		// --move-aside never moves the directory of a running server...
		if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"+dir+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = runCLI(t, a.Config, "restore", "--to", dir, "--move-aside", "--hestami-path", a.Bin, flag, mapping)
		if !errors.Is(err, backup.ErrServerRunning) {
			t.Fatalf("restore --move-aside over a live postmaster.pid: err = %v, want ErrServerRunning", err)
		}
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("--move-aside moved files although a server runs there: %v", err)
		}
		// ...but otherwise moves its contents aside, whole.
		if err := os.Remove(filepath.Join(dir, "postmaster.pid")); err != nil {
			t.Fatal(err)
		}
		mustRun(t, a.Config, "restore", "--to", dir, "--move-aside", "--hestami-path", a.Bin, flag, mapping)
		if _, err := os.Stat(keep); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("--move-aside left the old contents in place: %v", err)
		}
		if moved, _ := filepath.Glob(dir + ".replaced-*/precious"); len(moved) != 1 {
			t.Errorf("--move-aside: the old contents are not beside %s: %v", dir, moved)
		}
		if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
			t.Errorf("--move-aside restore has no PG_VERSION: %v", err)
		}
	})

	t.Run("tablespace location in use refused", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "restore")
		_, err := runCLI(t, a.Config, "restore", "--to", dir, "--move-aside", "--hestami-path", a.Bin)
		if !errors.Is(err, backup.ErrDirNotEmpty) || !strings.Contains(err.Error(), "--tablespace-map") {
			t.Fatalf("restore onto the live tablespace's location: err = %v, want ErrDirNotEmpty suggesting --tablespace-map", err)
		}
	})

	t.Run("target before the oldest backup", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "restore")
		flag, mapping := tsArg(t)
		_, err := runCLI(t, a.Config, "restore", "--to", dir, "--target-time", "2001-02-03 04:05:06+00", "--hestami-path", a.Bin, flag, mapping)
		if !errors.Is(err, backup.ErrNoBackupBeforeTarget) || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "2001-02-03") {
			t.Fatalf("restore to 2001: err = %v, want ErrNoBackupBeforeTarget naming backup %s and the target", err, id)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a refused restore created %s", dir)
		}
	})
}

func TestPhysicalBackupNeedsArchivedWAL(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, nil) // archive_mode off
	repo := filepath.Join(pgtest.Dir(t), "repo")
	cfg := writeTestConfig(t, repo, c.Port)

	_, err := runCLI(t, cfg, "backup", "push", "--type", "physical")
	if err == nil || !strings.Contains(err.Error(), "archive_mode is off") || !strings.Contains(err.Error(), "hestami wal status") {
		t.Fatalf("backup with archive_mode=off: err = %v, want a refusal naming archive_mode and hestami wal status", err)
	}
	if _, err := os.Stat(filepath.Join(repo, "backups")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused backup stored objects: %v", err)
	}

	// Archiving on, but archive_command stores the WAL somewhere else (here: nowhere;
	// a failing command looks the same from the repository, but slows the shutdown):
	// the backup streams, then waits for its WAL in vain.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	settings := pgtest.DefaultSettings()
	settings["archive_mode"] = "on"
	settings["archive_command"] = "true"
	if err := c.Start(ctx, settings); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = runCLI(t, cfg, "backup", "push", "--type", "physical", "--wal-timeout", "1500ms")
	if !errors.Is(err, backup.ErrWALNotArchived) {
		t.Fatalf("backup whose WAL is never archived: err = %v, want ErrWALNotArchived", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the failing backup took %s with --wal-timeout 1.5s", took)
	}
	for _, want := range []string{"archive_command", "hestami wal status", "incomplete"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	rows := listBackups(t, cfg)
	if len(rows) != 1 || rows[0].Status != backup.StatusIncomplete || rows[0].Type != backup.Physical {
		t.Fatalf("backup list = %+v, want one incomplete physical backup", rows)
	}
	if _, err := os.Stat(filepath.Join(repo, "backups", rows[0].ID, "manifest.json.zst")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the incomplete backup has a manifest: %v", err)
	}
}
