package backup_test

import (
	"bytes"
	"context"
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
	"unicode/utf8"

	"github.com/hestami/hestami/backup"
)

func TestDumpFileName(t *testing.T) {
	tests := []struct {
		db, want string
	}{
		{"app", "app.dump"},
		{"App_2-x.y", "App_2-x.y.dump"},
		{"my db", "my%20db.dump"},
		{"a/b", "a%2Fb.dump"},
		{`a\b`, "a%5Cb.dump"},
		{"50%", "50%25.dump"},
		{".hidden", "%2Ehidden.dump"},
		{"..", "%2E..dump"},
		{".tmp-x", "%2Etmp-x.dump"}, // the file storage's temporary prefix
		{"über", "%C3%BCber.dump"},
		{"it's", "it%27s.dump"},
	}
	for _, tt := range tests {
		t.Run(tt.db, func(t *testing.T) {
			if got := backup.DumpFileName(tt.db); got != tt.want {
				t.Errorf("DumpFileName(%q) = %q, want %q", tt.db, got, tt.want)
			}
		})
	}
}

// FuzzDumpFileName checks that every database name gives a file name that the
// manifest accepts, that stays one path segment, and that decodes back to the name.
func FuzzDumpFileName(f *testing.F) {
	for _, s := range []string{"app", "my db", "a/b", "..", ".tmp-x", "é", "%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, db string) {
		if db == "" || strings.ContainsRune(db, 0) {
			return
		}
		name := backup.DumpFileName(db)
		if strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
			t.Fatalf("DumpFileName(%q) = %q: not a plain file name", db, name)
		}
		back, err := url.PathUnescape(strings.TrimSuffix(name, ".dump"))
		if err != nil || back != db {
			t.Fatalf("DumpFileName(%q) = %q decodes to %q, %v", db, name, back, err)
		}
		m := &backup.Manifest{Format: backup.FormatVersion, ID: "logical-x", Type: backup.Logical, StartTime: time.Unix(1, 0), StopTime: time.Unix(2, 0),
			Files: []backup.File{{Name: name, Database: db, Sum: backup.Sum{SHA256: strings.Repeat("0", 64)}}}}
		if err := m.Validate(); err != nil {
			t.Fatalf("manifest with file %q: %v", name, err)
		}
	})
}

func TestSelectDatabases(t *testing.T) {
	all := []backup.Database{
		{Name: "template0", Template: true},
		{Name: "template1", Template: true, AllowConn: true},
		{Name: "postgres", AllowConn: true},
		{Name: "app", AllowConn: true},
		{Name: "closed"},
	}
	tests := []struct {
		name    string
		only    []string
		want    []string
		wantErr string
	}{
		{name: "all that accept connections", want: []string{"app", "postgres"}},
		{name: "only", only: []string{"postgres", "app", "app"}, want: []string{"app", "postgres"}},
		{name: "a template on request", only: []string{"template1"}, want: []string{"template1"}},
		{name: "missing", only: []string{"app", "nope"}, wantErr: `database "nope" is not in the cluster; it has: "app", "postgres"`},
		{name: "refuses connections", only: []string{"closed"}, wantErr: "does not accept connections"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := backup.SelectDatabases(all, tt.only)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, d := range got {
				names = append(names, d.Name)
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("selected %q, want %q", names, tt.want)
			}
		})
	}
	if _, err := backup.SelectDatabases(all[:2], nil); err == nil {
		t.Error("a cluster of templates only: no error")
	}
}

// fakeDumper streams fixed content per database; a database in fail fails after
// some output, as a pg_dump that hits an error halfway does.
type fakeDumper struct {
	mu     sync.Mutex
	fail   map[string]bool
	opened []string
}

func (f *fakeDumper) content(db string) []byte {
	return bytes.Repeat([]byte("dump of "+db+"\n"), 10000)
}

func (f *fakeDumper) DumpDatabase(ctx context.Context, db string) (io.ReadCloser, error) {
	f.mu.Lock()
	f.opened = append(f.opened, db)
	f.mu.Unlock()
	var r io.Reader = bytes.NewReader(f.content(db))
	if f.fail[db] {
		r = io.MultiReader(io.LimitReader(r, 5000), errReader{fmt.Errorf("pg_dump of database %q failed: permission denied", db)})
	}
	return io.NopCloser(r), nil
}

