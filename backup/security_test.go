package backup_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/age"
	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/file"
	"github.com/hestami/hestami/zstd"
)

// ageKey returns a new age key pair.
func ageKey(t *testing.T) age.KeyPair {
	t.Helper()
	k, err := age.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func encrypter(t *testing.T, keys ...age.KeyPair) *age.Encrypter {
	t.Helper()
	var rs []string
	for _, k := range keys {
		rs = append(rs, k.Recipient)
	}
	e, err := age.NewEncrypter(rs)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func decrypter(keys ...age.KeyPair) *age.Decrypter {
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.Identity)
	}
	return age.Identities(strings.Join(ids, "\n"))
}

func signingKey(t *testing.T) *backup.SigningKey {
	t.Helper()
	k, err := backup.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func trust(t *testing.T, keys ...*backup.SigningKey) backup.TrustedKeys {
	t.Helper()
	var pubs []string
	for _, k := range keys {
		pubs = append(pubs, k.Public())
	}
	tk, err := backup.ParseTrustedKeys(pubs)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// repoAt returns a repository over the file storage in dir, configured by opts.
func repoAt(t *testing.T, dir string, opts ...func(*backup.Repository)) *backup.Repository {
	t.Helper()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}}
	for _, o := range opts {
		o(r)
	}
	return r
}

func withEncrypter(e backup.Encrypter) func(*backup.Repository) {
	return func(r *backup.Repository) { r.Encrypter = e }
}
func withDecrypter(d backup.Decrypter) func(*backup.Repository) {
	return func(r *backup.Repository) { r.Decrypter = d }
}
func withSigner(s backup.Signer) func(*backup.Repository) {
	return func(r *backup.Repository) { r.Signer = s }
}
func withVerifier(v backup.Verifier) func(*backup.Repository) {
	return func(r *backup.Repository) { r.Verifier = v }
}

func TestSecureObjectRoundTrip(t *testing.T) {
	ak, sk := ageKey(t), signingKey(t)
	for _, enc := range []bool{false, true} {
		for _, sign := range []bool{false, true} {
			t.Run(fmt.Sprintf("encrypted=%v signed=%v", enc, sign), func(t *testing.T) {
				dir := t.TempDir()
				var opts []func(*backup.Repository)
				if enc {
					opts = append(opts, withEncrypter(encrypter(t, ak)), withDecrypter(decrypter(ak)))
				}
				if sign {
					opts = append(opts, withSigner(sk), withVerifier(trust(t, sk)))
				}
				repo := repoAt(t, dir, opts...)
				ctx := t.Context()
				for _, n := range []int{0, 1, 70_000, 3<<20 + 5} {
					data := make([]byte, n)
					rand.Read(data) // incompressible: stored as literals unless encrypted
					key := fmt.Sprintf("obj/%d", n)
					sum, err := repo.PutObject(ctx, key, bytes.NewReader(data), true, 2)
					if err != nil {
						t.Fatal(err)
					}
					raw, err := os.ReadFile(filepath.Join(dir, key))
					if err != nil {
						t.Fatal(err)
					}
					if sum.StoredSize != int64(len(raw)) {
						t.Errorf("%d bytes: StoredSize %d, stored %d", n, sum.StoredSize, len(raw))
					}
					got, err := repo.ReadObject(ctx, key)
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("%d bytes: read back: %v (equal: %v)", n, err, bytes.Equal(got, data))
					}
					c, err := repo.CheckObject(ctx, key)
					if err != nil || c.Sum != sum {
						t.Fatalf("CheckObject = %+v, %v; want %+v", c, err, sum)
					}
					if wantR := []string{ak.Recipient}; enc != (fmt.Sprint(c.Recipients) == fmt.Sprint(wantR)) {
						t.Errorf("recipients %v, encrypted %v", c.Recipients, enc)
					}
					wantSig := backup.SignatureNotChecked
					if sign {
						wantSig = backup.SignatureVerified
						if c.Signer != sk.Public() {
							t.Errorf("signer %q, want %q", c.Signer, sk.Public())
						}
					}
					if c.Signature != wantSig {
						t.Errorf("signature %q, want %q", c.Signature, wantSig)
					}
					if n >= 1000 {
						leaked := bytes.Contains(raw, data[500:564])
						if leaked == enc {
							t.Errorf("%d bytes, encrypted %v: plaintext visible in the stored object: %v", n, enc, leaked)
						}
					}
					if !enc && n == 70_000 {
						assertZstdDecompresses(t, filepath.Join(dir, key), data)
					}
				}
			})
		}
	}
}

