package postgres_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// memSink keeps what a base backup streams, in memory.
type memSink struct {
	started     int
	startLSN    backup.LSN
	tablespaces []backup.ServerTablespace
	archives    map[uint32][]byte
	order       []uint32
	manifest    []byte
	failArchive error
}

func (s *memSink) Started(start backup.LSN, tli uint32, tss []backup.ServerTablespace) {
	s.started++
	s.startLSN = start
	s.tablespaces = tss
}

func (s *memSink) Archive(ctx context.Context, ts backup.ServerTablespace, r io.Reader) error {
	if s.failArchive != nil {
		// Read a little, then give up: the backup must stop, not hang.
		io.CopyN(io.Discard, r, 1024)
		return s.failArchive
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.archives == nil {
		s.archives = map[uint32][]byte{}
	}
	s.archives[ts.OID] = b
	s.order = append(s.order, ts.OID)
	return nil
}

func (s *memSink) Manifest(ctx context.Context, r io.Reader) error {
	b, err := io.ReadAll(r)
	s.manifest = b
	return err
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		names = append(names, h.Name)
	}
}

func TestBaseBackupStreamsArchivesAndManifest(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, nil)
	tsDir := filepath.Join(pgtest.Dir(t), "ts")
	if err := os.Mkdir(tsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Chown(tsDir, c.User); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, c, "postgres", fmt.Sprintf("CREATE TABLESPACE extra LOCATION '%s'", tsDir))
	pgtest.Exec(t, c, "postgres", "CREATE TABLE in_extra TABLESPACE extra AS SELECT g AS id FROM generate_series(1, 1000) g")
	var tsOID uint32
	pgtest.QueryRow(t, c, "postgres", "SELECT oid FROM pg_tablespace WHERE spcname = 'extra'").Scan(&tsOID)

	src := &postgres.Source{ConnString: c.ConnString("postgres")}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	st, err := src.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.SystemIdentifier == 0 || st.VersionNum < 130000 || st.WALSegmentSize != 16<<20 || st.DataSize <= 0 {
		t.Errorf("Status = %+v, want identity, version, 16 MiB segments and a size", st)
	}
	if st.VersionNum < backup.MinPhysicalVersion {
		t.Skipf("PostgreSQL %d: BASE_BACKUP's PostgreSQL 15 protocol unavailable", st.VersionNum)
	}

	sink := &memSink{}
	res, err := src.BaseBackup(ctx, "hestami test 'quoted'", sink)
	if err != nil {
		t.Fatalf("BaseBackup: %v", err)
	}
	if res.StartLSN == 0 || res.StopLSN < res.StartLSN || res.StartTimeline != 1 || res.StopTimeline != 1 {
		t.Errorf("result = %+v, want start <= stop on timeline 1", res)
	}
	if sink.started != 1 || sink.startLSN != res.StartLSN {
		t.Errorf("Started called %d times with %s, want once with %s", sink.started, sink.startLSN, res.StartLSN)
	}
	if len(sink.order) != 2 || sink.order[len(sink.order)-1] != 0 {
		t.Fatalf("archives in order %v, want the tablespace %d then the data directory (0)", sink.order, tsOID)
	}
	if sink.order[0] != tsOID {
		t.Errorf("first archive is tablespace %d, want %d", sink.order[0], tsOID)
	}
	var found bool
	for _, ts := range res.Tablespaces {
		if ts.OID == tsOID {
			found = true
			if ts.Location != tsDir || ts.Size <= 0 {
				t.Errorf("tablespace %d = %+v, want location %s and a size", tsOID, ts, tsDir)
			}
		}
	}
	if !found {
		t.Errorf("tablespaces %+v lack %d", res.Tablespaces, tsOID)
	}

	names := tarNames(t, sink.archives[0])
	if len(names) < 3 || names[0] != "backup_label" || names[1] != "tablespace_map" {
		t.Errorf("base.tar starts with %v, want backup_label then tablespace_map", names[:min(3, len(names))])
	}
	if !strings.Contains(strings.Join(names, "\n"), "PG_VERSION") {
		t.Error("base.tar lacks PG_VERSION")
	}
	if ts := tarNames(t, sink.archives[tsOID]); len(ts) == 0 || !strings.HasPrefix(ts[0], "PG_") {
		t.Errorf("tablespace archive holds %v, want PG_<version>_<catversion>/...", ts)
	}
	var pgManifest struct {
		Version int `json:"PostgreSQL-Backup-Manifest-Version"`
		Files   []struct {
			Path string `json:"Path"`
		} `json:"Files"`
	}
	if err := json.Unmarshal(sink.manifest, &pgManifest); err != nil || pgManifest.Version == 0 || len(pgManifest.Files) == 0 {
		t.Errorf("backup_manifest does not parse as PostgreSQL's manifest (%v): %.200s", err, sink.manifest)
	}

	xid, err := src.NextXID(ctx)
	if err != nil || xid < 3 {
		t.Errorf("NextXID = %d, %v; want a normal xid", xid, err)
	}

	t.Run("consumer error aborts the backup", func(t *testing.T) {
		boom := errors.New("storage full")
		_, err := src.BaseBackup(ctx, "hestami failing", &memSink{failArchive: boom})
		if !errors.Is(err, boom) {
			t.Fatalf("BaseBackup with a failing sink = %v, want the sink's error", err)
		}
		// The server must not be left inside a backup: another one works at once.
		if _, err := src.BaseBackup(ctx, "hestami again", &memSink{}); err != nil {
			t.Fatalf("BaseBackup after an aborted one: %v", err)
		}
	})
}
