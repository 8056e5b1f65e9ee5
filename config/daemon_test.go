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
