package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrExited is returned (wrapped) by Cluster.Start when the postmaster exited before
// it accepted connections. That is a failure for most callers, but also what a
// recovery with recovery_target_action=shutdown does on purpose: tell the two apart
// with Cluster.ExitErr, which is nil after a clean exit.
var ErrExited = errors.New("postgres exited")

// Shutdown grace periods used by Cluster.Stop when ctx sets no earlier deadline.
const (
	fastShutdownTimeout      = 60 * time.Second
	immediateShutdownTimeout = 15 * time.Second
)

// startPollInterval is how often Start asks the server whether it is ready.
const startPollInterval = 50 * time.Millisecond

// logTailLines is how much of the server log Start puts in its errors.
const logTailLines = 30

// OSUser is the operating-system account a cluster runs as.
type OSUser struct {
	Name     string
	UID, GID uint32
}

// ClusterUser returns the account to run PostgreSQL as. PostgreSQL refuses to run as
// root, so when this process is root it is $HESTAMI_PG_USER, or "postgres" if that is
// unset. When this process is not root it returns nil: run the cluster as ourselves.
func ClusterUser() (*OSUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := os.Getenv("HESTAMI_PG_USER")
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("look up cluster user %q: no such user; PostgreSQL will not run as root, so create it with useradd --system %s, install the postgresql package, or set HESTAMI_PG_USER to an existing unprivileged user", name, name)
		}
		return nil, fmt.Errorf("look up cluster user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("look up cluster user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("look up cluster user %q: gid %q: %w", name, u.Gid, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("cluster user %q is root; PostgreSQL will not run as root: set HESTAMI_PG_USER to an unprivileged user", name)
	}
	return &OSUser{Name: name, UID: uint32(uid), GID: uint32(gid)}, nil
}

// Chown gives path and everything under it to u, without following symbolic links.
// It does nothing when u is nil.
func Chown(path string, u *OSUser) error {
	if u == nil {
		return nil
	}
	err := filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.UID), int(u.GID))
	})
	if err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, u.Name, err)
	}
	return nil
}

