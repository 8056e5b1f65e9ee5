// Package daemon runs hestami's scheduled work, the `hestami backup daemon`: physical
// and logical backups on cron schedules, each checked before it starts and verified
// after it ends, retention, restore drills, and the alerts and audit entries all of
// these produce. Of several daemons pointed at one repository only one runs a kind
// of job at a time, through leases kept in the repository.
//
// The package holds the decisions (what is due, what a pre-check or a drill found,
// when archiving has stalled); PostgreSQL, its tools and the cron syntax are reached
// through the small interfaces below, implemented by the postgres and cron packages
// and wired together in cmd/hestami. Time comes from an injected clock, so a test
// can run months of schedules in seconds by calling Tick.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/backup"
)

// Job names: the keys of Options.Schedules, the kinds of leases and the names in
// logs, alerts and the status page.
const (
	JobPhysical      = "physical"       // a physical backup, verified, then (by default) prune
	JobLogical       = "logical"        // a logical backup, verified, then (by default) prune
	JobPrune         = "prune"          // retention (when scheduled on its own)
	JobDrillPhysical = "drill-physical" // a restore drill of the newest physical backup
	JobDrillLogical  = "drill-logical"  // a restore drill of the newest logical backup
	JobSync          = "sync"           // copy to the secondary storage what it is missing
	// JobMonitor is the daemon's own periodic check (archiving, repository); it takes
	// no lease: every daemon watches.
	JobMonitor = "monitor"
)

// Defaults for Options.
const (
	DefaultGracePeriod        = 10 * time.Minute
	DefaultCheckInterval      = time.Minute
	DefaultArchiveStall       = 15 * time.Minute
	DefaultSizeAnomalyPercent = 50
	DefaultSizeHistory        = 7
	DefaultDrillTimeout       = time.Hour
	// maxWait bounds the loop's sleep, so a wall clock that jumps (a suspended VM,
	// an NTP step) delays a job by a minute at most.
	maxWait = time.Minute
)

// ErrToolMissing is returned (wrapped) by BackupChecker and ScratchServer methods
// whose PostgreSQL program is not installed: the check is skipped, and says so.
var ErrToolMissing = errors.New("PostgreSQL program not installed")

// ErrShutdown is the cause of the cancellation of jobs still running when the
// daemon's shutdown grace period ends.
var ErrShutdown = errors.New("the daemon is shutting down and the grace period for running jobs has ended")

// BackupFunc takes one backup and returns its manifest. It must leave no manifest
// behind when it fails (the backup then stays incomplete).
type BackupFunc func(ctx context.Context) (*backup.Manifest, error)

// Table is a table of a database.
type Table struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
}

func (t Table) String() string { return t.Schema + "." + t.Name }

// TableSize is a table and the bytes it takes (with its indexes and TOAST).
type TableSize struct {
	Table
	Bytes int64
}

// TableCount is what a drill compares of one table: its rows, and how many rows the
// server's statistics count as inserted and deleted (n_tup_ins, n_tup_del) since
// they began (see Server.StatsSince).
type TableCount struct {
	Rows     int64
	Inserted int64
	Deleted  int64
}

// TableReader reads the tables of a PostgreSQL server for drills.
type TableReader interface {
	// Databases returns the databases that are not templates and accept connections.
	Databases(ctx context.Context) ([]string, error)
	// LargestTables returns the n largest ordinary tables of database db, largest first.
	LargestTables(ctx context.Context, db string, n int) ([]TableSize, error)
	// CountRows counts the rows of tables in database db (and reads their insert and
	// delete statistics); tables that do not exist are left out of the result.
	CountRows(ctx context.Context, db string, tables []Table) (map[Table]TableCount, error)
}

// Server is the PostgreSQL server the daemon backs up.
type Server interface {
	TableReader
	// Ping connects and runs a query; its error says why the server cannot be used.
	Ping(ctx context.Context) error
	// StatsSince returns the time from which the table statistics of database db
	// cover every change: the later of the server's start and the last reset of
	// the database's statistics.
	StatsSince(ctx context.Context, db string) (time.Time, error)
	// TableStats returns the insert and delete statistics of every user table of
	// database db (Rows is not counted).
	TableStats(ctx context.Context, db string) (map[Table]TableCount, error)
	// SwitchWAL ends the current WAL segment (pg_switch_wal) and returns the name of
	// the last segment written, which archiving stores next.
	SwitchWAL(ctx context.Context) (string, error)
	// LogicalTarget returns a target for restoring logical backups into scratch
	// databases of this server; release frees its connection.
	LogicalTarget(ctx context.Context) (target backup.DatabaseRestorer, release func(), err error)
}

