package main

import (
	"net/http"

	"github.com/hestami/hestami/daemon"
)

// The monitoring hooks of `hestami backup daemon`. The status page and the Prometheus
// /metrics handler are added here by the monitoring work; nothing else in the daemon
// needs to change for them.

// mountMonitoring mounts the status page and /metrics on the daemon's listener,
// beside /healthz and /readyz (which daemon.Daemon.Mount has added). What they show
// is available from: d.Status() (every job: next due time, last run, outcome, error),
// d.Ready(), d.Alerts().Active() (the alerts firing now), and a backup.OverviewReader
// over the repository (backups, WAL, drills, storage use).
func (p *Program) mountMonitoring(mux *http.ServeMux, d *daemon.Daemon) {
	h, err := p.daemonMonitoring(d.Status)
	if err != nil {
		p.logger.Error("status page and /metrics unavailable; the daemon runs without them", "err", err)
		return
	}
	mux.Handle("/", h)
}

// daemonJobObserver returns the function the daemon calls after every job with its
// status (for job counters and durations in /metrics); nil: none.
func (p *Program) daemonJobObserver() func(daemon.JobStatus) { return nil }
