package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hestami/hestami/postgres"
)

const (
	// minMajor is the oldest PostgreSQL the benchmark runs on (server-side zstd
	// compression in pg_basebackup arrived in 15).
	minMajor = 15
	// dbName is the database pgbench fills.
	dbName = "bench"
	// stanza is pgBackRest's name for the cluster.
	stanza = "bench"
	// noiseShare is the share of the database that is incompressible bytes.
	noiseShare = 0.20
	// noiseRow is the size of one row of incompressible bytes.
	noiseRow = 256 << 10
	// startTimeout bounds the cluster's start and stop.
	startTimeout = 2 * time.Minute
	// archiveStall is how long the archiver may make no progress before the
	// benchmark gives up waiting for it.
	archiveStall = 3 * time.Minute
)

// bench is one benchmark run: its cluster, repositories and results.
type bench struct {
	opts options
	log  *slog.Logger

	work     string // temporary root, owned by the cluster user
	user     *postgres.OSUser
	bin      postgres.Binaries
	hestami  string
	r        *runner
	cluster  *postgres.Cluster
	repo     string // hestami repository directory
	config   string // hestami config for the cluster
	pgbrConf string // pgBackRest config
	pgbrRepo string
	pgbrErr  error // why pgBackRest cannot run, if it cannot

	segSize uint64
	segment string // a real, full WAL segment fetched from the archive
	segName string

	lastHestamiPhysical string // id of the newest hestami physical backup taken
	lastBaseBackup      string // directory of the newest pg_basebackup
	pgbrBackups         int

	rep *report
}

