// Package zstd compresses repository objects with Zstandard (klauspost/compress).
package zstd

import (
	"fmt"
	"io"

	kzstd "github.com/klauspost/compress/zstd"

	"github.com/hestami/hestami/backup"
)

// Codec is a backup.Codec using zstd at a fixed level.
type Codec struct {
	// Level is the encoder level: 1 (fastest) to 4 (best); 0 means 1. Backups are
	// I/O- and CPU-bound at once: level 1 keeps a 2-core machine ahead of its disk.
	Level int
}

var _ backup.Codec = Codec{}

// Compress returns a zstd writer into w using up to concurrency goroutines.
func (c Codec) Compress(w io.Writer, concurrency int) (io.WriteCloser, error) {
	if concurrency < 1 {
		concurrency = 1
	}
	lvl := kzstd.SpeedFastest
	switch c.Level {
	case 2:
		lvl = kzstd.SpeedDefault
	case 3:
		lvl = kzstd.SpeedBetterCompression
	case 4:
		lvl = kzstd.SpeedBestCompression
	}
	opts := []kzstd.EOption{
		kzstd.WithEncoderLevel(lvl),
		kzstd.WithEncoderConcurrency(concurrency),
		kzstd.WithEncoderCRC(true),
		kzstd.WithWindowSize(4 << 20),
	}
	if concurrency == 1 {
		opts = append(opts, kzstd.WithLowerEncoderMem(true))
	}
	enc, err := kzstd.NewWriter(w, opts...)
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	return enc, nil
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
