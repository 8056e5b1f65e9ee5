package backup

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Signer signs stored objects with an ed25519 key, separate from the encryption keys:
// pushing needs it, restoring only its public key.
type Signer interface {
	// PublicKey returns the signer's public key; an error when the key cannot be
	// loaded (an unreadable key file). Writers call it before storing anything.
	PublicKey() (ed25519.PublicKey, error)
	// Sign returns the signature of message. It must be deterministic, as ed25519
	// is: wal push compares content tags derived from signatures.
	Sign(message []byte) ([]byte, error)
}

// Verifier decides whether a signed object comes from a trusted source. TrustedKeys
// is the product's.
type Verifier interface {
	// Verify returns nil when sig is signer's valid signature of message and signer
	// is trusted; an error wrapping ErrUntrustedKey when signer is not trusted, or
	// ErrBadSignature when the signature does not match.
	Verify(signer ed25519.PublicKey, message, sig []byte) error
}

// Signature verification errors.
var (
	// ErrUntrusted is matched (errors.Is) by every *SignatureError.
	ErrUntrusted = errors.New("object not signed by a trusted key")
	// ErrUntrustedKey: the signer is not a trusted key.
	ErrUntrustedKey = errors.New("signed by a key that is not trusted")
	// ErrBadSignature: the signature does not match the object.
	ErrBadSignature = errors.New("signature does not match")
)

// SignatureError reports a stored object that fails signature verification.
type SignatureError struct {
	Key string
	// Signer is the public key that signed the object, empty when it is unsigned.
	Signer string
	// Err is ErrUntrustedKey or ErrBadSignature; nil for an unsigned object.
	Err error
}

func (e *SignatureError) Error() string {
	switch {
	case e.Signer == "":
		return fmt.Sprintf("stored object %s is not signed, and signatures are verified (HESTAMI_SIGNING_PUBLIC_KEYS): it was stored without a signing key, "+
			"or replaced by someone without it. If this repository is known to hold unsigned objects (stored before signing was set up), "+
			"--allow-unsigned (signing.allow_unsigned) accepts them", e.Key)
	case errors.Is(e.Err, ErrUntrustedKey):
		return fmt.Sprintf("stored object %s is signed by %s, which is not among the trusted keys (HESTAMI_SIGNING_PUBLIC_KEYS): "+
			"add it there if it is one of your signing keys (after a rotation); otherwise the object did not come from your servers: do not use it", e.Key, e.Signer)
	}
	return fmt.Sprintf("stored object %s has an invalid signature by %s: it was altered, or moved here from another name; "+
		"do not use it: restore another backup, or from a secondary copy", e.Key, e.Signer)
}

// Is lets errors.Is(err, ErrUntrusted) match.
func (e *SignatureError) Is(target error) bool { return target == ErrUntrusted }

// Unwrap returns the verifier's error.
func (e *SignatureError) Unwrap() error { return e.Err }

// signatureDomain separates object signatures from anything else the key might sign.
const signatureDomain = "hestami object signature v1\x00"

// signatureMessage is what an object's signature covers: its key (so that it cannot
// be moved to another name), the size and the SHA-256 of its content.
func signatureMessage(key string, size int64, sum []byte) []byte {
	b := make([]byte, 0, len(signatureDomain)+4+len(key)+8+len(sum))
	b = append(b, signatureDomain...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(key)))
	b = append(b, key...)
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	return append(b, sum...)
}

// The text forms of signing keys: a prefix and the 32 key bytes (the private key's
// seed) in unpadded base64url.
const (
	PublicKeyPrefix  = "hestami-sign-pub:"
	PrivateKeyPrefix = "hestami-sign-key:"
)

// FormatPublicKey returns the text form of an ed25519 public key.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return PublicKeyPrefix + base64.RawURLEncoding.EncodeToString(pub)
}

// ParsePublicKey parses the text form of a signing public key.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	enc, ok := strings.CutPrefix(s, PublicKeyPrefix)
	if !ok {
		if strings.HasPrefix(s, PrivateKeyPrefix) {
			return nil, errors.New("this is a private signing key, not a public one: give the public key (hestami-sign-pub:...) and keep the private key on the pushing hosts only")
		}
		return nil, fmt.Errorf("%q is not a signing public key: want %s followed by 43 characters (see hestami keys generate --signing)", s, PublicKeyPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%q is not a signing public key: the part after %s must be 32 bytes in base64url", s, PublicKeyPrefix)
	}
	return ed25519.PublicKey(b), nil
}

