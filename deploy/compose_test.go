package deploy_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// repoRoot is the repository's root: this package is its deploy directory.
const repoRoot = ".."

var (
	devFiles  = []string{"compose.yaml"}
	prodFiles = []string{"compose.yaml", "compose.prod.yaml"}
)

const (
	devEnv  = ".env.dev.example"
	prodEnv = ".env.prod.example"
)

// load reads compose files (relative to the repository root) as docker compose does
// with --env-file envFile --profile ..., with env added to the env file's variables.
// The process environment is left out, so the result does not depend on the machine.
func load(t *testing.T, files []string, envFile string, profiles []string, env ...string) (*types.Project, error) {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(repoRoot, f))
	}
	opts := []cli.ProjectOptionsFn{cli.WithWorkingDirectory(repoRoot), cli.WithProfiles(profiles)}
	if envFile != "" {
		opts = append(opts, cli.WithEnvFiles(filepath.Join(repoRoot, envFile)), cli.WithDotEnv)
	}
	opts = append(opts, cli.WithEnv(env))
	o, err := cli.NewProjectOptions(paths, opts...)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	return o.LoadProject(context.Background())
}

// mustLoad is load for files that must load.
func mustLoad(t *testing.T, files []string, envFile string, profiles ...string) *types.Project {
	t.Helper()
	p, err := load(t, files, envFile, profiles)
	if err != nil {
		t.Fatalf("load %s with %s, profiles %v: %v", strings.Join(files, " + "), envFile, profiles, err)
	}
	return p
}

// deployment is one way of running the stack, as the docs say to start it.
type deployment struct {
	name     string
	files    []string
	env      string
	profiles []string
	prod     bool
}

var deployments = []deployment{
	{"development", devFiles, devEnv, []string{"dev"}, false},
	{"development without the dev profile", devFiles, devEnv, nil, false},
	{"production", prodFiles, prodEnv, nil, true},
	{"production with --profile dev", prodFiles, prodEnv, []string{"dev"}, true},
}

// forEachDeployment runs f, in parallel, on every deployment's project.
func forEachDeployment(t *testing.T, f func(t *testing.T, d deployment, p *types.Project)) {
	t.Helper()
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			f(t, d, mustLoad(t, d.files, d.env, d.profiles...))
		})
	}
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("no service %q (services: %v)", name, slices.Sorted(func(yield func(string) bool) {
			for n := range p.Services {
				if !yield(n) {
					return
				}
			}
		}))
	}
	return s
}

// env returns a service's environment variable ("" when unset).
func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// settings returns the -c name=value settings of a postgres command line.
func settings(t *testing.T, cmd []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 0; i < len(cmd); i++ {
		if cmd[i] != "-c" {
			continue
		}
		if i+1 == len(cmd) {
			t.Fatalf("command %q ends with -c", cmd)
		}
		name, value, ok := strings.Cut(cmd[i+1], "=")
		if !ok {
			t.Fatalf("command %q: -c %s is not name=value", cmd, cmd[i+1])
		}
		out[name] = value
		i++
	}
	return out
}

var expectedServices = []string{"db", "backup", "auth", "pgbouncer"}

func TestServices(t *testing.T) {
	t.Parallel()
	forEachDeployment(t, func(t *testing.T, d deployment, p *types.Project) {
		for _, name := range expectedServices {
			service(t, p, name)
		}
		_, active := p.Services["pgadmin"]
		_, disabled := p.DisabledServices["pgadmin"]
		switch {
		case d.prod && (active || disabled):
			t.Errorf("production has a pgadmin service (active %v, in an inactive profile %v): compose.prod.yaml must remove it", active, disabled)
		case !d.prod && active != slices.Contains(d.profiles, "dev"):
			t.Errorf("pgadmin active: %v with profiles %v: want it in the dev profile only", active, d.profiles)
		case !d.prod && !active && !disabled:
			t.Errorf("no pgadmin service in compose.yaml")
		}
		if d.prod {
			if _, ok := p.Networks["backend-dev"]; ok {
				t.Error("production defines the network backend-dev: pgAdmin's network, development only")
			}
			if _, ok := p.Volumes["pgadmin_data"]; ok {
				t.Error("production defines the volume pgadmin_data")
			}
		}
	})
}

