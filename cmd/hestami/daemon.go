package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/config"
	"github.com/hestami/hestami/cron"
	"github.com/hestami/hestami/daemon"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/smtp"
	"github.com/hestami/hestami/webhook"
)

// DefaultDaemonListen is where backup daemon serves HTTP: health, metrics, the
// status page and the API.
const DefaultDaemonListen = "127.0.0.1:9187"

// daemonDeps is what a test puts into the daemon instead of the real thing.
type daemonDeps struct {
	// Now is the daemon's clock (nil: time.Now).
	Now func() time.Time
	// Senders receive notifications besides the configured ones.
	Senders []alert.Sender
	// HestamiPath is the binary the drills' restore_command runs (default: this one).
	HestamiPath string
	// LeaseSettle overrides the lease takeover settle time (negative: none).
	LeaseSettle time.Duration
	// GracePeriod overrides daemon.grace_period.
	GracePeriod time.Duration
	// Listening is told the address the HTTP server listens on.
	Listening func(net.Addr)
}

func (p *Program) backupDaemonCommand() *cobra.Command {
	var listen, hestamiPath string
	cmd := &cobra.Command{
		Use:   "daemon [--listen ADDR]",
		Short: "Run scheduled backups, verification, retention and restore drills, with alerts",
		Long: `Runs until stopped (SIGTERM or Ctrl-C), doing on the schedules of the daemon section
of the configuration (cron expressions in daemon.time_zone):

  physical and logical backups  after pre-checks (the database answers, the storage
                                has room for a backup the size of the recent ones, the
                                previous backup is complete and verified); then each
                                backup is verified (every object's checksum, plus
                                pg_verifybackup or pg_restore --list) and the outcome
                                recorded for retention
  retention                     after each backup (daemon.prune: after-backup), or
                                on a schedule of its own; the same as backup prune
  restore drills                the newest physical backup restored into a scratch
                                directory and started (archiving off), checked with
                                pg_amcheck and row counts; the newest logical backup
                                restored into scratch databases hestami_drill_<name>
  monitoring                    WAL archiving stalls and backup size anomalies

Problems are sent as notifications (the notifications section: webhooks, Slack,
email) and every job is written to the audit log as hestami-daemon@HOST.

Several daemons may share one repository (a standby host, say): each kind of job runs
on one of them at a time, through a lease in the repository (locks/). On SIGTERM a
running job gets daemon.grace_period to finish; a backup stopped after that has no
manifest, so it is never taken for a complete one.

HTTP on --listen: /healthz (the process is up), /readyz (the scheduler runs and the
repository is reachable) and /metrics (Prometheus), open; with daemon.auth, the API
(/api/v1/..., described at /api/openapi.json) and the status page (/), for staff
signed in through the auth service. The API lists, takes, verifies and drills
backups, deletes and prunes, and restores: into scratch for one person, into
production once a second staff member approved (restores, deletions and approvals
need a second factor verified within 5 minutes). Every request, approval, refusal
and outcome is in the audit log. See docs/daemon.md.`,
		Example: `  hestami backup daemon --config /etc/hestami/hestami.yaml
  hestami backup daemon --listen 0.0.0.0:9187`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return p.runDaemon(cmd.Context(), listen, daemonDeps{HestamiPath: hestamiPath})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", DefaultDaemonListen, "address for /healthz, /readyz, /metrics, the status page and the API")
	cmd.Flags().StringVar(&hestamiPath, "hestami-path", "", "hestami binary the drills' restored servers run as restore_command (default: this one)")
	return cmd
}

// runDaemon runs the daemon and its HTTP server until ctx ends.
func (p *Program) runDaemon(ctx context.Context, listen string, deps daemonDeps) error {
	parts, err := p.buildDaemon(ctx, deps)
	if err != nil {
		return err
	}
	d, alerts := parts.d, parts.alerts
	mux := http.NewServeMux()
	d.Mount(mux)
	api, login, err := p.mountAPI(ctx, mux, parts, parts.now) // daemon_api.go
	if err != nil {
		return err
	}
	p.mountMonitoring(mux, d, login) // daemon_monitoring.go
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("backup daemon: listen on %s: %w (choose another address with --listen)", listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	p.logger.Info("backup daemon listening", "addr", ln.Addr().String())
	if deps.Listening != nil {
		deps.Listening(ln.Addr())
	}

	alertCtx, stopAlerts := context.WithCancel(context.WithoutCancel(ctx))
	alertsDone := make(chan struct{})
	go func() { defer close(alertsDone); alerts.Run(alertCtx, time.Minute) }()

	runErr := d.Run(ctx)
	if api != nil {
		// Restores the API started get the jobs' grace period too.
		graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), parts.grace)
		api.Close(graceCtx)
		cancel()
	}

	stopAlerts()
	<-alertsDone
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := alerts.Tick(flushCtx); err != nil { // deliver what the last jobs fired
		p.logger.Warn("notifications: last delivery pass failed", "err", err)
	}
	if err := srv.Shutdown(flushCtx); err != nil {
		p.logger.Warn("stop the HTTP server", "err", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(runErr, fmt.Errorf("backup daemon: HTTP server: %w", err))
	}
	p.logger.Info("backup daemon stopped")
	return runErr
}

// daemonParts are the daemon and what the API needs of its wiring.
type daemonParts struct {
	d              *daemon.Daemon
	alerts         *alert.Manager
	repo           *backup.Repository
	pruner         *backup.Pruner
	server         *postgres.Server
	sandbox        daemon.Sandbox
	checker        daemon.BackupChecker
	restoreCommand string
	host           string
	grace          time.Duration
	now            func() time.Time
}

// newDaemon builds the daemon from the configuration, with its alert manager.
func (p *Program) newDaemon(ctx context.Context, deps daemonDeps) (*daemon.Daemon, *alert.Manager, error) {
	parts, err := p.buildDaemon(ctx, deps)
	if err != nil {
		return nil, nil, err
	}
	return parts.d, parts.alerts, nil
}

// buildDaemon builds the daemon from the configuration.
func (p *Program) buildDaemon(ctx context.Context, deps daemonDeps) (*daemonParts, error) {
	cfg := p.cfg.Daemon
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	repo, err := p.repository(false)
	if err != nil {
		return nil, err
	}
	walRepo, err := p.repository(true)
	if err != nil {
		return nil, err
	}
	repo.Now, walRepo.Now = now, now
	p.auditStart(ctx, repo) // audit.go
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("daemon.state_dir: %w", err)
	}
	if err := os.MkdirAll(cfg.Scratch(), 0o700); err != nil {
		return nil, fmt.Errorf("daemon.scratch_dir: %w", err)
	}
	alerts, err := p.alertManager(ctx, now, deps.Senders)
	if err != nil {
		return nil, err
	}

	loc := cfg.Location()
	schedules := map[string]daemon.Schedule{}
	for name, expr := range map[string]string{
		daemon.JobPhysical: cfg.Schedules.Physical, daemon.JobLogical: cfg.Schedules.Logical,
		daemon.JobDrillPhysical: cfg.Drills.Physical, daemon.JobDrillLogical: cfg.Drills.Logical,
		daemon.JobPrune: cfg.Prune, daemon.JobSync: cfg.Schedules.Sync,
	} {
		if expr == config.Off || (name == daemon.JobPrune && expr == config.PruneAfterBackup) {
			continue
		}
		if name == daemon.JobSync && p.cfg.Storage.SecondaryURL == "" {
			continue // nothing to copy to
		}
		s, err := cron.Parse(expr, loc)
		if err != nil {
			return nil, fmt.Errorf("daemon: %s: %w", name, err) // Validate has said so already
		}
		schedules[name] = s
	}
	tools, err := p.tools(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("backup daemon: %w", err)
	}
	exe := deps.HestamiPath
	if exe == "" {
		exe = executable()
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return nil, err
	}
	grace := cfg.GracePeriod
	if deps.GracePeriod != 0 {
		grace = deps.GracePeriod
	}
	pg := p.cfg.Postgres
	var sync func(context.Context) (int, error)
	if p.cfg.Storage.SecondaryURL != "" {
		sync = func(ctx context.Context) (int, error) {
			res, _, err := p.syncSecondary(ctx) // storage_check.go
			return len(res.WAL) + len(res.Backups), err
		}
	}
	parts := &daemonParts{alerts: alerts, repo: repo, host: host, grace: grace, now: now,
		pruner: &backup.Pruner{Repo: repo, WALRepo: walRepo, Policies: retentionPolicies(p.cfg.Retention),
			PITRTier: p.cfg.Retention.PITRWindow, Logger: p.logger},
		server:         postgres.NewServer(pg.ConnString, pg.Database, tools),
		checker:        &postgres.BackupChecks{Tools: tools, BinDir: pg.BinDir},
		sandbox:        &postgres.Sandbox{Dir: cfg.Scratch(), BinDir: pg.BinDir, User: pg.User, Password: pg.Password, Logger: p.logger},
		restoreCommand: backup.RestoreCommand(exe, p.effectiveConfigPath(), p.globalFlags()...),
	}
	d, err := daemon.New(daemon.Options{
		Sync:      sync,
		Repo:      repo,
		WALRepo:   walRepo,
		Schedules: schedules,
		Backups: map[backup.Type]daemon.BackupFunc{
			backup.Physical: func(ctx context.Context) (*backup.Manifest, error) {
				b, err := p.physicalBackup(repo, backup.DefaultWALTimeout, nil) // backup_jobs.go
				if err != nil {
					return nil, err
				}
				return b.Run(ctx)
			},
			backup.Logical: func(ctx context.Context) (*backup.Manifest, error) {
				m, _, err := p.logicalBackup(ctx, repo, nil, nil)
				return m, err
			},
		},
		PruneAfterBackup: cfg.Prune == config.PruneAfterBackup,
		Pruner:           parts.pruner,
		Server:           parts.server,
		Archiver:         &postgres.Archiver{ConnString: pg.ConnString("")},
		Checker:          parts.checker,
		Sandbox:          parts.sandbox,
		RestoreCommand:   parts.restoreCommand,
		ScratchDir:       cfg.Scratch(),
		Alerts:           alerts,
		NotifySuccess:    cfg.NotifySuccess,
		Leaser: &daemon.Leaser{Storage: repo.Storage, Host: host, PID: os.Getpid(),
			TTL: cfg.LeaseTTL, Heartbeat: cfg.Heartbeat, Settle: deps.LeaseSettle, Now: now},
		Actor:                  "hestami-daemon@" + host,
		Host:                   host,
		Parallel:               p.cfg.Backup.Parallel,
		GracePeriod:            grace,
		CheckInterval:          cfg.CheckInterval,
		ArchiveStall:           cfg.ArchiveStall,
		SizeAnomalyPercent:     cfg.SizeAnomalyPercent,
		SizeHistory:            cfg.SizeHistory,
		StorageWarnPercent:     cfg.StorageWarnPercent,
		StorageCriticalPercent: cfg.StorageCriticalPercent,
		DrillTimeout:           cfg.DrillTimeout,
		OnJob:                  p.daemonJobObserver(), // daemon_monitoring.go
		Now:                    now,
		Logger:                 p.logger,
	})
	if err != nil {
		return nil, err
	}
	parts.d = d
	return parts, nil
}

