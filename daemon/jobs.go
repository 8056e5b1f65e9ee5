package daemon

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/backup"
)

// expectedGrowth is the margin a pre-check adds to the recent backups' size.
const expectedGrowth = 1.2

// minSizeHistory is how many earlier backups a size judgement needs.
const minSizeHistory = 3

// backupJob takes a scheduled backup of type t: pre-checks, the backup, its
// verification and, if configured, retention.
func (d *Daemon) backupJob(ctx context.Context, t backup.Type) error {
	log := d.log.With("job", string(t))
	pre := d.precheck(ctx, t)
	preKey := "precheck:" + string(t)
	if len(pre.problems) > 0 {
		sev, verdict := alert.Warning, "the backup runs anyway"
		if pre.blocking {
			sev, verdict = alert.Critical, "the backup was NOT taken"
		}
		d.fire(ctx, alert.Alert{Key: preKey, Severity: sev,
			Summary: fmt.Sprintf("Pre-checks of the scheduled %s backup on %s failed: %s", t, d.o.Host, verdict),
			Details: strings.Join(pre.problems, "\n\n"),
			Labels:  map[string]string{"job": string(t)}})
		if pre.blocking {
			err := refusedError{fmt.Errorf("%s backup not taken: pre-checks failed: %s", t, strings.Join(pre.problems, "; "))}
			d.audit(ctx, "backup.push", "", err, map[string]string{"type": string(t)})
			return err
		}
	} else {
		d.resolve(ctx, preKey)
	}

	began := time.Now()
	m, err := d.o.Backups[t](ctx)
	target := ""
	if m != nil {
		target = m.ID
	}
	if err != nil && errors.Is(context.Cause(ctx), ErrShutdown) {
		err = fmt.Errorf("%w; interrupted: %w", err, ErrShutdown)
	}
	d.audit(ctx, "backup.push", target, err, map[string]string{"type": string(t), "scheduled": "true"})
	failKey := "backup-failed:" + string(t)
	if err != nil {
		d.fire(ctx, alert.Alert{Key: failKey, Severity: alert.Critical,
			Summary: fmt.Sprintf("Scheduled %s backup failed on %s", t, d.o.Host),
			Details: err.Error() + "\n\nNothing that failed is ever used for a restore: a backup without a manifest stays incomplete " +
				"(hestami backup list shows it) until retention removes it. Fix the cause above; the next scheduled backup retries.",
			Labels: map[string]string{"job": string(t)}})
		return err
	}
	d.resolve(ctx, failKey)
	log.Info("backup taken", "backup", m.ID, "size", m.Size, "stored_size", m.StoredSize, "seconds", time.Since(began).Seconds())
	if d.o.NotifySuccess {
		d.event(ctx, alert.Alert{Key: "backup-succeeded:" + string(t), Severity: alert.Info,
			Summary: fmt.Sprintf("%s backup %s complete on %s", capitalize(string(t)), m.ID, d.o.Host),
			Details: fmt.Sprintf("Backup %s: %s (stored %s) in %s.", m.ID, backup.FormatBytes(m.Size), backup.FormatBytes(m.StoredSize), time.Since(began).Round(time.Second)),
			Labels:  map[string]string{"job": string(t), "backup": m.ID}})
	}
	d.checkSize(ctx, m)
	verr := d.verifyBackup(ctx, m)
	if d.o.PruneAfterBackup && ctx.Err() == nil {
		// A failed verification is no reason not to prune: retention deletes a backup
		// only once a newer one has passed.
		if err := d.withLease(ctx, JobPrune, d.pruneJob); err != nil && !errors.Is(err, errSkipped) {
			return errors.Join(verr, err)
		}
	}
	return verr
}

// precheckResult is what the checks before a backup found.
type precheckResult struct {
	problems []string
	// blocking: the backup cannot succeed, so it is not started.
	blocking bool
}

