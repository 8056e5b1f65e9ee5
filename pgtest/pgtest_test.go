package pgtest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

func TestNewStoresAndReadsBack(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, map[string]string{"work_mem": "7MB"})

	pgtest.Exec(t, c, "postgres", "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
	pgtest.Exec(t, c, "postgres", "INSERT INTO items VALUES ($1, $2), ($3, $4)", 1, "one", 2, "two")

	var name string
	pgtest.QueryRow(t, c, "postgres", "SELECT name FROM items WHERE id = $1", 2).Scan(&name)
	if name != "two" {
		t.Errorf("name of item 2 = %q, want %q", name, "two")
	}
	var n int
	pgtest.QueryRow(t, c, "postgres", "SELECT count(*) FROM items").Scan(&n)
	if n != 2 {
		t.Errorf("count = %d, want 2", n)
	}

	tests := []struct {
		setting string
		want    string
	}{
		{"wal_level", "replica"},          // a default of New
		{"max_wal_senders", "4"},          // a default of New
		{"work_mem", "7MB"},               // the caller's
		{"listen_addresses", "127.0.0.1"}, // never the wildcard
	}
	for _, tt := range tests {
		var got string
		pgtest.QueryRow(t, c, "postgres", "SHOW "+tt.setting).Scan(&got)
		if got != tt.want {
			t.Errorf("SHOW %s = %q, want %q", tt.setting, got, tt.want)
		}
	}
}

func TestTwoClustersInParallel(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	ports := map[string]int{}
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				c := pgtest.New(t, nil)
				mu.Lock()
				ports[name] = c.Port
				mu.Unlock()

				pgtest.Exec(t, c, "postgres", "CREATE TABLE mine (who text)")
				pgtest.Exec(t, c, "postgres", "INSERT INTO mine VALUES ($1)", name)
				var who string
				pgtest.QueryRow(t, c, "postgres", "SELECT string_agg(who, ',') FROM mine").Scan(&who)
				if who != name {
					t.Errorf("cluster %s holds %q, want only %q: the clusters share data", name, who, name)
				}
			})
		}
	})
	if t.Failed() {
		return
	}
	if len(ports) != 2 {
		t.Fatalf("ports = %v after both subtests, want two entries", ports)
	}
	if ports["a"] == ports["b"] {
		t.Errorf("both clusters on port %d", ports["a"])
	}
}

func TestStartReportsEarlyExitWithLog(t *testing.T) {
	t.Parallel()
	c := pgtest.Prepare(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.InitDB(ctx, "--no-sync"); err != nil {
		t.Fatal(err)
	}

	err := c.Start(ctx, map[string]string{"shared_buffers": "lots"})
	if !errors.Is(err, postgres.ErrExited) {
		t.Fatalf("Start with a bad setting: err = %v, want ErrExited", err)
	}
	if !strings.Contains(err.Error(), "shared_buffers") {
		t.Errorf("Start error does not show the server log naming the bad setting:\n%v", err)
	}
	t.Logf("Start error as an operator sees it:\n%v", err)
	select {
	case <-c.Exited():
	default:
		t.Error("Exited not closed after Start reported the exit")
	}
	if c.ExitErr() == nil {
		t.Error("ExitErr = nil after a failed start, want the exit status")
	}
}

func TestStopThenStartAsHotStandby(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, nil)
	pgtest.Exec(t, c, "postgres", "CREATE TABLE kept AS SELECT 42 AS answer")
	firstPID := c.PID()

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-c.Exited():
	default:
		t.Fatal("Exited not closed after Stop returned")
	}
	if err := c.Wait(); err != nil {
		t.Errorf("Wait after a fast shutdown = %v, want nil", err)
	}

	// A standby with no primary stays in recovery for good, but must still be
	// reported started once it accepts (read-only) connections.
	signal := filepath.Join(c.DataDir, "standby.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Chown(signal, c.User); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, map[string]string{"hot_standby": "on"}); err != nil {
		t.Fatalf("Start in standby mode: %v", err)
	}
	if c.PID() == firstPID || c.PID() == 0 {
		t.Errorf("PID after restart = %d, first run had %d", c.PID(), firstPID)
	}
	var inRecovery bool
	pgtest.QueryRow(t, c, "postgres", "SELECT pg_is_in_recovery()").Scan(&inRecovery)
	if !inRecovery {
		t.Error("pg_is_in_recovery() = false with standby.signal, want true")
	}
	var answer int
	pgtest.QueryRow(t, c, "postgres", "SELECT answer FROM kept").Scan(&answer)
	if answer != 42 {
		t.Errorf("answer = %d after restart, want 42", answer)
	}
}
