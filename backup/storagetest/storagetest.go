// Package storagetest is the contract every backup.Storage implementation must pass:
// run it from each implementation's tests with Run (or RunBackend, for a backend that
// can have failures injected).
//
// The suite measures the process's heap while it streams a large object, so the
// subtests of every Run in one test process coordinate: the measurement runs alone.
// A backend's server (an emulator) must run in another process for the measurement
// to mean anything.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
)

// Defaults for Backend's sizes.
const (
	// DefaultLargeObjectSize is over 100 MB, and not a multiple of any part size.
	DefaultLargeObjectSize = 101<<20 + 12345
	// DefaultMaxHeap bounds the heap a large Put or Open may grow by.
	DefaultMaxHeap = 64 << 20
	// DefaultListObjects is more than one page (1,000 keys) of every object store.
	DefaultListObjects = 1050
)

// Faults injects failures into a backend's requests.
type Faults interface {
	// Fail makes the next n requests fail with HTTP status (503: an outage; 403:
	// access denied); n < 0 fails every request until Fail(0, 0). It resets the
	// count Requests returns.
	Fail(n, status int)
	// Requests returns how many requests reached the backend since the last Fail.
	Requests() int
}

// Backend is an implementation under test.
type Backend struct {
	// New returns an empty storage.
	New func(t *testing.T) backup.Storage
	// Faulty, if set, returns an empty storage and the faults of its backend.
	Faulty func(t *testing.T) (backup.Storage, Faults)
	// LargeObjectSize is the size of the streamed object (DefaultLargeObjectSize).
	LargeObjectSize int64
	// MaxHeap bounds the heap growth while streaming it (DefaultMaxHeap).
	MaxHeap uint64
	// ListObjects is how many objects the pagination test lists (DefaultListObjects);
	// it must exceed 1,000, the page size of the object stores.
	ListObjects int
}

// heavy lets the large-object test run alone in the process: it measures the heap.
var heavy sync.RWMutex

// Share keeps the contract's large-object memory measurement from running while t
// runs: call it from other tests that move data in the same process as RunBackend.
// Call it in a test without parallel subtests: those would wait for a slot that
// tests blocked behind the measurement hold.
func Share(t testing.TB) {
	heavy.RLock()
	t.Cleanup(heavy.RUnlock)
}

// Run runs the storage contract against storages made by newStorage, each empty.
func Run(t *testing.T, newStorage func(t *testing.T) backup.Storage) {
	RunBackend(t, Backend{New: newStorage})
}

