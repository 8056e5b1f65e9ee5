package postgres

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hestami/hestami/backup"
)

// clientPrograms are the PostgreSQL programs logical backups and restores run.
var clientPrograms = []string{"pg_dump", "pg_dumpall", "pg_restore", "psql"}

// stderrKeep is how much of a tool's error output is kept for its error message.
const stderrKeep = 64 << 10

// stderrLines is how many last lines of a tool's error output an error shows.
const stderrLines = 20

// toolStopGrace is how long a tool gets to exit after SIGTERM before it is killed.
const toolStopGrace = 10 * time.Second

// Tools runs PostgreSQL's client programs (pg_dump, pg_dumpall, pg_restore, psql) as
// processes. The connection is passed to them through the libpq environment (Env),
// never on the command line, where any user of the machine could read a password.
type Tools struct {
	// Dir holds the programs.
	Dir string
	// Major is their major version.
	Major int
	// Env holds libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD): they replace
	// those of this process's environment, which the programs otherwise inherit.
	Env []string
	// Database is the database pg_dumpall and psql connect to for cluster-wide work
	// ("": libpq's and the programs' defaults).
	Database string
	Logger   *slog.Logger
}

// FindTools locates pg_dump, pg_dumpall, pg_restore and psql of major version minMajor
// or newer (pg_dump refuses to dump a newer server than itself). binDir, when set
// (postgres.bin_dir, HESTAMI_PG_BINDIR), is the only place looked at. Otherwise it
// takes FindBinaries' server installation, then the newest client-only installation
// under /usr/lib/postgresql, then the programs on PATH.
func FindTools(ctx context.Context, binDir string, minMajor int) (Tools, error) {
	if binDir != "" {
		t, err := inspectTools(ctx, binDir)
		if err != nil {
			return Tools{}, fmt.Errorf("postgres.bin_dir %s: %w; point it at the directory holding pg_dump (for example /usr/lib/postgresql/%d/bin)", binDir, err, minMajor)
		}
		if t.Major < minMajor {
			return Tools{}, fmt.Errorf("postgres.bin_dir %s holds PostgreSQL %d programs, the server is PostgreSQL %d: pg_dump must be at least the server's version; install postgresql-client-%d and point postgres.bin_dir at it",
				binDir, t.Major, minMajor, minMajor)
		}
		return t, nil
	}
	var tooOld []string
	if b, err := FindBinaries(minMajor); err == nil {
		if t, err := inspectTools(ctx, b.Dir); err == nil && t.Major >= minMajor {
			return t, nil
		}
	}
	dirs, _ := debianBinDirs()
	if p, err := exec.LookPath("pg_dump"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, dir := range dirs {
		t, err := inspectTools(ctx, dir)
		if err != nil {
			continue
		}
		if t.Major < minMajor {
			tooOld = append(tooOld, fmt.Sprintf("%s (PostgreSQL %d)", dir, t.Major))
			continue
		}
		return t, nil
	}
	msg := "none found"
	if len(tooOld) > 0 {
		msg = "too old: " + strings.Join(tooOld, ", ")
	}
	return Tools{}, fmt.Errorf("%w: need pg_dump, pg_dumpall, pg_restore and psql of PostgreSQL %d or newer (%s); install postgresql-client-%d or set postgres.bin_dir (HESTAMI_PG_BINDIR)",
		ErrNoBinaries, minMajor, msg, minMajor)
}

// inspectTools checks that dir holds the client programs and reads their version.
func inspectTools(ctx context.Context, dir string) (Tools, error) {
	for _, name := range clientPrograms {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return Tools{}, fmt.Errorf("no executable %s in %s: %w", name, dir, ErrNoBinaries)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(dir, "pg_dump"), "--version").Output()
	if err != nil {
		return Tools{}, fmt.Errorf("run %s --version: %w", filepath.Join(dir, "pg_dump"), err)
	}
	major, err := parseMajor(out)
	if err != nil {
		return Tools{}, err
	}
	return Tools{Dir: dir, Major: major}, nil
}

// ToolError reports a PostgreSQL program that failed, with the end of its output.
type ToolError struct {
	Program string // "pg_dump"
	Target  string // what it worked on: `database "app"`
	Err     error  // how it ended
	Stderr  string // its last lines of error output
}

func (e *ToolError) Error() string {
	msg := fmt.Sprintf("%s of %s failed (%v)", e.Program, e.Target, e.Err)
	if e.Stderr != "" {
		msg += ":\n    " + strings.ReplaceAll(e.Stderr, "\n", "\n    ")
	}
	return msg
}

func (e *ToolError) Unwrap() error { return e.Err }

// environ returns the programs' environment: this process's, with t.Env replacing
// the libpq connection variables.
func (t Tools) environ() []string {
	override := map[string]bool{"PGHOST": true, "PGPORT": true, "PGUSER": true, "PGPASSWORD": true, "PGDATABASE": true}
	for _, kv := range t.Env {
		k, _, _ := strings.Cut(kv, "=")
		override[k] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !override[k] {
			env = append(env, kv)
		}
	}
	return append(env, t.Env...)
}

func (t Tools) logger() *slog.Logger {
	if t.Logger != nil {
		return t.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// command prepares program with args; cancelling ctx stops it with SIGTERM, then
// SIGKILL after toolStopGrace.
func (t Tools) command(ctx context.Context, program string, args ...string) (*exec.Cmd, *tailBuffer) {
	cmd := exec.CommandContext(ctx, filepath.Join(t.Dir, program), args...)
	cmd.Env = t.environ()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = toolStopGrace
	stderr := &tailBuffer{max: stderrKeep}
	cmd.Stderr = stderr
	return cmd, stderr
}

// ConnInfo returns a libpq connection string naming only database db, for a
// program's --dbname: the rest of the connection comes from the environment. A
// connection string, unlike a plain name, cannot be mistaken for something else
// whatever the database is called (a name with '=' would be parsed as one).
func ConnInfo(db string) string {
	return "dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(db) + "'"
}

// DumpDatabase implements backup.Dumper with pg_dump --format=custom --compress=0.
func (t Tools) DumpDatabase(ctx context.Context, db string) (io.ReadCloser, error) {
	return t.stream(ctx, fmt.Sprintf("database %q", db), "pg_dump",
		"--format=custom", "--compress=0", "--no-password", "--dbname="+ConnInfo(db))
}

// DumpGlobals implements backup.Dumper with pg_dumpall --globals-only.
func (t Tools) DumpGlobals(ctx context.Context) (io.ReadCloser, error) {
	args := []string{"--globals-only", "--no-password"}
	if t.Database != "" {
		args = append(args, "--dbname="+ConnInfo(t.Database))
	}
	return t.stream(ctx, "the globals (roles and tablespaces)", "pg_dumpall", args...)
}

var _ backup.Dumper = Tools{}

// stream starts program and returns its standard output; see backup.Dumper.
func (t Tools) stream(ctx context.Context, target, program string, args ...string) (io.ReadCloser, error) {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	cmd, stderr := t.command(ctx, program, args...)
	out, w, err := os.Pipe()
	if err != nil {
		cancel()
		return nil, err
	}
	growPipe(w)
	cmd.Stdout = w
	err = cmd.Start()
	w.Close() // the child has its own copy
	if err != nil {
		out.Close()
		cancel()
		return nil, fmt.Errorf("start %s: %w", program, err)
	}
	t.logger().Debug("started", "program", program, "target", target, "pid", cmd.Process.Pid)
	return &procReader{parent: parent, cancel: cancel, cmd: cmd, out: out, stderr: stderr, program: program, target: target, log: t.logger()}, nil
}

// pipeSize is the pipe buffer asked for between a dump and hestami: a large buffer
// lets pg_dump write on while the compressor works, with fewer switches between them.
const pipeSize = 1 << 20

// growPipe enlarges the pipe's buffer (Linux F_SETPIPE_SZ), where the system allows;
// a smaller pipe only costs some speed.
func growPipe(f *os.File) {
	const fSetPipeSz = 1031
	if runtime.GOOS != "linux" {
		return
	}
	_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), fSetPipeSz, pipeSize)
}

// procReader reads a process's standard output. At the end of it, it waits for the
// process and turns a failed exit into an error instead of io.EOF.
type procReader struct {
	parent  context.Context
	cancel  context.CancelFunc
	cmd     *exec.Cmd
	out     io.ReadCloser
	stderr  *tailBuffer
	program string
	target  string
	log     *slog.Logger
	done    bool
	err     error
}

func (p *procReader) Read(b []byte) (int, error) {
	if p.done {
		return 0, p.err
	}
	n, err := p.out.Read(b)
	if err == nil {
		return n, nil
	}
	p.done = true
	if err != io.EOF {
		p.cancel()
	}
	p.err = p.wait(err)
	return n, p.err
}

// wait waits for the process and returns io.EOF if it succeeded.
func (p *procReader) wait(readErr error) error {
	werr := p.cmd.Wait()
	p.out.Close()
	p.cancel()
	switch {
	case werr == nil && readErr == io.EOF:
		if s := p.stderr.String(); s != "" {
			p.log.Warn("message from "+p.program, "target", p.target, "output", s)
		}
		return io.EOF
	case werr != nil && p.parent.Err() != nil:
		return fmt.Errorf("%s of %s: %w", p.program, p.target, p.parent.Err())
	case werr == nil:
		return fmt.Errorf("read output of %s: %w", p.program, readErr)
	}
	return &ToolError{Program: p.program, Target: p.target, Err: werr, Stderr: LastLines([]byte(p.stderr.String()), stderrLines)}
}

// Close stops the process if its output was not read to the end.
func (p *procReader) Close() error {
	if !p.done {
		p.done = true
		p.cancel()
		p.out.Close() // a child blocked writing gets EPIPE
		_ = p.cmd.Wait()
		p.err = fmt.Errorf("%s of %s: stopped", p.program, p.target)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// Databases lists the cluster's databases with their size on disk (0 where this user
// may not connect, as pg_database_size then fails).
func Databases(ctx context.Context, conn *pgx.Conn) ([]backup.Database, error) {
	rows, err := conn.Query(ctx, `SELECT datname, datistemplate, datallowconn,
		CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) ELSE 0 END
		FROM pg_database ORDER BY datname`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	dbs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (backup.Database, error) {
		var d backup.Database
		err := r.Scan(&d.Name, &d.Template, &d.AllowConn, &d.Size)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return dbs, nil
}

// Restorer restores logical backups into a server: it creates and drops databases
// through Conn (a connection to a maintenance database) and runs pg_restore and psql.
type Restorer struct {
	Tools Tools
	Conn  *pgx.Conn
}

var (
	_ backup.DatabaseRestorer = (*Restorer)(nil)
	_ backup.GlobalsRestorer  = (*Restorer)(nil)
)

// DatabaseExists implements backup.DatabaseRestorer.
func (r *Restorer) DatabaseExists(ctx context.Context, name string) (bool, error) {
	var ok bool
	if err := r.Conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&ok); err != nil {
		return false, fmt.Errorf("check whether database %q exists: %w", name, err)
	}
	return ok, nil
}

// CreateDatabase implements backup.DatabaseRestorer. The database is created from
// template0 (as pg_restore expects: template1 may hold objects of its own) with the
// server's default encoding and locale; the connecting user owns it.
func (r *Restorer) CreateDatabase(ctx context.Context, name string) error {
	if _, err := r.Conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// DropDatabase implements backup.DatabaseRestorer.
func (r *Restorer) DropDatabase(ctx context.Context, name string) error {
	if _, err := r.Conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %q: %w", name, err)
	}
	return nil
}

// RestoreArchive implements backup.DatabaseRestorer with pg_restore --exit-on-error:
// the restore stops at the first failed statement, which is usually the cause (a
// missing role, say), instead of going on for hours to fail in the end anyway. Owners
// and privileges are restored as dumped: restore the globals first for the roles.
func (r *Restorer) RestoreArchive(ctx context.Context, req backup.ArchiveRestore) error {
	args := []string{"--no-password", "--exit-on-error", "--dbname=" + ConnInfo(req.Database)}
	if req.Clean {
		args = append(args, "--clean", "--if-exists")
	}
	if req.Path != "" && req.Jobs > 1 {
		args = append(args, fmt.Sprintf("--jobs=%d", req.Jobs))
	}
	if req.Path != "" {
		args = append(args, req.Path)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	target := fmt.Sprintf("database %q", req.Database)
	cmd, stderr := r.Tools.command(ctx, "pg_restore", args...)
	var stdin io.WriteCloser
	if req.Path == "" {
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			return err
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pg_restore: %w", err)
	}
	var srcErr error
	if stdin != nil {
		src := &readErrRecorder{r: req.Archive}
		// A write error means pg_restore exited: its exit status says why.
		_, _ = io.Copy(stdin, src)
		if src.err != nil {
			// The archive failed (a corrupt object): stop pg_restore before it sees the
			// end of its input, so it cannot take a cut archive for a whole one.
			srcErr = src.err
			cancel()
		}
		stdin.Close()
	}
	werr := cmd.Wait()
	switch {
	case srcErr != nil:
		return fmt.Errorf("restore stopped: %w", srcErr)
	case werr != nil && ctx.Err() != nil:
		return fmt.Errorf("pg_restore of %s: %w", target, context.Cause(ctx))
	case werr != nil:
		return &ToolError{Program: "pg_restore", Target: target, Err: werr, Stderr: LastLines([]byte(stderr.String()), stderrLines)}
	}
	if s := stderr.String(); s != "" {
		r.Tools.logger().Warn("message from pg_restore", "target", target, "output", s)
	}
	return nil
}

// readErrRecorder remembers the first error of r other than io.EOF.
type readErrRecorder struct {
	r   io.Reader
	err error
}

func (e *readErrRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// ExistingGlobals implements backup.GlobalsRestorer.
func (r *Restorer) ExistingGlobals(ctx context.Context) (roles, tablespaces []string, err error) {
	roles, err = r.names(ctx, "SELECT rolname FROM pg_roles ORDER BY 1")
	if err != nil {
		return nil, nil, fmt.Errorf("list roles: %w", err)
	}
	tablespaces, err = r.names(ctx, "SELECT spcname FROM pg_tablespace ORDER BY 1")
	if err != nil {
		return nil, nil, fmt.Errorf("list tablespaces: %w", err)
	}
	return roles, tablespaces, nil
}

func (r *Restorer) names(ctx context.Context, sql string) ([]string, error) {
	rows, err := r.Conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// RunGlobals implements backup.GlobalsRestorer with psql, without ON_ERROR_STOP: a
// statement that fails is reported and the rest still run.
func (r *Restorer) RunGlobals(ctx context.Context, script []byte) ([]string, error) {
	args := []string{"--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=0", "--file=-"}
	if r.Tools.Database != "" {
		args = append(args, "--dbname="+ConnInfo(r.Tools.Database))
	}
	cmd, _ := r.Tools.command(ctx, "psql", args...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut // all of it: every error line counts
	cmd.Stdin = bytes.NewReader(script)
	cmd.Stdout = io.Discard
	if err := cmd.Run(); err != nil {
		return nil, &ToolError{Program: "psql", Target: "the globals script", Err: err, Stderr: LastLines(errOut.Bytes(), stderrLines)}
	}
	var failed []string
	for _, line := range strings.Split(errOut.String(), "\n") {
		if strings.Contains(line, "ERROR:") {
			failed = append(failed, strings.TrimSpace(line))
		}
	}
	return failed, nil
}
