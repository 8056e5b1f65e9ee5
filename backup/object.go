package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Codec compresses object bodies. The zstd package provides the product's codec.
type Codec interface {
	// Compress returns a writer that compresses into w; concurrency > 1 lets it use
	// several cores for one stream.
	Compress(w io.Writer, concurrency int) (io.WriteCloser, error)
	// Decompress returns a reader of r's decompressed content.
	Decompress(r io.Reader) (io.ReadCloser, error)
}

// Every stored object is the compressed content followed by a fixed-size trailer that
// carries the SHA-256 and size of the uncompressed content. The trailer is a zstd
// "skippable frame", so a stored object is still a valid .zst file for `zstd -d`.
const (
	trailerMagic   = 0x184D2A5E // zstd skippable frame magic (0x184D2A5?)
	trailerTag     = "HSTMSUM1"
	trailerPayload = 8 + 8 + sha256.Size
	trailerSize    = 8 + trailerPayload
)

// Sum identifies the content of a stored object.
type Sum struct {
	Size       int64  `json:"size"`
	StoredSize int64  `json:"stored_size"`
	SHA256     string `json:"sha256"`
}

// CorruptError reports a stored object whose content fails verification.
type CorruptError struct {
	Key    string
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("stored object %s is corrupt: %s (the copy in storage is damaged or was altered; use another backup or a secondary copy)", e.Key, e.Reason)
}

// ErrCorrupt matches every *CorruptError with errors.Is.
var ErrCorrupt = errors.New("corrupt object")

// Is lets errors.Is(err, ErrCorrupt) match.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func encodeTrailer(size int64, sum []byte) []byte {
	b := make([]byte, trailerSize)
	binary.LittleEndian.PutUint32(b[0:], trailerMagic)
	binary.LittleEndian.PutUint32(b[4:], trailerPayload)
	copy(b[8:16], trailerTag)
	binary.LittleEndian.PutUint64(b[16:], uint64(size))
	copy(b[24:], sum)
	return b
}

func decodeTrailer(b []byte) (size int64, sum []byte, ok bool) {
	if len(b) != trailerSize || binary.LittleEndian.Uint32(b[0:]) != trailerMagic ||
		binary.LittleEndian.Uint32(b[4:]) != trailerPayload || string(b[8:16]) != trailerTag {
		return 0, nil, false
	}
	return int64(binary.LittleEndian.Uint64(b[16:])), b[24:], true
}

// PutObject compresses src into the object key, with its checksum trailer. With
// ifAbsent it returns ErrExist (and stores nothing) when key already exists.
func (r *Repository) PutObject(ctx context.Context, key string, src io.Reader, ifAbsent bool, concurrency int) (Sum, error) {
	pr, pw := io.Pipe()
	var sum Sum
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Buffer the compressed side: fewer, larger hand-offs to the storage writer.
		bw := bufio.NewWriterSize(pw, 1<<20)
		cw := &countWriter{w: bw}
		zw, err := r.Codec.Compress(cw, concurrency)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		n, digest, err := copyHashing(zw, src)
		if err != nil {
			zw.Close()
			pw.CloseWithError(fmt.Errorf("read source: %w", err))
			return
		}
		if err := zw.Close(); err != nil {
			pw.CloseWithError(err)
			return
		}
		if _, err := cw.Write(encodeTrailer(n, digest)); err != nil {
			pw.CloseWithError(err)
			return
		}
		if err := bw.Flush(); err != nil {
			pw.CloseWithError(err)
			return
		}
		sum = Sum{Size: n, StoredSize: cw.n, SHA256: hex.EncodeToString(digest)}
		pw.Close()
	}()
	err := r.Storage.Put(ctx, key, pr, ifAbsent)
	pr.CloseWithError(errors.New("storage stopped reading"))
	<-done
	if err != nil {
		return Sum{}, err
	}
	return sum, nil
}