// TrustedKeys is a Verifier trusting signatures by any of its keys.
type TrustedKeys []ed25519.PublicKey

var _ Verifier = TrustedKeys(nil)

// ParseTrustedKeys parses signing public keys in text form.
func ParseTrustedKeys(keys []string) (TrustedKeys, error) {
	var out TrustedKeys
	var errs []error
	for _, k := range keys {
		if strings.TrimSpace(k) == "" {
			continue
		}
		pub, err := ParsePublicKey(k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, pub)
	}
	return out, errors.Join(errs...)
}

// Verify implements Verifier.
func (t TrustedKeys) Verify(signer ed25519.PublicKey, message, sig []byte) error {
	for _, k := range t {
		if k.Equal(signer) {
			if ed25519.Verify(k, message, sig) {
				return nil
			}
			return ErrBadSignature
		}
	}
	return ErrUntrustedKey
}

// SigningKey is an ed25519 private key; it implements Signer.
type SigningKey struct {
	priv ed25519.PrivateKey
}

var _ Signer = (*SigningKey)(nil)

// GenerateSigningKey returns a new random signing key.
func GenerateSigningKey() (*SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &SigningKey{priv: priv}, nil
}

// ParseSigningKey parses a signing key file: lines starting with # and blank lines
// are ignored, and exactly one line holds the private key in text form.
func ParseSigningKey(text []byte) (*SigningKey, error) {
	var key *SigningKey
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		enc, ok := strings.CutPrefix(line, PrivateKeyPrefix)
		if !ok {
			// Never echo the line: it may be key material in another format.
			return nil, fmt.Errorf("not a hestami signing key: want a line %s... (see hestami keys generate --signing)", PrivateKeyPrefix)
		}
		seed, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("damaged signing key: the part after %s must be 32 bytes in base64url", PrivateKeyPrefix)
		}
		if key != nil {
			return nil, errors.New("the signing key file holds more than one key: keep exactly one")
		}
		key = &SigningKey{priv: ed25519.NewKeyFromSeed(seed)}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, fmt.Errorf("no signing key found: want a line %s... (see hestami keys generate --signing)", PrivateKeyPrefix)
	}
	return key, nil
}

// PublicKey implements Signer.
func (k *SigningKey) PublicKey() (ed25519.PublicKey, error) {
	return k.priv.Public().(ed25519.PublicKey), nil
}

// Sign implements Signer.
func (k *SigningKey) Sign(message []byte) ([]byte, error) {
	return ed25519.Sign(k.priv, message), nil
}

// Public returns the text form of the key's public key.
func (k *SigningKey) Public() string {
	return FormatPublicKey(k.priv.Public().(ed25519.PublicKey))
}

// Encode returns the key file's content: comments with the creation time and the
// public key, then the private key.
func (k *SigningKey) Encode(created time.Time) []byte {
	return fmt.Appendf(nil, "# hestami signing key (ed25519), created: %s\n# public key: %s\n%s%s\n",
		created.UTC().Format(time.RFC3339), k.Public(), PrivateKeyPrefix, base64.RawURLEncoding.EncodeToString(k.priv.Seed()))
}

// SigningKeyFile is a Signer whose key is read from a file when first needed, so
// that commands that never sign do not need the file.
type SigningKeyFile struct {
	Path string

	once sync.Once
	key  *SigningKey
	err  error
}

var _ Signer = (*SigningKeyFile)(nil)

func (f *SigningKeyFile) load() (*SigningKey, error) {
	f.once.Do(func() {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			f.err = fmt.Errorf("read the signing key (HESTAMI_SIGNING_KEY_FILE): %w", err)
			return
		}
		if f.key, err = ParseSigningKey(b); err != nil {
			f.err = fmt.Errorf("signing key %s: %w", f.Path, err)
		}
	})
	return f.key, f.err
}

// PublicKey implements Signer.
func (f *SigningKeyFile) PublicKey() (ed25519.PublicKey, error) {
	k, err := f.load()
	if err != nil {
		return nil, err
	}
	return k.PublicKey()
}

// Sign implements Signer.
func (f *SigningKeyFile) Sign(message []byte) ([]byte, error) {
	k, err := f.load()
	if err != nil {
		return nil, err
	}
	return k.Sign(message)
}
