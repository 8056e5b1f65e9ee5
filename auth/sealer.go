package auth

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// SealerKeySize is the size of a Sealer key: AES-256.
const SealerKeySize = 32

// sealVersion is the first byte of every sealed envelope. The envelope is
//
//	version (1) | len(keyID) (1) | keyID | nonce (12) | AES-256-GCM ciphertext and tag
//
// and the GCM additional data is the header (version, key id) followed by the
// caller's additional data, so neither can be swapped without Open noticing.
const sealVersion = 1

// maxKeyID is the longest key id (its length is one byte of the envelope).
const maxKeyID = 64

var (
	// ErrSealUnknownKey is returned by Open when the data was sealed with a key
	// that is not in the key ring: the key was removed from the keys file too
	// early (put it back, it is still needed until every secret is resealed).
	ErrSealUnknownKey = errors.New("sealed with a key that is not in the key ring")
	// ErrSealBroken is returned by Open when the data does not open with its key:
	// the key under that id is not the one it was sealed with, the data was
	// changed, or it was sealed for another owner (copied from another row).
	ErrSealBroken = errors.New("sealed data does not open: wrong key, tampered data, or sealed for another owner")
	// ErrSealMalformed is returned by Open for data that is not a sealed envelope.
	ErrSealMalformed = errors.New("not sealed data (unknown format)")
)

// Sealer encrypts secrets at rest (TOTP secrets) with AES-256-GCM under a key
// ring: Seal always uses the primary key; Open uses the key whose id the
// envelope names, so the primary can be rotated while older keys still open
// what they sealed (NeedsReseal tells when to seal again under the primary).
type Sealer struct {
	aeads   map[string]cipher.AEAD
	primary string
}

