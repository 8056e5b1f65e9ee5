package pgtest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hestami/hestami/postgres"
)

// The shared cluster serves every Database of one test process: tests that only need
// a database of their own (the auth service's) do not pay for a cluster each.
var shared struct {
	mu      sync.Mutex
	main    bool // Main is running the tests
	cluster *postgres.Cluster
	dir     string
	err     error
	dbs     atomic.Int64
}

// Main runs the tests of a package that uses Database and stops the shared cluster
// afterwards. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	if c := shared.cluster; c != nil && c.PID() != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		if err := c.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop the shared cluster: %v\n", err)
		}
		cancel()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// Database creates an empty database of its own for the test on the process's
// shared cluster (started on first use) and returns its connection URL. The
// package's TestMain must call Main, which stops the cluster at the end.
func Database(t testing.TB) string {
	t.Helper()
	c := sharedCluster(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), shared.dbs.Add(1))
	ctx, cancel := context.WithTimeout(t.Context(), queryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect to the shared cluster: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return c.ConnString(name)
}

// SharedCluster returns the process's shared cluster (see Database).
func SharedCluster(t testing.TB) *postgres.Cluster {
	t.Helper()
	return sharedCluster(t)
}

func sharedCluster(t testing.TB) *postgres.Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatalf("pgtest: Database needs the package's TestMain to call pgtest.Main(m)")
	}
	if shared.cluster == nil && shared.err == nil {
		shared.cluster, shared.err = startShared()
	}
	if shared.err != nil {
		t.Fatalf("pgtest: shared cluster: %v", shared.err)
	}
	return shared.cluster
}

func startShared() (*postgres.Cluster, error) {
	bin, err := postgres.FindBinaries(MinMajor)
	if err != nil {
		return nil, fmt.Errorf("%w\nRun `make test`, which installs the PostgreSQL server packages first (or `make deps`)", err)
	}
	u, err := postgres.ClusterUser()
	if err != nil {
		return nil, err
	}
	// A short path: the Unix socket lives in it.
	root, err := os.MkdirTemp("", "pgshared")
	if err != nil {
		return nil, err
	}
	shared.dir = root
	if err := postgres.MakeTraversable(root); err != nil {
		return nil, err
	}
	if err := postgres.Chown(root, u); err != nil {
		return nil, err
	}
	port, err := postgres.FreePort()
	if err != nil {
		return nil, err
	}
	c := &postgres.Cluster{
		Bin: bin, DataDir: filepath.Join(root, "data"), Port: port, SocketDir: root,
		LogFile: filepath.Join(root, "postgres.log"), User: u,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.InitDB(ctx, "--no-sync"); err != nil {
		return nil, err
	}
	settings := DefaultSettings()
	settings["max_connections"] = "200"
	settings["fsync"] = "off" // databases for service tests, not for WAL tests
	if err := c.Start(ctx, settings); err != nil {
		return nil, err
	}
	return c, nil
}