// TestImagesPinned checks every image names a version: a tag other than latest (a
// digest is fine too), never a moving one.
func TestImagesPinned(t *testing.T) {
	t.Parallel()
	forEachDeployment(t, func(t *testing.T, d deployment, p *types.Project) {
		for name, s := range p.AllServices() {
			ref := s.Image
			if ref == "" {
				t.Errorf("%s: no image: name the image (and tag) it runs", name)
				continue
			}
			repo, tag, digest := splitImage(ref)
			switch {
			case digest != "":
			case tag == "" || tag == "latest":
				t.Errorf("%s: image %q is not pinned: give a version tag, not latest", name, ref)
			case !regexp.MustCompile(`[0-9]`).MatchString(tag) && s.Build == nil:
				t.Errorf("%s: image %q: tag %q names no version", name, ref, tag)
			}
			if d.prod {
				if s.Build != nil {
					t.Errorf("%s: production builds its image on the host: pull the released one (compose.prod.yaml: build: !reset null)", name)
				}
				if strings.HasPrefix(repo, "ghcr.io/hestami/") && tag != "1.0.0" {
					t.Errorf("%s: image %q: want the release HESTAMI_VERSION names (1.0.0 in %s)", name, ref, prodEnv)
				}
			}
		}
		for _, s := range []string{"db", "backup"} {
			if got, want := service(t, p, s).Image, service(t, p, "db").Image; got != want {
				t.Errorf("%s runs %s, db %s: both run the PostgreSQL image with hestami", s, got, want)
			}
		}
	})
}

// splitImage splits an image reference into repository, tag and digest.
func splitImage(ref string) (repo, tag, digest string) {
	repo, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	return repo, tag, digest
}

func TestProductionNeedsAVersion(t *testing.T) {
	t.Parallel()
	// The env file names the release; without it, no image could be chosen.
	_, err := load(t, prodFiles, "", nil, "HESTAMI_ENCRYPTION_RECIPIENTS=age1x", "HESTAMI_SIGNING_PUBLIC_KEYS=hestami-sign-pub:x",
		"HESTAMI_AUTH_PUBLIC_URL=https://auth.example", "HESTAMI_AUTH_RETURN_ORIGINS=https://app.example",
		"HESTAMI_DAEMON_PUBLIC_URL=https://backups.example")
	if err == nil || !strings.Contains(err.Error(), "HESTAMI_VERSION") {
		t.Errorf("production without HESTAMI_VERSION: got %v, want an error naming HESTAMI_VERSION", err)
	}
	for _, name := range []string{"HESTAMI_ENCRYPTION_RECIPIENTS", "HESTAMI_SIGNING_PUBLIC_KEYS", "HESTAMI_AUTH_PUBLIC_URL", "HESTAMI_DAEMON_PUBLIC_URL"} {
		_, err := load(t, prodFiles, prodEnv, nil, name+"=")
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("production with %s empty: got %v, want an error naming it", name, err)
		}
	}
}

func TestHealthchecks(t *testing.T) {
	t.Parallel()
	forEachDeployment(t, func(t *testing.T, d deployment, p *types.Project) {
		for name, s := range p.AllServices() {
			hc := s.HealthCheck
			if hc == nil || hc.Disable || len(hc.Test) < 2 || (hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL") {
				t.Errorf("%s: no healthcheck (got %+v): every service needs one", name, hc)
				continue
			}
			if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil {
				t.Errorf("%s: healthcheck without interval, timeout and retries", name)
			}
			for dep, c := range s.DependsOn {
				if c.Condition != types.ServiceConditionHealthy {
					t.Errorf("%s depends on %s with condition %q: want %s", name, dep, c.Condition, types.ServiceConditionHealthy)
				}
			}
		}
		// The hestami servers: the healthcheck asks the port the command listens on,
		// through hestami healthcheck (the hestami image has no curl).
		for name, path := range map[string]string{"auth": "/healthz", "backup": "/readyz"} {
			s := service(t, p, name)
			listen := ""
			for i, a := range s.Command {
				if a == "--listen" && i+1 < len(s.Command) {
					listen = s.Command[i+1]
				}
			}
			host, port, ok := strings.Cut(listen, ":")
			if !ok || host != "0.0.0.0" {
				t.Errorf("%s: command %q: want --listen 0.0.0.0:PORT (reachable from the other containers)", name, s.Command)
				continue
			}
			want := []string{"CMD", "hestami", "healthcheck", "http://127.0.0.1:" + port + path}
			if !slices.Equal(s.HealthCheck.Test, want) {
				t.Errorf("%s: healthcheck %q, want %q", name, s.HealthCheck.Test, want)
			}
			for _, pp := range s.Ports {
				if strconv.Itoa(int(pp.Target)) != port {
					t.Errorf("%s publishes container port %d, but listens on %s", name, pp.Target, port)
				}
			}
		}
		for _, name := range []string{"db", "pgbouncer"} {
			if test := service(t, p, name).HealthCheck.Test; len(test) < 2 || test[1] != "pg_isready" {
				t.Errorf("%s: healthcheck %q: want pg_isready", name, test)
			}
		}
	})
}

