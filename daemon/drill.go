package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/backup"
)

// drillTables is how many of the largest tables a drill counts.
const drillTables = 5

// DrillDatabasePrefix starts the name of every scratch database a logical drill
// restores into: hestami_drill_<name>.
const DrillDatabasePrefix = "hestami_drill_"

// physicalDrill restores the newest physical backup into a scratch directory, starts
// a server on it that replays the archived WAL to its end, checks it and records the
// outcome.
func (d *Daemon) physicalDrill(ctx context.Context) error {
	m, err := d.newest(ctx, backup.Physical)
	if err != nil {
		return d.drillDone(ctx, backup.Physical, backup.DrillRecord{Time: d.now().UTC(), Type: backup.Physical}, err)
	}
	return d.drillPhysical(ctx, m)
}

// drillPhysical is the physical drill of backup m.
func (d *Daemon) drillPhysical(ctx context.Context, m *backup.Manifest) error {
	var err error
	rec := backup.DrillRecord{Time: d.now().UTC(), BackupID: m.ID, Type: backup.Physical}
	log := d.log.With("job", JobDrillPhysical, "backup", m.ID)
	began := time.Now()
	err = func() error {
		if err := backup.CheckBackupWAL(ctx, d.o.WALRepo, m); err != nil {
			return err
		}
		base := d.baseline(ctx, log)
		dir, owner, remove, err := d.o.Sandbox.Prepare(ctx)
		if err != nil {
			return fmt.Errorf("prepare a scratch directory: %w", err)
		}
		defer remove()
		dataDir := filepath.Join(dir, "data")
		dirs := map[uint32]string{}
		for _, ts := range m.Tablespaces {
			dirs[ts.OID] = filepath.Join(dir, "tablespace-"+strconv.FormatUint(uint64(ts.OID), 10))
		}
		for _, p := range append([]string{dataDir}, mapValues(dirs)...) {
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
			if owner != nil {
				if err := os.Chown(p, owner.UID, owner.GID); err != nil {
					return err
				}
			}
		}
		r := &backup.Restorer{Repo: d.o.Repo, Parallel: d.o.Parallel, Logger: d.log, Owner: owner}
		if err := r.Unpack(ctx, m, dataDir, dirs); err != nil {
			return err
		}
		rc := backup.RecoveryConfig{RestoreCommand: d.o.RestoreCommand, Target: backup.Target{Kind: backup.TargetLatest}, BackupID: m.ID, Time: d.now()}
		if err := backup.WriteRecoveryConfig(dataDir, rc, owner); err != nil {
			return fmt.Errorf("configure recovery: %w", err)
		}
		rec.Checks = append(rec.Checks, fmt.Sprintf("restore: %d files, %s, unpacked and checksums verified", len(m.Files), backup.FormatBytes(m.Size)))
		sctx, cancel := context.WithTimeout(ctx, d.o.DrillTimeout)
		defer cancel()
		srv, err := d.o.Sandbox.Start(sctx, dataDir, m.PGVersion/10000)
		if err != nil {
			return fmt.Errorf("the restored server did not come up: %w", err)
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			if err := srv.Stop(stopCtx); err != nil {
				log.Warn("stop the drill's server", "err", err)
			}
		}()
		rec.RTOSeconds = time.Since(began).Seconds()
		rec.Checks = append(rec.Checks, fmt.Sprintf("recovery: replayed the archived WAL to its end and answered in %.1f s", rec.RTOSeconds))
		var failures []string
		switch err := srv.Amcheck(sctx); {
		case errors.Is(err, ErrToolMissing):
			rec.Checks = append(rec.Checks, "pg_amcheck: skipped, not installed")
		case err != nil:
			failures = append(failures, "pg_amcheck: "+err.Error())
			rec.Checks = append(rec.Checks, "pg_amcheck: FAILED")
		default:
			rec.Checks = append(rec.Checks, "pg_amcheck: ok (all databases)")
		}
		checks, fails, err := d.compareTables(sctx, srv, func(db string) string { return db }, base, time.Time{})
		rec.Checks = append(rec.Checks, checks...)
		failures = append(failures, fails...)
		if err != nil {
			failures = append(failures, err.Error())
		}
		if len(failures) > 0 {
			return errors.New(strings.Join(failures, "; "))
		}
		return nil
	}()
	if rec.RTOSeconds == 0 {
		rec.RTOSeconds = time.Since(began).Seconds()
	}
	if newest, werr := d.newestWAL(ctx); werr == nil && !newest.IsZero() {
		rec.RPOSeconds = max(0, d.now().Sub(newest).Seconds())
	}
	return d.drillDone(ctx, backup.Physical, rec, err)
}

