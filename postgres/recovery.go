package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
)

// Recovery end states WaitRecovered waits for (backup.ActionPause and
// backup.ActionPromote).
const (
	recoveryPause   = "pause"
	recoveryPromote = "promote"
)

// WaitRecovered polls the server c until recovery has reached its target: promoted
// (no longer in recovery; action "promote") or paused at the target (action
// "pause"), connecting with connStr. It fails when the server exits or ctx ends.
func WaitRecovered(ctx context.Context, c *Cluster, connStr, action string) error {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	query := "SELECT NOT pg_is_in_recovery()"
	if action == recoveryPause {
		query = "SELECT pg_is_in_recovery() AND pg_get_wal_replay_pause_state() = 'paused'"
	}
	var lastErr error
	for {
		select {
		case <-c.Exited():
			return fmt.Errorf("recovery failed: the server exited (%v) before reaching the target", c.ExitErr())
		default:
		}
		if conn == nil {
			conn, lastErr = Connect(ctx, connStr)
		}
		if conn != nil {
			var done bool
			if lastErr = conn.QueryRow(ctx, query).Scan(&done); lastErr == nil && done {
				return nil
			} else if lastErr != nil {
				conn.Close(context.WithoutCancel(ctx))
				conn = nil
			}
		}
		select {
		case <-c.Exited():
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("recovery did not reach the target in time (last check: %v)", lastErr)
			}
			return errors.New("recovery did not reach the target in time")
		case <-ticker.C:
		}
	}
}

// BinariesFor returns PostgreSQL server programs of major version major: those in
// binDir when set (postgres.bin_dir), else an installation found by FindBinaries or
// /usr/lib/postgresql/<major>/bin.
func BinariesFor(binDir string, major int) (Binaries, error) {
	if binDir != "" {
		return Binaries{Dir: binDir, Major: major}, nil
	}
	if b, err := FindBinaries(major); err == nil && b.Major == major {
		return b, nil
	}
	d := filepath.Join(debianRoot, fmt.Sprint(major), "bin")
	if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
		return Binaries{Dir: d, Major: major}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return Binaries{}, err
	}
	return Binaries{}, fmt.Errorf("the backup is of PostgreSQL %d and no PostgreSQL %d server programs were found: install them (apt-get install postgresql-%d) or set HESTAMI_PG_BINDIR", major, major, major)
}
