package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Operations: the rows of the table are grouped by these.
const (
	opPhysical = "physical backup"
	opRestore  = "physical restore"
	opLogical  = "logical backup"
	opPushP50  = "wal push p50"
	opPushP95  = "wal push p95"
	opBacklog  = "wal backlog"
)

// physical times hestami's physical backup, pg_basebackup with server-side zstd, and a
// pgBackRest full backup, each from the same settled cluster.
func (b *bench) physical(ctx context.Context) error {
	h := b.rep.row(opPhysical, "hestami backup push --type physical", true)
	bb := b.rep.row(opPhysical, "pg_basebackup -Ft --compress=server-zstd:workers=2", false)
	br := b.rep.row(opPhysical, "pgbackrest backup --type full (zst:3, process-max=2)", false)
	bb.Note = "compression runs in the server's walsender: client RSS only"
	if b.pgbrErr != nil {
		br.fail(fmt.Errorf("pgBackRest setup: %w", b.pgbrErr))
	}
	for i := range b.opts.Runs {
		if !h.failed() {
			if err := b.settle(ctx); err != nil {
				return err
			}
			before, err := b.hestamiBackups(ctx)
			if err == nil {
				var p proc
				p, err = b.r.run(ctx, b.work, b.hestami, "--config", b.config, "backup", "push", "--type", "physical")
				if err == nil {
					var id string
					var size int64
					id, size, err = b.newHestamiBackup(ctx, before, "physical")
					if err == nil {
						h.add(p.Wall, size, p.MaxRSS)
						b.lastHestamiPhysical = id
					}
				}
			}
			h.failIf(err)
		}

		if !bb.failed() {
			if err := b.settle(ctx); err != nil {
				return err
			}
			dir := filepath.Join(b.work, fmt.Sprintf("basebackup-%d", i))
			args := append(b.pgArgs(), "-Ft", "-D", dir, "--compress=server-zstd:workers=2", "-c", "fast")
			p, err := b.r.run(ctx, b.work, b.bin.Path("pg_basebackup"), args...)
			if err == nil {
				var size int64
				if size, err = dirSize(dir); err == nil {
					bb.add(p.Wall, size, p.MaxRSS)
					if b.lastBaseBackup != "" {
						_ = os.RemoveAll(b.lastBaseBackup)
					}
					b.lastBaseBackup = dir
				}
			}
			bb.failIf(err)
		}

		if !br.failed() {
			if err := b.settle(ctx); err != nil {
				return err
			}
			labels := filepath.Join(b.pgbrRepo, "backup", stanza)
			before, _ := os.ReadDir(labels)
			p, err := b.r.run(ctx, b.work, "pgbackrest", "--config", b.pgbrConf, "--stanza", stanza, "--type", "full", "backup")
			if err == nil {
				var size int64
				size, err = newDirSize(labels, before)
				if err == nil {
					br.add(p.Wall, size, p.MaxRSS)
					b.pgbrBackups++
				}
			}
			br.failIf(err)
		}
	}
	return nil
}

// newHestamiBackup finds the backup of type typ that is in the repository now but
// was not in before, and returns its id and stored size.
func (b *bench) newHestamiBackup(ctx context.Context, before []backupRow, typ string) (string, int64, error) {
	after, err := b.hestamiBackups(ctx)
	if err != nil {
		return "", 0, err
	}
	old := map[string]bool{}
	for _, r := range before {
		old[r.ID] = true
	}
	for _, r := range slices.Backward(after) {
		if old[r.ID] || r.Type != typ {
			continue
		}
		if r.Status != "complete" {
			return "", 0, fmt.Errorf("hestami backup push exited 0 but backup list shows %s as %s", r.ID, r.Status)
		}
		size := r.StoredSize
		if size == 0 {
			if size, err = dirSize(filepath.Join(b.repo, "backups", r.ID)); err != nil {
				return "", 0, err
			}
		}
		return r.ID, size, nil
	}
	return "", 0, fmt.Errorf("hestami backup push exited 0 but backup list --json shows no new %s backup", typ)
}

// newDirSize returns the size of the one directory in parent not among before.
func newDirSize(parent string, before []os.DirEntry) (int64, error) {
	after, err := os.ReadDir(parent)
	if err != nil {
		return 0, err
	}
	old := map[string]bool{}
	for _, e := range before {
		old[e.Name()] = true
	}
	for _, e := range after {
		if e.IsDir() && !old[e.Name()] {
			return dirSize(filepath.Join(parent, e.Name()))
		}
	}
	return 0, fmt.Errorf("no new backup directory in %s", parent)
}

