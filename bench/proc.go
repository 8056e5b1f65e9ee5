package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/hestami/hestami/postgres"
)

// cancelGrace is how long a cancelled child has, after SIGTERM to its process group,
// before it is killed.
const cancelGrace = 20 * time.Second

// proc is what one finished child process cost.
type proc struct {
	Wall   time.Duration
	MaxRSS int64 // KiB, ru_maxrss: the child's or its largest waited-for descendant's peak
	Stdout []byte
	Stderr []byte
}

// runner starts the benchmark's child processes: as the cluster user when there is
// one (PostgreSQL and pgBackRest refuse root, and every file they make must be
// usable by the others), each in its own process group so a cancelled run stops the
// whole pipeline, with an environment free of PG* and HESTAMI_* variables so only
// the benchmark's configuration files count.
type runner struct {
	user *postgres.OSUser
	env  []string
}

func newRunner(user *postgres.OSUser, home string) *runner {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "HESTAMI_") || k == "HOME" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home)
	return &runner{user: user, env: env}
}

// run runs name with args in dir and waits for it. The error says which command
// failed and ends with the last lines it printed.
func (r *runner) run(ctx context.Context, dir, name string, args ...string) (proc, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = r.env
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if r.user != nil {
		// No supplementary groups: the child must not keep ours (root's).
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: r.user.UID, Gid: r.user.GID}
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = cancelGrace

	start := time.Now()
	err := cmd.Run()
	p := proc{Wall: time.Since(start), Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.MaxRSS = ru.Maxrss
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return p, fmt.Errorf("%s: interrupted: %w", commandLine(name, args), context.Cause(ctx))
		}
		out := append(append([]byte{}, stderr.Bytes()...), stdout.Bytes()...)
		msg := strings.TrimSpace(postgres.LastLines(out, 15))
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg != "" {
			return p, fmt.Errorf("%s: %v:\n%s", commandLine(name, args), err, indent(msg))
		}
		return p, fmt.Errorf("%s: %w", commandLine(name, args), err)
	}
	return p, nil
}

// shell runs script with bash -c, pipefail set, as PostgreSQL runs archive_command
// through a shell.
func (r *runner) shell(ctx context.Context, dir, script string) (proc, error) {
	return r.run(ctx, dir, "bash", "-c", "set -eo pipefail; "+script)
}

// commandLine renders a command for messages.
func commandLine(name string, args []string) string {
	parts := []string{name}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$;|&<>()*?") {
			a = shellQuote(a)
		}
		parts = append(parts, a)
	}
	s := strings.Join(parts, " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
