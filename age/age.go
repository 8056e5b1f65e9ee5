// Package age encrypts repository objects with age (filippo.io/age) X25519 keys: the
// backup.Encrypter and backup.Decrypter of the product, and key generation.
package age

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	fage "filippo.io/age"

	"github.com/hestami/hestami/backup"
)

// Encrypter encrypts to a set of X25519 recipients: several, so that keys can be
// rotated and a break-glass key kept offline.
type Encrypter struct {
	recipients []fage.Recipient
	names      []string
}

var _ backup.Encrypter = (*Encrypter)(nil)

// NewEncrypter parses age X25519 public keys ("age1...").
func NewEncrypter(recipients []string) (*Encrypter, error) {
	e := &Encrypter{}
	var errs []error
	seen := map[string]bool{}
	for _, s := range recipients {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		r, err := ParseRecipient(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[r.String()] {
			continue
		}
		seen[r.String()] = true
		e.recipients = append(e.recipients, r)
		e.names = append(e.names, r.String())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(e.recipients) == 0 {
		return nil, errors.New("no encryption recipients: give at least one age public key (age1..., see hestami keys generate)")
	}
	return e, nil
}

// ParseRecipient parses an age X25519 public key.
func ParseRecipient(s string) (*fage.X25519Recipient, error) {
	if strings.HasPrefix(s, "AGE-SECRET-KEY-") {
		// Never echo it: it is a private key.
		return nil, errors.New("an age private key (AGE-SECRET-KEY-...) was given as a recipient: give its public key (age1...), and keep the private key off the pushing hosts")
	}
	r, err := fage.ParseX25519Recipient(s)
	if err != nil {
		return nil, fmt.Errorf("encryption recipient %q is not an age X25519 public key (age1..., see hestami keys generate): %v", s, err)
	}
	return r, nil
}

// Recipients implements backup.Encrypter.
func (e *Encrypter) Recipients() []string { return e.names }

// Encrypt implements backup.Encrypter.
func (e *Encrypter) Encrypt(w io.Writer) (io.WriteCloser, error) {
	return fage.Encrypt(w, e.recipients...)
}

// Decrypter decrypts with age identities read from an identity file (the format
// age-keygen and hestami keys generate write), when first needed: commands that
// never decrypt (wal push) do not need the file.
type Decrypter struct {
	load func() ([]byte, error)
	what string

	once  sync.Once
	ids   []fage.Identity
	names []string
	err   error
}

var _ backup.Decrypter = (*Decrypter)(nil)

// IdentityFile returns a Decrypter reading its identities from the file at path.
func IdentityFile(path string) *Decrypter {
	return &Decrypter{load: func() ([]byte, error) { return os.ReadFile(path) }, what: "identity file " + path}
}

// Identities returns a Decrypter for identities given as text.
func Identities(text string) *Decrypter {
	return &Decrypter{load: func() ([]byte, error) { return []byte(text), nil }, what: "HESTAMI_ENCRYPTION_IDENTITY"}
}

func (d *Decrypter) init() error {
	d.once.Do(func() {
		b, err := d.load()
		if err != nil {
			d.err = fmt.Errorf("read the %s: %w", d.what, err)
			return
		}
		ids, err := fage.ParseIdentities(strings.NewReader(string(b)))
		if err != nil {
			d.err = fmt.Errorf("%s: %v (want lines AGE-SECRET-KEY-1..., as hestami keys generate writes)", d.what, err)
			return
		}
		for _, id := range ids {
			switch id := id.(type) {
			case *fage.X25519Identity:
				d.names = append(d.names, id.Recipient().String())
			case *fage.HybridIdentity:
				d.names = append(d.names, id.Recipient().String())
			default:
				continue
			}
			d.ids = append(d.ids, id)
		}
	})
	return d.err
}

// Recipients implements backup.Decrypter: the public keys of the identities.
func (d *Decrypter) Recipients() ([]string, error) {
	if err := d.init(); err != nil {
		return nil, err
	}
	return d.names, nil
}

// Decrypt implements backup.Decrypter.
func (d *Decrypter) Decrypt(r io.Reader) (io.Reader, error) {
	if err := d.init(); err != nil {
		return nil, err
	}
	pr, err := fage.Decrypt(r, d.ids...)
	var nm *fage.NoIdentityMatchError
	if errors.As(err, &nm) {
		return nil, fmt.Errorf("%w: %v", backup.ErrWrongKey, err)
	}
	return pr, err
}

// KeyPair is a new age identity and its recipient.
type KeyPair struct {
	Identity  string `json:"private_key"` // AGE-SECRET-KEY-1...
	Recipient string `json:"public_key"`  // age1...
}

// Generate returns a new X25519 key pair.
func Generate() (KeyPair, error) {
	id, err := fage.GenerateX25519Identity()
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{Identity: id.String(), Recipient: id.Recipient().String()}, nil
}

// File returns the identity file's content, as age-keygen writes it: comments with
// the creation time and the public key, then the private key.
func (k KeyPair) File(created time.Time) string {
	return fmt.Sprintf("# created: %s\n# public key: %s\n%s\n", created.UTC().Format(time.RFC3339), k.Recipient, k.Identity)
}
