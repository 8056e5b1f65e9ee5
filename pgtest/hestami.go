package pgtest

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/hestami/hestami/postgres"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds the hestami command once per test process and returns its path, in
// a directory the cluster user can reach (PostgreSQL runs it as archive_command).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hestami-bin-")
		if err != nil {
			buildErr = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "hestami")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/hestami/hestami/cmd/hestami")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build hestami: %v\n%s", err, out)
		}
		if buildErr == nil {
			buildErr = postgres.MakeTraversable(buildPath)
		}
	})
	if buildErr != nil {
		t.Fatalf("pgtest: %v", buildErr)
	}
	return buildPath
}

// Archiving is a test cluster that archives its WAL into a file repository through the
// real hestami binary.
type Archiving struct {
	Cluster *postgres.Cluster
	// Repo is the repository directory (storage URL file://Repo); empty for a
	// repository elsewhere (NewArchivingTo).
	Repo string
	// URL is the repository's storage URL.
	URL string
	// StorageEnv is what hestami processes need in their environment to reach the
	// repository (credentials, emulator endpoints); the server has it too.
	StorageEnv []string
	// Config is a hestami config file naming the repository and the cluster.
	Config string
	// Bin is the hestami binary.
	Bin string
}

// Env returns the environment a hestami command needs to work on this cluster.
func (a *Archiving) Env() []string {
	return append([]string{"HESTAMI_CONFIG=" + a.Config}, a.StorageEnv...)
}

// NewArchiving starts a cluster with archive_mode=on and
// archive_command='hestami --config CONFIG wal push %p', storing into a fresh
// repository directory.
func NewArchiving(t testing.TB, settings map[string]string) *Archiving {
	t.Helper()
	return NewArchivingConfig(t, settings, "")
}

// NewArchivingConfig is NewArchiving with extraYAML appended to the hestami config
// file: top-level sections the default file lacks (encryption:, signing:...).
func NewArchivingConfig(t testing.TB, settings map[string]string, extraYAML string) *Archiving {
	t.Helper()
	a := &Archiving{Bin: Binary(t), Repo: filepath.Join(Dir(t), "repo")}
	a.URL = "file://" + a.Repo
	dir := Dir(t)
	a.Config = filepath.Join(dir, "hestami.yaml")
	c := Prepare(t)
	writeConfig(t, a.Config, a.Repo, c.Port, "", extraYAML)
	all := map[string]string{
		"archive_mode":    "on",
		"archive_command": fmt.Sprintf("'%s' --config '%s' wal push %%p", a.Bin, a.Config),
	}
	for k, v := range settings {
		all[k] = v
	}
	startPrepared(t, c, all)
	a.Cluster = c
	return a
}

// WriteConfig writes a hestami config file for repository dir and a cluster on port;
// storageYAML is added to the storage section (indented lines).
func writeConfig(t testing.TB, path, repo string, port int, storageYAML, extraYAML string) {
	t.Helper()
	cfg := fmt.Sprintf(`storage:
  url: file://%s
%spostgres:
  host: 127.0.0.1
  port: %d
  user: postgres
  database: postgres
log:
  level: info
`, repo, storageYAML, port) + extraYAML
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatalf("pgtest: write config: %v", err)
	}
	if err := os.MkdirAll(repo, 0o750); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u, err := postgres.ClusterUser()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := postgres.Chown(repo, u); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// NewArchivingWithSecondary is NewArchiving (a repository directory) with a secondary
// repository at secondaryURL (storage.secondary_url; for instance a blobtest emulator,
// so storage.allow_insecure_http is set); env is added to the server's environment
// and to StorageEnv, so that archive_command reaches the secondary.
func NewArchivingWithSecondary(t testing.TB, secondaryURL string, env []string, settings map[string]string) *Archiving {
	t.Helper()
	a := &Archiving{Bin: Binary(t), Repo: filepath.Join(Dir(t), "repo"), StorageEnv: env}
	a.URL = "file://" + a.Repo
	a.Config = filepath.Join(Dir(t), "hestami.yaml")
	c := Prepare(t)
	c.Env = append(c.Env, env...)
	writeConfig(t, a.Config, a.Repo, c.Port, "  secondary_url: "+strconv.Quote(secondaryURL)+"\n  allow_insecure_http: true\n", "")
	all := map[string]string{
		"archive_mode":    "on",
		"archive_command": fmt.Sprintf("'%s' --config '%s' wal push %%p", a.Bin, a.Config),
	}
	maps.Copy(all, settings)
	startPrepared(t, c, all)
	a.Cluster = c
	return a
}

// NewArchivingTo is NewArchiving with the repository at storageURL (an object store,
// for instance a blobtest emulator) instead of a directory: the hestami config file
// names it, with storage.allow_insecure_http (test emulators speak plain HTTP), and
// env is added to the server's environment, so that archive_command reaches it.
func NewArchivingTo(t testing.TB, storageURL string, env []string, settings map[string]string) *Archiving {
	t.Helper()
	a := &Archiving{Bin: Binary(t), URL: storageURL, StorageEnv: env}
	a.Config = filepath.Join(Dir(t), "hestami.yaml")
	c := Prepare(t)
	c.Env = append(c.Env, env...)
	cfg := fmt.Sprintf(`storage:
  url: %s
  allow_insecure_http: true
postgres:
  host: 127.0.0.1
  port: %d
  user: postgres
  database: postgres
log:
  level: info
`, strconv.Quote(storageURL), c.Port)
	if err := os.WriteFile(a.Config, []byte(cfg), 0o644); err != nil {
		t.Fatalf("pgtest: write config: %v", err)
	}
	all := map[string]string{
		"archive_mode":    "on",
		"archive_command": fmt.Sprintf("'%s' --config '%s' wal push %%p", a.Bin, a.Config),
	}
	maps.Copy(all, settings)
	startPrepared(t, c, all)
	a.Cluster = c
	return a
}