// MakeTraversable adds search permission for others (o+x) to every parent directory
// of path, up to /, so an unprivileged cluster user can reach path: t.TempDir and
// os.MkdirTemp make 0700 directories owned by whoever runs the tests. Only the search
// bit is added; nobody gains the right to list or write those directories.
func MakeTraversable(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("make %s traversable: %w", path, err)
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("make %s traversable: %w", path, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(dir, fi.Mode()|0o001); err != nil {
				return fmt.Errorf("make %s traversable: %w", path, err)
			}
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	return port, nil
}

// Cluster controls one local PostgreSQL cluster: a data directory and, once started,
// the postmaster process serving it. The postmaster is started directly (not through
// pg_ctl) so that the Cluster holds its PID and learns when it exits.
//
// The fields are set before InitDB or Start and not changed while the server runs.
type Cluster struct {
	Bin       Binaries
	DataDir   string
	Port      int    // TCP port on 127.0.0.1; Start picks a free one if zero
	SocketDir string // directory of the Unix socket; empty means no Unix socket
	LogFile   string // server stdout and stderr, appended to; required by Start
	User      *OSUser
	Env       []string // added to this process's environment for initdb and postgres
	Logger    *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
}

// InitDB creates a new cluster in c.DataDir, which must be missing or empty, with
// superuser postgres, trust authentication, UTF8 encoding and the C locale. extraArgs
// are appended to initdb's arguments (--no-sync, say, in tests).
func (c *Cluster) InitDB(ctx context.Context, extraArgs ...string) error {
	if err := c.prepareDir(c.DataDir); err != nil {
		return fmt.Errorf("initdb %s: %w", c.DataDir, err)
	}
	args := []string{"-D", c.DataDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"}
	args = append(args, extraArgs...)
	cmd := exec.CommandContext(ctx, c.Bin.Path("initdb"), args...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Dir = c.DataDir
	cmd.SysProcAttr = c.sysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", c.DataDir, err, bytes.TrimSpace(out))
	}
	c.logger().Info("initialized cluster", "data_dir", c.DataDir, "major", c.Bin.Major)
	return nil
}

// Start runs the postmaster on c.DataDir and returns once it accepts connections,
// with a "-c key=value" for every setting, then port, listen_addresses=127.0.0.1
// and unix_socket_directories from c's fields (those three cannot be overridden by
// settings). Its output goes to c.LogFile, which is required.
//
// A data directory holding recovery.signal or standby.signal works too: Start waits,
// as pg_isready does, until the server accepts connections, which for a hot standby
// is once recovery has reached a consistent state. ctx bounds only that wait (give it
// a deadline; a long recovery needs a long one); the server outlives it. If ctx ends
// first, Start shuts the server down and returns an error. If the postmaster exits
// before it is ready, Start returns an error wrapping ErrExited that includes the last
// lines of the log; ExitErr then tells a clean exit (recovery_target_action=shutdown)
// from a failure.
func (c *Cluster) Start(ctx context.Context, settings map[string]string) error {
	if c.LogFile == "" {
		return fmt.Errorf("start postgres on %s: no log file set", c.DataDir)
	}
	c.mu.Lock()
	if c.cmd != nil && !isClosed(c.exited) {
		c.mu.Unlock()
		return fmt.Errorf("start postgres on %s: already running as pid %d", c.DataDir, c.cmd.Process.Pid)
	}
	c.mu.Unlock()

	if c.Port == 0 {
		port, err := FreePort()
		if err != nil {
			return fmt.Errorf("start postgres on %s: %w", c.DataDir, err)
		}
		c.Port = port
	}
	if c.SocketDir != "" {
		if err := c.prepareDir(c.SocketDir); err != nil {
			return fmt.Errorf("start postgres on %s: socket dir: %w", c.DataDir, err)
		}
	}
	logFile, err := os.OpenFile(c.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("start postgres on %s: open log: %w", c.DataDir, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	if c.User != nil {
		if err := logFile.Chown(int(c.User.UID), int(c.User.GID)); err != nil {
			return fmt.Errorf("start postgres on %s: chown log %s: %w", c.DataDir, c.LogFile, err)
		}
	}
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("start postgres on %s: seek log: %w", c.DataDir, err)
	}

	cmd := exec.Command(c.Bin.Path("postgres"), c.args(settings)...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Dir = c.DataDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = c.sysProcAttr()
	// Its own process group, so a terminal's Ctrl-C reaches only us and we choose how
	// to shut down; and SIGQUIT (immediate shutdown) if we die without stopping it.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres on %s: %w", c.DataDir, err)
	}
	exited := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.exited, c.exitErr = cmd, exited, nil
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.exitErr = err
		c.mu.Unlock()
		close(exited)
	}()
	c.logger().Info("starting postgres", "data_dir", c.DataDir, "port", c.Port, "pid", cmd.Process.Pid, "log", c.LogFile)

	if err := c.waitReady(ctx, exited); err != nil {
		if errors.Is(err, ErrExited) {
			return fmt.Errorf("start postgres on %s: %w; last lines of %s:\n%s", c.DataDir, err, c.LogFile, c.logTail(logStart, logTailLines))
		}
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), immediateShutdownTimeout)
		defer cancel()
		if stopErr := c.Stop(stopCtx); stopErr != nil {
			c.logger().Warn("stop postgres after failed start", "data_dir", c.DataDir, "err", stopErr)
		}
		return fmt.Errorf("start postgres on %s: %w; last lines of %s:\n%s", c.DataDir, err, c.LogFile, c.logTail(logStart, logTailLines))
	}
	c.logger().Info("postgres accepting connections", "data_dir", c.DataDir, "port", c.Port, "pid", cmd.Process.Pid)
	return nil
}

// waitReady polls the server until it accepts connections, exits, or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ticker := time.NewTicker(startPollInterval)
	defer ticker.Stop()
	for {
		if c.ready(ctx) {
			return nil
		}
		select {
		case <-exited:
			if err := c.ExitErr(); err != nil {
				return fmt.Errorf("%w before accepting connections: %v", ErrExited, err)
			}
			return fmt.Errorf("%w before accepting connections (exit status 0)", ErrExited)
		case <-ctx.Done():
			return fmt.Errorf("wait for server to accept connections: %w", context.Cause(ctx))
		case <-ticker.C:
		}
	}
}