// BackupChecker runs PostgreSQL's own checks of a backup.
type BackupChecker interface {
	// VerifyBackup runs pg_verifybackup (without WAL parsing) on dir, an unpacked
	// physical backup holding its backup_manifest.
	VerifyBackup(ctx context.Context, dir string) error
	// ListArchive reads a custom-format dump from r with pg_restore --list.
	ListArchive(ctx context.Context, r io.Reader) error
}

// Sandbox runs restored backups for physical drills.
type Sandbox interface {
	// Prepare creates an empty scratch directory a restored server can run in, and
	// returns it with the owner restored files must have (nil: this process's user)
	// and a function that removes it.
	Prepare(ctx context.Context) (dir string, owner *backup.Owner, remove func(), err error)
	// Start starts a server of PostgreSQL major version major on the restored
	// dataDir, with archiving off, on a free loopback port, and returns once
	// recovery has ended and the server answers queries (bounded by ctx).
	Start(ctx context.Context, dataDir string, major int) (ScratchServer, error)
}

// ScratchServer is a server a drill started.
type ScratchServer interface {
	TableReader
	// Amcheck checks the tables and indexes of every database (pg_amcheck).
	Amcheck(ctx context.Context) error
	// Stop shuts the server down.
	Stop(ctx context.Context) error
}

// Options configure a Daemon. Repo, Leaser and Now are required; a job runs only
// when it has a schedule and what it needs (a BackupFunc, a Pruner, a Sandbox...).
type Options struct {
	Repo *backup.Repository
	// WALRepo holds the archived WAL; nil: Repo.
	WALRepo *backup.Repository
	// Schedules say when each job (JobPhysical, JobLogical, JobPrune,
	// JobDrillPhysical, JobDrillLogical) is due; a job without one never runs on
	// its own.
	Schedules map[string]Schedule
	// Backups take the backups of each type.
	Backups map[backup.Type]BackupFunc
	// PruneAfterBackup runs retention after every backup.
	PruneAfterBackup bool
	Pruner           *backup.Pruner
	// Sync copies to the secondary storage what it is missing (hestami storage
	// sync) and returns how many objects it copied; nil: no secondary.
	Sync func(ctx context.Context) (int, error)
	// Server is the backed-up server: pre-checks ping it, drills compare with it and
	// logical drills restore into it.
	Server Server
	// Archiver reads pg_stat_archiver, to tell when archiving stalls.
	Archiver backup.ArchiverReader
	// Checker runs pg_verifybackup and pg_restore --list after each backup.
	Checker BackupChecker
	// Sandbox and RestoreCommand (hestami wal fetch, see backup.RestoreCommand) run
	// physical drills.
	Sandbox        Sandbox
	RestoreCommand string
	// ScratchDir holds backups unpacked for pg_verifybackup ("": the system's).
	ScratchDir string
	// Alerts receives the daemon's alerts and events (nil: none are sent).
	Alerts *alert.Manager
	// NotifySuccess sends an event for every successful backup.
	NotifySuccess bool
	Leaser        *Leaser
	// Actor and Host are recorded in the audit log ("hestami-daemon@db1", "db1").
	Actor string
	Host  string
	// Parallel is how many objects verification reads, and archives a restore
	// unpacks, at once.
	Parallel int
	// GracePeriod is how long running jobs may go on once shutdown begins.
	GracePeriod time.Duration
	// CheckInterval is how often the monitor checks archiving and the repository.
	CheckInterval time.Duration
	// ArchiveStall is how long WAL may wait to be archived before it is an alert.
	ArchiveStall time.Duration
	// StorageWarnPercent and StorageCriticalPercent are how full (used / (used +
	// free)) a storage that can tell its free space may be before it is a warning,
	// then a critical alert (0: not checked).
	StorageWarnPercent     float64
	StorageCriticalPercent float64
	// SizeAnomalyPercent is how far (in percent of the median of the last
	// SizeHistory backups of its type) a backup's stored size may stray.
	SizeAnomalyPercent float64
	SizeHistory        int
	// DrillTimeout bounds a drill's wait for the restored server.
	DrillTimeout time.Duration
	// OnJob, when set, is called after every job with its status (for metrics).
	OnJob func(JobStatus)
	// Now is the clock schedules, leases and records go by.
	Now    func() time.Time
	Logger *slog.Logger
}