// copyHashing copies src to dst while a second goroutine computes the SHA-256 of
// the same bytes, so hashing runs beside compression instead of before it.
func copyHashing(dst io.Writer, src io.Reader) (int64, []byte, error) {
	const bufs, size = 4, 256 << 10
	free := make(chan []byte, bufs)
	for range bufs {
		free <- make([]byte, size)
	}
	toHash := make(chan []byte, bufs)
	hashed := make(chan []byte, 1)
	go func() {
		h := sha256.New()
		for b := range toHash {
			h.Write(b)
			free <- b[:cap(b)]
		}
		hashed <- h.Sum(nil)
	}()
	var n int64
	var err error
	for {
		buf := <-free
		m, rerr := io.ReadFull(src, buf)
		if m > 0 {
			toHash <- buf[:m]
			if _, werr := dst.Write(buf[:m]); werr != nil {
				err = werr
				break
			}
			n += int64(m)
		} else {
			free <- buf
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	close(toHash)
	digest := <-hashed
	return n, digest, err
}

// OpenObject opens the object key and returns a reader of its original content. The
// reader verifies size and SHA-256 as it goes; Read returns a *CorruptError (at the
// latest at end of file) when the stored object was damaged or altered, so a consumer
// must not trust the data until it has read to io.EOF.
func (r *Repository) OpenObject(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := r.Storage.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	hb := &holdback{r: rc, n: trailerSize}
	zr, err := r.Codec.Decompress(hb)
	if err != nil {
		rc.Close()
		return nil, &CorruptError{Key: key, Reason: err.Error()}
	}
	return &verifyingReader{key: key, zr: zr, raw: rc, hb: hb, h: sha256.New()}, nil
}

// ReadObject reads a whole (small) object and verifies it.
func (r *Repository) ReadObject(ctx context.Context, key string) ([]byte, error) {
	rc, err := r.OpenObject(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// ObjectSum reads the object through and returns its verified checksum.
func (r *Repository) ObjectSum(ctx context.Context, key string) (Sum, error) {
	rc, err := r.OpenObject(ctx, key)
	if err != nil {
		return Sum{}, err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return Sum{}, err
	}
	vr := rc.(*verifyingReader)
	return Sum{Size: vr.n, StoredSize: vr.hb.total, SHA256: hex.EncodeToString(vr.h.Sum(nil))}, nil
}

type verifyingReader struct {
	key string
	zr  io.ReadCloser
	raw io.ReadCloser
	hb  *holdback
	h   hash.Hash
	n   int64
	err error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.zr.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		// The decompressor may stop at the end of its frame: drain the rest so the
		// trailer is what remains.
		if extra, derr := io.Copy(io.Discard, v.hb); derr != nil {
			err = derr
		} else if extra != 0 {
			v.err = &CorruptError{Key: v.key, Reason: fmt.Sprintf("%d unexpected bytes after the compressed data", extra)}
			return n, v.err
		}
	}
	if err != nil && err != io.EOF {
		var ce *CorruptError
		if errors.As(err, &ce) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			v.err = err
		} else if v.hb.srcErr != nil {
			v.err = fmt.Errorf("read %s: %w", v.key, v.hb.srcErr)
		} else {
			v.err = &CorruptError{Key: v.key, Reason: "decompress: " + err.Error()}
		}
		return n, v.err
	}
	if err == io.EOF {
		size, sum, ok := decodeTrailer(v.hb.tail)
		switch {
		case !ok:
			v.err = &CorruptError{Key: v.key, Reason: "checksum trailer missing or damaged (truncated object?)"}
		case size != v.n:
			v.err = &CorruptError{Key: v.key, Reason: fmt.Sprintf("size %d, want %d", v.n, size)}
		case !bytes.Equal(sum, v.h.Sum(nil)):
			v.err = &CorruptError{Key: v.key, Reason: fmt.Sprintf("sha256 %x, want %x", v.h.Sum(nil), sum)}
		default:
			v.err = io.EOF
		}
		return n, v.err
	}
	return n, nil
}

func (v *verifyingReader) Close() error {
	v.zr.Close()
	return v.raw.Close()
}

// holdback passes through everything read from r except its last n bytes, which it
// keeps in tail once r is exhausted.
type holdback struct {
	r          io.Reader
	n          int
	buf        []byte
	start, end int
	tail       []byte
	eof        bool
	total      int64
	srcErr     error
}

func (h *holdback) Read(p []byte) (int, error) {
	if h.buf == nil {
		h.buf = make([]byte, 256<<10)
	}
	for !h.eof && h.end-h.start <= h.n {
		if h.start > 0 {
			h.end = copy(h.buf, h.buf[h.start:h.end])
			h.start = 0
		}
		m, err := h.r.Read(h.buf[h.end:])
		h.total += int64(m)
		h.end += m
		if err == io.EOF {
			h.eof = true
		} else if err != nil {
			h.srcErr = err
			return 0, err
		}
	}
	avail := h.end - h.start - h.n
	if avail <= 0 {
		h.tail = h.buf[h.start:h.end]
		return 0, io.EOF
	}
	m := copy(p, h.buf[h.start:h.start+avail])
	h.start += m
	return m, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