// NewSealer returns a Sealer over keys (key id → 32-byte key) that seals with
// keys[primary]. Key ids are 1 to 64 bytes without ':' or white space.
func NewSealer(keys map[string][]byte, primary string) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("new sealer: no keys: give at least one key (id:base64 of 32 random bytes)")
	}
	if _, ok := keys[primary]; !ok {
		return nil, fmt.Errorf("new sealer: the primary key %q is not among the keys", primary)
	}
	s := &Sealer{aeads: make(map[string]cipher.AEAD, len(keys)), primary: primary}
	for id, key := range keys {
		if err := checkKeyID(id); err != nil {
			return nil, fmt.Errorf("new sealer: %w", err)
		}
		if len(key) != SealerKeySize {
			return nil, fmt.Errorf("new sealer: key %q is %d bytes; an AES-256 key is %d (base64 of 32 random bytes: openssl rand -base64 32)", id, len(key), SealerKeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("new sealer: key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("new sealer: key %q: %w", id, err)
		}
		s.aeads[id] = aead
	}
	return s, nil
}

func checkKeyID(id string) error {
	if id == "" || len(id) > maxKeyID {
		return fmt.Errorf("key id %q: must be 1 to %d characters", id, maxKeyID)
	}
	if strings.ContainsAny(id, ": \t\r\n") {
		return fmt.Errorf("key id %q: must not contain ':' or white space", id)
	}
	return nil
}

// Primary is the id of the key Seal uses.
func (s *Sealer) Primary() string { return s.primary }

// KeyIDs lists the ids of the key ring, sorted.
func (s *Sealer) KeyIDs() []string {
	ids := make([]string, 0, len(s.aeads))
	for id := range s.aeads {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func header(keyID string) []byte {
	h := make([]byte, 0, 2+len(keyID))
	h = append(h, sealVersion, byte(len(keyID)))
	return append(h, keyID...)
}

func additional(hdr, additionalData []byte) []byte {
	ad := make([]byte, 0, len(hdr)+len(additionalData))
	return append(append(ad, hdr...), additionalData...)
}

// Seal encrypts plaintext with the primary key and a random nonce, bound to
// additionalData (who owns the secret: Open must be given the same bytes), and
// returns the envelope, which names the key.
func (s *Sealer) Seal(plaintext, additionalData []byte) ([]byte, error) {
	aead := s.aeads[s.primary]
	hdr := header(s.primary)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: random nonce: %w", err)
	}
	out := make([]byte, 0, len(hdr)+len(nonce)+len(plaintext)+aead.Overhead())
	out = append(append(out, hdr...), nonce...)
	return aead.Seal(out, nonce, plaintext, additional(hdr, additionalData)), nil
}

// Open decrypts an envelope made by Seal with the same additionalData and
// returns the plaintext and the id of the key that opened it. Errors wrap
// ErrSealMalformed, ErrSealUnknownKey or ErrSealBroken.
func (s *Sealer) Open(sealed, additionalData []byte) (plaintext []byte, keyID string, err error) {
	if len(sealed) < 2 || sealed[0] != sealVersion {
		return nil, "", fmt.Errorf("open: %w", ErrSealMalformed)
	}
	n := int(sealed[1])
	if n == 0 || len(sealed) < 2+n {
		return nil, "", fmt.Errorf("open: %w", ErrSealMalformed)
	}
	keyID = string(sealed[2 : 2+n])
	aead, ok := s.aeads[keyID]
	if !ok {
		return nil, keyID, fmt.Errorf("open: key %q: %w (keys: %s): put the key back in the keys file", keyID, ErrSealUnknownKey, strings.Join(s.KeyIDs(), ", "))
	}
	hdr, rest := sealed[:2+n], sealed[2+n:]
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return nil, keyID, fmt.Errorf("open: %w (too short)", ErrSealMalformed)
	}
	nonce, ct := rest[:aead.NonceSize()], rest[aead.NonceSize():]
	plaintext, err = aead.Open(nil, nonce, ct, additional(hdr, additionalData))
	if err != nil {
		return nil, keyID, fmt.Errorf("open with key %q: %w", keyID, ErrSealBroken)
	}
	return plaintext, keyID, nil
}

// NeedsReseal reports whether data sealed with keyID should be sealed again
// under the primary key (after a rotation).
func (s *Sealer) NeedsReseal(keyID string) bool { return keyID != s.primary }

// ParseSealerKeys parses the lines of a keys file (HESTAMI_MFA_KEYS_FILE): one
// key a line as `id:base64` (standard base64 of 32 random bytes, padded or
// not), blank lines and lines starting with '#' ignored. The first key is the
// primary: to rotate, put a new key first and keep the old ones below it until
// every secret was resealed. Errors name the line, never the key.
func ParseSealerKeys(lines []string) (keys map[string][]byte, primary string, err error) {
	keys = map[string][]byte{}
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, b64, ok := strings.Cut(line, ":")
		if !ok {
			return nil, "", fmt.Errorf("keys line %d: want id:base64-key (e.g. k2025:$(openssl rand -base64 32))", i+1)
		}
		id, b64 = strings.TrimSpace(id), strings.TrimSpace(b64)
		if err := checkKeyID(id); err != nil {
			return nil, "", fmt.Errorf("keys line %d: %w", i+1, err)
		}
		if _, dup := keys[id]; dup {
			return nil, "", fmt.Errorf("keys line %d: key id %q appears twice", i+1, id)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			key, err = base64.RawStdEncoding.DecodeString(b64)
		}
		if err != nil {
			return nil, "", fmt.Errorf("keys line %d (key %q): not base64", i+1, id)
		}
		if len(key) != SealerKeySize {
			return nil, "", fmt.Errorf("keys line %d (key %q): %d bytes, want %d (openssl rand -base64 32)", i+1, id, len(key), SealerKeySize)
		}
		for _, other := range keys {
			if bytes.Equal(other, key) {
				return nil, "", fmt.Errorf("keys line %d (key %q): the same key as another id", i+1, id)
			}
		}
		keys[id] = key
		if primary == "" {
			primary = id
		}
	}
	if primary == "" {
		return nil, "", errors.New("keys: no key found: add a line id:base64-key (e.g. k1:$(openssl rand -base64 32))")
	}
	return keys, primary, nil
}
