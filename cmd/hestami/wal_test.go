package main_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/pgtest"
)

// runBinary runs the built hestami binary with the archiving cluster's config and
// returns stdout, stderr and the exit code.
func runBinary(t *testing.T, a *pgtest.Archiving, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), a.Bin, args...)
	cmd.Env = append(os.Environ(), a.Env()...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	}
	t.Fatalf("run hestami %v: %v", args, err)
	return "", "", -1
}

// waitArchived switches WAL n times and waits until PostgreSQL reports the last
// switched segment archived; it returns that segment's name.
func waitArchived(t *testing.T, a *pgtest.Archiving, n int) string {
	t.Helper()
	var last string
	for range n {
		pgtest.Exec(t, a.Cluster, "postgres", "INSERT INTO wal_filler SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g")
		pgtest.QueryRow(t, a.Cluster, "postgres", "SELECT pg_walfile_name(pg_switch_wal())").Scan(&last)
	}
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var archived string
		var failed int64
		pgtest.QueryRow(t, a.Cluster, "postgres", "SELECT coalesce(last_archived_wal, ''), failed_count FROM pg_stat_archiver").Scan(&archived, &failed)
		if archived >= last {
			return last
		}
		if failed > 0 {
			t.Fatalf("archive_command failed %d times; see the server log", failed)
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not archived within 60s (last archived %q)", last, archived)
		}
		<-tick.C
	}
}

func TestWALArchivingWithPostgres(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	pgtest.Exec(t, a.Cluster, "postgres", "CREATE TABLE wal_filler (id int, pad text)")
	last := waitArchived(t, a, 3)

	t.Run("status", func(t *testing.T) {
		out, errOut, code := runBinary(t, a, "wal", "status", "--json")
		if code != 0 {
			t.Fatalf("wal status exit %d: %s", code, errOut)
		}
		var st backup.WALStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("wal status --json: %v\n%s", err, out)
		}
		if st.Archiver == nil || st.Archiver.FailedCount != 0 || st.Archiver.LastArchivedWAL < last {
			t.Fatalf("archiver = %+v (%s), want last archived ≥ %s and no failures", st.Archiver, st.ArchiverError, last)
		}
		if len(st.Timelines) != 1 || st.Timelines[0].Timeline != 1 || st.Timelines[0].Segments < 3 || st.Timelines[0].Last < last {
			t.Fatalf("timelines = %+v, want timeline 1 up to %s", st.Timelines, last)
		}
		if len(st.Timelines[0].Gaps) != 0 {
			t.Fatalf("gaps in a healthy archive: %+v", st.Timelines[0].Gaps)
		}
		text, _, code := runBinary(t, a, "wal", "status")
		if code != 0 || !strings.Contains(text, last) {
			t.Fatalf("wal status (text) exit %d, does not name %s:\n%s", code, last, text)
		}
	})

	t.Run("fetch", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if _, errOut, code := runBinary(t, a, "wal", "fetch", last, dest); code != 0 {
			t.Fatalf("wal fetch exit %d: %s", code, errOut)
		}
		b, err := os.ReadFile(dest)
		if err != nil || len(b) != 16<<20 {
			t.Fatalf("fetched %d bytes (%v), want a 16 MiB segment", len(b), err)
		}
	})

	t.Run("fetch missing exits with the not-found code", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		for _, name := range []string{"0000000100000000000000F0", "00000009.history"} {
			_, errOut, code := runBinary(t, a, "wal", "fetch", name, dest)
			if code != 3 {
				t.Fatalf("wal fetch %s exit %d, want 3: %s", name, code, errOut)
			}
			if !strings.Contains(errOut, "not found") {
				t.Fatalf("message does not say not found: %s", errOut)
			}
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatal("dest created for a missing file")
		}
	})

	t.Run("fetch of a damaged segment fails with exit 1 and writes nothing", func(t *testing.T) {
		// Damage a copy in a second repository so the cluster's own archive stays intact.
		f, _ := backup.ParseWALName(last)
		key := backup.WALKey(f)
		b, err := os.ReadFile(filepath.Join(a.Repo, key))
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x01
		repo2 := t.TempDir()
		os.MkdirAll(filepath.Dir(filepath.Join(repo2, key)), 0o700)
		os.WriteFile(filepath.Join(repo2, key), b, 0o600)
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		cmd := exec.Command(a.Bin, "wal", "fetch", last, dest)
		cmd.Env = append(os.Environ(), "HESTAMI_STORAGE_URL=file://"+repo2)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("fetch of damaged segment: %v, want exit 1\n%s", err, out)
		}
		if !strings.Contains(string(out), "corrupt") || !strings.Contains(string(out), last) {
			t.Fatalf("message does not name the damaged segment: %s", out)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatal("damaged segment handed over")
		}
	})
}

