package backup

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// Encrypter encrypts object bodies for a set of recipients. The age package provides
// the product's (age X25519 public keys).
type Encrypter interface {
	// Recipients names the public keys new objects are encrypted to. Each object's
	// plaintext header lists them, so a failed decryption can say which key it needs.
	// Each is printable ASCII, at most 255 bytes.
	Recipients() []string
	// Encrypt returns a writer that encrypts into w; Close completes the encrypted
	// stream (it does not close w).
	Encrypt(w io.Writer) (io.WriteCloser, error)
}

// Decrypter decrypts object bodies.
type Decrypter interface {
	// Recipients returns the public keys of the identities it holds, in the form
	// Encrypter.Recipients uses; an error when the identities cannot be loaded (an
	// unreadable identity file).
	Recipients() ([]string, error)
	// Decrypt returns a reader of the plaintext of the encrypted stream r. It reads
	// the stream's own header before it returns: an error wrapping ErrWrongKey means
	// none of its identities opens the stream, any other error a damaged stream. The
	// returned reader fails (with an error other than r's) when the stream was
	// damaged, truncated or altered.
	Decrypt(r io.Reader) (io.Reader, error)
}

// ErrWrongKey is matched (errors.Is) by *KeyError, and wrapped by Decrypters when no
// identity they hold opens a stream.
var ErrWrongKey = errors.New("no key to decrypt the object")

// KeyError reports an encrypted object that cannot be decrypted with the configured
// identities. It names the recipients the object was encrypted to.
type KeyError struct {
	Key string
	// Needed are the recipients the object is encrypted to (from its header).
	Needed []string
	// Held are the public keys of the configured identities.
	Held []string
	// Err is why the identities could not be loaded, if they could not.
	Err error
}

func (e *KeyError) Error() string {
	needed := strings.Join(e.Needed, ", ")
	switch {
	case e.Err != nil:
		return fmt.Sprintf("stored object %s is encrypted to %s, and the identity to decrypt it could not be loaded: %v", e.Key, needed, e.Err)
	case len(e.Held) == 0:
		return fmt.Sprintf("stored object %s is encrypted to %s and no identity is configured: set HESTAMI_ENCRYPTION_IDENTITY_FILE "+
			"(encryption.identity_file) to a file holding the private key of one of these recipients", e.Key, needed)
	}
	return fmt.Sprintf("stored object %s is encrypted to %s, but the configured identities are for %s: point HESTAMI_ENCRYPTION_IDENTITY_FILE "+
		"at a file holding the private key of one of the object's recipients (keep old identities in that file until the backups encrypted to them expire)",
		e.Key, needed, strings.Join(e.Held, ", "))
}

// Is lets errors.Is(err, ErrWrongKey) match.
func (e *KeyError) Is(target error) bool { return target == ErrWrongKey }

// Unwrap returns why the identities could not be loaded.
func (e *KeyError) Unwrap() error { return e.Err }

// EncryptionMismatchError is returned when objects are about to be written to a
// repository whose marker says otherwise about encryption: an encrypted repository
// takes only encrypted objects, and an unencrypted one only unencrypted objects.
type EncryptionMismatchError struct {
	Storage string
	// Encrypted is what the repository's marker records.
	Encrypted bool
}

func (e *EncryptionMismatchError) Error() string {
	if e.Encrypted {
		return fmt.Sprintf("repository %s is encrypted, and no encryption recipients are configured: refusing to store unencrypted objects in it; "+
			"set HESTAMI_ENCRYPTION_RECIPIENTS (encryption.recipients) to the repository's age public keys", e.Storage)
	}
	return fmt.Sprintf("repository %s stores unencrypted objects, and encryption recipients are configured: refusing to mix encrypted objects into it; "+
		"start a new repository for encrypted backups (another HESTAMI_STORAGE_URL), or remove HESTAMI_ENCRYPTION_RECIPIENTS", e.Storage)
}

// ErrEncryptionMismatch is matched (errors.Is) by *EncryptionMismatchError.
var ErrEncryptionMismatch = errors.New("encryption does not match the repository")

// Is lets errors.Is(err, ErrEncryptionMismatch) match.
func (e *EncryptionMismatchError) Is(target error) bool { return target == ErrEncryptionMismatch }

