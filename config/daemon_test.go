package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/config"
)

func TestDaemonDefaults(t *testing.T) {
	c, err := config.Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Daemon
	if d.Schedules.Physical != "0 2 * * *" || d.Schedules.Logical != "30 2 * * *" || d.Prune != config.PruneAfterBackup ||
		d.Drills.Physical != "0 4 * * *" || d.ArchiveStall != 15*time.Minute || d.SizeAnomalyPercent != 50 {
		t.Errorf("daemon defaults = %+v", d)
	}
	if got := c.Notifications.StatePath(d); got != "/var/lib/hestami/notifications.json" {
		t.Errorf("notifications state file = %q, want it in daemon.state_dir", got)
	}
	if got := d.Scratch(); got != "/var/lib/hestami/scratch" {
		t.Errorf("scratch dir = %q", got)
	}
}

func TestDaemonAndNotificationsFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hestami.yaml")
	os.WriteFile(p, []byte(`
daemon:
  time_zone: Europe/Berlin
  schedules:
    physical: "0 1 * * *"
    logical: "off"
  prune: "0 6 * * *"
  state_dir: /srv/hestami
notifications:
  repeat_interval: 1h
  labels: {instance: db1}
  webhooks:
    - kind: slack
      url: ${SLACK_URL}
    - name: ops
      url: https://ops.example.com/hook
      secret_file: /run/secrets/hook
  email:
    host: smtp.example.com
    username: hestami
    password_file: /run/secrets/smtp
    from: "hestami <alerts@example.com>"
    to: [oncall@example.com]
`), 0o600)
	c, err := config.Load(p, env(map[string]string{"SLACK_URL": "https://hooks.slack.com/services/T/B/X"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.Location().String() != "Europe/Berlin" || c.Daemon.Schedules.Logical != config.Off || c.Daemon.Drills.Physical != "0 4 * * *" {
		t.Errorf("daemon = %+v", c.Daemon)
	}
	n := c.Notifications
	if n.RepeatInterval != time.Hour || n.Labels["instance"] != "db1" || len(n.Webhooks) != 2 || n.Webhooks[0].URL != "https://hooks.slack.com/services/T/B/X" ||
		n.Email == nil || n.Email.To[0] != "oncall@example.com" || n.StatePath(c.Daemon) != "/srv/hestami/notifications.json" {
		t.Errorf("notifications = %+v", n)
	}
}

func TestDaemonValidation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	os.WriteFile(p, []byte(`
daemon:
  time_zone: Mars/Olympus
  schedules:
    physical: "0 25 * * *"
  drills:
    logical: ""
  prune: sometimes
  lease_ttl: 1m
  heartbeat: 1m
  size_history: 1
notifications:
  webhooks:
    - url: http://insecure.example.com
    - kind: teams
      url: https://x.example.com
  email:
    host: smtp.example.com
    tls: none
    password: x
`), 0o600)
	_, err := config.Load(p, env(nil))
	if err == nil {
		t.Fatal("invalid daemon configuration accepted")
	}
	for _, want := range []string{"daemon.time_zone", "daemon.schedules.physical", `"0 25 * * *"`, "daemon.drills.logical", "daemon.prune",
		"daemon.lease_ttl", "daemon.size_history", "notifications.webhooks[0].url", "notifications.webhooks[1].kind",
		"notifications.email.tls", "notifications.email.from", "notifications.email.to", "notifications.email.username"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

// TestDaemonAPIConfig: the API's section read from the file, with its defaults,
// and each of its problems named by its field.
func TestDaemonAPIConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`
daemon:
  state_dir: /srv/hestami
  auth:
    url: https://auth.hestami.example
    public_url: https://backups.hestami.example
    client_secret_file: /run/secrets/daemon-client
    cookie_key_file: /run/secrets/daemon-cookie
  production:
    restore_dir: /var/lib/postgresql/17/restored
    databases: [hestami]
  trusted_proxies: [10.0.0.0/8, 192.0.2.1]
`), 0o600)
	c, err := config.Load(good, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Daemon
	if d.Auth.ClientID != "backup-daemon" || d.Auth.PublicURL != "https://backups.hestami.example" || d.RestoreRequestTTL != time.Hour ||
		d.Restores() != "/srv/hestami/restores" || d.Production.Databases[0] != "hestami" || len(d.TrustedProxies) != 2 {
		t.Errorf("daemon API configuration = %+v", d)
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`
daemon:
  auth:
    url: http://auth.hestami.example
    client_id: ""
  production:
    restore_dir: relative/dir
  restore_request_ttl: -1m
  trusted_proxies: [a proxy]
`), 0o600)
	_, err = config.Load(bad, env(nil))
	if err == nil {
		t.Fatal("invalid daemon API configuration accepted")
	}
	for _, want := range []string{"daemon.auth.url", "http only on loopback", "daemon.auth.public_url", "daemon.auth.client_id", "daemon.auth.cookie_key_file",
		"daemon.production.restore_dir", "daemon.restore_request_ttl", "daemon.trusted_proxies[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}
