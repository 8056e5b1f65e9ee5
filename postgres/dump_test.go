package postgres_test

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// toolsFor returns the client programs for cluster c, connecting as postgres.
func toolsFor(t *testing.T, c *postgres.Cluster) postgres.Tools {
	t.Helper()
	tools, err := postgres.FindTools(t.Context(), "", c.Bin.Major)
	if err != nil {
		t.Fatal(err)
	}
	tools.Env = []string{"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(c.Port), "PGUSER=postgres"}
	return tools
}

func TestFindTools(t *testing.T) {
	b, err := postgres.FindBinaries(pgtest.MinMajor)
	if err != nil {
		t.Fatal(err)
	}
	tools, err := postgres.FindTools(t.Context(), "", b.Major)
	if err != nil || tools.Major < b.Major {
		t.Fatalf("FindTools(%d) = %+v, %v", b.Major, tools, err)
	}
	if got, err := postgres.FindTools(t.Context(), b.Dir, b.Major); err != nil || got.Dir != b.Dir {
		t.Errorf("FindTools with bin dir %s = %+v, %v", b.Dir, got, err)
	}
	tests := []struct {
		name, dir string
		major     int
		want      string
	}{
		{"server newer than any pg_dump", "", 99, "PostgreSQL 99 or newer"},
		{"bin dir too old", b.Dir, 99, "pg_dump must be at least the server's version"},
		{"bin dir without the programs", t.TempDir(), b.Major, "no executable pg_dump"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := postgres.FindTools(t.Context(), tt.dir, tt.major)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestConnInfo(t *testing.T) {
	for db, want := range map[string]string{
		"app":            `dbname='app'`,
		"it's":           `dbname='it\'s'`,
		`back\slash`:     `dbname='back\\slash'`,
		"host=evil a=b ": `dbname='host=evil a=b '`,
	} {
		if got := postgres.ConnInfo(db); got != want {
			t.Errorf("ConnInfo(%q) = %s, want %s", db, got, want)
		}
	}
}

// TestDumpAndRestore runs pg_dump and pg_restore against a real server: a stream
// restores, a failing dump says why, a dump closed early stops, and a restore whose
// archive fails is stopped with that error.
func TestDumpAndRestore(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, nil)
	tools := toolsFor(t, c)
	ctx := t.Context()
	const odd = `we'ird\ db=name`
	pgtest.Exec(t, c, "postgres", `CREATE DATABASE "we'ird\ db=name"`)
	pgtest.Exec(t, c, odd, "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")

	rc, err := tools.DumpDatabase(ctx, odd)
	if err != nil {
		t.Fatal(err)
	}
	archive, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("dump %q: %v", odd, err)
	}
	if !bytes.HasPrefix(archive, []byte("PGDMP")) {
		t.Fatalf("dump is not a custom-format archive: %q", archive[:min(len(archive), 16)])
	}

	conn := pgtest.Connect(t, c, "postgres")
	r := &postgres.Restorer{Tools: tools, Conn: conn}
	const into = `restored 'x'`
	if err := r.CreateDatabase(ctx, into); err != nil {
		t.Fatal(err)
	}
	if err := r.RestoreArchive(ctx, backup.ArchiveRestore{Database: into, Archive: bytes.NewReader(archive), Jobs: 1}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	var n int
	pgtest.QueryRow(t, c, into, "SELECT count(*) FROM t").Scan(&n)
	if n != 20000 {
		t.Errorf("restored %d rows, want 20000", n)
	}
	if ok, err := r.DatabaseExists(ctx, into); err != nil || !ok {
		t.Errorf("DatabaseExists(%q) = %v, %v", into, ok, err)
	}

	t.Run("missing database", func(t *testing.T) {
		rc, err := tools.DumpDatabase(ctx, "nope")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		_, err = io.ReadAll(rc)
		var te *postgres.ToolError
		if !errors.As(err, &te) || te.Program != "pg_dump" || !strings.Contains(err.Error(), `database "nope" does not exist`) {
			t.Fatalf("err = %v, want a pg_dump ToolError with its message", err)
		}
	})

	t.Run("closed early", func(t *testing.T) {
		rc, err := tools.DumpDatabase(ctx, odd)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rc, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
		// Close waited for pg_dump; its server session ends soon after.
		deadline := time.Now().Add(30 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var sessions int
			pgtest.QueryRow(t, c, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'").Scan(&sessions)
			if sessions == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d pg_dump sessions still there 30s after Close", sessions)
			}
			<-tick.C
		}
	})

	t.Run("archive fails midway", func(t *testing.T) {
		const into = "cut"
		if err := r.CreateDatabase(ctx, into); err != nil {
			t.Fatal(err)
		}
		defer r.DropDatabase(ctx, into)
		cause := errors.New("stored object is damaged")
		src := io.MultiReader(bytes.NewReader(archive[:len(archive)/2]), failingReader{cause})
		err := r.RestoreArchive(ctx, backup.ArchiveRestore{Database: into, Archive: src, Jobs: 1})
		if !errors.Is(err, cause) {
			t.Fatalf("err = %v, want the archive's error", err)
		}
	})

	t.Run("drop", func(t *testing.T) {
		if err := r.DropDatabase(ctx, into); err != nil {
			t.Fatal(err)
		}
		if ok, _ := r.DatabaseExists(ctx, into); ok {
			t.Error("database still there after DropDatabase")
		}
		if err := r.DropDatabase(ctx, into); err != nil {
			t.Errorf("dropping a missing database: %v", err)
		}
	})

	t.Run("globals", func(t *testing.T) {
		rc, err := tools.DumpGlobals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		script, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Contains(script, []byte("CREATE ROLE postgres")) {
			t.Fatalf("globals: %v\n%s", err, script)
		}
		failed, err := r.RunGlobals(ctx, append(script, "CREATE ROLE postgres;\nSELECT 1/0;\n"...))
		if err != nil {
			t.Fatal(err)
		}
		if len(failed) != 3 || !strings.Contains(failed[0], `role "postgres" already exists`) || !strings.Contains(failed[2], "division by zero") {
			t.Errorf("failed statements = %q, want the two CREATE ROLE postgres and the division", failed)
		}
		roles, spcs, err := r.ExistingGlobals(ctx)
		if err != nil || !contains(roles, "postgres") || !contains(spcs, "pg_default") {
			t.Errorf("ExistingGlobals = %q, %q, %v", roles, spcs, err)
		}
	})
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