// assertZstdDecompresses checks that the zstd tool reads an unencrypted object.
func assertZstdDecompresses(t *testing.T, path string, want []byte) {
	t.Helper()
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Fatal("the zstd command is missing: make test installs it (scripts/install-deps.sh)")
	}
	out, err := exec.Command("zstd", "-d", "-c", path).Output()
	if err != nil || !bytes.Equal(out, want) {
		t.Errorf("zstd -d of an unencrypted object: %v (content equal: %v)", err, bytes.Equal(out, want))
	}
}

func TestWrongOrMissingIdentity(t *testing.T) {
	a, b, c := ageKey(t), ageKey(t), ageKey(t)
	dir := t.TempDir()
	writer := repoAt(t, dir, withEncrypter(encrypter(t, a, b)))
	ctx := t.Context()
	if _, err := writer.PutObject(ctx, "o", strings.NewReader("secret"), true, 1); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		dec  backup.Decrypter
		want []string
	}{
		{"no identity", nil, []string{a.Recipient, b.Recipient, "no identity is configured", "HESTAMI_ENCRYPTION_IDENTITY_FILE"}},
		{"wrong identity", decrypter(c), []string{a.Recipient, b.Recipient, c.Recipient, "HESTAMI_ENCRYPTION_IDENTITY_FILE"}},
		{"unreadable identity file", age.IdentityFile(filepath.Join(dir, "missing.key")), []string{a.Recipient, "missing.key"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reader := repoAt(t, dir, withDecrypter(tt.dec))
			_, err := reader.ReadObject(ctx, "o")
			var ke *backup.KeyError
			if !errors.As(err, &ke) || !errors.Is(err, backup.ErrWrongKey) {
				t.Fatalf("ReadObject = %v, want a *KeyError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if err := reader.CheckDecryptable(ctx, "o"); !errors.Is(err, backup.ErrWrongKey) {
				t.Errorf("CheckDecryptable = %v", err)
			}
		})
	}
	t.Run("either rotated identity opens it", func(t *testing.T) {
		for _, k := range []age.KeyPair{a, b} {
			got, err := repoAt(t, dir, withDecrypter(decrypter(c, k))).ReadObject(ctx, "o")
			if err != nil || string(got) != "secret" {
				t.Fatalf("ReadObject = %q, %v", got, err)
			}
		}
	})
}