// alertManager builds the notification senders of the configuration (plus extra)
// and the manager that de-duplicates and delivers to them.
func (p *Program) alertManager(ctx context.Context, now func() time.Time, extra []alert.Sender) (*alert.Manager, error) {
	n := p.cfg.Notifications
	var senders []alert.Sender
	var errs []error
	for i, w := range n.Webhooks {
		c := webhook.Config{Name: w.Name, URL: w.URL, Kind: webhook.Kind(w.Kind), Timeout: w.Timeout, AllowHTTP: w.AllowHTTP}
		if w.SecretFile != "" {
			b, err := os.ReadFile(w.SecretFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("notifications.webhooks[%d].secret_file: %w", i, err))
				continue
			}
			c.Secret = trimNewline(b)
		}
		if w.CAFile != "" {
			pool, err := loadCertPool(w.CAFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("notifications.webhooks[%d].ca_file: %w", i, err))
				continue
			}
			c.RootCAs = pool
		}
		s, err := webhook.New(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("notifications.webhooks[%d]: %w", i, err))
			continue
		}
		senders = append(senders, s)
	}
	if e := n.Email; e != nil {
		c := smtp.Config{Name: e.Name, Host: e.Host, Port: e.Port, Security: smtp.Security(e.TLS), Username: e.Username,
			Password: e.Password, From: e.From, To: e.To, CAFile: e.CAFile, Timeout: e.Timeout, Now: now}
		if e.PasswordFile != "" {
			b, err := os.ReadFile(e.PasswordFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("notifications.email.password_file: %w", err))
			}
			c.Password = string(trimNewline(b))
		}
		if s, err := smtp.New(c); err != nil {
			errs = append(errs, fmt.Errorf("notifications.email: %w", err))
		} else {
			senders = append(senders, s)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	senders = append(senders, extra...)
	if len(senders) == 0 {
		p.logger.Warn("no notifications configured: the daemon's alerts go to its log only (see docs/notifications.md)")
	}
	return alert.NewManager(ctx, alert.Options{
		Senders:        senders,
		Store:          &alert.FileStore{Path: n.StatePath(p.cfg.Daemon)},
		RepeatInterval: n.RepeatInterval,
		Labels:         n.Labels,
		Now:            now,
		Logger:         p.logger,
	})
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// loadCertPool reads the PEM certificates in path.
func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