// logicalDrill restores every database of the newest logical backup into scratch
// databases on the server, compares their largest tables with the live ones and
// drops them again.
func (d *Daemon) logicalDrill(ctx context.Context) error {
	m, err := d.newest(ctx, backup.Logical)
	if err != nil {
		return d.drillDone(ctx, backup.Logical, backup.DrillRecord{Time: d.now().UTC(), Type: backup.Logical}, err)
	}
	return d.drillLogical(ctx, m)
}

// drillLogical is the logical drill of backup m.
func (d *Daemon) drillLogical(ctx context.Context, m *backup.Manifest) error {
	var err error
	rec := backup.DrillRecord{Time: d.now().UTC(), BackupID: m.ID, Type: backup.Logical}
	log := d.log.With("job", JobDrillLogical, "backup", m.ID)
	began := time.Now()
	var restoring time.Duration
	err = func() error {
		target, release, err := d.o.Server.LogicalTarget(ctx)
		if err != nil {
			return err
		}
		defer release()
		lr := &backup.LogicalRestore{Repo: d.o.Repo, Target: target, Logger: d.log, Now: d.now}
		var failures []string
		for _, db := range m.Databases {
			into := DrillDatabaseName(db)
			if err := target.DropDatabase(ctx, into); err != nil { // left by an interrupted drill
				return err
			}
			t0 := time.Now()
			_, err := lr.Run(ctx, m, backup.LogicalRestoreOptions{Database: db, Into: into, Jobs: 1})
			restoring += time.Since(t0)
			if err != nil {
				failures = append(failures, fmt.Sprintf("restore of database %q: %v", db, err))
				rec.Checks = append(rec.Checks, fmt.Sprintf("restore %s: FAILED", db))
				continue
			}
			rec.Checks = append(rec.Checks, fmt.Sprintf("restore %s: ok, into %s", db, into))
			checks, fails, err := d.compareTables(ctx, &renamed{TableReader: d.o.Server, from: db, to: into},
				func(string) string { return db }, nil, m.StartTime)
			rec.Checks = append(rec.Checks, checks...)
			failures = append(failures, fails...)
			if err != nil {
				failures = append(failures, err.Error())
			}
			dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			if err := target.DropDatabase(dropCtx, into); err != nil {
				log.Warn("could not drop the drill's scratch database; drop it by hand", "database", into, "err", err)
			}
			cancel()
		}
		if len(failures) > 0 {
			return errors.New(strings.Join(failures, "; "))
		}
		return nil
	}()
	rec.RTOSeconds = restoring.Seconds()
	if rec.RTOSeconds == 0 {
		rec.RTOSeconds = time.Since(began).Seconds()
	}
	rec.RPOSeconds = max(0, d.now().Sub(m.StartTime).Seconds())
	return d.drillDone(ctx, backup.Logical, rec, err)
}

// ErrCannotRun is returned (wrapped) by DrillBackup when the daemon lacks what the
// drill needs (a sandbox, the server, a restore_command).
var ErrCannotRun = errors.New("the daemon is not configured for this")

// DrillBackup runs a restore drill of backup id now (physical or logical, by the
// backup's type), under the lease of that kind of drill, and records, audits and
// alerts its outcome as the scheduled drills do. It returns an error wrapping
// ErrLeaseHeld when another drill of the kind is running (here or on another daemon),
// and one wrapping ErrCannotRun when the daemon cannot run that kind of drill.
func (d *Daemon) DrillBackup(ctx context.Context, id string) error {
	m, err := d.o.Repo.Manifest(ctx, id)
	if err != nil {
		return err
	}
	kind, run := JobDrillLogical, d.drillLogical
	if m.Type == backup.Physical {
		kind, run = JobDrillPhysical, d.drillPhysical
		if d.o.Sandbox == nil || d.o.Server == nil || d.o.RestoreCommand == "" {
			return fmt.Errorf("drill of %s: %w: physical drills need a sandbox, the server and a restore_command", id, ErrCannotRun)
		}
	} else if d.o.Server == nil {
		return fmt.Errorf("drill of %s: %w: logical drills need the server", id, ErrCannotRun)
	}
	err = d.withLease(ctx, kind, func(ctx context.Context) error { return run(ctx, m) })
	if errors.Is(err, errSkipped) {
		return fmt.Errorf("drill of %s: %w: a %s is running; try again when it has finished", id, ErrLeaseHeld, kind)
	}
	return err
}

// renamed reads one database of a TableReader under another name: the scratch
// database a logical drill restored database from into.
type renamed struct {
	TableReader
	from, to string
}

func (r *renamed) Databases(context.Context) ([]string, error) { return []string{r.from}, nil }
func (r *renamed) LargestTables(ctx context.Context, db string, n int) ([]TableSize, error) {
	return r.TableReader.LargestTables(ctx, r.to, n)
}
func (r *renamed) CountRows(ctx context.Context, db string, tables []Table) (map[Table]TableCount, error) {
	return r.TableReader.CountRows(ctx, r.to, tables)
}

