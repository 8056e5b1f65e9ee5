package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/hestami/hestami/cron"
)

// Daemon configures `hestami backup daemon`: schedules, retention runs, drills and
// the thresholds of its alerts.
type Daemon struct {
	// TimeZone is the zone the schedules' cron expressions are read in (IANA name).
	TimeZone  string         `yaml:"time_zone"`
	Schedules DaemonSchedule `yaml:"schedules"`
	// Prune is when retention runs: "after-backup" (after every scheduled backup),
	// a cron expression, or "off".
	Prune  string         `yaml:"prune"`
	Drills DaemonSchedule `yaml:"drills"`
	// StateDir holds the daemon's local state: the notifications' state file and
	// scratch directories (unless ScratchDir is set).
	StateDir string `yaml:"state_dir"`
	// ScratchDir is where backups are unpacked for pg_verifybackup and drills ("":
	// StateDir/scratch). It needs room for the largest physical backup.
	ScratchDir string `yaml:"scratch_dir"`
	// GracePeriod is how long running jobs may finish once the daemon is told to stop.
	GracePeriod time.Duration `yaml:"grace_period"`
	// LeaseTTL and Heartbeat: a job's lease in the repository lasts LeaseTTL and is
	// renewed every Heartbeat (see docs/daemon.md).
	LeaseTTL  time.Duration `yaml:"lease_ttl"`
	Heartbeat time.Duration `yaml:"heartbeat"`
	// CheckInterval is how often archiving and the repository are checked.
	CheckInterval time.Duration `yaml:"check_interval"`
	// ArchiveStall is how long finished WAL may wait to be archived before it is an alert.
	ArchiveStall time.Duration `yaml:"archive_stall"`
	// SizeAnomalyPercent: a backup whose stored size differs from the median of the
	// last SizeHistory backups of its type by more than this is an alert.
	SizeAnomalyPercent float64 `yaml:"size_anomaly_percent"`
	SizeHistory        int     `yaml:"size_history"`
	// StorageWarnPercent and StorageCriticalPercent: a storage that can tell its free
	// space (a directory) fuller than this is a warning, then a critical alert (0: off).
	StorageWarnPercent     float64 `yaml:"storage_warn_percent"`
	StorageCriticalPercent float64 `yaml:"storage_critical_percent"`
	// DrillTimeout bounds a drill's wait for the restored server to finish recovery.
	DrillTimeout time.Duration `yaml:"drill_timeout"`
	// NotifySuccess sends an event for every successful scheduled backup.
	NotifySuccess bool `yaml:"notify_success"`
	// Auth signs people in to the daemon's API and status page through the auth
	// service; without it both are off (docs/daemon.md, "API").
	Auth DaemonAuth `yaml:"auth"`
	// Production says what a restore into production writes; without it
	// production restores are refused.
	Production DaemonProduction `yaml:"production"`
	// RestoresDir holds the physical restores into scratch the API makes, one
	// directory per request ("": StateDir/restores).
	RestoresDir string `yaml:"restores_dir"`
	// RestoreRequestTTL is how long a production restore waits for a second
	// staff member's approval.
	RestoreRequestTTL time.Duration `yaml:"restore_request_ttl"`
	// TrustedProxies are the addresses (or CIDR ranges) of reverse proxies whose
	// X-Forwarded-For names the client in the audit log.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// DaemonAuth is the daemon's registration at the auth service: it checks every
// API call's access token there, and signs browsers in to the status page as an
// OpenID Connect client of it.
type DaemonAuth struct {
	// URL is the auth service's public URL (https://auth.hestami.example; http
	// only on loopback). Empty: the API and the status page are off.
	URL string `yaml:"url"`
	// PublicURL is where browsers reach this daemon (https://backups.hestami.example):
	// the auth service sends them back to PublicURL/callback, which must be
	// among the client's redirect_uris there.
	PublicURL string `yaml:"public_url"`
	// ClientID is the daemon's client at the auth service (auth.oidc.clients).
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client's secret ("": a public client, PKCE only).
	ClientSecretFile string `yaml:"client_secret_file"`
	// CookieKeyFile holds the keys the sign-in cookie is encrypted with, one
	// id:base64 line each (openssl rand -base64 32), the first current; give every
	// replica the same file.
	CookieKeyFile string `yaml:"cookie_key_file"`
	// ConnectTo is the host:port the daemon connects to when it calls URL, if
	// URL's own host is not reachable from the daemon as browsers reach it. In
	// compose development the auth service is http://localhost:8080 for the
	// browser (and its OpenID Connect issuer), auth:8080 for the backup container.
	// Requests keep URL's host name (and, for https, its certificate check).
	ConnectTo string `yaml:"connect_to"`
}

// loadEnv reads the daemon's environment variables.
func (d *Daemon) loadEnv(str func(string, *string), list func(string, *[]string)) {
	str("HESTAMI_DAEMON_AUTH_URL", &d.Auth.URL)
	str("HESTAMI_DAEMON_AUTH_CONNECT_TO", &d.Auth.ConnectTo)
	str("HESTAMI_DAEMON_PUBLIC_URL", &d.Auth.PublicURL)
	str("HESTAMI_DAEMON_CLIENT_ID", &d.Auth.ClientID)
	// Paths, read by the daemon (docker secrets work as they are).
	str("HESTAMI_DAEMON_CLIENT_SECRET_FILE", &d.Auth.ClientSecretFile)
	str("HESTAMI_DAEMON_COOKIE_KEY_FILE", &d.Auth.CookieKeyFile)
	list("HESTAMI_DAEMON_TRUSTED_PROXIES", &d.TrustedProxies)
}

// DaemonProduction is what a restore into production writes to.
type DaemonProduction struct {
	// RestoreDir receives physical restores into production: restored and
	// configured for recovery, not started; the operator switches the production
	// server to it (docs/runbooks). It must be empty or missing for each restore.
	// Empty: physical production restores are refused.
	RestoreDir string `yaml:"restore_dir"`
	// Databases are the databases of the backed-up server that count as
	// production: a logical production restore may replace one of them, a scratch
	// restore never writes into one. Empty: logical production restores are refused.
	Databases []string `yaml:"databases"`
}

// Restores returns the directory for the API's physical restores into scratch.
func (d Daemon) Restores() string {
	if d.RestoresDir != "" {
		return d.RestoresDir
	}
	return strings.TrimRight(d.StateDir, "/") + "/restores"
}

// DaemonSchedule is a cron expression (or "off") per backup type.
type DaemonSchedule struct {
	Physical string `yaml:"physical"`
	Logical  string `yaml:"logical"`
	// Sync copies to the secondary storage what it lacks (only with
	// storage.secondary_url).
	Sync string `yaml:"sync"`
}

// Off disables a schedule.
const Off = "off"

// PruneAfterBackup is the daemon.prune value that runs retention after each backup.
const PruneAfterBackup = "after-backup"

// DefaultDaemon is the daemon's default configuration: backups at night (physical
// at 02:00, logical at 02:30), retention after each, a physical drill every day at
// 04:00 and a logical one on Sundays at 05:00.
func DefaultDaemon() Daemon {
	return Daemon{
		TimeZone:               "UTC",
		Schedules:              DaemonSchedule{Physical: "0 2 * * *", Logical: "30 2 * * *", Sync: "*/15 * * * *"},
		Prune:                  PruneAfterBackup,
		Drills:                 DaemonSchedule{Physical: "0 4 * * *", Logical: "0 5 * * 0"},
		StateDir:               "/var/lib/hestami",
		GracePeriod:            10 * time.Minute,
		LeaseTTL:               10 * time.Minute,
		Heartbeat:              time.Minute,
		CheckInterval:          time.Minute,
		ArchiveStall:           15 * time.Minute,
		SizeAnomalyPercent:     50,
		SizeHistory:            7,
		StorageWarnPercent:     80,
		StorageCriticalPercent: 90,
		DrillTimeout:           time.Hour,
		NotifySuccess:          true,
		Auth:                   DaemonAuth{ClientID: "backup-daemon"},
		RestoreRequestTTL:      time.Hour,
	}
}

// Location returns the schedules' time zone (UTC if it is not valid: Validate says so).
func (d Daemon) Location() *time.Location {
	loc, err := time.LoadLocation(d.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Scratch returns the directory for scratch copies of backups.
func (d Daemon) Scratch() string {
	if d.ScratchDir != "" {
		return d.ScratchDir
	}
	return strings.TrimRight(d.StateDir, "/") + "/scratch"
}

// validate reports the daemon section's problems.
func (d Daemon) validate(bad func(field, format string, args ...any)) {
	loc, err := time.LoadLocation(d.TimeZone)
	if err != nil {
		bad("daemon.time_zone", "%q: not a time zone name (e.g. UTC, Europe/Berlin)", d.TimeZone)
		loc = time.UTC
	}
	schedule := func(field, expr string) {
		if expr == Off {
			return
		}
		if _, err := cron.Parse(expr, loc); err != nil {
			bad(field, "%v; or off to disable", err)
		}
	}
	schedule("daemon.schedules.physical", d.Schedules.Physical)
	schedule("daemon.schedules.logical", d.Schedules.Logical)
	schedule("daemon.schedules.sync", d.Schedules.Sync)
	schedule("daemon.drills.physical", d.Drills.Physical)
	schedule("daemon.drills.logical", d.Drills.Logical)
	if d.Prune != PruneAfterBackup {
		schedule("daemon.prune", d.Prune)
	}
	if d.StateDir == "" {
		bad("daemon.state_dir", "empty: want a directory for the daemon's state, e.g. /var/lib/hestami")
	}
	for field, v := range map[string]time.Duration{"daemon.grace_period": d.GracePeriod, "daemon.lease_ttl": d.LeaseTTL,
		"daemon.heartbeat": d.Heartbeat, "daemon.check_interval": d.CheckInterval, "daemon.archive_stall": d.ArchiveStall,
		"daemon.drill_timeout": d.DrillTimeout} {
		if v <= 0 {
			bad(field, "%s: want a positive duration, e.g. 10m", v)
		}
	}
	if d.Heartbeat > 0 && d.LeaseTTL < 3*d.Heartbeat {
		bad("daemon.lease_ttl", "%s: want at least three heartbeats (daemon.heartbeat %s), so a slow renewal never lets a running job's lease expire", d.LeaseTTL, d.Heartbeat)
	}
	if d.SizeAnomalyPercent <= 0 {
		bad("daemon.size_anomaly_percent", "%g: want a positive percentage, e.g. 50", d.SizeAnomalyPercent)
	}
	for field, v := range map[string]float64{"daemon.storage_warn_percent": d.StorageWarnPercent, "daemon.storage_critical_percent": d.StorageCriticalPercent} {
		if v < 0 || v > 100 {
			bad(field, "%g: want a percentage from 0 (off) to 100", v)
		}
	}
	if d.StorageWarnPercent > 0 && d.StorageCriticalPercent > 0 && d.StorageWarnPercent >= d.StorageCriticalPercent {
		bad("daemon.storage_warn_percent", "%g: want less than daemon.storage_critical_percent (%g)", d.StorageWarnPercent, d.StorageCriticalPercent)
	}
	if d.SizeHistory < 3 {
		bad("daemon.size_history", "%d: want at least 3 backups to compare with", d.SizeHistory)
	}
	if d.RestoreRequestTTL <= 0 || d.RestoreRequestTTL > 7*24*time.Hour {
		bad("daemon.restore_request_ttl", "%s: want a positive duration up to a week, e.g. 1h", d.RestoreRequestTTL)
	}
	d.Auth.validate(bad)
	if dir := d.Production.RestoreDir; dir != "" && !strings.HasPrefix(dir, "/") {
		bad("daemon.production.restore_dir", "%q: want an absolute path", dir)
	}
	for i, db := range d.Production.Databases {
		if db == "" || strings.ContainsAny(db, "\x00") {
			bad(fmt.Sprintf("daemon.production.databases[%d]", i), "%q: want a database name", db)
		}
	}
	for i, p := range d.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			bad(fmt.Sprintf("daemon.trusted_proxies[%d]", i), "%q: want an IP address or a CIDR range", p)
		}
	}
}

// validate reports the problems of daemon.auth: all or nothing.
func (a DaemonAuth) validate(bad func(field, format string, args ...any)) {
	if a.URL == "" {
		return
	}
	for field, raw := range map[string]string{"daemon.auth.url": a.URL, "daemon.auth.public_url": a.PublicURL} {
		u, err := url.Parse(raw)
		switch {
		case raw == "":
			bad(field, "empty: with daemon.auth.url set, want where browsers reach this daemon, e.g. https://backups.hestami.example")
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			bad(field, "%q: want an https:// URL", raw)
		case u.Scheme == "http" && !loopbackHost(u.Hostname()):
			bad(field, "%q: http only on loopback (localhost, 127.0.0.1); use https", raw)
		}
	}
	if a.ClientID == "" {
		bad("daemon.auth.client_id", "empty: want the daemon's client id at the auth service, e.g. backup-daemon")
	}
	if a.ConnectTo != "" {
		if _, port, err := net.SplitHostPort(a.ConnectTo); err != nil || port == "" {
			bad("daemon.auth.connect_to", "%q: want host:port, e.g. auth:8080", a.ConnectTo)
		}
	}
	if a.CookieKeyFile == "" {
		bad("daemon.auth.cookie_key_file", "empty: want a file with a line id:KEY (KEY: openssl rand -base64 32), which encrypts the status page's sign-in cookie")
	}
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Notifications configures where the daemon's alerts go (docs/notifications.md).
type Notifications struct {
	// RepeatInterval is how often an ongoing problem is notified again.
	RepeatInterval time.Duration `yaml:"repeat_interval"`
	// StateFile keeps the de-duplication state across restarts ("":
	// daemon.state_dir/notifications.json).
	StateFile string            `yaml:"state_file"`
	Labels    map[string]string `yaml:"labels"`
	Webhooks  []Webhook         `yaml:"webhooks"`
	Email     *Email            `yaml:"email"`
}

// Webhook is one webhook receiver.
type Webhook struct {
	Name string `yaml:"name"`
	// Kind is json (default) or slack.
	Kind string `yaml:"kind"`
	URL  string `yaml:"url"`
	// SecretFile holds the HMAC-SHA256 key that signs JSON payloads.
	SecretFile string        `yaml:"secret_file"`
	Timeout    time.Duration `yaml:"timeout"`
	CAFile     string        `yaml:"ca_file"`
	AllowHTTP  bool          `yaml:"allow_http"`
}

// Email is one mail destination, through an SMTP submission server.
type Email struct {
	Name string `yaml:"name"`
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// TLS is starttls (default) or tls.
	TLS      string `yaml:"tls"`
	Username string `yaml:"username"`
	// Password, or better PasswordFile, authenticates Username.
	Password     string        `yaml:"password"`
	PasswordFile string        `yaml:"password_file"`
	From         string        `yaml:"from"`
	To           []string      `yaml:"to"`
	CAFile       string        `yaml:"ca_file"`
	Timeout      time.Duration `yaml:"timeout"`
}

// DefaultNotifications is the notifications section before the file: no receivers,
// reminders every 4 hours.
func DefaultNotifications() Notifications {
	return Notifications{RepeatInterval: 4 * time.Hour}
}

// StatePath returns the notifications' state file.
func (n Notifications) StatePath(d Daemon) string {
	if n.StateFile != "" {
		return n.StateFile
	}
	return strings.TrimRight(d.StateDir, "/") + "/notifications.json"
}

func (n Notifications) validate(bad func(field, format string, args ...any)) {
	if n.RepeatInterval < 0 {
		bad("notifications.repeat_interval", "%s: want a positive duration, e.g. 4h", n.RepeatInterval)
	}
	names := map[string]string{}
	for i, w := range n.Webhooks {
		f := fmt.Sprintf("notifications.webhooks[%d]", i)
		switch w.Kind {
		case "", "json", "slack":
		default:
			bad(f+".kind", "%q: want json or slack", w.Kind)
		}
		if w.URL == "" {
			bad(f+".url", "empty: want the receiver's https:// URL")
		} else if !strings.HasPrefix(w.URL, "https://") && !(w.AllowHTTP && strings.HasPrefix(w.URL, "http://")) {
			bad(f+".url", "want an https:// URL (http:// only with allow_http, for a receiver on a trusted network)")
		}
		if w.Kind == "slack" && w.SecretFile != "" {
			bad(f+".secret_file", "slack webhooks cannot be signed: remove it, or use kind json")
		}
		if w.Timeout < 0 {
			bad(f+".timeout", "%s: want a positive duration", w.Timeout)
		}
		if w.Name != "" {
			if prev, dup := names[w.Name]; dup {
				bad(f+".name", "%q is also the name of %s: names must be unique", w.Name, prev)
			}
			names[w.Name] = f
		}
	}
	if e := n.Email; e != nil {
		f := "notifications.email"
		if e.Host == "" {
			bad(f+".host", "empty: want the SMTP server's name")
		}
		switch e.TLS {
		case "", "starttls", "tls":
		default:
			bad(f+".tls", "%q: want starttls or tls (there is no plaintext mode)", e.TLS)
		}
		if e.Port < 0 || e.Port > 65535 {
			bad(f+".port", "%d is not a port", e.Port)
		}
		if e.From == "" {
			bad(f+".from", "empty: want the sender, e.g. \"hestami <alerts@example.com>\"")
		}
		if len(e.To) == 0 {
			bad(f+".to", "empty: want at least one recipient")
		}
		if e.Password != "" && e.PasswordFile != "" {
			bad(f+".password", "both password and password_file are set: keep password_file")
		}
		if (e.Password != "" || e.PasswordFile != "") && e.Username == "" {
			bad(f+".username", "empty, but a password is set")
		}
		if e.Timeout < 0 {
			bad(f+".timeout", "%s: want a positive duration", e.Timeout)
		}
	}
}