// restore times hestami restore and pgbackrest restore of their newest backups, and
// extracting the newest pg_basebackup tars as a reference, each into an empty
// directory that is removed afterwards.
func (b *bench) restore(ctx context.Context) error {
	h := b.rep.row(opRestore, "hestami restore --to DIR --backup ID", true)
	br := b.rep.row(opRestore, "pgbackrest restore (process-max=2)", false)
	tr := b.rep.row(opRestore, "tar -x --zstd of the pg_basebackup, then sync", false)
	tr.Note = "reference: does not verify checksums"

	id := b.lastHestamiPhysical
	if id == "" {
		// The physical step did not run in this invocation or failed: any complete one.
		rows, err := b.hestamiBackups(ctx)
		if err != nil {
			h.fail(err)
		}
		for _, r := range rows {
			if r.Type == "physical" && r.Status == "complete" {
				id = r.ID
			}
		}
		if id == "" && !h.failed() {
			h.fail(errors.New("no hestami physical backup to restore: the physical backup step failed or was not selected"))
		}
	}
	if b.pgbrBackups == 0 && !br.failed() {
		br.fail(errors.New("no pgBackRest backup to restore: the physical backup step failed or was not selected"))
	}
	if b.lastBaseBackup == "" {
		tr.fail(errors.New("no pg_basebackup to extract: the physical backup step failed or was not selected"))
	}

	into := filepath.Join(b.work, "restore")
	measure := func(r *result, run func() (proc, error)) {
		if r.failed() {
			return
		}
		_ = os.RemoveAll(into)
		if err := b.mkdir(into); err != nil {
			r.fail(err)
			return
		}
		syscall.Sync()
		p, err := run()
		if err == nil {
			var size int64
			if size, err = dirSize(into); err == nil {
				r.add(p.Wall, size, p.MaxRSS)
			}
		}
		r.failIf(err)
		if err := os.RemoveAll(into); err != nil {
			r.failIf(err)
		}
	}
	for range b.opts.Runs {
		measure(h, func() (proc, error) {
			return b.r.run(ctx, b.work, b.hestami, "--config", b.config, "restore", "--to", into, "--backup", id)
		})
		measure(br, func() (proc, error) {
			return b.r.run(ctx, b.work, "pgbackrest", "--config", b.pgbrConf, "--stanza", stanza, "--pg1-path", into, "restore")
		})
		measure(tr, func() (proc, error) {
			script, err := extractScript(b.lastBaseBackup, into)
			if err != nil {
				return proc{}, err
			}
			return b.r.shell(ctx, b.work, script)
		})
	}
	return nil
}

// extractScript is the shell script that unpacks pg_basebackup's tar-format output
// in src (base.tar.zst, pg_wal.tar, tablespace tars) into dst, as its documentation
// says, then flushes it to disk like the restore tools do.
func extractScript(src, dst string) (string, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	var cmds []string
	for _, e := range entries {
		name := e.Name()
		base, ok := strings.CutSuffix(name, ".zst")
		zstdFlag := ""
		if ok {
			zstdFlag = " --zstd"
		}
		base, isTar := strings.CutSuffix(base, ".tar")
		if !isTar {
			continue // backup_manifest
		}
		var into string
		switch base {
		case "base":
			into = dst
		case "pg_wal":
			into = filepath.Join(dst, "pg_wal")
		default:
			return "", fmt.Errorf("pg_basebackup in %s has tablespace tar %s; the benchmark cluster has none", src, name)
		}
		cmds = append(cmds, fmt.Sprintf("mkdir -p %s && tar -C %s%s -xf %s", shellQuote(into), shellQuote(into), zstdFlag, shellQuote(filepath.Join(src, name))))
	}
	if len(cmds) == 0 {
		return "", fmt.Errorf("no tar files in %s", src)
	}
	cmds = append(cmds, "sync -f "+shellQuote(dst))
	return strings.Join(cmds, " && "), nil
}