// JobStatus is what the daemon knows of one job, for the status page and metrics.
type JobStatus struct {
	Name string `json:"name"`
	// Next is when it is next due (zero: not scheduled).
	Next    time.Time `json:"next,omitzero"`
	Running bool      `json:"running"`
	// LastStart and LastEnd are the last run's times (daemon clock), zero if it
	// never ran; LastDuration its real duration.
	LastStart    time.Time     `json:"last_start,omitzero"`
	LastEnd      time.Time     `json:"last_end,omitzero"`
	LastDuration time.Duration `json:"last_duration"`
	// LastOutcome is "ok", "failed", "skipped" (another daemon ran it) or "" if it
	// never ran; LastError says why it failed.
	LastOutcome string `json:"last_outcome,omitempty"`
	LastError   string `json:"last_error,omitempty"`
}

// Job outcomes.
const (
	OutcomeOK      = "ok"
	OutcomeFailed  = "failed"
	OutcomeSkipped = "skipped"
)

// Daemon runs the scheduled jobs. Create it with New, then call Run, or Tick in tests.
type Daemon struct {
	o    Options
	log  *slog.Logger
	jobs map[string]func(context.Context) error

	// jobCtx is the context jobs run in: it outlives the Run context by the grace
	// period.
	jobCtx    context.Context
	jobCancel context.CancelCauseFunc
	wg        sync.WaitGroup

	mu           sync.Mutex
	sched        Scheduler
	status       map[string]*JobStatus
	stopping     bool
	lastTick     time.Time // daemon clock
	lastTickReal time.Time // wall clock, for readiness
	repoErr      error
	repoChecked  time.Time // wall clock
	// storageChecked is when the storages' use was last added up (wall clock).
	storageChecked time.Time
}

