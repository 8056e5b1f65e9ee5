package docs_test

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// cliHelp is what `hestami PATH --help` says about one command.
type cliHelp struct {
	subcommands map[string]bool
	runnable    bool            // it runs by itself, not only its subcommands
	flags       map[string]bool // --name and -x, local and global
	takesValue  map[string]bool // flags followed by a value (cobra prints their type)
}

// cli answers questions about the real hestami binary's commands from their --help.
type cli struct {
	bin   string
	mu    sync.Mutex
	cache map[string]*cliHelp
	errs  map[string]error
}

func newCLI(bin string) *cli {
	return &cli{bin: bin, cache: map[string]*cliHelp{}, errs: map[string]error{}}
}

var (
	helpFlagRe    = regexp.MustCompile(`^\s+(?:-(\w), )?--([\w-]+)(?: (\w+))?(?:\s{2,}|$)`)
	helpCommandRe = regexp.MustCompile(`^\s+([\w-]+)(?:\s|$)`)
)

// help runs `hestami PATH... --help` once per path.
func (c *cli) help(path []string) (*cliHelp, error) {
	key := strings.Join(path, " ")
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.cache[key]; ok {
		return h, c.errs[key]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append(append([]string{}, path...), "--help")...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	out, err := cmd.CombinedOutput()
	h := &cliHelp{subcommands: map[string]bool{}, flags: map[string]bool{}, takesValue: map[string]bool{}}
	if err != nil {
		err = fmt.Errorf("hestami %s --help: %v\n%s", key, err, out)
	}
	section := ""
	for _, line := range strings.Split(string(out), "\n") {
		if line != "" && !strings.HasPrefix(line, " ") {
			section = strings.TrimSuffix(strings.TrimSpace(line), ":")
			continue
		}
		switch section {
		case "Usage":
			if u := strings.TrimSpace(line); u != "" && !strings.HasSuffix(u, "[command]") {
				h.runnable = true
			}
		case "Available Commands", "Additional Commands":
			if m := helpCommandRe.FindStringSubmatch(line); m != nil {
				h.subcommands[m[1]] = true
			}
		case "Flags", "Global Flags":
			if m := helpFlagRe.FindStringSubmatch(line); m != nil {
				long := "--" + m[2]
				h.flags[long] = true
				if m[1] != "" {
					h.flags["-"+m[1]] = true
				}
				if m[3] != "" {
					h.takesValue[long] = true
					if m[1] != "" {
						h.takesValue["-"+m[1]] = true
					}
				}
			}
		}
	}
	// Help always has a Usage section: output without one is not help (a panic, a
	// message from a command that ignores --help).
	if err == nil && !strings.Contains(string(out), "Usage:") {
		err = fmt.Errorf("hestami %s --help printed no usage:\n%s", key, out)
	}
	c.cache[key], c.errs[key] = h, err
	return h, err
}

// check verifies that args (what follows `hestami`) names a real command and only
// flags that command has. It returns the command path and a problem, or "". With
// group, a command group alone (prose naming `hestami db`) is not a problem.
func (c *cli) check(args []string, group bool) (path []string, problem string) {
	h, err := c.help(nil)
	if err != nil {
		return nil, err.Error()
	}
	var flags []string
	positional := false
	for i := 0; i < len(args); i++ {
		w := args[i]
		if w == "--" {
			break // the rest goes to another program (db psql -- ARGS)
		}
		if strings.HasPrefix(w, "-") && len(w) > 1 {
			name, _, hasValue := strings.Cut(w, "=")
			flags = append(flags, name)
			if h.takesValue[name] && !hasValue {
				i++
			}
			continue
		}
		if positional {
			continue
		}
		if h.subcommands[w] {
			path = append(path, w)
			if h, err = c.help(path); err != nil {
				return path, err.Error()
			}
			continue
		}
		if len(h.subcommands) > 0 && !h.runnable {
			return path, fmt.Sprintf("%q is not a command of `hestami %s` (it has: %s)", w, strings.Join(path, " "), keys(h.subcommands))
		}
		positional = true
	}
	if len(h.subcommands) > 0 && !h.runnable && !(group && len(args) == len(path)) {
		return path, fmt.Sprintf("`hestami %s` needs a subcommand (one of: %s)", strings.Join(path, " "), keys(h.subcommands))
	}
	for _, f := range flags {
		if !h.flags[f] {
			return path, fmt.Sprintf("`hestami %s` has no flag %s (see hestami %s --help)", strings.Join(path, " "), f, strings.Join(path, " "))
		}
	}
	return path, ""
}

func keys(m map[string]bool) string {
	return strings.Join(slices.Sorted(maps.Keys(m)), ", ")
}

func TestCLICheckFindsMistakes(t *testing.T) {
	t.Parallel()
	c := newCLI(hestamiBinary(t))
	tests := []struct {
		name    string
		args    string
		problem string // a part of the problem; empty: none
	}{
		{"real command", "backup verify latest --restore-test", ""},
		{"global flag first", "--config /etc/hestami/hestami.yaml wal push pg_wal/x", ""},
		{"flag with value", "restore --to /srv/x --target-time 2026-12-04T09:29:59Z --target-action=promote", ""},
		{"subcommand under a command with flags", "restore logical --database app --into app2", ""},
		{"unknown flag", "backup list --format json", "has no flag --format"},
		{"unknown command", "backup frobnicate", `"frobnicate" is not a command of ` + "`hestami backup`"},
		{"unknown top-level command", "backups list", `"backups" is not a command`},
		{"group without subcommand", "wal", "needs a subcommand"},
		{"flag of another command", "wal status --type physical", "has no flag --type"},
		{"the longest name of a listing (one space before its description)", "healthcheck http://127.0.0.1:8080/healthz", ""},
		{"argument that looks like a command", "backup show latest --json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, problem := c.check(strings.Fields(tt.args), false)
			if tt.problem == "" && problem != "" {
				t.Errorf("hestami %s: problem %q, want none", tt.args, problem)
			}
			if tt.problem != "" && !strings.Contains(problem, tt.problem) {
				t.Errorf("hestami %s: problem %q, want one containing %q", tt.args, problem, tt.problem)
			}
		})
	}
}