// TestPorts: development publishes on 127.0.0.1 only; production publishes no
// database, pooler or daemon port, and nothing beyond loopback.
func TestPorts(t *testing.T) {
	t.Parallel()
	forEachDeployment(t, func(t *testing.T, d deployment, p *types.Project) {
		for name, s := range p.Services {
			for _, pp := range s.Ports {
				if pp.HostIP != "127.0.0.1" {
					t.Errorf("%s publishes %s:%s->%d: bind to 127.0.0.1 only", name, pp.HostIP, pp.Published, pp.Target)
				}
			}
			if d.prod && name != "auth" && name != "backup" && len(s.Ports) > 0 {
				t.Errorf("production: %s publishes %d ports: want none (only auth and backup, for their reverse proxy)", name, len(s.Ports))
			}
		}
		if d.prod {
			return
		}
		if ports := service(t, p, "db").Ports; len(ports) != 1 || ports[0].Target != 5432 {
			t.Errorf("development: db ports %+v: want 5432 on 127.0.0.1 for the database tools", ports)
		}
	})
}

func TestPgAdmin(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, devFiles, devEnv, "dev")
	s := service(t, p, "pgadmin")
	if repo, tag, _ := splitImage(s.Image); repo != "dpage/pgadmin4" || !regexp.MustCompile(`^[0-9]+\.[0-9]+`).MatchString(tag) {
		t.Errorf("pgadmin image %q: want dpage/pgadmin4 at a pinned version", s.Image)
	}
	if !slices.Equal(s.Profiles, []string{"dev"}) {
		t.Errorf("pgadmin profiles %q: want only dev", s.Profiles)
	}
	for k, want := range map[string]string{
		"PGADMIN_CONFIG_SERVER_MODE": "False",
		"PGADMIN_DEFAULT_EMAIL":      "admin@hestami.local",
		"PGADMIN_LISTEN_PORT":        "5050",
	} {
		if got := env(s, k); got != want {
			t.Errorf("pgadmin %s = %q, want %q", k, got, want)
		}
	}
	if ports := s.Ports; len(ports) != 1 || ports[0].Published != "5050" || ports[0].Target != 5050 || ports[0].HostIP != "127.0.0.1" {
		t.Errorf("pgadmin ports %+v: want 127.0.0.1:5050:5050", ports)
	}
	if _, ok := s.Networks["backend-dev"]; !ok || len(s.Networks) != 1 {
		t.Errorf("pgadmin networks %v: want backend-dev only", slices.Collect(mapKeys(s.Networks)))
	}
	if _, ok := service(t, p, "db").Networks["backend-dev"]; !ok {
		t.Error("db is not on backend-dev: pgAdmin cannot reach it")
	}
	mounts := map[string]types.ServiceVolumeConfig{}
	for _, v := range s.Volumes {
		mounts[v.Target] = v
	}
	if v := mounts["/var/lib/pgadmin"]; v.Type != types.VolumeTypeVolume || v.Source != "pgadmin_data" {
		t.Errorf("pgadmin's /var/lib/pgadmin: %+v: want the volume pgadmin_data", v)
	}
	if _, ok := p.Volumes["pgadmin_data"]; !ok {
		t.Error("no volume pgadmin_data")
	}
	jsonPath := env(s, "PGADMIN_SERVER_JSON_FILE")
	if v := mounts[jsonPath]; v.Type != types.VolumeTypeBind || !v.ReadOnly || v.Source != filepath.Join(absRoot(t), "deploy", "pgadmin", "servers.json") {
		t.Errorf("PGADMIN_SERVER_JSON_FILE=%s: mounted as %+v, want deploy/pgadmin/servers.json read-only", jsonPath, v)
	}
	checkSecretFiles(t, "pgadmin", s)
	if !strings.HasPrefix(env(s, "PGPASS_FILE"), "/run/secrets/") {
		t.Errorf("pgadmin PGPASS_FILE = %q: want the pgpass secret", env(s, "PGPASS_FILE"))
	}

	// servers.json: the db service, as the env file's user, its password read from
	// the pgpass file pgAdmin's entrypoint copies PGPASS_FILE to.
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "pgadmin", "servers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sj struct {
		Servers map[string]struct {
			Name, Group, Host, Username, MaintenanceDB string
			Port                                       int
			Password                                   *string
			ConnectionParameters                       map[string]any
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&sj); err != nil {
		t.Fatalf("deploy/pgadmin/servers.json: %v", err)
	}
	if len(sj.Servers) != 1 {
		t.Fatalf("servers.json has %d servers, want 1 (db)", len(sj.Servers))
	}
	for id, srv := range sj.Servers {
		if srv.Host != "db" || srv.Port != 5432 {
			t.Errorf("servers.json %s: %s:%d, want the db service, db:5432", id, srv.Host, srv.Port)
		}
		if srv.Name == "" || srv.Group == "" {
			t.Errorf("servers.json %s: Name and Group are required by pgAdmin", id)
		}
		if srv.Username != p.Environment["POSTGRES_USER"] || srv.MaintenanceDB != p.Environment["POSTGRES_DB"] {
			t.Errorf("servers.json %s: user %q, database %q; %s: POSTGRES_USER %q, POSTGRES_DB %q: change them together",
				id, srv.Username, srv.MaintenanceDB, devEnv, p.Environment["POSTGRES_USER"], p.Environment["POSTGRES_DB"])
		}
		if srv.Password != nil {
			t.Errorf("servers.json %s holds a password: use the pgpass file", id)
		}
		if got := srv.ConnectionParameters["passfile"]; got != "/var/lib/pgadmin/.pgpass" {
			t.Errorf("servers.json %s: passfile %v, want /var/lib/pgadmin/.pgpass (where the entrypoint copies PGPASS_FILE in desktop mode)", id, got)
		}
	}
	want := "db:5432:*:" + p.Environment["POSTGRES_USER"] + ":" + p.Environment["POSTGRES_PASSWORD"]
	if got := p.Environment["PGADMIN_PGPASS"]; got != want {
		t.Errorf("%s: PGADMIN_PGPASS expands to %q, want %q", devEnv, got, want)
	}
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func absRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// checkSecretFiles checks that every *_FILE variable naming /run/secrets/NAME has the
// secret NAME mounted there.
func checkSecretFiles(t *testing.T, name string, s types.ServiceConfig) {
	t.Helper()
	mounted := map[string]bool{}
	for _, sec := range s.Secrets {
		target := sec.Target
		if target == "" {
			target = sec.Source
		}
		if !strings.HasPrefix(target, "/") {
			target = "/run/secrets/" + target
		}
		mounted[target] = true
	}
	for k, v := range s.Environment {
		if v == nil || !strings.HasPrefix(*v, "/run/secrets/") {
			continue
		}
		if !mounted[*v] {
			t.Errorf("%s: %s=%s, but no secret is mounted there", name, k, *v)
		}
	}
}

