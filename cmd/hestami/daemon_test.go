package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/alert/alerttest"
	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/daemon"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// simClock is the daemon's clock in tests: it moves only when told.
type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *simClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// simStart is midnight UTC after the next one: simulated time lies after the real
// start of the test's server, whose statistics then cover every simulated day.
func simStart() time.Time {
	return time.Now().UTC().Truncate(24 * time.Hour).Add(48 * time.Hour)
}

// daemonProgram returns a Program set up with config, logging at level to the test.
func daemonProgram(t *testing.T, config string, level slog.Level) *Program {
	t.Helper()
	getenv := func(k string) (string, bool) {
		if k == "HESTAMI_CONFIG" {
			return config, true
		}
		return "", false
	}
	p := NewProgram(strings.NewReader(""), io.Discard, t.Output(), getenv)
	if err := p.setup(); err != nil {
		t.Fatalf("setup: %v", err)
	}
	p.logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
	return p
}

// tickAt moves the clock to at, runs what is due and waits for it.
func tickAt(t *testing.T, d *daemon.Daemon, clk *simClock, at time.Time) {
	t.Helper()
	clk.Set(at)
	d.Tick(t.Context(), at)
	d.Wait()
}

// jobOK fails the test unless job's last run succeeded.
func jobOK(t *testing.T, d *daemon.Daemon, job string) {
	t.Helper()
	for _, s := range d.Status() {
		if s.Name == job {
			if s.LastOutcome != daemon.OutcomeOK {
				t.Fatalf("job %s: outcome %q: %s", job, s.LastOutcome, s.LastError)
			}
			return
		}
	}
	t.Fatalf("no job %s", job)
}

// firing returns the keys of the firing (and repeated) notifications in ns.
func firing(ns []alert.Notification) []string {
	var out []string
	for _, n := range ns {
		if n.State == alert.Firing || n.State == alert.Repeat {
			out = append(out, n.Key)
		}
	}
	return out
}

