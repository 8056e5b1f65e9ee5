package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/file"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/zstd"
)

// TestPrune takes three physical and two logical backups with WAL between them,
// prunes with a one-daily-backup policy, and checks that nothing goes before a newer
// backup is verified, that then exactly the old backups and their WAL go, and that
// the kept backup still restores.
func TestPrune(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	cfg, err := os.ReadFile(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, []byte("retention:\n  daily: 1\n  weekly: 0\n  monthly: 0\n")...)
	if err := os.WriteFile(a.Config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	c := a.Cluster
	pgtest.Exec(t, c, "postgres", "CREATE TABLE t (id int)")
	var ids []string
	for i := range 3 {
		pgtest.Exec(t, c, "postgres", "INSERT INTO t SELECT generate_series(1, 1000)")
		switchWAL(t, c, a.Repo)
		ids = append(ids, pushPhysicalBackup(t, a.Config))
		if i < 2 {
			mustRun(t, a.Config, "backup", "push", "--type", "logical", "--database", "postgres")
		}
	}
	pgtest.Exec(t, c, "postgres", "INSERT INTO t SELECT generate_series(1, 1000)")
	switchWAL(t, c, a.Repo)
	before := listBackups(t, a.Config)
	walBefore := walNames(t, a.Repo)

	plan := func(args ...string) backup.PrunePlan {
		t.Helper()
		var p backup.PrunePlan
		out := mustRun(t, a.Config, append([]string{"backup", "prune", "--json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("prune --json: %v\n%s", err, out)
		}
		return p
	}
	deleted := func(p backup.PrunePlan) []string {
		var out []string
		for _, ds := range p.Backups {
			for _, d := range ds {
				if !d.Keep {
					out = append(out, d.ID)
				}
			}
		}
		slices.Sort(out)
		return out
	}

	// Nothing is verified yet: nothing may go, and the plan says why.
	p := plan("--dry-run")
	if got := deleted(p); len(got) != 0 || len(p.WALDelete) != 0 {
		t.Fatalf("unverified repository: plan deletes %v and WAL %v", got, p.WALDelete)
	}
	if why := strings.Join(p.Backups[backup.Physical][0].Reasons, " "); !strings.Contains(why, "verification") {
		t.Fatalf("reason for keeping the oldest backup: %q", why)
	}

	// The newest of each type passes verification: the others may go.
	repo := &backup.Repository{Storage: mustFile(t, a.Repo), Codec: zstd.Codec{Level: 1}}
	logicals := []string{}
	for _, r := range before {
		if r.Type == backup.Logical {
			logicals = append(logicals, r.ID)
		}
	}
	for _, id := range []string{ids[2], logicals[len(logicals)-1]} {
		if err := repo.RecordVerification(t.Context(), id, backup.VerificationRecord{Time: time.Now(), OK: true, Method: "checksums"}); err != nil {
			t.Fatal(err)
		}
	}
	p = plan("--dry-run")
	want := []string{ids[0], ids[1], logicals[0]}
	slices.Sort(want)
	if got := deleted(p); !slices.Equal(got, want) {
		t.Fatalf("plan deletes %v, want %v", got, want)
	}
	if p.WindowStart != ids[2] {
		t.Fatalf("PITR window starts at %q, want %s", p.WindowStart, ids[2])
	}
	if len(listBackups(t, a.Config)) != len(before) || len(walNames(t, a.Repo)) != len(walBefore) {
		t.Fatal("--dry-run deleted something")
	}
	newest := showBackup(t, a.Config, ids[2])
	for _, w := range p.WALDelete {
		if w >= newest.StartWAL || strings.HasSuffix(w, ".history") {
			t.Fatalf("plan deletes WAL %s, which the kept backup (from %s) needs", w, newest.StartWAL)
		}
	}
	if len(p.WALDelete) == 0 {
		t.Fatal("plan deletes no WAL, though older backups' WAL is no longer needed")
	}

	mustRun(t, a.Config, "backup", "prune")
	var left []string
	for _, r := range listBackups(t, a.Config) {
		left = append(left, r.ID)
	}
	for _, id := range want {
		if slices.Contains(left, id) {
			t.Fatalf("backup %s still listed after prune: %v", id, left)
		}
	}
	for _, w := range walNames(t, a.Repo) {
		if slices.Contains(p.WALDelete, w) {
			t.Fatalf("WAL %s still stored after prune", w)
		}
	}

	// Every action is in the audit log, and the chain is intact.
	var entries []backup.AuditEntry
	if err := json.Unmarshal([]byte(mustRun(t, a.Config, "audit", "list", "--json")), &entries); err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	for _, e := range entries {
		actions[e.Action+" "+e.Outcome]++
	}
	if actions["backup.push ok"] != 5 || actions["backup.prune ok"] != 1 {
		t.Fatalf("audit log actions %v, want 5 pushes and 1 prune", actions)
	}
	mustRun(t, a.Config, "audit", "verify")
	// An entry edited afterwards is found.
	key := "audit/00000000000000000002.json.zst"
	b, err := repo.ReadObject(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"outcome":"ok"`), []byte(`"outcome":"failed"`), 1)
	if _, err := repo.PutObject(t.Context(), key, bytes.NewReader(b), false, 1); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, a.Config, "audit", "verify"); err == nil || !strings.Contains(out, "edited") {
		t.Fatalf("audit verify after an edit: %v\n%s", err, out)
	}

	// The kept backup restores to the end of the archive.
	dst := pgtest.Prepare(t)
	os.Remove(dst.DataDir)
	mustRun(t, a.Config, "restore", "--to", dst.DataDir, "--hestami-path", a.Bin)
	startRestored(t, dst, nil)
	waitQuery(t, dst, "SELECT NOT pg_is_in_recovery()")
	var n int
	pgtest.QueryRow(t, dst, "postgres", "SELECT count(*) FROM t").Scan(&n)
	if n != 4000 {
		t.Fatalf("restored %d rows, want 4000", n)
	}
}

func mustFile(t *testing.T, dir string) *file.Storage {
	t.Helper()
	s, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func walNames(t *testing.T, repo string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(repo, "wal"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			out = append(out, strings.TrimSuffix(d.Name(), ".zst"))
		}
		return nil
	})
	return out
}