// secretName matches the names of variables whose values are secrets.
var secretName = regexp.MustCompile(`(PASSWORD|SECRET|TOKEN|PRIVATE_KEY|IDENTITY|USERLIST|PGPASS|DATABASE_URL|MFA_KEYS|SIGNING_KEY|COOKIE_KEYS?)$`)

// TestSecrets: secrets reach containers as files named by *_FILE variables, never as
// values; in production each comes from a file on the host.
func TestSecrets(t *testing.T) {
	t.Parallel()
	forEachDeployment(t, func(t *testing.T, d deployment, p *types.Project) {
		for name, s := range p.AllServices() {
			checkSecretFiles(t, name, s)
			for k, v := range s.Environment {
				val := ""
				if v != nil {
					val = *v
				}
				if secretName.MatchString(k) && !strings.HasSuffix(k, "_FILE") {
					t.Errorf("%s: %s=%q in the environment: use %s_FILE and a secret", name, k, val, k)
				}
				if strings.HasSuffix(k, "_FILE") && secretName.MatchString(strings.TrimSuffix(k, "_FILE")) && !strings.HasPrefix(val, "/run/secrets/") {
					t.Errorf("%s: %s=%q: want a docker secret under /run/secrets", name, k, val)
				}
				if u, err := url.Parse(val); err == nil && u.User != nil {
					if _, hasPassword := u.User.Password(); hasPassword {
						t.Errorf("%s: %s holds a URL with a password", name, k)
					}
				}
			}
			if d.prod && env(s, "HESTAMI_CONFIG") != "" && !strings.HasPrefix(env(s, "HESTAMI_CONFIG"), "/run/secrets/") {
				t.Errorf("%s: HESTAMI_CONFIG=%s holds client secrets: mount it as a secret", name, env(s, "HESTAMI_CONFIG"))
			}
		}
		for name, sec := range p.Secrets {
			switch {
			case d.prod && (sec.File == "" || sec.Environment != "" || sec.Content != ""):
				t.Errorf("production secret %s: %+v: want a file on the host, not a variable", name, sec)
			case d.prod && !strings.HasPrefix(sec.File, "/etc/hestami/secrets/"):
				t.Errorf("production secret %s: file %s: want it in HESTAMI_SECRETS_DIR (/etc/hestami/secrets)", name, sec.File)
			case !d.prod && sec.Environment != "" && p.Environment[sec.Environment] == "":
				t.Errorf("development secret %s comes from %s, which %s does not set", name, sec.Environment, devEnv)
			}
		}
		if !d.prod {
			return
		}
		// What the production override adds: the keys for signed, encrypted WAL, the
		// MFA keys and the provider configuration of the sign-in service.
		for svc, names := range map[string][]string{
			"db": {"postgres_password", "hestami_signing_key"},
			"backup": {"postgres_password", "hestami_signing_key", "hestami_encryption_identity",
				"hestami_backup_daemon_client_secret", "hestami_backup_daemon_cookie_keys"},
			"auth": {"auth_database_url", "auth_secret", "hestami_mfa_keys", "hestami_auth_config", "hestami_backup_daemon_client_secret"},
		} {
			var got []string
			for _, sec := range service(t, p, svc).Secrets {
				got = append(got, sec.Source)
			}
			for _, n := range names {
				if !slices.Contains(got, n) {
					t.Errorf("production %s: secrets %v, want %s", svc, got, n)
				}
			}
		}
		if slices.ContainsFunc(service(t, p, "db").Secrets, func(s types.ServiceSecretConfig) bool { return s.Source == "hestami_encryption_identity" }) {
			t.Error("production db holds the encryption identity: it only pushes (docs/keys.md); compose.recovery.yaml adds it for a restore")
		}
	})
}

