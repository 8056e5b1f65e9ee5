package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/backup"
)

// monitor runs every CheckInterval: it checks that the repository is reachable (for
// /readyz) and that WAL archiving keeps up.
func (d *Daemon) monitor(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(d.o.CheckInterval, 30*time.Second))
	defer cancel()
	marker, err := d.o.Repo.Marker(ctx)
	repoErr := err
	if errors.Is(err, backup.ErrNoRepository) {
		repoErr = nil // reachable, just empty: the first backup creates it
	}
	d.mu.Lock()
	d.repoErr, d.repoChecked = repoErr, time.Now()
	d.mu.Unlock()
	if repoErr != nil {
		d.log.Warn("the repository cannot be read", "storage", d.o.Repo.Storage.String(), "err", repoErr)
	}
	d.checkStorage(ctx)
	if d.o.Archiver == nil {
		return repoErr
	}
	segSize := marker.WALSegmentSize
	if segSize == 0 {
		segSize = backup.DefaultSegmentSize
	}
	st, err := d.o.Archiver.ArchiverStats(ctx, segSize)
	if err != nil {
		// The database being down is the pre-checks' and the backups' alert.
		d.log.Warn("cannot read PostgreSQL's archiving statistics; archiving not checked", "err", err)
		return repoErr
	}
	if stalled, summary, details := ArchiveStalled(st, d.o.ArchiveStall); stalled {
		d.fire(ctx, alert.Alert{Key: "archiving-stalled", Severity: alert.Critical, Summary: summary + " on " + d.o.Host, Details: details})
	} else {
		d.resolve(ctx, "archiving-stalled")
	}
	return repoErr
}

// storageCheckEvery is how often the monitor adds up what the storages hold: that
// lists every object, too much work for every check.
const storageCheckEvery = 15 * time.Minute

// checkStorage alerts when a storage that can tell its free space is filling up
// (backup.StorageAlert), at most every storageCheckEvery.
func (d *Daemon) checkStorage(ctx context.Context) {
	if d.o.StorageWarnPercent <= 0 && d.o.StorageCriticalPercent <= 0 {
		return
	}
	d.mu.Lock()
	due := d.storageChecked.IsZero() || time.Since(d.storageChecked) >= storageCheckEvery
	if due {
		d.storageChecked = time.Now()
	}
	d.mu.Unlock()
	if !due {
		return
	}
	storages := []backup.Storage{d.o.Repo.Storage}
	if w := d.o.WALRepo.Storage; w.String() != d.o.Repo.Storage.String() {
		storages = append(storages, w)
	}
	for _, st := range storages {
		sr, ok := st.(backup.SpaceReporter)
		if !ok {
			continue // object stores: no free space to run out of
		}
		free, err := sr.FreeSpace(ctx)
		if err != nil {
			d.log.Warn("cannot read the storage's free space", "storage", st.String(), "err", err)
			continue
		}
		objs, err := st.List(ctx, "")
		if err != nil {
			d.log.Warn("cannot list the storage to add up its use", "storage", st.String(), "err", err)
			continue
		}
		var used uint64
		for _, o := range objs {
			used += uint64(max(o.Size, 0))
		}
		key := "storage-threshold:" + st.String()
		level, reason := backup.StorageAlert(used, free, d.o.StorageWarnPercent, d.o.StorageCriticalPercent)
		switch level {
		case backup.StorageOK:
			d.resolve(ctx, key)
		default:
			sev := alert.Warning
			if level == backup.StorageCritical {
				sev = alert.Critical
			}
			d.fire(ctx, alert.Alert{Key: key, Severity: sev,
				Summary: fmt.Sprintf("Backup storage %s is filling up", st), Details: "Storage " + st.String() + ": " + reason + "."})
		}
	}
}

// ArchiveStalled judges PostgreSQL's archiving statistics: archiving has stalled when
// archive_command failed after its last success, or when finished segments have
// waited longer than stall for the archiver (WAL is being written but not archived).
// An idle server, whose last segment is still being written, has not stalled.
func ArchiveStalled(st *backup.ArchiverStats, stall time.Duration) (bool, string, string) {
	const next = "\n\nUntil archiving works, no new backup can complete and point-in-time recovery stops at the last archived segment. " +
		"Check the PostgreSQL log for archive_command's errors and hestami wal status; the segments wait in pg_wal, which keeps growing."
	failing := st.LastFailedTime != nil && (st.LastArchivedTime == nil || st.LastFailedTime.After(*st.LastArchivedTime))
	if failing {
		return true, "WAL archiving is failing",
			fmt.Sprintf("archive_command failed for %s at %s (%d failures in all) and has not succeeded since; %d segment(s) wait to be archived.",
				orNone(st.LastFailedWAL), st.LastFailedTime.UTC().Format(time.RFC3339), st.FailedCount, st.LagSegments) + next
	}
	if st.LagSegments > 0 && st.LagSeconds > stall.Seconds() {
		last := "never"
		if st.LastArchivedTime != nil {
			last = st.LastArchivedTime.UTC().Format(time.RFC3339) + " (" + orNone(st.LastArchivedWAL) + ")"
		}
		return true, "WAL archiving has stalled",
			fmt.Sprintf("%d finished segment(s) wait to be archived and nothing was archived for %s (threshold %s); last archived: %s; the server writes %s.",
				st.LagSegments, (time.Duration(st.LagSeconds)*time.Second).String(), stall, last, orNone(st.CurrentWAL)) + next
	}
	return false, "", ""
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// readyAfter is how recent the last scheduler tick must be for /readyz.
const readyAfter = 3 * maxWait

// Mount adds the daemon's health endpoints to mux: /healthz answers 200 while the
// process serves HTTP; /readyz answers 200 when the scheduler ticked within the last
// three minutes and the repository was reachable at the last check, 503 otherwise,
// with a JSON body saying which.
//
// Further handlers (the status page, /metrics) are mounted beside these by the
// command that runs the daemon; Status and Alerts give them what the daemon knows.
func (d *Daemon) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", d.readyz)
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready bool `json:"ready"`
	// LastTick is when the scheduler last ran (wall clock).
	LastTick time.Time `json:"last_tick,omitzero"`
	// Repository is "ok", "not checked yet" or why it cannot be read.
	Repository string `json:"repository"`
	// Problems list what makes the daemon not ready.
	Problems []string `json:"problems,omitempty"`
}

// Ready reports whether the daemon is ready (see Mount).
func (d *Daemon) Ready() Readiness {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := Readiness{Ready: true, LastTick: d.lastTickReal, Repository: "ok"}
	switch {
	case d.lastTickReal.IsZero():
		r.Ready = false
		r.Problems = append(r.Problems, "the scheduler has not run yet")
	case time.Since(d.lastTickReal) > readyAfter:
		r.Ready = false
		r.Problems = append(r.Problems, fmt.Sprintf("the scheduler last ran %s ago", time.Since(d.lastTickReal).Round(time.Second)))
	}
	switch {
	case d.repoChecked.IsZero():
		r.Ready = false
		r.Repository = "not checked yet"
		r.Problems = append(r.Problems, "the repository has not been checked yet")
	case d.repoErr != nil:
		r.Ready = false
		r.Repository = d.repoErr.Error()
		r.Problems = append(r.Problems, "the repository cannot be read")
	}
	return r
}

func (d *Daemon) readyz(w http.ResponseWriter, r *http.Request) {
	rd := d.Ready()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if !rd.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rd)
}
