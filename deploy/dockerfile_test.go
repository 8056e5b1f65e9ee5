package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, COPY...
	args string
}

// stage is a Dockerfile build stage.
type stage struct {
	image, name string
	line        int
	body        []instruction
}

// readDockerfile splits a Dockerfile (relative to the repository root) into stages.
func readDockerfile(t *testing.T, rel string) []stage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	var ins []instruction
	var cur *instruction
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if cur == nil && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur != nil && strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		cont := strings.HasSuffix(line, `\`)
		line = strings.TrimSuffix(line, `\`)
		if cur == nil {
			cmd, args, _ := strings.Cut(line, " ")
			cur = &instruction{line: i + 1, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		} else {
			cur.args += " " + strings.TrimSpace(line)
		}
		if !cont {
			ins = append(ins, *cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("%s: the last instruction ends with a line continuation", rel)
	}
	var stages []stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{line: in.line}
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:] // --platform=...
			}
			if len(f) == 0 {
				t.Fatalf("%s:%d: FROM without an image", rel, in.line)
			}
			s.image = f[0]
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s:%d: %s before the first FROM", rel, in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	if len(stages) == 0 {
		t.Fatalf("%s: no FROM", rel)
	}
	return stages
}

// goVersion is the go directive of go.mod.
func goVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go ([0-9.]+)\s*$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

var dockerfiles = []string{"Dockerfile", "deploy/postgres/Dockerfile"}

func TestDockerfiles(t *testing.T) {
	t.Parallel()
	builds := map[string][]instruction{}
	for _, rel := range dockerfiles {
		t.Run(rel, func(t *testing.T) {
			stages := readDockerfile(t, rel)
			names := map[string]bool{}
			for _, s := range stages {
				if names[s.image] {
					names[s.name] = true
					continue // FROM an earlier stage
				}
				repo, tag, digest := splitImage(s.image)
				if strings.Contains(s.image, "$") {
					t.Errorf("%s:%d: FROM %s: a variable image cannot be checked: name it", rel, s.line, s.image)
				}
				if digest == "" && (tag == "" || tag == "latest") {
					t.Errorf("%s:%d: FROM %s is not pinned: give a version tag, not latest", rel, s.line, s.image)
				}
				switch repo {
				case "golang":
					// The toolchain go.mod asks for, so the build needs no download.
					if want := goVersion(t); !strings.HasPrefix(tag, want+"-") && tag != want {
						t.Errorf("%s:%d: FROM %s: want golang:%s (go.mod's go directive)", rel, s.line, s.image, want)
					}
				case "postgres":
					if !regexp.MustCompile(`^17\.[0-9]+`).MatchString(tag) {
						t.Errorf("%s:%d: FROM %s: want postgres 17 at a minor version (17.N-...)", rel, s.line, s.image)
					}
				}
				names[s.name] = true
			}
			final := stages[len(stages)-1]
			user := ""
			for _, in := range final.body {
				if in.cmd == "USER" {
					user = in.args
				}
			}
			if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
				t.Errorf("%s: the final stage runs as %q: want a non-root USER", rel, user)
			}
			var copied bool
			for _, in := range final.body {
				copied = copied || (in.cmd == "COPY" && strings.HasPrefix(in.args, "--from=build ") && strings.HasSuffix(in.args, " /usr/local/bin/hestami"))
			}
			if !copied {
				t.Errorf("%s: the final stage does not copy the build stage's hestami to /usr/local/bin/hestami (on PATH, for archive_command and healthchecks)", rel)
			}
			var build []instruction
			for _, s := range stages {
				if s.name == "build" {
					build = s.body
				}
			}
			if build == nil {
				t.Fatalf("%s: no stage named build", rel)
			}
			var goBuild string
			for _, in := range build {
				if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
					goBuild = in.args
				}
			}
			for _, want := range []string{"-trimpath", "-X main.version=${VERSION}", "./cmd/hestami", "-o /out/hestami"} {
				if !strings.Contains(goBuild, want) {
					t.Errorf("%s: the build stage's go build %q lacks %s", rel, goBuild, want)
				}
			}
			var cgoOff bool
			for _, in := range build {
				cgoOff = cgoOff || (in.cmd == "ENV" && regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(in.args))
			}
			if !cgoOff {
				t.Errorf("%s: the build stage does not set CGO_ENABLED=0: the binary must be static (distroless static)", rel)
			}
			for i := range build {
				build[i].line = 0
			}
			builds[rel] = build
		})
	}
	// One build, two images: the same steps, so the same binary and shared cache.
	a, b := builds[dockerfiles[0]], builds[dockerfiles[1]]
	if a != nil && b != nil && !equalInstructions(a, b) {
		t.Errorf("the build stages of %s and %s differ: keep them the same", dockerfiles[0], dockerfiles[1])
	}

	// The root image: the stage compose.yaml builds for auth, ending in hestami.
	stages := readDockerfile(t, "Dockerfile")
	final := stages[len(stages)-1]
	if final.name != "hestami" || !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
		t.Errorf("Dockerfile: final stage %q FROM %s: want the stage hestami on distroless static (compose.yaml's auth builds target hestami)", final.name, final.image)
	}
	for _, in := range final.body {
		if in.cmd == "ENTRYPOINT" {
			var ep []string
			if err := json.Unmarshal([]byte(in.args), &ep); err != nil || len(ep) != 1 || ep[0] != "hestami" {
				t.Errorf("Dockerfile: ENTRYPOINT %s: want [\"hestami\"] (exec form)", in.args)
			}
		}
	}
	// -X main.version sets this variable: renamed, the flag would do nothing.
	program, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "hestami", "program.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^var version = `).Match(program) {
		t.Error("cmd/hestami/program.go has no `var version =`: the Dockerfiles' -X main.version sets nothing")
	}
}

