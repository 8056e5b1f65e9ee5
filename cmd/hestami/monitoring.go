package main

import (
	"net/http"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/daemon"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/prometheus"
	"github.com/hestami/hestami/statuspage"
)

// overviewReader returns the cached reader of the repository's and PostgreSQL's
// state that the status page and the metrics share, so that between them they read
// storage at most once per backup.DefaultOverviewTTL.
func (p *Program) overviewReader() (*backup.OverviewReader, error) {
	repo, err := p.repository(false)
	if err != nil {
		return nil, err
	}
	walRepo, err := p.repository(true)
	if err != nil {
		return nil, err
	}
	return &backup.OverviewReader{
		Repo:     repo,
		WALRepo:  walRepo,
		Archiver: &postgres.Archiver{ConnString: p.cfg.Postgres.ConnString("")},
	}, nil
}

// daemonMonitoring returns what `hestami backup daemon` serves besides its health
// checks: the status page at / and Prometheus metrics at /metrics, both including
// the daemon's jobs (jobs is daemon.Daemon.Status). Mount it at "/": the patterns
// the daemon registers itself (/healthz, /readyz) are more specific and win.
func (p *Program) daemonMonitoring(jobs func() []daemon.JobStatus) (http.Handler, error) {
	src, err := p.overviewReader()
	if err != nil {
		return nil, err
	}
	return p.monitoringHandler(src, jobs), nil
}

// monitoringHandler serves the status page at / and the metrics at /metrics from
// src; jobs, when not nil, adds the daemon's jobs to both.
func (p *Program) monitoringHandler(src *backup.OverviewReader, jobs func() []daemon.JobStatus) http.Handler {
	mopts := prometheus.Options{Logger: p.logger}
	popts := statuspage.Options{Logger: p.logger}
	if jobs != nil {
		mopts.Collectors = append(mopts.Collectors, prometheus.NewJobCollector(func() []prometheus.Job {
			var out []prometheus.Job
			for _, j := range jobs() {
				out = append(out, prometheus.Job{Name: j.Name, Running: j.Running, Next: j.Next,
					LastEnd: j.LastEnd, LastDuration: j.LastDuration, LastOutcome: j.LastOutcome})
			}
			return out
		}))
		popts.Jobs = func() []statuspage.Job {
			var out []statuspage.Job
			for _, j := range jobs() {
				out = append(out, statuspage.Job{Name: j.Name, Running: j.Running, Next: j.Next,
					LastEnd: j.LastEnd, LastDuration: j.LastDuration, LastOutcome: j.LastOutcome, LastError: j.LastError})
			}
			return out
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", prometheus.Handler(src, mopts))
	mux.Handle("/", statuspage.NewHandler(src, popts))
	return mux
}
