package backup_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/file"
	"github.com/hestami/hestami/zstd"
)

type fakeArchiver struct {
	stats *backup.ArchiverStats
	err   error
	calls int
}

func (f *fakeArchiver) ArchiverStats(context.Context, uint64) (*backup.ArchiverStats, error) {
	f.calls++
	return f.stats, f.err
}

func logicalManifest(id string, start time.Time, stored int64) *backup.Manifest {
	return &backup.Manifest{Format: backup.FormatVersion, ID: id, Type: backup.Logical, StartTime: start, StopTime: start.Add(time.Minute),
		SystemIdentifier: testSysid, Databases: []string{"app"}, Files: []backup.File{}, Size: 3 * stored, StoredSize: stored}
}

func TestOverviewReader(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	repo := &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}}
	if _, err := repo.Ensure(ctx, testSysid, backup.DefaultSegmentSize); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	for i, id := range []string{"logical-20261201T030000Z", "logical-20261202T030000Z"} {
		if err := repo.WriteManifest(ctx, logicalManifest(id, t0.AddDate(0, 0, i), int64(1000*(i+1)))); err != nil {
			t.Fatal(err)
		}
	}
	// A physical backup that never finished: objects, no manifest.
	if _, err := repo.PutObject(ctx, backup.BackupKey("physical-20261203T030000Z", "base.tar"), strings.NewReader("partial"), false, 1); err != nil {
		t.Fatal(err)
	}
	if err := repo.RecordVerification(ctx, "logical-20261201T030000Z", backup.VerificationRecord{Time: t0.Add(48 * time.Hour), OK: false, Method: "checksums", Error: "base.tar corrupt"}); err != nil {
		t.Fatal(err)
	}
	if err := repo.RecordVerification(ctx, "logical-20261202T030000Z", backup.VerificationRecord{Time: t0.Add(47 * time.Hour), OK: true, Method: "checksums"}); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if err := repo.RecordDrill(ctx, backup.DrillRecord{Time: t0.Add(time.Duration(i) * time.Hour), BackupID: "logical-20261202T030000Z",
			Type: backup.Logical, OK: i != 11, RTOSeconds: float64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// WAL segments 1, 2 and 5 of timeline 1: a gap of two.
	for _, name := range []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000005"} {
		f, _ := backup.ParseWALName(name)
		if _, err := repo.PutObject(ctx, backup.WALKey(f), bytes.NewReader(make([]byte, 1000)), true, 1); err != nil {
			t.Fatal(err)
		}
	}

	clock := t0.Add(72 * time.Hour)
	arch := &fakeArchiver{err: errors.New("connect to PostgreSQL: refused")}
	r := &backup.OverviewReader{Repo: repo, Archiver: arch, Now: func() time.Time { return clock }}
	o, err := r.Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if len(o.Backups) != 3 || o.RepositoryError != "" {
		t.Fatalf("backups %+v (%s), want 3", o.Backups, o.RepositoryError)
	}
	if c := o.Counts(backup.Logical); c[backup.StatusComplete] != 2 || c[backup.StatusIncomplete] != 0 {
		t.Errorf("logical counts %v", c)
	}
	if c := o.Counts(backup.Physical); c[backup.StatusIncomplete] != 1 || c[backup.StatusComplete] != 0 {
		t.Errorf("physical counts %v: the backup without a manifest should count as incomplete physical", c)
	}
	if b := o.LatestComplete(backup.Logical); b == nil || b.ID != "logical-20261202T030000Z" || b.StoredSize != 2000 || b.Duration() != time.Minute {
		t.Errorf("latest logical %+v", b)
	}
	if o.LatestComplete(backup.Physical) != nil {
		t.Error("an incomplete backup counted as the latest complete one")
	}
	// The newest verification is the one recorded last in time, on the older backup.
	if v, of := o.LastVerification(backup.Logical); v == nil || v.OK || of.ID != "logical-20261201T030000Z" {
		t.Errorf("last verification %+v of %+v, want the failed one of the older backup", v, of)
	}
	if len(o.Drills) != backup.DefaultOverviewDrills || o.Drills[len(o.Drills)-1].RTOSeconds != 11 || o.Drills[0].RTOSeconds != 2 {
		t.Errorf("drills %+v, want the newest %d, oldest first", o.Drills, backup.DefaultOverviewDrills)
	}
	if d := o.LastDrill(backup.Logical); d == nil || d.OK {
		t.Errorf("last drill %+v, want the failed 12th", d)
	}
	if len(o.Timelines) != 1 || o.Timelines[0].Segments != 3 || len(o.Timelines[0].Gaps) != 1 || o.Timelines[0].Gaps[0].Missing != 2 {
		t.Errorf("timelines %+v, want 3 segments and a gap of 2", o.Timelines)
	}
	if o.Archiver != nil || !strings.Contains(o.ArchiverError, "refused") {
		t.Errorf("archiver %+v, error %q: want the connection error", o.Archiver, o.ArchiverError)
	}
	var onDisk int64
	var files int
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			onDisk += fi.Size()
			files++
		}
		return nil
	})
	if len(o.Usage) != 1 || o.Usage[0].Used != onDisk || o.Usage[0].Objects != files || o.Usage[0].Free == nil || *o.Usage[0].Free == 0 {
		t.Errorf("usage %+v, want %d bytes in %d files and the free space", o.Usage, onDisk, files)
	}

	// Within the TTL the same overview comes back, without reading anything.
	if err := repo.WriteManifest(ctx, logicalManifest("logical-20261203T030000Z", t0.AddDate(0, 0, 2), 3000)); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(backup.DefaultOverviewTTL - time.Second)
	if again, _ := r.Overview(ctx); again != o || arch.calls != 1 {
		t.Errorf("a second read within the TTL read again (archiver called %d times)", arch.calls)
	}
	clock = clock.Add(2 * time.Second)
	fresh, _ := r.Overview(ctx)
	if fresh == o || len(fresh.Backups) != 4 || arch.calls != 2 {
		t.Errorf("after the TTL: %d backups, archiver called %d times; want a fresh read with 4", len(fresh.Backups), arch.calls)
	}
	// A clock that went back does not keep a stale overview forever.
	clock = clock.Add(-time.Hour)
	if back, _ := r.Overview(ctx); back == fresh {
		t.Error("a clock that went back kept the cached overview")
	}

	// Concurrent callers share one read.
	r3 := &backup.OverviewReader{Repo: repo, Archiver: &fakeArchiver{err: errors.New("down")}}
	var wg sync.WaitGroup
	got := make([]*backup.Overview, 8)
	for i := range got {
		wg.Go(func() { got[i], _ = r3.Overview(ctx) })
	}
	wg.Wait()
	for _, g := range got {
		if g == nil || g != got[0] {
			t.Fatalf("concurrent reads gave different overviews: %p", got)
		}
	}
	if n := r3.Archiver.(*fakeArchiver).calls; n != 1 {
		t.Errorf("8 concurrent callers made %d reads, want 1", n)
	}

	// A cancelled read is an error, and not cached.
	r2 := &backup.OverviewReader{Repo: repo}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r2.Overview(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled read: err = %v", err)
	}
	if o, err := r2.Overview(ctx); err != nil || len(o.Backups) != 4 || o.ArchiverError == "" {
		t.Errorf("read after a cancelled one: %v, %+v", err, o)
	}
}