// run sets up, runs the selected steps and cleans up. A failed step is recorded in
// the report and the next step runs; an error is returned only when the setup failed
// or the run was interrupted.
func (b *bench) run(ctx context.Context) (rep *report, err error) {
	b.rep = newReport(b.opts)
	loadBefore := loadAverage()
	defer func() {
		b.rep.Host.LoadBefore, b.rep.Host.LoadAfter = loadBefore, loadAverage()
		if cerr := b.cleanup(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if err := b.setup(ctx); err != nil {
		return b.rep, fmt.Errorf("setup: %w", err)
	}
	for _, s := range b.opts.Steps {
		if ctx.Err() != nil {
			return b.rep, fmt.Errorf("interrupted (%v) before %s; the results above are partial", context.Cause(ctx), s)
		}
		b.log.Info("step", "name", s, "runs", b.opts.Runs)
		var err error
		switch s {
		case "physical":
			err = b.physical(ctx)
		case "restore":
			err = b.restore(ctx)
		case "logical":
			err = b.logical(ctx)
		case "walpush":
			err = b.walPush(ctx)
		case "backlog":
			err = b.backlog(ctx)
		case "encryption":
			err = b.encryption(ctx)
		case "s3":
			err = b.s3(ctx)
		case "auth":
			err = b.auth(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return b.rep, fmt.Errorf("interrupted (%v) during %s; the results above are partial", context.Cause(ctx), s)
			}
			b.log.Error("step failed; going on with the next", "step", s, "err", err)
			b.rep.StepErrors = append(b.rep.StepErrors, stepError{Step: s, Error: err.Error()})
		}
	}
	return b.rep, nil
}

// cleanup stops the cluster by its PID and removes the work directory, whatever
// happened before; it does not depend on the run's (possibly cancelled) context.
func (b *bench) cleanup() error {
	var errs []error
	if b.cluster != nil && b.cluster.PID() != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		if err := b.cluster.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if b.work != "" {
		if b.opts.Keep {
			fmt.Fprintf(os.Stderr, "bench: kept the work directory %s (remove it yourself)\n", b.work)
		} else if err := os.RemoveAll(b.work); err != nil {
			errs = append(errs, fmt.Errorf("remove work directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// setup finds the programs, starts an archiving cluster and loads the data.
func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.bin, err = postgres.FindBinaries(minMajor); err != nil {
		return err
	}
	if b.user, err = postgres.ClusterUser(); err != nil {
		return err
	}
	if b.hestami, err = filepath.Abs(b.opts.Hestami); err != nil {
		return err
	}
	if _, err := os.Stat(b.hestami); err != nil {
		return fmt.Errorf("hestami binary: %w; build it with make build (make bench does)", err)
	}
	for _, prog := range []string{"pgbackrest", "zstd", "tar", "bash"} {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("%s not found on PATH; install it with scripts/install-deps.sh --bench", prog)
		}
	}

	if b.work, err = os.MkdirTemp(b.opts.Dir, "hestami-bench-"); err != nil {
		return err
	}
	if b.user != nil {
		if err := postgres.MakeTraversable(b.work); err != nil {
			return err
		}
		if err := postgres.Chown(b.work, b.user); err != nil {
			return err
		}
		// The cluster user runs the binary as archive_command.
		if err := postgres.MakeTraversable(b.hestami); err != nil {
			return err
		}
	}
	b.log.Info("work directory", "dir", b.work, "filesystem", fsType(b.work))
	b.r = newRunner(b.user, b.work)
	b.rep.Host = b.hostInfo(ctx)

	if err := b.startCluster(ctx); err != nil {
		return err
	}
	if err := b.load(ctx); err != nil {
		return err
	}
	if err := b.pickSegment(ctx); err != nil {
		return err
	}
	b.pgbrErr = b.setupPgBackRest(ctx)
	if b.pgbrErr != nil {
		b.log.Error("pgBackRest setup failed; its measurements will be missing", "err", b.pgbrErr)
	}
	return nil
}

// mkdir creates dir and any missing parents (0700, as PostgreSQL wants its data
// directory), every one of them owned by the cluster user.
func (b *bench) mkdir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return postgres.Chown(dir, b.user)
	}
	if parent := filepath.Dir(dir); parent != dir {
		if _, err := os.Stat(parent); errors.Is(err, fs.ErrNotExist) {
			if err := b.mkdir(parent); err != nil {
				return err
			}
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return postgres.Chown(dir, b.user)
}

// writeFile writes a file owned by the cluster user.
func (b *bench) writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	return postgres.Chown(path, b.user)
}

// writeHestamiConfig writes a hestami config for a repository in repo.
func (b *bench) writeHestamiConfig(path, repo string) error {
	if err := b.mkdir(repo); err != nil {
		return err
	}
	port := 0
	if b.cluster != nil {
		port = b.cluster.Port
	}
	cfg := fmt.Sprintf(`storage:
  url: file://%s
postgres:
  host: 127.0.0.1
  port: %d
  user: postgres
  database: postgres
  bin_dir: %s
log:
  level: info
`, repo, port, b.bin.Dir)
	return b.writeFile(path, []byte(cfg))
}

func (b *bench) startCluster(ctx context.Context) error {
	data := filepath.Join(b.work, "data")
	if err := b.mkdir(data); err != nil {
		return err
	}
	port, err := postgres.FreePort()
	if err != nil {
		return err
	}
	b.cluster = &postgres.Cluster{
		Bin:       b.bin,
		DataDir:   data,
		Port:      port,
		SocketDir: b.work,
		LogFile:   filepath.Join(b.work, "postgres.log"),
		User:      b.user,
		Logger:    b.log,
	}
	b.repo = filepath.Join(b.work, "hestami-repo")
	b.config = filepath.Join(b.work, "hestami.yaml")
	if err := b.writeHestamiConfig(b.config, b.repo); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := b.cluster.InitDB(sctx, "--no-sync"); err != nil {
		return err
	}
	return b.cluster.Start(sctx, b.clusterSettings(b.clusterArchiveCommand()))
}

// clusterArchiveCommand is the cluster's archive_command: hestami wal push into b.repo.
func (b *bench) clusterArchiveCommand() string {
	return fmt.Sprintf("%s --config %s wal push %%p", shellQuote(b.hestami), shellQuote(b.config))
}

// clusterSettings are the settings the cluster runs with, archiving with archive.
func (b *bench) clusterSettings(archive string) map[string]string {
	return map[string]string{
		"wal_level":          "replica",
		"max_wal_senders":    "10",
		"max_connections":    "50",
		"shared_buffers":     "256MB",
		"max_wal_size":       "4GB",
		"checkpoint_timeout": "30min",
		"archive_mode":       "on",
		"archive_command":    archive,
	}
}

// restartCluster restarts the cluster archiving with archive (archive_command is
// given on the command line, which ALTER SYSTEM cannot override).
func (b *bench) restartCluster(ctx context.Context, archive string) error {
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := b.cluster.Stop(sctx); err != nil {
		return err
	}
	return b.cluster.Start(sctx, b.clusterSettings(archive))
}

// pgArgs are the connection arguments of PostgreSQL's client programs.
func (b *bench) pgArgs() []string {
	return []string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.cluster.Port), "-U", "postgres"}
}

func (b *bench) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, b.cluster.ConnString(db))
}

