// Package prometheus exposes the state of the backups to Prometheus: a collector
// that reads the repository and PostgreSQL's archiver at scrape time (through a
// cached backup.OverviewReader, so scrapes are cheap) and an http.Handler serving it.
// Every metric is listed in docs/monitoring.md; deploy/grafana/hestami-backup.json
// charts them.
package prometheus

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hestami/hestami/backup"
)

// Source gives the collector the state to report; *backup.OverviewReader is one.
type Source interface {
	// Overview returns the current state; it fails only when ctx ends first.
	Overview(ctx context.Context) (*backup.Overview, error)
}

var _ Source = (*backup.OverviewReader)(nil)

// metric describes one metric the collector exports.
type metric struct {
	name   string
	help   string
	labels []string
	kind   prom.ValueType
	desc   *prom.Desc
}

func newMetric(kind prom.ValueType, name, help string, labels ...string) *metric {
	return &metric{name: name, help: help, labels: labels, kind: kind, desc: prom.NewDesc(name, help, labels, nil)}
}

// The metrics. Times are Unix seconds; a "last" metric is absent until there is a
// first (a backup, verification or drill of that type).
var (
	backupLastSuccess = newMetric(prom.GaugeValue, "hestami_backup_last_success_timestamp_seconds",
		"When the newest complete backup of the type finished (Unix time).", "type")
	backupLastDuration = newMetric(prom.GaugeValue, "hestami_backup_last_duration_seconds",
		"How long the newest complete backup of the type took.", "type")
	backupLastSize = newMetric(prom.GaugeValue, "hestami_backup_last_size_bytes",
		"Uncompressed size of the newest complete backup of the type.", "type")
	backupLastStored = newMetric(prom.GaugeValue, "hestami_backup_last_stored_size_bytes",
		"Bytes in storage of the newest complete backup of the type (compressed, encrypted).", "type")
	backups = newMetric(prom.GaugeValue, "hestami_backups",
		"Backups in the repository by type and status (complete, incomplete: failed, interrupted or running, unreadable).", "type", "status")
	backupsStored = newMetric(prom.GaugeValue, "hestami_backups_stored_bytes",
		"Bytes in storage of all backups of the type, any status.", "type")
	verificationLast = newMetric(prom.GaugeValue, "hestami_verification_last_timestamp_seconds",
		"When a backup of the type was last verified (Unix time).", "type")
	verificationLastSuccess = newMetric(prom.GaugeValue, "hestami_verification_last_success",
		"Whether the last verification of a backup of the type passed (1) or failed (0).", "type")
	walArchiveLag = newMetric(prom.GaugeValue, "hestami_wal_archive_lag_seconds",
		"Seconds since PostgreSQL last archived a WAL segment (pg_stat_archiver); grows on an idle server too, see archive_timeout.")
	walArchiveLagSegments = newMetric(prom.GaugeValue, "hestami_wal_archive_lag_segments",
		"WAL segments between the last archived and the one PostgreSQL writes now: segments a loss of the server would lose.")
	walArchived = newMetric(prom.CounterValue, "hestami_wal_archived_total",
		"WAL files PostgreSQL archived successfully since its statistics were reset (pg_stat_archiver.archived_count).")
	walArchiveFailures = newMetric(prom.CounterValue, "hestami_wal_archive_failures_total",
		"Failed archive_command runs since PostgreSQL's statistics were reset (pg_stat_archiver.failed_count).")
	walLastFailure = newMetric(prom.GaugeValue, "hestami_wal_archive_last_failure_timestamp_seconds",
		"When archive_command last failed (Unix time).")
	walLastStored = newMetric(prom.GaugeValue, "hestami_wal_last_stored_timestamp_seconds",
		"When the newest WAL segment in the repository was stored (Unix time).")
	walSegments = newMetric(prom.GaugeValue, "hestami_wal_segments",
		"WAL segments in the repository, per timeline.", "timeline")
	walMissing = newMetric(prom.GaugeValue, "hestami_wal_missing_segments",
		"WAL segments missing inside the archived range of the timeline (gaps: point-in-time recovery cannot cross them).", "timeline")
	walStored = newMetric(prom.GaugeValue, "hestami_wal_stored_bytes",
		"Bytes in storage of the timeline's archived WAL.", "timeline")
	drillLast = newMetric(prom.GaugeValue, "hestami_drill_last_timestamp_seconds",
		"When the last restore drill of a backup of the type ran (Unix time).", "type")
	drillLastSuccess = newMetric(prom.GaugeValue, "hestami_drill_last_success",
		"Whether the last restore drill of the type passed (1) or failed (0).", "type")
	drillRTO = newMetric(prom.GaugeValue, "hestami_drill_last_rto_seconds",
		"Recovery time of the last restore drill of the type: until the restored server answered.", "type")
	drillRPO = newMetric(prom.GaugeValue, "hestami_drill_last_rpo_seconds",
		"Recovery point of the last restore drill of the type: the age of the newest archived WAL when it ran.", "type")
	storageUsed = newMetric(prom.GaugeValue, "hestami_storage_used_bytes",
		"Bytes stored: the sum of the sizes of every object (repository, or wal for a separate WAL storage).", "storage")
	storageObjects = newMetric(prom.GaugeValue, "hestami_storage_objects",
		"Objects stored.", "storage")
	storageFree = newMetric(prom.GaugeValue, "hestami_storage_free_bytes",
		"Bytes free in the storage, where it can tell (directories; not object stores).", "storage")
	repositoryUp = newMetric(prom.GaugeValue, "hestami_repository_up",
		"Whether the repository's backups could be listed (1) or not (0).")
	postgresUp = newMetric(prom.GaugeValue, "hestami_postgres_up",
		"Whether PostgreSQL's archiver statistics could be read (1) or not (0).")
	overviewTime = newMetric(prom.GaugeValue, "hestami_status_timestamp_seconds",
		"When the reported state was read (Unix time); reads are cached, so it lags the scrape by up to the cache's lifetime.")
	overviewDuration = newMetric(prom.GaugeValue, "hestami_status_read_duration_seconds",
		"How long reading the repository and PostgreSQL took.")
)

