package docs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// blockTimeout bounds one runbook block (a restore, a wait for recovery).
const blockTimeout = 90 * time.Second

// A drill runs a runbook's blocks against a test cluster that archives into a
// repository through the real binary, as production's db container does.
type drill struct {
	t   *testing.T
	a   *pgtest.Archiving
	env map[string]string // what the operator's shell has: the db container's environment
	// settings are the server settings compose gives the db service: archiving
	// through hestami. Starting the db (docker compose up db) starts with them.
	settings map[string]string
	user     *postgres.OSUser
	home     string
}

// newDrill starts an archiving cluster with a table of orders.
func newDrill(t *testing.T) *drill {
	t.Helper()
	a := pgtest.NewArchiving(t, nil)
	u, err := postgres.ClusterUser()
	if err != nil {
		t.Fatal(err)
	}
	d := &drill{t: t, a: a, user: u, home: pgtest.Dir(t)}
	c := a.Cluster
	// compose.yaml's db service: archive_command = 'hestami wal push %p', the
	// repository named by the environment (no config file).
	d.settings = pgtest.DefaultSettings()
	d.settings["archive_mode"] = "on"
	d.settings["archive_command"] = fmt.Sprintf("'%s' wal push %%p", a.Bin)
	// The db container's environment, as compose.yaml sets it, but for where the
	// server's socket is: the operator's shell in the container has this.
	d.env = map[string]string{
		"PGDATA":              c.DataDir,
		"PGHOST":              c.SocketDir,
		"PGPORT":              fmt.Sprint(c.Port),
		"POSTGRES_USER":       "postgres",
		"POSTGRES_DB":         "hestami",
		"HESTAMI_STORAGE_URL": a.URL,
		"PATH":                filepath.Dir(a.Bin) + ":" + c.Bin.Dir + ":/usr/local/bin:/usr/bin:/bin",
		"HOME":                d.home,
		"LANG":                "C.UTF-8",
	}
	// The platform's database with its schema (the sign-in service's tables), and
	// a table of orders standing for the applications' data.
	pgtest.Exec(t, c, "postgres", "CREATE DATABASE hestami")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, c.ConnString("hestami"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := postgres.MigrateUp(ctx, pool, nil); err != nil {
		t.Fatalf("migrate the platform's schema: %v", err)
	}
	pgtest.Exec(t, c, "hestami", "CREATE TABLE orders (id int PRIMARY KEY, placed_at timestamptz NOT NULL DEFAULT clock_timestamp(), note text)")
	return d
}

// insert adds orders from..to.
func (d *drill) insert(from, to int, note string) {
	d.t.Helper()
	c := d.a.Cluster
	pgtest.Exec(d.t, c, "hestami", "INSERT INTO orders (id, note) SELECT g, $3 FROM generate_series($1::int, $2::int) g", from, to, note)
	pgtest.Exec(d.t, c, "hestami", "INSERT INTO audit_events (action, outcome, detail) VALUES ('order.placed', 'ok', $1)", fmt.Sprintf("orders %d to %d", from, to))
}

// hestami runs the binary as the cluster user in the operator's environment.
func (d *drill) hestami(args ...string) string {
	d.t.Helper()
	out, err := d.bash(strings.Join(append([]string{"hestami"}, shellQuote(args)...), " "))
	if err != nil {
		d.t.Fatalf("hestami %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// bash runs script with bash -euo pipefail as the cluster user, in the operator's
// environment; it returns stdout and stderr together.
func (d *drill) bash(script string) (string, error) {
	ctx, cancel := context.WithTimeout(d.t.Context(), blockTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = d.home
	for k, v := range d.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if d.user != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: d.user.UID, Gid: d.user.GID}}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (still running after %s)", err, blockTimeout)
	}
	return out.String(), err
}

func shellQuote(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}

// switchWAL ends the current WAL segment and waits until the archiver stored it.
func (d *drill) switchWAL() {
	d.t.Helper()
	c := d.a.Cluster
	var seg string
	pgtest.QueryRow(d.t, c, "postgres", "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg)
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var archived string
		pgtest.QueryRow(d.t, c, "postgres", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").Scan(&archived)
		if archived >= seg {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("WAL segment %s not archived within a minute (last archived %q)", seg, archived)
		}
		select {
		case <-d.t.Context().Done():
			d.t.Fatal(d.t.Context().Err())
		case <-tick.C:
		}
	}
}

// run executes the runbook rel: its run blocks with bash, in order; its docker
// blocks by doing to the test cluster what they do to the db container; its env
// block by checking that the test provides every variable it names.
func (d *drill) run(rel string, vars map[string]string) {
	t := d.t
	t.Helper()
	for k, v := range vars {
		d.env[k] = v
	}
	doc := readDocument(t, repoRoot, rel)
	ran := 0
	for _, b := range doc.blocks {
		if !isShell(b.lang) {
			continue
		}
		switch b.marker {
		case "env":
			cmds, err := shellCommands(b.text, b.line+1)
			if err != nil {
				t.Fatalf("%s:%d: %v", rel, b.line, err)
			}
			for _, c := range cmds {
				for _, w := range c.words[1:] {
					name, _, _ := strings.Cut(w, "=")
					if _, ok := d.env[name]; !ok {
						t.Errorf("%s:%d: the runbook has the operator set %s, which the test does not provide: add it to the drill's environment", rel, c.line, name)
					}
				}
			}
		case "run":
			ran++
			out, err := d.bash(b.text)
			t.Logf("%s:%d: ran\n%s\n--- output\n%s", rel, b.line, b.text, out)
			if err != nil {
				t.Fatalf("%s:%d: the runbook's step failed: %v\n--- the step\n%s\n--- its output\n%s", rel, b.line, err, b.text, out)
			}
		case "skip (docker)":
			cmds, err := shellCommands(b.text, b.line+1)
			if err != nil {
				t.Fatalf("%s:%d: %v", rel, b.line, err)
			}
			for _, c := range cmds {
				d.docker(rel, c)
			}
		}
	}
	if ran == 0 {
		t.Fatalf("%s: no block marked <!-- docs-test: run -->", rel)
	}
}

// docker does to the test cluster what a docker compose command does to the db
// service: stop it, start it, or run a command in a container (which the test runs
// in the operator's environment). Commands for other services need no database
// and are not emulated; an interactive shell is the environment the run blocks have.
func (d *drill) docker(rel string, c command) {
	t := d.t
	t.Helper()
	dc, ok := parseCompose(c.words)
	if !ok {
		t.Fatalf("%s:%d: %s: not a docker compose command", rel, c.line, strings.Join(c.words, " "))
	}
	names := func(s string) bool { return len(dc.services) == 0 || slices.Contains(dc.services, s) }
	ctx, cancel := context.WithTimeout(t.Context(), blockTimeout)
	defer cancel()
	cl := d.a.Cluster
	switch dc.sub {
	case "stop", "down", "kill":
		if names("db") {
			t.Logf("%s:%d: %s: stopping the database", rel, c.line, strings.Join(c.words, " "))
			if err := cl.Stop(ctx); err != nil {
				t.Fatalf("%s:%d: stop the database: %v", rel, c.line, err)
			}
		}
	case "up", "start", "restart":
		if names("db") {
			if dc.sub == "restart" {
				if err := cl.Stop(ctx); err != nil {
					t.Fatalf("%s:%d: stop the database: %v", rel, c.line, err)
				}
			}
			if cl.PID() != 0 && isRunning(cl) {
				return
			}
			t.Logf("%s:%d: %s: starting the database on %s", rel, c.line, strings.Join(c.words, " "), cl.DataDir)
			cl.Env = []string{"HESTAMI_STORAGE_URL=" + d.a.URL} // the db service's environment
			if err := cl.Start(ctx, d.settings); err != nil {
				t.Fatalf("%s:%d: %s: the database does not start: %v", rel, c.line, strings.Join(c.words, " "), err)
			}
		}
	case "exec", "run":
		if len(dc.command) == 0 || (len(dc.command) == 1 && (dc.command[0] == "bash" || dc.command[0] == "sh")) {
			return // a shell: the run blocks that follow
		}
		script := strings.Join(c.raw[len(c.raw)-len(dc.command):], " ")
		out, err := d.bash(script)
		t.Logf("%s:%d: ran %s\n--- output\n%s", rel, c.line, script, out)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v\n%s", rel, c.line, strings.Join(c.words, " "), err, out)
		}
	}
}

func isRunning(c *postgres.Cluster) bool {
	select {
	case <-c.Exited():
		return false
	default:
		return true
	}
}

// backupRow is a row of `hestami backup list --json`.
type backupRow struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Status   string `json:"status"`
	Timeline int    `json:"timeline"`
}

func (d *drill) backups() []backupRow {
	d.t.Helper()
	var rows []backupRow
	if err := json.Unmarshal([]byte(d.hestami("backup", "list", "--json")), &rows); err != nil {
		d.t.Fatalf("backup list --json: %v", err)
	}
	return rows
}

// checkRecovered checks what every recovery must leave: a primary on timeline 2
// whose history file is archived, the damaged data directory kept beside it, and
// a fresh physical backup of the new timeline.
func (d *drill) checkRecovered() {
	t := d.t
	t.Helper()
	c := d.a.Cluster
	var inRecovery bool
	var walFile string
	pgtest.QueryRow(t, c, "postgres", "SELECT pg_is_in_recovery(), pg_walfile_name(pg_current_wal_lsn())").Scan(&inRecovery, &walFile)
	if inRecovery {
		t.Error("after the runbook the database is still in recovery: it was never promoted")
	}
	if !strings.HasPrefix(walFile, "00000002") {
		t.Errorf("after the runbook the database writes WAL file %s, want timeline 2 (a promoted restore)", walFile)
	}
	if _, err := os.Stat(filepath.Join(d.a.Repo, "wal", "00000002", "00000002.history.zst")); err != nil {
		t.Errorf("timeline 2's history file is not in the repository: %v", err)
	}
	kept, _ := filepath.Glob(c.DataDir + ".replaced-*")
	if len(kept) != 1 {
		t.Errorf("the damaged data directory kept beside %s: %v, want one", c.DataDir, kept)
	}
	fresh := false
	for _, b := range d.backups() {
		fresh = fresh || (b.Type == "physical" && b.Status == "complete" && b.Timeline == 2)
	}
	if !fresh {
		t.Errorf("no complete physical backup on timeline 2: the runbook must end with a fresh backup; backups: %+v", d.backups())
	}
}

// TestRunbookFullRestore loses a database that had orders after its last backup and
// follows docs/runbooks/full-restore.md: everything archived comes back.
func TestRunbookFullRestore(t *testing.T) {
	t.Parallel()
	d := newDrill(t)
	d.insert(1, 100, "before the backup")
	d.hestami("backup", "push", "--type", "physical")
	d.insert(101, 250, "after the backup: only in the archived WAL")
	d.switchWAL()

	d.run("docs/runbooks/full-restore.md", nil)

	d.checkRecovered()
	var n, max int
	pgtest.QueryRow(t, d.a.Cluster, "hestami", "SELECT count(*), max(id) FROM orders").Scan(&n, &max)
	if n != 250 || max != 250 {
		t.Errorf("after the full restore: %d orders up to id %d, want all 250 (the backup's 100 and 150 replayed from WAL)", n, max)
	}
}

// TestRunbookPITR has orders deleted by mistake and follows docs/runbooks/pitr.md to
// the moment before: the orders are back, and what came after the target is not.
func TestRunbookPITR(t *testing.T) {
	t.Parallel()
	d := newDrill(t)
	d.insert(1, 100, "before the backup")
	d.hestami("backup", "push", "--type", "physical")
	d.insert(101, 150, "after the backup")
	d.switchWAL()
	var target time.Time
	pgtest.QueryRow(t, d.a.Cluster, "postgres", "SELECT clock_timestamp()").Scan(&target)
	pgtest.Exec(t, d.a.Cluster, "hestami", "DELETE FROM orders WHERE id > 20") // the mistake
	d.insert(1000, 1000, "after the mistake")
	d.switchWAL()

	d.run("docs/runbooks/pitr.md", map[string]string{
		"TARGET_TIME": target.UTC().Format("2006-01-02 15:04:05.999999+00"),
	})

	d.checkRecovered()
	var n, max int
	pgtest.QueryRow(t, d.a.Cluster, "hestami", "SELECT count(*), max(id) FROM orders").Scan(&n, &max)
	if n != 150 || max != 150 {
		t.Errorf("after recovery to %s: %d orders up to id %d, want the 150 before the DELETE and not order 1000 after it", target, n, max)
	}
}
