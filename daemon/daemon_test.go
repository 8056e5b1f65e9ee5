package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/alert/alerttest"
	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/cron"
	"github.com/hestami/hestami/daemon"
	"github.com/hestami/hestami/zstd"
)

func mustSchedule(t *testing.T, expr string, loc *time.Location) daemon.Schedule {
	t.Helper()
	s, err := cron.Parse(expr, loc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSchedulerDSTDays drives the scheduler the way the daemon's loop does (from one
// due time to the next) across both DST changes of 2026 in Berlin: every job runs
// once a day at its local time, none is skipped on the short day or repeated on the
// long one.
func TestSchedulerDSTDays(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		from time.Time
	}{
		{"spring forward (29 March)", time.Date(2026, 3, 27, 12, 0, 0, 0, berlin)},
		{"fall back (25 October)", time.Date(2026, 10, 23, 12, 0, 0, 0, berlin)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s daemon.Scheduler
			// 02:30 is skipped on the spring day and happens twice on the autumn day.
			s.Add("physical", mustSchedule(t, "30 2 * * *", berlin), tc.from)
			s.Add("drill-physical", mustSchedule(t, "0 4 * * *", berlin), tc.from)
			end := tc.from.Add(4 * 24 * time.Hour)
			runs := map[string][]time.Time{}
			for now := s.Next(); now.Before(end); now = s.Next() {
				for _, j := range s.Due(now) {
					if !j.At.Equal(now) {
						t.Errorf("%s due at %s found at %s", j.Name, j.At, now)
					}
					runs[j.Name] = append(runs[j.Name], now)
				}
			}
			for name, wantClock := range map[string]string{"physical": "02:30", "drill-physical": "04:00"} {
				days := map[string]int{}
				for _, r := range runs[name] {
					local := r.In(berlin)
					days[local.Format("2006-01-02")]++
					clockTime := local.Format("15:04")
					if clockTime != wantClock && !(name == "physical" && clockTime == "03:30" && local.Month() == time.March) {
						t.Errorf("%s ran at %s local, want %s", name, local, wantClock)
					}
				}
				if len(runs[name]) != 4 || len(days) != 4 {
					t.Errorf("%s ran %d times on %d days in 4 days: %v", name, len(runs[name]), len(days), runs[name])
				}
			}
		})
	}
}