// New checks o and returns a daemon whose jobs are first due after o.Now().
func New(o Options) (*Daemon, error) {
	var errs []error
	if o.Repo == nil {
		errs = append(errs, errors.New("no repository"))
	}
	if o.Leaser == nil {
		errs = append(errs, errors.New("no leaser"))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WALRepo == nil {
		o.WALRepo = o.Repo
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.GracePeriod = orDuration(o.GracePeriod, DefaultGracePeriod)
	o.CheckInterval = orDuration(o.CheckInterval, DefaultCheckInterval)
	o.ArchiveStall = orDuration(o.ArchiveStall, DefaultArchiveStall)
	o.DrillTimeout = orDuration(o.DrillTimeout, DefaultDrillTimeout)
	if o.SizeAnomalyPercent <= 0 {
		o.SizeAnomalyPercent = DefaultSizeAnomalyPercent
	}
	if o.SizeHistory <= 0 {
		o.SizeHistory = DefaultSizeHistory
	}
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if o.Actor == "" {
		o.Actor = "hestami-daemon@" + o.Host
	}
	d := &Daemon{o: o, log: o.Logger, status: map[string]*JobStatus{}}
	d.jobs = map[string]func(context.Context) error{
		JobPhysical:      func(ctx context.Context) error { return d.backupJob(ctx, backup.Physical) },
		JobLogical:       func(ctx context.Context) error { return d.backupJob(ctx, backup.Logical) },
		JobPrune:         d.pruneJob,
		JobDrillPhysical: d.physicalDrill,
		JobDrillLogical:  d.logicalDrill,
		JobMonitor:       d.monitor,
		JobSync:          d.syncJob,
	}
	needs := map[string]string{}
	if o.Backups[backup.Physical] == nil {
		needs[JobPhysical] = "no physical backup function"
	}
	if o.Backups[backup.Logical] == nil {
		needs[JobLogical] = "no logical backup function"
	}
	if o.Pruner == nil {
		needs[JobPrune] = "no pruner"
		if o.PruneAfterBackup {
			errs = append(errs, errors.New("prune after backup needs a pruner"))
		}
	}
	if o.Sandbox == nil || o.Server == nil || o.RestoreCommand == "" {
		needs[JobDrillPhysical] = "physical drills need a sandbox, the server and a restore_command"
	}
	if o.Server == nil {
		needs[JobDrillLogical] = "logical drills need the server"
	}
	if o.Sync == nil {
		needs[JobSync] = "no secondary storage (storage.secondary_url)"
	}
	names := make([]string, 0, len(o.Schedules))
	for name := range o.Schedules {
		names = append(names, name)
	}
	sort.Strings(names)
	now := o.Now()
	for _, name := range names {
		s := o.Schedules[name]
		if _, ok := d.jobs[name]; !ok || name == JobMonitor {
			errs = append(errs, fmt.Errorf("schedule for unknown job %q", name))
			continue
		}
		if s == nil {
			continue
		}
		if why := needs[name]; why != "" {
			errs = append(errs, fmt.Errorf("job %s is scheduled but cannot run: %s", name, why))
			continue
		}
		d.sched.Add(name, s, now)
		d.status[name] = &JobStatus{Name: name}
	}
	// The monitor runs at the first tick, so /readyz is right from the start.
	d.sched.Add(JobMonitor, Every(o.CheckInterval), now.Add(-o.CheckInterval))
	d.status[JobMonitor] = &JobStatus{Name: JobMonitor}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("backup daemon: %w", err)
	}
	d.jobCtx, d.jobCancel = context.WithCancelCause(context.Background())
	return d, nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (d *Daemon) now() time.Time { return d.o.Now() }

// Alerts returns the alert manager (nil if none), for a status page.
func (d *Daemon) Alerts() *alert.Manager { return d.o.Alerts }

// Run ticks the scheduler whenever a job is due (and at least every minute) until
// ctx ends, then shuts down: see Shutdown. It first catches up on backups missed
// while the daemon was down (see CatchUp).
func (d *Daemon) Run(ctx context.Context) error {
	d.CatchUp(ctx)
	d.mu.Lock()
	for name, st := range d.status {
		st.Next = d.sched.NextOf(name)
		if name != JobMonitor {
			d.log.Info("scheduled", "job", name, "next", st.Next)
		}
	}
	d.mu.Unlock()
	for {
		d.Tick(ctx, d.now())
		wait := maxWait
		if next := d.NextDue(); !next.IsZero() {
			wait = min(wait, next.Sub(d.now()))
		}
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			d.Shutdown()
			return nil
		case <-timer.C:
		}
	}
}

// CatchUp makes each scheduled backup due now when one of its slots passed since
// the newest backup of its type was taken: a daemon that was down (or newly
// installed over an old repository) at 02:00 takes the night's backup when it
// starts, not a day late. A repository without backups of a type waits for the
// schedule.
func (d *Daemon) CatchUp(ctx context.Context) {
	entries, err := d.o.Repo.Backups(ctx)
	if err != nil {
		d.log.Warn("cannot list backups to catch up on missed ones", "err", err)
		return
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for job, t := range map[string]backup.Type{JobPhysical: backup.Physical, JobLogical: backup.Logical} {
		s := d.sched.Schedule(job)
		ms := backup.Complete(entries, t)
		if s == nil || len(ms) == 0 {
			continue
		}
		newest := ms[len(ms)-1].StartTime
		if slot := s.Next(newest); !slot.IsZero() && !slot.After(now) {
			d.log.Info("a scheduled backup was missed while the daemon was not running: taking it now", "job", job, "missed", slot, "newest_backup", ms[len(ms)-1].ID)
			d.sched.DueNow(job, now)
		}
	}
}

// NextDue returns when the next job is due.
func (d *Daemon) NextDue() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sched.Next()
}

// Tick starts every job due at now, each in its own goroutine, and returns. A job
// still running from an earlier slot is not started twice. Wait waits for them.
func (d *Daemon) Tick(ctx context.Context, now time.Time) {
	d.mu.Lock()
	if d.stopping {
		d.mu.Unlock()
		return
	}
	d.lastTick, d.lastTickReal = now, time.Now()
	due := d.sched.Due(now)
	var start []DueJob
	for _, j := range due {
		st := d.status[j.Name]
		st.Next = d.sched.NextOf(j.Name)
		if st.Running {
			if j.Name != JobMonitor {
				d.log.Warn("job is still running from its last slot; this slot is skipped", "job", j.Name, "due", j.At, "started", st.LastStart)
			}
			continue
		}
		st.Running = true
		start = append(start, j)
		d.wg.Add(1)
	}
	d.mu.Unlock()
	for _, j := range start {
		go d.run(j)
	}
}

// Wait blocks until no job is running.
func (d *Daemon) Wait() { d.wg.Wait() }

// Shutdown stops starting jobs and waits for the running ones for the grace period;
// then it cancels them (ErrShutdown) and waits for them to end. A backup cancelled
// that way writes no manifest, so it stays incomplete; every job releases its lease.
func (d *Daemon) Shutdown() {
	d.mu.Lock()
	d.stopping = true
	var running []string
	for name, st := range d.status {
		if st.Running && name != JobMonitor {
			running = append(running, name)
		}
	}
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	if len(running) > 0 {
		sort.Strings(running)
		d.log.Info("shutting down: waiting for running jobs", "jobs", strings.Join(running, ", "), "grace_period", d.o.GracePeriod)
	}
	timer := time.NewTimer(d.o.GracePeriod)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		d.log.Warn("shutdown grace period over: cancelling the running jobs", "jobs", strings.Join(running, ", "))
		d.jobCancel(ErrShutdown)
		<-done
	}
	d.jobCancel(ErrShutdown)
}

