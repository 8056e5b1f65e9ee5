package prometheus

import (
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
)

// Job is one scheduled job of the daemon as the metrics report it.
type Job struct {
	Name    string
	Running bool
	// Next is when it is next due (zero: not scheduled).
	Next time.Time
	// LastEnd is when its last run ended (zero: never ran), LastDuration how long
	// that run took and LastOutcome how it went: "ok", "failed" or "skipped".
	LastEnd      time.Time
	LastDuration time.Duration
	LastOutcome  string
}

// The daemon's job metrics, labelled by job name.
var (
	jobRunning = newMetric(prom.GaugeValue, "hestami_daemon_job_running",
		"Whether the daemon's job is running now (1) or not (0).", "job")
	jobNext = newMetric(prom.GaugeValue, "hestami_daemon_job_next_run_timestamp_seconds",
		"When the job is next due (Unix time).", "job")
	jobLastEnd = newMetric(prom.GaugeValue, "hestami_daemon_job_last_run_timestamp_seconds",
		"When the job's last run ended (Unix time).", "job")
	jobLastDuration = newMetric(prom.GaugeValue, "hestami_daemon_job_last_duration_seconds",
		"How long the job's last run took.", "job")
	jobLastSuccess = newMetric(prom.GaugeValue, "hestami_daemon_job_last_success",
		"Whether the job's last run succeeded (1) or failed (0); absent while it never ran or another daemon ran it.", "job")
)

var jobMetrics = []*metric{jobRunning, jobNext, jobLastEnd, jobLastDuration, jobLastSuccess}

// exported is every metric this package can export: the Collector's and the
// JobCollector's, for the tests that keep the documentation and dashboard in step.
func exported() []*metric { return append(append([]*metric{}, allMetrics...), jobMetrics...) }

// JobCollector reports the daemon's jobs, read at scrape time.
type JobCollector struct {
	jobs func() []Job
}

var _ prom.Collector = (*JobCollector)(nil)

// NewJobCollector returns a collector of what jobs returns at each scrape; pass it
// in Options.Collectors.
func NewJobCollector(jobs func() []Job) *JobCollector { return &JobCollector{jobs: jobs} }

// Describe sends the job metrics' descriptions.
func (c *JobCollector) Describe(ch chan<- *prom.Desc) {
	for _, m := range jobMetrics {
		ch <- m.desc
	}
}

// Collect sends each job's metrics.
func (c *JobCollector) Collect(ch chan<- prom.Metric) {
	for _, j := range c.jobs() {
		send(ch, jobRunning, boolValue(j.Running), j.Name)
		if !j.Next.IsZero() {
			send(ch, jobNext, unix(j.Next), j.Name)
		}
		if !j.LastEnd.IsZero() {
			send(ch, jobLastEnd, unix(j.LastEnd), j.Name)
			send(ch, jobLastDuration, j.LastDuration.Seconds(), j.Name)
		}
		switch j.LastOutcome {
		case "ok":
			send(ch, jobLastSuccess, 1, j.Name)
		case "failed":
			send(ch, jobLastSuccess, 0, j.Name)
		}
	}
}