// exec runs statements on db, each in its own round trip.
func (b *bench) exec(ctx context.Context, db string, sqls ...string) error {
	conn, err := b.connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, sql := range sqls {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// queryRow runs sql on db and scans its one row into dest.
func (b *bench) queryRow(ctx context.Context, db, sql string, dest ...any) error {
	conn, err := b.connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// load fills database bench with pgbench -i and a table of incompressible bytes
// making up noiseShare of it, then waits until all its WAL is archived.
func (b *bench) load(ctx context.Context) error {
	if err := b.exec(ctx, "postgres", "CREATE DATABASE "+dbName); err != nil {
		return err
	}
	b.log.Info("loading pgbench data", "scale", b.opts.Scale)
	args := append([]string{"-i", "-q", "-s", strconv.Itoa(b.opts.Scale)}, b.pgArgs()...)
	if _, err := b.r.run(ctx, b.work, b.bin.Path("pgbench"), append(args, dbName)...); err != nil {
		return err
	}
	var pgbenchSize int64
	if err := b.queryRow(ctx, dbName, "SELECT pg_database_size(current_database())", &pgbenchSize); err != nil {
		return err
	}
	// noise / (pgbench + noise) = noiseShare
	noise := int64(float64(pgbenchSize) * noiseShare / (1 - noiseShare))
	b.log.Info("loading incompressible bytes", "bytes", noise)
	if err := b.loadNoise(ctx, noise); err != nil {
		return fmt.Errorf("load incompressible table: %w", err)
	}
	if err := b.exec(ctx, dbName, "VACUUM ANALYZE noise", "CHECKPOINT"); err != nil {
		return err
	}
	ds := &b.rep.Dataset
	ds.Scale = b.opts.Scale
	if err := b.queryRow(ctx, dbName, `SELECT pg_database_size(current_database()), pg_total_relation_size('noise'),
		(SELECT sum(pg_database_size(oid))::bigint FROM pg_database)`, &ds.DatabaseBytes, &ds.NoiseBytes, &ds.ClusterBytes); err != nil {
		return err
	}
	b.log.Info("data loaded", "database", humanBytes(ds.DatabaseBytes), "incompressible", humanBytes(ds.NoiseBytes), "cluster", humanBytes(ds.ClusterBytes))
	return nil
}

// loadNoise COPYs about n bytes of random data into a new table noise, stored
// uncompressed (STORAGE EXTERNAL) as random data would be anyway.
func (b *bench) loadNoise(ctx context.Context, n int64) error {
	conn, err := b.connect(ctx, dbName)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE TABLE noise (id int PRIMARY KEY, b bytea); ALTER TABLE noise ALTER COLUMN b SET STORAGE EXTERNAL"); err != nil {
		return err
	}
	rows := int((n + noiseRow - 1) / noiseRow)
	rnd := rand.NewChaCha8([32]byte{'h', 'e', 's', 't', 'a', 'm', 'i'})
	buf := make([]byte, noiseRow)
	i := 0
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"noise"}, []string{"id", "b"}, pgx.CopyFromFunc(func() ([]any, error) {
		if i == rows {
			return nil, nil
		}
		i++
		_, _ = rnd.Read(buf)
		return []any{i, buf}, nil
	}))
	return err
}