// allMetrics is every metric the Collector exports (see also jobMetrics).
var allMetrics = []*metric{
	backupLastSuccess, backupLastDuration, backupLastSize, backupLastStored, backups, backupsStored,
	verificationLast, verificationLastSuccess,
	walArchiveLag, walArchiveLagSegments, walArchived, walArchiveFailures, walLastFailure, walLastStored,
	walSegments, walMissing, walStored,
	drillLast, drillLastSuccess, drillRTO, drillRPO,
	storageUsed, storageObjects, storageFree,
	repositoryUp, postgresUp, overviewTime, overviewDuration,
}

// Options configure the collector and handler.
type Options struct {
	// Timeout bounds one read of the state at scrape time (0: 10 s).
	Timeout time.Duration
	// Logger reports reads that fail; nil: discarded.
	Logger *slog.Logger
	// Collectors are registered beside hestami's own (the daemon's job metrics).
	Collectors []prom.Collector
}

// Collector is a prometheus.Collector reporting a Source's state.
type Collector struct {
	src     Source
	timeout time.Duration
	logger  *slog.Logger
}

var _ prom.Collector = (*Collector)(nil)

// NewCollector returns a collector reading src at every scrape.
func NewCollector(src Source, opts Options) *Collector {
	c := &Collector{src: src, timeout: opts.Timeout, logger: opts.Logger}
	if c.timeout <= 0 {
		c.timeout = 10 * time.Second
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prom.Desc) {
	for _, m := range allMetrics {
		ch <- m.desc
	}
}

// Collect reads the state and sends its metrics.
func (c *Collector) Collect(ch chan<- prom.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	o, err := c.src.Overview(ctx)
	if err != nil {
		c.logger.Warn("metrics: could not read the backup state in time", "err", err, "timeout", c.timeout)
		send(ch, repositoryUp, 0)
		return
	}
	collectOverview(ch, o)
}

func send(ch chan<- prom.Metric, m *metric, v float64, labels ...string) {
	ch <- prom.MustNewConstMetric(m.desc, m.kind, v, labels...)
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func collectOverview(ch chan<- prom.Metric, o *backup.Overview) {
	send(ch, overviewTime, unix(o.Time))
	send(ch, overviewDuration, o.ReadDuration.Seconds())
	send(ch, repositoryUp, boolValue(o.RepositoryError == ""))
	for _, t := range []backup.Type{backup.Physical, backup.Logical} {
		lt := string(t)
		if o.RepositoryError == "" {
			for status, n := range o.Counts(t) {
				send(ch, backups, float64(n), lt, status)
			}
			var stored int64
			for _, b := range o.Backups {
				if b.Type == t {
					stored += b.StoredSize
				}
			}
			send(ch, backupsStored, float64(stored), lt)
		}
		if b := o.LatestComplete(t); b != nil {
			send(ch, backupLastSuccess, unix(b.StopTime), lt)
			send(ch, backupLastDuration, b.Duration().Seconds(), lt)
			send(ch, backupLastSize, float64(b.Size), lt)
			send(ch, backupLastStored, float64(b.StoredSize), lt)
		}
		if v, _ := o.LastVerification(t); v != nil {
			send(ch, verificationLast, unix(v.Time), lt)
			send(ch, verificationLastSuccess, boolValue(v.OK), lt)
		}
		if d := o.LastDrill(t); d != nil {
			send(ch, drillLast, unix(d.Time), lt)
			send(ch, drillLastSuccess, boolValue(d.OK), lt)
			send(ch, drillRTO, d.RTOSeconds, lt)
			send(ch, drillRPO, d.RPOSeconds, lt)
		}
	}

	send(ch, postgresUp, boolValue(o.Archiver != nil))
	if a := o.Archiver; a != nil {
		send(ch, walArchiveLag, a.LagSeconds)
		send(ch, walArchiveLagSegments, float64(a.LagSegments))
		send(ch, walArchived, float64(a.ArchivedCount))
		send(ch, walArchiveFailures, float64(a.FailedCount))
		if a.LastFailedTime != nil {
			send(ch, walLastFailure, unix(*a.LastFailedTime))
		}
	}
	if t := o.LastArchived(); !t.IsZero() {
		send(ch, walLastStored, unix(t))
	}
	for _, tl := range o.Timelines {
		l := strconv.FormatUint(uint64(tl.Timeline), 10)
		var missing uint64
		for _, g := range tl.Gaps {
			missing += g.Missing
		}
		send(ch, walSegments, float64(tl.Segments), l)
		send(ch, walMissing, float64(missing), l)
		send(ch, walStored, float64(tl.StoredSize), l)
	}

	for _, u := range o.Usage {
		if u.Error != "" && u.Objects == 0 {
			continue // unknown, not empty
		}
		send(ch, storageUsed, float64(u.Used), u.Name)
		send(ch, storageObjects, float64(u.Objects), u.Name)
		if u.Free != nil {
			send(ch, storageFree, float64(*u.Free), u.Name)
		}
	}
}

// NewRegistry returns a registry holding a Collector over src, the Go runtime's and
// the process's collectors, and opts.Collectors.
func NewRegistry(src Source, opts Options) *prom.Registry {
	reg := prom.NewRegistry()
	reg.MustRegister(NewCollector(src, opts),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range opts.Collectors {
		reg.MustRegister(c)
	}
	return reg
}

// Handler serves the metrics of NewRegistry(src, opts) in Prometheus's exposition
// formats. Mount it at /metrics.
func Handler(src Source, opts Options) http.Handler {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(NewRegistry(src, opts), promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	})
}
