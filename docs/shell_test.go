package docs_test

import (
	"fmt"
	"path"
	"strings"
	"testing"

	"mvdan.cc/sh/v3/syntax"
)

// A command is one simple command of a shell block, its words as the shell would see
// them, with expansions kept as written ("$PGDATA").
type command struct {
	line  int      // in the Markdown file
	words []string // unquoted, expansions as written: "$PGDATA"
	raw   []string // as written, quotes and all, to run again
}

// shellCommands parses a shell script (bash) and returns its simple commands,
// including those inside pipelines, lists, loops, $(...) and `sh -c '...'`. firstLine
// is the file line of the script's first line.
func shellCommands(script string, firstLine int) ([]command, error) {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(script), "")
	if err != nil {
		return nil, err
	}
	var out []command
	var walkErr error
	syntax.Walk(f, func(n syntax.Node) bool {
		ce, ok := n.(*syntax.CallExpr)
		if !ok || len(ce.Args) == 0 {
			return true
		}
		c := command{line: firstLine + int(ce.Pos().Line()) - 1}
		for _, w := range ce.Args {
			c.words = append(c.words, wordString(w))
			var sb strings.Builder
			_ = syntax.NewPrinter().Print(&sb, w)
			c.raw = append(c.raw, sb.String())
		}
		out = append(out, c)
		// sh -c 'script' (also behind sudo, docker compose exec...): its commands too.
		for i := 0; i+2 < len(c.words); i++ {
			if (c.words[i] == "sh" || c.words[i] == "bash") && c.words[i+1] == "-c" {
				inner, err := shellCommands(c.words[i+2], c.line)
				if err != nil && walkErr == nil {
					walkErr = fmt.Errorf("line %d: %s -c script: %w", c.line, c.words[i], err)
				}
				out = append(out, inner...)
				break
			}
		}
		return true
	})
	return out, walkErr
}

// wordString renders a word without its quotes; expansions are kept as written.
func wordString(w *syntax.Word) string {
	var b strings.Builder
	var parts func([]syntax.WordPart)
	parts = func(ps []syntax.WordPart) {
		for _, p := range ps {
			switch p := p.(type) {
			case *syntax.Lit:
				b.WriteString(p.Value)
			case *syntax.SglQuoted:
				b.WriteString(p.Value)
			case *syntax.DblQuoted:
				parts(p.Parts)
			default:
				var sb strings.Builder
				_ = syntax.NewPrinter().Print(&sb, p)
				b.WriteString(sb.String())
			}
		}
	}
	parts(w.Parts)
	return b.String()
}

// hestamiInvocation returns the arguments of the hestami command that c runs, directly
// or through a wrapper (sudo, runuser, env, timeout, docker compose exec|run SERVICE),
// and whether it runs one.
func hestamiInvocation(words []string) ([]string, bool) {
	for i := 0; i < len(words); {
		w := words[i]
		if path.Base(w) == "hestami" {
			return words[i+1:], true
		}
		switch w {
		case "sudo", "runuser", "su", "exec", "nice", "nohup", "time", "command", "setpriv", "gosu":
			i++
			for i < len(words) && strings.HasPrefix(words[i], "-") {
				if words[i] == "--" {
					i++
					break
				}
				if words[i] == "-u" || words[i] == "-g" || words[i] == "--user" || words[i] == "--group" {
					i++
				}
				i++
			}
			if w == "gosu" && i < len(words) { // gosu USER COMMAND
				i++
			}
		case "env":
			i++
			for i < len(words) && (strings.HasPrefix(words[i], "-") || strings.Contains(words[i], "=")) {
				i++
			}
		case "timeout":
			i++
			for i < len(words) && strings.HasPrefix(words[i], "-") {
				i++
			}
			i++ // the duration
		case "docker":
			dc, ok := parseCompose(words)
			if !ok || dc.command == nil {
				return nil, false
			}
			words, i = dc.command, 0
		default:
			return nil, false
		}
	}
	return nil, false
}

// A composeCall is a `docker compose` command line.
type composeCall struct {
	files    []string // -f FILE
	sub      string   // up, stop, exec...
	services []string // the services it names
	command  []string // exec|run: the command run in the container
}

// composeGlobalValueFlags are docker compose's global options that take a value.
var composeGlobalValueFlags = map[string]bool{
	"-f": true, "--file": true, "-p": true, "--project-name": true, "--env-file": true,
	"--profile": true, "--project-directory": true, "--ansi": true, "--progress": true, "--parallel": true,
}

