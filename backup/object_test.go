package backup_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/file"
	"github.com/hestami/hestami/zstd"
)

func newRepo(t *testing.T) (*backup.Repository, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}}, dir
}

func testData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b[:n/2]) // half incompressible, half zeros: like a WAL segment
	return b
}

func TestObjectRoundTrip(t *testing.T) {
	repo, _ := newRepo(t)
	ctx := t.Context()
	for _, n := range []int{0, 1, 55, 56, 57, 1 << 20, 5<<20 + 3} {
		data := testData(n)
		key := "obj/" + strings.Repeat("x", n%7+1)
		sum, err := repo.PutObject(ctx, key, bytes.NewReader(data), false, 2)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Size != int64(n) || len(sum.SHA256) != 64 || sum.StoredSize == 0 {
			t.Fatalf("sum = %+v for %d bytes", sum, n)
		}
		got, err := repo.ReadObject(ctx, key)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: content differs", n)
		}
		again, err := repo.ObjectSum(ctx, key)
		if err != nil || again.SHA256 != sum.SHA256 || again.StoredSize != sum.StoredSize {
			t.Fatalf("ObjectSum = %+v, %v; want %+v", again, err, sum)
		}
	}
}

func TestObjectCorruptionDetected(t *testing.T) {
	repo, dir := newRepo(t)
	ctx := t.Context()
	data := testData(3 << 20)
	if _, err := repo.PutObject(ctx, "o", bytes.NewReader(data), false, 1); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "o")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func([]byte) []byte{
		"flip first byte":  func(b []byte) []byte { b[0] ^= 1; return b },
		"flip middle byte": func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b },
		// The 152-byte trailer: size at 16, SHA-256 at 24, signer at 56, signature at 88.
		"flip trailer sum":        func(b []byte) []byte { b[len(b)-152+30] ^= 1; return b },
		"flip trailer size":       func(b []byte) []byte { b[len(b)-152+16] ^= 1; return b },
		"flip unsigned signature": func(b []byte) []byte { b[len(b)-3] ^= 1; return b },
		"truncate trailer":        func(b []byte) []byte { return b[:len(b)-10] },
		"truncate half":           func(b []byte) []byte { return b[:len(b)/2] },
		"append garbage":          func(b []byte) []byte { return append(b, 1, 2, 3) },
		"empty":                   func(b []byte) []byte { return nil },
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, damage(bytes.Clone(orig)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := repo.ReadObject(ctx, "o")
			var ce *backup.CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, backup.ErrCorrupt) || ce.Key != "o" {
				t.Fatalf("ReadObject of damaged object = %v, want a *CorruptError for o", err)
			}
		})
	}
}

func TestObjectSourceErrorStoresNothing(t *testing.T) {
	repo, _ := newRepo(t)
	ctx := t.Context()
	src := io.MultiReader(bytes.NewReader(testData(1<<20)), failing{})
	if _, err := repo.PutObject(ctx, "x", src, false, 1); err == nil {
		t.Fatal("PutObject from a failing source succeeded")
	}
	if _, err := repo.Storage.Stat(ctx, "x"); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("object after failed put: %v", err)
	}
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("disk read error") }

func TestEnsureRefusesOtherCluster(t *testing.T) {
	repo, _ := newRepo(t)
	ctx := context.Background()
	repo.Now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	m, err := repo.Ensure(ctx, 7000000000000000001, 16<<20)
	if err != nil || m.SystemIdentifier != 7000000000000000001 {
		t.Fatalf("Ensure = %+v, %v", m, err)
	}
	if _, err := repo.Ensure(ctx, 7000000000000000001, 16<<20); err != nil {
		t.Fatalf("Ensure again: %v", err)
	}
	_, err = repo.Ensure(ctx, 42, 16<<20)
	var cm *backup.ClusterMismatchError
	if !errors.As(err, &cm) || cm.Repository != 7000000000000000001 || cm.Offered != 42 {
		t.Fatalf("Ensure for another cluster = %v, want ClusterMismatchError", err)
	}
}
