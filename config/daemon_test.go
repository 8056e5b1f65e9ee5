package config_test

import (
	"os"
	"path/filepath"
	"slices"
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

// TestDaemonAuthEnv: daemon.auth from the environment alone (as compose gives
// it), over the file's values, and the auth service's registration of the daemon.
func TestDaemonAuthEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hestami.yaml")
	os.WriteFile(file, []byte(`
daemon:
  auth:
    url: https://old-auth.hestami.example
    public_url: https://old-backups.hestami.example
    cookie_key_file: /old/cookie
auth:
  return_origins: [https://app.hestami.example]
  oidc:
    clients:
      - id: web
        redirect_uris: [https://app.hestami.example/api/auth/callback/hestami]
      - id: backup-daemon
        secret: from-the-file
        redirect_uris: [https://old-backups.hestami.example/callback]
`), 0o600)
	vars := map[string]string{
		"HESTAMI_DAEMON_AUTH_URL":                       "http://localhost:8080",
		"HESTAMI_DAEMON_AUTH_CONNECT_TO":                "auth:8080",
		"HESTAMI_DAEMON_PUBLIC_URL":                     "http://localhost:9187",
		"HESTAMI_DAEMON_CLIENT_ID":                      "backups",
		"HESTAMI_DAEMON_CLIENT_SECRET_FILE":             "/run/secrets/client",
		"HESTAMI_DAEMON_COOKIE_KEY_FILE":                "/run/secrets/cookie",
		"HESTAMI_DAEMON_TRUSTED_PROXIES":                "172.18.0.1, 10.0.0.0/8",
		"HESTAMI_AUTH_BACKUP_DAEMON_URL":                "https://backups.hestami.example/",
		"HESTAMI_AUTH_BACKUP_DAEMON_CLIENT_SECRET_FILE": "/run/secrets/client",
	}
	for _, path := range []string{"", file} {
		c, err := config.Load(path, env(vars))
		if err != nil {
			t.Fatalf("config file %q: %v", path, err)
		}
		want := config.DaemonAuth{URL: "http://localhost:8080", ConnectTo: "auth:8080", PublicURL: "http://localhost:9187",
			ClientID: "backups", ClientSecretFile: "/run/secrets/client", CookieKeyFile: "/run/secrets/cookie"}
		if c.Daemon.Auth != want {
			t.Errorf("config file %q: daemon.auth = %+v, want %+v", path, c.Daemon.Auth, want)
		}
		if got := strings.Join(c.Daemon.TrustedProxies, " "); got != "172.18.0.1 10.0.0.0/8" {
			t.Errorf("config file %q: daemon.trusted_proxies = %q", path, got)
		}
		// The auth service's side: the client backup-daemon (the default id), with
		// its callback and secret file, replacing the file's; its origin a return origin.
		var daemonClients []config.OIDCClient
		for _, cl := range c.Auth.OIDC.Clients {
			if cl.ID == "backup-daemon" {
				daemonClients = append(daemonClients, cl)
			}
		}
		if len(daemonClients) != 1 || daemonClients[0].SecretFile != "/run/secrets/client" || daemonClients[0].Secret != "" ||
			strings.Join(daemonClients[0].RedirectURIs, " ") != "https://backups.hestami.example/callback" {
			t.Errorf("config file %q: backup-daemon clients %+v: want one, redirect https://backups.hestami.example/callback, secret from the file named", path, daemonClients)
		}
		if path != "" && (len(c.Auth.OIDC.Clients) != 2 || c.Auth.OIDC.Clients[0].ID != "web") {
			t.Errorf("the file's other clients: %+v: want web kept", c.Auth.OIDC.Clients)
		}
		origins := c.Auth.ReturnOrigins
		if !slices.Contains(origins, "https://backups.hestami.example") || path != "" && !slices.Contains(origins, "https://app.hestami.example") {
			t.Errorf("config file %q: auth.return_origins = %q: want the daemon's origin added", path, origins)
		}
	}

	// Without HESTAMI_AUTH_BACKUP_DAEMON_URL nothing is registered.
	c, err := config.Load("", env(map[string]string{"HESTAMI_AUTH_BACKUP_DAEMON_CLIENT_ID": "x"}))
	if err != nil || len(c.Auth.OIDC.Clients) != 0 {
		t.Errorf("no daemon URL: clients %+v, err %v: want none", c.Auth.OIDC.Clients, err)
	}

	// Validated as the file's values are.
	_, err = config.Load("", env(map[string]string{"HESTAMI_DAEMON_AUTH_URL": "http://auth:8080", "HESTAMI_DAEMON_AUTH_CONNECT_TO": "auth",
		"HESTAMI_AUTH_BACKUP_DAEMON_URL": "backups"}))
	for _, want := range []string{"daemon.auth.url", "http only on loopback", "daemon.auth.connect_to", "daemon.auth.public_url",
		"daemon.auth.cookie_key_file", "auth.oidc.clients[0].redirect_uris[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad daemon variables: error does not name %s:\n%v", want, err)
		}
	}
}