// precheck checks, before a backup of type t: the repository can be listed, the
// database answers, the storage has room for a backup the size of the recent ones,
// and the previous backup of the type is complete and verified.
func (d *Daemon) precheck(ctx context.Context, t backup.Type) precheckResult {
	var r precheckResult
	block := func(format string, args ...any) {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
		r.blocking = true
	}
	warn := func(format string, args ...any) { r.problems = append(r.problems, fmt.Sprintf(format, args...)) }

	if d.o.Server != nil {
		if err := d.o.Server.Ping(ctx); err != nil {
			block("The database does not answer: %v", err)
		}
	}
	entries, err := d.o.Repo.Backups(ctx)
	if err != nil {
		block("The repository cannot be read: %v. Check that the storage is reachable and the credentials are valid.", err)
		return r
	}
	ms := backup.Complete(entries, t)
	if sr, ok := d.o.Repo.Storage.(backup.SpaceReporter); ok {
		if need, n := expectedSize(ms, d.o.SizeHistory); n > 0 {
			free, err := sr.FreeSpace(ctx)
			switch {
			case err != nil:
				warn("The storage's free space cannot be read (%v), so it was not checked.", err)
			case free < need:
				block("Not enough free space in %s: %s free, the backup is expected to need %s (the median of the last %d %s backups, plus 20%%). "+
					"Free some space (retention: hestami backup prune --dry-run), or give the storage more room.",
					d.o.Repo.Storage, backup.FormatBytes(int64(free)), backup.FormatBytes(int64(need)), n, t)
			}
		}
	}
	var prev *backup.BackupEntry
	for i := len(entries) - 1; i >= 0; i-- {
		if e := entries[i]; e.Manifest != nil && e.Manifest.Type == t || e.Manifest == nil && backup.IDType(e.ID) == t {
			prev = &entries[i]
			break
		}
	}
	switch {
	case prev == nil:
	case prev.Status == backup.StatusIncomplete:
		warn("The previous %s backup, %s, has no manifest: it failed or was interrupted (or a `hestami backup push` is running now). "+
			"It is never used for a restore; retention removes it after retention.incomplete_grace.", t, prev.ID)
	case prev.Status == backup.StatusUnreadable:
		warn("The manifest of the previous %s backup, %s, cannot be read: %v. Check it with hestami backup verify %s.", t, prev.ID, prev.Err, prev.ID)
	default:
		v, err := d.o.Repo.Verification(ctx, prev.ID)
		switch {
		case err != nil:
			warn("The verification record of the previous %s backup, %s, cannot be read: %v.", t, prev.ID, err)
		case v != nil && !v.OK:
			warn("The previous %s backup, %s, failed verification at %s: %s. Retention will not count it.", t, prev.ID, v.Time.UTC().Format(time.RFC3339), v.Error)
		}
	}
	return r
}

// expectedSize returns the stored size a new backup is expected to need (the median
// of the last n backups', plus a margin) and how many backups that is from.
func expectedSize(ms []*backup.Manifest, n int) (uint64, int) {
	sizes := lastSizes(ms, n)
	if len(sizes) == 0 {
		return 0, 0
	}
	return uint64(math.Ceil(median(sizes) * expectedGrowth)), len(sizes)
}