// An encrypted object starts with a small plaintext header naming its recipients:
//
//	"HSTMENC1"                      magic
//	count          1 byte           number of recipients, 1..32
//	count times:   1 byte length (1..255), then the recipient (printable ASCII)
//	crc            4 bytes          CRC-32 (IEEE, little endian) of everything before
//
// The encrypted stream follows, then the tag block (see tagBlock).
const (
	encMagic        = "HSTMENC1"
	maxRecipients   = 32
	maxRecipientLen = 255
	maxHeaderSize   = len(encMagic) + 1 + maxRecipients*(1+maxRecipientLen) + 4
)

// encodeHeader returns the header for an object encrypted to recipients.
func encodeHeader(recipients []string) ([]byte, error) {
	if len(recipients) == 0 || len(recipients) > maxRecipients {
		return nil, fmt.Errorf("%d encryption recipients: want 1 to %d", len(recipients), maxRecipients)
	}
	b := append([]byte(encMagic), byte(len(recipients)))
	for _, r := range recipients {
		if !validRecipient(r) {
			return nil, fmt.Errorf("encryption recipient %q: want 1 to %d printable characters", r, maxRecipientLen)
		}
		b = append(b, byte(len(r)))
		b = append(b, r...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b)), nil
}

// errShortHeader means the bytes end inside the header.
var errShortHeader = errors.New("truncated encryption header")

// parseHeader parses the header at the start of b and returns its recipients and
// its length.
func parseHeader(b []byte) ([]string, int, error) {
	if len(b) < len(encMagic)+1 {
		return nil, 0, errShortHeader
	}
	if string(b[:len(encMagic)]) != encMagic {
		return nil, 0, errors.New("not an encryption header")
	}
	n := int(b[len(encMagic)])
	if n == 0 || n > maxRecipients {
		return nil, 0, fmt.Errorf("encryption header names %d recipients", n)
	}
	off := len(encMagic) + 1
	recipients := make([]string, 0, n)
	for range n {
		if off >= len(b) {
			return nil, 0, errShortHeader
		}
		l := int(b[off])
		off++
		if off+l > len(b) {
			return nil, 0, errShortHeader
		}
		r := string(b[off : off+l])
		if !validRecipient(r) {
			return nil, 0, fmt.Errorf("encryption header holds an invalid recipient %q", r)
		}
		recipients = append(recipients, r)
		off += l
	}
	if off+4 > len(b) {
		return nil, 0, errShortHeader
	}
	if binary.LittleEndian.Uint32(b[off:]) != crc32.ChecksumIEEE(b[:off]) {
		return nil, 0, errors.New("encryption header checksum mismatch")
	}
	return recipients, off + 4, nil
}

func validRecipient(r string) bool {
	if r == "" || len(r) > maxRecipientLen {
		return false
	}
	for i := 0; i < len(r); i++ {
		if r[i] < 0x21 || r[i] > 0x7e {
			return false
		}
	}
	return true
}

// After the encrypted stream, an encrypted object ends with a fixed-size tag block:
//
//	"HSTMTAG1"     magic
//	signer         32 bytes   the ed25519 public key that signed the object (zero: unsigned)
//	tag            32 bytes   SHA-256 of the signature (zero: unsigned)
//
// The tag lets a writer that holds the signing key but no identity (wal push) tell
// whether a stored object has the content it offers: ed25519 signatures are
// deterministic, so it signs its own copy and compares tags, without decrypting and
// without revealing a hash of the plaintext to anyone who lacks the signing key.
const (
	tagMagic     = "HSTMTAG1"
	tagBlockSize = len(tagMagic) + 32 + 32
	tagDomain    = "hestami content tag v1\x00"
)

func contentTag(sig []byte) []byte {
	h := sha256.New()
	h.Write([]byte(tagDomain))
	h.Write(sig)
	return h.Sum(nil)
}

func encodeTagBlock(signer, sig []byte) []byte {
	b := make([]byte, tagBlockSize)
	copy(b, tagMagic)
	if len(sig) > 0 {
		copy(b[len(tagMagic):], signer)
		copy(b[len(tagMagic)+32:], contentTag(sig))
	}
	return b
}

func decodeTagBlock(b []byte) (signer, tag []byte, ok bool) {
	if len(b) != tagBlockSize || string(b[:len(tagMagic)]) != tagMagic {
		return nil, nil, false
	}
	return b[len(tagMagic) : len(tagMagic)+32], b[len(tagMagic)+32:], true
}
