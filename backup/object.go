package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
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
// carries the size and SHA-256 of the uncompressed content and, when the repository
// signs, an ed25519 signature. The trailer is a zstd "skippable frame", so an
// unencrypted object is still a valid .zst file for `zstd -d`:
//
//	[0:4]    0x184D2A5E         zstd skippable-frame magic
//	[4:8]    144                payload size
//	[8:16]   "HSTMSUM2"
//	[16:24]  content size       uint64, little endian
//	[24:56]  SHA-256 of the content
//	[56:88]  the signer's ed25519 public key   (zero: unsigned)
//	[88:152] ed25519 signature of signatureMessage(key, size, SHA-256)   (zero: unsigned)
//
// An encrypted object is a plaintext header naming its recipients (encodeHeader),
// the encrypted stream of exactly such a compressed body and trailer, then a tag
// block (encodeTagBlock): compress, then encrypt; the trailer, checksum included, is
// inside the encryption.
const (
	trailerMagic   = 0x184D2A5E // zstd skippable frame magic (0x184D2A5?)
	trailerTag     = "HSTMSUM2"
	trailerPayload = 8 + 8 + sha256.Size + ed25519.PublicKeySize + ed25519.SignatureSize
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

// trailer is a decoded trailer.
type trailer struct {
	size   int64
	sum    []byte
	signer ed25519.PublicKey // nil: unsigned
	sig    []byte
}

func encodeTrailer(size int64, sum []byte, signer ed25519.PublicKey, sig []byte) []byte {
	b := make([]byte, trailerSize)
	binary.LittleEndian.PutUint32(b[0:], trailerMagic)
	binary.LittleEndian.PutUint32(b[4:], trailerPayload)
	copy(b[8:16], trailerTag)
	binary.LittleEndian.PutUint64(b[16:], uint64(size))
	copy(b[24:56], sum)
	if len(sig) > 0 {
		copy(b[56:88], signer)
		copy(b[88:152], sig)
	}
	return b
}

func decodeTrailer(b []byte) (trailer, bool) {
	if len(b) != trailerSize || binary.LittleEndian.Uint32(b[0:]) != trailerMagic ||
		binary.LittleEndian.Uint32(b[4:]) != trailerPayload || string(b[8:16]) != trailerTag {
		return trailer{}, false
	}
	t := trailer{size: int64(binary.LittleEndian.Uint64(b[16:])), sum: b[24:56]}
	signer, sig := b[56:88], b[88:152]
	if isZero(signer) {
		if !isZero(sig) {
			return trailer{}, false // a signature without a signer: damaged
		}
		return t, true
	}
	t.signer, t.sig = ed25519.PublicKey(signer), sig
	return t, true
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// PutObject compresses src into the object key, with its checksum trailer; with an
// Encrypter it encrypts the result, with a Signer it signs it. With ifAbsent it
// returns ErrExist (and stores nothing) when key already exists. It returns an
// *EncryptionMismatchError, storing nothing, when the repository's marker says
// otherwise about encryption.
func (r *Repository) PutObject(ctx context.Context, key string, src io.Reader, ifAbsent bool, concurrency int) (Sum, error) {
	if err := r.checkEncryption(ctx); err != nil {
		return Sum{}, err
	}
	return r.putObject(ctx, key, src, ifAbsent, concurrency, r.Encrypter != nil)
}

// PutPlainObject is PutObject without encryption, even in an encrypted repository:
// for records every writer must be able to read back without the identity (the
// audit log's chain). It is still checksummed and, with a Signer, signed.
func (r *Repository) PutPlainObject(ctx context.Context, key string, src io.Reader, ifAbsent bool) (Sum, error) {
	return r.putObject(ctx, key, src, ifAbsent, 1, false)
}

func (r *Repository) putObject(ctx context.Context, key string, src io.Reader, ifAbsent bool, concurrency int, encrypt bool) (Sum, error) {
	var header []byte
	if encrypt {
		h, err := encodeHeader(r.Encrypter.Recipients())
		if err != nil {
			return Sum{}, fmt.Errorf("store %s: %w", key, err)
		}
		header = h
	}
	var signer ed25519.PublicKey
	if r.Signer != nil {
		pub, err := r.Signer.PublicKey()
		if err != nil {
			return Sum{}, fmt.Errorf("store %s: %w", key, err)
		}
		signer = pub
	}
	pr, pw := io.Pipe()
	var sum Sum
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		sum, err = r.writeObject(pw, key, src, header, signer, concurrency)
		pw.CloseWithError(err) // nil: EOF
	}()
	err := r.Storage.Put(ctx, key, pr, ifAbsent)
	pr.CloseWithError(errors.New("storage stopped reading"))
	<-done
	if err != nil {
		return Sum{}, err
	}
	return sum, nil
}

// writeObject writes the stored form of src to w: [header, encrypted(] compressed
// content, trailer [), tag block].
func (r *Repository) writeObject(w io.Writer, key string, src io.Reader, header []byte, signer ed25519.PublicKey, concurrency int) (Sum, error) {
	// Buffer the stored side: fewer, larger hand-offs to the storage writer.
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &countWriter{w: bw}
	var body io.Writer = cw
	var ew io.WriteCloser
	if header != nil {
		if _, err := cw.Write(header); err != nil {
			return Sum{}, err
		}
		var err error
		if ew, err = r.Encrypter.Encrypt(cw); err != nil {
			return Sum{}, fmt.Errorf("encrypt: %w", err)
		}
		body = ew
	}
	zw, err := r.Codec.Compress(body, concurrency)
	if err != nil {
		return Sum{}, err
	}
	n, digest, err := copyHashing(zw, src)
	if err != nil {
		zw.Close()
		return Sum{}, fmt.Errorf("read source: %w", err)
	}
	if err := zw.Close(); err != nil {
		return Sum{}, err
	}
	var sig []byte
	if signer != nil {
		if sig, err = r.Signer.Sign(signatureMessage(key, n, digest)); err != nil {
			return Sum{}, fmt.Errorf("sign: %w", err)
		}
	}
	if _, err := body.Write(encodeTrailer(n, digest, signer, sig)); err != nil {
		return Sum{}, err
	}
	if ew != nil {
		if err := ew.Close(); err != nil {
			return Sum{}, fmt.Errorf("encrypt: %w", err)
		}
		if _, err := cw.Write(encodeTagBlock(signer, sig)); err != nil {
			return Sum{}, err
		}
	}
	if err := bw.Flush(); err != nil {
		return Sum{}, err
	}
	return Sum{Size: n, StoredSize: cw.n, SHA256: hex.EncodeToString(digest)}, nil
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

// OpenObject opens the object key and returns a reader of its original content. An
// encrypted object that the configured identities cannot open gives a *KeyError
// naming the recipients it needs, before any content is read. The reader verifies
// size, SHA-256 and (with a Verifier) the signature as it goes; Read returns a
// *CorruptError or a *SignatureError (at the latest at end of file) when the stored
// object was damaged, altered or not signed by a trusted key, so a consumer must not
// trust the data until it has read to io.EOF.
func (r *Repository) OpenObject(ctx context.Context, key string) (io.ReadCloser, error) {
	v, err := r.openVerifying(ctx, key)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (r *Repository) openVerifying(ctx context.Context, key string) (*verifyingReader, error) {
	rc, err := r.Storage.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	v := &verifyingReader{repo: r, key: key, rc: rc, raw: &rawReader{r: rc}, h: sha256.New()}
	plain, err := v.openEncryption()
	if err != nil {
		rc.Close()
		return nil, err
	}
	v.hb = &holdback{r: plain, n: trailerSize}
	zr, err := r.Codec.Decompress(v.hb)
	if err != nil {
		rc.Close()
		return nil, &CorruptError{Key: key, Reason: err.Error()}
	}
	v.zr = zr
	return v, nil
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
	c, err := r.CheckObject(ctx, key)
	return c.Sum, err
}

// ObjectCheck is what reading an object through found.
type ObjectCheck struct {
	Sum
	// Recipients are those the object is encrypted to; none: it is not encrypted.
	Recipients []string `json:"recipients,omitempty"`
	// Signer is the public key that signed it; empty: unsigned.
	Signer string `json:"signer,omitempty"`
	// Signature is "verified", "unsigned" or "not checked" (no Verifier).
	Signature string `json:"signature,omitempty"`
}

// Signature states in ObjectCheck.
const (
	SignatureVerified   = "verified"
	SignatureUnsigned   = "unsigned"
	SignatureNotChecked = "not checked"
)

// CheckObject reads the object through, verifying it as OpenObject does, and says
// what it found. On error the check holds what was learnt before it.
func (r *Repository) CheckObject(ctx context.Context, key string) (ObjectCheck, error) {
	return r.copyObject(ctx, key, io.Discard)
}

// copyObject is CheckObject writing the content to w.
func (r *Repository) copyObject(ctx context.Context, key string, w io.Writer) (ObjectCheck, error) {
	v, err := r.openVerifying(ctx, key)
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			return ObjectCheck{Recipients: ke.Needed}, err
		}
		return ObjectCheck{}, err
	}
	defer v.Close()
	_, err = io.Copy(w, v)
	c := ObjectCheck{Recipients: v.recipients, Signature: v.signature}
	if v.signer != nil {
		c.Signer = FormatPublicKey(v.signer)
	}
	if err != nil {
		return c, err
	}
	c.Sum = Sum{Size: v.n, StoredSize: v.raw.n, SHA256: hex.EncodeToString(v.h.Sum(nil))}
	return c, nil
}

// SameContent reports whether the object key holds exactly the content local (size
// and SHA-256), as wal push must know for a file already archived; it also returns
// the stored object's sum, as far as it is known. It reads the object through and
// decrypts it when it can. An encrypted object it cannot decrypt (a pushing host has
// no identity) it compares by content tag, which needs the Signer whose key signed
// the stored object: without one it returns an error, never a guess.
func (r *Repository) SameContent(ctx context.Context, key string, local Sum) (bool, Sum, error) {
	c, err := r.CheckObject(ctx, key)
	if err == nil {
		return c.Size == local.Size && c.SHA256 == local.SHA256, c.Sum, nil
	}
	if !errors.Is(err, ErrWrongKey) {
		return false, Sum{}, err
	}
	if r.Signer == nil {
		return false, Sum{}, fmt.Errorf("%s is already stored, encrypted, and this host can neither decrypt it nor compare its signature tag: "+
			"configure the signing key that signed it (HESTAMI_SIGNING_KEY_FILE), or the identity (HESTAMI_ENCRYPTION_IDENTITY_FILE)", key)
	}
	pub, err := r.Signer.PublicKey()
	if err != nil {
		return false, Sum{}, err
	}
	signer, tag, stored, err := r.readTagBlock(ctx, key)
	if err != nil {
		return false, Sum{}, err
	}
	switch {
	case isZero(signer):
		return false, Sum{}, fmt.Errorf("%s is already stored, encrypted and unsigned, so this host cannot compare it without the identity (HESTAMI_ENCRYPTION_IDENTITY_FILE)", key)
	case !pub.Equal(ed25519.PublicKey(signer)):
		return false, Sum{}, fmt.Errorf("%s is already stored, encrypted and signed by %s, not by this host's key %s, so this host cannot compare it without the identity (HESTAMI_ENCRYPTION_IDENTITY_FILE)",
			key, FormatPublicKey(signer), FormatPublicKey(pub))
	}
	sum, err := hex.DecodeString(local.SHA256)
	if err != nil {
		return false, Sum{}, fmt.Errorf("compare %s: invalid sha256 %q", key, local.SHA256)
	}
	sig, err := r.Signer.Sign(signatureMessage(key, local.Size, sum))
	if err != nil {
		return false, Sum{}, err
	}
	if !bytes.Equal(contentTag(sig), tag) {
		return false, Sum{StoredSize: stored}, nil
	}
	return true, Sum{Size: local.Size, StoredSize: stored, SHA256: local.SHA256}, nil
}

// readTagBlock reads an encrypted object through and returns its tag block's signer
// and tag, and the object's stored size.
func (r *Repository) readTagBlock(ctx context.Context, key string) (signer, tag []byte, stored int64, err error) {
	rc, err := r.Storage.Open(ctx, key)
	if err != nil {
		return nil, nil, 0, err
	}
	defer rc.Close()
	raw := &rawReader{r: rc}
	hb := &holdback{r: raw, n: tagBlockSize}
	if _, err := io.Copy(io.Discard, hb); err != nil {
		return nil, nil, 0, fmt.Errorf("read %s: %w", key, err)
	}
	signer, tag, ok := decodeTagBlock(hb.tail)
	if !ok {
		return nil, nil, 0, &CorruptError{Key: key, Reason: "tag block after the encrypted data missing or damaged"}
	}
	return signer, tag, raw.n, nil
}

// CheckDecryptable opens each object and reads no further than its encryption
// headers: it returns the first *KeyError (or other error) so that a restore can
// stop before it writes anything. Unencrypted objects pass.
func (r *Repository) CheckDecryptable(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		v, err := r.openVerifying(ctx, key)
		if err != nil {
			return err
		}
		v.Close()
	}
	return nil
}