// RunJob runs job name now, as if it were due, and returns its error (errSkipped's
// text when another daemon holds its lease). It waits if the job is already running
// here. The job need not be scheduled, but must be able to run.
func (d *Daemon) RunJob(ctx context.Context, name string) error {
	if _, ok := d.jobs[name]; !ok {
		return fmt.Errorf("no job %q", name)
	}
	for {
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			return ErrShutdown
		}
		st := d.status[name]
		if st == nil {
			st = &JobStatus{Name: name}
			d.status[name] = st
		}
		if !st.Running {
			st.Running = true
			d.wg.Add(1)
			d.mu.Unlock()
			break
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
	d.run(DueJob{Name: name, At: d.now()})
	d.mu.Lock()
	defer d.mu.Unlock()
	if st := d.status[name]; st.LastOutcome == OutcomeFailed {
		return errors.New(st.LastError)
	} else if st.LastOutcome == OutcomeSkipped {
		return errSkipped
	}
	return nil
}

// Status returns every job's status, sorted by name.
func (d *Daemon) Status() []JobStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]JobStatus, 0, len(d.status))
	for _, st := range d.status {
		s := *st
		s.Next = d.sched.NextOf(st.Name)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// errSkipped reports a job another daemon is running.
var errSkipped = errors.New("skipped")

// run runs one due job under its lease and records how it went.
func (d *Daemon) run(j DueJob) {
	defer d.wg.Done()
	ctx := d.jobCtx
	began, start := time.Now(), d.now()
	d.mu.Lock()
	d.status[j.Name].LastStart = start
	d.mu.Unlock()
	log := d.log.With("job", j.Name)
	if j.Name != JobMonitor {
		log.Info("job started", "due", j.At)
	}
	var err error
	if j.Name == JobMonitor {
		err = d.jobs[j.Name](ctx)
	} else {
		err = d.withLease(ctx, j.Name, d.jobs[j.Name])
	}
	took := time.Since(began)
	d.mu.Lock()
	st := d.status[j.Name]
	st.Running, st.LastEnd, st.LastDuration, st.LastError = false, d.now(), took, ""
	switch {
	case errors.Is(err, errSkipped):
		st.LastOutcome = OutcomeSkipped
	case err != nil:
		st.LastOutcome, st.LastError = OutcomeFailed, err.Error()
	default:
		st.LastOutcome = OutcomeOK
	}
	snapshot := *st
	snapshot.Next = d.sched.NextOf(j.Name)
	d.mu.Unlock()
	if j.Name != JobMonitor || err != nil {
		switch snapshot.LastOutcome {
		case OutcomeFailed:
			log.Error("job failed", "seconds", took.Seconds(), "err", err)
		case OutcomeOK:
			log.Info("job done", "seconds", took.Seconds(), "next", snapshot.Next)
		}
	}
	if d.o.OnJob != nil {
		d.o.OnJob(snapshot)
	}
}

// withLease runs fn holding the lease of kind, renewing it every heartbeat. It
// returns errSkipped when another daemon holds the lease. Should the lease be lost,
// fn's context is cancelled with ErrLeaseLost.
func (d *Daemon) withLease(ctx context.Context, kind string, fn func(context.Context) error) error {
	log := d.log.With("job", kind)
	lease, err := d.o.Leaser.Acquire(ctx, kind)
	var held *LeaseHeldError
	if errors.As(err, &held) {
		who := "another daemon is running it"
		if held.Holder.Host == d.o.Leaser.Host && held.Holder.PID == d.o.Leaser.PID {
			who = "this daemon is running it already (for another job)"
		}
		log.Info("job skipped: "+who, "holder_host", held.Holder.Host, "holder_pid", held.Holder.PID,
			"since", held.Holder.Acquired, "expires", held.Holder.Expires)
		return errSkipped
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", kind, err)
		d.fire(ctx, alert.Alert{Key: "job-failed:" + kind, Severity: alert.Critical,
			Summary: fmt.Sprintf("The %s job could not start on %s: its lease in the repository could not be taken", kind, d.o.Host),
			Details: err.Error() + "\n\nCheck that the repository's storage is reachable and writable (hestami backup list).",
			Labels:  map[string]string{"job": kind}})
		return err
	}
	d.resolve(ctx, "job-failed:"+kind)
	jobCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hbDone := make(chan struct{})
	hbStop := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(d.o.Leaser.HeartbeatInterval())
		defer t.Stop()
		for {
			select {
			case <-hbStop:
				return
			case <-t.C:
				if err := lease.Renew(jobCtx); errors.Is(err, ErrLeaseLost) {
					log.Error("lease lost to another daemon; stopping the job", "err", err)
					cancel(err)
					return
				} else if err != nil && jobCtx.Err() == nil {
					log.Warn("could not renew the job's lease; will retry at the next heartbeat", "err", err)
				}
			}
		}
	}()
	err = fn(jobCtx)
	close(hbStop)
	<-hbDone
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer rcancel()
	if rerr := lease.Release(rctx); rerr != nil {
		log.Warn("could not release the job's lease; it expires on its own", "expires", lease.Record().Expires, "err", rerr)
	}
	return err
}

