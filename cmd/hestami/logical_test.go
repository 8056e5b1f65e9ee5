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

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// logicalEnv is a test cluster with a hestami configuration pointing at it and at a
// fresh file repository.
type logicalEnv struct {
	c      *postgres.Cluster
	config string
	repo   string
}

// newLogicalEnv starts a cluster and writes a config file for it, connecting as user.
func newLogicalEnv(t *testing.T) *logicalEnv {
	t.Helper()
	c := pgtest.New(t, nil)
	dir := t.TempDir()
	e := &logicalEnv{c: c, repo: filepath.Join(dir, "repo")}
	e.config = e.writeConfig(t, "postgres")
	return e
}

func (e *logicalEnv) writeConfig(t *testing.T, user string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hestami.yaml")
	cfg := fmt.Sprintf("storage:\n  url: file://%s\npostgres:\n  host: 127.0.0.1\n  port: %d\n  user: %s\n  database: postgres\nbackup:\n  parallel: 2\nlog:\n  level: warn\n",
		e.repo, e.c.Port, user)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// hestami runs the command line in-process with config and returns stdout, stderr
// and the error.
func hestami(t *testing.T, config string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) (string, bool) {
		if k == "HESTAMI_CONFIG" {
			return config, true
		}
		return "", false
	}
	err := NewProgram(strings.NewReader(""), &stdout, &stderr, getenv).Run(t.Context(), args)
	return stdout.String(), stderr.String(), err
}