// flipByte damages the object at path, in its middle.
func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestDaemonDrills runs a day of the daemon against a real server (backups at 02:00
// and 02:30, drills at 04:00 and 05:00, with rows written between them): both
// drills pass and are recorded with their checks. Then the newest physical backup's
// base.tar is damaged: the next drill fails, is recorded as failed, audited, and
// alerted to the notification receiver.
func TestDaemonDrills(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	a := pgtest.NewArchivingConfig(t, map[string]string{"wal_recycle": "off"}, fmt.Sprintf(`daemon:
  state_dir: %s
  schedules:
    physical: "0 2 * * *"
    logical: "30 2 * * *"
  drills:
    physical: "0 4 * * *"
    logical: "0 5 * * *"
`, state))
	c := a.Cluster
	pgtest.Exec(t, c, "postgres", "CREATE DATABASE app")
	pgtest.Exec(t, c, "app", "CREATE TABLE orders (id int PRIMARY KEY, note text)")
	pgtest.Exec(t, c, "app", "INSERT INTO orders SELECT g, repeat('n', 100) FROM generate_series(1, 5000) g")
	pgtest.Exec(t, c, "postgres", "CREATE TABLE small (id int)")
	pgtest.Exec(t, c, "postgres", "INSERT INTO small SELECT generate_series(1, 10)")

	rec := alerttest.NewRecorder("test")
	clk := &simClock{t: simStart()}
	day := clk.Now()
	p := daemonProgram(t, a.Config, slog.LevelInfo)
	d, _, err := p.newDaemon(t.Context(), daemonDeps{Now: clk.Now, Senders: []alert.Sender{rec}, HestamiPath: a.Bin})
	if err != nil {
		t.Fatal(err)
	}
	tickAt(t, d, clk, day.Add(2*time.Hour))
	jobOK(t, d, daemon.JobPhysical)
	pgtest.Exec(t, c, "app", "INSERT INTO orders SELECT g, 'after the physical backup' FROM generate_series(5001, 5100) g")
	tickAt(t, d, clk, day.Add(150*time.Minute))
	jobOK(t, d, daemon.JobLogical)
	pgtest.Exec(t, c, "app", "INSERT INTO orders SELECT g, 'after the logical backup' FROM generate_series(5101, 5150) g")
	pgtest.Exec(t, c, "app", "DELETE FROM orders WHERE id <= 20")

	began := time.Now()
	tickAt(t, d, clk, day.Add(4*time.Hour))
	jobOK(t, d, daemon.JobDrillPhysical)
	t.Logf("physical drill took %s", time.Since(began))
	began = time.Now()
	tickAt(t, d, clk, day.Add(5*time.Hour))
	jobOK(t, d, daemon.JobDrillLogical)
	t.Logf("logical drill took %s", time.Since(began))

	repo, err := p.repository(false)
	if err != nil {
		t.Fatal(err)
	}
	drills, err := repo.Drills(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(drills) != 2 {
		t.Fatalf("drill records: %+v, want 2", drills)
	}
	for _, dr := range drills {
		checks := strings.Join(dr.Checks, "\n")
		t.Logf("%s drill of %s: ok=%v rto=%.1fs rpo=%.0fs\n%s", dr.Type, dr.BackupID, dr.OK, dr.RTOSeconds, dr.RPOSeconds, checks)
		if !dr.OK || dr.RTOSeconds <= 0 || dr.RPOSeconds < 0 {
			t.Errorf("%s drill record: %+v", dr.Type, dr)
		}
		switch dr.Type {
		case backup.Physical:
			// Replayed to the end of the archive: the rows written after the backup are
			// there, the deleted ones gone; nothing is "written since".
			for _, want := range []string{"pg_amcheck: ok", "rows app.public.orders: 5130 restored, 5130 live (+0 written since): ok", "rows postgres.public.small: 10 restored"} {
				if !strings.Contains(checks, want) {
					t.Errorf("physical drill checks lack %q", want)
				}
			}
		case backup.Logical:
			if !strings.Contains(checks, "rows app.public.orders: 5100 restored, 5130 live (+30 written since): ok") {
				t.Errorf("logical drill checks lack the orders row count")
			}
		}
	}
	var left int
	pgtest.QueryRow(t, c, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'hestami_drill_%'").Scan(&left)
	if left != 0 {
		t.Errorf("%d scratch databases left behind by the logical drill", left)
	}
	if f := firing(rec.Take()); len(f) != 0 {
		t.Errorf("alerts fired on a good day: %v", f)
	}

	// Damage the newest physical backup: the next drill must fail, loudly.
	m := backup.Complete(mustBackups(t, repo), backup.Physical)[0]
	flipByte(t, filepath.Join(a.Repo, filepath.FromSlash(backup.BackupKey(m.ID, backup.BaseArchive))))
	if err := d.RunJob(t.Context(), daemon.JobDrillPhysical); err == nil {
		t.Fatal("drill of a damaged backup passed")
	}
	sent := rec.Take()
	if f := firing(sent); !slices.Contains(f, "drill-failed:physical") {
		t.Fatalf("alerts after the failed drill: %v, want drill-failed:physical", f)
	}
	for _, n := range sent {
		if n.Key == "drill-failed:physical" && (n.Severity != alert.Critical || !strings.Contains(n.Summary, m.ID)) {
			t.Errorf("drill alert: %+v", n)
		}
	}
	drills, err = repo.Drills(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	last := drills[len(drills)-1]
	if last.OK || last.BackupID != m.ID || !strings.Contains(last.Error, backup.BaseArchive) {
		t.Errorf("failed drill record: %+v", last)
	}
	entries, _, err := repo.AuditLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action+":"+e.Outcome)
		if !strings.HasPrefix(e.Actor, "hestami-daemon@") {
			t.Errorf("audit entry by %q, want hestami-daemon@host", e.Actor)
		}
	}
	want := []string{"daemon.start:ok", "backup.push:ok", "backup.verify:ok", "backup.prune:ok", "backup.push:ok", "backup.verify:ok", "backup.prune:ok",
		"backup.drill:ok", "backup.drill:ok", "backup.drill:failed"}
	if !slices.Equal(actions, want) {
		t.Errorf("audit log: %v\nwant %v", actions, want)
	}
}

func mustBackups(t *testing.T, repo *backup.Repository) []backup.BackupEntry {
	t.Helper()
	entries, err := repo.Backups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// TestDaemonShutdownDuringBackup stops the daemon while a physical backup waits for
// WAL that is never archived (archive_command fails): once the grace period is over
// the backup is cancelled, stays incomplete (no manifest), is audited and alerted as
// failed, and its lease is released.
func TestDaemonShutdownDuringBackup(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, map[string]string{"archive_mode": "on", "archive_command": "/bin/false"})
	repoDir := filepath.Join(pgtest.Dir(t), "repo")
	config := writeTestConfig(t, repoDir, c.Port)
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "daemon:\n  state_dir: %s\n  drills:\n    physical: \"off\"\n    logical: \"off\"\n", t.TempDir())
	f.Close()
	rec := alerttest.NewRecorder("test")
	clk := &simClock{t: simStart()}
	p := daemonProgram(t, config, slog.LevelInfo)
	d, _, err := p.newDaemon(t.Context(), daemonDeps{Now: clk.Now, Senders: []alert.Sender{rec}, GracePeriod: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(clk.Now().Add(2 * time.Hour))
	d.Tick(t.Context(), clk.Now())

	repo, err := p.repository(false)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the base backup is stored: the backup then waits for its WAL.
	var id string
	deadline := time.Now().Add(time.Minute)
	for id == "" {
		for _, e := range mustBackups(t, repo) {
			for _, o := range e.Objects {
				if strings.HasSuffix(o.Key, "/"+backup.BaseArchive+".zst") {
					id = e.ID
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the backup did not store its base.tar within a minute")
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if h, err := (&daemon.Leaser{Storage: repo.Storage}).Holder(t.Context(), daemon.JobPhysical); err != nil || h == nil {
		t.Fatalf("no lease held while the backup runs: %+v, %v", h, err)
	}
	d.Shutdown()

	entries := mustBackups(t, repo)
	if len(entries) != 1 || entries[0].ID != id || entries[0].Status != backup.StatusIncomplete {
		t.Fatalf("backups after the shutdown: %+v, want %s incomplete", entries, id)
	}
	if h, err := (&daemon.Leaser{Storage: repo.Storage}).Holder(t.Context(), daemon.JobPhysical); err != nil || h != nil {
		t.Fatalf("lease after the shutdown: %+v, %v; want released", h, err)
	}
	log, _, err := repo.AuditLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 2 || log[0].Action != "daemon.start" || log[1].Action != "backup.push" || log[1].Outcome != "failed" || !strings.Contains(log[1].Details["error"], "shutting down") {
		t.Errorf("audit log: %+v, want the push failed by the shutdown", log)
	}
	if f := firing(rec.Take()); !slices.Contains(f, "backup-failed:physical") {
		t.Errorf("alerts: %v, want backup-failed:physical", f)
	}
	if err := d.RunJob(t.Context(), daemon.JobPhysical); !errors.Is(err, daemon.ErrShutdown) {
		t.Errorf("RunJob after shutdown = %v, want ErrShutdown", err)
	}
}

// nextJob returns when the next job other than the monitor is due.
func nextJob(d *daemon.Daemon) time.Time {
	var next time.Time
	for _, s := range d.Status() {
		if s.Name != daemon.JobMonitor && !s.Next.IsZero() && (next.IsZero() || s.Next.Before(next)) {
			next = s.Next
		}
	}
	return next
}

// TestDaemonEightMonths runs eight months of the daemon's schedules, the simulated
// clock jumping from one due time to the next, against a real server and the file
// backend: a physical backup every 8th day (the 1st, 9th, 17th and 25th), a logical
// one on the 1st and 15th, each verified, with retention (3 daily, 4 weekly, 6
// monthly) after each. It ends with exactly the backups backup.PlanRetention keeps
// for those times, the WAL pruned to the PITR window plus the older kept backups'
// own ranges (timeline history files kept), and the oldest monthly backup
// restorable to its end.
func TestDaemonEightMonths(t *testing.T) {
	t.Parallel()
	state, scratch := t.TempDir(), t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		// Each backup is unpacked for pg_verifybackup: spare the disk ~40 of them.
		if scratch, err = os.MkdirTemp("/dev/shm", "hestami-test-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(scratch) })
	}
	a := pgtest.NewArchivingConfig(t, map[string]string{"wal_recycle": "off"}, fmt.Sprintf(`retention:
  daily: 3
  weekly: 4
  monthly: 6
daemon:
  state_dir: %s
  scratch_dir: %s
  schedules:
    physical: "0 2 */8 * *"
    logical: "30 2 1,15 * *"
  drills:
    physical: "off"
    logical: "off"
  notify_success: false
`, state, scratch))
	c := a.Cluster
	ctx := t.Context()
	pgtest.Exec(t, c, "postgres", "CREATE TABLE days (day date PRIMARY KEY)")
	s := simStart()
	start := time.Date(s.Year(), s.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 8, 0)
	clk := &simClock{t: start}
	rec := alerttest.NewRecorder("test")
	p := daemonProgram(t, a.Config, slog.LevelWarn)
	d, _, err := p.newDaemon(ctx, daemonDeps{Now: clk.Now, Senders: []alert.Sender{rec}, HestamiPath: a.Bin})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := p.repository(false)
	if err != nil {
		t.Fatal(err)
	}

	// A timeline history file: retention must never delete one.
	pgtest.Exec(t, c, "postgres", "SELECT pg_switch_wal()") // creates the repository
	hist, _ := backup.ParseWALName("00000002.history")
	began := time.Now()
	var last time.Time
	ticks := 0
	for now := nextJob(d); now.Before(end); now = nextJob(d) {
		pgtest.Exec(t, c, "postgres", "INSERT INTO days VALUES ($1) ON CONFLICT DO NOTHING", now.Format("2006-01-02"))
		tickAt(t, d, clk, now)
		for _, st := range d.Status() {
			if st.LastOutcome == daemon.OutcomeFailed {
				t.Fatalf("%s: job %s failed: %s", now, st.Name, st.LastError)
			}
		}
		if ticks == 0 {
			if _, err := repo.PutObject(ctx, backup.WALKey(hist), strings.NewReader("1\t0/30000000\tno recovery target specified\n"), true, 1); err != nil {
				t.Fatal(err)
			}
		}
		ticks++
		last = now
	}
	t.Logf("%d ticks over %s..%s in %s", ticks, start.Format("2006-01-02"), end.Format("2006-01-02"), time.Since(began))
	if f := firing(rec.Take()); len(f) != 0 {
		t.Errorf("alerts fired: %v", f)
	}

	// Every backup pushed and verified, as the audit log says; then exactly what the
	// retention planner keeps for them is still there.
	audit, problems, err := repo.AuditLog(ctx)
	if err != nil || len(problems) > 0 {
		t.Fatalf("audit log: %v %v", problems, err)
	}
	pushed := map[backup.Type][]backup.RetentionCandidate{}
	verified := map[string]bool{}
	prunes := 0
	for _, e := range audit {
		switch {
		case e.Outcome != "ok":
			t.Errorf("audit entry %s %s: %s", e.Action, e.Target, e.Outcome)
		case e.Action == "backup.push":
			typ := backup.IDType(e.Target)
			pushed[typ] = append(pushed[typ], backup.RetentionCandidate{ID: e.Target, Time: e.Time, Complete: true, Verified: true})
		case e.Action == "backup.verify":
			verified[e.Target] = true
		case e.Action == "backup.prune":
			prunes++
		}
	}
	if n, l := len(pushed[backup.Physical]), len(pushed[backup.Logical]); n != 32 || l != 16 || prunes != n+l {
		t.Fatalf("%d physical and %d logical backups, %d prunes; want 32, 16 and one prune each", n, l, prunes)
	}
	entries := mustBackups(t, repo)
	policies := retentionPolicies(p.cfg.Retention)
	for _, typ := range []backup.Type{backup.Physical, backup.Logical} {
		for _, c := range pushed[typ] {
			if !verified[c.ID] {
				t.Errorf("backup %s was never verified", c.ID)
			}
		}
		var want, got []string
		for _, dec := range backup.PlanRetention(pushed[typ], policies[typ], last) {
			if dec.Keep {
				want = append(want, dec.ID)
			}
		}
		for _, m := range backup.Complete(entries, typ) {
			got = append(got, m.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s backups kept:\n got %v\nwant %v", typ, got, want)
		}
		t.Logf("%s: %d pushed, %d kept: %v", typ, len(pushed[typ]), len(got), got)
	}
	if len(entries) != len(backup.Complete(entries, "")) {
		t.Errorf("incomplete backups left: %+v", entries)
	}

	// WAL: everything from the PITR window's first backup on, without a gap; before
	// it only the kept backups' own ranges; the history file.
	pr := &backup.Pruner{Repo: repo, Policies: policies, PITRTier: "daily"}
	plan, err := pr.Plan(ctx, last)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.WALDelete) != 0 {
		t.Errorf("WAL left to delete after the last prune: %v", plan.WALDelete)
	}
	window, err := repo.Manifest(ctx, plan.WindowStart)
	if err != nil {
		t.Fatalf("PITR window start %q: %v", plan.WindowStart, err)
	}
	if dec := plan.Backups[backup.Physical]; !strings.Contains(strings.Join(dec[len(dec)-3].Reasons, " "), "daily") || dec[len(dec)-3].ID != window.ID {
		t.Errorf("PITR window starts at %s, want the oldest of the 3 daily backups (%+v)", window.ID, dec[len(dec)-3])
	}
	wal, err := repo.ListWAL(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	seg := func(name string) uint64 {
		f, err := backup.ParseWALName(name)
		if err != nil {
			t.Fatal(err)
		}
		return f.SegNo(window.WALSegmentSize)
	}
	kept := backup.Complete(entries, backup.Physical)
	var haveHistory bool
	var prev uint64
	before := 0
	for _, w := range wal {
		if w.Kind == backup.WALHistory {
			haveHistory = haveHistory || w.Name == hist.Name
			continue
		}
		n := w.SegNo(window.WALSegmentSize)
		if n < seg(window.StartWAL) {
			before++
			inSpan := slices.ContainsFunc(kept, func(m *backup.Manifest) bool { return n >= seg(m.StartWAL) && n <= seg(m.StopWAL) })
			if !inSpan {
				t.Errorf("WAL %s lies before the PITR window (%s) and outside every kept backup", w.Name, window.StartWAL)
			}
			continue
		}
		if w.Kind != backup.WALSegment {
			continue // a backup history file (.backup) beside its segment
		}
		if prev != 0 && n != prev+1 && n > seg(window.StartWAL) {
			t.Errorf("gap in the PITR window's WAL before %s", w.Name)
		}
		prev = n
	}
	if !haveHistory {
		t.Errorf("history file %s was pruned", hist.Name)
	}
	if before == 0 || seg(wal[0].Name) == 1 {
		t.Errorf("WAL before the window: %d segments, first %s: want the old backups' ranges only", before, wal[0].Name)
	}

	// The oldest monthly backup restores, to its own end.
	var oldest *backup.Manifest
	for _, dec := range plan.Backups[backup.Physical] {
		if strings.Contains(strings.Join(dec.Reasons, " "), "monthly") {
			if oldest, err = repo.Manifest(ctx, dec.ID); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if oldest == nil || oldest.StartTime.Format("2006-01") != last.AddDate(0, -5, -last.Day()+1).Format("2006-01") {
		t.Fatalf("oldest monthly backup: %v, want the last of the month 5 months before %s (6 monthly)", oldest, last.Format("2006-01"))
	}
	// The made-up history file would have recovery follow a timeline that never
	// existed: it has done its part.
	if err := repo.Storage.Delete(ctx, backup.WALKey(hist)); err != nil {
		t.Fatal(err)
	}
	dst := pgtest.Prepare(t)
	mustRun(t, a.Config, "restore", "--to", dst.DataDir, "--backup", oldest.ID, "--target-lsn", oldest.StopLSN.String(),
		"--target-action", "promote", "--hestami-path", a.Bin)
	startRestored(t, dst, nil)
	waitQuery(t, dst, "SELECT NOT pg_is_in_recovery()")
	var maxDay time.Time
	var n int
	pgtest.QueryRow(t, dst, "postgres", "SELECT max(day), count(*) FROM days").Scan(&maxDay, &n)
	wantDay := oldest.StartTime.UTC().Truncate(24 * time.Hour)
	var wantN int
	pgtest.QueryRow(t, c, "postgres", "SELECT count(*) FROM days WHERE day <= $1", wantDay).Scan(&wantN)
	if !maxDay.Equal(wantDay) || n != wantN {
		t.Errorf("restored %s: %d days up to %s, want %d up to %s", oldest.ID, n, maxDay.Format("2006-01-02"), wantN, wantDay.Format("2006-01-02"))
	}
}

// TestDaemonServesHealth runs backup daemon's command path (with nothing scheduled
// and no database) on a free port: /healthz answers at once, /readyz once the
// scheduler has ticked and found the repository, and cancelling stops it cleanly.
func TestDaemonServesHealth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port, err := postgres.FreePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "hestami.yaml")
	cfg := fmt.Sprintf(`storage:
  url: file://%s/repo
postgres:
  host: 127.0.0.1
  port: %d
daemon:
  state_dir: %s/state
  schedules: {physical: "off", logical: "off"}
  drills: {physical: "off", logical: "off"}
  prune: "off"
`, dir, port, dir)
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := daemonProgram(t, config, slog.LevelWarn)
	ctx, cancel := context.WithCancel(t.Context())
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- p.runDaemon(ctx, "127.0.0.1:0", daemonDeps{Listening: func(a net.Addr) { addrs <- a }})
	}()
	var base string
	select {
	case a := <-addrs:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("daemon stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("daemon did not listen within a minute")
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := get("/readyz")
		if code == http.StatusOK && strings.Contains(body, `"ready":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %s after a minute", code, body)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
	// The metrics are mounted beside them, open; without daemon.auth the status
	// page and the API are off, and say why.
	if code, body := get("/"); code != http.StatusServiceUnavailable || !strings.Contains(body, "daemon.auth.url") {
		t.Errorf("/ without daemon.auth = %d, want 503 naming daemon.auth.url:\n%.300s", code, body)
	}
	if code, body := get("/api/v1/backups"); code != http.StatusServiceUnavailable || !strings.Contains(body, "daemon.auth.url") {
		t.Errorf("/api/v1/backups without daemon.auth = %d, want 503 naming daemon.auth.url:\n%.300s", code, body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "hestami_") {
		t.Errorf("/metrics = %d, no hestami metrics:\n%.300s", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon stopped with %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("daemon did not stop within a minute of its context's end")
	}
	// Its start-up, with a fingerprint of its configuration, is in the audit log.
	var entries []backup.AuditEntry
	if err := json.Unmarshal([]byte(mustRun(t, config, "audit", "list", "--json")), &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 || entries[0].Action != "daemon.start" || entries[0].Details["config_changed"] != "first start" || len(entries[0].Details["config_sha256"]) != 64 {
		t.Fatalf("audit log after a daemon start: %+v", entries)
	}
}
