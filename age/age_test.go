package age_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/age"
	"github.com/hestami/hestami/backup"
)

func generate(t *testing.T) age.KeyPair {
	t.Helper()
	k, err := age.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEncryptDecrypt(t *testing.T) {
	a, b, c := generate(t), generate(t), generate(t)
	enc, err := age.NewEncrypter([]string{a.Recipient, " " + b.Recipient, a.Recipient, ""})
	if err != nil {
		t.Fatal(err)
	}
	if got := enc.Recipients(); len(got) != 2 || got[0] != a.Recipient || got[1] != b.Recipient {
		t.Fatalf("Recipients = %v, want %s and %s once each", got, a.Recipient, b.Recipient)
	}
	var buf bytes.Buffer
	w, err := enc.Encrypt(&buf)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "plaintext")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The identity file as keys generate writes it, with a second identity.
	path := filepath.Join(t.TempDir(), "identity.key")
	os.WriteFile(path, []byte(c.File(timeZero)+b.File(timeZero)), 0o600)
	dec := age.IdentityFile(path)
	held, err := dec.Recipients()
	if err != nil || len(held) != 2 || held[0] != c.Recipient || held[1] != b.Recipient {
		t.Fatalf("Recipients = %v, %v", held, err)
	}
	r, err := dec.Decrypt(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != "plaintext" {
		t.Fatalf("decrypted %q, %v", got, err)
	}
	_, err = age.Identities(c.Identity).Decrypt(bytes.NewReader(buf.Bytes()))
	if !errors.Is(err, backup.ErrWrongKey) {
		t.Fatalf("Decrypt with a wrong identity = %v, want ErrWrongKey", err)
	}
}

func TestBadKeys(t *testing.T) {
	k := generate(t)
	for _, rs := range [][]string{nil, {""}, {"age1notakey"}, {k.Identity}, {"ssh-ed25519 AAAA"}} {
		_, err := age.NewEncrypter(rs)
		if err == nil {
			t.Errorf("NewEncrypter(%q) succeeded", rs)
		} else if strings.Contains(err.Error(), k.Identity) {
			t.Errorf("error echoes a private key: %v", err)
		}
	}
	for name, d := range map[string]*age.Decrypter{
		"missing file": age.IdentityFile(filepath.Join(t.TempDir(), "nope")),
		"not a key":    age.Identities("hello\n"),
		"public key":   age.Identities(k.Recipient + "\n"),
	} {
		if _, err := d.Recipients(); err == nil {
			t.Errorf("%s: Recipients succeeded", name)
		}
		if _, err := d.Decrypt(strings.NewReader("")); err == nil || errors.Is(err, backup.ErrWrongKey) {
			t.Errorf("%s: Decrypt = %v, want the load error", name, err)
		}
	}
}

var timeZero = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