func (f *fakeDumper) DumpGlobals(ctx context.Context) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("CREATE ROLE app;\n")), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

var cluster = backup.ClusterInfo{SystemIdentifier: 7, WALSegmentSize: 16 << 20, PGVersion: 150004}

func TestLogicalBackupRun(t *testing.T) {
	repo, _ := newRepo(t)
	ctx := t.Context()
	d := &fakeDumper{}
	b := &backup.LogicalBackup{Repo: repo, Dumper: d, Parallel: 2}
	dbs := []backup.Database{{Name: "small", AllowConn: true, Size: 10}, {Name: "big db", AllowConn: true, Size: 1000}, {Name: "template1", Template: true, AllowConn: true}}
	m, err := b.Run(ctx, backup.LogicalRequest{Cluster: cluster, Databases: dbs})
	if err != nil {
		t.Fatal(err)
	}
	if d.opened[0] != "big db" {
		t.Errorf("dumped in order %q, want the largest first", d.opened)
	}
	if m.Type != backup.Logical || !slices.Equal(m.Databases, []string{"big db", "small"}) || m.SystemIdentifier != 7 || m.PGVersion != 150004 {
		t.Errorf("manifest: %+v", m)
	}
	got, err := repo.Manifest(ctx, m.ID)
	if err != nil {
		t.Fatalf("manifest not stored: %v", err)
	}
	for _, db := range []string{"big db", "small"} {
		f, err := backup.LogicalFile(got, db)
		if err != nil {
			t.Fatal(err)
		}
		data, err := repo.ReadObject(ctx, backup.BackupKey(m.ID, f.Name))
		if err != nil || !bytes.Equal(data, d.content(db)) {
			t.Errorf("stored dump of %q: %d bytes, %v; want the dump", db, len(data), err)
		}
	}
	if _, err := backup.LogicalFile(got, "template1"); err == nil {
		t.Error("template1 was dumped")
	}
}

func TestLogicalBackupFailureLeavesNothing(t *testing.T) {
	repo, dir := newRepo(t)
	b := &backup.LogicalBackup{Repo: repo, Dumper: &fakeDumper{fail: map[string]bool{"b": true}}, Parallel: 1}
	dbs := []backup.Database{{Name: "a", AllowConn: true, Size: 5}, {Name: "b", AllowConn: true, Size: 4}, {Name: "c", AllowConn: true, Size: 3}}
	_, err := b.Run(t.Context(), backup.LogicalRequest{Cluster: cluster, Databases: dbs})
	if err == nil || !strings.Contains(err.Error(), `pg_dump of database "b" failed: permission denied`) {
		t.Fatalf("err = %v, want the dump's own error", err)
	}
	entries, err := repo.Backups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("a failed backup left %d backup folders: %+v", len(entries), entries)
	}
	var files []string
	filepath.WalkDir(filepath.Join(dir, "backups"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Errorf("files left behind: %q", files)
	}
}

// tightStorage is a storage that reports little free space.
type tightStorage struct {
	backup.Storage
	free uint64
}

func (s tightStorage) FreeSpace(context.Context) (uint64, error) { return s.free, nil }

func TestLogicalBackupChecksSpace(t *testing.T) {
	repo, _ := newRepo(t)
	dbs := []backup.Database{{Name: "app", AllowConn: true, Size: 10 << 30}}
	if got := backup.EstimateDumpSpace(dbs); got != 5<<30 {
		t.Errorf("EstimateDumpSpace = %d, want half the size on disk", got)
	}
	for _, tt := range []struct {
		free    uint64
		wantErr bool
	}{{4 << 30, true}, {6 << 30, false}} {
		repo := &backup.Repository{Storage: tightStorage{repo.Storage, tt.free}, Codec: repo.Codec}
		b := &backup.LogicalBackup{Repo: repo, Dumper: &fakeDumper{}}
		_, err := b.Check(t.Context(), backup.LogicalRequest{Cluster: cluster, Databases: dbs})
		var se *backup.SpaceError
		if tt.wantErr != errors.As(err, &se) {
			t.Fatalf("free %d: err = %v, want a SpaceError: %v", tt.free, err, tt.wantErr)
		}
		if se != nil && (!strings.Contains(err.Error(), "5.0 GiB") || !strings.Contains(err.Error(), "4.0 GiB free")) {
			t.Errorf("space error does not say what is needed and what is free: %v", err)
		}
	}
}

