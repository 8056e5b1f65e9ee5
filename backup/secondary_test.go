package backup_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/backup/storagetest"
	"github.com/hestami/hestami/file"
	"github.com/hestami/hestami/zstd"
)

func newFileRepo(t *testing.T) *backup.Repository {
	t.Helper()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}}
}

// flipStorage stores every object with one byte flipped: a copy damaged in transit
// or at rest.
type flipStorage struct{ backup.Storage }

func (f flipStorage) Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	b[len(b)/2] ^= 0x40
	return f.Storage.Put(ctx, key, bytes.NewReader(b), ifAbsent)
}

// downStorage is an unreachable storage.
type downStorage struct{ backup.Storage }

var errDown = errors.New("connection refused")

func (downStorage) Open(context.Context, string) (io.ReadCloser, error) { return nil, errDown }
func (downStorage) Stat(context.Context, string) (backup.ObjectInfo, error) {
	return backup.ObjectInfo{}, errDown
}
func (downStorage) List(context.Context, string) ([]backup.ObjectInfo, error) { return nil, errDown }

func walKey(t *testing.T, name string) string {
	t.Helper()
	f, err := backup.ParseWALName(name)
	if err != nil {
		t.Fatal(err)
	}
	return backup.WALKey(f)
}

func rawBytes(t *testing.T, s backup.Storage, key string) []byte {
	t.Helper()
	rc, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCopyVerifies(t *testing.T) {
	ctx := t.Context()
	src, dst := newFileRepo(t), newFileRepo(t)
	key := walKey(t, "000000010000000000000003")
	if _, err := src.PutObject(ctx, key, strings.NewReader(strings.Repeat("wal", 5000)), true, 1); err != nil {
		t.Fatal(err)
	}
	t.Run("byte for byte", func(t *testing.T) {
		if err := src.Copy(ctx, dst, key); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rawBytes(t, src.Storage, key), rawBytes(t, dst.Storage, key)) {
			t.Fatal("copy differs from the source")
		}
		// Copying again is idempotent (create-if-absent, same bytes).
		if err := src.Copy(ctx, dst, key); err != nil {
			t.Fatalf("second copy: %v", err)
		}
	})
	t.Run("corrupted copy is detected and deleted", func(t *testing.T) {
		bad := &backup.Repository{Storage: flipStorage{newFileRepo(t).Storage}, Codec: zstd.Codec{Level: 1}}
		err := src.Copy(ctx, bad, key)
		if !errors.Is(err, backup.ErrCorrupt) {
			t.Fatalf("Copy to a corrupting storage: %v, want ErrCorrupt", err)
		}
		if _, err := bad.Storage.Stat(ctx, key); !errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("bad copy left behind: stat %v", err)
		}
	})
	t.Run("conflicting WAL is kept", func(t *testing.T) {
		other := newFileRepo(t)
		if _, err := other.PutObject(ctx, key, strings.NewReader("other content"), true, 1); err != nil {
			t.Fatal(err)
		}
		before := rawBytes(t, other.Storage, key)
		var ce *backup.ConflictError
		if err := src.Copy(ctx, other, key); !errors.As(err, &ce) {
			t.Fatalf("Copy over other content: %v, want *ConflictError", err)
		}
		if !bytes.Equal(before, rawBytes(t, other.Storage, key)) {
			t.Fatal("conflicting object was overwritten")
		}
	})
}