// fire sends a, logging what cannot be sent; it outlives a cancelled ctx.
func (d *Daemon) fire(ctx context.Context, a alert.Alert) {
	d.log.Warn("alert", "key", a.Key, "severity", a.Severity, "summary", a.Summary)
	if d.o.Alerts == nil {
		return
	}
	a.Time = d.now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := d.o.Alerts.Fire(ctx, a); err != nil {
		d.log.Error("could not record an alert", "key", a.Key, "err", err)
	}
}

func (d *Daemon) resolve(ctx context.Context, key string) {
	if d.o.Alerts == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := d.o.Alerts.Resolve(ctx, key); err != nil {
		d.log.Error("could not record an alert", "key", key, "err", err)
	}
}

func (d *Daemon) event(ctx context.Context, a alert.Alert) {
	if d.o.Alerts == nil {
		return
	}
	a.Time = d.now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := d.o.Alerts.Event(ctx, a); err != nil {
		d.log.Error("could not record an event", "key", a.Key, "err", err)
	}
}

// refusedError marks a job that did not start because a pre-check failed.
type refusedError struct{ error }

func (e refusedError) Unwrap() error { return e.error }

// audit appends an entry to the repository's audit log; failures are logged.
func (d *Daemon) audit(ctx context.Context, action, target string, actionErr error, details map[string]string) {
	outcome := "ok"
	if actionErr != nil {
		outcome = "failed"
		var re refusedError
		if errors.As(actionErr, &re) {
			outcome = "refused"
		}
		if details == nil {
			details = map[string]string{}
		}
		details["error"] = actionErr.Error()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	e := backup.AuditEntry{Time: d.now().UTC(), Action: action, Actor: d.o.Actor, Host: d.o.Host, Target: target, Outcome: outcome, Details: details}
	if _, err := d.o.Repo.Audit(ctx, e); err != nil {
		d.log.Error("could not write the audit log", "action", action, "target", target, "err", err)
	}
}
