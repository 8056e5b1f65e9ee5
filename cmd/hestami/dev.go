package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/config"
	"github.com/hestami/hestami/postgres"
)

// devOptions are the flags of hestami dev.
type devOptions struct {
	Dir      string
	Port     int
	AuthPort int
}

func (p *Program) devCommand() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole stack locally (a PostgreSQL cluster archiving into a local repository)",
		Long: `Creates (or reuses) a PostgreSQL cluster under DIR from the PostgreSQL binaries
installed on this machine, with archive_command = 'hestami wal push %p' into a local
repository under DIR, takes a first physical and a first logical backup, prints what it
did and how to restore, and runs until Ctrl-C. No cloud credentials needed.

Run as root (a container, a CI machine), the cluster runs as the postgres user
(HESTAMI_PG_USER), since PostgreSQL refuses to run as root.`,
		Example: `  make run                     # builds hestami, then runs: hestami dev
  hestami dev --dir ./.hestami --port 54320`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return p.runDev(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.Dir, "dir", ".hestami", "directory for the cluster, the repository and the config")
	cmd.Flags().IntVar(&o.Port, "port", 54320, "port of the local PostgreSQL (127.0.0.1 only)")
	cmd.Flags().IntVar(&o.AuthPort, "auth-port", 8080, "port of the local sign-in service (127.0.0.1 only; 0: don't run it)")
	return cmd
}

