package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authclient"
	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/backupapi"
	"github.com/hestami/hestami/config"
	"github.com/hestami/hestami/daemon"
	"github.com/hestami/hestami/postgres"
)

// The daemon's API (package backupapi) and its sign-in (package authclient), wired
// to the daemon, the repository and PostgreSQL.

// daemonCookie is the status page's sign-in cookie.
const daemonCookie = "hestami_backup_session"

// daemonLogin returns the status page's sign-in through the auth service, or nil
// when daemon.auth is not configured (the API and the status page are off then).
func (p *Program) daemonLogin() (*authclient.Login, error) {
	cfg := p.cfg.Daemon.Auth
	if cfg.URL == "" {
		return nil, nil
	}
	hc, err := authHTTPClient(cfg)
	if err != nil {
		return nil, err
	}
	client, err := authclient.New(authclient.Config{URL: cfg.URL, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("daemon.auth.url: %w", err)
	}
	var secret string
	if cfg.ClientSecretFile != "" {
		b, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("daemon.auth.client_secret_file: %w", err)
		}
		secret = string(trimNewline(b))
	}
	b, err := os.ReadFile(cfg.CookieKeyFile)
	if err != nil {
		return nil, fmt.Errorf("daemon.auth.cookie_key_file: %w", err)
	}
	keys, primary, err := auth.ParseSealerKeys(strings.Split(string(b), "\n"))
	if err != nil {
		return nil, fmt.Errorf("daemon.auth.cookie_key_file %s: %w", cfg.CookieKeyFile, err)
	}
	sealer, err := auth.NewSealer(keys, primary)
	if err != nil {
		return nil, fmt.Errorf("daemon.auth.cookie_key_file %s: %w", cfg.CookieKeyFile, err)
	}
	return authclient.NewLogin(authclient.LoginConfig{Client: client, ClientID: cfg.ClientID, ClientSecret: secret,
		PublicURL: cfg.PublicURL, Sealer: sealer, CookieName: daemonCookie, ServiceName: "Hestami backups", Logger: p.logger})
}