// logical times hestami's logical backup of the pgbench database against pg_dump
// piped into zstd and pg_dump with its own (gzip) compression.
func (b *bench) logical(ctx context.Context) error {
	h := b.rep.row(opLogical, "hestami backup push --type logical --database "+dbName, true)
	z := b.rep.row(opLogical, "pg_dump -Fc -Z0 | zstd -T2 -3", false)
	d := b.rep.row(opLogical, "pg_dump -Fc (built-in gzip)", false)
	h.Note = "RSS includes the pg_dump it runs"
	out := filepath.Join(b.work, "dump")
	dumpCmd := shellQuote(b.bin.Path("pg_dump"))
	for _, a := range b.pgArgs() {
		dumpCmd += " " + shellQuote(a)
	}
	for range b.opts.Runs {
		if !h.failed() {
			if err := b.settle(ctx); err != nil {
				return err
			}
			before, err := b.hestamiBackups(ctx)
			if err == nil {
				var p proc
				p, err = b.r.run(ctx, b.work, b.hestami, "--config", b.config, "backup", "push", "--type", "logical", "--database", dbName)
				if err == nil {
					var size int64
					if _, size, err = b.newHestamiBackup(ctx, before, "logical"); err == nil {
						h.add(p.Wall, size, p.MaxRSS)
					}
				}
			}
			h.failIf(err)
		}
		for _, c := range []struct {
			r      *result
			script string
		}{
			{z, fmt.Sprintf("%s -Fc -Z0 %s | zstd -T2 -3 -q > %s", dumpCmd, dbName, shellQuote(out))},
			{d, fmt.Sprintf("%s -Fc %s > %s", dumpCmd, dbName, shellQuote(out))},
		} {
			if c.r.failed() {
				continue
			}
			if err := b.settle(ctx); err != nil {
				return err
			}
			p, err := b.r.shell(ctx, b.work, c.script)
			if err == nil {
				var fi os.FileInfo
				if fi, err = os.Stat(out); err == nil {
					c.r.add(p.Wall, fi.Size(), p.MaxRSS)
				}
			}
			c.r.failIf(err)
			_ = os.Remove(out)
		}
	}
	return nil
}

// fakeDataDir makes a directory that looks like a data directory to archive_command:
// pg_wal/archive_status, and global/pg_control copied from the cluster so the
// system identifier matches. It returns the pg_wal path.
func (b *bench) fakeDataDir(dir string) (string, error) {
	pgwal := filepath.Join(dir, "pg_wal")
	for _, d := range []string{dir, filepath.Join(dir, "global"), pgwal, filepath.Join(pgwal, "archive_status")} {
		if err := b.mkdir(d); err != nil {
			return "", err
		}
	}
	if err := b.copyFile(filepath.Join(b.cluster.DataDir, "global", "pg_control"), filepath.Join(dir, "global", "pg_control")); err != nil {
		return "", err
	}
	return pgwal, nil
}

// segName is the name of segment segNo on timeline tli.
func segName(tli uint32, segNo, segSize uint64) string {
	perLog := uint64(0x100000000) / segSize
	return fmt.Sprintf("%08X%08X%08X", tli, segNo/perLog, segNo%perLog)
}

// archiveCommand is how PostgreSQL's archiver runs a command: through /bin/sh -c,
// in the data directory.
func (b *bench) archiveCommand(ctx context.Context, dataDir, command string) (proc, error) {
	return b.r.run(ctx, dataDir, "/bin/sh", "-c", command)
}