// pickSegment runs a short pgbench workload, switches WAL, waits until the archive
// has caught up, and fetches a full segment written by the workload with hestami wal
// fetch: the file the WAL push measurements push.
func (b *bench) pickSegment(ctx context.Context) error {
	if err := b.queryRow(ctx, "postgres", "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'", &b.segSize); err != nil {
		return err
	}
	b.log.Info("running a short pgbench workload for a WAL segment of real updates")
	args := append([]string{"-n", "-c", "2", "-j", "2", "-T", "10"}, b.pgArgs()...)
	if _, err := b.r.run(ctx, b.work, b.bin.Path("pgbench"), append(args, dbName)...); err != nil {
		return err
	}
	var cur string
	if err := b.queryRow(ctx, "postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())", &cur); err != nil {
		return err
	}
	prev, err := prevSegment(cur, b.segSize)
	if err != nil {
		return err
	}
	if err := b.exec(ctx, "postgres", "SELECT pg_switch_wal()"); err != nil {
		return err
	}
	b.log.Info("waiting for the archiver to catch up")
	if err := b.waitArchived(ctx); err != nil {
		return err
	}
	dir := filepath.Join(b.work, "segment")
	if err := b.mkdir(dir); err != nil {
		return err
	}
	b.segName = prev
	b.segment = filepath.Join(dir, prev)
	if _, err := b.r.run(ctx, dir, b.hestami, "--config", b.config, "wal", "fetch", prev, b.segment); err != nil {
		return fmt.Errorf("fetch a WAL segment to push: %w", err)
	}
	fi, err := os.Stat(b.segment)
	if err != nil {
		return err
	}
	b.rep.Dataset.Segment = prev
	b.rep.Dataset.SegmentBytes = fi.Size()
	if sz, err := zstdSize(ctx, b.segment); err == nil {
		b.rep.Dataset.SegmentZstd3Bytes = sz
	}
	b.log.Info("WAL segment for push measurements", "name", prev, "bytes", fi.Size(), "zstd -3", humanBytes(b.rep.Dataset.SegmentZstd3Bytes))
	return nil
}

// prevSegment returns the name of the WAL segment before name.
func prevSegment(name string, segSize uint64) (string, error) {
	if len(name) != 24 || segSize == 0 {
		return "", fmt.Errorf("WAL file name %q: not a segment", name)
	}
	tli, err1 := strconv.ParseUint(name[:8], 16, 32)
	log, err2 := strconv.ParseUint(name[8:16], 16, 32)
	seg, err3 := strconv.ParseUint(name[16:], 16, 32)
	if err := errors.Join(err1, err2, err3); err != nil {
		return "", fmt.Errorf("WAL file name %q: %w", name, err)
	}
	perLog := uint64(0x100000000) / segSize
	segNo := log*perLog + seg
	if segNo == 0 {
		return "", fmt.Errorf("WAL file name %q: no segment before it", name)
	}
	segNo--
	return fmt.Sprintf("%08X%08X%08X", tli, segNo/perLog, segNo%perLog), nil
}

// settle brings the cluster to the same state before every timed backup: a
// checkpoint done, every ready WAL segment archived, dirty pages written.
func (b *bench) settle(ctx context.Context) error {
	if err := b.exec(ctx, "postgres", "CHECKPOINT"); err != nil {
		return err
	}
	if err := b.waitArchived(ctx); err != nil {
		return err
	}
	syscall.Sync()
	return nil
}