func TestLogicalBackupRefusesOtherCluster(t *testing.T) {
	repo, _ := newRepo(t)
	if _, err := repo.Ensure(t.Context(), 1, 16<<20); err != nil {
		t.Fatal(err)
	}
	b := &backup.LogicalBackup{Repo: repo, Dumper: &fakeDumper{}}
	dbs := []backup.Database{{Name: "app", AllowConn: true}}
	_, err := b.Run(t.Context(), backup.LogicalRequest{Cluster: cluster, Databases: dbs})
	var cm *backup.ClusterMismatchError
	if !errors.As(err, &cm) {
		t.Fatalf("err = %v, want a ClusterMismatchError", err)
	}
}

// globalsFixture is pg_dumpall --globals-only output of PostgreSQL 15.
const globalsFixture = `--
-- PostgreSQL database cluster dump
--

\restrict mXrlcfPpmKKsLGhejcm6sCkq7lBtPZxzbHflWSjRq8jmCXKBl06QJ379V2DSd52

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE "Report Reader";
ALTER ROLE "Report Reader" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 3 PASSWORD 'SCRAM-SHA-256$4096:0zVy==$ZCyM=:dsb9=';
CREATE ROLE app_owner;
ALTER ROLE app_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:Rt1c==$Idtp=:WsHe=';
COMMENT ON ROLE app_owner IS 'it''s; the owner';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;

--
-- User Configurations
--

--
-- User Config "app_owner"
--

ALTER ROLE app_owner SET search_path TO 'a;b', 'public';


--
-- Role memberships
--

GRANT "Report Reader" TO app_owner GRANTED BY postgres;
GRANT "Report Reader" TO postgres GRANTED BY postgres;

--
-- Tablespaces
--

CREATE TABLESPACE ts1 OWNER postgres LOCATION '/srv/ts1';
GRANT ALL ON TABLESPACE ts1 TO app_owner;


\unrestrict mXrlcfPpmKKsLGhejcm6sCkq7lBtPZxzbHflWSjRq8jmCXKBl06QJ379V2DSd52

--
-- PostgreSQL database cluster dump complete
--
`

func TestPlanGlobals(t *testing.T) {
	tests := []struct {
		name          string
		roles, spcs   []string
		created, kept []string
		spcCreated    []string
		has, hasNot   []string
	}{
		{
			name: "fresh server", roles: []string{"postgres"},
			created: []string{"Report Reader", "app_owner"}, kept: []string{"postgres"}, spcCreated: []string{"ts1"},
			has: []string{`CREATE ROLE "Report Reader";`, `PASSWORD 'SCRAM-SHA-256$4096:Rt1c`, "COMMENT ON ROLE app_owner IS 'it''s; the owner';",
				"ALTER ROLE app_owner SET search_path TO 'a;b', 'public';", `GRANT "Report Reader" TO app_owner`, `GRANT "Report Reader" TO postgres`,
				"CREATE TABLESPACE ts1", "GRANT ALL ON TABLESPACE ts1", `\restrict mXrl`, `\unrestrict mXrl`, "SET standard_conforming_strings = on;"},
			hasNot: []string{"CREATE ROLE postgres;", "ALTER ROLE postgres"},
		},
		{
			name: "only a role is missing", roles: []string{"postgres", "app_owner"}, spcs: []string{"pg_default", "ts1"},
			created: []string{"Report Reader"}, kept: []string{"app_owner", "postgres"},
			has: []string{`CREATE ROLE "Report Reader";`, `ALTER ROLE "Report Reader" WITH`, `GRANT "Report Reader" TO app_owner`},
			hasNot: []string{"CREATE ROLE app_owner", "ALTER ROLE app_owner", "COMMENT ON ROLE", "search_path", "Rt1c",
				"CREATE TABLESPACE", "ON TABLESPACE"},
		},
		{
			name: "everything exists", roles: []string{"postgres", "app_owner", "Report Reader"}, spcs: []string{"ts1"},
			kept:   []string{"Report Reader", "app_owner", "postgres"},
			has:    []string{`\restrict`, "SET client_encoding"},
			hasNot: []string{"CREATE", "ALTER", "GRANT", "COMMENT"},
		},
		{
			name: "names are case sensitive", roles: []string{"postgres", "report reader", "APP_OWNER"},
			created: []string{"Report Reader", "app_owner"}, kept: []string{"postgres"}, spcCreated: []string{"ts1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := backup.PlanGlobals([]byte(globalsFixture), tt.roles, tt.spcs)
			if !slices.Equal(p.CreatedRoles, tt.created) || !slices.Equal(p.ExistingRoles, tt.kept) || !slices.Equal(p.CreatedTablespaces, tt.spcCreated) {
				t.Errorf("created roles %q, kept %q, created tablespaces %q; want %q, %q, %q",
					p.CreatedRoles, p.ExistingRoles, p.CreatedTablespaces, tt.created, tt.kept, tt.spcCreated)
			}
			s := string(p.Script)
			for _, want := range tt.has {
				if !strings.Contains(s, want) {
					t.Errorf("script lacks %q:\n%s", want, s)
				}
			}
			for _, no := range tt.hasNot {
				if strings.Contains(s, no) {
					t.Errorf("script holds %q:\n%s", no, s)
				}
			}
		})
	}
}