func equalInstructions(a, b []instruction) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].cmd != b[i].cmd || a[i].args != b[i].args {
			return false
		}
	}
	return true
}

// TestPostgresImage: the database image allows the backup container's replication
// connections, and prepares its volumes' mount points for the postgres user.
func TestPostgresImage(t *testing.T) {
	t.Parallel()
	stages := readDockerfile(t, "deploy/postgres/Dockerfile")
	final := stages[len(stages)-1]
	var body strings.Builder
	for _, in := range final.body {
		body.WriteString(in.cmd + " " + in.args + "\n")
	}
	for _, dir := range []string{"/backup", "/wal-archive", "/var/lib/hestami"} {
		if !strings.Contains(body.String(), "chown postgres:postgres") || !strings.Contains(body.String(), dir) {
			t.Errorf("deploy/postgres/Dockerfile does not create %s owned by postgres (the volume mounted there takes its owner)", dir)
		}
	}
	if !strings.Contains(body.String(), "COPY deploy/postgres/initdb.d/ /docker-entrypoint-initdb.d/") {
		t.Error("deploy/postgres/Dockerfile does not install deploy/postgres/initdb.d")
	}
	script, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "postgres", "initdb.d", "10-replication.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`host replication all all %s`).Match(script) || !strings.Contains(string(script), `"$PGDATA/pg_hba.conf"`) {
		t.Errorf("10-replication.sh does not add a replication line to pg_hba.conf:\n%s", script)
	}
}

// TestDockerignore: the build context has what the builds copy, and not the
// repository's history, local state, env files or secrets.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// The check below is filepath.Match per path prefix: keep to what it reads
		// the same way as docker.
		if strings.Contains(line, "**") || strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: %q: keep to simple patterns (no ** or !), which this test understands", line)
		}
		patterns = append(patterns, strings.TrimSuffix(strings.TrimPrefix(line, "/"), "/"))
	}
	excluded := func(path string) bool {
		parts := strings.Split(path, "/")
		for i := range parts {
			prefix := strings.Join(parts[:i+1], "/")
			for _, p := range patterns {
				if ok, _ := filepath.Match(p, prefix); ok {
					return true
				}
			}
		}
		return false
	}
	for path, want := range map[string]bool{
		"go.mod": false, "go.sum": false, "cmd/hestami/main.go": false, "auth/auth.go": false,
		"deploy/postgres/initdb.d/10-replication.sh": false,
		".git/HEAD": true, ".hestami/pg/postgresql.conf": true, ".env.dev": true, ".env.prod": true,
		"hestami": true, "bin/hestami": true, "secrets/auth_secret": true, "bench/out/report.txt": true,
	} {
		if got := excluded(path); got != want {
			t.Errorf(".dockerignore: %s excluded: %v, want %v", path, got, want)
		}
	}
}