// TestWALPushKilledLeavesNothing kills wal push with SIGKILL mid-upload: fetch must not
// see the file, and a new push succeeds.
func TestWALPushKilledLeavesNothing(t *testing.T) {
	t.Parallel()
	bin := pgtest.Binary(t)
	repo := t.TempDir()
	data := t.TempDir()
	os.MkdirAll(filepath.Join(data, "global"), 0o700)
	os.MkdirAll(filepath.Join(data, "pg_wal", "archive_status"), 0o700)
	ctl := make([]byte, 8192)
	binary.LittleEndian.PutUint64(ctl, 7450000000000000001)
	os.WriteFile(filepath.Join(data, "global", "pg_control"), ctl, 0o600)
	// A large (random, so incompressible) history file keeps the upload busy long
	// enough to be caught mid-way.
	big := make([]byte, 192<<20)
	rand.Read(big)
	name := "00000007.history"
	src := filepath.Join(data, "pg_wal", name)
	if err := os.WriteFile(src, big, 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HESTAMI_STORAGE_URL=file://"+repo)

	cmd := exec.Command(bin, "wal", "push", src)
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(repo, "wal", "00000007")
	deadline := time.Now().Add(30 * time.Second)
	killed := false
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(walDir)
		if len(entries) > 0 && strings.HasPrefix(entries[0].Name(), ".tmp-") {
			cmd.Process.Kill()
			killed = true
			break
		}
		if len(entries) > 0 {
			break // finished before we could catch it
		}
		<-tick.C
	}
	cmd.Wait()
	if !killed {
		t.Skip("wal push finished before it could be killed mid-upload")
	}
	dest := filepath.Join(t.TempDir(), "x")
	fetch := exec.Command(bin, "wal", "fetch", name, dest)
	fetch.Env = env
	out, err := fetch.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("fetch after a killed push: %v (want not found, exit 3)\n%s", err, out)
	}
	push := exec.Command(bin, "wal", "push", src)
	push.Env = env
	if out, err := push.CombinedOutput(); err != nil {
		t.Fatalf("push after a killed push: %v\n%s", err, out)
	}
	fetch = exec.Command(bin, "wal", "fetch", name, dest)
	fetch.Env = env
	if out, err := fetch.CombinedOutput(); err != nil {
		t.Fatalf("fetch: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(dest)
	if !bytes.Equal(got, big) {
		t.Fatal("fetched content differs after re-push")
	}
}

// TestWALFromAnotherClusterRefused points a second, unrelated cluster's
// archive_command at the first one's repository: every attempt fails, PostgreSQL keeps
// the segments, and the log says why.
func TestWALFromAnotherClusterRefused(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	pgtest.Exec(t, a.Cluster, "postgres", "CREATE TABLE wal_filler (id int, pad text)")
	waitArchived(t, a, 1)

	other := pgtest.New(t, map[string]string{
		"archive_mode":    "on",
		"archive_command": "'" + a.Bin + "' --config '" + a.Config + "' wal push %p",
	})
	pgtest.Exec(t, other, "postgres", "SELECT pg_switch_wal()")
	pgtest.Exec(t, other, "postgres", "CREATE TABLE t (id int)")
	pgtest.Exec(t, other, "postgres", "SELECT pg_switch_wal()")
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var failed, archived int64
		pgtest.QueryRow(t, other, "postgres", "SELECT failed_count, archived_count FROM pg_stat_archiver").Scan(&failed, &archived)
		if archived != 0 {
			t.Fatalf("%d segments of another cluster were archived", archived)
		}
		if failed > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no archive failure reported within 60s")
		}
		<-tick.C
	}
	log, err := os.ReadFile(other.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "belongs to the cluster with system identifier") {
		t.Fatalf("server log does not explain the refusal:\n%s", log)
	}
}