// rawReader counts the stored bytes read and records a storage read error, to tell
// it from damage found by decryption or decompression.
type rawReader struct {
	r   io.Reader
	n   int64
	err error
}

func (r *rawReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

type verifyingReader struct {
	repo *Repository
	key  string
	rc   io.ReadCloser
	raw  *rawReader
	// outer holds back an encrypted object's tag block from the decrypter; nil for
	// an unencrypted object.
	outer *holdback
	hb    *holdback
	zr    io.ReadCloser
	h     hash.Hash
	n     int64
	err   error

	recipients []string
	signer     ed25519.PublicKey
	signature  string
	// unsignedOK accepts an unsigned object without a warning (an audit entry
	// written by a host without a signing key); a wrong signature still fails.
	unsignedOK bool
}

// openEncryption returns the stream of compressed content and trailer: the object
// itself, or, for an encrypted object, its decryption.
func (v *verifyingReader) openEncryption() (io.Reader, error) {
	br := bufio.NewReaderSize(v.raw, 64<<10)
	head, _ := br.Peek(len(encMagic))
	if string(head) != encMagic {
		if v.raw.err != nil {
			return nil, fmt.Errorf("read %s: %w", v.key, v.raw.err)
		}
		return br, nil
	}
	b, _ := br.Peek(maxHeaderSize)
	if v.raw.err != nil {
		return nil, fmt.Errorf("read %s: %w", v.key, v.raw.err)
	}
	recipients, n, err := parseHeader(b)
	if err != nil {
		return nil, &CorruptError{Key: v.key, Reason: err.Error()}
	}
	br.Discard(n)
	v.recipients = recipients
	d := v.repo.Decrypter
	if d == nil {
		return nil, &KeyError{Key: v.key, Needed: recipients}
	}
	held, err := d.Recipients()
	if err != nil {
		return nil, &KeyError{Key: v.key, Needed: recipients, Err: err}
	}
	if !overlap(held, recipients) {
		return nil, &KeyError{Key: v.key, Needed: recipients, Held: held}
	}
	v.outer = &holdback{r: br, n: tagBlockSize}
	plain, err := d.Decrypt(v.outer)
	if err != nil {
		switch {
		case v.raw.err != nil:
			return nil, fmt.Errorf("read %s: %w", v.key, v.raw.err)
		case errors.Is(err, ErrWrongKey):
			return nil, &CorruptError{Key: v.key, Reason: "its header names a recipient whose identity is configured, but the encrypted data does not open with it " +
				"(damaged, or replaced by data encrypted to other keys)"}
		}
		return nil, &CorruptError{Key: v.key, Reason: "decrypt: " + err.Error()}
	}
	return plain, nil
}

func overlap(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
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
	if err == io.EOF && v.outer != nil {
		// The decrypter checked that its stream ended; the tag block is what remains.
		if extra, derr := io.Copy(io.Discard, v.outer); derr != nil {
			err = derr
		} else if extra != 0 {
			v.err = &CorruptError{Key: v.key, Reason: fmt.Sprintf("%d unexpected bytes after the encrypted data", extra)}
			return n, v.err
		}
	}
	if err != nil && err != io.EOF {
		var ce *CorruptError
		var se *SignatureError
		switch {
		case errors.As(err, &ce) || errors.As(err, &se) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			v.err = err
		case v.raw.err != nil:
			v.err = fmt.Errorf("read %s: %w", v.key, v.raw.err)
		case v.hb.srcErr != nil:
			v.err = &CorruptError{Key: v.key, Reason: "decrypt: " + v.hb.srcErr.Error()}
		default:
			v.err = &CorruptError{Key: v.key, Reason: "decompress: " + err.Error()}
		}
		return n, v.err
	}
	if err == io.EOF {
		v.err = v.finish()
		return n, v.err
	}
	return n, nil
}

// finish checks the trailer (and tag block) once the content is read: io.EOF when
// everything matches.
func (v *verifyingReader) finish() error {
	t, ok := decodeTrailer(v.hb.tail)
	switch {
	case !ok:
		return &CorruptError{Key: v.key, Reason: "checksum trailer missing or damaged (truncated object?)"}
	case t.size != v.n:
		return &CorruptError{Key: v.key, Reason: fmt.Sprintf("size %d, want %d", v.n, t.size)}
	case !bytes.Equal(t.sum, v.h.Sum(nil)):
		return &CorruptError{Key: v.key, Reason: fmt.Sprintf("sha256 %x, want %x", v.h.Sum(nil), t.sum)}
	}
	if v.outer != nil {
		signer, tag, ok := decodeTagBlock(v.outer.tail)
		var want []byte
		if t.signer != nil {
			want = contentTag(t.sig)
		}
		if !ok || !bytes.Equal(signer, padKey(t.signer)) || !bytes.Equal(tag, padTag(want)) {
			return &CorruptError{Key: v.key, Reason: "tag block after the encrypted data missing, damaged or not matching its content"}
		}
	}
	v.signer = t.signer
	verifier := v.repo.Verifier
	switch {
	case verifier == nil:
		v.signature = SignatureNotChecked
	case t.signer == nil:
		v.signature = SignatureUnsigned
		if v.unsignedOK {
			break
		}
		if !v.repo.AllowUnsigned {
			return &SignatureError{Key: v.key}
		}
		v.repo.logger().Warn("accepted an unsigned object: signature verification is relaxed (--allow-unsigned, signing.allow_unsigned)", "key", v.key)
	default:
		if err := verifier.Verify(t.signer, signatureMessage(v.key, t.size, t.sum), t.sig); err != nil {
			return &SignatureError{Key: v.key, Signer: FormatPublicKey(t.signer), Err: err}
		}
		v.signature = SignatureVerified
	}
	return io.EOF
}

func padKey(k ed25519.PublicKey) []byte {
	if k == nil {
		return make([]byte, ed25519.PublicKeySize)
	}
	return k
}

func padTag(t []byte) []byte {
	if t == nil {
		return make([]byte, sha256.Size)
	}
	return t
}

func (v *verifyingReader) Close() error {
	if v.zr != nil {
		v.zr.Close()
	}
	return v.rc.Close()
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