func TestWALFetchWithWrongIdentityWritesNothing(t *testing.T) {
	a, other := ageKey(t), ageKey(t)
	sk := signingKey(t)
	dir := t.TempDir()
	pusher := &backup.WALPusher{Repo: repoAt(t, dir, withEncrypter(encrypter(t, a)), withSigner(sk)), Parallel: 1}
	pg := dataDir(t, testSysid)
	var names []string
	for i := 1; i <= 3; i++ {
		n := backup.SegmentName(1, uint64(i), 1<<20)
		if err := pusher.Push(t.Context(), writeWAL(t, pg, n, segment(testSysid), false)); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	for _, tt := range []struct {
		name string
		dec  backup.Decrypter
	}{{"no identity", nil}, {"wrong identity", decrypter(other)}} {
		t.Run(tt.name, func(t *testing.T) {
			pgwal := t.TempDir()
			f := &backup.WALFetcher{Repo: repoAt(t, dir, withDecrypter(tt.dec), withVerifier(trust(t, sk))), Prefetch: 4}
			err := f.Fetch(t.Context(), names[0], filepath.Join(pgwal, "RECOVERYXLOG"))
			if !errors.Is(err, backup.ErrWrongKey) || errors.Is(err, backup.ErrNotFound) || !strings.Contains(err.Error(), a.Recipient) {
				t.Fatalf("Fetch = %v, want a key error naming %s", err, a.Recipient)
			}
			if entries, _ := os.ReadDir(pgwal); len(entries) != 0 {
				t.Fatalf("wal fetch with the wrong key wrote %v", entries)
			}
		})
	}
	t.Run("right identity", func(t *testing.T) {
		f := &backup.WALFetcher{Repo: repoAt(t, dir, withDecrypter(decrypter(a)), withVerifier(trust(t, sk))), Prefetch: 2}
		if got := fetch(t, f, names[1]); len(got) != 1<<20 {
			t.Fatalf("fetched %d bytes", len(got))
		}
	})
}

func TestTamperedObjectRejected(t *testing.T) {
	a := ageKey(t)
	sk, mallory := signingKey(t), signingKey(t)
	ctx := t.Context()
	const key = "wal/00000001/000000010000000000000001.zst"
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) {
			dir := t.TempDir()
			encOpts := func(extra ...func(*backup.Repository)) []func(*backup.Repository) {
				if enc {
					extra = append(extra, withEncrypter(encrypter(t, a)), withDecrypter(decrypter(a)))
				}
				return extra
			}
			if _, err := repoAt(t, dir, encOpts(withSigner(sk))...).PutObject(ctx, key, strings.NewReader("genuine"), true, 1); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			reader := repoAt(t, dir, encOpts(withVerifier(trust(t, sk)))...)
			reader.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			if got, err := reader.ReadObject(ctx, key); err != nil || string(got) != "genuine" {
				t.Fatalf("genuine object: %q, %v", got, err)
			}
			// Someone who can write to storage, knows the public recipient, but has no
			// signing key replaces the object.
			if _, err := repoAt(t, dir, encOpts()...).PutObject(ctx, key, strings.NewReader("forged"), false, 1); err != nil {
				t.Fatal(err)
			}
			_, err := reader.ReadObject(ctx, key)
			var se *backup.SignatureError
			if !errors.As(err, &se) || !errors.Is(err, backup.ErrUntrusted) || !strings.Contains(err.Error(), "not signed") {
				t.Fatalf("unsigned replacement: %v, want a *SignatureError", err)
			}
			// --allow-unsigned accepts it, with a warning for each object.
			reader.AllowUnsigned = true
			if got, err := reader.ReadObject(ctx, key); err != nil || string(got) != "forged" {
				t.Fatalf("with AllowUnsigned: %q, %v", got, err)
			}
			if !strings.Contains(logs.String(), "unsigned") || !strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("accepting an unsigned object logged no warning: %s", logs.String())
			}
			// Signed with their own key: refused even with AllowUnsigned.
			if _, err := repoAt(t, dir, encOpts(withSigner(mallory))...).PutObject(ctx, key, strings.NewReader("forged"), false, 1); err != nil {
				t.Fatal(err)
			}
			_, err = reader.ReadObject(ctx, key)
			if !errors.Is(err, backup.ErrUntrustedKey) || !strings.Contains(err.Error(), mallory.Public()) {
				t.Fatalf("signed by an untrusted key: %v, want ErrUntrustedKey naming %s", err, mallory.Public())
			}
		})
	}
}

