package docs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/hestami/hestami/pgtest"
)

// repoRoot is the repository's root: this package is its docs directory.
const repoRoot = ".."

// documentPaths returns the Markdown files whose commands are checked, relative to
// the repository root: docs/*.md, docs/runbooks/*.md and the README.
func documentPaths(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"docs/*.md", "docs/runbooks/*.md"} {
		m, err := filepath.Glob(filepath.Join(repoRoot, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			rel, err := filepath.Rel(repoRoot, p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, filepath.ToSlash(rel))
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d Markdown files under %s/docs: is the test running in the docs directory?", len(out), repoRoot)
	}
	return append(out, "README.md")
}

// hestamiBinary builds the hestami command once per test process.
func hestamiBinary(t *testing.T) string {
	t.Helper()
	return pgtest.Binary(t)
}

// composeServices returns the services of compose.yaml and of the compose files
// named (relative to the repository root).
func composeServices(t *testing.T, extra ...string) map[string]bool {
	t.Helper()
	services := map[string]bool{}
	for _, name := range append([]string{"compose.yaml"}, extra...) {
		data, err := os.ReadFile(filepath.Join(repoRoot, name))
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		var f struct {
			Services map[string]any `yaml:"services"`
		}
		if err := yaml.Unmarshal(data, &f); err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		for s := range f.Services {
			services[s] = true
		}
	}
	return services
}

// spanWords splits an inline code span such as `hestami backup verify ID\|latest
// [--restore-test]` into the words of one invocation: optional parts are kept,
// alternatives reduced to the first.
func spanWords(text string) []string {
	var out []string
	for _, w := range strings.Fields(text) {
		w = strings.Trim(w, "[]")
		if w == "" || w == "|" || w == `\|` || w == "..." || w == "…" {
			continue
		}
		if before, _, ok := strings.Cut(w, "|"); ok {
			w = strings.TrimSuffix(before, `\`)
		}
		out = append(out, w)
	}
	return out
}

// TestCommandsExist runs `hestami PATH --help` for every hestami command shown in the
// documentation — in shell blocks and in inline code that starts with "hestami " — and
// fails for a command or flag the binary does not have. docker compose commands must
// name services of compose.yaml.
func TestCommandsExist(t *testing.T) {
	t.Parallel()
	c := newCLI(hestamiBinary(t))
	services := composeServices(t, "compose.prod.yaml")
	checked := map[string]int{}
	for _, rel := range documentPaths(t) {
		d := readDocument(t, repoRoot, rel)
		checkArgs := func(line int, args []string, group bool) {
			checked[rel]++
			if _, problem := c.check(args, group); problem != "" {
				t.Errorf("%s:%d: hestami %s: %s", rel, line, strings.Join(args, " "), problem)
			}
		}
		for _, b := range d.blocks {
			if !isShell(b.lang) {
				continue
			}
			cmds, err := shellCommands(b.text, b.line+1)
			if err != nil {
				t.Errorf("%s:%d: the %s block is not valid shell: %v", rel, b.line, b.lang, err)
				continue
			}
			for _, cmd := range cmds {
				if args, ok := hestamiInvocation(cmd.words); ok {
					checkArgs(cmd.line, args, false)
				}
				if dc, ok := parseCompose(cmd.words); ok {
					for _, s := range dc.services {
						if !services[s] {
							t.Errorf("%s:%d: docker compose %s names service %q, which compose.yaml does not have (it has: %s)",
								rel, cmd.line, dc.sub, s, keys(services))
						}
					}
				}
			}
		}
		for _, s := range d.spans {
			// `hestami backup list`, `hestami --config F ...`; not `hestami COMMAND`
			// nor a message such as `hestami CRITICAL: ...`.
			if words := spanWords(s.text); len(words) > 1 && words[0] == "hestami" && (words[1][0] == '-' || (words[1][0] >= 'a' && words[1][0] <= 'z')) {
				checkArgs(s.line, words[1:], true)
			}
		}
	}
	for _, rel := range []string{"docs/runbooks/full-restore.md", "docs/runbooks/pitr.md", "docs/backup.md", "docs/runbooks/verification.md"} {
		if checked[rel] < 3 {
			t.Errorf("%s: found %d hestami commands to check, want its commands found (is the file there, are its blocks ```sh?)", rel, checked[rel])
		}
	}
}

// TestLinksResolve checks every relative link of the documentation: the file exists
// and, for a link into a Markdown file, so does the heading it points at.
func TestLinksResolve(t *testing.T) {
	t.Parallel()
	problems, links := linkProblems(t, repoRoot, documentPaths(t))
	for _, p := range problems {
		t.Error(p)
	}
	if links < 20 {
		t.Errorf("found only %d relative links in the documentation: is the link scanner broken?", links)
	}
}

// linkProblems checks the relative links of the Markdown files rels (relative to
// root) and returns what is wrong with them, and how many links it checked.
func linkProblems(t *testing.T, root string, rels []string) (problems []string, links int) {
	t.Helper()
	docs := map[string]*document{}
	get := func(rel string) *document {
		if d, ok := docs[rel]; ok {
			return d
		}
		d := readDocument(t, root, rel)
		docs[rel] = d
		return d
	}
	for _, rel := range rels {
		for _, l := range get(rel).links {
			if strings.Contains(l.target, "://") || strings.HasPrefix(l.target, "mailto:") {
				continue
			}
			links++
			file, anchor, _ := strings.Cut(l.target, "#")
			target := rel
			if file != "" {
				target = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(rel), file)))
			}
			switch {
			case strings.HasPrefix(target, "../") || filepath.IsAbs(file):
				problems = append(problems, fmt.Sprintf("%s:%d: link %s leaves the repository", rel, l.line, l.target))
				continue
			case !exists(filepath.Join(root, target)):
				problems = append(problems, fmt.Sprintf("%s:%d: link %s: %s does not exist", rel, l.line, l.target, target))
				continue
			}
			if anchor == "" || !strings.HasSuffix(target, ".md") {
				continue
			}
			if td := get(target); !td.anchors[anchor] {
				problems = append(problems, fmt.Sprintf("%s:%d: link %s: %s has no heading with anchor #%s (its headings: %s)",
					rel, l.line, l.target, target, anchor, strings.Join(td.headings, "; ")))
			}
		}
	}
	return problems, links
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestLinkProblemsFound(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	files := map[string]string{
		"docs/a.md": "# A\n\n## Step one\n\n" +
			"[ok](b.md) [ok](b.md#the-end) [ok](#step-one) [ok](../README.md) [web](https://example.com/x.md)\n" +
			"[no file](c.md) [no heading](b.md#the-start) [no anchor here](#step-two) [outside](../../etc/passwd)\n",
		"docs/b.md": "# B\n\n## The end\n",
		"README.md": "# R\n",
	}
	for name, text := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	problems, links := linkProblems(t, root, []string{"docs/a.md"})
	if links != 8 {
		t.Errorf("checked %d links, want 8 (the web link is not checked)", links)
	}
	want := []string{"c.md does not exist", "no heading with anchor #the-start", "no heading with anchor #step-two", "leaves the repository"}
	if len(problems) != len(want) {
		t.Fatalf("problems:\n%s\nwant %d: %v", strings.Join(problems, "\n"), len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(problems[i], w) || !strings.HasPrefix(problems[i], "docs/a.md:6: ") {
			t.Errorf("problem %d = %q, want docs/a.md:6: ... %s", i, problems[i], w)
		}
	}
}

// The markers a shell block of a runbook may carry (an HTML comment on the line
// before it, e.g. <!-- docs-test: run -->):
//
//	run            the test runs it, in order, with bash -euo pipefail
//	env            the variables an operator sets first; the test sets its own values
//	skip (docker)  a docker compose step; the test checks the services it names and
//	               does what it does to the database (stop, start) itself
//	skip (REASON)  not run, for the reason given (an alternative, an example)
var runbookMarkers = []string{"run", "env", "skip (docker)"}

// testedRunbooks are the runbooks TestRunbooks executes.
var testedRunbooks = []string{"docs/runbooks/full-restore.md", "docs/runbooks/pitr.md"}

// TestRunbookBlocksMarked checks that every shell block of the tested runbooks says
// what the test does with it, so that no step goes untested unnoticed, and that
// run blocks need no docker and docker blocks hold only docker.
func TestRunbookBlocksMarked(t *testing.T) {
	t.Parallel()
	for _, rel := range testedRunbooks {
		d := readDocument(t, repoRoot, rel)
		runs := 0
		for _, b := range d.blocks {
			if !isShell(b.lang) {
				continue
			}
			if !slices.Contains(runbookMarkers, b.marker) && !strings.HasPrefix(b.marker, "skip (") {
				t.Errorf("%s:%d: shell block without a docs-test marker (one of %v, or skip (REASON)) on the line before it; got %q", rel, b.line, runbookMarkers, b.marker)
				continue
			}
			cmds, err := shellCommands(b.text, b.line+1)
			if err != nil {
				t.Errorf("%s:%d: %v", rel, b.line, err)
				continue
			}
			for _, c := range cmds {
				_, isCompose := parseCompose(c.words)
				isDocker := isCompose || c.words[0] == "docker"
				switch {
				case b.marker == "run" && isDocker:
					t.Errorf("%s:%d: a run block holds a docker command (%s): mark docker steps <!-- docs-test: skip (docker) -->", rel, c.line, strings.Join(c.words, " "))
				case b.marker == "skip (docker)" && !isCompose:
					t.Errorf("%s:%d: a docker block holds %q: keep commands run inside the container in run blocks", rel, c.line, strings.Join(c.words, " "))
				case b.marker == "env" && c.words[0] != "export":
					t.Errorf("%s:%d: an env block holds %q: only export NAME=value lines", rel, c.line, strings.Join(c.words, " "))
				}
			}
			if b.marker == "run" {
				runs++
			}
		}
		if runs < 3 {
			t.Errorf("%s: %d run blocks, want the runbook's steps marked <!-- docs-test: run -->", rel, runs)
		}
	}
}
