package zstd_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os/exec"
	"testing"

	"github.com/hestami/hestami/zstd"
)

func sample(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8192 {
		end := min(i+8192, n)
		if (i/8192)%3 == 0 {
			rand.Read(b[i:end]) // incompressible page
		} else {
			copy(b[i:end], bytes.Repeat([]byte("row|42|property owner|"), 400))
		}
	}
	return b
}

func TestRoundTripAcrossFrames(t *testing.T) {
	for _, conc := range []int{1, 2, 4} {
		for _, n := range []int{0, 1, zstd.FrameSize - 1, zstd.FrameSize, zstd.FrameSize + 1, 5*zstd.FrameSize + 12345} {
			data := sample(n)
			var out bytes.Buffer
			w, err := zstd.Codec{Level: 1}.Compress(&out, conc)
			if err != nil {
				t.Fatal(err)
			}
			// Odd write sizes cross frame boundaries.
			for p := data; len(p) > 0; {
				m := min(len(p), 77777)
				if _, err := w.Write(p[:m]); err != nil {
					t.Fatal(err)
				}
				p = p[m:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := zstd.Codec{}.Decompress(&out)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("concurrency %d, %d bytes: round trip differs (%v)", conc, n, err)
			}
		}
	}
}

// TestReadableByZstdTool: a stored object is a plain zstd stream an operator can
// decompress by hand.
func TestReadableByZstdTool(t *testing.T) {
	bin, err := exec.LookPath("zstd")
	if err != nil {
		t.Fatal("the zstd command is missing: make test installs it (scripts/install-deps.sh)")
	}
	data := sample(3*zstd.FrameSize + 5)
	var out bytes.Buffer
	w, _ := zstd.Codec{Level: 1}.Compress(&out, 2)
	w.Write(data)
	w.Close()
	cmd := exec.Command(bin, "-d", "-c")
	cmd.Stdin = &out
	got, err := cmd.Output()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("zstd -d: %v, %d bytes (want %d)", err, len(got), len(data))
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteErrorSurfaces(t *testing.T) {
	w, _ := zstd.Codec{Level: 1}.Compress(&failWriter{after: 100}, 2)
	data := sample(8 * zstd.FrameSize)
	_, werr := w.Write(data)
	cerr := w.Close()
	if werr == nil && cerr == nil {
		t.Fatal("a failing destination went unreported")
	}
}