// composeValueFlags are, per subcommand the documentation uses, its options that
// take a value.
var composeValueFlags = map[string]map[string]bool{
	"exec":    {"-u": true, "--user": true, "-e": true, "--env": true, "-w": true, "--workdir": true, "--index": true},
	"run":     {"-u": true, "--user": true, "-e": true, "--env": true, "-w": true, "--workdir": true, "--entrypoint": true, "--name": true, "-v": true, "--volume": true, "-p": true, "--publish": true, "-l": true, "--label": true, "--pull": true},
	"logs":    {"-n": true, "--tail": true, "--since": true, "--until": true, "--index": true},
	"stop":    {"-t": true, "--timeout": true},
	"restart": {"-t": true, "--timeout": true},
	"down":    {"-t": true, "--timeout": true, "--rmi": true},
	"up":      {"-t": true, "--timeout": true, "--wait-timeout": true, "--scale": true, "--pull": true, "--exit-code-from": true},
	"ps":      {"--format": true, "--status": true, "--filter": true},
	"cp":      {"--index": true},
}

// parseCompose parses `docker compose [OPTIONS] SUBCOMMAND [OPTIONS] [SERVICE...]`
// (and `docker-compose`); ok is false for other docker commands.
func parseCompose(words []string) (composeCall, bool) {
	var c composeCall
	i := 0
	switch {
	case len(words) >= 2 && words[0] == "docker" && words[1] == "compose":
		i = 2
	case len(words) >= 1 && words[0] == "docker-compose":
		i = 1
	default:
		return c, false
	}
	// Global options, then the subcommand.
	for ; i < len(words) && strings.HasPrefix(words[i], "-"); i++ {
		name, _, hasValue := strings.Cut(words[i], "=")
		if composeGlobalValueFlags[name] && !hasValue && i+1 < len(words) {
			i++
			if name == "-f" || name == "--file" {
				c.files = append(c.files, words[i])
			}
		}
	}
	if i == len(words) {
		return c, true
	}
	c.sub = words[i]
	i++
	takesCommand := c.sub == "exec" || c.sub == "run"
	for ; i < len(words); i++ {
		w := words[i]
		if strings.HasPrefix(w, "-") {
			name, _, hasValue := strings.Cut(w, "=")
			if composeValueFlags[c.sub][name] && !hasValue {
				i++
			}
			continue
		}
		c.services = append(c.services, w)
		if takesCommand {
			c.command = words[i+1:]
			break
		}
	}
	return c, true
}

func TestShellCommands(t *testing.T) {
	t.Parallel()
	script := `export PGUSER="$POSTGRES_USER"
until [ "$(psql -XAtc 'SELECT 1' 2>/dev/null)" = 1 ]; do sleep 5; done
sudo -u postgres sh -c 'cd "$PGDATA" && hestami --config /etc/h.yaml wal push pg_wal/X'
hestami restore --to "$PGDATA" \
  --target-time "$TARGET_TIME" --move-aside | tee /tmp/log
docker compose --env-file .env.prod -f compose.yaml exec -e TMPDIR=/x backup hestami backup verify latest
docker compose logs -f --tail 20 db pgbouncer
docker compose run --rm --no-deps --entrypoint bash db
timeout 5 env A=1 hestami wal status
echo hestami backup list
`
	cmds, err := shellCommands(script, 10)
	if err != nil {
		t.Fatal(err)
	}
	var invocations []string
	for _, c := range cmds {
		if args, ok := hestamiInvocation(c.words); ok {
			invocations = append(invocations, fmt.Sprintf("%d: %s", c.line, strings.Join(args, " ")))
		}
	}
	want := []string{
		"12: --config /etc/h.yaml wal push pg_wal/X",
		"13: restore --to $PGDATA --target-time $TARGET_TIME --move-aside",
		"15: backup verify latest",
		"18: wal status",
	}
	if strings.Join(invocations, "\n") != strings.Join(want, "\n") {
		t.Errorf("hestami invocations:\n%s\nwant:\n%s", strings.Join(invocations, "\n"), strings.Join(want, "\n"))
	}

	composeTests := []struct {
		line     string
		sub      string
		services string
		command  string
	}{
		{"docker compose --env-file .env.prod -f compose.yaml exec -e TMPDIR=/x backup hestami backup verify latest", "exec", "backup", "hestami backup verify latest"},
		{"docker compose logs -f --tail 20 db pgbouncer", "logs", "db pgbouncer", ""},
		{"docker compose run --rm --no-deps --entrypoint bash db", "run", "db", ""},
		{"docker compose stop -t 30 auth backup", "stop", "auth backup", ""},
		{"docker-compose up -d", "up", "", ""},
	}
	for _, tt := range composeTests {
		c, ok := parseCompose(strings.Fields(tt.line))
		if !ok || c.sub != tt.sub || strings.Join(c.services, " ") != tt.services || strings.Join(c.command, " ") != tt.command {
			t.Errorf("parseCompose(%q) = %+v, %v; want %s, services %q, command %q", tt.line, c, ok, tt.sub, tt.services, tt.command)
		}
	}
	if _, ok := parseCompose([]string{"docker", "volume", "rm", "x"}); ok {
		t.Error("docker volume rm taken for a compose command")
	}
}