func TestSyncAndCopyBackup(t *testing.T) {
	ctx := t.Context()
	src, dst := newFileRepo(t), newFileRepo(t)
	if _, err := src.Ensure(ctx, testSysid, backup.DefaultSegmentSize); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	id := "logical-20261201T030000Z"
	if _, err := src.PutObject(ctx, backup.BackupKey(id, "app.dump"), strings.NewReader("dump"), false, 1); err != nil {
		t.Fatal(err)
	}
	if err := src.WriteManifest(ctx, logicalManifest(id, t0, 4)); err != nil {
		t.Fatal(err)
	}
	// An incomplete backup is not copied.
	if _, err := src.PutObject(ctx, backup.BackupKey("logical-20261202T030000Z", "app.dump"), strings.NewReader("partial"), false, 1); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"000000010000000000000001", "000000010000000000000002"} {
		if _, err := src.PutObject(ctx, walKey(t, n), strings.NewReader(n), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	res, err := src.Sync(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Marker || len(res.WAL) != 2 || len(res.Backups) != 1 || res.Backups[0] != id {
		t.Fatalf("first sync copied %+v", res)
	}
	if m, err := dst.Marker(ctx); err != nil || m.SystemIdentifier != testSysid {
		t.Fatalf("secondary marker: %+v, %v", m, err)
	}
	if _, err := dst.Manifest(ctx, id); err != nil {
		t.Fatalf("secondary manifest: %v", err)
	}
	if ok, _ := dst.HasBackup(ctx, "logical-20261202T030000Z"); ok {
		t.Fatal("incomplete backup copied")
	}
	// A gap: one more segment; the second sync copies only it.
	if _, err := src.PutObject(ctx, walKey(t, "000000010000000000000003"), strings.NewReader("3"), true, 1); err != nil {
		t.Fatal(err)
	}
	res, err = src.Sync(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if res.Marker || len(res.WAL) != 1 || len(res.Backups) != 0 {
		t.Fatalf("second sync copied %+v", res)
	}

	// A secondary of another cluster is refused.
	alien := newFileRepo(t)
	if _, err := alien.Ensure(ctx, testSysid+1, backup.DefaultSegmentSize); err != nil {
		t.Fatal(err)
	}
	var cm *backup.ClusterMismatchError
	if _, err := src.Sync(ctx, alien); !errors.As(err, &cm) {
		t.Fatalf("sync into another cluster's repository: %v", err)
	}
}

func TestFallback(t *testing.T) {
	ctx := t.Context()
	prim, sec := newFileRepo(t), newFileRepo(t)
	only := walKey(t, "000000010000000000000001")
	both := walKey(t, "000000010000000000000002")
	if _, err := sec.PutObject(ctx, only, strings.NewReader("from secondary"), true, 1); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*backup.Repository{prim, sec} {
		if _, err := r.PutObject(ctx, both, strings.NewReader("both"), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	f := &backup.Fallback{Primary: prim.Storage, Secondary: sec.Storage}
	repo := &backup.Repository{Storage: f, Codec: zstd.Codec{Level: 1}}

	b, err := repo.ReadObject(ctx, only)
	if err != nil || string(b) != "from secondary" {
		t.Fatalf("read through fallback: %q, %v", b, err)
	}
	objs, err := f.List(ctx, "wal/")
	if err != nil || len(objs) != 2 {
		t.Fatalf("list: %v, %v (want the union, each key once)", objs, err)
	}
	if _, err := f.Open(ctx, walKey(t, "000000010000000000000009")); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("missing in both: %v, want ErrNotFound", err)
	}
	// Writes and deletes never touch the secondary.
	if err := f.Delete(ctx, both); err != nil {
		t.Fatal(err)
	}
	if _, err := sec.Storage.Stat(ctx, both); err != nil {
		t.Fatalf("delete through fallback reached the secondary: %v", err)
	}

	// The primary unreachable: reads come from the secondary; a key the secondary
	// lacks is an error, not "not found" (the primary may hold it).
	down := &backup.Fallback{Primary: downStorage{prim.Storage}, Secondary: sec.Storage}
	if _, err := down.Open(ctx, only); err != nil {
		t.Fatalf("primary down: %v", err)
	}
	if _, err := down.Open(ctx, walKey(t, "000000010000000000000009")); err == nil || errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("primary down, secondary without it: %v, want an error other than ErrNotFound", err)
	}
	if objs, err := down.List(ctx, "wal/"); err != nil || len(objs) != 2 {
		t.Fatalf("list with the primary down: %v, %v", objs, err)
	}
}

// TestCopySecured: encrypted, signed objects are copied without any key; a secondary
// with the identity and trusted keys checks the copy's signature, one without the
// identity compares the stored bytes, and both catch a damaged copy.
func TestCopySecured(t *testing.T) {
	ctx := t.Context()
	id, sk := ageKey(t), signingKey(t)
	src := repoAt(t, t.TempDir(), withEncrypter(encrypter(t, id)), withSigner(sk))
	if _, err := src.Ensure(ctx, testSysid, backup.DefaultSegmentSize); err != nil {
		t.Fatal(err)
	}
	key := walKey(t, "000000010000000000000007")
	if _, err := src.PutObject(ctx, key, strings.NewReader(strings.Repeat("secret", 1000)), true, 1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []func(*backup.Repository)
	}{
		{"no keys", nil},
		{"identity and trusted key", []func(*backup.Repository){withDecrypter(decrypter(id)), withVerifier(trust(t, sk))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := repoAt(t, t.TempDir(), tc.opts...)
			if err := src.Copy(ctx, dst, key); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rawBytes(t, src.Storage, key), rawBytes(t, dst.Storage, key)) {
				t.Fatal("copy differs from the source")
			}
			bad := repoAt(t, t.TempDir(), tc.opts...)
			bad.Storage = flipStorage{bad.Storage}
			if err := src.Copy(ctx, bad, key); err == nil {
				t.Fatal("damaged copy accepted")
			}
		})
	}
	// A secondary trusting another signer refuses the copy.
	other := repoAt(t, t.TempDir(), withDecrypter(decrypter(id)), withVerifier(trust(t, signingKey(t))))
	var se *backup.SignatureError
	if err := src.Copy(ctx, other, key); !errors.As(err, &se) {
		t.Fatalf("copy checked against another trusted key: %v, want *SignatureError", err)
	}
	if _, err := other.Storage.Stat(ctx, key); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("refused copy left behind: %v", err)
	}
}

// TestFallbackContract runs the storage contract suite against Fallback: with writes
// going to the primary, it must behave as any storage.
func TestFallbackContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) backup.Storage {
		return &backup.Fallback{Primary: newFileRepo(t).Storage, Secondary: newFileRepo(t).Storage}
	})
}