func TestMovedObjectRejected(t *testing.T) {
	a, sk := ageKey(t), signingKey(t)
	ctx := t.Context()
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) {
			dir := t.TempDir()
			opts := []func(*backup.Repository){withSigner(sk), withVerifier(trust(t, sk))}
			if enc {
				opts = append(opts, withEncrypter(encrypter(t, a)), withDecrypter(decrypter(a)))
			}
			repo := repoAt(t, dir, opts...)
			seg1 := "wal/00000001/000000010000000000000001.zst"
			seg2 := "wal/00000001/000000010000000000000002.zst"
			if _, err := repo.PutObject(ctx, seg1, strings.NewReader("segment one"), true, 1); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, seg1))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, seg2), b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = repo.ReadObject(ctx, seg2)
			if !errors.Is(err, backup.ErrBadSignature) || !strings.Contains(err.Error(), seg2) {
				t.Fatalf("object moved to another key: %v, want ErrBadSignature naming %s", err, seg2)
			}
			// Without verification keys the move goes unnoticed: that is what signing is for.
			repo.Verifier = nil
			if _, err := repo.ReadObject(ctx, seg2); err != nil {
				t.Fatalf("without a verifier: %v", err)
			}
		})
	}
}

func TestEncryptedObjectDamage(t *testing.T) {
	a, sk := ageKey(t), signingKey(t)
	dir := t.TempDir()
	repo := repoAt(t, dir, withEncrypter(encrypter(t, a)), withDecrypter(decrypter(a)), withSigner(sk), withVerifier(trust(t, sk)))
	ctx := t.Context()
	data := testData(300_000)
	if _, err := repo.PutObject(ctx, "o", bytes.NewReader(data), false, 1); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "o")
	orig, _ := os.ReadFile(path)
	cases := map[string]func([]byte) []byte{
		"flip header recipient": func(b []byte) []byte { b[12] ^= 1; return b },
		"flip age header":       func(b []byte) []byte { b[90] ^= 1; return b },
		"flip middle":           func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"flip tag block":        func(b []byte) []byte { b[len(b)-5] ^= 1; return b },
		"truncate tag block":    func(b []byte) []byte { return b[:len(b)-10] },
		"truncate half":         func(b []byte) []byte { return b[:len(b)/2] },
		"append garbage":        func(b []byte) []byte { return append(b, 1, 2, 3) },
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, damage(bytes.Clone(orig)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := repo.ReadObject(ctx, "o")
			if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), "stored object o ") {
				t.Fatalf("ReadObject of a damaged encrypted object = %v, want a *CorruptError for o", err)
			}
		})
	}
}

func TestEncryptionMismatchRefused(t *testing.T) {
	a := ageKey(t)
	ctx := t.Context()
	for _, encrypted := range []bool{true, false} {
		t.Run(fmt.Sprintf("repository encrypted=%v", encrypted), func(t *testing.T) {
			dir := t.TempDir()
			creator, other := repoAt(t, dir), repoAt(t, dir, withEncrypter(encrypter(t, a)))
			if encrypted {
				creator, other = other, creator
			}
			m, err := creator.Ensure(ctx, testSysid, 16<<20)
			if err != nil || m.Encrypted != encrypted {
				t.Fatalf("Ensure = %+v, %v", m, err)
			}
			_, err = other.Ensure(ctx, testSysid, 16<<20)
			var me *backup.EncryptionMismatchError
			if !errors.As(err, &me) || me.Encrypted != encrypted {
				t.Fatalf("Ensure with the other encryption = %v, want *EncryptionMismatchError", err)
			}
			// Even a writer that skips Ensure is refused, and stores nothing.
			late := repoAt(t, dir) // no recipients
			if !encrypted {
				late = repoAt(t, dir, withEncrypter(encrypter(t, a)))
			}
			if _, err := late.PutObject(ctx, "backups/x/f.zst", strings.NewReader("x"), true, 1); !errors.Is(err, backup.ErrEncryptionMismatch) {
				t.Fatalf("PutObject = %v, want ErrEncryptionMismatch", err)
			}
			if _, err := late.Storage.Stat(ctx, "backups/x/f.zst"); !errors.Is(err, backup.ErrNotFound) {
				t.Fatalf("a refused object was stored: %v", err)
			}
			if !strings.Contains(me.Error(), "HESTAMI_ENCRYPTION_RECIPIENTS") {
				t.Errorf("message does not say what to do: %v", me)
			}
		})
	}
}