// FuzzPlanGlobals checks that the statement splitter survives any input and that a
// server which lacks every role gets every statement. The seed is a large script:
// run it with -fuzzminimizetime 100x, or minimizing new inputs takes all the time.
func FuzzPlanGlobals(f *testing.F) {
	f.Add(globalsFixture)
	f.Add("CREATE ROLE \"a;\"\"b\"; ALTER ROLE x SET y = $$;$$; /* ; /* nested ; */ */ COMMENT ON ROLE x IS E'\\';';")
	f.Add("\\connect x\nSELECT ';' -- ;\n;")
	f.Fuzz(func(t *testing.T, script string) {
		p := backup.PlanGlobals([]byte(script), nil, nil)
		if p.Skipped != 0 {
			t.Fatalf("with no existing roles, %d statements were skipped", p.Skipped)
		}
		if strings.Join(strings.Fields(string(p.Script)), "") != strings.Join(strings.Fields(script), "") {
			t.Fatalf("script changed:\n%q\n->\n%q", script, p.Script)
		}
	})
}

func TestPlanGlobalsSplitsOnlyRealSemicolons(t *testing.T) {
	script := `CREATE ROLE a; COMMENT ON ROLE a IS 'x; CREATE ROLE b;';
ALTER ROLE a SET x = E'\'; CREATE ROLE c;';
ALTER ROLE a SET y = $t$; CREATE ROLE d;$t$; -- ; CREATE ROLE e;
/* ; CREATE ROLE f; /* ; */ ; */ CREATE ROLE "g;h";
`
	p := backup.PlanGlobals([]byte(script), nil, nil)
	if want := []string{"a", "g;h"}; !slices.Equal(p.CreatedRoles, want) {
		t.Errorf("created roles %q, want %q", p.CreatedRoles, want)
	}
	p = backup.PlanGlobals([]byte(script), []string{"a"}, nil)
	if strings.Contains(string(p.Script), "x; CREATE ROLE b;") || strings.Contains(string(p.Script), "CREATE ROLE d") {
		t.Errorf("statements about the existing role a kept:\n%s", p.Script)
	}
	if !strings.Contains(string(p.Script), `CREATE ROLE "g;h";`) {
		t.Errorf("statement after nested comment lost:\n%s", p.Script)
	}
}

// fakeTarget records what a logical restore does to the server.
type fakeTarget struct {
	exists     map[string]bool
	created    []string
	dropped    []string
	restored   []byte
	restoredTo string
	restoreErr error
	onCreate   func()
	swaps      [][3]string // name, restored, aside
	swapErr    error
}

var _ backup.DatabaseReplacer = (*fakeTarget)(nil)

func (f *fakeTarget) DatabaseExists(_ context.Context, name string) (bool, error) {
	return f.exists[name], nil
}

func (f *fakeTarget) CreateDatabase(_ context.Context, name string) error {
	f.created = append(f.created, name)
	if f.onCreate != nil {
		f.onCreate()
	}
	return nil
}

func (f *fakeTarget) DropDatabase(_ context.Context, name string) error {
	f.dropped = append(f.dropped, name)
	return nil
}

func (f *fakeTarget) CheckReplace(context.Context, string) error { return nil }

func (f *fakeTarget) ReplaceDatabase(_ context.Context, name, restored, aside string) error {
	if f.swapErr != nil {
		return f.swapErr
	}
	f.swaps = append(f.swaps, [3]string{name, restored, aside})
	return nil
}