func lastSizes(ms []*backup.Manifest, n int) []float64 {
	if len(ms) > n {
		ms = ms[len(ms)-n:]
	}
	out := make([]float64, 0, len(ms))
	for _, m := range ms {
		out = append(out, float64(m.StoredSize))
	}
	return out
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// checkSize alerts when backup m's stored size strays from the median of its
// predecessors' by more than SizeAnomalyPercent (backup.SizeAnomaly); with fewer than
// three predecessors there is nothing to judge by.
func (d *Daemon) checkSize(ctx context.Context, m *backup.Manifest) {
	entries, err := d.o.Repo.Backups(ctx)
	if err != nil {
		d.log.Warn("cannot list backups to compare the new backup's size", "backup", m.ID, "err", err)
		return
	}
	var hist []int64
	for _, x := range backup.Complete(entries, m.Type) {
		if x.ID != m.ID && x.StartTime.Before(m.StartTime) {
			hist = append(hist, x.StoredSize)
		}
	}
	if len(hist) > d.o.SizeHistory {
		hist = hist[len(hist)-d.o.SizeHistory:]
	}
	if len(hist) < minSizeHistory {
		return
	}
	key := "size-anomaly:" + string(m.Type)
	bad, reason := backup.SizeAnomaly(hist, m.StoredSize, d.o.SizeAnomalyPercent, d.o.SizeHistory)
	if !bad {
		d.resolve(ctx, key)
		return
	}
	d.fire(ctx, alert.Alert{Key: key, Severity: alert.Warning,
		Summary: fmt.Sprintf("%s backup %s is far from its usual size", capitalize(string(m.Type)), m.ID),
		Details: fmt.Sprintf("Backup %s: stored %s.\n\nA sudden change can mean lost data (a dropped table, a database missing from the dump) or a runaway table: "+
			"compare hestami backup show %s with the one before.", m.ID, reason, m.ID),
		Labels: map[string]string{"job": string(m.Type), "backup": m.ID}})
}

// VerifyBackup verifies backup id now, as the daemon verifies every new backup:
// each object against its checksums, then PostgreSQL's own check (pg_verifybackup or
// pg_restore --list). The outcome is recorded in the repository for retention,
// audited and alerted; the error says why the backup failed (or could not be read).
func (d *Daemon) VerifyBackup(ctx context.Context, id string) error {
	m, err := d.o.Repo.Manifest(ctx, id)
	if err != nil {
		return err
	}
	return d.verifyBackup(ctx, m)
}

// verifyBackup checks backup m (every object against its checksums, and PostgreSQL's
// own checks), records the outcome in the repository for retention, audits it and
// alerts on failure.
func (d *Daemon) verifyBackup(ctx context.Context, m *backup.Manifest) error {
	log := d.log.With("backup", m.ID)
	began := time.Now()
	methods := []string{"checksums"}
	var problems []string
	v := &backup.BackupVerifier{Repo: d.o.Repo, WALRepo: d.o.WALRepo, Parallel: d.o.Parallel, Logger: d.log}
	rep, err := v.Verify(ctx, m.ID)
	switch {
	case err != nil:
		problems = append(problems, err.Error())
	case !rep.OK:
		problems = append(problems, verifySummary(rep))
	}
	if len(problems) == 0 && d.o.Checker != nil {
		method, err := d.toolCheck(ctx, m)
		switch {
		case errors.Is(err, ErrToolMissing):
			log.Warn("PostgreSQL's check of the backup was skipped", "err", err)
		case err != nil:
			problems = append(problems, err.Error())
			methods = append(methods, method)
		default:
			methods = append(methods, method)
		}
	}
	if ctx.Err() != nil {
		// Interrupted: the outcome says nothing about the backup.
		err := fmt.Errorf("verification of %s interrupted: %w", m.ID, context.Cause(ctx))
		d.audit(ctx, "backup.verify", m.ID, err, nil)
		return err
	}
	rec := backup.VerificationRecord{Time: d.now().UTC(), OK: len(problems) == 0, Method: strings.Join(methods, "+")}
	var verr error
	if !rec.OK {
		rec.Error = strings.Join(problems, "; ")
		verr = fmt.Errorf("backup %s failed verification: %s", m.ID, rec.Error)
	}
	if err := d.o.Repo.RecordVerification(ctx, m.ID, rec); err != nil {
		err = fmt.Errorf("record the verification of %s (retention will not count it): %w", m.ID, err)
		verr = errors.Join(verr, err)
	}
	d.audit(ctx, "backup.verify", m.ID, verr, map[string]string{"method": rec.Method, "type": string(m.Type)})
	key := "verify-failed:" + string(m.Type)
	if verr != nil {
		d.fire(ctx, alert.Alert{Key: key, Severity: alert.Critical,
			Summary: fmt.Sprintf("%s backup %s failed verification on %s", capitalize(string(m.Type)), m.ID, d.o.Host),
			Details: verr.Error() + fmt.Sprintf("\n\nDo not count on this backup for a restore. Check it with hestami backup verify %s, "+
				"and the storage it lives in; retention keeps older backups until a newer one passes.", m.ID),
			Labels: map[string]string{"job": string(m.Type), "backup": m.ID}})
		return verr
	}
	d.resolve(ctx, key)
	log.Info("backup verified", "method", rec.Method, "seconds", time.Since(began).Seconds())
	return nil
}

// toolCheck runs pg_verifybackup on an unpacked copy of a physical backup, or
// pg_restore --list on each dump of a logical one.
func (d *Daemon) toolCheck(ctx context.Context, m *backup.Manifest) (string, error) {
	if m.Type == backup.Logical {
		for _, f := range m.Files {
			if f.Database == "" {
				continue
			}
			rc, err := d.o.Repo.OpenObject(ctx, backup.BackupKey(m.ID, f.Name))
			if err != nil {
				return "pg_restore-list", fmt.Errorf("open the dump of database %q: %w", f.Database, err)
			}
			err = d.o.Checker.ListArchive(ctx, rc)
			rc.Close()
			if err != nil {
				return "pg_restore-list", fmt.Errorf("pg_restore --list of database %q's dump: %w", f.Database, err)
			}
		}
		return "pg_restore-list", nil
	}
	tmp, err := os.MkdirTemp(d.o.ScratchDir, "hestami-verify-")
	if err != nil {
		return "pg_verifybackup", fmt.Errorf("scratch directory for pg_verifybackup: %w", err)
	}
	defer os.RemoveAll(tmp)
	dataDir := filepath.Join(tmp, "data")
	dirs := map[uint32]string{}
	for _, ts := range m.Tablespaces {
		dirs[ts.OID] = filepath.Join(tmp, "tablespace-"+strconv.FormatUint(uint64(ts.OID), 10))
	}
	for _, dir := range append([]string{dataDir}, mapValues(dirs)...) {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return "pg_verifybackup", err
		}
	}
	r := &backup.Restorer{Repo: d.o.Repo, Parallel: d.o.Parallel, Logger: d.log}
	if err := r.Unpack(ctx, m, dataDir, dirs); err != nil {
		return "pg_verifybackup", err
	}
	if err := d.o.Checker.VerifyBackup(ctx, dataDir); err != nil {
		return "pg_verifybackup", fmt.Errorf("pg_verifybackup: %w", err)
	}
	return "pg_verifybackup", nil
}