// RunBackend runs the storage contract against b.
func RunBackend(t *testing.T, b Backend) {
	if b.LargeObjectSize == 0 {
		b.LargeObjectSize = DefaultLargeObjectSize
	}
	if b.MaxHeap == 0 {
		b.MaxHeap = DefaultMaxHeap
	}
	if b.ListObjects == 0 {
		b.ListObjects = DefaultListObjects
	}
	if b.ListObjects <= 1000 {
		t.Fatalf("storagetest: ListObjects %d must exceed 1,000 (one page of an object store)", b.ListObjects)
	}
	newStorage := b.New
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			heavy.RLock()
			defer heavy.RUnlock()
			f(t)
		})
	}

	run("PutOpenRoundTrip", func(t *testing.T) {
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
		if err != nil || info.Size != int64(len(want)) || info.Key != "a/b/c.bin" {
			t.Fatalf("Stat = %+v, %v; want size %d", info, err, len(want))
		}
		if d := time.Since(info.ModTime); d < -time.Hour || d > time.Hour {
			t.Errorf("Stat ModTime = %v, want about now", info.ModTime)
		}
	})
	run("EmptyObject", func(t *testing.T) {
		s := newStorage(t)
		if err := s.Put(t.Context(), "empty", bytes.NewReader(nil), true); err != nil {
			t.Fatal(err)
		}
		if got := read(t, s, "empty"); len(got) != 0 {
			t.Fatalf("empty object reads %d bytes", len(got))
		}
	})
	run("NotFound", func(t *testing.T) {
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
	run("Delete", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		for _, k := range []string{"d/x", "d/y"} {
			if err := s.Put(ctx, k, strings.NewReader(k), false); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Delete(ctx, "d/x"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, "d/x"); !errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("Stat after Delete = %v, want ErrNotFound", err)
		}
		if got := keys(t, s, ""); fmt.Sprint(got) != "[d/y]" {
			t.Fatalf("List after Delete = %v, want [d/y]", got)
		}
	})
	run("IfAbsentKeepsOriginal", func(t *testing.T) {
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
	run("FailedPutLeavesNothing", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		broken := errReader{errors.New("source broke")}
		for _, tc := range []struct {
			name string
			r    func() io.Reader
		}{
			{"at once", func() io.Reader { return broken }},
			{"after 1 MiB", func() io.Reader { return io.MultiReader(bytes.NewReader(make([]byte, 1<<20)), broken) }},
			// Past any part size: a multipart upload that must be aborted, not completed.
			{"after 20 MiB", func() io.Reader { return io.MultiReader(io.LimitReader(newGenerator(1), 20<<20), broken) }},
		} {
			for _, ifAbsent := range []bool{false, true} {
				if err := s.Put(ctx, "half/object", tc.r(), ifAbsent); err == nil {
					t.Fatalf("Put with a reader failing %s succeeded", tc.name)
				} else if errors.Is(err, backup.ErrExist) {
					t.Fatalf("Put with a reader failing %s: %v, want the reader's error", tc.name, err)
				}
				if _, err := s.Stat(ctx, "half/object"); !errors.Is(err, backup.ErrNotFound) {
					t.Fatalf("Stat after a Put failing %s = %v, want ErrNotFound", tc.name, err)
				}
			}
		}
		if got := keys(t, s, ""); len(got) != 0 {
			t.Fatalf("List after failed Puts = %v, want nothing", got)
		}
	})
	run("CancelledPutLeavesNothing", func(t *testing.T) {
		s := newStorage(t)
		ctx, cancel := context.WithCancel(t.Context())
		// Cancel once 12 MiB went out: mid-upload for every backend.
		r := &cancelAfter{r: newGenerator(2), n: 12 << 20, cancel: cancel}
		if err := s.Put(ctx, "cancelled", io.LimitReader(r, 40<<20), false); err == nil {
			t.Fatal("Put whose context was cancelled succeeded")
		}
		if _, err := s.Stat(t.Context(), "cancelled"); !errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("Stat after a cancelled Put = %v, want ErrNotFound", err)
		}
	})
	run("ListPrefixSorted", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		all := []string{"wal/00000002/b", "wal/00000001/b", "wal/00000001/a", "backups/x/manifest", "walrus"}
		for _, k := range all {
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
			{"wal/00000001/a", []string{"wal/00000001/a"}},
			{"", []string{"backups/x/manifest", "wal/00000001/a", "wal/00000001/b", "wal/00000002/b", "walrus"}},
			{"nothing/", nil},
		} {
			if got := keys(t, s, tc.prefix); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
			}
		}
		objs, err := s.List(ctx, "walrus")
		if err != nil || len(objs) != 1 || objs[0].Size != int64(len("walrus")) {
			t.Errorf("List(walrus) = %+v, %v; want one object of %d bytes", objs, err, len("walrus"))
		}
	})
	run("ListBeyondOnePage", func(t *testing.T) {
		s := newStorage(t)
		n := b.ListObjects
		var want []string
		for i := range n {
			want = append(want, fmt.Sprintf("many/%05d", i))
		}
		// Neighbours the prefix must leave out.
		putAll(t, s, append([]string{"many0", "manyx/0", "man/0"}, want...))
		got := keys(t, s, "many/")
		if len(got) != n || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("List(many/) returned %d keys, want %d (many/00000 to many/%05d, sorted)", len(got), n, n-1)
		}
		// A prefix inside the listing: keys 01000 to n-1.
		if got := keys(t, s, "many/01"); len(got) != n-1000 || got[0] != "many/01000" {
			t.Fatalf("List(many/01) returned %d keys starting %v, want %d from many/01000", len(got), got[:min(len(got), 1)], n-1000)
		}
		if got := keys(t, s, ""); len(got) != n+3 {
			t.Fatalf("List(\"\") returned %d keys, want %d", len(got), n+3)
		}
	})
	run("ConcurrentIfAbsentOneWins", func(t *testing.T) {
		for _, size := range []int{100000, 12 << 20} {
			s := newStorage(t)
			ctx := t.Context()
			n := 8
			if size > 1<<20 {
				n = 3
			}
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					errs[i] = s.Put(ctx, "race", bytes.NewReader(bytes.Repeat([]byte{byte(i)}, size)), true)
				})
			}
			wg.Wait()
			wins := 0
			for _, err := range errs {
				switch {
				case err == nil:
					wins++
				case !errors.Is(err, backup.ErrExist):
					t.Fatalf("Put of %d bytes = %v, want nil or ErrExist", size, err)
				}
			}
			if wins != 1 {
				t.Fatalf("%d writers of %d bytes won, want exactly 1", wins, size)
			}
			got := read(t, s, "race")
			if len(got) != size || !bytes.Equal(got, bytes.Repeat(got[:1], size)) {
				t.Fatalf("stored object of %d bytes mixes writers' content", size)
			}
		}
	})
	run("InvalidKeys", func(t *testing.T) {
		s := newStorage(t)
		for _, k := range []string{"", "/abs", "a/../b", "../x", "a//b", "a/./b", "trailing/"} {
			if err := s.Put(context.Background(), k, bytes.NewReader(nil), false); err == nil {
				t.Errorf("Put(%q) succeeded, want an error", k)
			}
		}
	})

	t.Run("LargeObjectBoundedMemory", func(t *testing.T) {
		heavy.Lock()
		defer heavy.Unlock()
		s := newStorage(t)
		ctx := t.Context()
		size := b.LargeObjectSize
		// Collect often while measuring, so the heap follows what is live rather
		// than garbage waiting for the collector.
		defer debug.SetGCPercent(debug.SetGCPercent(20))

		m := watchHeap()
		if err := s.Put(ctx, "big/object", io.LimitReader(newGenerator(7), size), true); err != nil {
			t.Fatal(err)
		}
		putPeak := m.stop()
		info, err := s.Stat(ctx, "big/object")
		if err != nil || info.Size != size {
			t.Fatalf("Stat = %+v, %v; want %d bytes", info, err, size)
		}

		m = watchHeap()
		rc, err := s.Open(ctx, "big/object")
		if err != nil {
			t.Fatal(err)
		}
		n, err := compareStream(rc, io.LimitReader(newGenerator(7), size))
		rc.Close()
		openPeak := m.stop()
		if err != nil {
			t.Fatalf("read back after %d bytes: %v", n, err)
		}
		t.Logf("%s object: heap grew by at most %s during Put, %s during Open", backup.FormatBytes(size),
			backup.FormatBytes(int64(putPeak)), backup.FormatBytes(int64(openPeak)))
		if putPeak > b.MaxHeap || openPeak > b.MaxHeap {
			t.Errorf("streaming a %s object grew the heap by %s (Put) and %s (Open): want both under %s",
				backup.FormatBytes(size), backup.FormatBytes(int64(putPeak)), backup.FormatBytes(int64(openPeak)), backup.FormatBytes(int64(b.MaxHeap)))
		}
		if err := s.Delete(ctx, "big/object"); err != nil {
			t.Fatal(err)
		}
	})

	if b.Faulty == nil {
		return
	}
	run("TransientErrorsRetried", func(t *testing.T) {
		s, f := b.Faulty(t)
		ctx := t.Context()
		if err := s.Put(ctx, "k", strings.NewReader("content"), false); err != nil {
			t.Fatal(err)
		}
		ops := []struct {
			name string
			do   func() error
		}{
			{"Stat", func() error { _, err := s.Stat(ctx, "k"); return err }},
			{"Open", func() error {
				rc, err := s.Open(ctx, "k")
				if err != nil {
					return err
				}
				defer rc.Close()
				b, err := io.ReadAll(rc)
				if err == nil && string(b) != "content" {
					err = fmt.Errorf("read %q", b)
				}
				return err
			}},
			{"List", func() error {
				objs, err := s.List(ctx, "")
				if err == nil && len(objs) != 1 {
					err = fmt.Errorf("listed %d objects, want 1", len(objs))
				}
				return err
			}},
			{"Delete", func() error { return s.Delete(ctx, "k") }},
		}
		for _, op := range ops {
			f.Fail(1, 503)
			if err := op.do(); err != nil {
				t.Errorf("%s after one failed request (503): %v; want it retried", op.name, err)
			}
			if f.Requests() < 2 {
				t.Errorf("%s after one failed request: %d requests, want a retry", op.name, f.Requests())
			}
		}
		f.Fail(0, 0)
		if _, err := s.Stat(ctx, "k"); !errors.Is(err, backup.ErrNotFound) {
			t.Errorf("Stat after the retried Delete = %v, want ErrNotFound", err)
		}
	})
	run("OutageIsNotNotFound", func(t *testing.T) {
		s, f := b.Faulty(t)
		f.Fail(-1, 503)
		// restore_command must not take an outage for the end of the archived WAL.
		_, err := s.Open(t.Context(), "wal/missing")
		f.Fail(0, 0)
		if err == nil || errors.Is(err, backup.ErrNotFound) {
			t.Fatalf("Open during an outage = %v, want an error other than ErrNotFound", err)
		}
		if !strings.Contains(err.Error(), "503") {
			t.Errorf("Open during an outage: %v; want the service's own words (503)", err)
		}
	})
	run("PermanentErrorFailsAtOnce", func(t *testing.T) {
		s, f := b.Faulty(t)
		ctx := t.Context()
		if err := s.Put(ctx, "k", strings.NewReader("content"), false); err != nil {
			t.Fatal(err)
		}
		for _, op := range []struct {
			name string
			do   func() error
		}{
			{"Stat", func() error { _, err := s.Stat(ctx, "k"); return err }},
			{"Stat(missing)", func() error { _, err := s.Stat(ctx, "missing"); return err }},
			{"List", func() error { _, err := s.List(ctx, ""); return err }},
			{"Put", func() error { return s.Put(ctx, "new", strings.NewReader("x"), true) }},
		} {
			f.Fail(-1, 403)
			err := op.do()
			n := f.Requests()
			f.Fail(0, 0)
			switch {
			case err == nil:
				t.Errorf("%s with access denied succeeded", op.name)
			case errors.Is(err, backup.ErrNotFound) || errors.Is(err, backup.ErrExist):
				t.Errorf("%s with access denied = %v, want neither ErrNotFound nor ErrExist", op.name, err)
			case !strings.Contains(err.Error(), "403"):
				t.Errorf("%s with access denied = %v, want the service's own words (403)", op.name, err)
			}
			if n != 1 {
				t.Errorf("%s with access denied sent %d requests, want 1: a permanent error is not retried", op.name, n)
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

func keys(t *testing.T, s backup.Storage, prefix string) []string {
	t.Helper()
	objs, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, o.Key)
	}
	return out
}

// putAll stores each key (with the key as content), several at a time.
func putAll(t *testing.T, s backup.Storage, keys []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	work := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for k := range work {
				if err := s.Put(ctx, k, strings.NewReader(k), false); err != nil {
					select {
					case errs <- err:
					default:
					}
					cancel()
				}
			}
		})
	}
	for _, k := range keys {
		select {
		case work <- k:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// newGenerator returns an endless reader of pseudo-random bytes, the same for a seed.
func newGenerator(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

// compareStream reads got and want to the end and fails at the first difference.
func compareStream(got, want io.Reader) (int64, error) {
	bg, bw := make([]byte, 1<<20), make([]byte, 1<<20)
	var n int64
	for {
		k, err := io.ReadFull(got, bg)
		if k > 0 {
			if _, werr := io.ReadFull(want, bw[:k]); werr != nil {
				return n, fmt.Errorf("the object is longer than what was written")
			}
			if !bytes.Equal(bg[:k], bw[:k]) {
				return n, fmt.Errorf("content differs within bytes %d to %d", n, n+int64(k))
			}
			n += int64(k)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if k, _ := want.Read(bw[:1]); k > 0 {
				return n, fmt.Errorf("the object is shorter than what was written")
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// cancelAfter calls cancel once n bytes were read through it.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n -= int64(k)
	if c.n <= 0 {
		c.cancel()
	}
	return k, err
}

// heapWatch samples the heap in use until stopped.
type heapWatch struct {
	base uint64
	peak uint64
	done chan struct{}
	wg   sync.WaitGroup
}

func watchHeap() *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := &heapWatch{base: ms.HeapInuse, peak: ms.HeapInuse, done: make(chan struct{})}
	m.wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			m.peak = max(m.peak, ms.HeapInuse)
			select {
			case <-m.done:
				return
			case <-tick.C:
			}
		}
	})
	return m
}

// stop returns how far the heap in use grew above where it started.
func (m *heapWatch) stop() uint64 {
	close(m.done)
	m.wg.Wait()
	return m.peak - m.base
}