// authHTTPClient is the client the daemon calls the auth service with. With
// daemon.auth.connect_to, connections to the URL's host:port go to that address
// instead; requests keep the URL's host (the OpenID Connect issuer's), and https
// still checks the URL host's certificate.
func authHTTPClient(cfg config.DaemonAuth) (*http.Client, error) {
	hc := &http.Client{Timeout: 15 * time.Second}
	if cfg.ConnectTo == "" {
		return hc, nil
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("daemon.auth.url: %w", err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	from := net.JoinHostPort(u.Hostname(), port)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == from {
			addr = cfg.ConnectTo
		}
		return d.DialContext(ctx, network, addr)
	}
	hc.Transport = tr
	return hc, nil
}

// principals is backupapi's Authenticator over the daemon's sign-in: an access
// token of the auth service (Authorization: Bearer), or the status page's cookie.
type principals struct{ login *authclient.Login }

var _ backupapi.Authenticator = principals{}

// Authenticate implements backupapi.Authenticator.
func (a principals) Authenticate(r *http.Request) (*backupapi.Principal, error) {
	p, err := a.login.Authenticate(r)
	var mfa *authclient.MFARequiredError
	var refused *authclient.Error
	switch {
	case err == nil:
		return &backupapi.Principal{UserID: p.UserID, Email: p.Email, Name: p.Name, Type: p.Type, Permissions: p.Permissions, MFAAt: p.MFAAt}, nil
	case errors.As(err, &mfa):
		msg := mfa.Reason
		if msg == "" {
			msg = "Your sign-in owes the auth service a second factor: verify one there (location), then try again."
		}
		return nil, &backupapi.Refusal{Code: mfa.Code, Message: msg, Location: mfa.Location}
	case errors.Is(err, authclient.ErrUnauthenticated):
		return nil, fmt.Errorf("%w: %w", backupapi.ErrUnauthenticated, err)
	case errors.As(err, &refused) && refused.Status == http.StatusForbidden:
		return nil, &backupapi.Refusal{Code: "forbidden", Message: refused.Message}
	}
	return nil, err
}

// mountAPI mounts the status page's sign-in (/login, /callback, /logout) and the
// API (/api/) on mux, or, without daemon.auth, an API that answers 503. It returns
// the API (nil when off) and the sign-in the status page goes through (nil when off).
func (p *Program) mountAPI(ctx context.Context, mux *http.ServeMux, parts *daemonParts, now func() time.Time) (*backupapi.Server, *authclient.Login, error) {
	login, err := p.daemonLogin()
	if err != nil {
		return nil, nil, fmt.Errorf("backup daemon: %w", err)
	}
	if login == nil {
		p.logger.Warn("daemon.auth.url is not set: the API (/api/) and the status page are off; /healthz, /readyz and /metrics answer (see docs/daemon.md)")
		mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"error":{"code":"unavailable","message":"The backup daemon's API is off: it signs people in through the auth service, and daemon.auth.url is not configured (docs/daemon.md)."}}`)
		})
		return nil, nil, nil
	}
	login.Mount(mux)
	rest, err := p.newAPIRestorer(parts, now)
	if err != nil {
		return nil, nil, err
	}
	cfg := p.cfg.Daemon
	api, err := backupapi.New(backupapi.Options{
		Auth:           principals{login},
		Repo:           parts.repo,
		Jobs:           parts.d,
		Pruner:         parts.pruner,
		Restorer:       rest,
		AuthURL:        cfg.Auth.URL,
		StepUpReturnTo: strings.TrimRight(cfg.Auth.PublicURL, "/") + login.LoginURL("/"),
		Host:           parts.host,
		PID:            os.Getpid(),
		RequestTTL:     cfg.RestoreRequestTTL,
		ClientIP:       clientIP(cfg.TrustedProxies),
		Now:            now,
		Logger:         p.logger,
	})
	if err != nil {
		return nil, nil, err
	}
	mux.Handle("/api/", api.Handler())
	go func() {
		if err := api.Recover(ctx); err != nil {
			p.logger.Warn("could not check for restores interrupted by an earlier stop of this daemon", "err", err)
		}
	}()
	return api, login, nil
}

// clientIP returns the address a request comes from: the peer, or, when the peer
// is one of the trusted proxies, the last address in X-Forwarded-For that is not.
func clientIP(trusted []string) func(*http.Request) string {
	var nets []*net.IPNet
	for _, t := range trusted {
		if _, n, err := net.ParseCIDR(t); err == nil {
			nets = append(nets, n)
		} else if ip := net.ParseIP(t); ip != nil {
			bits := 8 * len(ip.To16())
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
		}
	}
	isTrusted := func(s string) bool {
		ip := net.ParseIP(strings.TrimSpace(s))
		return ip != nil && slices.ContainsFunc(nets, func(n *net.IPNet) bool { return n.Contains(ip) })
	}
	return func(r *http.Request) string {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if !isTrusted(host) {
			return host
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			h := strings.TrimSpace(hops[i])
			if h != "" && !isTrusted(h) {
				return h
			}
		}
		return host
	}
}

// apiRestorer carries out the API's restores (backupapi.Restorer).
//
// Into scratch: a physical backup is restored into daemon.restores_dir/<request>/data,
// checked (checksums, pg_verifybackup), configured to recover to the target with
// archiving off, started once on a free loopback port until recovery ends and it
// answers, and stopped, left for inspection; a logical one into a new database on
// the backed-up server. Into production: a physical backup is restored into
// daemon.production.restore_dir and configured to recover, but not started (the
// operator switches production to it, docs/runbooks/full-restore.md); a logical one
// replaces a database listed in daemon.production.databases, through a complete copy
// swapped in one transaction, the replaced database kept renamed.
type apiRestorer struct {
	repo, walRepo  *backup.Repository
	server         *postgres.Server
	sandbox        daemon.Sandbox
	checker        daemon.BackupChecker
	restoreCommand string
	scratch        string // daemon.restores_dir
	prod           config.DaemonProduction
	parallel       int
	timeout        time.Duration
	now            func() time.Time
	log            *slog.Logger
	// mu lets one production restore run at a time.
	mu sync.Mutex
}

var _ backupapi.Restorer = (*apiRestorer)(nil)

func (p *Program) newAPIRestorer(parts *daemonParts, now func() time.Time) (*apiRestorer, error) {
	repo, err := p.readRepository(false)
	if err != nil {
		return nil, err
	}
	walRepo, err := p.readRepository(true)
	if err != nil {
		return nil, err
	}
	cfg := p.cfg.Daemon
	if err := os.MkdirAll(cfg.Restores(), 0o700); err != nil {
		return nil, fmt.Errorf("daemon.restores_dir: %w", err)
	}
	return &apiRestorer{repo: repo, walRepo: walRepo, server: parts.server, sandbox: parts.sandbox, checker: parts.checker,
		restoreCommand: parts.restoreCommand, scratch: cfg.Restores(), prod: cfg.Production, parallel: p.cfg.Backup.Parallel,
		timeout: cfg.DrillTimeout, now: now, log: p.logger}, nil
}

func conflict(format string, args ...any) *auth.Error {
	return auth.Errorf(auth.CodeConflict, format, args...)
}

// conflictErr is err as a conflict, its message shown as a sentence.
func conflictErr(err error) *auth.Error {
	msg := err.Error()
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return conflict("%s", strings.ToUpper(msg[:1])+msg[1:]).WithCause(err)
}

// Check implements backupapi.Restorer.
func (a *apiRestorer) Check(ctx context.Context, req *backupapi.RestoreRequest, m *backup.Manifest) error {
	if err := requireIdentity(ctx, a.repo); err != nil { // restore.go
		return conflictErr(err)
	}
	if err := checkRestoreKeys(ctx, a.repo, a.walRepo, m, "its target"); err != nil { // keys.go
		return conflictErr(err)
	}
	if m.Type == backup.Physical {
		return a.checkPhysical(ctx, req, m)
	}
	target, release, err := a.server.LogicalTarget(ctx)
	if err != nil {
		return auth.Errorf(auth.CodeUnavailable, "The backed-up PostgreSQL server cannot be reached to restore into: %v.", err).WithCause(err)
	}
	defer release()
	if req.Target == backupapi.TargetScratch {
		if req.Into == "" {
			req.Into = scratchDatabase(req.Database, req.ID)
		}
		if slices.Contains(a.prod.Databases, req.Into) {
			return auth.Errorf(auth.CodeInvalid, "%q is a production database (daemon.production.databases): a scratch restore never writes into one.", req.Into)
		}
		exists, err := target.DatabaseExists(ctx, req.Into)
		if err != nil {
			return auth.Errorf(auth.CodeUnavailable, "Cannot tell whether database %q exists: %v.", req.Into, err).WithCause(err)
		}
		if exists {
			return conflict("Database %q exists already: a scratch restore goes into a new database; choose another name in \"into\", or drop that one first.", req.Into)
		}
		return nil
	}
	if !slices.Contains(a.prod.Databases, req.Database) {
		if len(a.prod.Databases) == 0 {
			return conflict("Logical restores into production are off on this daemon: daemon.production.databases lists no database. Restore into scratch instead.")
		}
		return conflict("Database %q is not a production database here (daemon.production.databases: %s): restore it into scratch instead.", req.Database, strings.Join(a.prod.Databases, ", "))
	}
	req.Into = req.Database
	if rep, ok := target.(backup.DatabaseReplacer); !ok {
		return conflict("This server connection cannot replace databases.")
	} else if exists, err := target.DatabaseExists(ctx, req.Into); err == nil && exists {
		if err := rep.CheckReplace(ctx, req.Into); err != nil {
			return conflictErr(fmt.Errorf("database %q cannot be replaced: %w", req.Into, err))
		}
	}
	return nil
}

func (a *apiRestorer) checkPhysical(ctx context.Context, req *backupapi.RestoreRequest, m *backup.Manifest) error {
	if err := backup.CheckBackupWAL(ctx, a.walRepo, m); err != nil {
		return conflictErr(err)
	}
	if req.Target == backupapi.TargetScratch {
		if r := req.Recovery; r != nil && r.Action != "" && r.Action != backup.ActionPromote {
			return auth.Errorf(auth.CodeInvalid, "A scratch restore is checked by starting it, which ends recovery at the target and opens the copy (promote): leave recovery.action out.")
		}
		req.Into = filepath.Join(a.scratch, req.ID)
		return nil
	}
	if a.prod.RestoreDir == "" {
		return conflict("Physical restores into production are off on this daemon: daemon.production.restore_dir is not set. Restore into scratch, or with hestami restore on the database host.")
	}
	req.Into = a.prod.RestoreDir
	return a.checkProductionDirs(m)
}

// productionDirs are the data directory and tablespace directories of a
// production restore: the tablespaces beside the data directory.
func (a *apiRestorer) productionDirs(m *backup.Manifest) (string, map[uint32]string) {
	dir := filepath.Clean(a.prod.RestoreDir)
	dirs := map[uint32]string{}
	for _, ts := range m.Tablespaces {
		dirs[ts.OID] = dir + "-tablespace-" + strconv.FormatUint(uint64(ts.OID), 10)
	}
	return dir, dirs
}

func (a *apiRestorer) checkProductionDirs(m *backup.Manifest) error {
	dir, dirs := a.productionDirs(m)
	for _, d := range append([]string{dir}, mapValues(dirs)...) {
		st, err := backup.CheckRestoreDir(d)
		if err != nil {
			return conflictErr(err)
		}
		if !st.Empty() {
			err := st.NotEmptyError("a production restore writes only into an empty or missing directory; switch to the restore it holds, or move it away, then ask again")
			return conflictErr(err)
		}
	}
	return nil
}

// mapValues lists a map's values, sorted.
func mapValues(m map[uint32]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// scratchDatabase is the default database a logical scratch restore of db goes
// into: hestami_restore_<db>_<the request's random part>, in the characters and
// length PostgreSQL takes unquoted.
func scratchDatabase(db, requestID string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, db)
	suffix := requestID[strings.LastIndexByte(requestID, '-')+1:]
	name := "hestami_restore_" + clean
	if max := 63 - len(suffix) - 1; len(name) > max {
		name = name[:max]
	}
	return name + "_" + suffix
}

// Restore implements backupapi.Restorer.
func (a *apiRestorer) Restore(ctx context.Context, req *backupapi.RestoreRequest, m *backup.Manifest) (*backupapi.Result, error) {
	target, err := req.Recovery.Target()
	if err != nil {
		return nil, err
	}
	switch {
	case m.Type == backup.Logical:
		return a.restoreLogical(ctx, req, m)
	case req.Target == backupapi.TargetScratch:
		return a.restoreScratch(ctx, req, m, target)
	}
	return a.restoreProduction(ctx, req, m, target)
}

// owner is who restored files belong to: the cluster user when running as root.
func clusterOwner() (*postgres.OSUser, *backup.Owner, error) {
	u, err := postgres.ClusterUser()
	if err != nil || u == nil {
		return nil, nil, err
	}
	return u, &backup.Owner{UID: int(u.UID), GID: int(u.GID)}, nil
}

// makeDir creates dir (0700, owned by owner) and lets u reach it.
func makeDir(dir string, u *postgres.OSUser, owner *backup.Owner) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if owner == nil {
		return nil
	}
	if err := postgres.MakeTraversable(dir); err != nil {
		return err
	}
	return os.Chown(dir, owner.UID, owner.GID)
}

// unpack restores m into dataDir and dirs (created), checks it with
// pg_verifybackup and configures recovery to target, returning the checks.
func (a *apiRestorer) unpack(ctx context.Context, m *backup.Manifest, dataDir string, dirs map[uint32]string, target backup.Target) ([]string, error) {
	u, owner, err := clusterOwner()
	if err != nil {
		return nil, err
	}
	for _, d := range append([]string{dataDir}, mapValues(dirs)...) {
		if err := makeDir(d, u, owner); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	r := &backup.Restorer{Repo: a.repo, Parallel: a.parallel, Logger: a.log, Owner: owner}
	if err := r.Unpack(ctx, m, dataDir, dirs); err != nil {
		return nil, err
	}
	checks := []string{fmt.Sprintf("restore: %d files, %s, unpacked and checksums verified", len(m.Files), backup.FormatBytes(m.Size))}
	switch err := a.checker.VerifyBackup(ctx, dataDir); {
	case errors.Is(err, daemon.ErrToolMissing):
		checks = append(checks, "pg_verifybackup: skipped, not installed")
	case err != nil:
		return checks, fmt.Errorf("pg_verifybackup: %w", err)
	default:
		checks = append(checks, "pg_verifybackup: ok")
	}
	rc := backup.RecoveryConfig{RestoreCommand: a.restoreCommand, Target: target, BackupID: m.ID, Time: a.now()}
	if err := backup.WriteRecoveryConfig(dataDir, rc, owner); err != nil {
		return checks, fmt.Errorf("configure recovery: %w", err)
	}
	return checks, nil
}

// restoreScratch restores a physical backup into a new directory, starts it once
// and leaves it, stopped, for inspection.
func (a *apiRestorer) restoreScratch(ctx context.Context, req *backupapi.RestoreRequest, m *backup.Manifest, target backup.Target) (res *backupapi.Result, err error) {
	base := req.Into
	if _, err := os.Stat(base); err == nil {
		return nil, fmt.Errorf("%s exists already: a scratch restore writes only into a directory of its own", base)
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(base); rerr != nil {
				a.log.Warn("could not remove a failed scratch restore; remove it by hand", "dir", base, "err", rerr)
			}
		}
	}()
	dataDir := filepath.Join(base, "data")
	dirs := map[uint32]string{}
	for _, ts := range m.Tablespaces {
		dirs[ts.OID] = filepath.Join(base, "tablespace-"+strconv.FormatUint(uint64(ts.OID), 10))
	}
	u, owner, err := clusterOwner()
	if err != nil {
		return nil, err
	}
	if err := makeDir(base, u, owner); err != nil {
		return nil, fmt.Errorf("create %s: %w", base, err)
	}
	if target.Kind != backup.TargetLatest {
		target.Action = backup.ActionPromote
	}
	began := time.Now()
	checks, err := a.unpack(ctx, m, dataDir, dirs, target)
	if err != nil {
		return nil, err
	}
	// A scratch copy must never archive into the repository, whenever it runs.
	if err := appendSetting(filepath.Join(dataDir, "postgresql.auto.conf"), "archive_mode = 'off'  # a scratch restore never archives (hestami backup daemon)"); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	srv, err := a.sandbox.Start(sctx, dataDir, m.PGVersion/10000)
	if err != nil {
		return nil, fmt.Errorf("the restored server did not come up: %w", err)
	}
	dbs, qerr := srv.Databases(sctx)
	took := time.Since(began)
	stopCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer stop()
	if err := srv.Stop(stopCtx); err != nil {
		return nil, fmt.Errorf("stop the restored server after its check: %w", err)
	}
	if qerr != nil {
		return nil, fmt.Errorf("the restored server does not answer: %w", qerr)
	}
	checks = append(checks, fmt.Sprintf("recovery: replayed the archived WAL to %s, opened and answered in %s (databases: %s)",
		target, took.Round(100*time.Millisecond), strings.Join(dbs, ", ")))
	return &backupapi.Result{Location: dataDir, Checks: checks, Next: fmt.Sprintf(
		"A scratch copy of backup %s at %s, opened (promoted) and stopped again; it never archives. To look at it, start it as the PostgreSQL user "+
			"on a free port: pg_ctl -D %s -o '-p 5499' start. Remove %s when done.", m.ID, target, dataDir, base)}, nil
}

// appendSetting appends a line to a configuration file.
func appendSetting(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("configure %s: %w", path, err)
	}
	if _, err := fmt.Fprintln(f, line); err != nil {
		f.Close()
		return fmt.Errorf("configure %s: %w", path, err)
	}
	return f.Close()
}

// restoreProduction prepares a physical restore in daemon.production.restore_dir:
// restored, checked and configured to recover, not started.
func (a *apiRestorer) restoreProduction(ctx context.Context, req *backupapi.RestoreRequest, m *backup.Manifest, target backup.Target) (res *backupapi.Result, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.checkProductionDirs(m); err != nil { // again: time passed since the request
		return nil, err
	}
	dir, dirs := a.productionDirs(m)
	defer func() {
		if err == nil {
			return
		}
		// The directories were empty or missing: leave them so again.
		for _, d := range append([]string{dir}, mapValues(dirs)...) {
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				if rerr := os.RemoveAll(filepath.Join(d, e.Name())); rerr != nil {
					a.log.Warn("could not remove a failed production restore; empty the directory by hand", "dir", d, "err", rerr)
				}
			}
		}
	}()
	checks, err := a.unpack(ctx, m, dir, dirs, target)
	if err != nil {
		return nil, err
	}
	var ts string
	for _, oid := range slices.Sorted(maps.Keys(dirs)) {
		ts += fmt.Sprintf(" Tablespace %d is in %s.", oid, dirs[oid])
	}
	return &backupapi.Result{Location: dir, Checks: checks, Next: fmt.Sprintf(
		"Prepared, not started: nothing in production changed yet. %s holds backup %s, configured to replay the archived WAL to %s and then %s.%s "+
			"To switch production to it (docs/runbooks/full-restore.md): stop the production server, move its data directory aside "+
			"(or point the service at %s), start the server on this directory as the PostgreSQL user, and follow recovery in its log.",
		dir, m.ID, target, target.EffectiveAction(), ts, dir)}, nil
}

// restoreLogical restores one database of a logical backup into a new database
// (scratch), or in place of a production database (kept renamed).
func (a *apiRestorer) restoreLogical(ctx context.Context, req *backupapi.RestoreRequest, m *backup.Manifest) (*backupapi.Result, error) {
	target, release, err := a.server.LogicalTarget(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	production := req.Target == backupapi.TargetProduction
	if production {
		a.mu.Lock()
		defer a.mu.Unlock()
	}
	lr := &backup.LogicalRestore{Repo: a.repo, Target: target, Logger: a.log, Now: a.now}
	res, err := lr.Run(ctx, m, backup.LogicalRestoreOptions{Database: req.Database, Into: req.Into, Jobs: 1, Replace: production, KeepReplaced: production})
	if err != nil {
		return nil, err
	}
	checks := []string{fmt.Sprintf("restore: database %s of backup %s, checksums verified before it reached the server, restored whole into %s", req.Database, m.ID, res.Into)}
	next := fmt.Sprintf("Database %s holds database %s of backup %s (taken %s). Drop it when done: DROP DATABASE %s;",
		res.Into, req.Database, m.ID, m.StartTime.UTC().Format(time.RFC3339), res.Into)
	if production {
		next = fmt.Sprintf("Database %s now holds backup %s (taken %s): it took the place of the old one in one transaction, after its sessions were ended.",
			res.Into, m.ID, m.StartTime.UTC().Format(time.RFC3339))
		if res.Kept != "" {
			next += fmt.Sprintf(" The replaced database is kept as %s, refusing connections: drop it once the restore is checked (DROP DATABASE %s;).", res.Kept, res.Kept)
			checks = append(checks, "replaced: the old database kept as "+res.Kept)
		}
	}
	return &backupapi.Result{Location: res.Into, Checks: checks, Next: next}, nil
}