func TestWALPushToEncryptedRepository(t *testing.T) {
	a, sk := ageKey(t), signingKey(t)
	dir := t.TempDir()
	ctx := t.Context()
	// A pushing host: recipients and the signing key, never the identity.
	pusher := &backup.WALPusher{Repo: repoAt(t, dir, withEncrypter(encrypter(t, a)), withSigner(sk)), Parallel: 1}
	pg := dataDir(t, testSysid)
	name := backup.SegmentName(1, 1, 1<<20)
	seg := segment(testSysid)
	p := writeWAL(t, pg, name, seg, false)
	if err := pusher.Push(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Run("identical content again succeeds without the identity", func(t *testing.T) {
		if err := pusher.Push(ctx, p); err != nil {
			t.Fatalf("second push of identical content: %v", err)
		}
	})
	t.Run("other content is a conflict and keeps the original", func(t *testing.T) {
		writeWAL(t, pg, name, segment(testSysid), false)
		defer writeWAL(t, pg, name, seg, false)
		err := pusher.Push(ctx, p)
		var ce *backup.ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("conflicting push: %v, want *ConflictError", err)
		}
		got := fetch(t, &backup.WALFetcher{Repo: repoAt(t, dir, withDecrypter(decrypter(a)))}, name)
		if !bytes.Equal(got, seg) {
			t.Fatal("the archived copy changed")
		}
	})
	t.Run("without a signing key it cannot compare and says so", func(t *testing.T) {
		unsigned := &backup.WALPusher{Repo: repoAt(t, dir, withEncrypter(encrypter(t, a))), Parallel: 1}
		err := unsigned.Push(ctx, p)
		if err == nil || !strings.Contains(err.Error(), "HESTAMI_SIGNING_KEY_FILE") {
			t.Fatalf("push without a way to compare: %v", err)
		}
	})
	t.Run("with the identity it compares by content", func(t *testing.T) {
		withID := &backup.WALPusher{Repo: repoAt(t, dir, withEncrypter(encrypter(t, a)), withDecrypter(decrypter(a))), Parallel: 1}
		if err := withID.Push(ctx, p); err != nil {
			t.Fatal(err)
		}
	})
}

func TestUnpackWithWrongIdentityWritesNothing(t *testing.T) {
	a, other := ageKey(t), ageKey(t)
	dir := t.TempDir()
	repo := repoAt(t, dir, withEncrypter(encrypter(t, a)))
	base := makeTar(t, tarEntry{name: "backup_label", body: "START WAL LOCATION: 0/2000028\n"}, tarEntry{name: "PG_VERSION", body: "17\n"})
	m := storeBackup(t, repo, "physical-x", nil, map[string][]byte{"base.tar": base, "backup_manifest": []byte("{}")})
	data := t.TempDir()
	err := (&backup.Restorer{Repo: repoAt(t, dir, withDecrypter(decrypter(other)))}).Unpack(t.Context(), m, data, nil)
	if !errors.Is(err, backup.ErrWrongKey) || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("Unpack with the wrong identity = %v", err)
	}
	if entries, _ := os.ReadDir(data); len(entries) != 0 {
		t.Fatalf("Unpack with the wrong identity wrote %v", entries)
	}
	if err := (&backup.Restorer{Repo: repoAt(t, dir, withDecrypter(decrypter(a)))}).Unpack(t.Context(), m, data, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(data, "PG_VERSION")); string(b) != "17\n" {
		t.Fatalf("restored PG_VERSION = %q", b)
	}
}