func mapValues(m map[uint32]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// verifySummary names the failed objects (the first few) and why.
func verifySummary(rep *backup.VerifyReport) string {
	fails := rep.Failures()
	var parts []string
	for _, f := range fails[:min(3, len(fails))] {
		parts = append(parts, fmt.Sprintf("%s is %s (%s)", f.Key, f.Status, f.Error))
	}
	s := fmt.Sprintf("%d of %d objects failed: %s", rep.Failed, rep.Checked, strings.Join(parts, "; "))
	if len(fails) > 3 {
		s += fmt.Sprintf(" and %d more", len(fails)-3)
	}
	return s
}

// pruneJob applies retention at the daemon's time.
func (d *Daemon) pruneJob(ctx context.Context) error {
	now := d.now()
	plan, err := d.o.Pruner.Plan(ctx, now)
	deleted := 0
	if err == nil {
		for _, ds := range plan.Backups {
			for _, dec := range ds {
				if !dec.Keep {
					deleted++
				}
			}
		}
		err = d.o.Pruner.Execute(ctx, plan)
	}
	details := map[string]string{"at": now.UTC().Format(time.RFC3339), "scheduled": "true"}
	if plan != nil {
		details["backups_deleted"] = strconv.Itoa(deleted)
		details["wal_deleted"] = strconv.Itoa(len(plan.WALDelete))
	}
	d.audit(ctx, "backup.prune", "", err, details)
	if err != nil {
		d.fire(ctx, alert.Alert{Key: "prune-failed", Severity: alert.Warning,
			Summary: fmt.Sprintf("Retention (prune) failed on %s", d.o.Host),
			Details: err.Error() + "\n\nNothing is lost, but the repository keeps growing until prune succeeds: check with hestami backup prune --dry-run.",
			Labels:  map[string]string{"job": JobPrune}})
		return err
	}
	d.resolve(ctx, "prune-failed")
	d.log.Info("pruned", "backups_deleted", deleted, "wal_deleted", len(plan.WALDelete), "wal_kept", plan.WALKept, "pitr_window_start", plan.WindowStart)
	return nil
}

// syncJob copies to the secondary storage what it is missing, so a copy that
// failed when wal push or backup push made it is not left behind.
func (d *Daemon) syncJob(ctx context.Context) error {
	n, err := d.o.Sync(ctx)
	d.audit(ctx, "storage.sync", "", err, map[string]string{"copied": strconv.Itoa(n), "scheduled": "true"})
	if err != nil {
		d.fire(ctx, alert.Alert{Key: "sync-failed", Severity: alert.Warning,
			Summary: fmt.Sprintf("Copying to the secondary storage failed on %s", d.o.Host),
			Details: err.Error() + "\n\nThe primary repository is intact; the secondary lacks some objects until a sync succeeds: check with hestami storage check, then hestami storage sync.",
			Labels:  map[string]string{"job": JobSync}})
		return err
	}
	d.resolve(ctx, "sync-failed")
	d.log.Info("synced the secondary storage", "copied", n)
	return nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
