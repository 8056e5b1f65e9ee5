package backup_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hestami/hestami/backup"
)

const testSysid = 7450000000000000001

// dataDir makes a fake data directory: global/pg_control with sysid, pg_wal/archive_status.
func dataDir(t *testing.T, sysid uint64) string {
	t.Helper()
	d := t.TempDir()
	for _, sub := range []string{"global", "pg_wal/archive_status"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ctl := make([]byte, 8192)
	binary.LittleEndian.PutUint64(ctl, sysid)
	if err := os.WriteFile(filepath.Join(d, "global", "pg_control"), ctl, 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

// segment returns a WAL segment of size 1 MiB with a long page header for sysid and
// random content, so different calls give different content.
func segment(sysid uint64) []byte {
	const segSize = 1 << 20
	b := make([]byte, segSize)
	rand.Read(b[40:4096])
	binary.LittleEndian.PutUint16(b[0:], 0xD110)
	binary.LittleEndian.PutUint16(b[2:], 0x0002) // XLP_LONG_HEADER
	binary.LittleEndian.PutUint32(b[4:], 1)
	binary.LittleEndian.PutUint64(b[24:], sysid)
	binary.LittleEndian.PutUint32(b[32:], segSize)
	binary.LittleEndian.PutUint32(b[36:], 8192)
	return b
}

func writeWAL(t *testing.T, dir, name string, content []byte, ready bool) string {
	t.Helper()
	p := filepath.Join(dir, "pg_wal", name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if ready {
		if err := os.WriteFile(filepath.Join(dir, "pg_wal", "archive_status", name+".ready"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestWALPushFetch(t *testing.T) {
	repo, _ := newRepo(t)
	ctx := t.Context()
	dir := dataDir(t, testSysid)
	pusher := &backup.WALPusher{Repo: repo, Parallel: 1}
	fetcher := &backup.WALFetcher{Repo: repo, Prefetch: 0}
	seg := segment(testSysid)
	p := writeWAL(t, dir, "000000010000000000000001", seg, false)

	if err := pusher.Push(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Run("identical push succeeds", func(t *testing.T) {
		if err := pusher.Push(ctx, p); err != nil {
			t.Fatalf("second push of identical content: %v", err)
		}
	})
	t.Run("conflicting push fails and keeps the original", func(t *testing.T) {
		other := segment(testSysid)
		alt := dataDir(t, testSysid)
		op := writeWAL(t, alt, "000000010000000000000001", other, false)
		err := pusher.Push(ctx, op)
		var ce *backup.ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("conflicting push = %v, want ConflictError", err)
		}
		got := fetch(t, fetcher, "000000010000000000000001")
		if !bytes.Equal(got, seg) {
			t.Fatal("archived segment changed after a refused push")
		}
	})
	t.Run("fetch returns the exact bytes", func(t *testing.T) {
		if got := fetch(t, fetcher, "000000010000000000000001"); !bytes.Equal(got, seg) {
			t.Fatal("fetched content differs")
		}
	})
	t.Run("missing file is ErrNotFound and leaves no dest", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		err := fetcher.Fetch(ctx, "000000010000000000000009", dest)
		if !errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("fetch missing = %v, want ErrNotFound", err)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatal("dest exists after a failed fetch")
		}
		if err := fetcher.Fetch(ctx, "00000002.history", dest); !errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("fetch missing history = %v, want ErrNotFound", err)
		}
	})
	t.Run("other cluster refused", func(t *testing.T) {
		alt := dataDir(t, 42)
		op := writeWAL(t, alt, "000000010000000000000002", segment(42), false)
		var cm *backup.ClusterMismatchError
		if err := pusher.Push(ctx, op); !errors.As(err, &cm) {
			t.Fatalf("push from another cluster = %v, want ClusterMismatchError", err)
		}
		hp := writeWAL(t, alt, "00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"), false)
		if err := pusher.Push(ctx, hp); !errors.As(err, &cm) {
			t.Fatalf("history push from another cluster = %v, want ClusterMismatchError", err)
		}
	})
	t.Run("history, backup and partial files", func(t *testing.T) {
		for name, content := range map[string][]byte{
			"00000002.history":                         []byte("1\t0/3000000\tno recovery target specified\n"),
			"000000010000000000000001.00000028.backup": []byte("START WAL LOCATION: 0/1000028\n"),
			"000000010000000000000003.partial":         segment(testSysid),
		} {
			p := writeWAL(t, dir, name, content, false)
			if err := pusher.Push(ctx, p); err != nil {
				t.Fatalf("push %s: %v", name, err)
			}
			if got := fetch(t, fetcher, name); !bytes.Equal(got, content) {
				t.Fatalf("%s: fetched content differs", name)
			}
		}
	})
	t.Run("corrupt stored segment is refused on fetch", func(t *testing.T) {
		key := backup.WALKey(mustParse(t, "000000010000000000000001"))
		root := repo.Storage.(interface{ Root() string }).Root()
		path := filepath.Join(root, key)
		b, _ := os.ReadFile(path)
		b[len(b)/3] ^= 0x10
		os.WriteFile(path, b, 0o600)
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		err := fetcher.Fetch(ctx, "000000010000000000000001", dest)
		if !errors.Is(err, backup.ErrCorrupt) {
			t.Fatalf("fetch of corrupt object = %v, want ErrCorrupt", err)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatal("a corrupt segment was handed to PostgreSQL")
		}
		entries, _ := os.ReadDir(filepath.Dir(dest))
		if len(entries) != 0 {
			t.Fatalf("fetch left files behind: %v", entries)
		}
	})
}

func TestWALPushAheadAndPrefetch(t *testing.T) {
	repo, _ := newRepo(t)
	ctx := t.Context()
	dir := dataDir(t, testSysid)
	pusher := &backup.WALPusher{Repo: repo, Parallel: 4}
	segs := map[string][]byte{}
	var names []string
	for i := 1; i <= 10; i++ {
		name := backup.SegmentName(1, uint64(i), 1<<20)
		segs[name] = segment(testSysid)
		writeWAL(t, dir, name, segs[name], true)
		names = append(names, name)
	}
	// The first call archives its own segment and the next three ready ones.
	if err := pusher.Push(ctx, filepath.Join(dir, "pg_wal", names[0])); err != nil {
		t.Fatal(err)
	}
	objs, err := repo.ListWAL(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 4 {
		t.Fatalf("after one call with parallel 4, %d segments archived, want 4", len(objs))
	}
	// PostgreSQL marks the first done, then calls for the second: it returns at once,
	// consuming the record, without touching storage (even a broken one).
	os.Remove(filepath.Join(dir, "pg_wal", "archive_status", names[0]+".ready"))
	marks, _ := os.ReadDir(filepath.Join(dir, "pg_wal", "hestami_archive_status"))
	if len(marks) != 3 {
		t.Fatalf("%d push-ahead records, want 3", len(marks))
	}
	for _, n := range names[1:4] {
		if err := pusher.Push(ctx, filepath.Join(dir, "pg_wal", n)); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, "pg_wal", "archive_status", n+".ready"))
	}
	marks, _ = os.ReadDir(filepath.Join(dir, "pg_wal", "hestami_archive_status"))
	if len(marks) != 0 {
		t.Fatalf("push-ahead records left: %v", marks)
	}
	for _, n := range names[4:] {
		if err := pusher.Push(ctx, filepath.Join(dir, "pg_wal", n)); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, "pg_wal", "archive_status", n+".ready"))
	}

	// Fetch with prefetch: every segment arrives exactly, from download or spool.
	if _, err := repo.Ensure(ctx, testSysid, 1<<20); err != nil {
		t.Fatal(err)
	}
	restoreDir := t.TempDir()
	fetcher := &backup.WALFetcher{Repo: repo, Prefetch: 4}
	for _, n := range names {
		dest := filepath.Join(restoreDir, "RECOVERYXLOG")
		if err := fetcher.Fetch(ctx, n, dest); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(dest)
		if !bytes.Equal(got, segs[n]) {
			t.Fatalf("%s: fetched content differs", n)
		}
		os.Remove(dest)
	}
	if _, err := os.Stat(filepath.Join(restoreDir, "hestami_prefetch", names[9])); err == nil {
		t.Fatal("prefetched segment left in the spool after it was used")
	}
	// Past the end: not found, and the spool is cleared.
	next := backup.SegmentName(1, 11, 1<<20)
	if err := fetcher.Fetch(ctx, next, filepath.Join(restoreDir, "RECOVERYXLOG")); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("fetch past the end = %v", err)
	}
	if _, err := os.Stat(filepath.Join(restoreDir, "hestami_prefetch")); !os.IsNotExist(err) {
		t.Fatal("prefetch spool not cleared at the end of the archive")
	}
}

func fetch(t *testing.T, f *backup.WALFetcher, name string) []byte {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if err := f.Fetch(t.Context(), name, dest); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t *testing.T, name string) backup.WALFile {
	t.Helper()
	f, err := backup.ParseWALName(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