func TestBackupVerifier(t *testing.T) {
	a, sk := ageKey(t), signingKey(t)
	dir := t.TempDir()
	ctx := t.Context()
	repo := repoAt(t, dir, withEncrypter(encrypter(t, a)), withDecrypter(decrypter(a)), withSigner(sk), withVerifier(trust(t, sk)))
	if _, err := repo.Ensure(ctx, testSysid, 1<<20); err != nil {
		t.Fatal(err)
	}
	// A physical backup on timeline 2 (branched from 1) needing segments 2..3.
	m := storeBackup(t, repo, "physical-20260101T000000Z", nil, map[string][]byte{"base.tar": makeTar(t, tarEntry{name: "PG_VERSION", body: "17\n"}), "backup_manifest": []byte("{}")})
	m.StartTime, m.StopTime = time.Unix(1e9, 0), time.Unix(1e9+1, 0)
	m.Timeline, m.StartLSN, m.StopLSN, m.WALSegmentSize = 2, 0x200028, 0x300100, 1<<20
	m.StartWAL, m.StopWAL = backup.SegmentName(2, 2, 1<<20), backup.SegmentName(2, 3, 1<<20)
	if err := repo.WriteManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	put := func(name string, body []byte) string {
		t.Helper()
		key := backup.WALKey(mustParse(t, name))
		if _, err := repo.PutObject(ctx, key, bytes.NewReader(body), false, 1); err != nil {
			t.Fatal(err)
		}
		return key
	}
	seg2 := put(m.StartWAL, segment(testSysid))
	seg3 := put(m.StopWAL, segment(testSysid))
	hist := put("00000002.history", []byte("1\t0/200000\tno recovery target specified\n"))
	v := &backup.BackupVerifier{Repo: repo, Parallel: 2}

	rep, err := v.Verify(ctx, m.ID)
	if err != nil || !rep.OK {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	kinds := map[string]string{}
	for _, o := range rep.Objects {
		kinds[o.Key] = o.Kind
		if o.Signature != backup.SignatureVerified || len(o.Recipients) != 1 {
			t.Errorf("%s: signature %q, recipients %v", o.Key, o.Signature, o.Recipients)
		}
	}
	want := map[string]string{
		"backups/" + m.ID + "/manifest.json.zst":  backup.KindManifest,
		backup.BackupKey(m.ID, "base.tar"):        backup.KindFile,
		backup.BackupKey(m.ID, "backup_manifest"): backup.KindFile,
		seg2: backup.KindWAL, seg3: backup.KindWAL, hist: backup.KindHistory,
	}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("verified objects %v, want %v", kinds, want)
	}

	failing := func(t *testing.T, key, status string) {
		t.Helper()
		rep, err := v.Verify(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		fails := rep.Failures()
		if rep.OK || len(fails) != 1 || fails[0].Key != key || fails[0].Status != status || fails[0].Error == "" {
			t.Fatalf("failures %+v, want %s %s", fails, key, status)
		}
	}
	damage := func(t *testing.T, key string, f func([]byte) []byte) {
		t.Helper()
		p := filepath.Join(dir, key)
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(p, orig, 0o600) })
		os.WriteFile(p, f(bytes.Clone(orig)), 0o600)
	}
	t.Run("flipped byte", func(t *testing.T) {
		damage(t, seg3, func(b []byte) []byte { b[len(b)/2] ^= 1; return b })
		failing(t, seg3, backup.ObjectCorrupt)
	})
	t.Run("replaced by an unsigned object", func(t *testing.T) {
		damage(t, seg2, func([]byte) []byte {
			fdir := t.TempDir()
			forger := repoAt(t, fdir, withEncrypter(encrypter(t, a)))
			if _, err := forger.PutObject(ctx, seg2, bytes.NewReader(segment(testSysid)), false, 1); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(fdir, seg2))
			return b
		})
		failing(t, seg2, backup.ObjectUntrusted)
	})
	t.Run("file replaced by another signed object", func(t *testing.T) {
		key := backup.BackupKey(m.ID, "backup_manifest")
		damage(t, key, func(b []byte) []byte {
			repo.PutObject(ctx, key, strings.NewReader("{\"other\": 1}"), false, 1)
			nb, _ := os.ReadFile(filepath.Join(dir, key))
			return nb
		})
		failing(t, key, backup.ObjectMismatch)
	})
	t.Run("missing history file", func(t *testing.T) {
		damage(t, hist, func(b []byte) []byte { return b })
		os.Remove(filepath.Join(dir, hist))
		failing(t, hist, backup.ObjectMissing)
	})
	t.Run("without the identity", func(t *testing.T) {
		noID := &backup.BackupVerifier{Repo: repoAt(t, dir, withVerifier(trust(t, sk)))}
		rep, err := noID.Verify(ctx, m.ID)
		if err != nil || rep.OK || rep.Objects[0].Status != backup.ObjectUndecryptable || !strings.Contains(rep.Objects[0].Error, a.Recipient) {
			t.Fatalf("Verify without the identity = %+v, %v", rep, err)
		}
	})
	t.Run("unknown backup", func(t *testing.T) {
		if _, err := v.Verify(ctx, "physical-nope"); !errors.Is(err, backup.ErrBackupNotFound) {
			t.Fatalf("Verify of an unknown backup = %v", err)
		}
	})
}

