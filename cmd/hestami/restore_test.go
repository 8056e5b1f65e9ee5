package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/zstd"
)

// auditEntries returns `audit list --json`, only the entries of action.
func auditEntries(t *testing.T, config, action string) []backup.AuditEntry {
	t.Helper()
	out, _, err := hestami(t, config, "audit", "list", "--json")
	if err != nil {
		t.Fatalf("audit list --json: %v", err)
	}
	var all []backup.AuditEntry
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("audit list --json: %v\n%s", err, out)
	}
	var entries []backup.AuditEntry
	for _, e := range all {
		if e.Action == action {
			entries = append(entries, e)
		}
	}
	return entries
}

// outcomes lists the entries' outcomes.
func outcomes(entries []backup.AuditEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Outcome)
	}
	return out
}

// checkRestoreEntries checks that every entry names this OS user and host, the
// target, the backup (once resolved), and, for a refusal, that nothing changed.
func checkRestoreEntries(t *testing.T, entries []backup.AuditEntry, target, backupID string) {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	for _, e := range entries {
		if e.Actor != u.Username || e.Host != host || e.Target != target || e.Details["uid"] != strconv.Itoa(os.Getuid()) {
			t.Errorf("audit entry %d (%s %s): actor %q host %q target %q uid %q; want %q on %q, target %q, uid %d",
				e.Seq, e.Action, e.Outcome, e.Actor, e.Host, e.Target, e.Details["uid"], u.Username, host, target, os.Getuid())
		}
		switch e.Outcome {
		case "refused":
			if e.Details["changed"] != "nothing" || e.Details["error"] == "" {
				t.Errorf("refused entry %d: details %v, want the error and changed=nothing", e.Seq, e.Details)
			}
		case "started", "ok", "failed":
			if e.Details["backup"] != backupID {
				t.Errorf("%s entry %d: backup %q, want %s", e.Outcome, e.Seq, e.Details["backup"], backupID)
			}
		}
	}
}

// dirSnapshot is every path under dir with its content, to tell that nothing changed.
func dirSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s\n", p)
		if !d.IsDir() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "  %q\n", c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRestoreIntoExistingDirectory: a physical restore over a stopped server's data