func (f *fakeTarget) RestoreArchive(_ context.Context, req backup.ArchiveRestore) error {
	f.restoredTo = req.Database
	if f.restoreErr != nil {
		return f.restoreErr
	}
	var err error
	if req.Path != "" {
		f.restored, err = os.ReadFile(req.Path)
	} else {
		f.restored, err = io.ReadAll(req.Archive)
	}
	return err
}

func TestLogicalRestore(t *testing.T) {
	repo, dir := newRepo(t)
	ctx := t.Context()
	d := &fakeDumper{}
	m, err := (&backup.LogicalBackup{Repo: repo, Dumper: d}).Run(ctx, backup.LogicalRequest{Cluster: cluster, Databases: []backup.Database{{Name: "app", AllowConn: true}}})
	if err != nil {
		t.Fatal(err)
	}
	objPath := filepath.Join(dir, filepath.FromSlash(backup.BackupKey(m.ID, "app.dump")))
	good, err := os.ReadFile(objPath)
	if err != nil {
		t.Fatal(err)
	}
	flip := func() {
		b := slices.Clone(good)
		b[len(b)/2] ^= 1
		if err := os.WriteFile(objPath, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	restoreGood := func() {
		if err := os.WriteFile(objPath, good, 0o640); err != nil {
			t.Fatal(err)
		}
	}

	for _, jobs := range []int{1, 3} {
		t.Run(fmt.Sprintf("jobs %d", jobs), func(t *testing.T) {
			tmp := t.TempDir()
			tgt := &fakeTarget{}
			r := &backup.LogicalRestore{Repo: repo, Target: tgt, TempDir: tmp}
			res, err := r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: "app2", Jobs: jobs})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tgt.restored, d.content("app")) || !slices.Equal(tgt.created, []string{"app2"}) || len(tgt.dropped) != 0 {
				t.Errorf("restored %d bytes, created %q, dropped %q", len(tgt.restored), tgt.created, tgt.dropped)
			}
			if res.Streamed != (jobs == 1) {
				t.Errorf("Streamed = %v with %d jobs", res.Streamed, jobs)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}

			flip()
			defer restoreGood()
			tgt = &fakeTarget{}
			r.Target = tgt
			_, err = r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: "app3", Jobs: jobs})
			if !errors.Is(err, backup.ErrCorrupt) {
				t.Fatalf("corrupt object: err = %v, want ErrCorrupt", err)
			}
			if len(tgt.created) != 0 || tgt.restored != nil {
				t.Errorf("corrupt object: created %q and restored %d bytes; want nothing touched", tgt.created, len(tgt.restored))
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}

	t.Run("object damaged after verification", func(t *testing.T) {
		tgt := &fakeTarget{onCreate: flip}
		defer restoreGood()
		r := &backup.LogicalRestore{Repo: repo, Target: tgt}
		_, err := r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: "app4", Jobs: 1})
		if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), "dropped again") {
			t.Fatalf("err = %v, want ErrCorrupt and the database dropped", err)
		}
		if !slices.Equal(tgt.dropped, []string{"app4"}) {
			t.Errorf("dropped %q, want the database the restore created", tgt.dropped)
		}
	})

	t.Run("existing database", func(t *testing.T) {
		tgt := &fakeTarget{exists: map[string]bool{"app": true}}
		wrote := 0
		r := &backup.LogicalRestore{Repo: repo, Target: tgt, BeforeWrite: func(context.Context) error { wrote++; return nil },
			Now: func() time.Time { return time.Date(2025, 3, 1, 2, 3, 4, 0, time.UTC) }}
		_, err := r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: "app", Jobs: 1})
		if !errors.Is(err, backup.ErrDatabaseExists) || !strings.Contains(err.Error(), "--replace") || tgt.restored != nil || wrote != 0 {
			t.Fatalf("err = %v, restored %d bytes, BeforeWrite called %d times; want ErrDatabaseExists suggesting --replace and nothing restored", err, len(tgt.restored), wrote)
		}

		res, err := r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: "app", Jobs: 1, Replace: true})
		if err != nil || !res.Replaced || res.Kept != "" || wrote != 1 {
			t.Fatalf("replace: err = %v, result %+v, BeforeWrite called %d times", err, res, wrote)
		}
		const temp, aside = "app_restoring_20250301T020304", "app_replaced_20250301T020304"
		if !slices.Equal(tgt.created, []string{temp}) || tgt.restoredTo != temp || !bytes.Equal(tgt.restored, d.content("app")) {
			t.Errorf("replace: created %q, restored into %q; want the backup restored into a new database %s", tgt.created, tgt.restoredTo, temp)
		}
		if len(tgt.swaps) != 1 || tgt.swaps[0] != [3]string{"app", temp, aside} || !slices.Equal(tgt.dropped, []string{aside}) {
			t.Errorf("replace: swaps %q, dropped %q; want app swapped with %s, then %s dropped", tgt.swaps, tgt.dropped, temp, aside)
		}

		tgt = &fakeTarget{exists: map[string]bool{"app": true}}
		r.Target = tgt
		res, err = r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: "app", Jobs: 1, Replace: true, KeepReplaced: true})
		if err != nil || res.Kept != aside || len(tgt.dropped) != 0 {
			t.Errorf("replace keeping the old one: err = %v, kept %q, dropped %q", err, res.Kept, tgt.dropped)
		}

		// A failed restore or swap leaves the existing database alone and drops the copy.
		for _, tt := range []struct {
			name string
			tgt  *fakeTarget
		}{
			{"restore fails", &fakeTarget{exists: map[string]bool{"app": true}, restoreErr: errors.New("pg_restore: boom")}},
			{"swap fails", &fakeTarget{exists: map[string]bool{"app": true}, swapErr: errors.New("database is being accessed by other users")}},
		} {
			r.Target = tt.tgt
			_, err := r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: "app", Jobs: 1, Replace: true})
			if err == nil || !strings.Contains(err.Error(), `"app" is unchanged`) {
				t.Errorf("%s: err = %v, want it to say app is unchanged", tt.name, err)
			}
			if len(tt.tgt.swaps) != 0 || !slices.Equal(tt.tgt.dropped, []string{temp}) {
				t.Errorf("%s: swaps %q, dropped %q; want no swap and the copy %s dropped", tt.name, tt.tgt.swaps, tt.tgt.dropped, temp)
			}
		}

		// Names left by an earlier run are never reused.
		tgt = &fakeTarget{exists: map[string]bool{"app": true, aside: true}}
		r.Target = tgt
		if _, err := r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: "app", Jobs: 1, Replace: true}); err == nil || len(tgt.created) != 0 {
			t.Errorf("replace with %s taken: err = %v, created %q; want a refusal before anything is created", aside, err, tgt.created)
		}
	})

	t.Run("long names are cut to fit", func(t *testing.T) {
		long := strings.Repeat("é", 31) + "x" // 63 bytes
		tgt := &fakeTarget{exists: map[string]bool{long: true}}
		r := &backup.LogicalRestore{Repo: repo, Target: tgt}
		res, err := r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: long, Jobs: 1, Replace: true, KeepReplaced: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{tgt.restoredTo, res.Kept} {
			if len(name) > 63 || !utf8.ValidString(name) || !strings.HasPrefix(name, "éé") {
				t.Errorf("derived name %q (%d bytes): want a valid name of at most 63 bytes starting like the original", name, len(name))
			}
		}
	})

	t.Run("BeforeWrite refuses", func(t *testing.T) {
		tgt := &fakeTarget{}
		stop := errors.New("not recorded")
		r := &backup.LogicalRestore{Repo: repo, Target: tgt, BeforeWrite: func(context.Context) error { return stop }}
		if _, err := r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: "app6", Jobs: 1}); !errors.Is(err, stop) || len(tgt.created) != 0 {
			t.Errorf("err = %v, created %q; want BeforeWrite's error and nothing created", err, tgt.created)
		}
	})

	t.Run("no space for the temporary file", func(t *testing.T) {
		tgt := &fakeTarget{}
		r := &backup.LogicalRestore{Repo: repo, Target: tgt, TempDir: t.TempDir(),
			FreeSpace: func(context.Context, string) (uint64, error) { return 1 << 20, nil }}
		_, err := r.Run(ctx, m, backup.LogicalRestoreOptions{Database: "app", Into: "app5", Jobs: 2})
		if err == nil || !strings.Contains(err.Error(), "--jobs 1") || len(tgt.created) != 0 {
			t.Fatalf("err = %v, created %q; want a space error suggesting --jobs 1, nothing created", err, tgt.created)
		}
	})
}