// DrillDatabaseName returns the scratch database a logical drill restores database
// db into: hestami_drill_<db>, cut to PostgreSQL's 63 bytes.
func DrillDatabaseName(db string) string {
	name := DrillDatabasePrefix + db
	for len(name) > 63 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	return name
}

// baseline is the live tables' statistics when a physical drill began, by database.
// Once it is read, the drill switches WAL and waits for the segment to be archived,
// so the restored data (replayed to the end of the archive) is at least as new as
// the baseline, and what the live server wrote since is bounded by how much its
// statistics grew from the baseline. nil: no bound known.
type baseline map[string]map[Table]TableCount

func (d *Daemon) baseline(ctx context.Context, log *slog.Logger) baseline {
	dbs, err := d.o.Server.Databases(ctx)
	if err != nil {
		log.Warn("cannot read the live statistics; row counts will not be judged", "err", err)
		return nil
	}
	b := baseline{}
	for _, db := range dbs {
		if b[db], err = d.o.Server.TableStats(ctx, db); err != nil {
			log.Warn("cannot read the live statistics; row counts will not be judged", "database", db, "err", err)
			return nil
		}
	}
	seg, err := d.o.Server.SwitchWAL(ctx)
	if err == nil {
		err = d.waitArchived(ctx, seg)
	}
	if err != nil {
		log.Warn("cannot make sure the archive reaches the drill's start; row counts will not be judged", "err", err)
		return nil
	}
	return b
}