// mustHestami runs the command line and fails the test if it fails.
func mustHestami(t *testing.T, config string, args ...string) string {
	t.Helper()
	out, errOut, err := hestami(t, config, args...)
	if err != nil {
		t.Fatalf("hestami %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// appFingerprint sums up everything a restore of the test database must reproduce:
// every row of every table, the sequence, the view, the indexes, owners and grants.
const appFingerprint = `SELECT concat_ws(E'\n',
	(SELECT count(*) FROM items)::text,
	(SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM items t),
	(SELECT count(*) FROM events)::text,
	(SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM events t),
	(SELECT last_value::text FROM items_id_seq),
	(SELECT md5(string_agg(v::text, ',' ORDER BY v.name)) FROM item_summary v),
	(SELECT string_agg(indexname || ':' || indexdef, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'),
	(SELECT string_agg(tablename || ':' || tableowner, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'),
	(SELECT string_agg(grantee || ':' || table_name || ':' || privilege_type, ',' ORDER BY grantee, table_name, privilege_type)
		FROM information_schema.role_table_grants WHERE table_schema = 'public'))`

func fingerprint(t *testing.T, c *postgres.Cluster, db string) string {
	t.Helper()
	var s string
	pgtest.QueryRow(t, c, db, appFingerprint).Scan(&s)
	return s
}

func databaseExists(t *testing.T, c *postgres.Cluster, db string) bool {
	t.Helper()
	var ok bool
	pgtest.QueryRow(t, c, "postgres", "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", db).Scan(&ok)
	return ok
}

func rolePassword(t *testing.T, c *postgres.Cluster, role string) string {
	t.Helper()
	var p string
	pgtest.QueryRow(t, c, "postgres", "SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = $1", role).Scan(&p)
	return p
}

// setupApp creates the roles and the database "app" the tests back up.
func setupApp(t *testing.T, c *postgres.Cluster) {
	t.Helper()
	pgtest.Exec(t, c, "postgres", "CREATE ROLE app_owner LOGIN PASSWORD 'owner-secret'")
	pgtest.Exec(t, c, "postgres", `CREATE ROLE "Report Reader" LOGIN PASSWORD 'reader-secret' CONNECTION LIMIT 3`)
	pgtest.Exec(t, c, "postgres", "CREATE DATABASE app OWNER app_owner")
	for _, sql := range []string{
		`CREATE TABLE items (
			id serial PRIMARY KEY,
			name text NOT NULL UNIQUE,
			price numeric(12,2),
			qty bigint,
			active boolean,
			tags text[],
			attrs jsonb,
			blob bytea,
			uid uuid,
			created timestamptz,
			note text)`,
		`INSERT INTO items (name, price, qty, active, tags, attrs, blob, uid, created, note)
		 SELECT 'item ' || g, (g * 1.25)::numeric(12,2), g::bigint * 1000000007, g % 3 = 0,
		        ARRAY['t' || g % 7, 'x'], jsonb_build_object('g', g, 'half', g / 2.0),
		        decode(md5(g::text), 'hex'), md5('u' || g)::uuid,
		        timestamptz '2024-01-01 00:00:00+00' + g * interval '37 minutes',
		        CASE WHEN g % 10 = 0 THEN NULL ELSE E'line\n''quoted'' é ☃ ' || g END
		 FROM generate_series(1, 4000) g`,
		`CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item int REFERENCES items, at date, payload text)`,
		`INSERT INTO events (item, at, payload) SELECT 1 + g % 4000, date '2024-01-01' + g % 365, repeat(chr(65 + g % 26), g % 50) FROM generate_series(1, 3000) g`,
		`CREATE INDEX items_created ON items (created DESC) WHERE active`,
		`CREATE VIEW item_summary AS SELECT i.name, count(e.id) AS n FROM items i LEFT JOIN events e ON e.item = i.id GROUP BY i.name`,
		`ALTER TABLE items OWNER TO app_owner`,
		`ALTER TABLE events OWNER TO app_owner`,
		`ALTER VIEW item_summary OWNER TO app_owner`,
		`GRANT SELECT ON items, item_summary TO "Report Reader"`,
	} {
		pgtest.Exec(t, c, "app", sql)
	}
}

// storedBackups returns the backup entries in the repository.
func storedBackups(t *testing.T, config string) []backupRow {
	t.Helper()
	out := mustHestami(t, config, "backup", "list", "--json")
	var rows []backupRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("backup list --json: %v\n%s", err, out)
	}
	return rows
}

func TestLogicalBackupAndRestore(t *testing.T) {
	t.Parallel()
	e := newLogicalEnv(t)
	c := e.c
	setupApp(t, c)
	const odd = "my db/with 'odd' name"
	pgtest.Exec(t, c, "postgres", `CREATE DATABASE "my db/with 'odd' name"`)
	pgtest.Exec(t, c, odd, "CREATE TABLE notes AS SELECT g AS id, 'note ' || g AS body FROM generate_series(1, 500) g")
	oddSum := func(db string) string {
		var s string
		pgtest.QueryRow(t, c, db, "SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id)) FROM notes t").Scan(&s)
		return s
	}
	want := fingerprint(t, c, "app")
	wantOdd := oddSum(odd)
	readerPassword := rolePassword(t, c, "Report Reader")

	out := mustHestami(t, e.config, "backup", "push", "--type", "logical")
	t.Logf("backup push --type logical:\n%s", out)
	rows := storedBackups(t, e.config)
	if len(rows) != 1 {
		t.Fatalf("backup list shows %d backups after one push, want 1: %+v", len(rows), rows)
	}
	id := rows[0].ID
	if !strings.Contains(out, id) || !strings.Contains(out, "hestami restore logical") {
		t.Errorf("push summary lacks the backup id %s or how to restore:\n%s", id, out)
	}

	// Changes after the backup that the restore must not bring back or undo.
	pgtest.Exec(t, c, "app", "INSERT INTO items (name) VALUES ('after the backup')")
	pgtest.Exec(t, c, "postgres", "ALTER ROLE app_owner PASSWORD 'changed-after-backup'")
	ownerPassword := rolePassword(t, c, "app_owner")

	t.Run("list and show", func(t *testing.T) {
		r := rows[0]
		if r.Type != backup.Logical || r.Status != backup.StatusComplete {
			t.Errorf("backup list: type %q status %q, want logical complete", r.Type, r.Status)
		}
		if wantDBs := []string{"app", odd, "postgres"}; !slices.Equal(r.Databases, wantDBs) {
			t.Errorf("backup list databases = %q, want %q", r.Databases, wantDBs)
		}
		var m backup.Manifest
		if err := json.Unmarshal([]byte(mustHestami(t, e.config, "backup", "show", id, "--json")), &m); err != nil {
			t.Fatal(err)
		}
		files := map[string]backup.File{}
		for _, f := range m.Files {
			files[f.Name] = f
		}
		for name, db := range map[string]string{
			"globals.sql":                            "",
			"app.dump":                               "app",
			"postgres.dump":                          "postgres",
			"my%20db%2Fwith%20%27odd%27%20name.dump": odd,
		} {
			f, ok := files[name]
			if !ok {
				t.Errorf("backup show: no file %q in %+v", name, m.Files)
				continue
			}
			if f.Database != db || f.Size <= 0 || len(f.SHA256) != 64 {
				t.Errorf("backup show: file %s = %+v, want database %q, a size and a sha256", name, f, db)
			}
		}
		if m.SystemIdentifier == 0 || m.PGVersion < 130000 || m.StopTime.Before(m.StartTime) {
			t.Errorf("manifest: sysid %d, version %d, start %s stop %s", m.SystemIdentifier, m.PGVersion, m.StartTime, m.StopTime)
		}
	})

	t.Run("streamed with globals after dropping a role", func(t *testing.T) {
		for _, sql := range []string{`REVOKE ALL ON items, item_summary FROM "Report Reader"`} {
			pgtest.Exec(t, c, "app", sql)
		}
		pgtest.Exec(t, c, "postgres", `DROP ROLE "Report Reader"`)
		out := mustHestami(t, e.config, "restore", "logical", "--backup", id, "--database", "app", "--into", "app_restored", "--globals", "--jobs", "1")
		t.Logf("restore:\n%s", out)
		if got := fingerprint(t, c, "app_restored"); got != want {
			t.Errorf("restored app differs from the backed-up one:\ngot  %s\nwant %s", got, want)
		}
		if got := rolePassword(t, c, "Report Reader"); got != readerPassword {
			t.Errorf("dropped role restored with password %q, want the backed-up %q", got, readerPassword)
		}
		var limit int
		pgtest.QueryRow(t, c, "postgres", `SELECT rolconnlimit FROM pg_roles WHERE rolname = 'Report Reader'`).Scan(&limit)
		if limit != 3 {
			t.Errorf("restored role's connection limit = %d, want 3", limit)
		}
		if got := rolePassword(t, c, "app_owner"); got != ownerPassword {
			t.Errorf("--globals changed the password of the existing role app_owner")
		}
		if !strings.Contains(out, "Report Reader") || !strings.Contains(out, "app_owner") {
			t.Errorf("restore report does not name the created and the kept roles:\n%s", out)
		}
	})

	t.Run("parallel from a temporary file", func(t *testing.T) {
		tmp := t.TempDir()
		mustHestami(t, e.config, "restore", "logical", "--backup", "latest", "--database", "app", "--into", "app_parallel", "--jobs", "2", "--temp-dir", tmp)
		if got := fingerprint(t, c, "app_parallel"); got != want {
			t.Errorf("restored app differs from the backed-up one:\ngot  %s\nwant %s", got, want)
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("temporary directory not cleaned up: %v", left)
		}
	})

	t.Run("odd database name", func(t *testing.T) {
		into := `restored "odd"/name`
		mustHestami(t, e.config, "restore", "logical", "--database", odd, "--into", into, "--jobs", "2")
		if got := oddSum(into); got != wantOdd {
			t.Errorf("restored %q holds %s, want %s", into, got, wantOdd)
		}
	})

	t.Run("existing database refused without replace", func(t *testing.T) {
		pgtest.Exec(t, c, "app_restored", "INSERT INTO events (item, payload) VALUES (1, 'kept?')")
		changed := fingerprint(t, c, "app_restored")
		_, _, err := hestami(t, e.config, "restore", "logical", "--database", "app", "--into", "app_restored")
		if !errors.Is(err, backup.ErrDatabaseExists) || !strings.Contains(err.Error(), "--replace") {
			t.Fatalf("restore into an existing database: err = %v, want ErrDatabaseExists mentioning --replace", err)
		}
		if got := fingerprint(t, c, "app_restored"); got != changed {
			t.Errorf("refused restore changed the existing database")
		}
		mustHestami(t, e.config, "restore", "logical", "--database", "app", "--into", "app_restored", "--replace", "--jobs", "1")
		if got := fingerprint(t, c, "app_restored"); got != want {
			t.Errorf("restore --replace: database differs from the backup:\ngot  %s\nwant %s", got, want)
		}
	})

	t.Run("unknown database", func(t *testing.T) {
		before := storedBackups(t, e.config)
		_, _, err := hestami(t, e.config, "backup", "push", "--type", "logical", "--database", "app", "--database", "nope")
		var nf *backup.DatabaseNotFoundError
		if !errors.As(err, &nf) || nf.Name != "nope" || !strings.Contains(err.Error(), `"app"`) {
			t.Fatalf("backup of a missing database: err = %v, want a DatabaseNotFoundError for nope listing the databases", err)
		}
		if after := storedBackups(t, e.config); len(after) != len(before) {
			t.Errorf("a refused backup left something in the repository: %+v", after)
		}
		_, _, err = hestami(t, e.config, "restore", "logical", "--database", "nope", "--into", "x")
		if !errors.As(err, &nf) || !strings.Contains(err.Error(), id) {
			t.Errorf("restore of a database not in the backup: err = %v, want a DatabaseNotFoundError naming the backup", err)
		}
	})

	t.Run("dump fails", func(t *testing.T) {
		// A user that may connect but not read the tables: pg_dump itself fails.
		pgtest.Exec(t, c, "postgres", "CREATE ROLE weak LOGIN")
		pgtest.Exec(t, c, "postgres", "GRANT pg_read_all_settings, pg_monitor TO weak")
		pgtest.Exec(t, c, "postgres", "GRANT EXECUTE ON FUNCTION pg_control_system() TO weak")
		before := storedBackups(t, e.config)
		_, _, err := hestami(t, e.writeConfig(t, "weak"), "backup", "push", "--type", "logical", "--database", "app")
		var te *postgres.ToolError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("backup as a user without privileges: err = %v, want a ToolError carrying the tool's message", err)
		}
		t.Logf("as the operator sees it:\n%v", err)
		if after := storedBackups(t, e.config); len(after) != len(before) {
			t.Errorf("a failed backup left something in the repository: %+v", after)
		}
	})

	t.Run("corrupt object", func(t *testing.T) {
		key := backup.BackupKey(id, "app.dump")
		path := filepath.Join(e.repo, filepath.FromSlash(key))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x40
		if err := os.WriteFile(path, b, 0o640); err != nil {
			t.Fatal(err)
		}
		for _, jobs := range []string{"1", "2"} {
			into := "app_corrupt_" + jobs
			_, _, err := hestami(t, e.config, "restore", "logical", "--database", "app", "--into", into, "--jobs", jobs)
			if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), key) {
				t.Errorf("--jobs %s: restore of a corrupt object: err = %v, want ErrCorrupt naming %s", jobs, err, key)
			}
			t.Logf("--jobs %s, as the operator sees it: %v", jobs, err)
			if databaseExists(t, c, into) {
				t.Errorf("--jobs %s: restore of a corrupt object created database %s", jobs, into)
			}
		}
	})
}

