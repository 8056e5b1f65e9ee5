package deploy_test

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/config"
)

// TestDaemonAuth: the backup daemon's API and status page sign in through the auth
// service in every deployment (without daemon.auth they answer 503): the daemon's
// daemon.auth settings and secrets, and the auth service's registration of it, as
// hestami's configuration reads them.
func TestDaemonAuth(t *testing.T) {
	t.Parallel()
	forEachDeployment(t, func(t *testing.T, d deployment, p *types.Project) {
		backup, authSvc := service(t, p, "backup"), service(t, p, "auth")
		daemonCfg := loadConfig(t, "backup", backup)
		a := daemonCfg.Daemon.Auth
		if a.URL == "" || a.PublicURL == "" || a.ClientID == "" || a.ClientSecretFile == "" || a.CookieKeyFile == "" {
			t.Fatalf("backup: daemon.auth %+v: want url, public_url, client_id, client_secret_file and cookie_key_file (HESTAMI_DAEMON_*)", a)
		}
		if got := env(authSvc, "HESTAMI_AUTH_PUBLIC_URL"); a.URL != got {
			t.Errorf("backup: daemon.auth.url %q, auth's public URL %q: want the same (the issuer the daemon checks)", a.URL, got)
		}

		// The auth service registers the daemon's client: same id, its callback, the
		// same secret, its origin a return origin.
		authCfg := loadConfig(t, "auth", authSvc)
		var client *config.OIDCClient
		for i, c := range authCfg.Auth.OIDC.Clients {
			if c.ID == a.ClientID {
				client = &authCfg.Auth.OIDC.Clients[i]
			}
		}
		if client == nil {
			t.Fatalf("auth registers no client %q (clients %+v): set HESTAMI_AUTH_BACKUP_DAEMON_URL", a.ClientID, authCfg.Auth.OIDC.Clients)
		}
		if want := strings.TrimRight(a.PublicURL, "/") + "/callback"; len(client.RedirectURIs) != 1 || client.RedirectURIs[0] != want {
			t.Errorf("auth: client %s redirect URIs %q, want %q", a.ClientID, client.RedirectURIs, want)
		}
		pub, err := url.Parse(a.PublicURL)
		if err != nil {
			t.Fatal(err)
		}
		origins := strings.Join(authCfg.Auth.ReturnOrigins, " ")
		if !strings.Contains(" "+origins+" ", " "+pub.Scheme+"://"+pub.Host+" ") {
			t.Errorf("auth: return origins %q lack the daemon's %s://%s (a step-up's way back)", origins, pub.Scheme, pub.Host)
		}
		backupSecret, authSecret := secretAt(t, backup, a.ClientSecretFile), secretAt(t, authSvc, client.SecretFile)
		if backupSecret == "" || backupSecret != authSecret {
			t.Errorf("client secret: backup reads secret %q (%s), auth %q (%s): want one secret for both", backupSecret, a.ClientSecretFile, authSecret, client.SecretFile)
		}
		cookieSecret := secretAt(t, backup, a.CookieKeyFile)
		if cookieSecret == "" {
			t.Errorf("backup: daemon.auth.cookie_key_file %s: no secret mounted there", a.CookieKeyFile)
		}

		// Browsers reach the daemon's public URL at the port it publishes.
		port := pub.Port()
		if pub.Scheme == "http" {
			if host := pub.Hostname(); host != "localhost" && host != "127.0.0.1" {
				t.Errorf("backup: public URL %s: http only on localhost", a.PublicURL)
			}
			published := false
			for _, pp := range backup.Ports {
				published = published || (pp.Published == port && pp.HostIP == "127.0.0.1")
			}
			if !published {
				t.Errorf("backup: public URL %s, but port %s is not published on 127.0.0.1 (ports %+v)", a.PublicURL, port, backup.Ports)
			}
		}

		if d.prod {
			for field, raw := range map[string]string{"daemon.auth.url": a.URL, "daemon.auth.public_url": a.PublicURL} {
				if u, err := url.Parse(raw); err != nil || u.Scheme != "https" {
					t.Errorf("production backup: %s %q: want https", field, raw)
				}
			}
			if a.ConnectTo != "" {
				t.Errorf("production backup: daemon.auth.connect_to %q set by default: want the auth URL as it is (%s)", a.ConnectTo, prodEnv)
			}
			for _, name := range []string{backupSecret, cookieSecret} {
				if sec, ok := p.Secrets[name]; !ok || sec.File == "" || sec.Environment != "" || sec.Content != "" {
					t.Errorf("production secret %s: %+v: want a file on the host", name, sec)
				}
			}
			return
		}

		// Development: the localhost URL is the backup container itself, so the
		// daemon connects to the auth service's container and listen port.
		u, err := url.Parse(a.URL)
		if err != nil {
			t.Fatal(err)
		}
		if u.Scheme == "http" {
			host, cport, err := net.SplitHostPort(a.ConnectTo)
			if err != nil || host != "auth" || !listensOn(authSvc, cport) {
				t.Errorf("development backup: daemon.auth.url %s, connect_to %q: want auth:PORT, the port auth serve listens on (command %q)", a.URL, a.ConnectTo, authSvc.Command)
			}
		}
		// The secrets made from the env file's variables are what hestami accepts.
		if v := p.Environment[p.Secrets[backupSecret].Environment]; len(v) < 32 {
			t.Errorf("%s: the daemon's client secret has %d characters: the auth service wants at least 32", devEnv, len(v))
		}
		if _, _, err := auth.ParseSealerKeys(strings.Split(p.Environment[p.Secrets[cookieSecret].Environment], "\n")); err != nil {
			t.Errorf("%s: the daemon's cookie keys: %v", devEnv, err)
		}
	})
}

// loadConfig loads hestami's configuration from a service's environment, as the
// service's hestami does (secret files are only named, not read, for daemon.auth
// and the daemon's client; other *_FILE variables are left out).
func loadConfig(t *testing.T, name string, s types.ServiceConfig) config.Config {
	t.Helper()
	vars := map[string]string{}
	for k, v := range s.Environment {
		if v == nil || strings.HasSuffix(k, "_FILE") && !strings.HasPrefix(k, "HESTAMI_DAEMON_") && !strings.HasPrefix(k, "HESTAMI_AUTH_BACKUP_DAEMON_") {
			continue
		}
		if k == "HESTAMI_CONFIG" {
			continue // production auth's file of providers: a secret, not in the repository
		}
		vars[k] = *v
	}
	c, err := config.Load("", func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatalf("%s: hestami's configuration from its environment: %v", name, err)
	}
	return c
}

// secretAt returns the name of the secret mounted at path in s ("" if none).
func secretAt(t *testing.T, s types.ServiceConfig, path string) string {
	t.Helper()
	for _, sec := range s.Secrets {
		target := sec.Target
		if target == "" {
			target = sec.Source
		}
		if !strings.HasPrefix(target, "/") {
			target = "/run/secrets/" + target
		}
		if target == path {
			return sec.Source
		}
	}
	return ""
}

// listensOn reports whether a hestami server's command listens on port.
func listensOn(s types.ServiceConfig, port string) bool {
	for i, a := range s.Command {
		if a == "--listen" && i+1 < len(s.Command) {
			_, p, err := net.SplitHostPort(s.Command[i+1])
			n, _ := strconv.Atoi(port)
			return err == nil && p == port && n > 0
		}
	}
	return false
}
