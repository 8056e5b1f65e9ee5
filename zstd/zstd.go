// Package zstd compresses repository objects with Zstandard (klauspost/compress).
//
// One stream is compressed on several cores by cutting it into independent frames
// (FrameSize each) that workers compress at once and a writer emits in order: a
// multi-frame stream is an ordinary zstd stream, and each frame's history window is
// large enough for PostgreSQL's 8 KiB pages.
package zstd

import (
	"errors"
	"fmt"
	"io"
	"sync"

	kzstd "github.com/klauspost/compress/zstd"

	"github.com/hestami/hestami/backup"
)

// FrameSize is how much input each independently compressed frame holds.
const FrameSize = 1 << 20

// Codec is a backup.Codec using zstd at a fixed level.
type Codec struct {
	// Level is the encoder level: 1 (fastest) to 4 (best); 0 means 1. Backups are
	// I/O- and CPU-bound at once: level 1 keeps a 2-core machine ahead of its disk.
	Level int
}

var _ backup.Codec = Codec{}

func (c Codec) options(concurrency int) []kzstd.EOption {
	lvl := kzstd.SpeedFastest
	switch c.Level {
	case 2:
		lvl = kzstd.SpeedDefault
	case 3:
		lvl = kzstd.SpeedBetterCompression
	case 4:
		lvl = kzstd.SpeedBestCompression
	}
	return []kzstd.EOption{
		kzstd.WithEncoderLevel(lvl),
		kzstd.WithEncoderConcurrency(concurrency),
		kzstd.WithEncoderCRC(true),
		kzstd.WithWindowSize(FrameSize),
		// Text without repeats (hex-encoded bytea in dumps, say) still halves with
		// entropy coding; the fastest level skips it by default.
		kzstd.WithAllLitEntropyCompression(true),
	}
}

// Compress returns a zstd writer into w using up to concurrency cores.
func (c Codec) Compress(w io.Writer, concurrency int) (io.WriteCloser, error) {
	if concurrency < 1 {
		concurrency = 1
	}
	enc, err := kzstd.NewWriter(nil, c.options(concurrency)...)
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	fw := &frameWriter{
		w:     w,
		enc:   enc,
		jobs:  make(chan *frame, concurrency),
		order: make(chan *frame, concurrency+1),
		done:  make(chan struct{}),
	}
	for range concurrency {
		fw.workers.Add(1)
		go fw.work()
	}
	go fw.emit()
	return fw, nil
}

// frame is one chunk of input on its way to becoming a compressed frame.
type frame struct {
	in, out []byte
	ready   chan struct{}
}

// frameWriter compresses FrameSize chunks concurrently and writes them in order.
type frameWriter struct {
	w       io.Writer
	enc     *kzstd.Encoder
	cur     []byte
	jobs    chan *frame
	order   chan *frame
	workers sync.WaitGroup
	done    chan struct{} // closed when emit has returned
	mu      sync.Mutex
	err     error
	closed  bool
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, FrameSize); return &b }}

func getBuf() []byte  { return (*bufPool.Get().(*[]byte))[:0] }
func putBuf(b []byte) { bufPool.Put(&b) }

func (fw *frameWriter) work() {
	defer fw.workers.Done()
	for f := range fw.jobs {
		f.out = fw.enc.EncodeAll(f.in, getBuf())
		close(f.ready)
	}
}

func (fw *frameWriter) emit() {
	defer close(fw.done)
	for f := range fw.order {
		<-f.ready
		putBuf(f.in)
		if fw.error() == nil {
			if _, err := fw.w.Write(f.out); err != nil {
				fw.setError(err)
			}
		}
		putBuf(f.out)
	}
}

func (fw *frameWriter) error() error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.err
}

func (fw *frameWriter) setError(err error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.err == nil {
		fw.err = err
	}
}

// Write implements io.Writer.
func (fw *frameWriter) Write(p []byte) (int, error) {
	if fw.closed {
		return 0, errors.New("zstd: write after close")
	}
	n := len(p)
	for len(p) > 0 {
		if err := fw.error(); err != nil {
			return n - len(p), err
		}
		if fw.cur == nil {
			fw.cur = getBuf()
		}
		m := min(len(p), FrameSize-len(fw.cur))
		fw.cur = append(fw.cur, p[:m]...)
		p = p[m:]
		if len(fw.cur) == FrameSize {
			fw.submit()
		}
	}
	return n, nil
}

func (fw *frameWriter) submit() {
	f := &frame{in: fw.cur, ready: make(chan struct{})}
	fw.cur = nil
	fw.order <- f // bounds the frames in flight
	fw.jobs <- f
}

// Close compresses what is left, waits for every frame to be written and returns
// the first error.
func (fw *frameWriter) Close() error {
	if fw.closed {
		return fw.error()
	}
	fw.closed = true
	if len(fw.cur) > 0 {
		fw.submit()
	}
	close(fw.jobs)
	close(fw.order)
	<-fw.done
	fw.workers.Wait()
	fw.enc.Close()
	return fw.error()
}

// Decompress returns a reader of the decompressed content of r.
func (c Codec) Decompress(r io.Reader) (io.ReadCloser, error) {
	dec, err := kzstd.NewReader(r, kzstd.WithDecoderConcurrency(2), kzstd.WithDecoderLowmem(false), kzstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return decoder{dec}, nil
}

type decoder struct{ *kzstd.Decoder }

func (d decoder) Close() error { d.Decoder.Close(); return nil }
