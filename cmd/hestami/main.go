// Command hestami is the Hestami platform's infrastructure tool: PostgreSQL backups,
// WAL archiving and point-in-time recovery, and the local development stack.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	p := NewProgram(os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	err := p.Run(ctx, os.Args[1:])
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// Exit codes, documented in docs/cli.md.
const (
	ExitOK       = 0
	ExitError    = 1
	ExitUsage    = 2
	ExitNotFound = 3 // wal fetch: the file is not in the archive
)

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error, stderr *os.File) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		fmt.Fprintln(stderr, "hestami:", ee.err)
		return ee.code
	}
	fmt.Fprintln(stderr, "hestami:", err)
	return ExitError
}