// directory is refused with nothing changed, also with --move-aside while a server
// runs there; with --move-aside it then renames the old directory aside and
// restores. Every attempt is in the audit log with the OS user and host, and an
// entry edited afterwards is found by audit verify.
func TestRestoreIntoExistingDirectory(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	pgtest.Exec(t, a.Cluster, "postgres", "CREATE TABLE kept AS SELECT g AS id FROM generate_series(1, 1000) g")
	id := pushPhysicalBackup(t, a.Config)
	m := showBackup(t, a.Config, id)

	dir := filepath.Join(pgtest.Dir(t), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"PG_VERSION": "14\n", "postgresql.conf": "port = 5433\n", "precious": "the old cluster"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := dirSnapshot(t, filepath.Dir(dir))
	unchanged := func(t *testing.T, what string) {
		t.Helper()
		if after := dirSnapshot(t, filepath.Dir(dir)); after != before {
			t.Errorf("%s changed the disk:\nbefore:\n%s\nafter:\n%s", what, before, after)
		}
	}

	_, err := runCLI(t, a.Config, "restore", "--to", dir, "--hestami-path", a.Bin)
	if !errors.Is(err, backup.ErrDirNotEmpty) || !strings.Contains(err.Error(), "PostgreSQL 14 data directory") || !strings.Contains(err.Error(), "--move-aside") {
		t.Fatalf("restore into a stopped server's directory: err = %v, want ErrDirNotEmpty naming the PostgreSQL 14 directory and --move-aside", err)
	}
	unchanged(t, "a refused restore")

	_, err = runCLI(t, a.Config, "restore", "--to", dir, "--force", "--hestami-path", a.Bin)
	if err == nil || !strings.Contains(err.Error(), "--move-aside") {
		t.Fatalf("restore --force: err = %v, want a refusal pointing at --move-aside", err)
	}
	unchanged(t, "restore --force")

	pid := filepath.Join(dir, "postmaster.pid")
	if err := os.WriteFile(pid, []byte(strconv.Itoa(os.Getpid())+"\n"+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before = dirSnapshot(t, filepath.Dir(dir))
	_, err = runCLI(t, a.Config, "restore", "--to", dir, "--move-aside", "--hestami-path", a.Bin)
	if !errors.Is(err, backup.ErrServerRunning) {
		t.Fatalf("restore --move-aside over a running server: err = %v, want ErrServerRunning", err)
	}
	unchanged(t, "restore --move-aside over a running server")
	if err := os.Remove(pid); err != nil {
		t.Fatal(err)
	}

	out := mustRun(t, a.Config, "restore", "--to", dir, "--move-aside", "--hestami-path", a.Bin)
	moved, _ := filepath.Glob(dir + ".replaced-*")
	if len(moved) != 1 {
		t.Fatalf("after restore --move-aside: %v beside %s, want one .replaced- directory", moved, dir)
	}
	if b, err := os.ReadFile(filepath.Join(moved[0], "precious")); err != nil || string(b) != "the old cluster" {
		t.Errorf("the moved-aside directory lost the old files: %q, %v", b, err)
	}
	if !strings.Contains(out, moved[0]) {
		t.Errorf("restore output does not say where the old directory went (%s):\n%s", moved[0], out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "PG_VERSION")); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(m.PGVersion/10000) {
		t.Errorf("restored PG_VERSION %q (%v), want the backup's %d", b, err, m.PGVersion/10000)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an old file is mixed into the restored directory: %v", err)
	}

	entries := auditEntries(t, a.Config, "restore")
	if got, want := outcomes(entries), []string{"refused", "refused", "refused", "started", "ok"}; !slices.Equal(got, want) {
		t.Fatalf("audit outcomes %v, want %v: %+v", got, want, entries)
	}
	checkRestoreEntries(t, entries, dir, id)
	if last := entries[len(entries)-1]; last.Details["moved_aside"] != moved[0] {
		t.Errorf("the restore's audit entry says moved_aside %q, want %s", last.Details["moved_aside"], moved[0])
	}
	if !strings.Contains(entries[2].Details["error"], "postmaster.pid") {
		t.Errorf("the refusal over a running server does not say why: %v", entries[2].Details)
	}
	mustRun(t, a.Config, "audit", "verify")

	// The record of the restore, edited afterwards to blame someone else, is found.
	repo := &backup.Repository{Storage: mustFile(t, a.Repo), Codec: zstd.Codec{Level: 1}}
	key := fmt.Sprintf("audit/%020d.json.zst", entries[3].Seq)
	b, err := repo.ReadObject(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"actor":"`+entries[3].Actor+`"`), []byte(`"actor":"somebody-else"`), 1)
	if _, err := repo.PutObject(t.Context(), key, bytes.NewReader(b), false, 1); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, a.Config, "audit", "verify"); err == nil || !strings.Contains(out, fmt.Sprintf("entry %d", entries[3].Seq)) || !strings.Contains(out, "edited") {
		t.Fatalf("audit verify after an edit: %v\n%s", err, out)
	}
}

// databaseOwner returns the owner of database db.
func databaseOwner(t *testing.T, c *postgres.Cluster, db string) string {
	t.Helper()
	var owner string
	pgtest.QueryRow(t, c, "postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", db).Scan(&owner)
	return owner
}

// databasesLike returns the names of the databases matching an SQL LIKE pattern.
func databasesLike(t *testing.T, c *postgres.Cluster, pattern string) []string {
	t.Helper()
	var names []string
	pgtest.QueryRow(t, c, "postgres", "SELECT coalesce(array_agg(datname ORDER BY datname), '{}') FROM pg_database WHERE datname LIKE $1", pattern).Scan(&names)
	return names
}

// TestRestoreLogicalReplace: a logical restore into an existing database is
// refused with the database untouched; --replace swaps in a complete copy holding
// exactly the backup (owner kept, sessions ended); a replace whose pg_restore fails
// leaves the database as it was; --keep-replaced keeps the old one. All audited.
func TestRestoreLogicalReplace(t *testing.T) {
	t.Parallel()
	e := newLogicalEnv(t)
	c := e.c
	setupApp(t, c)
	want := fingerprint(t, c, "app")
	mustHestami(t, e.config, "backup", "push", "--type", "logical", "--database", "app")
	id := storedBackups(t, e.config)[0].ID

	// The database moves on after the backup.
	pgtest.Exec(t, c, "app", "INSERT INTO items (name) VALUES ('after the backup')")
	pgtest.Exec(t, c, "app", "CREATE TABLE added_later (x int)")
	changed := fingerprint(t, c, "app")

	_, _, err := hestami(t, e.config, "restore", "logical", "--database", "app", "--into", "app")
	if !errors.Is(err, backup.ErrDatabaseExists) || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("restore into the existing database: err = %v, want ErrDatabaseExists pointing at --replace", err)
	}
	_, _, err = hestami(t, e.config, "restore", "logical", "--database", "app", "--into", "app", "--force")
	if err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("restore --force: err = %v, want a refusal pointing at --replace", err)
	}
	if got := fingerprint(t, c, "app"); got != changed {
		t.Fatal("a refused restore changed the database")
	}

	// A session on the database does not stop the replace: it is ended.
	held := pgtest.Connect(t, c, "app")
	out := mustHestami(t, e.config, "restore", "logical", "--database", "app", "--into", "app", "--replace", "--jobs", "2")
	t.Logf("restore --replace:\n%s", out)
	if got := fingerprint(t, c, "app"); got != want {
		t.Errorf("after --replace the database differs from the backup:\ngot  %s\nwant %s", got, want)
	}
	var n int
	pgtest.QueryRow(t, c, "app", "SELECT count(*) FROM pg_tables WHERE tablename = 'added_later'").Scan(&n)
	if n != 0 {
		t.Error("a table created after the backup survived --replace")
	}
	if owner := databaseOwner(t, c, "app"); owner != "app_owner" {
		t.Errorf("replaced database owned by %q, want the old owner app_owner", owner)
	}
	if err := held.Ping(t.Context()); err == nil {
		t.Error("a session on the replaced database is still alive")
	}
	if left := databasesLike(t, c, "app\\_re%"); len(left) != 0 {
		t.Errorf("databases left behind by --replace: %v", left)
	}

	// pg_restore fails (a role the backup grants to is gone): app stays as it was.
	pgtest.Exec(t, c, "app", `REVOKE ALL ON items, item_summary FROM "Report Reader"`)
	pgtest.Exec(t, c, "postgres", `DROP ROLE "Report Reader"`)
	pgtest.Exec(t, c, "app", "INSERT INTO items (name) VALUES ('before the failed replace')")
	beforeFail := fingerprint(t, c, "app")
	_, _, err = hestami(t, e.config, "restore", "logical", "--database", "app", "--into", "app", "--replace", "--jobs", "1")
	var te *postgres.ToolError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), `"app" is unchanged`) {
		t.Fatalf("replace with a missing role: err = %v, want pg_restore's error and app unchanged", err)
	}
	if got := fingerprint(t, c, "app"); got != beforeFail {
		t.Error("a failed replace changed the database")
	}
	if left := databasesLike(t, c, "app\\_re%"); len(left) != 0 {
		t.Errorf("databases left behind by a failed --replace: %v", left)
	}

	// --keep-replaced: the old database stays, under another name, closed.
	mustHestami(t, e.config, "restore", "logical", "--database", "app", "--into", "app", "--replace", "--keep-replaced", "--globals")
	if got := fingerprint(t, c, "app"); got != want {
		t.Errorf("after --replace --globals the database differs from the backup")
	}
	kept := databasesLike(t, c, "app\\_replaced\\_%")
	if len(kept) != 1 {
		t.Fatalf("--keep-replaced kept %v, want one app_replaced_ database", kept)
	}
	var allowed bool
	pgtest.QueryRow(t, c, "postgres", "SELECT datallowconn FROM pg_database WHERE datname = $1", kept[0]).Scan(&allowed)
	if allowed {
		t.Errorf("the kept database %s accepts connections", kept[0])
	}

	entries := auditEntries(t, e.config, "restore.logical")
	if got, want := outcomes(entries), []string{"refused", "refused", "started", "ok", "started", "failed", "started", "ok"}; !slices.Equal(got, want) {
		t.Fatalf("audit outcomes %v, want %v: %+v", got, want, entries)
	}
	checkRestoreEntries(t, entries, "app", id)
	for _, e := range entries[2:] {
		if e.Details["database"] != "app" || !strings.HasPrefix(e.Details["server"], "127.0.0.1:") {
			t.Errorf("entry %d: details %v, want the database and the server", e.Seq, e.Details)
		}
	}
	if last := entries[len(entries)-1]; last.Details["kept_replaced"] != kept[0] {
		t.Errorf("the last entry's kept_replaced = %q, want %s", last.Details["kept_replaced"], kept[0])
	}
	if !strings.Contains(entries[5].Details["error"], "Report Reader") {
		t.Errorf("the failed entry does not carry pg_restore's error: %v", entries[5].Details)
	}
	mustHestami(t, e.config, "audit", "verify")

	// Who may not rename the database is stopped before anything is restored.
	pgtest.Exec(t, c, "postgres", "CREATE ROLE stranger LOGIN CREATEDB")
	for _, tt := range []struct {
		name, config, into, want string
	}{
		{"not the owner", e.writeConfig(t, "stranger"), "app", `may not rename database "app"`},
		{"its own connection", e.config, "postgres", `connects to database "postgres" itself`},
	} {
		before := fingerprint(t, c, "app")
		_, _, err := hestami(t, tt.config, "restore", "logical", "--database", "app", "--into", tt.into, "--replace")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to say %q", tt.name, err, tt.want)
		}
		if fingerprint(t, c, "app") != before || len(databasesLike(t, c, "%\\_restoring\\_%")) != 0 {
			t.Errorf("%s: the refused replace changed something", tt.name)
		}
	}
}

// TestRestoreEncryptedNeedsIdentity: from an encrypted, signed repository a restore
// without the identity (none configured, or its file missing) is refused before it
// creates anything; with it, a host without the signing key restores, and its
// unsigned audit entries chain with the signed ones of the pushing host.
func TestRestoreEncryptedNeedsIdentity(t *testing.T) {
	t.Parallel()
	e := newLogicalEnv(t)
	c := e.c
	setupApp(t, c)
	want := fingerprint(t, c, "app")
	id, sign := newKey(t, false), newKey(t, true)
	keys := pgtest.Dir(t)
	identity := writeSecret(t, keys, "identity.key", id.PrivateKey)
	signingKey := writeSecret(t, keys, "signing.key", sign.PrivateKey)
	base, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	config := func(name, extra string) string {
		p := filepath.Join(keys, name)
		if err := os.WriteFile(p, append(slices.Clone(base), extra...), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	push := config("push.yaml", fmt.Sprintf("encryption:\n  recipients: [%s]\nsigning:\n  key_file: %s\n  public_keys: [%s]\n", id.PublicKey, signingKey, sign.PublicKey))
	restoreWith := func(name, identityFile string) string {
		yaml := fmt.Sprintf("encryption:\n  recipients: [%s]\nsigning:\n  public_keys: [%s]\n", id.PublicKey, sign.PublicKey)
		if identityFile != "" {
			yaml = strings.Replace(yaml, "\nsigning:", "\n  identity_file: "+identityFile+"\nsigning:", 1)
		}
		return config(name, yaml)
	}
	mustHestami(t, push, "backup", "push", "--type", "logical", "--database", "app")
	backupID := storedBackups(t, restoreWith("list.yaml", identity))[0].ID

	for _, tt := range []struct {
		name, config string
		want         []string
	}{
		{"no identity", restoreWith("none.yaml", ""), []string{"no identity is configured", id.PublicKey}},
		{"identity file missing", restoreWith("missing.yaml", filepath.Join(keys, "nope.key")), []string{"could not be loaded", "nope.key"}},
	} {
		_, _, err := hestami(t, tt.config, "restore", "logical", "--database", "app", "--into", "app_copy")
		if !errors.Is(err, backup.ErrWrongKey) {
			t.Fatalf("%s: err = %v, want a key error", tt.name, err)
		}
		for _, w := range append(tt.want, "HESTAMI_ENCRYPTION_IDENTITY_FILE", "nothing was restored") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error does not say %q: %v", tt.name, w, err)
			}
		}
		if databaseExists(t, c, "app_copy") {
			t.Fatalf("%s: the refused restore created the database", tt.name)
		}
	}

	restore := restoreWith("restore.yaml", identity)
	mustHestami(t, restore, "restore", "logical", "--database", "app", "--into", "app_copy")
	if got := fingerprint(t, c, "app_copy"); got != want {
		t.Errorf("restored copy differs from the backup")
	}
	// The pushing host chains its signed entries onto the restoring host's unsigned ones.
	mustHestami(t, push, "backup", "push", "--type", "logical", "--database", "app")
	mustHestami(t, restore, "audit", "verify")

	entries := auditEntries(t, restore, "restore.logical")
	if got, want := outcomes(entries), []string{"refused", "refused", "started", "ok"}; !slices.Equal(got, want) {
		t.Fatalf("audit outcomes %v, want %v", got, want)
	}
	checkRestoreEntries(t, entries, "app_copy", backupID)
	pushes := auditEntries(t, restore, "backup.push")
	if len(pushes) != 2 || pushes[1].Signature != backup.SignatureVerified || entries[3].Signature != backup.SignatureUnsigned {
		t.Errorf("signatures: pushes %+v, restore %q; want the pushes verified and the restore's entries unsigned", pushes, entries[3].Signature)
	}
}