// TestSchedulerCoalescesMissedRuns: a daemon that was down for three days runs each
// job once when it comes back, not once per missed day.
func TestSchedulerCoalescesMissedRuns(t *testing.T) {
	from := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var s daemon.Scheduler
	s.Add("physical", mustSchedule(t, "0 2 * * *", time.UTC), from)
	due := s.Due(from.Add(3*24*time.Hour + time.Hour))
	if len(due) != 1 || !due[0].At.Equal(time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("Due after three days down = %+v, want the first missed run once", due)
	}
	if next := s.NextOf("physical"); !next.Equal(time.Date(2026, 5, 4, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("next run = %s, want the next slot after now", next)
	}
	if due := s.Due(from.Add(3*24*time.Hour + time.Hour)); len(due) != 0 {
		t.Fatalf("due again at the same time: %+v", due)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testDaemon is a daemon on storage st whose physical backups are fn.
type testDaemon struct {
	*daemon.Daemon
	log    *syncBuffer
	sender *alerttest.Recorder
	repo   *backup.Repository
}

func newTestDaemon(t *testing.T, st backup.Storage, host string, clk *clock, grace time.Duration, fn daemon.BackupFunc) *testDaemon {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	repo := &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}, Logger: log, Now: clk.Now}
	rec := alerttest.NewRecorder("test")
	m, err := alert.NewManager(t.Context(), alert.Options{Senders: []alert.Sender{rec}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Options{
		Repo:        repo,
		Schedules:   map[string]daemon.Schedule{daemon.JobPhysical: mustSchedule(t, "0 2 * * *", time.UTC)},
		Backups:     map[backup.Type]daemon.BackupFunc{backup.Physical: fn},
		Leaser:      &daemon.Leaser{Storage: st, Host: host, PID: 1, Settle: -1, Now: clk.Now},
		Alerts:      m,
		Host:        host,
		GracePeriod: grace,
		Now:         clk.Now,
		Logger:      log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &testDaemon{Daemon: d, log: logs, sender: rec, repo: repo}
}

// blockingBackup is a physical backup that runs until released or cancelled.
type blockingBackup struct {
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func newBlockingBackup() *blockingBackup {
	return &blockingBackup{started: make(chan struct{}), release: make(chan struct{})}
}

var errTestBackup = errors.New("test backup ends without a manifest")

func (b *blockingBackup) run(ctx context.Context) (*backup.Manifest, error) {
	b.once.Do(func() { close(b.started) })
	select {
	case <-b.release:
		return nil, errTestBackup
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func waitChan(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func status(d *daemon.Daemon, name string) daemon.JobStatus {
	for _, s := range d.Status() {
		if s.Name == name {
			return s
		}
	}
	return daemon.JobStatus{}
}

// TestTwoDaemonsOneJob: two daemons share a repository; when the physical backup is
// due, the first takes its lease and runs it, the second skips it with a log line.
func TestTwoDaemonsOneJob(t *testing.T) {
	st := fileStorage(t)
	clk := newClock(time.Date(2026, 5, 1, 1, 0, 0, 0, time.UTC))
	first, second := newBlockingBackup(), newBlockingBackup()
	a := newTestDaemon(t, st, "db1", clk, time.Minute, first.run)
	b := newTestDaemon(t, st, "db2", clk, time.Minute, second.run)

	due := time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC)
	clk.Set(due)
	a.Tick(t.Context(), due)
	waitChan(t, first.started, "the first daemon's backup to start")
	b.Tick(t.Context(), due)
	b.Wait()
	select {
	case <-second.started:
		t.Fatal("the second daemon ran the backup while the first held its lease")
	default:
	}
	if got := status(b.Daemon, daemon.JobPhysical).LastOutcome; got != daemon.OutcomeSkipped {
		t.Errorf("second daemon's outcome = %q, want skipped", got)
	}
	if !strings.Contains(b.log.String(), "job skipped: another daemon is running it") || !strings.Contains(b.log.String(), "holder_host=db1") {
		t.Errorf("second daemon's log does not say it skipped for db1:\n%s", b.log.String())
	}
	if !status(a.Daemon, daemon.JobPhysical).Running {
		t.Error("first daemon's job not running")
	}

	close(first.release)
	a.Wait()
	if got := status(a.Daemon, daemon.JobPhysical); got.LastOutcome != daemon.OutcomeFailed || !strings.Contains(got.LastError, errTestBackup.Error()) {
		t.Errorf("first daemon's status = %+v, want failed with the backup's error", got)
	}
	if h, err := (&daemon.Leaser{Storage: st}).Holder(t.Context(), daemon.JobPhysical); err != nil || h != nil {
		t.Errorf("lease after the job = %+v, %v; want released", h, err)
	}
	var fired []string
	for _, n := range a.sender.Take() {
		fired = append(fired, string(n.State)+" "+n.Key)
	}
	if !strings.Contains(strings.Join(fired, ","), "firing backup-failed:physical") {
		t.Errorf("alerts sent = %v, want backup-failed:physical firing", fired)
	}
	entries, _, err := a.repo.AuditLog(t.Context())
	if err != nil || len(entries) != 1 || entries[0].Action != "backup.push" || entries[0].Outcome != "failed" || entries[0].Actor != "hestami-daemon@db1" {
		t.Errorf("audit log = %+v, %v; want one failed backup.push by hestami-daemon@db1", entries, err)
	}

	// The next day the second daemon gets its turn.
	next := due.Add(24 * time.Hour)
	clk.Set(next)
	b.Tick(t.Context(), next)
	waitChan(t, second.started, "the second daemon's backup to start the next day")
	close(second.release)
	b.Wait()
}

// TestShutdownCancelsAfterGrace: a job still running when the grace period ends is
// cancelled, fails as interrupted, and releases its lease.
func TestShutdownCancelsAfterGrace(t *testing.T) {
	st := fileStorage(t)
	clk := newClock(time.Date(2026, 5, 1, 1, 0, 0, 0, time.UTC))
	bb := newBlockingBackup()
	d := newTestDaemon(t, st, "db1", clk, 10*time.Millisecond, bb.run)
	clk.Set(time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC))
	d.Tick(t.Context(), clk.Now())
	waitChan(t, bb.started, "the backup to start")
	d.Shutdown()
	st2 := status(d.Daemon, daemon.JobPhysical)
	if st2.Running || st2.LastOutcome != daemon.OutcomeFailed || !strings.Contains(st2.LastError, daemon.ErrShutdown.Error()) {
		t.Fatalf("status after shutdown = %+v, want failed by shutdown", st2)
	}
	if h, _ := (&daemon.Leaser{Storage: st}).Holder(t.Context(), daemon.JobPhysical); h != nil {
		t.Errorf("lease still held after shutdown: %+v", h)
	}
	d.Tick(t.Context(), clk.Now().Add(24*time.Hour)) // no new jobs once stopping
	if s := status(d.Daemon, daemon.JobPhysical); s.Running {
		t.Error("a job started after shutdown")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	st := fileStorage(t)
	clk := newClock(time.Date(2026, 5, 1, 1, 0, 0, 0, time.UTC))
	d := newTestDaemon(t, st, "db1", clk, time.Minute, newBlockingBackup().run)
	mux := http.NewServeMux()
	d.Mount(mux)
	get := func(path string) (int, string) {
		rr := httptest.NewRecorder()
		mux.ServeHTTP(rr, httptest.NewRequest("GET", path, nil))
		return rr.Code, rr.Body.String()
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the first tick = %d %s, want 503", code, body)
	}
	clk.Add(time.Minute)
	d.Tick(t.Context(), clk.Now()) // runs the monitor: the repository is reachable
	d.Wait()
	code, body := get("/readyz")
	var r daemon.Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	if code != http.StatusOK || !r.Ready || r.Repository != "ok" {
		t.Errorf("/readyz after a tick = %d %s, want 200 and ready", code, body)
	}
}

func TestArchiveStalled(t *testing.T) {
	at := func(m int) *time.Time { t := time.Date(2026, 5, 1, 2, m, 0, 0, time.UTC); return &t }
	for _, tc := range []struct {
		name string
		st   backup.ArchiverStats
		want bool
	}{
		{"never archived, idle", backup.ArchiverStats{}, false},
		{"archiving keeps up", backup.ArchiverStats{LastArchivedTime: at(10), LagSegments: 0, LagSeconds: 3600}, false},
		{"idle server: nothing waits however long ago", backup.ArchiverStats{LastArchivedTime: at(0), LagSegments: 0, LagSeconds: 86400}, false},
		{"a segment waits, briefly", backup.ArchiverStats{LastArchivedTime: at(0), LagSegments: 2, LagSeconds: 60}, false},
		{"segments wait too long", backup.ArchiverStats{LastArchivedTime: at(0), LagSegments: 2, LagSeconds: 1200}, true},
		{"archive_command failing", backup.ArchiverStats{LastArchivedTime: at(0), LastFailedTime: at(5), FailedCount: 3, LagSegments: 1, LagSeconds: 300}, true},
		{"failed once, then archived", backup.ArchiverStats{LastArchivedTime: at(6), LastFailedTime: at(5), FailedCount: 1}, false},
		{"failing from the start", backup.ArchiverStats{LastFailedTime: at(5), FailedCount: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.st
			got, summary, details := daemon.ArchiveStalled(&st, 15*time.Minute)
			if got != tc.want {
				t.Fatalf("ArchiveStalled = %v (%s), want %v", got, summary, tc.want)
			}
			if got && (summary == "" || !strings.Contains(details, "hestami wal status")) {
				t.Errorf("stall alert without guidance: %q %q", summary, details)
			}
		})
	}
}

func TestJudgeCount(t *testing.T) {
	c := func(rows, ins, del int64) *daemon.TableCount {
		return &daemon.TableCount{Rows: rows, Inserted: ins, Deleted: del}
	}
	for _, tc := range []struct {
		name              string
		restored, live    *daemon.TableCount
		bounded, wantFail bool
	}{
		{"equal", c(100, 0, 0), c(100, 100, 0), true, false},
		{"rows inserted since", c(100, 0, 0), c(130, 130, 0), true, false},
		{"rows deleted since", c(100, 0, 0), c(80, 100, 20), true, false},
		{"rows lost by the restore", c(50, 0, 0), c(100, 10, 0), true, true},
		{"rows the live server never had", c(150, 0, 0), c(100, 100, 0), true, true},
		{"statistics restarted: not judged", c(50, 0, 0), c(100, 10, 0), false, false},
		{"missing from the restore", nil, c(100, 100, 0), true, true},
		{"dropped live since", c(100, 0, 0), nil, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check, failure := daemon.JudgeCount("app.public.t", tc.restored, tc.live, tc.bounded)
			if (failure != "") != tc.wantFail {
				t.Errorf("JudgeCount = %q, %q; want failure %v", check, failure, tc.wantFail)
			}
		})
	}
}

// TestCatchUpAfterDowntime: a daemon started after a scheduled backup's slot passed
// without a backup takes it at once; one started after a backup was taken waits for
// the next slot.
func TestCatchUpAfterDowntime(t *testing.T) {
	st := fileStorage(t)
	clk := newClock(time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC))
	repo := &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}, Now: clk.Now}
	id := "physical-20260501T020000Z"
	m := &backup.Manifest{Format: backup.FormatVersion, ID: id, Type: backup.Physical, StartTime: clk.Now(), StopTime: clk.Now(),
		Timeline: 1, StartLSN: 0x2000028, StopLSN: 0x2000100, StartWAL: "000000010000000000000002", StopWAL: "000000010000000000000002",
		WALSegmentSize: 16 << 20, Files: []backup.File{}}
	if err := repo.WriteManifest(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		restart time.Time
		wantNow bool
	}{
		{"restarted the same morning", time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC), false},
		{"down over the next night's slot", time.Date(2026, 5, 2, 3, 0, 0, 0, time.UTC), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk.Set(tc.restart)
			d := newTestDaemon(t, st, "db1", clk, time.Minute, newBlockingBackup().run)
			d.CatchUp(t.Context())
			next := status(d.Daemon, daemon.JobPhysical).Next
			if got := next.Equal(tc.restart); got != tc.wantNow {
				t.Errorf("next physical backup at %s after a restart at %s; want now: %v", next, tc.restart, tc.wantNow)
			}
		})
	}
}

// TestSizeAnomalyAlert: a logical backup far smaller than the ones before it fires
// size-anomaly:logical; one of the usual size resolves it.
func TestSizeAnomalyAlert(t *testing.T) {
	st := fileStorage(t)
	clk := newClock(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	repo := &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}, Now: clk.Now}
	manifest := func(at time.Time, stored int64) *backup.Manifest {
		return &backup.Manifest{Format: backup.FormatVersion, ID: "logical-" + at.Format("20060102T150405Z"), Type: backup.Logical,
			StartTime: at, StopTime: at, Files: []backup.File{}, StoredSize: stored}
	}
	for i, size := range []int64{1000, 1100, 900, 1050} {
		if err := repo.WriteManifest(t.Context(), manifest(clk.Now().AddDate(0, 0, -4+i), size)); err != nil {
			t.Fatal(err)
		}
	}
	next := int64(300)
	rec := alerttest.NewRecorder("test")
	m, err := alert.NewManager(t.Context(), alert.Options{Senders: []alert.Sender{rec}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Options{
		Repo:      repo,
		Schedules: map[string]daemon.Schedule{daemon.JobLogical: mustSchedule(t, "0 3 * * *", time.UTC)},
		Backups: map[backup.Type]daemon.BackupFunc{backup.Logical: func(ctx context.Context) (*backup.Manifest, error) {
			bm := manifest(clk.Now(), next)
			return bm, repo.WriteManifest(ctx, bm)
		}},
		Leaser: &daemon.Leaser{Storage: st, Host: "db1", Now: clk.Now},
		Alerts: m,
		Now:    clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	states := func() map[string]alert.State {
		out := map[string]alert.State{}
		for _, n := range rec.Take() {
			out[n.Key] = n.State
		}
		return out
	}
	if err := d.RunJob(t.Context(), daemon.JobLogical); err != nil {
		t.Fatal(err)
	}
	if got := states()["size-anomaly:logical"]; got != alert.Firing {
		t.Fatalf("size-anomaly:logical after a backup a third of the usual size: %q, want firing", got)
	}
	clk.Add(24 * time.Hour)
	next = 1000
	if err := d.RunJob(t.Context(), daemon.JobLogical); err != nil {
		t.Fatal(err)
	}
	if got := states()["size-anomaly:logical"]; got != alert.Resolved {
		t.Fatalf("size-anomaly:logical after a backup of the usual size: %q, want resolved", got)
	}
}

// fullStorage reports a fixed free space.
type fullStorage struct {
	backup.Storage
	free uint64
}

func (f *fullStorage) FreeSpace(context.Context) (uint64, error) { return f.free, nil }

// TestStorageThreshold: the monitor alerts when a storage that can tell its free
// space is fuller than the thresholds.
func TestStorageThreshold(t *testing.T) {
	st := &fullStorage{Storage: fileStorage(t), free: 50}
	if err := st.Put(t.Context(), "backups/x/base.tar.zst", strings.NewReader(strings.Repeat("x", 950)), true); err != nil {
		t.Fatal(err)
	}
	clk := newClock(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	rec := alerttest.NewRecorder("test")
	m, err := alert.NewManager(t.Context(), alert.Options{Senders: []alert.Sender{rec}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Options{
		Repo:   &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}},
		Leaser: &daemon.Leaser{Storage: st, Now: clk.Now}, Alerts: m, Now: clk.Now,
		StorageWarnPercent: 80, StorageCriticalPercent: 90,
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Tick(t.Context(), clk.Now())
	d.Wait()
	sent := rec.Take()
	if len(sent) != 1 || !strings.HasPrefix(sent[0].Key, "storage-threshold:file://") || sent[0].Severity != alert.Critical ||
		!strings.Contains(sent[0].Details, "95.0% used") {
		t.Fatalf("alerts for a 95%% full storage: %+v", sent)
	}
}

// TestSyncJob: the scheduled copy to the secondary alerts when it fails, resolves
// when it succeeds, and is audited each time; without a secondary it cannot be
// scheduled.
func TestSyncJob(t *testing.T) {
	st := fileStorage(t)
	clk := newClock(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	repo := &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}, Now: clk.Now}
	rec := alerttest.NewRecorder("test")
	m, err := alert.NewManager(t.Context(), alert.Options{Senders: []alert.Sender{rec}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	syncErr := errors.New("secondary unreachable")
	calls := 0
	opts := daemon.Options{
		Repo:      repo,
		Schedules: map[string]daemon.Schedule{daemon.JobSync: mustSchedule(t, "*/15 * * * *", time.UTC)},
		Sync: func(ctx context.Context) (int, error) {
			calls++
			return 3, syncErr
		},
		Leaser: &daemon.Leaser{Storage: st, Host: "db1", Now: clk.Now},
		Alerts: m,
		Now:    clk.Now,
	}
	d, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	states := func() map[string]alert.State {
		out := map[string]alert.State{}
		for _, n := range rec.Take() {
			out[n.Key] = n.State
		}
		return out
	}
	if err := d.RunJob(t.Context(), daemon.JobSync); err == nil || !strings.Contains(err.Error(), "secondary unreachable") {
		t.Fatalf("sync job = %v, want the sync's error", err)
	}
	if got := states()["sync-failed"]; got != alert.Firing {
		t.Fatalf("sync-failed after a failed sync: %q, want firing", got)
	}
	syncErr = nil
	clk.Add(15 * time.Minute)
	if err := d.RunJob(t.Context(), daemon.JobSync); err != nil {
		t.Fatal(err)
	}
	if got := states()["sync-failed"]; got != alert.Resolved {
		t.Fatalf("sync-failed after a good sync: %q, want resolved", got)
	}
	entries, _, err := repo.AuditLog(t.Context())
	if err != nil || len(entries) != 2 || entries[0].Action != "storage.sync" || entries[0].Outcome != "failed" || entries[1].Outcome != "ok" || calls != 2 {
		t.Fatalf("audit log %+v (%v), %d calls", entries, err, calls)
	}
	opts.Sync = nil
	if _, err := daemon.New(opts); err == nil || !strings.Contains(err.Error(), "secondary") {
		t.Fatalf("a sync schedule without a secondary: %v", err)
	}
}
