package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hestami/hestami/config"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadLayers(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "pgpass")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	cfgPath := filepath.Join(dir, "hestami.yaml")
	os.WriteFile(cfgPath, []byte(`
storage:
  url: file://${BACKUP_ROOT}/repo
postgres:
  host: db.internal
  port: 5433
wal:
  prefetch: 2
`), 0o600)
	c, err := config.Load(cfgPath, env(map[string]string{
		"BACKUP_ROOT":     "/srv",
		"PGPORT":          "6543", // environment beats the file
		"PGPASSWORD_FILE": secret,
		"PGUSER":          "backup",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.URL != "file:///srv/repo" {
		t.Errorf("storage.url = %q: ${VAR} not expanded", c.Storage.URL)
	}
	if c.Postgres.Host != "db.internal" || c.Postgres.Port != 6543 || c.Postgres.User != "backup" {
		t.Errorf("postgres = %+v", c.Postgres)
	}
	if c.Postgres.Password != "s3cret" {
		t.Errorf("PGPASSWORD_FILE not read (got %q)", c.Postgres.Password)
	}
	if c.WAL.Prefetch != 2 || c.WAL.PushParallel != 4 {
		t.Errorf("wal = %+v; want the file's prefetch and the default push_parallel", c.WAL)
	}
	cs := c.Postgres.ConnString("")
	if !strings.Contains(cs, "port='6543'") || !strings.Contains(cs, "password='s3cret'") {
		t.Errorf("ConnString = %q", cs)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	os.WriteFile(p, []byte("wal:\n  push_parallel: 0\nlog:\n  level: loud\n"), 0o600)
	_, err := config.Load(p, env(map[string]string{"HESTAMI_COMPRESSION_LEVEL": "9", "PGPORT": "x"}))
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	_, err = config.Load(p, env(map[string]string{"HESTAMI_COMPRESSION_LEVEL": "9"}))
	for _, want := range []string{"wal.push_parallel", "log.level", "backup.compression_level"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	os.WriteFile(p, []byte("storage:\n  ulr: typo\n"), 0o600)
	if _, err := config.Load(p, env(nil)); err == nil || !strings.Contains(err.Error(), "ulr") {
		t.Errorf("unknown key accepted: %v", err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o600)
	if _, err := config.Load(empty, env(nil)); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	a := config.Default()
	a.Postgres.Password = "hunter2"
	b := a
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatal("same configuration, different fingerprints")
	}
	b.Postgres.Password = "hunter3"
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("a changed password left the fingerprint unchanged")
	}
	b = a
	b.Retention.Daily = 8
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("a changed setting left the fingerprint unchanged")
	}
	if strings.Contains(a.Fingerprint(), "hunter2") || a.Postgres.Password != "hunter2" {
		t.Fatal("Fingerprint leaked or changed the secret")
	}
}