func TestRecoveryOverride(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, append(prodFiles, "compose.recovery.yaml"), prodEnv)
	db := service(t, p, "db")
	checkSecretFiles(t, "db", db)
	if got := env(db, "HESTAMI_ENCRYPTION_IDENTITY_FILE"); got != "/run/secrets/hestami_encryption_identity" {
		t.Errorf("recovery: db HESTAMI_ENCRYPTION_IDENTITY_FILE = %q: want the identity, to decrypt WAL while it replays", got)
	}
	if len(db.Ports) != 0 || db.ReadOnly != true {
		t.Errorf("recovery: db ports %v, read-only %v: the production lock-down must still hold", db.Ports, db.ReadOnly)
	}
}

// TestProductionLockdown: read-only root file systems, no capabilities, limits,
// restarts, bounded logs, the development identity provider off.
func TestProductionLockdown(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, prodFiles, prodEnv)
	for name, s := range p.Services {
		if !s.ReadOnly {
			t.Errorf("%s: root file system writable: read_only: true, with tmpfs where it writes", name)
		}
		if !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("%s: cap_drop %v: want ALL", name, s.CapDrop)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: security_opt %v: want no-new-privileges:true", name, s.SecurityOpt)
		}
		if s.Restart != types.RestartPolicyUnlessStopped && s.Restart != types.RestartPolicyAlways {
			t.Errorf("%s: restart %q: want unless-stopped", name, s.Restart)
		}
		if s.Deploy == nil || s.Deploy.Resources.Limits == nil || s.Deploy.Resources.Limits.NanoCPUs <= 0 || s.Deploy.Resources.Limits.MemoryBytes <= 0 {
			t.Errorf("%s: no CPU and memory limits (deploy.resources.limits)", name)
		}
		if s.Logging == nil || s.Logging.Options["max-size"] == "" {
			t.Errorf("%s: logs unbounded: logging options max-size, max-file", name)
		}
		if !slices.Contains(s.Tmpfs, "/tmp") {
			t.Errorf("%s: tmpfs %v: want /tmp writable on a read-only root", name, s.Tmpfs)
		}
		if _, ok := s.Networks["backend-dev"]; ok {
			t.Errorf("%s is on backend-dev in production", name)
		}
	}
	for _, name := range []string{"db", "backup"} {
		if !slices.Contains(service(t, p, name).Tmpfs, "/var/run/postgresql") {
			t.Errorf("%s: no tmpfs for /var/run/postgresql, where PostgreSQL puts its socket", name)
		}
	}
	auth := service(t, p, "auth")
	if got := env(auth, "HESTAMI_AUTH_DEV_MODE"); got != "false" {
		t.Errorf("production auth HESTAMI_AUTH_DEV_MODE = %q: the development identity provider signs anyone in", got)
	}
	if u, err := url.Parse(env(auth, "HESTAMI_AUTH_PUBLIC_URL")); err != nil || u.Scheme != "https" {
		t.Errorf("production auth public URL %q: want https", env(auth, "HESTAMI_AUTH_PUBLIC_URL"))
	}
	for _, name := range []string{"db", "backup"} {
		s := service(t, p, name)
		if env(s, "HESTAMI_ENCRYPTION_RECIPIENTS") == "" || env(s, "HESTAMI_SIGNING_KEY_FILE") == "" || env(s, "HESTAMI_SIGNING_PUBLIC_KEYS") == "" {
			t.Errorf("production %s: want encrypted, signed objects: HESTAMI_ENCRYPTION_RECIPIENTS, HESTAMI_SIGNING_KEY_FILE, HESTAMI_SIGNING_PUBLIC_KEYS", name)
		}
	}

	dev := mustLoad(t, devFiles, devEnv, "dev")
	if got := env(service(t, dev, "auth"), "HESTAMI_AUTH_DEV_MODE"); got != "true" {
		t.Errorf("development auth HESTAMI_AUTH_DEV_MODE = %q: want the development identity provider", got)
	}
	base := mustLoad(t, devFiles, "")
	if got := env(service(t, base, "auth"), "HESTAMI_AUTH_DEV_MODE"); got != "false" {
		t.Errorf("compose.yaml without an env file: auth HESTAMI_AUTH_DEV_MODE = %q: want it off unless asked for", got)
	}
}