func (p *Program) runDev(cmd *cobra.Command, o devOptions) error {
	ctx := cmd.Context()
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", o.Port)); err != nil {
		return fmt.Errorf("port %d on 127.0.0.1 is in use (another hestami dev, or a PostgreSQL server?): stop it, or pass --port with a free one", o.Port)
	} else {
		ln.Close()
	}
	if o.AuthPort != 0 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", o.AuthPort))
		if err != nil {
			return fmt.Errorf("port %d on 127.0.0.1 is in use (another hestami dev, or another web server?): stop it, or pass --auth-port with a free one (0 runs no sign-in service)", o.AuthPort)
		}
		ln.Close()
	}
	bin, err := postgres.FindBinaries(13)
	if err != nil {
		return fmt.Errorf("%w (make run installs them; or run make deps)", err)
	}
	user, err := postgres.ClusterUser()
	if err != nil {
		return err
	}
	paths := struct{ data, repo, run, cfg, log string }{
		data: filepath.Join(dir, "data"), repo: filepath.Join(dir, "backup"), run: filepath.Join(dir, "run"),
		cfg: filepath.Join(dir, "hestami.yaml"), log: filepath.Join(dir, "postgres.log"),
	}
	for _, d := range []string{dir, paths.repo, paths.run} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		if err := postgres.Chown(d, user); err != nil {
			return fmt.Errorf("give %s to the cluster user: %w", d, err)
		}
	}
	if err := postgres.MakeTraversable(dir); err != nil {
		return fmt.Errorf("make %s reachable for the cluster user: %w", dir, err)
	}
	cfgText := fmt.Sprintf(`# Written by hestami dev: the local stack's configuration.
storage:
  url: file://%s
postgres:
  host: 127.0.0.1
  port: %d
  user: postgres
  database: hestami
`, paths.repo, o.Port)
	if err := os.WriteFile(paths.cfg, []byte(cfgText), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", paths.cfg, err)
	}
	cfg, err := config.Load(paths.cfg, p.Getenv)
	if err != nil {
		return err
	}
	p.cfg, p.configPath = cfg, paths.cfg

	c := &postgres.Cluster{Bin: bin, DataDir: paths.data, Port: o.Port, SocketDir: paths.run, LogFile: paths.log, User: user, Logger: p.logger}
	fresh := false
	if _, err := os.Stat(filepath.Join(paths.data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := c.InitDB(ctx); err != nil {
			return err
		}
		fresh = true
	}
	settings := map[string]string{
		"wal_level":       "replica",
		"archive_mode":    "on",
		"archive_command": fmt.Sprintf("'%s' --config '%s' wal push %%p", executable(), paths.cfg),
		"archive_timeout": "60",
		"max_wal_senders": "4",
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = c.Start(startCtx, settings)
	cancel()
	if err != nil {
		return fmt.Errorf("start the local PostgreSQL (log: %s): %w", paths.log, err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(stopCtx); err != nil {
			p.logger.Error("stop the local PostgreSQL", "err", err)
		}
	}()
	if fresh {
		conn, err := postgres.Connect(ctx, c.ConnString("postgres"))
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "CREATE DATABASE hestami")
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("create database hestami: %w", err)
		}
	}
	w := p.Stdout
	fmt.Fprintf(w, "PostgreSQL %d is running on 127.0.0.1:%d (data %s, log %s)\n", bin.Major, o.Port, paths.data, paths.log)
	fmt.Fprintf(w, "WAL is archived into %s by archive_command = hestami wal push %%p\n\n", paths.repo)

	fmt.Fprintln(w, "Taking a first physical backup...")
	if err := p.pushPhysical(cmd, pushOptions{Type: "physical"}); err != nil {
		return fmt.Errorf("first physical backup: %w", err)
	}
	fmt.Fprintln(w, "Taking a first logical backup...")
	if err := p.pushLogical(cmd, pushOptions{Type: "logical"}); err != nil {
		return fmt.Errorf("first logical backup: %w", err)
	}
	authErr := make(chan error, 1)
	authURL := ""
	if o.AuthPort != 0 {
		acfg := p.cfg.Auth
		acfg.DevMode, acfg.Migrate = true, true
		acfg.Listen = fmt.Sprintf("127.0.0.1:%d", o.AuthPort)
		acfg.PublicURL = fmt.Sprintf("http://localhost:%d", o.AuthPort)
		acfg.DatabaseURL = c.ConnString("hestami")
		if acfg.Secret == "" {
			// Kept in the directory, so sessions' forms and sealed TOTP secrets
			// survive restarts of hestami dev.
			if acfg.Secret, err = devSecret(filepath.Join(dir, "auth-secret")); err != nil {
				return err
			}
		}
		ready := make(chan struct{})
		go func() {
			authErr <- p.serveAuth(ctx, acfg, authServeDeps{DevUsers: true, Ready: func(string) { close(ready) }})
		}()
		select {
		case <-ready:
			authURL = acfg.PublicURL
		case err := <-authErr:
			return fmt.Errorf("start the sign-in service: %w", err)
		}
	}
	exe := executable()
	if authURL != "" {
		fmt.Fprintf(w, `
The sign-in service runs at %[1]s with the development identity provider:
  open %[1]s/signin and pick a test user (admin@hestami.local is a staff
  administrator; owner@ and provider@hestami.local create marketplace accounts).
  API: %[1]s/api/v1/me   OpenAPI: %[1]s/api/openapi.json   OIDC: %[1]s/oidc/.well-known/openid-configuration
`, authURL)
	}
	fmt.Fprintf(w, `
The local stack is up. Try:
  psql "host=127.0.0.1 port=%[1]d user=postgres dbname=hestami"
  export HESTAMI_CONFIG=%[2]s
  %[3]s backup list
  %[3]s wal status
  %[3]s backup push --type physical

Restore into a new directory, replaying all archived WAL, and check it:
  %[3]s restore --to /tmp/hestami-restore --verify
To a point in time instead, add a target between the first backup and the newest
archived WAL (see wal status), e.g. --target-time "2026-12-04 09:30:00+00".
Restore one database from the logical backup:
  %[3]s restore logical --backup latest --database hestami --into hestami_copy

Press Ctrl-C to stop.
`, o.Port, paths.cfg, exe)
	select {
	case <-ctx.Done():
		if o.AuthPort != 0 {
			if err := <-authErr; err != nil {
				p.logger.Error("sign-in service", "err", err)
			}
		}
	case err := <-authErr:
		return fmt.Errorf("the sign-in service stopped: %w", err)
	}
	fmt.Fprintln(w, "\nStopping the local PostgreSQL...")
	return nil
}

// devSecret returns the development auth secret kept in path, making it first.
func devSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	secret := auth.NewToken()
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keep the development auth secret: %w", err)
	}
	return secret, nil
}
