package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// A document is one Markdown file, read just far enough for the checks: its fenced
// code blocks, inline code spans, links and heading anchors.
type document struct {
	path     string // relative to the repository root, e.g. docs/runbooks/pitr.md
	blocks   []codeBlock
	spans    []inlineSpan
	links    []link
	anchors  map[string]bool
	headings []string
}

// A codeBlock is a fenced code block.
type codeBlock struct {
	line   int    // the line of the opening fence (1-based); content starts on the next
	lang   string // the info string's first word: sh, yaml...
	marker string // the docs-test comment just before the fence ("run", "skip (docker)", ...), or ""
	text   string // the content, with the fence's indentation removed
}

// An inlineSpan is `code` in running text.
type inlineSpan struct {
	line int
	text string
}

// A link is the target of [text](target) or of a reference definition [x]: target.
type link struct {
	line   int
	target string
}

var (
	markerRe  = regexp.MustCompile(`^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$`)
	headingRe = regexp.MustCompile(`^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
	spanRe    = regexp.MustCompile("`([^`]+)`")
	linkRe    = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refDefRe  = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$`)
	anchorRe  = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
)

// readDocument reads and scans the Markdown file at root/rel.
func readDocument(t *testing.T, root, rel string) *document {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return parseDocument(rel, string(data))
}

// parseDocument scans Markdown text. It knows fences (``` and ~~~, indented or not,
// so fences inside list items count), ATX headings, inline code, links and
// reference definitions: what the documentation here uses.
func parseDocument(path, text string) *document {
	d := &document{path: path, anchors: map[string]bool{}}
	lines := strings.Split(text, "\n")
	slugs := map[string]int{}
	lastNonBlank := ""
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimLeft(line, " \t")
		if fence := fenceOf(trimmed); fence != "" {
			indent := line[:len(line)-len(trimmed)]
			b := codeBlock{line: i + 1, lang: firstWord(strings.TrimLeft(trimmed, fence[:1]))}
			if m := markerRe.FindStringSubmatch(lastNonBlank); m != nil {
				b.marker = m[1]
			}
			var body []string
			for i++; i < len(lines); i++ {
				l := lines[i]
				if strings.HasPrefix(strings.TrimLeft(l, " \t"), fence) && strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(l), fence[:1])) == "" {
					break
				}
				body = append(body, strings.TrimPrefix(l, indent))
			}
			b.text = strings.Join(body, "\n")
			d.blocks = append(d.blocks, b)
			lastNonBlank = ""
			continue
		}
		if strings.TrimSpace(line) != "" {
			lastNonBlank = line
		}
		for _, m := range anchorRe.FindAllStringSubmatch(line, -1) {
			d.anchors[m[1]] = true
		}
		if m := headingRe.FindStringSubmatch(line); m != nil {
			s := slug(m[2])
			if n := slugs[s]; n > 0 {
				d.anchors[s+"-"+strconv.Itoa(n)] = true
			} else {
				d.anchors[s] = true
			}
			slugs[s]++
			d.headings = append(d.headings, m[2])
		}
		for _, m := range spanRe.FindAllStringSubmatch(line, -1) {
			d.spans = append(d.spans, inlineSpan{line: i + 1, text: m[1]})
		}
		prose := spanRe.ReplaceAllString(line, "``")
		for _, m := range linkRe.FindAllStringSubmatch(prose, -1) {
			d.links = append(d.links, link{line: i + 1, target: m[1]})
		}
		if m := refDefRe.FindStringSubmatch(prose); m != nil {
			d.links = append(d.links, link{line: i + 1, target: m[1]})
		}
	}
	return d
}

// fenceOf returns the fence (``` or ~~~, three or more) a trimmed line opens with.
func fenceOf(trimmed string) string {
	for _, c := range []string{"`", "~"} {
		n := len(trimmed) - len(strings.TrimLeft(trimmed, c))
		if n >= 3 {
			return strings.Repeat(c, n)
		}
	}
	return ""
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

// slug returns GitHub's anchor for a heading: the rendered text in lower case,
// without punctuation other than - and _, spaces turned into -.
func slug(heading string) string {
	// Rendered text: links keep their text, code spans their content.
	heading = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isShell reports whether a code block's language is a shell.
func isShell(lang string) bool {
	switch lang {
	case "sh", "bash", "shell", "console":
		return true
	}
	return false
}

func TestParseDocument(t *testing.T) {
	t.Parallel()
	text := "# The `wal` runbook: step 1\n" +
		"See [a](other.md#x-y) and [b](#the-wal-runbook-step-1), `not [a](link.md)`.\n" +
		"[ref]: ../README.md\n" +
		"<!-- docs-test: run -->\n" +
		"```sh\n" +
		"hestami wal status\n" +
		"```\n" +
		"1. In a list:\n\n" +
		"   ```sh\n" +
		"   hestami backup list\n" +
		"   ```\n" +
		"## Step\n## Step\n"
	d := parseDocument("x.md", text)
	if len(d.blocks) != 2 {
		t.Fatalf("blocks = %+v, want 2", d.blocks)
	}
	if b := d.blocks[0]; b.marker != "run" || b.lang != "sh" || b.text != "hestami wal status" || b.line != 5 {
		t.Errorf("first block = %+v", b)
	}
	if b := d.blocks[1]; b.marker != "" || b.text != "hestami backup list" {
		t.Errorf("indented block = %+v", b)
	}
	var targets []string
	for _, l := range d.links {
		targets = append(targets, l.target)
	}
	if got, want := strings.Join(targets, " "), "other.md#x-y #the-wal-runbook-step-1 ../README.md"; got != want {
		t.Errorf("links = %q, want %q", got, want)
	}
	for _, a := range []string{"the-wal-runbook-step-1", "step", "step-1"} {
		if !d.anchors[a] {
			t.Errorf("anchor %q missing from %v", a, d.anchors)
		}
	}
}