// TestDatabase: the seed's settings, WAL archived and restored by hestami, and the
// volumes where each thing lives.
func TestDatabase(t *testing.T) {
	t.Parallel()
	forEachDeployment(t, func(t *testing.T, d deployment, p *types.Project) {
		db := service(t, p, "db")
		if len(db.Command) == 0 || db.Command[0] != "postgres" {
			t.Fatalf("db command %q: want postgres -c ...", db.Command)
		}
		set := settings(t, db.Command)
		for k, want := range map[string]string{
			"wal_level":       "replica",
			"archive_mode":    "on",
			"archive_command": "hestami wal push %p",
			"restore_command": "hestami wal fetch %f %p",
		} {
			if set[k] != want {
				t.Errorf("db %s = %q, want %q", k, set[k], want)
			}
		}
		if n, err := strconv.Atoi(set["archive_timeout"]); err != nil || n <= 0 || n > 3600 {
			t.Errorf("db archive_timeout = %q: want seconds, at most an hour (the RPO of a quiet server)", set["archive_timeout"])
		}
		if n, err := strconv.Atoi(set["max_wal_senders"]); err != nil || n < 2 {
			t.Errorf("db max_wal_senders = %q: want at least 2 (physical backups)", set["max_wal_senders"])
		}

		for _, v := range []string{"postgres_data", "postgres_backup", "postgres_wal_archive"} {
			if _, ok := p.Volumes[v]; !ok {
				t.Errorf("no volume %s", v)
			}
		}
		mountOf := func(s types.ServiceConfig, source string) string {
			for _, v := range s.Volumes {
				if v.Type == types.VolumeTypeVolume && v.Source == source {
					return v.Target
				}
			}
			return ""
		}
		data := mountOf(db, "postgres_data")
		if pgdata := env(db, "PGDATA"); data == "" || !strings.HasPrefix(pgdata, data+"/") {
			t.Errorf("db PGDATA %q is not below the postgres_data volume (mounted at %q)", pgdata, data)
		}
		for _, name := range []string{"db", "backup"} {
			s := service(t, p, name)
			for variable, volume := range map[string]string{"HESTAMI_STORAGE_URL": "postgres_backup", "HESTAMI_WAL_STORAGE_URL": "postgres_wal_archive"} {
				at := mountOf(s, volume)
				if got := env(s, variable); at == "" || got != "file://"+at {
					t.Errorf("%s: %s = %q, volume %s mounted at %q: want file://%s", name, variable, got, volume, at, at)
				}
			}
		}
		if mountOf(db, "postgres_backup") == mountOf(db, "postgres_wal_archive") {
			t.Error("the WAL archive must be a volume of its own")
		}
		backup := service(t, p, "backup")
		if !slices.Equal(backup.Command[:3], []string{"hestami", "backup", "daemon"}) {
			t.Errorf("backup command %q: want hestami backup daemon", backup.Command)
		}
		if env(backup, "PGHOST") != "db" {
			t.Errorf("backup PGHOST = %q: want db (replication connections need the server, not PgBouncer)", env(backup, "PGHOST"))
		}
	})
}

