// Command bench measures hestami against the tools an operator would pick instead —
// pg_basebackup, pgBackRest, pg_dump, cp+sync — on one real PostgreSQL cluster in one
// run, and prints the ratios and whether hestami meets its speed and memory targets.
//
// It is run by `make bench` (through bench/run.sh), never by `go test`: benchmarks
// are not timed assertions. It starts its own cluster in a temporary directory on a
// free loopback port (as the cluster user when run as root, see
// postgres.ClusterUser), archiving its WAL through the hestami binary, loads pgbench
// data plus a table of incompressible bytes, then measures, as the minimum of --runs
// runs: physical backup, physical restore, logical backup, WAL push latency, the
// rate at which a backlog of ready WAL segments is cleared, physical backup and
// restore with encryption and signing on against off (step encryption), and against
// an S3 emulator on loopback against a file repository (step s3; blobtest's
// emulator, built with go build). Wall time, output size and
// the child's peak resident memory (ru_maxrss, which includes the waited-for
// descendants of a shell pipeline) are recorded for every command.
//
// Step auth measures session validation — GET /api/v1/me with a session cookie —
// against `hestami auth serve` on a database of the same cluster and against a bare
// net/http handler (this binary re-executed with a hidden --bare-http ADDR), each
// under 64 concurrent keep-alive connections on loopback for --auth-seconds after a
// 1 s warm-up: throughput, p50 and p99 latency, and the servers' peak RSS (VmHWM),
// from the run with the best throughput.
//
// Usage:
//
//	bench/run.sh [--scale 50] [--runs 3] [--json FILE] [--steps LIST] [--dir DIR] [--keep] [--auth-seconds 5]
//
// The targets are informational: the exit status is 0 when every measurement was
// taken, whatever the ratios, and 1 when the setup or a measurement failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// steps are the benchmark's parts, in the order they run.
var steps = []string{"physical", "restore", "logical", "walpush", "backlog", "encryption", "s3", "auth"}

// options are the command-line flags.
type options struct {
	Scale    int
	Runs     int
	JSON     string
	Hestami  string
	Dir      string
	Keep     bool
	Steps    []string
	Segments int // WAL push latency: names pushed per run
	Backlog  int // backlog: ready segments per run
	// AuthSeconds is the auth step's measuring window, in seconds.
	AuthSeconds int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if len(os.Args) == 3 && os.Args[1] == bareFlag {
		// The auth step's baseline server, started by the auth step itself.
		code := 0
		if err := serveBare(ctx, os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			code = 1
		}
		stop()
		os.Exit(code)
	}
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, runs the benchmark and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	b := &bench{opts: o, log: log}
	rep, err := b.run(ctx)
	if rep != nil {
		rep.print(stdout)
		if o.JSON != "" {
			if werr := rep.writeJSON(o.JSON); werr != nil {
				fmt.Fprintln(stderr, "bench:", werr)
				return 1
			}
			fmt.Fprintf(stdout, "\nResults written to %s\n", o.JSON)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	if n := rep.failures(); n > 0 {
		fmt.Fprintf(stderr, "bench: %d measurement(s) failed; see FAILED above\n", n)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: bench/run.sh [flags]

Benchmarks hestami against pg_basebackup, pgBackRest, pg_dump and cp+sync on a fresh
PostgreSQL cluster (pgbench data plus ~20%% incompressible bytes) and prints a table
of wall time (minimum of --runs), size, peak memory and hestami/other ratios, then
whether each target is MET or MISSED. Step auth loads GET /api/v1/me with a session
cookie on hestami auth serve and on a bare net/http handler (64 keep-alive
connections on loopback) and compares their throughput and p99 latency. Needs pgbackrest and zstd on PATH
(scripts/install-deps.sh --bench) and the hestami binary (make build).

Examples:
  bench/run.sh                               # what make bench runs: scale 50, 3 runs
  bench/run.sh --scale 5 --runs 1            # a quick run
  bench/run.sh --steps walpush,backlog --json bench/out/results.json
  bench/run.sh --steps auth --scale 1 --runs 1 --auth-seconds 10

Flags:
`)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.Scale, "scale", 50, "pgbench scale factor (50 is about 750 MB before the incompressible table)")
	fs.IntVar(&o.Runs, "runs", 3, "runs of every measurement; the minimum wall time is reported")
	fs.StringVar(&o.JSON, "json", "", "also write the results as JSON to this file, relative to the repository root (bench/out/ is git-ignored)")
	fs.StringVar(&o.Hestami, "hestami", "bin/hestami", "the hestami binary to measure (make build writes bin/hestami)")
	fs.StringVar(&o.Dir, "dir", "", "parent of the temporary work directory (default $TMPDIR or /tmp); put it on the disk you care about, not tmpfs")
	fs.BoolVar(&o.Keep, "keep", false, "keep the work directory (cluster data, repositories, logs) for inspection; the cluster is stopped anyway")
	stepList := fs.String("steps", strings.Join(steps, ","), "comma-separated parts to run: "+strings.Join(steps, ", "))
	fs.IntVar(&o.Segments, "segments", 20, "WAL push latency: segment names pushed per run")
	fs.IntVar(&o.Backlog, "backlog", 100, "backlog: ready segments cleared per run")
	fs.IntVar(&o.AuthSeconds, "auth-seconds", 5, "auth: seconds each server is measured per run, after a 1 s warm-up")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q; see --help", fs.Arg(0))
	}
	if o.Scale < 1 || o.Runs < 1 || o.Segments < 1 || o.Backlog < 1 || o.AuthSeconds < 1 {
		return o, errors.New("--scale, --runs, --segments, --backlog and --auth-seconds must be at least 1")
	}
	for _, s := range strings.Split(*stepList, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(steps, s) {
			return o, fmt.Errorf("--steps: unknown part %q; choose from %s", s, strings.Join(steps, ", "))
		}
		o.Steps = append(o.Steps, s)
	}
	return o, nil
}
