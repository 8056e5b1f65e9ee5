// Package storagetest is the contract every backup.Storage implementation must pass:
// run it from each implementation's tests with Run.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/hestami/hestami/backup"
)

// Run runs the storage contract against storages made by newStorage, each empty.
func Run(t *testing.T, newStorage func(t *testing.T) backup.Storage) {
	t.Run("PutOpenRoundTrip", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		want := bytes.Repeat([]byte("hestami"), 100000)
		if err := s.Put(ctx, "a/b/c.bin", bytes.NewReader(want), false); err != nil {
			t.Fatal(err)
		}
		got := read(t, s, "a/b/c.bin")
		if !bytes.Equal(got, want) {
			t.Fatalf("read %d bytes, want %d", len(got), len(want))
		}
		info, err := s.Stat(ctx, "a/b/c.bin")
		if err != nil || info.Size != int64(len(want)) {
			t.Fatalf("Stat = %+v, %v; want size %d", info, err, len(want))
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		if _, err := s.Open(ctx, "missing"); !errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("Open(missing) = %v, want ErrNotFound", err)
		}
		if _, err := s.Stat(ctx, "dir/missing"); !errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("Stat(missing) = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "dir/missing"); err != nil {
			t.Fatalf("Delete(missing) = %v, want nil", err)
		}
	})
	t.Run("IfAbsentKeepsOriginal", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		if err := s.Put(ctx, "wal/x", bytes.NewReader([]byte("first")), true); err != nil {
			t.Fatal(err)
		}
		err := s.Put(ctx, "wal/x", bytes.NewReader([]byte("second")), true)
		if !errors.Is(err, backup.ErrExist) {
			t.Fatalf("second Put = %v, want ErrExist", err)
		}
		if got := read(t, s, "wal/x"); string(got) != "first" {
			t.Fatalf("object = %q after refused overwrite, want %q", got, "first")
		}
		if err := s.Put(ctx, "wal/x", bytes.NewReader([]byte("third")), false); err != nil {
			t.Fatal(err)
		}
		if got := read(t, s, "wal/x"); string(got) != "third" {
			t.Fatalf("object = %q after overwrite, want third", got)
		}
	})
	t.Run("FailedPutLeavesNothing", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		r := io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), errReader{errors.New("source broke")})
		if err := s.Put(ctx, "half/object", r, false); err == nil {
			t.Fatal("Put with a failing reader succeeded")
		}
		if _, err := s.Stat(ctx, "half/object"); !errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("Stat after failed Put = %v, want ErrNotFound", err)
		}
		objs, err := s.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 0 {
			t.Fatalf("List after failed Put = %v, want nothing", objs)
		}
	})
	t.Run("ListPrefixSorted", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		keys := []string{"wal/00000002/b", "wal/00000001/b", "wal/00000001/a", "backups/x/manifest", "walrus"}
		for _, k := range keys {
			if err := s.Put(ctx, k, bytes.NewReader([]byte(k)), false); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			prefix string
			want   []string
		}{
			{"wal/", []string{"wal/00000001/a", "wal/00000001/b", "wal/00000002/b"}},
			{"wal/00000001/", []string{"wal/00000001/a", "wal/00000001/b"}},
			{"wal", []string{"wal/00000001/a", "wal/00000001/b", "wal/00000002/b", "walrus"}},
			{"", []string{"backups/x/manifest", "wal/00000001/a", "wal/00000001/b", "wal/00000002/b", "walrus"}},
			{"nothing/", nil},
		} {
			objs, err := s.List(ctx, tc.prefix)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.Key)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
			}
		}
	})
	t.Run("ConcurrentIfAbsentOneWins", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Put(ctx, "race", bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 100000)), true)
			}()
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, backup.ErrExist):
				t.Fatalf("Put = %v, want nil or ErrExist", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d writers won, want exactly 1", wins)
		}
		got := read(t, s, "race")
		if len(got) != 100000 || !bytes.Equal(got, bytes.Repeat(got[:1], 100000)) {
			t.Fatal("stored object mixes writers' content")
		}
	})
	t.Run("InvalidKeys", func(t *testing.T) {
		s := newStorage(t)
		for _, k := range []string{"", "/abs", "a/../b", "../x", "a//b"} {
			if err := s.Put(context.Background(), k, bytes.NewReader(nil), false); err == nil {
				t.Errorf("Put(%q) succeeded, want an error", k)
			}
		}
	})
}

func read(t *testing.T, s backup.Storage, key string) []byte {
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

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