// TestAuthConnectsDirectly: the sign-in service LISTENs for session revocations, which
// transaction pooling breaks: its URL names db, not pgbouncer.
func TestAuthConnectsDirectly(t *testing.T) {
	t.Parallel()
	p := mustLoad(t, devFiles, devEnv, "dev")
	u, err := url.Parse(p.Environment["AUTH_DATABASE_URL"])
	if err != nil {
		t.Fatalf("%s: AUTH_DATABASE_URL: %v", devEnv, err)
	}
	pw, _ := u.User.Password()
	if u.Hostname() != "db" || u.Port() != "5432" || u.User.Username() != p.Environment["POSTGRES_USER"] ||
		pw != p.Environment["POSTGRES_PASSWORD"] || u.Path != "/"+p.Environment["POSTGRES_DB"] {
		t.Errorf("%s: AUTH_DATABASE_URL expands to %s: want the env file's user, password and database on db:5432", devEnv, u.Redacted())
	}
	auth := service(t, p, "auth")
	if env(auth, "HESTAMI_DATABASE_URL_FILE") == "" {
		t.Error("auth: no HESTAMI_DATABASE_URL_FILE")
	}
	if _, ok := auth.DependsOn["pgbouncer"]; ok {
		t.Error("auth depends on pgbouncer: it must connect to db directly")
	}
}