// TestLogicalRestoreDropsOnFailure checks the promise that a database the restore
// created holds the whole backup or does not exist: here pg_restore fails because an
// owning role is missing and --globals was not given.
func TestLogicalRestoreDropsOnFailure(t *testing.T) {
	t.Parallel()
	e := newLogicalEnv(t)
	c := e.c
	pgtest.Exec(t, c, "postgres", "CREATE ROLE gone LOGIN")
	pgtest.Exec(t, c, "postgres", "CREATE DATABASE shop")
	pgtest.Exec(t, c, "shop", "CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 100) g")
	pgtest.Exec(t, c, "shop", "ALTER TABLE orders OWNER TO gone")
	mustHestami(t, e.config, "backup", "push", "--type", "logical", "--database", "shop")
	pgtest.Exec(t, c, "postgres", "DROP DATABASE shop")
	pgtest.Exec(t, c, "postgres", "DROP ROLE gone")

	_, _, err := hestami(t, e.config, "restore", "logical", "--database", "shop", "--into", "shop", "--jobs", "1")
	var te *postgres.ToolError
	if !errors.As(err, &te) || te.Program != "pg_restore" || !strings.Contains(err.Error(), `role "gone" does not exist`) {
		t.Fatalf("restore with a missing role: err = %v, want pg_restore's error naming the role", err)
	}
	t.Logf("as the operator sees it:\n%v", err)
	if databaseExists(t, c, "shop") {
		t.Error("failed restore left the database it created behind")
	}
	out := mustHestami(t, e.config, "restore", "logical", "--database", "shop", "--into", "shop", "--globals")
	var n int
	pgtest.QueryRow(t, c, "shop", "SELECT count(*) FROM orders").Scan(&n)
	if n != 100 {
		t.Errorf("restore with --globals: %d orders, want 100\n%s", n, out)
	}
}
