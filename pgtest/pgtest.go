// Package pgtest starts throwaway PostgreSQL clusters for tests and talks to them.
// Each cluster lives under t.TempDir on a free loopback port and is stopped when the
// test ends. When the tests run as root the clusters run as the cluster user (see
// postgres.ClusterUser), and the directories they use are given to that user.
package pgtest

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hestami/hestami/postgres"
)

// MinMajor is the oldest PostgreSQL major version the tests run against.
const MinMajor = 13

// startTimeout bounds how long a test cluster may take to accept connections.
const startTimeout = 90 * time.Second

// queryTimeout bounds each Exec and QueryRow.
const queryTimeout = 60 * time.Second

// maxSocketPath is the longest Unix socket path the kernel accepts (sun_path less NUL).
const maxSocketPath = 107

// failureLogLines is how much of the server log a failed test shows.
const failureLogLines = 50

// DefaultSettings are the server settings New starts with, under the caller's.
// fsync and full_page_writes stay on: tests of WAL archiving and recovery must see
// what production does.
func DefaultSettings() map[string]string {
	return map[string]string{
		"wal_level":       "replica",
		"max_wal_senders": "4",
		"shared_buffers":  "32MB",
		"max_connections": "30",
	}
}

// New starts a fresh cluster (initdb, then postgres) with DefaultSettings overlaid
// by settings, and stops it when the test ends. On a failed test it logs the end of
// the server log. It fails the test if there are no PostgreSQL server binaries.
func New(t testing.TB, settings map[string]string) *postgres.Cluster {
	t.Helper()
	c := Prepare(t)
	startPrepared(t, c, settings)
	return c
}

// startPrepared initializes and starts a prepared cluster with DefaultSettings
// overlaid by settings.
func startPrepared(t testing.TB, c *postgres.Cluster, settings map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	if err := c.InitDB(ctx, "--no-sync"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	all := DefaultSettings()
	maps.Copy(all, settings)
	if err := c.Start(ctx, all); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Prepare returns a Cluster ready for InitDB or Start but neither initialized nor
// started: an empty data directory owned by the cluster user, a socket directory, a
// log file path and a free port. Use it to restore a backup into c.DataDir and start
// the result. The cluster is stopped when the test ends, if it was started.
func Prepare(t testing.TB) *postgres.Cluster {
	t.Helper()
	bin, err := postgres.FindBinaries(MinMajor)
	if err != nil {
		t.Fatalf("pgtest: %v\nRun `make test`, which installs the PostgreSQL server packages first (or `make deps`).", err)
	}
	u, err := postgres.ClusterUser()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	root := Dir(t)
	dataDir := filepath.Join(root, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := postgres.Chown(dataDir, u); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	port, err := postgres.FreePort()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	c := &postgres.Cluster{
		Bin:       bin,
		DataDir:   dataDir,
		Port:      port,
		SocketDir: socketDir(t, root, port),
		LogFile:   filepath.Join(root, "postgres.log"),
		User:      u,
		Logger:    slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	t.Cleanup(func() {
		if c.PID() == 0 {
			return
		}
		if t.Failed() {
			if data, err := os.ReadFile(c.LogFile); err == nil {
				t.Logf("pgtest: last lines of %s:\n%s", c.LogFile, postgres.LastLines(data, failureLogLines))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// socketDir returns root if a socket path under it fits the kernel's limit, or else a
// short directory under the system temporary directory, removed when the test ends.
func socketDir(t testing.TB, root string, port int) string {
	t.Helper()
	socketName := "/.s.PGSQL.65535"
	if len(root)+len(socketName) <= maxSocketPath {
		return root
	}
	dir, err := os.MkdirTemp("", "pgtest")
	if err != nil {
		t.Fatalf("pgtest: socket dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	u, err := postgres.ClusterUser()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if u != nil {
		if err := postgres.MakeTraversable(dir); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	if err := postgres.Chown(dir, u); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dir
}

// Dir returns a new t.TempDir that the cluster user can reach and owns, for
// directories that the server or its archive_command writes into.
func Dir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	u, err := postgres.ClusterUser()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if u == nil {
		return dir // the server runs as us
	}
	if err := postgres.MakeTraversable(dir); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := postgres.Chown(dir, u); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dir
}

// Connect opens a pgx connection to database db of c, closed when the test ends.
func Connect(t testing.TB, c *postgres.Cluster, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), queryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString(db))
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", c.ConnString(db), err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Exec runs sql with args on database db of c in a connection of its own, failing
// the test on error.
func Exec(t testing.TB, c *postgres.Cluster, db, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), queryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString(db))
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", c.ConnString(db), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: exec %q on %s: %v", sql, db, err)
	}
}

// Row is a query that QueryRow set up and Scan runs.
type Row struct {
	t    testing.TB
	c    *postgres.Cluster
	db   string
	sql  string
	args []any
}

// QueryRow prepares sql with args for database db of c; call Scan on the result:
//
//	var n int
//	pgtest.QueryRow(t, c, "postgres", "SELECT count(*) FROM t WHERE id > $1", 10).Scan(&n)
func QueryRow(t testing.TB, c *postgres.Cluster, db, sql string, args ...any) *Row {
	t.Helper()
	return &Row{t: t, c: c, db: db, sql: sql, args: args}
}

// Scan runs the query in a connection of its own and scans its one row into dest,
// failing the test on error, including when the query returns no row.
func (r *Row) Scan(dest ...any) {
	t := r.t
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), queryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.c.ConnString(r.db))
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", r.c.ConnString(r.db), err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, r.sql, r.args...).Scan(dest...); err != nil {
		t.Fatalf("pgtest: query %q on %s: %v", r.sql, r.db, err)
	}
}