// waitArchived waits until pg_wal/archive_status holds no .ready file. It fails when
// the archiver makes no progress for archiveStall, with the end of the server log
// (where archive_command's errors go).
func (b *bench) waitArchived(ctx context.Context) error {
	statusDir := filepath.Join(b.cluster.DataDir, "pg_wal", "archive_status")
	last, lastChange := -1, time.Now()
	for {
		entries, err := os.ReadDir(statusDir)
		if err != nil {
			return err
		}
		ready := 0
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".ready") {
				ready++
			}
		}
		if ready == 0 {
			return nil
		}
		if ready != last {
			last, lastChange = ready, time.Now()
		}
		if time.Since(lastChange) > archiveStall {
			tail := ""
			if data, err := os.ReadFile(b.cluster.LogFile); err == nil {
				tail = postgres.LastLines(data, 20)
			}
			return fmt.Errorf("WAL archiving made no progress for %s (%d segments ready); last lines of %s:\n%s", archiveStall, ready, b.cluster.LogFile, indent(tail))
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// setupPgBackRest writes pgBackRest's config (its own repository, log and lock
// paths in the work directory) and creates the stanza.
func (b *bench) setupPgBackRest(ctx context.Context) error {
	dir := filepath.Join(b.work, "pgbackrest")
	b.pgbrRepo = filepath.Join(dir, "repo")
	for _, d := range []string{dir, b.pgbrRepo, filepath.Join(dir, "log"), filepath.Join(dir, "lock"), filepath.Join(dir, "spool")} {
		if err := b.mkdir(d); err != nil {
			return err
		}
	}
	b.pgbrConf = filepath.Join(dir, "pgbackrest.conf")
	conf := fmt.Sprintf(`[global]
repo1-path=%s
repo1-retention-full=9999
log-path=%s/log
lock-path=%s/lock
spool-path=%s/spool
log-level-console=warn
log-level-file=off
compress-type=zst
compress-level=3
process-max=2
start-fast=y
archive-check=n

[%s]
pg1-path=%s
pg1-port=%d
pg1-socket-path=%s
pg1-user=postgres
`, b.pgbrRepo, dir, dir, dir, stanza, b.cluster.DataDir, b.cluster.Port, b.cluster.SocketDir)
	if err := b.writeFile(b.pgbrConf, []byte(conf)); err != nil {
		return err
	}
	_, err := b.r.run(ctx, b.work, "pgbackrest", "--config", b.pgbrConf, "--stanza", stanza, "stanza-create")
	return err
}

// hostInfo records what the numbers were measured on.
func (b *bench) hostInfo(ctx context.Context) hostInfo {
	version := func(name string, args ...string) string {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return "unknown"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.Trim(line, "* ")
	}
	h := hostInfo{
		CPUs:       runtime.NumCPU(),
		Go:         runtime.Version(),
		PostgreSQL: version(b.bin.Path("postgres"), "--version"),
		PgBackRest: version("pgbackrest", "version"),
		Zstd:       version("zstd", "--version"),
		Hestami:    version(b.hestami, "--version"),
		WorkFS:     fsType(b.work),
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		// MemTotal:       24683792 kB
		line, _, _ := strings.Cut(string(data), "\n")
		if f := strings.Fields(line); len(f) == 3 && f[2] == "kB" {
			if kib, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				h.Memory = humanKiB(kib)
			}
		}
	}
	return h
}

// loadAverage is the 1-minute load average, or 0 if unknown.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// fsType names the file system holding dir, warning about tmpfs, where fsync is free.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case 0x01021994:
		return "tmpfs (fsync costs nothing here: use --dir on a real disk)"
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("0x%x", st.Type)
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// copyFile copies src to dst, owned by the cluster user.
func (b *bench) copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return postgres.Chown(dst, b.user)
}

// zstdSize is the size of path compressed with zstd -3, for the dataset summary.
func zstdSize(ctx context.Context, path string) (int64, error) {
	cmd := exec.CommandContext(ctx, "zstd", "-3", "-c", "-q", path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n, _ := io.Copy(io.Discard, out)
	return n, cmd.Wait()
}

// backupRow is the part of `hestami backup list --json` the benchmark reads.
type backupRow struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Status     string `json:"status"`
	Size       int64  `json:"size"`
	StoredSize int64  `json:"stored_size"`
}

// hestamiBackups lists the repository's backups.
func (b *bench) hestamiBackups(ctx context.Context) ([]backupRow, error) {
	p, err := b.r.run(ctx, b.work, b.hestami, "--config", b.config, "backup", "list", "--json")
	if err != nil {
		return nil, err
	}
	var rows []backupRow
	if err := json.Unmarshal(p.Stdout, &rows); err != nil {
		return nil, fmt.Errorf("hestami backup list --json: %w", err)
	}
	return rows, nil
}