func TestPgBouncer(t *testing.T) {
	t.Parallel()
	ini := readINI(t, filepath.Join(repoRoot, "deploy", "pgbouncer", "pgbouncer.ini"))
	pgb := ini["pgbouncer"]
	if pgb["pool_mode"] != "transaction" {
		t.Errorf("pgbouncer.ini pool_mode = %q, want transaction", pgb["pool_mode"])
	}
	if !strings.Contains(ini["databases"]["*"], "host=db") {
		t.Errorf("pgbouncer.ini [databases] * = %q: want host=db", ini["databases"]["*"])
	}
	if n, _ := strconv.Atoi(pgb["max_prepared_statements"]); n <= 0 {
		t.Errorf("pgbouncer.ini max_prepared_statements = %q: drivers' prepared statements need it in transaction mode", pgb["max_prepared_statements"])
	}
	if n, _ := strconv.Atoi(pgb["max_db_connections"]); n <= 0 || n >= 100 {
		t.Errorf("pgbouncer.ini max_db_connections = %q: want fewer than the server's max_connections (100)", pgb["max_db_connections"])
	}
	forEachDeployment(t, func(t *testing.T, d deployment, p *types.Project) {
		s := service(t, p, "pgbouncer")
		var mountedINI bool
		for _, v := range s.Volumes {
			mountedINI = mountedINI || (v.Target == "/etc/pgbouncer/pgbouncer.ini" && v.ReadOnly &&
				v.Source == filepath.Join(absRoot(t), "deploy", "pgbouncer", "pgbouncer.ini"))
		}
		if !mountedINI {
			t.Errorf("pgbouncer: deploy/pgbouncer/pgbouncer.ini is not mounted read-only at /etc/pgbouncer/pgbouncer.ini: %+v", s.Volumes)
		}
		if env(s, "AUTH_FILE") != pgb["auth_file"] || !strings.HasPrefix(pgb["auth_file"], "/run/secrets/") {
			t.Errorf("pgbouncer AUTH_FILE %q, pgbouncer.ini auth_file %q: want the same secret", env(s, "AUTH_FILE"), pgb["auth_file"])
		}
		checkSecretFiles(t, "pgbouncer", s)
		if !slices.Contains(s.HealthCheck.Test, pgb["listen_port"]) {
			t.Errorf("pgbouncer healthcheck %q does not ask listen_port %s", s.HealthCheck.Test, pgb["listen_port"])
		}
		for _, pp := range s.Ports {
			if strconv.Itoa(int(pp.Target)) != pgb["listen_port"] {
				t.Errorf("pgbouncer publishes container port %d, listens on %s", pp.Target, pgb["listen_port"])
			}
		}
		if !d.prod {
			user, pw := p.Environment["POSTGRES_USER"], p.Environment["POSTGRES_PASSWORD"]
			if got, want := p.Environment["PGBOUNCER_USERLIST"], `"`+user+`" "`+pw+`"`; got != want {
				t.Errorf("%s: PGBOUNCER_USERLIST expands to %q, want %q", devEnv, got, want)
			}
		}
	})
}

// readINI reads an ini file's sections (";" and "#" comments).
func readINI(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == ';' || line[0] == '#':
		case line[0] == '[' && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is not key = value in a section", path, i+1, line)
			}
			out[section][strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// TestEnvExamples: the variables the issue names, and nothing in the production
// example that looks like a secret.
func TestEnvExamples(t *testing.T) {
	t.Parallel()
	dev := mustLoad(t, devFiles, devEnv, "dev").Environment
	if dev["PGADMIN_EMAIL"] != "admin@hestami.local" {
		t.Errorf("%s: PGADMIN_EMAIL = %q, want admin@hestami.local", devEnv, dev["PGADMIN_EMAIL"])
	}
	for _, k := range []string{"PGADMIN_PASSWORD", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} {
		if dev[k] == "" {
			t.Errorf("%s: %s is not set", devEnv, k)
		}
	}
	if len(dev["HESTAMI_AUTH_SECRET"]) < 32 {
		t.Errorf("%s: HESTAMI_AUTH_SECRET has %d characters: auth serve wants at least 32", devEnv, len(dev["HESTAMI_AUTH_SECRET"]))
	}
	prod := mustLoad(t, prodFiles, prodEnv).Environment
	for k, v := range prod {
		if secretName.MatchString(k) && v != "" {
			t.Errorf("%s sets %s: production secrets are files in HESTAMI_SECRETS_DIR", prodEnv, k)
		}
	}
}

// TestDeploymentDoc: docs/deployment.md names every production secret to create and
// the commands that start each deployment.
func TestDeploymentDoc(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deployment.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	p := mustLoad(t, prodFiles, prodEnv)
	for name := range p.Secrets {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("docs/deployment.md does not name the production secret `%s`", name)
		}
	}
	for _, s := range []string{
		"cp .env.dev.example .env.dev",
		"docker compose --env-file .env.dev --profile dev up",
		"docker compose --env-file .env.prod -f compose.yaml -f compose.prod.yaml up -d",
		"hestami wal push %p",
		"hestami wal fetch %f %p",
		"compose.recovery.yaml",
	} {
		if !strings.Contains(doc, s) {
			t.Errorf("docs/deployment.md does not say %q", s)
		}
	}
}