// waitArchived polls the WAL repository until segment name is archived.
func (d *Daemon) waitArchived(ctx context.Context, name string) error {
	f, err := backup.ParseWALName(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, min(d.o.DrillTimeout, 5*time.Minute))
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		_, err := d.o.WALRepo.Storage.Stat(ctx, backup.WALKey(f))
		if err == nil {
			return nil
		}
		if !errors.Is(err, backup.ErrNotFound) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("WAL segment %s was not archived in time: %w", name, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// compareTables counts the rows of the restored server's largest tables and
// compares them with the live server's (liveDB maps a restored database to its live
// name). What the live server wrote since the restored point is bounded by its
// statistics' growth from base, or, without a base, by its statistics since they
// began, if that is before snapshot (the time the restored data is from).
func (d *Daemon) compareTables(ctx context.Context, restored TableReader, liveDB func(string) string, base baseline, snapshot time.Time) (checks, failures []string, err error) {
	dbs, err := restored.Databases(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list the restored databases: %w", err)
	}
	type dbTable struct {
		db string
		TableSize
	}
	var all []dbTable
	for _, db := range dbs {
		ts, err := restored.LargestTables(ctx, db, drillTables)
		if err != nil {
			return checks, failures, fmt.Errorf("list the tables of restored database %q: %w", db, err)
		}
		for _, t := range ts {
			all = append(all, dbTable{db, t})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Bytes > all[j].Bytes })
	all = all[:min(drillTables, len(all))]
	if len(all) == 0 {
		return []string{"row counts: the backup holds no user tables"}, nil, nil
	}
	byDB := map[string][]Table{}
	var order []string
	for _, t := range all {
		if _, ok := byDB[t.db]; !ok {
			order = append(order, t.db)
		}
		byDB[t.db] = append(byDB[t.db], t.Table)
	}
	for _, db := range order {
		tables := byDB[db]
		got, err := restored.CountRows(ctx, db, tables)
		if err != nil {
			return checks, failures, fmt.Errorf("count rows in restored database %q: %w", db, err)
		}
		live := liveDB(db)
		want, err := d.o.Server.CountRows(ctx, live, tables)
		if err != nil {
			return checks, failures, fmt.Errorf("count rows in live database %q: %w", live, err)
		}
		cumulative := false
		if base == nil && !snapshot.IsZero() {
			since, err := d.o.Server.StatsSince(ctx, live)
			if err != nil {
				return checks, failures, fmt.Errorf("read the statistics of live database %q: %w", live, err)
			}
			cumulative = !since.After(snapshot)
		}
		for _, t := range tables {
			var r, l *TableCount
			if c, ok := got[t]; ok {
				r = &c
			}
			bounded := cumulative
			if c, ok := want[t]; ok {
				if b, ok := base[live][t]; ok && base != nil {
					c.Inserted, c.Deleted = c.Inserted-b.Inserted, c.Deleted-b.Deleted
					bounded = c.Inserted >= 0 && c.Deleted >= 0 // negative: statistics reset meanwhile
				}
				l = &c
			}
			c, f := JudgeCount(live+"."+t.String(), r, l, bounded)
			checks = append(checks, c)
			if f != "" {
				failures = append(failures, f)
			}
		}
	}
	return checks, failures, nil
}

// JudgeCount compares one table's restored row count with the live one. The live
// table may have changed since the restored point in time, by at most live.Inserted
// rows inserted and live.Deleted deleted (when bounded says they cover that time): a difference within those bounds is "rows written since", one
// outside them is data the restore lost or invented. A nil count is a table that is
// not there. It returns the check line and, for a failure, the failure.
func JudgeCount(name string, restored, live *TableCount, bounded bool) (check, failure string) {
	if restored == nil {
		return fmt.Sprintf("rows %s: FAILED, missing from the restore", name), fmt.Sprintf("table %s is missing from the restore", name)
	}
	if live == nil {
		return fmt.Sprintf("rows %s: %d restored; dropped from the live server since", name, restored.Rows), ""
	}
	diff := live.Rows - restored.Rows
	if !bounded {
		return fmt.Sprintf("rows %s: %d restored, %d live (not judged: the live statistics do not cover the time since the restored point)", name, restored.Rows, live.Rows), ""
	}
	if diff > live.Inserted || -diff > live.Deleted {
		return fmt.Sprintf("rows %s: FAILED, %d restored, %d live", name, restored.Rows, live.Rows),
			fmt.Sprintf("table %s: %d rows restored, %d live, a difference of %+d that the %d rows inserted and %d deleted since cannot explain",
				name, restored.Rows, live.Rows, diff, live.Inserted, live.Deleted)
	}
	return fmt.Sprintf("rows %s: %d restored, %d live (%+d written since): ok", name, restored.Rows, live.Rows, diff), ""
}

// newest returns the newest complete backup of type t.
func (d *Daemon) newest(ctx context.Context, t backup.Type) (*backup.Manifest, error) {
	entries, err := d.o.Repo.Backups(ctx)
	if err != nil {
		return nil, err
	}
	ms := backup.Complete(entries, t)
	if len(ms) == 0 {
		return nil, fmt.Errorf("no complete %s backup in %s to drill", t, d.o.Repo.Storage)
	}
	return ms[len(ms)-1], nil
}

// newestWAL returns when the newest archived WAL file was stored.
func (d *Daemon) newestWAL(ctx context.Context) (time.Time, error) {
	wal, err := d.o.WALRepo.ListWAL(ctx, 0)
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	for _, w := range wal {
		if w.Kind == backup.WALSegment && w.ModTime.After(t) {
			t = w.ModTime
		}
	}
	return t, nil
}

// drillDone records, audits and alerts the outcome of a drill.
func (d *Daemon) drillDone(ctx context.Context, t backup.Type, rec backup.DrillRecord, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), ErrShutdown) {
		// Interrupted: that says nothing about the backup. Audit it, record nothing.
		err = fmt.Errorf("%s drill interrupted: %w", t, context.Cause(ctx))
		d.audit(ctx, "backup.drill", rec.BackupID, err, map[string]string{"type": string(t)})
		return err
	}
	rec.OK = err == nil
	if err != nil {
		rec.Error = err.Error()
	}
	var recErr error
	if rec.BackupID != "" {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		recErr = d.o.Repo.RecordDrill(rctx, rec)
		cancel()
		if recErr != nil {
			d.log.Error("could not record the drill", "backup", rec.BackupID, "err", recErr)
		}
	}
	d.audit(ctx, "backup.drill", rec.BackupID, err, map[string]string{"type": string(t),
		"rto_seconds": fmt.Sprintf("%.1f", rec.RTOSeconds), "rpo_seconds": fmt.Sprintf("%.0f", rec.RPOSeconds)})
	key := "drill-failed:" + string(t)
	if err != nil {
		what := "backup " + rec.BackupID
		if rec.BackupID == "" {
			what = "no backup"
		}
		d.fire(ctx, alert.Alert{Key: key, Severity: alert.Critical,
			Summary: fmt.Sprintf("%s restore drill of %s failed on %s", capitalize(string(t)), what, d.o.Host),
			Details: err.Error() + "\n\nChecks:\n  " + strings.Join(rec.Checks, "\n  ") +
				"\n\nA backup that does not pass a drill may not restore when it is needed: find the cause now (hestami backup verify, " +
				"hestami restore --verify into a scratch directory).",
			Labels: map[string]string{"job": "drill-" + string(t), "backup": rec.BackupID}})
		return fmt.Errorf("%s drill of %s: %w", t, what, err)
	}
	d.resolve(ctx, key)
	d.log.Info("drill passed", "type", t, "backup", rec.BackupID, "rto_seconds", rec.RTOSeconds, "rpo_seconds", rec.RPOSeconds, "checks", strings.Join(rec.Checks, "; "))
	return recErr
}