func TestSigningKeyText(t *testing.T) {
	k := signingKey(t)
	text := k.Encode(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	back, err := backup.ParseSigningKey(text)
	if err != nil || back.Public() != k.Public() {
		t.Fatalf("ParseSigningKey(%q) = %v, %v", text, back, err)
	}
	if !strings.Contains(string(text), "# public key: "+k.Public()) {
		t.Errorf("key file does not show the public key:\n%s", text)
	}
	for _, bad := range []string{"", "# only a comment\n", "hestami-sign-key:short\n", string(text) + string(text), "AGE-SECRET-KEY-1XYZ\n"} {
		if _, err := backup.ParseSigningKey([]byte(bad)); err == nil {
			t.Errorf("ParseSigningKey(%q) succeeded", bad)
		} else if strings.Contains(err.Error(), "AGE-SECRET") {
			t.Errorf("error echoes key material: %v", err)
		}
	}
	if _, err := backup.ParseTrustedKeys([]string{k.Public(), " ", "hestami-sign-pub:xyz", string(text)}); err == nil {
		t.Error("ParseTrustedKeys accepted invalid keys")
	}
	if _, err := backup.ParsePublicKey(k.Public() + "\n"); err != nil {
		t.Errorf("ParsePublicKey with a newline: %v", err)
	}
}

func TestRestoreCommandRepeatsFlags(t *testing.T) {
	got := backup.RestoreCommand("/usr/bin/hestami", "/etc/hestami/hestami.yaml", "--allow-unsigned")
	if want := "/usr/bin/hestami --config /etc/hestami/hestami.yaml --allow-unsigned wal fetch %f %p"; got != want {
		t.Fatalf("RestoreCommand = %q, want %q", got, want)
	}
}

// TestAuditInEncryptedRepository: hosts that only push (no identity) still append
// to the audit log, and the operator with the identity and trusted keys verifies it.
func TestAuditInEncryptedRepository(t *testing.T) {
	dir := t.TempDir()
	k := ageKey(t)
	sk := signingKey(t)
	pusher := repoAt(t, dir, withEncrypter(encrypter(t, k)), withSigner(sk))
	if _, err := pusher.Ensure(t.Context(), 42, 16<<20); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := pusher.Audit(t.Context(), backup.AuditEntry{Action: "backup.push", Actor: "postgres", Host: "db1", Target: fmt.Sprint(i), Outcome: "ok"}); err != nil {
			t.Fatalf("audit entry %d without an identity: %v", i, err)
		}
	}
	operator := repoAt(t, dir, withEncrypter(encrypter(t, k)), withDecrypter(decrypter(k)), withVerifier(trust(t, sk)))
	entries, problems, err := operator.AuditLog(t.Context())
	if err != nil || len(problems) != 0 || len(entries) != 3 {
		t.Fatalf("audit log: %d entries, problems %v, %v", len(entries), problems, err)
	}
	stranger := repoAt(t, dir, withVerifier(trust(t, signingKey(t))))
	if _, problems, _ := stranger.AuditLog(t.Context()); len(problems) != 3 {
		t.Fatalf("entries signed by an untrusted key accepted: problems %v", problems)
	}
}
