package auth_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
)

func sealKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, auth.SealerKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func testSealer(t *testing.T, keys map[string][]byte, primary string) *auth.Sealer {
	t.Helper()
	s, err := auth.NewSealer(keys, primary)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealerRoundTrip(t *testing.T) {
	t.Parallel()
	s := testSealer(t, map[string][]byte{"k1": sealKey(t)}, "k1")
	ad := []byte("user-1/factor-1")
	for _, plain := range [][]byte{[]byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"), {}, bytes.Repeat([]byte{0}, 1000)} {
		sealed, err := s.Seal(plain, ad)
		if err != nil {
			t.Fatal(err)
		}
		if len(plain) > 4 && bytes.Contains(sealed, plain) {
			t.Error("the sealed envelope contains the plaintext")
		}
		again, _ := s.Seal(plain, ad)
		if bytes.Equal(sealed, again) {
			t.Error("sealing twice gave the same bytes: the nonce is not random")
		}
		got, keyID, err := s.Open(sealed, ad)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, plain) || keyID != "k1" {
			t.Errorf("Open = %q, %q; want %q, k1", got, keyID, plain)
		}
		if s.NeedsReseal(keyID) {
			t.Error("NeedsReseal of the primary key = true")
		}
	}
}

func TestSealerRefuses(t *testing.T) {
	t.Parallel()
	k1 := sealKey(t)
	s := testSealer(t, map[string][]byte{"k1": k1}, "k1")
	ad := []byte("user-1/factor-1")
	sealed, err := s.Seal([]byte("secret"), ad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	for _, tc := range []struct {
		name   string
		sealer *auth.Sealer
		sealed []byte
		ad     []byte
		want   error
	}{
		{"wrong key under the same id", testSealer(t, map[string][]byte{"k1": sealKey(t)}, "k1"), sealed, ad, auth.ErrSealBroken},
		{"key removed from the ring", testSealer(t, map[string][]byte{"k2": k1}, "k2"), sealed, ad, auth.ErrSealUnknownKey},
		{"tampered ciphertext byte", s, flip(len(sealed) - 20), ad, auth.ErrSealBroken},
		{"tampered tag byte", s, flip(len(sealed) - 1), ad, auth.ErrSealBroken},
		{"tampered nonce byte", s, flip(4 + 1), ad, auth.ErrSealBroken},
		{"another owner (copied to another row)", s, sealed, []byte("user-2/factor-1"), auth.ErrSealBroken},
		{"no additional data", s, sealed, nil, auth.ErrSealBroken},
		{"truncated", s, sealed[:len(sealed)-1], ad, auth.ErrSealBroken},
		{"too short", s, sealed[:10], ad, auth.ErrSealMalformed},
		{"empty", s, nil, ad, auth.ErrSealMalformed},
		{"plaintext (never sealed)", s, []byte("JBSWY3DPEHPK3PXP"), ad, auth.ErrSealMalformed},
		{"unknown version", s, append([]byte{9}, sealed[1:]...), ad, auth.ErrSealMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := tc.sealer.Open(tc.sealed, tc.ad)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %q, %v; want %v", got, err, tc.want)
			}
			if got != nil {
				t.Errorf("Open returned plaintext %q with its error", got)
			}
		})
	}
	// The id byte and the key id itself are authenticated too: a key id
	// rewritten to another key of the ring does not open.
	two := testSealer(t, map[string][]byte{"k1": k1, "k2": k1}, "k1")
	renamed := bytes.Clone(sealed)
	copy(renamed[2:4], "k2")
	if _, _, err := two.Open(renamed, ad); !errors.Is(err, auth.ErrSealBroken) {
		t.Errorf("Open of an envelope whose key id was rewritten: %v, want ErrSealBroken", err)
	}
}

func TestSealerErrorsSayWhatToDo(t *testing.T) {
	t.Parallel()
	old := testSealer(t, map[string][]byte{"old": sealKey(t)}, "old")
	sealed, _ := old.Seal([]byte("secret"), nil)
	_, keyID, err := testSealer(t, map[string][]byte{"new": sealKey(t)}, "new").Open(sealed, nil)
	if keyID != "old" || err == nil || !strings.Contains(err.Error(), `key "old"`) || !strings.Contains(err.Error(), "put the key back") {
		t.Errorf("Open with the key gone: %q, %v; want an error naming key old and what to do", keyID, err)
	}
}

func TestSealerRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := sealKey(t), sealKey(t)
	before := testSealer(t, map[string][]byte{"k1": k1}, "k1")
	ad := []byte("u/f")
	sealed, err := before.Seal([]byte("secret"), ad)
	if err != nil {
		t.Fatal(err)
	}
	after := testSealer(t, map[string][]byte{"k1": k1, "k2": k2}, "k2")
	got, keyID, err := after.Open(sealed, ad)
	if err != nil || string(got) != "secret" || keyID != "k1" {
		t.Fatalf("Open of a secret under the old key = %q, %q, %v; want secret, k1", got, keyID, err)
	}
	if !after.NeedsReseal(keyID) {
		t.Error("NeedsReseal(k1) = false after k2 became the primary")
	}
	resealed, err := after.Seal(got, ad)
	if err != nil {
		t.Fatal(err)
	}
	if _, keyID, err := after.Open(resealed, ad); err != nil || keyID != "k2" || after.NeedsReseal(keyID) {
		t.Errorf("resealed secret opens with %q, %v; want k2, not needing reseal", keyID, err)
	}
	// Once every secret is resealed the old key can go.
	onlyNew := testSealer(t, map[string][]byte{"k2": k2}, "k2")
	if _, _, err := onlyNew.Open(resealed, ad); err != nil {
		t.Errorf("resealed secret without the old key: %v", err)
	}
	if _, _, err := onlyNew.Open(sealed, ad); !errors.Is(err, auth.ErrSealUnknownKey) {
		t.Errorf("old secret without the old key: %v, want ErrSealUnknownKey", err)
	}
}

func TestNewSealerRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		keys    map[string][]byte
		primary string
		want    string
	}{
		{"no keys", nil, "k1", "no keys"},
		{"primary missing", map[string][]byte{"k1": sealKey(t)}, "k2", `primary key "k2"`},
		{"short key", map[string][]byte{"k1": make([]byte, 16)}, "k1", "16 bytes"},
		{"id with colon", map[string][]byte{"a:b": sealKey(t)}, "a:b", "':'"},
		{"empty id", map[string][]byte{"": sealKey(t)}, "", "1 to 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.NewSealer(tc.keys, tc.primary)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewSealer = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseSealerKeys(t *testing.T) {
	t.Parallel()
	k1, k2 := sealKey(t), sealKey(t)
	b64 := base64.StdEncoding.EncodeToString
	keys, primary, err := auth.ParseSealerKeys([]string{
		"# MFA keys: the first is the primary",
		"",
		"k2026: " + b64(k2),
		"  k2025:" + base64.RawStdEncoding.EncodeToString(k1) + "  ",
	})
	if err != nil {
		t.Fatal(err)
	}
	if primary != "k2026" || len(keys) != 2 || !bytes.Equal(keys["k2026"], k2) || !bytes.Equal(keys["k2025"], k1) {
		t.Errorf("ParseSealerKeys = %d keys, primary %q; want k2026 and k2025, primary k2026", len(keys), primary)
	}
	if _, err := auth.NewSealer(keys, primary); err != nil {
		t.Errorf("NewSealer of parsed keys: %v", err)
	}

	secret := b64(k1)
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"empty", []string{"", "# nothing"}, "no key"},
		{"no id", []string{secret}, "line 1: want id:base64-key"},
		{"not base64", []string{"k1:not base64!"}, "line 1 (key \"k1\"): not base64"},
		{"short key", []string{"k1:" + b64(make([]byte, 16))}, "16 bytes, want 32"},
		{"duplicate id", []string{"k1:" + secret, "k1:" + b64(k2)}, "line 2: key id \"k1\" appears twice"},
		{"same key twice", []string{"k1:" + secret, "k2:" + secret}, "line 2 (key \"k2\"): the same key"},
		{"space in id", []string{"my key:" + secret}, "white space"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := auth.ParseSealerKeys(tc.lines)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseSealerKeys = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:12]) {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
}
