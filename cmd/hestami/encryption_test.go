package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/age"
	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/file"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/zstd"
)

// newKey runs keys generate [--signing] --json.
func newKey(t *testing.T, signing bool) generatedKey {
	t.Helper()
	args := []string{"keys", "generate", "--json"}
	if signing {
		args = append(args, "--signing")
	}
	var k generatedKey
	if err := json.Unmarshal([]byte(mustRun(t, "", args...)), &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// writeSecret writes a key file the cluster user (restore_command, archive_command)
// can read and nobody else.
func writeSecret(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := postgres.ClusterUser()
	if err != nil {
		t.Fatal(err)
	}
	if err := postgres.Chown(p, u); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyCLI runs the built binary's backup verify latest --json and returns the
// report and the exit code.
func verifyCLI(t *testing.T, bin, config string) (verifyOutput, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, "--config", config, "backup", "verify", "latest", "--json")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("backup verify latest: exit %d\n--- stdout\n%s--- stderr\n%s", code, out.String(), errb.String())
	var rep verifyOutput
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("backup verify --json printed no report: %v", err)
	}
	return rep, code
}

// TestEncryptedSignedRepository archives and backs up with encryption and signing on
// (the pushing side holds the recipients and the signing key, never the identity),
// restores to a point in time with the identity, refuses to restore without it or
// with a wrong one, and verifies a backup until an object is damaged or forged.
func TestEncryptedSignedRepository(t *testing.T) {
	t.Parallel()
	id, wrong, sign := newKey(t, false), newKey(t, false), newKey(t, true)
	keys := pgtest.Dir(t)
	identity := writeSecret(t, keys, "identity.key", id.PrivateKey)
	wrongIdentity := writeSecret(t, keys, "wrong.key", wrong.PrivateKey)
	signingKey := writeSecret(t, keys, "signing.key", sign.PrivateKey)

	pushYAML := fmt.Sprintf("encryption:\n  recipients: [%s]\nsigning:\n  key_file: %s\n  public_keys: [%s]\n", id.PublicKey, signingKey, sign.PublicKey)
	a := pgtest.NewArchivingConfig(t, nil, pushYAML)
	src := a.Cluster
	base, err := os.ReadFile(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	restoreConfig := func(name, identityFile string) string {
		yaml := fmt.Sprintf("encryption:\n  recipients: [%s]\n  identity_file: %s\nsigning:\n  public_keys: [%s]\n", id.PublicKey, identityFile, sign.PublicKey)
		p := filepath.Join(filepath.Dir(a.Config), name)
		if err := os.WriteFile(p, []byte(strings.Replace(string(base), pushYAML, yaml, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withID, withWrongID := restoreConfig("restore.yaml", identity), restoreConfig("wrong.yaml", wrongIdentity)

	pgtest.Exec(t, src, "postgres", "CREATE TABLE events (batch int NOT NULL, payload text)")
	pgtest.Exec(t, src, "postgres", "INSERT INTO events SELECT 0, repeat('secret payload ', 20) FROM generate_series(1, 1000)")
	backupID := pushPhysicalBackup(t, a.Config)
	pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (1, 'one')")
	var cut time.Time
	pgtest.QueryRow(t, src, "postgres", "SELECT clock_timestamp()").Scan(&cut)
	switchWAL(t, src, a.Repo)
	pgtest.Exec(t, src, "postgres", "INSERT INTO events VALUES (2, 'two')") // after the target
	switchWAL(t, src, a.Repo)

	m := showBackup(t, withID, backupID)
	startWAL := filepath.Join(a.Repo, filepath.FromSlash(backup.WALKey(mustWALName(t, m.StartWAL))))
	marker, err := os.ReadFile(filepath.Join(a.Repo, "hestami.json"))
	if err != nil || !strings.Contains(string(marker), `"encrypted": true`) {
		t.Errorf("repository marker does not record encryption: %s (%v)", marker, err)
	}
	raw, err := os.ReadFile(filepath.Join(a.Repo, filepath.FromSlash(backup.BackupKey(backupID, "base.tar"))))
	if err != nil || !bytes.HasPrefix(raw, []byte("HSTMENC1")) || bytes.Contains(raw, []byte("PG_VERSION")) {
		t.Errorf("base.tar is not stored encrypted (%v)", err)
	}

	t.Run("restore without the identity or with a wrong one", func(t *testing.T) {
		for _, tt := range []struct {
			name, config string
			want         []string
		}{
			{"no identity", a.Config, []string{id.PublicKey, "no identity is configured"}},
			{"wrong identity", withWrongID, []string{id.PublicKey, wrong.PublicKey}},
		} {
			r := pgtest.Prepare(t)
			_, err := runCLI(t, tt.config, "restore", "--to", r.DataDir, "--hestami-path", a.Bin, "--target-time", cut.Format(time.RFC3339Nano))
			if !errors.Is(err, backup.ErrWrongKey) {
				t.Fatalf("%s: restore = %v, want a key error", tt.name, err)
			}
			for _, w := range append(tt.want, "HESTAMI_ENCRYPTION_IDENTITY_FILE") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error does not mention %q: %v", tt.name, w, err)
				}
			}
			if entries, _ := os.ReadDir(r.DataDir); len(entries) != 0 {
				t.Errorf("%s: restore wrote %d entries into the target directory", tt.name, len(entries))
			}
			// restore_command with a wrong key: an error (not "not found"), and nothing written.
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			_, err = runCLI(t, tt.config, "wal", "fetch", m.StartWAL, dest)
			var ee *exitError
			if !errors.Is(err, backup.ErrWrongKey) || errors.As(err, &ee) {
				t.Errorf("%s: wal fetch = %v, want a key error with exit code 1", tt.name, err)
			}
			if entries, _ := os.ReadDir(filepath.Dir(dest)); len(entries) != 0 {
				t.Errorf("%s: wal fetch wrote %v", tt.name, entries)
			}
		}
	})

	t.Run("point-in-time restore with the identity", func(t *testing.T) {
		r := pgtest.Prepare(t)
		out := mustRun(t, withID, "restore", "--to", r.DataDir, "--hestami-path", a.Bin,
			"--target-time", cut.Format(time.RFC3339Nano), "--target-action", "promote")
		if !strings.Contains(out, "Restored backup "+backupID) || !strings.Contains(out, identity) {
			t.Errorf("restore output lacks the backup or the identity file's note:\n%s", out)
		}
		startRestored(t, r, nil)
		waitQuery(t, r, "SELECT NOT pg_is_in_recovery()")
		if got := batches(t, r); got != "0,1" {
			t.Errorf("restored batches %q, want 0,1", got)
		}
	})

	t.Run("backup verify", func(t *testing.T) {
		rep, code := verifyCLI(t, a.Bin, withID)
		if code != 0 || !rep.OK || rep.Backup != backupID || !rep.Recorded {
			t.Fatalf("verify of an intact backup: exit %d, %+v", code, rep)
		}
		kinds := map[string]int{}
		for _, o := range rep.Objects {
			kinds[o.Kind]++
			if o.Signature != backup.SignatureVerified || len(o.Recipients) != 1 || o.Recipients[0] != id.PublicKey {
				t.Errorf("%s: signature %q, recipients %v", o.Key, o.Signature, o.Recipients)
			}
		}
		if kinds[backup.KindManifest] != 1 || kinds[backup.KindFile] < 2 || kinds[backup.KindWAL] < 1 {
			t.Errorf("verified objects by kind: %v", kinds)
		}

		orig, err := os.ReadFile(startWAL)
		if err != nil {
			t.Fatal(err)
		}
		key := backup.WALKey(mustWALName(t, m.StartWAL))
		damaged := bytes.Clone(orig)
		damaged[len(damaged)/2] ^= 0x10
		if err := os.WriteFile(startWAL, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		rep, code = verifyCLI(t, a.Bin, withID)
		assertFailed(t, rep, code, key, backup.ObjectCorrupt)

		// Replaced by someone who knows the public recipient but not the signing key.
		st, err := file.New(a.Repo)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := age.NewEncrypter([]string{id.PublicKey})
		if err != nil {
			t.Fatal(err)
		}
		forger := &backup.Repository{Storage: st, Codec: zstd.Codec{}, Encrypter: enc}
		if _, err := forger.PutObject(t.Context(), key, bytes.NewReader(orig[:len(orig)/2]), false, 1); err != nil {
			t.Fatal(err)
		}
		rep, code = verifyCLI(t, a.Bin, withID)
		assertFailed(t, rep, code, key, backup.ObjectUntrusted)
		if err := os.WriteFile(startWAL, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		if rep, code = verifyCLI(t, a.Bin, withID); code != 0 || !rep.OK {
			t.Fatalf("verify after repairing: exit %d", code)
		}
	})
}

func assertFailed(t *testing.T, rep verifyOutput, code int, key, status string) {
	t.Helper()
	fails := rep.Failures()
	if code != 1 || rep.OK || len(fails) != 1 || fails[0].Key != key || fails[0].Status != status {
		t.Fatalf("verify: exit %d, failures %+v; want exit 1 and %s %s", code, fails, key, status)
	}
}

func mustWALName(t *testing.T, name string) backup.WALFile {
	t.Helper()
	f, err := backup.ParseWALName(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestKeysGenerate(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args   []string
		prefix string
		parse  func([]byte) (string, error)
	}{
		{nil, "AGE-SECRET-KEY-1", func(b []byte) (string, error) {
			d := age.Identities(string(b))
			rs, err := d.Recipients()
			if err != nil {
				return "", err
			}
			return rs[0], nil
		}},
		{[]string{"--signing"}, backup.PrivateKeyPrefix, func(b []byte) (string, error) {
			k, err := backup.ParseSigningKey(b)
			if err != nil {
				return "", err
			}
			return k.Public(), nil
		}},
	} {
		path := filepath.Join(dir, fmt.Sprintf("key%d", len(tt.args)))
		mustRun(t, "", append([]string{"keys", "generate", "--output", path}, tt.args...)...)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
		}
		pub, err := tt.parse(b)
		if err != nil || !strings.Contains(string(b), "# public key: "+pub+"\n") || !strings.Contains(string(b), "\n"+tt.prefix) {
			t.Errorf("key file %q: public key %q, %v", b, pub, err)
		}
		if _, err := runCLI(t, "", append([]string{"keys", "generate", "--output", path}, tt.args...)...); err == nil {
			t.Error("keys generate overwrote an existing key file")
		}
		if again, _ := os.ReadFile(path); !bytes.Equal(again, b) {
			t.Error("the existing key file changed")
		}
	}
}
