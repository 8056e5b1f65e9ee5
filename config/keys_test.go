package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hestami/hestami/config"
)

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "hestami.yaml")
	os.WriteFile(cfgPath, []byte(`
encryption:
  recipients: [age1fromfile]
signing:
  public_keys: [hestami-sign-pub:fromfile]
`), 0o600)
	keys := filepath.Join(dir, "trusted")
	os.WriteFile(keys, []byte("# signing keys\nhestami-sign-pub:one\nhestami-sign-pub:two, hestami-sign-pub:three\n"), 0o600)
	// The identity and signing key files need not exist to load: only what decrypts
	// or signs reads them.
	c, err := config.Load(cfgPath, env(map[string]string{
		"HESTAMI_ENCRYPTION_RECIPIENTS":    "age1one, age1two,,",
		"HESTAMI_ENCRYPTION_IDENTITY_FILE": "/run/secrets/missing-identity",
		"HESTAMI_SIGNING_KEY_FILE":         "/run/secrets/missing-signing-key",
		"HESTAMI_SIGNING_PUBLIC_KEYS_FILE": keys,
		"HESTAMI_SIGNING_ALLOW_UNSIGNED":   "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Encryption.Recipients, " "); got != "age1one age1two" {
		t.Errorf("encryption.recipients = %q", got)
	}
	if got := strings.Join(c.Signing.PublicKeys, " "); got != "hestami-sign-pub:one hestami-sign-pub:two hestami-sign-pub:three" {
		t.Errorf("signing.public_keys = %q", got)
	}
	if c.Encryption.IdentityFile != "/run/secrets/missing-identity" || c.Signing.KeyFile != "/run/secrets/missing-signing-key" || !c.Signing.AllowUnsigned {
		t.Errorf("keys = %+v %+v", c.Encryption, c.Signing)
	}

	_, err = config.Load("", env(map[string]string{
		"HESTAMI_ENCRYPTION_RECIPIENTS":  "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQ",
		"HESTAMI_SIGNING_PUBLIC_KEYS":    "hestami-sign-key:private",
		"HESTAMI_SIGNING_ALLOW_UNSIGNED": "maybe",
	}))
	if err == nil || !strings.Contains(err.Error(), "HESTAMI_SIGNING_ALLOW_UNSIGNED") {
		t.Fatalf("Load with a bad boolean = %v", err)
	}
	_, err = config.Load("", env(map[string]string{
		"HESTAMI_ENCRYPTION_RECIPIENTS": "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQ",
		"HESTAMI_SIGNING_PUBLIC_KEYS":   "hestami-sign-key:private",
	}))
	for _, want := range []string{"encryption.recipients[0]", "signing.public_keys[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load with misplaced private keys = %v, want a problem at %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "QQQQQQQQQQQQQQQQ") {
		t.Errorf("the error echoes a private key: %v", err)
	}
}