// ready reports whether the server accepts connections, with pg_isready's meaning:
// any answer from the server other than "the database system is starting up" (or
// shutting down) counts, so an authentication failure still means ready.
func (c *Cluster) ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, c.ConnString("postgres"))
	if err == nil {
		_ = conn.Close(ctx)
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code != "57P03" // cannot_connect_now
	}
	return false
}

// Stop shuts the server down: a fast shutdown (SIGINT: abort transactions, checkpoint,
// exit), then, if that has not finished by ctx's deadline or a minute, an immediate
// shutdown (SIGQUIT), then SIGKILL. It returns nil if the server is not running or
// shut down cleanly, and an error if it had to be forced or exited with a failure.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil || isClosed(exited) {
		return nil
	}
	pid := cmd.Process.Pid
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop postgres pid %d: %w", pid, err)
	}
	fastCtx, cancel := context.WithTimeout(ctx, fastShutdownTimeout)
	defer cancel()
	select {
	case <-exited:
		if err := c.ExitErr(); err != nil {
			return fmt.Errorf("stop postgres pid %d: %w", pid, err)
		}
		c.logger().Info("postgres stopped", "data_dir", c.DataDir, "pid", pid)
		return nil
	case <-fastCtx.Done():
	}

	c.logger().Warn("postgres fast shutdown timed out; sending SIGQUIT", "data_dir", c.DataDir, "pid", pid)
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	timer := time.NewTimer(immediateShutdownTimeout)
	defer timer.Stop()
	select {
	case <-exited:
		return fmt.Errorf("stop postgres pid %d: fast shutdown timed out, immediate shutdown used (crash recovery will run on next start)", pid)
	case <-timer.C:
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("stop postgres pid %d: did not exit on SIGINT or SIGQUIT, killed; its child processes may linger", pid)
}

// PID returns the postmaster's process ID, or 0 if Start has not run it.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Exited returns a channel closed when the postmaster exits. Before Start it returns
// nil, which blocks forever in a select.
func (c *Cluster) Exited() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exited
}

// ExitErr returns how the postmaster exited: nil while it runs, after a clean exit
// (status 0), or before Start; an *exec.ExitError otherwise.
func (c *Cluster) ExitErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitErr
}

// Wait blocks until the postmaster exits and returns ExitErr. It returns nil at once
// if Start has not run it.
func (c *Cluster) Wait() error {
	exited := c.Exited()
	if exited == nil {
		return nil
	}
	<-exited
	return c.ExitErr()
}

// ConnString returns a URL connecting to database db as the superuser postgres over
// TCP, for example postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
func (c *Cluster) ConnString(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// args builds the postmaster command line.
func (c *Cluster) args(settings map[string]string) []string {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", c.DataDir}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	// Last, so they win over settings: the Cluster's fields say where it listens.
	return append(args,
		"-c", "port="+strconv.Itoa(c.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+c.SocketDir,
	)
}

// prepareDir creates dir (0700) if missing and gives it to the cluster user.
func (c *Cluster) prepareDir(dir string) error {
	if dir == "" {
		return errors.New("no directory set")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if c.User != nil {
		if err := os.Chown(dir, int(c.User.UID), int(c.User.GID)); err != nil {
			return err
		}
	}
	return nil
}

// sysProcAttr runs a child as the cluster user, if there is one.
func (c *Cluster) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{}
	if c.User != nil {
		// No supplementary groups: the child must not keep ours (root's).
		attr.Credential = &syscall.Credential{Uid: c.User.UID, Gid: c.User.GID}
	}
	return attr
}

// logTail returns up to n last lines written to the log at or after offset from.
func (c *Cluster) logTail(from int64, n int) string {
	f, err := os.Open(c.LogFile)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return LastLines(data, n)
}

// LastLines returns the last n lines of text, for showing the end of a server log.
func LastLines(text []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(text), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *Cluster) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func isClosed(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
