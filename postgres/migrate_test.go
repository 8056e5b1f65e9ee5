package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newPool opens a pool on a fresh, empty database of the shared test cluster.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return openPool(t, pgtest.Database(t))
}

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := postgres.OpenPool(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// knownMigrations is every migration this binary has, as a fresh database reports
// them.
func knownMigrations(t *testing.T) []postgres.MigrationStatus {
	t.Helper()
	st, err := postgres.MigrationStatuses(t.Context(), newPool(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(st) == 0 {
		t.Fatal("no migrations embedded")
	}
	return st
}

func versions(ss []postgres.MigrationStatus) []int {
	var out []int
	for _, s := range ss {
		out = append(out, s.Version)
	}
	return out
}

// schemaObjects lists the tables, sequences, indexes, views and functions in the
// public schema, except the migrations table's own.
func schemaObjects(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(t.Context(), `
		SELECT c.relkind::text || ' ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relname NOT LIKE 'hestami_schema_migrations%'
		UNION ALL
		SELECT 'function ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
		UNION ALL
		SELECT 'type ' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = 'public' AND t.typrelid = 0 AND t.typelem = 0
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrateUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newPool(t)
	known := knownMigrations(t)
	all := versions(known)

	st, err := postgres.MigrationStatuses(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !s.AppliedAt.IsZero() || s.Modified || s.Unknown {
			t.Errorf("fresh database: migration %d should be pending, got %+v", s.Version, s)
		}
	}

	before := time.Now().Add(-time.Minute)
	applied, err := postgres.MigrateUp(ctx, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(versions(applied), all) {
		t.Fatalf("MigrateUp applied %v, want %v", versions(applied), all)
	}
	for _, a := range applied {
		if a.AppliedAt.Before(before) || a.Name == "" {
			t.Errorf("applied %+v: want a name and the time it was applied", a)
		}
	}
	if objs := schemaObjects(t, pool); !slices.Contains(objs, "r users") || !slices.Contains(objs, "r audit_events") {
		t.Fatalf("after MigrateUp the auth tables should exist; public schema has %v", objs)
	}
	st, err = postgres.MigrationStatuses(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.AppliedAt.IsZero() || s.Modified || s.Unknown {
			t.Errorf("after MigrateUp: migration %d should be applied and unmodified, got %+v", s.Version, s)
		}
	}
	again, err := postgres.MigrateUp(ctx, pool, nil)
	if err != nil || len(again) != 0 {
		t.Fatalf("second MigrateUp = %v, %v; want nothing applied", again, err)
	}

	// One step down reverts only the newest.
	down, err := postgres.MigrateDown(ctx, pool, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(versions(down), all[len(all)-1:]) {
		t.Fatalf("MigrateDown(1) reverted %v, want %v", versions(down), all[len(all)-1:])
	}
	st, err = postgres.MigrationStatuses(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if pending := s.AppliedAt.IsZero(); pending != (i == len(st)-1) {
			t.Errorf("after MigrateDown(1): migration %d pending=%v", s.Version, pending)
		}
	}

	// Down past the first: everything goes, and nothing is left behind.
	down, err = postgres.MigrateDown(ctx, pool, len(all)+5, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantDown := slices.Clone(all[:len(all)-1])
	slices.Reverse(wantDown)
	if !slices.Equal(versions(down), wantDown) {
		t.Fatalf("MigrateDown(all) reverted %v, want %v (newest first)", versions(down), wantDown)
	}
	if objs := schemaObjects(t, pool); len(objs) != 0 {
		t.Fatalf("after migrating all the way down the public schema still has %v: a down migration forgets something", objs)
	}
	if down, err := postgres.MigrateDown(ctx, pool, 1, nil); err != nil || len(down) != 0 {
		t.Fatalf("MigrateDown with nothing applied = %v, %v; want nothing, no error", down, err)
	}

	applied, err = postgres.MigrateUp(ctx, pool, nil)
	if err != nil {
		t.Fatalf("MigrateUp after migrating down: %v", err)
	}
	if !slices.Equal(versions(applied), all) {
		t.Fatalf("MigrateUp after down applied %v, want %v", versions(applied), all)
	}
}

func TestMigrateDownNeedsSteps(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	if _, err := postgres.MigrateDown(t.Context(), pool, 0, nil); err == nil || !strings.Contains(err.Error(), "at least 1") {
		t.Fatalf("MigrateDown(0) = %v, want an error about steps", err)
	}
}

func TestMigrationStatusModified(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newPool(t)
	if _, err := postgres.MigrateUp(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE hestami_schema_migrations SET checksum = 'edited' WHERE version = 1`); err != nil {
		t.Fatal(err)
	}
	st, err := postgres.MigrationStatuses(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Modified != (s.Version == 1) {
			t.Errorf("migration %d: Modified = %v, want %v", s.Version, s.Modified, s.Version == 1)
		}
		if s.AppliedAt.IsZero() {
			t.Errorf("migration %d: should still show as applied", s.Version)
		}
	}
	// A modified migration is reported, not re-run.
	if applied, err := postgres.MigrateUp(ctx, pool, nil); err != nil || len(applied) != 0 {
		t.Fatalf("MigrateUp with a modified migration = %v, %v; want nothing applied", applied, err)
	}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newPool(t)
	known := knownMigrations(t)
	latest := known[len(known)-1].Version
	if _, err := postgres.MigrateUp(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	future := latest + 2
	if _, err := pool.Exec(ctx, `INSERT INTO hestami_schema_migrations (version, name, checksum) VALUES ($1, 'from_the_future', 'x')`, future); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("database schema is at %d, this hestami knows up to %d: upgrade hestami", future, latest)
	if _, err := postgres.MigrateUp(ctx, pool, nil); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("MigrateUp = %v, want %q", err, want)
	}
	if _, err := postgres.MigrateDown(ctx, pool, 1, nil); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("MigrateDown = %v, want %q", err, want)
	}
	st, err := postgres.MigrationStatuses(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	last := st[len(st)-1]
	if last.Version != future || !last.Unknown || last.Name != "from_the_future" || last.AppliedAt.IsZero() {
		t.Fatalf("status should end with the unknown migration %d, got %+v", future, last)
	}
	// Nothing was reverted.
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM hestami_schema_migrations`).Scan(&n); err != nil || n != len(known)+1 {
		t.Fatalf("migrations recorded = %d, %v; want %d", n, err, len(known)+1)
	}
}

func TestMigrateUpConcurrently(t *testing.T) {
	t.Parallel()
	url := pgtest.Database(t)
	all := versions(knownMigrations(t))
	// Each "replica" has a pool of its own.
	const replicas = 4
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		applied []int
		errs    []error
	)
	for range replicas {
		pool := openPool(t, url)
		wg.Go(func() {
			<-start
			got, err := postgres.MigrateUp(t.Context(), pool, nil)
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, versions(got)...)
			errs = append(errs, err)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent MigrateUp: %v", err)
	}
	slices.Sort(applied)
	if !slices.Equal(applied, all) {
		t.Fatalf("between them the replicas applied %v, want each of %v once", applied, all)
	}
	pool := openPool(t, url)
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM hestami_schema_migrations`).Scan(&n); err != nil || n != len(all) {
		t.Fatalf("migrations recorded = %d, %v; want %d", n, err, len(all))
	}
	// Every connection gave its lock back: another migration run starts at once.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := postgres.MigrateDown(ctx, pool, 1, nil); err != nil {
		t.Fatalf("MigrateDown after the concurrent runs: %v", err)
	}
}

func TestAuditEventsAppendOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newPool(t)
	if _, err := postgres.MigrateUp(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO audit_events (action, outcome, detail) VALUES ('signin', 'success', 'kept')`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, sql string }{
		{"update", `UPDATE audit_events SET detail = 'rewritten'`},
		{"update no row", `UPDATE audit_events SET detail = 'x' WHERE false`},
		{"delete", `DELETE FROM audit_events`},
		{"delete no row", `DELETE FROM audit_events WHERE id < 0`},
		{"truncate", `TRUNCATE audit_events`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pool.Exec(ctx, tc.sql)
			if err == nil || !strings.Contains(err.Error(), "the audit log is append-only") {
				t.Fatalf("%s = %v, want the append-only error", tc.sql, err)
			}
		})
	}
	var detail string
	if err := pool.QueryRow(ctx, `SELECT string_agg(detail, ',') FROM audit_events`).Scan(&detail); err != nil || detail != "kept" {
		t.Fatalf("audit events after the refused changes = %q, %v; want the one event unchanged", detail, err)
	}
}

func TestOpenPoolErrorHidesPassword(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55"
	closed := closedPort(t)
	for _, tc := range []struct {
		name, url string
		want      []string
	}{
		{"unparsable url", "postgres://hestami:" + secret + "@127.0.0.1:notaport/auth", []string{"HESTAMI_DATABASE_URL"}},
		{"bad query parameter", "postgres://hestami:" + secret + "@127.0.0.1:5432/auth?sslmode=sometimes", []string{"HESTAMI_DATABASE_URL"}},
		{"nobody listening", fmt.Sprintf("postgres://hestami:%s@127.0.0.1:%d/auth?connect_timeout=5", secret, closed),
			[]string{"127.0.0.1", fmt.Sprint(closed), `"auth"`, `"hestami"`, "HESTAMI_DATABASE_URL"}},
		{"keyword form", fmt.Sprintf("host=127.0.0.1 port=%d user=hestami password=%s dbname=auth connect_timeout=5", closed, secret),
			[]string{"127.0.0.1", fmt.Sprint(closed), `"auth"`}},
		{"escaped password", fmt.Sprintf("postgres://hestami:%s%%40x@127.0.0.1:%d/auth?connect_timeout=5", secret, closed),
			[]string{"127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, err := postgres.OpenPool(t.Context(), tc.url)
			if err == nil {
				pool.Close()
				t.Fatal("OpenPool succeeded, want an error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error shows the password: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q should mention %s", err, w)
				}
			}
		})
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	port, err := postgres.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestOpenPoolFromEnvironment cannot be parallel: it sets the libpq variables.
func TestOpenPoolFromEnvironment(t *testing.T) {
	c := pgtest.SharedCluster(t)
	url := pgtest.Database(t)
	db := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	t.Setenv("PGHOST", "127.0.0.1")
	t.Setenv("PGPORT", fmt.Sprint(c.Port))
	t.Setenv("PGUSER", "postgres")
	t.Setenv("PGDATABASE", db)
	t.Setenv("PGSSLMODE", "disable")
	pool, err := postgres.OpenPool(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var got string
	if err := pool.QueryRow(t.Context(), `SELECT current_database()`).Scan(&got); err != nil || got != db {
		t.Fatalf("connected to %q, %v; want %q from PGDATABASE", got, err, db)
	}
}
