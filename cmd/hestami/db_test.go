package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// dbTestConfig writes a configuration whose postgres section and auth database
// both point at the database of dbURL (a pgtest.Database URL).
func dbTestConfig(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("postgres:\n  host: %s\n  port: %s\n  user: %s\n  database: %s\nauth:\n  database_url: %q\n",
		u.Hostname(), u.Port(), u.User.Username(), strings.TrimPrefix(u.Path, "/"), dbURL)
	path := filepath.Join(t.TempDir(), "hestami.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// connectTest opens a connection to dbURL, closed when the test ends.
func connectTest(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// runJSON runs the command and decodes its stdout into v.
func runJSON(t *testing.T, config string, v any, args ...string) {
	t.Helper()
	out := mustRun(t, config, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("hestami %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestDBInfo reads db info --json from a server with known settings and two tables
// of known relative size, archiving through a command that always succeeds.
func TestDBInfo(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, map[string]string{
		"max_connections": "27", "superuser_reserved_connections": "2",
		"archive_mode": "on", "archive_command": "/bin/true",
	})
	pgtest.Exec(t, c, "postgres", `CREATE TABLE big (id int PRIMARY KEY, body text);
		INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
		CREATE TABLE small (id int);
		INSERT INTO small VALUES (1), (2), (3);
		ANALYZE big; ANALYZE small;
		SELECT count(*) FROM big;`)
	pgtest.Exec(t, c, "postgres", `SELECT pg_switch_wal()`)
	config := writeTestConfig(t, t.TempDir(), c.Port)

	var info dbInfo
	deadline := time.Now().Add(30 * time.Second)
	for {
		runJSON(t, config, &info, "db", "info", "--json", "--top", "5")
		if info.Archiving.ArchiverStats != nil && info.Archiving.ArchivedCount > 0 && info.CacheHitRatio != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, db info shows no archived WAL or no cache hit ratio: %+v", info)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if info.Server.VersionNum < pgtest.MinMajor*10000 || info.Server.Version == "" || info.Server.InRecovery {
		t.Errorf("server = %+v, want a version and not in recovery", info.Server)
	}
	if info.Server.UptimeSeconds <= 0 || time.Since(info.Server.StartedAt) > 10*time.Minute {
		t.Errorf("uptime %v s since %v: want the test server's", info.Server.UptimeSeconds, info.Server.StartedAt)
	}
	if cn := info.Connections; cn.Max != 27 || cn.SuperuserReserved != 2 || cn.Used < 1 || cn.Available != 27-2-cn.Used ||
		cn.UsageRatio != float64(cn.Used)/27 {
		t.Errorf("connections = %+v, want 27 max, 2 reserved for superusers, at least this one used", cn)
	}
	if r := *info.CacheHitRatio; r <= 0 || r > 1 {
		t.Errorf("cache hit ratio %v, want within (0, 1]", r)
	}
	if info.Database != "postgres" {
		t.Errorf("database %q, want postgres", info.Database)
	}
	var names []string
	for i, d := range info.Databases {
		names = append(names, d.Name)
		if d.SizeBytes == nil || *d.SizeBytes <= 0 {
			t.Errorf("database %s: size %v, want one", d.Name, d.SizeBytes)
			continue
		}
		if i > 0 && info.Databases[i-1].SizeBytes != nil && *info.Databases[i-1].SizeBytes < *d.SizeBytes {
			t.Errorf("databases not largest first: %s after %s", d.Name, info.Databases[i-1].Name)
		}
	}
	if !slices.Contains(names, "postgres") || slices.Contains(names, "template0") {
		t.Errorf("databases %v, want postgres and no templates", names)
	}
	if len(info.Tables) != 2 || info.Tables[0].Name != "big" || info.Tables[1].Name != "small" {
		t.Fatalf("tables = %+v, want big then small", info.Tables)
	}
	big, small := info.Tables[0], info.Tables[1]
	if big.TableBytes < 20000*200 || big.IndexBytes <= 0 || big.TotalBytes != big.TableBytes+big.IndexBytes || big.RowsEstimate != 20000 {
		t.Errorf("big = %+v, want over 4 MB of table, an index, total = table + indexes, 20000 rows", big)
	}
	if small.IndexBytes != 0 || small.TableBytes <= 0 || small.TotalBytes >= big.TotalBytes || small.Schema != "public" {
		t.Errorf("small = %+v, want a little table without indexes in public", small)
	}
	if a := info.Archiving; a.Mode != "on" || a.LastArchivedWAL == "" || a.LastArchivedTime == nil || a.FailedCount != 0 {
		t.Errorf("archiving = %+v %+v, want archive_mode on with a segment archived and no failure", a, a.ArchiverStats)
	}

	// The table for people has the same facts.
	out := mustRun(t, config, "db", "info", "--top", "1")
	for _, want := range []string{"of 27 max_connections used", "2 reserved for superusers", "archive_mode on", "public.big", "Largest tables of database postgres"} {
		if !strings.Contains(out, want) {
			t.Errorf("db info output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "public.small") || strings.Contains(out, "\x1b[") {
		t.Errorf("db info --top 1 lists more than one table, or colours output that is not a terminal:\n%s", out)
	}
}

// TestDBConnections holds a session idle in a transaction and finds it listed
// past a tiny threshold, and not past a long one; a plain idle session is counted
// in its group but never listed.
func TestDBConnections(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Database(t)
	config := dbTestConfig(t, dbURL)
	idle := connectTest(t, dbURL+"&application_name=test-held-open")
	plain := connectTest(t, dbURL+"&application_name=test-plain-idle")
	tx, err := idle.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(t.Context(), "SELECT 'held open'"); err != nil {
		t.Fatal(err)
	}
	pid, plainPID := int(idle.PgConn().PID()), int(plain.PgConn().PID())

	var rep connectionsReport
	deadline := time.Now().Add(30 * time.Second)
	for {
		runJSON(t, config, &rep, "db", "connections", "--json", "--idle-threshold", "50ms")
		if slices.ContainsFunc(rep.IdleInTransaction, func(s sessionJSON) bool { return s.PID == pid }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, session %d is not listed idle in transaction: %+v", pid, rep)
		}
		time.Sleep(20 * time.Millisecond)
	}
	i := slices.IndexFunc(rep.IdleInTransaction, func(s sessionJSON) bool { return s.PID == pid })
	s := rep.IdleInTransaction[i]
	db := strings.TrimPrefix(idle.Config().Database, "/")
	if s.State != "idle in transaction" || s.Application != "test-held-open" || s.Database != db || s.User != "postgres" ||
		s.Client != "127.0.0.1" || !strings.Contains(s.Query, "held open") || s.StateSeconds <= 0.05 || s.TransactionSeconds < s.StateSeconds {
		t.Errorf("listed session = %+v, want test-held-open idle in transaction on %s for over 50ms", s, db)
	}
	if slices.ContainsFunc(rep.IdleInTransaction, func(s sessionJSON) bool { return s.PID == plainPID }) {
		t.Errorf("a session idle outside a transaction is listed: %+v", rep.IdleInTransaction)
	}
	for _, want := range []connectionGroup{
		{State: "idle in transaction", Application: "test-held-open", Client: "127.0.0.1", Count: 1},
		{State: "idle", Application: "test-plain-idle", Client: "127.0.0.1", Count: 1},
	} {
		if !slices.Contains(rep.Groups, want) {
			t.Errorf("groups lack %+v: %+v", want, rep.Groups)
		}
	}
	if rep.ByState["idle in transaction"] < 1 || rep.ByState["idle"] < 1 || rep.Connections.Max != 200 || rep.Connections.Used < 3 {
		t.Errorf("by state %v, usage %+v: want both states counted against the shared cluster's 200 connections", rep.ByState, rep.Connections)
	}

	runJSON(t, config, &rep, "db", "connections", "--json", "--idle-threshold", "1h")
	if slices.ContainsFunc(rep.IdleInTransaction, func(s sessionJSON) bool { return s.PID == pid }) {
		t.Errorf("session idle for well under an hour listed past --idle-threshold 1h: %+v", rep.IdleInTransaction)
	}

	out := mustRun(t, config, "db", "connections", "--idle-threshold", "50ms")
	if !strings.Contains(out, fmt.Sprintf("\n%d ", pid)) || !strings.Contains(out, "idle in a transaction for longer than 50ms") ||
		!strings.Contains(out, "SELECT 'held open'") || strings.Contains(out, "\x1b[") {
		t.Errorf("db connections output lacks the held session %d (uncoloured, not a terminal):\n%s", pid, out)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader in two goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestDBConnectionsWatch refreshes until cancelled (Ctrl-C), then exits cleanly.
func TestDBConnectionsWatch(t *testing.T) {
	t.Parallel()
	config := dbTestConfig(t, pgtest.Database(t))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		getenv := func(k string) (string, bool) {
			if k == "HESTAMI_CONFIG" {
				return config, true
			}
			return "", false
		}
		done <- NewProgram(strings.NewReader(""), &out, t.Output(), getenv).Run(ctx, []string{"db", "connections", "--watch", "100ms", "--json"})
	}()
	// Three documents: the first draw and two refreshes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		dec := json.NewDecoder(strings.NewReader(out.String()))
		n := 0
		for {
			var rep connectionsReport
			if dec.Decode(&rep) != nil {
				break
			}
			n++
		}
		if n >= 3 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("--watch stopped by itself after %d refreshes: %v\n%s", n, err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, %d of 3 refreshes:\n%s", n, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("--watch after Ctrl-C: %v, want a clean exit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("--watch still running 30 s after Ctrl-C")
	}
}

// TestDBMigrate runs the platform's migrations on a fresh database: all pending,
// up applies them all, down --steps 1 reverts the newest only, and down refuses
// without --yes when there is no terminal to ask on.
func TestDBMigrate(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Database(t)
	config := dbTestConfig(t, dbURL)

	var status []migrationJSON
	runJSON(t, config, &status, "db", "migrate", "status", "--json")
	if len(status) < 2 {
		t.Fatalf("status on a fresh database: %+v, want the platform's migrations", status)
	}
	for i, m := range status {
		if m.Version != i+1 || m.Name == "" || m.Applied || m.AppliedAt != nil || m.Modified || m.Unknown {
			t.Errorf("fresh database, migration %d: %+v, want version %d pending", i, m, i+1)
		}
	}
	latest := status[len(status)-1]

	var applied []migrationJSON
	runJSON(t, config, &applied, "db", "migrate", "up", "--json")
	if len(applied) != len(status) {
		t.Fatalf("up applied %+v, want all %d", applied, len(status))
	}
	runJSON(t, config, &status, "db", "migrate", "status", "--json")
	for _, m := range status {
		if !m.Applied || m.AppliedAt == nil || time.Since(*m.AppliedAt) > 10*time.Minute {
			t.Errorf("after up: %+v, want applied just now", m)
		}
	}
	var n int
	if err := connectTest(t, dbURL).QueryRow(t.Context(), `SELECT count(*) FROM hestami_schema_migrations`).Scan(&n); err != nil || n != len(status) {
		t.Errorf("hestami_schema_migrations has %d rows (%v), want %d", n, err, len(status))
	}

	if _, err := runCLI(t, config, "db", "migrate", "down"); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("down without --yes and without a terminal: %v, want a refusal asking for --yes", err)
	}
	var reverted []migrationJSON
	runJSON(t, config, &reverted, "db", "migrate", "down", "--steps", "1", "--yes", "--json")
	if len(reverted) != 1 || reverted[0].Version != latest.Version || reverted[0].Applied {
		t.Fatalf("down --steps 1 reverted %+v, want only %04d_%s", reverted, latest.Version, latest.Name)
	}
	runJSON(t, config, &status, "db", "migrate", "status", "--json")
	for _, m := range status {
		if m.Applied == (m.Version == latest.Version) {
			t.Errorf("after down --steps 1: %+v, want only %d pending", m, latest.Version)
		}
	}
	out := mustRun(t, config, "db", "migrate", "status")
	if !strings.Contains(out, fmt.Sprintf("%04d  ", latest.Version)) || !strings.Contains(out, "pending") ||
		!strings.Contains(out, fmt.Sprintf("%d applied, 1 pending", len(status)-1)) {
		t.Errorf("migrate status output:\n%s", out)
	}
	out = mustRun(t, config, "db", "migrate", "up")
	if !strings.Contains(out, fmt.Sprintf("applied %04d_%s", latest.Version, latest.Name)) || !strings.Contains(out, "Applied 1 migration") {
		t.Errorf("up after down: %s, want the one reverted applied again", out)
	}
}

// TestDBPsql runs the real psql through hestami db psql.
func TestDBPsql(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.Database(t)
	config := dbTestConfig(t, dbURL)
	if out := mustRun(t, config, "db", "psql", "--", "-c", "select 40 + 2 as answer"); !strings.Contains(out, "42") || !strings.Contains(out, "answer") {
		t.Errorf("db psql -c: %q, want the answer 42", out)
	}
	db := strings.TrimPrefix(connectTest(t, dbURL).Config().Database, "/")
	if out := mustRun(t, config, "db", "psql", "--", "-At", "-c", "select current_database()"); strings.TrimSpace(out) != db {
		t.Errorf("db psql connected to %q, want the configured %q", strings.TrimSpace(out), db)
	}
	if out := mustRun(t, config, "db", "psql", "--database", "postgres", "--", "-At", "-c", "select current_database()"); strings.TrimSpace(out) != "postgres" {
		t.Errorf("db psql --database postgres connected to %q", strings.TrimSpace(out))
	}
	_, err := runCLI(t, config, "db", "psql", "--", "-c", "select no_such_column")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Errorf("psql failing: %v, want hestami to exit with psql's status 1", err)
	}
}

// TestDBPsqlPassword checks the password reaches psql in its environment only,
// replacing any PGPASSWORD hestami inherited, and never on its command line.
func TestDBPsqlPassword(t *testing.T) {
	t.Setenv("PGPASSWORD", "inherited")
	t.Setenv("PGDATABASE", "inherited")
	p := NewProgram(strings.NewReader(""), io.Discard, io.Discard, func(string) (string, bool) { return "", false })
	p.cfg.Postgres.Host, p.cfg.Postgres.User, p.cfg.Postgres.Password, p.cfg.Postgres.Database = "db.internal", "ops", "s3cret-pw", "hestami"
	for _, tc := range []struct {
		name, database, wantDB string
	}{
		{"configured database", "", "hestami"},
		{"--database", "reports", "reports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := p.psqlCommand("/usr/bin/psql", tc.database, []string{"-c", "select 1"})
			for _, a := range c.Args {
				if strings.Contains(a, "s3cret") {
					t.Errorf("password on psql's command line: %q", c.Args)
				}
			}
			got := map[string][]string{}
			for _, kv := range c.Env {
				k, v, _ := strings.Cut(kv, "=")
				got[k] = append(got[k], v)
			}
			for k, want := range map[string]string{"PGPASSWORD": "s3cret-pw", "PGDATABASE": tc.wantDB, "PGHOST": "db.internal", "PGUSER": "ops"} {
				if !slices.Equal(got[k], []string{want}) {
					t.Errorf("psql's %s = %q, want only %q", k, got[k], want)
				}
			}
		})
	}
}

// TestDBErrors checks that failures say what failed, on what, and what to check.
func TestDBErrors(t *testing.T) {
	t.Parallel()
	port, err := postgres.FreePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "hestami.yaml")
	yaml := fmt.Sprintf("postgres:\n  host: 127.0.0.1\n  port: %d\n  user: postgres\n  bin_dir: %s\nauth:\n  database_url: postgres://postgres@127.0.0.1:%d/hestami?sslmode=disable&connect_timeout=5\n", port, dir, port)
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for _, tc := range []struct {
		name  string
		args  []string
		want  []string
		usage bool
	}{
		{"info, server down", []string{"db", "info"}, []string{addr, "PGHOST"}, false},
		{"connections, server down", []string{"db", "connections"}, []string{addr, "PGPORT"}, false},
		{"migrate, server down", []string{"db", "migrate", "status"}, []string{addr, `"hestami"`, "HESTAMI_DATABASE_URL"}, false},
		{"psql missing from bin_dir", []string{"db", "psql"}, []string{"no psql in postgres.bin_dir " + dir}, false},
		{"down zero steps", []string{"db", "migrate", "down", "--steps", "0", "--yes"}, []string{"--steps 0"}, true},
		{"watch too fast", []string{"db", "connections", "--watch", "1ms"}, []string{"--watch 1ms"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := runCLI(t, config, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			var ee *exitError
			if got := errors.As(err, &ee) && ee.code == ExitUsage; got != tc.usage {
				t.Errorf("usage error (exit 2) = %v, want %v", got, tc.usage)
			}
		})
	}
}
