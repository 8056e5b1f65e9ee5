package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The platform's schema migrations: NNNN_name.up.sql applies version NNNN and
// NNNN_name.down.sql reverts it. Numbers are shared by every part of the platform
// that keeps tables in the database; they are never reused or renumbered.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the pg_advisory_lock key held while migrating, so that two
// replicas starting at once take turns instead of racing.
const migrationLockKey int64 = 0x6865_7374_616d_6901 // "hestami" + 1

// MigrationStatus is one migration as this binary knows it, and whether the
// database has it.
type MigrationStatus struct {
	Version int
	Name    string
	// AppliedAt is when the migration was applied; zero while it is pending.
	AppliedAt time.Time
	// Modified is set when the migration was applied from a file that differs from
	// the one embedded in this binary (someone edited a shipped migration).
	Modified bool
	// Unknown is set for a migration the database has but this binary does not
	// know: the database was migrated by a newer hestami.
	Unknown bool
}

// migration is one version's pair of files.
type migration struct {
	version  int
	name     string
	up, down string
	checksum string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.(up|down)\.sql$`)

// loadMigrations reads the migrations under dir in fsys, in version order. Every
// file must be named NNNN_name.up.sql or NNNN_name.down.sql, and every version
// needs both.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	byVersion := map[int]*migration{}
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			return nil, fmt.Errorf("migration file %s: name it NNNN_name.up.sql or NNNN_name.down.sql (lower case)", e.Name())
		}
		version, _ := strconv.Atoi(m[1])
		if version == 0 {
			return nil, fmt.Errorf("migration file %s: versions start at 0001", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		mg := byVersion[version]
		if mg == nil {
			mg = &migration{version: version, name: m[2]}
			byVersion[version] = mg
		}
		if mg.name != m[2] {
			return nil, fmt.Errorf("migration %04d has two names, %s and %s: one version, one name", version, mg.name, m[2])
		}
		if m[3] == "up" {
			mg.up = string(b)
			sum := sha256.Sum256(b)
			mg.checksum = hex.EncodeToString(sum[:])
		} else {
			mg.down = string(b)
		}
	}
	out := make([]migration, 0, len(byVersion))
	for _, mg := range byVersion {
		if mg.checksum == "" {
			return nil, fmt.Errorf("migration %04d_%s has no .up.sql file", mg.version, mg.name)
		}
		if mg.down == "" {
			return nil, fmt.Errorf("migration %04d_%s has no .down.sql file (write one, even if it only says why it cannot be undone)", mg.version, mg.name)
		}
		out = append(out, *mg)
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out, nil
}

// embeddedMigrations returns the migrations built into this binary.
func embeddedMigrations() ([]migration, error) {
	return loadMigrations(migrationFiles, "migrations")
}

// appliedMigration is a row of hestami_schema_migrations.
type appliedMigration struct {
	version   int
	name      string
	checksum  string
	appliedAt time.Time
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS hestami_schema_migrations (
	version int PRIMARY KEY,
	name text NOT NULL,
	checksum text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// querier is what reading the migrations table needs: a connection or a pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// appliedMigrations reads hestami_schema_migrations, by version; none if the
// table does not exist yet.
func appliedMigrations(ctx context.Context, q querier) (map[int]appliedMigration, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('hestami_schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	out := map[int]appliedMigration{}
	if !exists {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT version, name, checksum, applied_at FROM hestami_schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	var a appliedMigration
	_, err = pgx.ForEachRow(rows, []any{&a.version, &a.name, &a.checksum, &a.appliedAt}, func() error {
		out[a.version] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	return out, nil
}

// checkNotNewer refuses a database migrated by a newer hestami.
func checkNotNewer(known []migration, applied map[int]appliedMigration) error {
	latest := 0
	if len(known) > 0 {
		latest = known[len(known)-1].version
	}
	newest := 0
	for v := range applied {
		newest = max(newest, v)
	}
	if newest > latest {
		return fmt.Errorf("database schema is at %d, this hestami knows up to %d: upgrade hestami", newest, latest)
	}
	for v, a := range applied {
		if !slices.ContainsFunc(known, func(m migration) bool { return m.version == v }) {
			return fmt.Errorf("database has migration %04d_%s, which this hestami does not know: use the hestami that applied it", v, a.name)
		}
	}
	return nil
}

// withMigrationLock runs fn on one connection that holds the migration lock, with
// the migrations table created.
func withMigrationLock(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger, fn func(conn *pgx.Conn) error) (err error) {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to migrate: %w", err)
	}
	defer pc.Release()
	conn := pc.Conn()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, migrationLockKey).Scan(&got); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	if !got {
		logger.Info("another hestami is migrating this database; waiting for it to finish")
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
			// A cancelled wait leaves the connection in an unknown state: drop it.
			_ = conn.Close(context.Background())
			return fmt.Errorf("wait for the migration lock: %w", err)
		}
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey); uerr != nil {
			// Closing the session releases its locks; the pool discards the
			// closed connection.
			_ = conn.Close(uctx)
		}
	}()
	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("create hestami_schema_migrations: %w", err)
	}
	return fn(conn)
}

// MigrateUp applies the migrations the database does not have yet, in version
// order, each in its own transaction, and returns those it applied. It holds a
// PostgreSQL advisory lock while it works, so replicas starting together apply
// each migration once. It refuses a database that a newer hestami migrated.
func MigrateUp(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) ([]MigrationStatus, error) {
	logger = orDiscard(logger)
	known, err := embeddedMigrations()
	if err != nil {
		return nil, err
	}
	var done []MigrationStatus
	err = withMigrationLock(ctx, pool, logger, func(conn *pgx.Conn) error {
		applied, err := appliedMigrations(ctx, conn)
		if err != nil {
			return err
		}
		if err := checkNotNewer(known, applied); err != nil {
			return err
		}
		for _, m := range known {
			if a, ok := applied[m.version]; ok {
				if a.checksum != m.checksum {
					logger.Warn("an applied migration differs from the one in this hestami; the database keeps what was applied",
						"version", m.version, "name", m.name, "applied_at", a.appliedAt)
				}
				continue
			}
			start := time.Now()
			var at time.Time
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.up); err != nil {
					return err
				}
				return tx.QueryRow(ctx, `INSERT INTO hestami_schema_migrations (version, name, checksum) VALUES ($1, $2, $3) RETURNING applied_at`,
					m.version, m.name, m.checksum).Scan(&at)
			})
			if err != nil {
				return fmt.Errorf("apply migration %04d_%s: %w (nothing of it was applied)", m.version, m.name, err)
			}
			logger.Info("applied migration", "version", m.version, "name", m.name, "duration", time.Since(start).Round(time.Millisecond))
			done = append(done, MigrationStatus{Version: m.version, Name: m.name, AppliedAt: at})
		}
		return nil
	})
	if err != nil {
		return done, fmt.Errorf("migrate up: %w", err)
	}
	return done, nil
}

// MigrateDown reverts the latest steps applied migrations (newest first), each in
// its own transaction, and returns those it reverted (now pending, so AppliedAt is
// zero). It reverts fewer if fewer are applied.
func MigrateDown(ctx context.Context, pool *pgxpool.Pool, steps int, logger *slog.Logger) ([]MigrationStatus, error) {
	logger = orDiscard(logger)
	if steps < 1 {
		return nil, fmt.Errorf("migrate down: steps must be at least 1, got %d", steps)
	}
	known, err := embeddedMigrations()
	if err != nil {
		return nil, err
	}
	var done []MigrationStatus
	err = withMigrationLock(ctx, pool, logger, func(conn *pgx.Conn) error {
		applied, err := appliedMigrations(ctx, conn)
		if err != nil {
			return err
		}
		if err := checkNotNewer(known, applied); err != nil {
			return err
		}
		for _, m := range slices.Backward(known) {
			if len(done) == steps {
				break
			}
			if _, ok := applied[m.version]; !ok {
				continue
			}
			start := time.Now()
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.down); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `DELETE FROM hestami_schema_migrations WHERE version = $1`, m.version)
				return err
			})
			if err != nil {
				return fmt.Errorf("revert migration %04d_%s: %w (it is still applied)", m.version, m.name, err)
			}
			logger.Info("reverted migration", "version", m.version, "name", m.name, "duration", time.Since(start).Round(time.Millisecond))
			done = append(done, MigrationStatus{Version: m.version, Name: m.name})
		}
		return nil
	})
	if err != nil {
		return done, fmt.Errorf("migrate down: %w", err)
	}
	return done, nil
}

// MigrationStatuses returns every migration this binary knows, in version order,
// with when it was applied (zero: pending) and whether the applied file differs
// from the embedded one; then any the database has that this binary does not know
// (Unknown).
func MigrationStatuses(ctx context.Context, pool *pgxpool.Pool) ([]MigrationStatus, error) {
	known, err := embeddedMigrations()
	if err != nil {
		return nil, err
	}
	applied, err := appliedMigrations(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(known))
	for _, m := range known {
		s := MigrationStatus{Version: m.version, Name: m.name}
		if a, ok := applied[m.version]; ok {
			s.AppliedAt = a.appliedAt
			s.Modified = a.checksum != m.checksum
			delete(applied, m.version)
		}
		out = append(out, s)
	}
	var unknown []MigrationStatus
	for _, a := range applied {
		unknown = append(unknown, MigrationStatus{Version: a.version, Name: a.name, AppliedAt: a.appliedAt, Unknown: true})
	}
	slices.SortFunc(unknown, func(a, b MigrationStatus) int { return a.Version - b.Version })
	return append(out, unknown...), nil
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