// walPush times hestami wal push of one real segment, copied under --segments
// names into a fresh repository, against cp && sync of the same file, alternating
// the two, and reports the 50th and 95th percentiles of each run.
func (b *bench) walPush(ctx context.Context) error {
	hp50 := b.rep.row(opPushP50, "hestami wal push", true)
	cp50 := b.rep.row(opPushP50, "cp && sync", false)
	hp95 := b.rep.row(opPushP95, "hestami wal push", true)
	cp95 := b.rep.row(opPushP95, "cp && sync", false)
	hp50.Note = fmt.Sprintf("%d pushes of a 16 MiB segment, one repository per run", b.opts.Segments)
	for run := range b.opts.Runs {
		w, err := b.segmentsRun(fmt.Sprintf("walpush-%d", run), uint64(0x100+run)<<8, b.opts.Segments, false)
		if err != nil {
			return err
		}
		dir, data, repo, cfg, dest, names := w.dir, w.data, w.repo, w.cfg, w.dest, w.names

		var hs, cs []time.Duration
		var hRSS, cRSS int64
		for _, name := range names {
			if !hp50.failed() {
				p, err := b.archiveCommand(ctx, data, fmt.Sprintf("%s --config %s wal push pg_wal/%s", shellQuote(b.hestami), shellQuote(cfg), name))
				if err != nil {
					hp50.fail(err)
					hp95.fail(errors.New("see wal push p50"))
				}
				hs = append(hs, p.Wall)
				hRSS = max(hRSS, p.MaxRSS)
			}
			if !cp50.failed() {
				p, err := b.archiveCommand(ctx, data, fmt.Sprintf("cp pg_wal/%s %s && sync %s", name, shellQuote(dest), shellQuote(filepath.Join(dest, name))))
				if err != nil {
					cp50.fail(err)
					cp95.fail(errors.New("see wal push p50"))
				}
				cs = append(cs, p.Wall)
				cRSS = max(cRSS, p.MaxRSS)
			}
		}
		if !hp50.failed() {
			stored, _ := dirSize(repo)
			per := stored / int64(len(names))
			hp50.add(percentile(hs, 50), per, hRSS)
			hp95.add(percentile(hs, 95), per, hRSS)
		}
		if !cp50.failed() {
			cp50.add(percentile(cs, 50), b.rep.Dataset.SegmentBytes, cRSS)
			cp95.add(percentile(cs, 95), b.rep.Dataset.SegmentBytes, cRSS)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return nil
}

// backlog times clearing --backlog ready segments the way PostgreSQL's archiver
// does after an outage: archive_command once per segment, in order, renaming
// NAME.ready to NAME.done after each success (hestami pushes the next ready ones
// ahead, in parallel, while it runs). cp && sync per segment is the reference.
func (b *bench) backlog(ctx context.Context) error {
	n := b.opts.Backlog
	h := b.rep.row(opBacklog, fmt.Sprintf("hestami wal push, %d ready segments", n), true)
	c := b.rep.row(opBacklog, fmt.Sprintf("cp && sync, %d segments", n), false)
	for run := range b.opts.Runs {
		w, err := b.segmentsRun(fmt.Sprintf("backlog-%d", run), uint64(0x200+run)<<8, n, true)
		if err != nil {
			return err
		}
		dir, data, pgwal, repo, cfg, dest, names := w.dir, w.data, w.pgwal, w.repo, w.cfg, w.dest, w.names

		if !h.failed() {
			var rss int64
			start := time.Now()
			var err error
			for _, name := range names {
				var p proc
				p, err = b.archiveCommand(ctx, data, fmt.Sprintf("%s --config %s wal push pg_wal/%s", shellQuote(b.hestami), shellQuote(cfg), name))
				if err != nil {
					break
				}
				rss = max(rss, p.MaxRSS)
				status := filepath.Join(pgwal, "archive_status", name)
				if err = os.Rename(status+".ready", status+".done"); err != nil {
					break
				}
			}
			wall := time.Since(start)
			if err == nil {
				stored, _ := dirSize(repo)
				h.add(wall, stored, rss)
			}
			h.failIf(err)
		}
		if !c.failed() {
			syscall.Sync()
			var rss int64
			start := time.Now()
			var err error
			for _, name := range names {
				var p proc
				p, err = b.archiveCommand(ctx, data, fmt.Sprintf("cp pg_wal/%s %s && sync %s", name, shellQuote(dest), shellQuote(filepath.Join(dest, name))))
				if err != nil {
					break
				}
				rss = max(rss, p.MaxRSS)
			}
			if err == nil {
				c.add(time.Since(start), int64(n)*b.rep.Dataset.SegmentBytes, rss)
			}
			c.failIf(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	for _, r := range []*result{h, c} {
		if !r.failed() && r.Seconds > 0 {
			r.PerSecond = float64(n) / r.Seconds
			r.Note = strconv.FormatFloat(r.PerSecond, 'f', 1, 64) + " segments/s"
		}
	}
	return nil
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := (p*len(s) + 99) / 100 // ceil(p/100 * n)
	return s[max(rank, 1)-1]
}

// walRun is one prepared run of a WAL step (see segmentsRun).
type walRun struct {
	dir, data, pgwal, repo, cfg, dest string
	names                             []string
}

// segmentsRun prepares one run of a WAL step in work directory name: a fake data
// directory holding n copies of the real segment under consecutive names from
// segment number base (marked .ready when ready), a hestami config with a fresh
// repository, and a directory for cp. Everything is synced to disk before timing.
func (b *bench) segmentsRun(name string, base uint64, n int, ready bool) (walRun, error) {
	dir := filepath.Join(b.work, name)
	w := walRun{dir: dir, data: filepath.Join(dir, "data"), repo: filepath.Join(dir, "repo"),
		cfg: filepath.Join(dir, "hestami.yaml"), dest: filepath.Join(dir, "cp"), names: make([]string, n)}
	var err error
	if w.pgwal, err = b.fakeDataDir(w.data); err != nil {
		return w, err
	}
	if err := b.writeHestamiConfig(w.cfg, w.repo); err != nil {
		return w, err
	}
	if err := b.mkdir(w.dest); err != nil {
		return w, err
	}
	for k := range w.names {
		w.names[k] = segName(1, base+uint64(k), b.segSize)
		if err := b.copyFile(b.segment, filepath.Join(w.pgwal, w.names[k])); err != nil {
			return w, err
		}
		if ready {
			if err := b.writeFile(filepath.Join(w.pgwal, "archive_status", w.names[k]+".ready"), nil); err != nil {
				return w, err
			}
		}
	}
	syscall.Sync()
	return w, nil
}
