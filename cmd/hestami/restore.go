package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/progress"
)

// restoreOptions are the flags of restore (physical).
type restoreOptions struct {
	To              string
	Backup          string
	TargetTime      string
	TargetLSN       string
	TargetXID       string
	TargetName      string
	TargetAction    string
	TargetExclusive bool
	TablespaceMap   []string
	Verify          bool
	VerifyTimeout   time.Duration
	Force           bool
	HestamiPath     string
}

func (p *Program) restoreCommand() *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore --to DIR [--backup ID|latest] [--target-time T | --target-lsn L | --target-xid X | --target-name N]",
		Short: "Restore a physical backup into a new data directory, to any point in time",
		Long: `Restores a physical backup into DIR and configures PostgreSQL to replay the archived
WAL up to a recovery target: a time, an LSN, a transaction (inclusive unless
--target-exclusive), a restore point made with pg_create_restore_point(), or, without
a target, to the end of the archived WAL (following the latest timeline).

Without --backup the newest complete physical backup that ends before the target is
used. The archives are unpacked in parallel, each object's checksum verified; a
tablespace goes back to its original location unless --tablespace-map OID=DIR moves it.
The recovery settings (restore_command = hestami wal fetch, recovery_target_*) are
appended to postgresql.auto.conf, where earlier restores' settings are commented out,
and recovery.signal is created. Archive settings stay as they were in the backup.

DIR must be empty or missing. --force deletes DIR's contents first, but never when DIR
holds the postmaster.pid of a running process; tablespace directories are never
cleared, they must be empty or missing.

--verify then runs a recovery drill: it starts the restored server on a free local
port with archive_mode=off (a drill never archives into the repository), waits until
the target is reached, runs a query, reports the time it took (the RTO) and stops the
server again.`,
		Example: `  hestami restore --to /var/lib/postgresql/15/restored
  hestami restore --to /srv/pitr --target-time "2024-05-01 09:59:00+00" --target-action promote
  hestami restore --to /srv/pitr --target-name before_migration --verify
  hestami restore --to /srv/pitr --backup physical-20240501T020000Z --tablespace-map 16385=/srv/pitr-ts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := p.restorePhysical(cmd, o)
			if repo, rerr := p.repository(false); rerr == nil {
				p.audit(cmd.Context(), repo, "restore", o.To, err, map[string]string{"backup": o.Backup,
					"target": strings.TrimSpace(o.TargetTime + o.TargetLSN + o.TargetXID + o.TargetName), "verify": fmt.Sprint(o.Verify)})
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.To, "to", "", "data directory to restore into (empty or missing; required)")
	f.StringVar(&o.Backup, "backup", "", "backup id, or latest (default: the newest that ends before the target)")
	f.StringVar(&o.TargetTime, "target-time", "", `recover to this time, e.g. "2024-05-01 10:00:00+00" or 2024-05-01T10:00:00Z (no zone: local time)`)
	f.StringVar(&o.TargetLSN, "target-lsn", "", "recover to this WAL location, e.g. 0/3000060")
	f.StringVar(&o.TargetXID, "target-xid", "", "recover to the commit of this transaction id")
	f.StringVar(&o.TargetName, "target-name", "", "recover to this restore point (pg_create_restore_point)")
	f.StringVar(&o.TargetAction, "target-action", "", "at the target: pause (default: stay read-only to check), promote, or shutdown")
	f.BoolVar(&o.TargetExclusive, "target-exclusive", false, "stop just before the target instead of just after it")
	f.StringArrayVar(&o.TablespaceMap, "tablespace-map", nil, "restore tablespace OID into DIR instead of its original location (OID=DIR, repeatable)")
	f.BoolVar(&o.Verify, "verify", false, "start the restored server once, check it reaches the target and answers, report the RTO")
	f.DurationVar(&o.VerifyTimeout, "verify-timeout", time.Hour, "how long --verify waits for recovery to reach the target")
	f.BoolVar(&o.Force, "force", false, "delete DIR's contents first (refused while a server runs on DIR)")
	f.StringVar(&o.HestamiPath, "hestami-path", "", "hestami binary the restored server runs as restore_command (default: this one)")

	// `restore logical` (a database from a logical backup) is defined in
	// restore_logical.go, by the logical backup work.
	cmd.AddCommand(p.restoreLogicalCommand())
	return cmd
}

// restorePhysical restores a physical backup (restore --to DIR).
func (p *Program) restorePhysical(cmd *cobra.Command, o restoreOptions) error {
	ctx := cmd.Context()
	if o.To == "" {
		return usageError{errors.New("--to DIR is required: the (new, empty) data directory to restore into")}
	}
	target, err := parseTarget(o)
	if err != nil {
		return usageError{err}
	}
	remap, err := parseTablespaceMap(o.TablespaceMap)
	if err != nil {
		return usageError{err}
	}
	dir, err := filepath.Abs(o.To)
	if err != nil {
		return err
	}
	repo, err := p.readRepository(false)
	if err != nil {
		return err
	}
	walRepo, err := p.readRepository(true)
	if err != nil {
		return err
	}

	m, err := p.chooseRestoreBackup(ctx, repo, o.Backup, target)
	if err != nil {
		return err
	}
	if err := backup.CheckBackupWAL(ctx, walRepo, m); err != nil {
		return err
	}
	if err := checkRestoreKeys(ctx, repo, walRepo, m, dir); err != nil { // keys.go
		return err
	}
	dirs, err := backup.TablespaceDirs(m, remap)
	if err != nil {
		return usageError{err}
	}
	u, err := postgres.ClusterUser()
	if err != nil {
		return err
	}
	var owner *backup.Owner
	if u != nil {
		owner = &backup.Owner{UID: int(u.UID), GID: int(u.GID)}
	}

	for oid, d := range dirs {
		if d == dir || strings.HasPrefix(d+"/", dir+"/") {
			return usageError{fmt.Errorf("tablespace %d would be restored to %s, inside the data directory: move it with --tablespace-map %d=DIR", oid, d, oid)}
		}
		if _, err := backup.PrepareDir(d, false); err != nil {
			return fmt.Errorf("tablespace %d: %w (tablespace directories are never cleared: move it with --tablespace-map %d=DIR)", oid, err, oid)
		}
	}
	removed, err := backup.PrepareDir(dir, o.Force)
	if err != nil {
		return err
	}
	if removed > 0 {
		p.logger.Warn("deleted the contents of the target directory (--force)", "dir", dir, "entries", removed)
	}
	p.warnUnreachable(dir, u)

	p.logger.Info("restoring", "backup", m.ID, "to", dir, "target", target.String())
	began := time.Now()
	r := &backup.Restorer{Repo: repo, Parallel: p.cfg.Backup.Parallel, Progress: p.progress(), Logger: p.logger, Owner: owner}
	if err := r.Unpack(ctx, m, dir, dirs); err != nil {
		return err
	}
	exe := o.HestamiPath
	if exe == "" {
		exe = executable()
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return err
	}
	cfgPath := p.effectiveConfigPath()
	rc := backup.RecoveryConfig{RestoreCommand: backup.RestoreCommand(exe, cfgPath, p.globalFlags()...), Target: target, BackupID: m.ID, Time: time.Now()}
	if err := backup.WriteRecoveryConfig(dir, rc, owner); err != nil {
		return fmt.Errorf("restore backup %s: %w; %s is incomplete: remove it before restoring again", m.ID, err, dir)
	}
	unpacked := time.Since(began)
	p.printRestored(m, dir, dirs, target, rc, cfgPath, unpacked)

	if o.Verify {
		return p.verifyRestore(ctx, dir, m, target, u, o.VerifyTimeout, unpacked)
	}
	return nil
}

// chooseRestoreBackup returns the backup to restore: the one asked for, checked
// against the target, or the newest complete physical backup before the target.
func (p *Program) chooseRestoreBackup(ctx context.Context, repo *backup.Repository, id string, t backup.Target) (*backup.Manifest, error) {
	if id != "" && id != "latest" {
		m, err := repo.Manifest(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := backup.CheckPrecedes(m, t); err != nil {
			return nil, err
		}
		return m, nil
	}
	entries, err := repo.Backups(ctx)
	if err != nil {
		return nil, err
	}
	if err := keyProblem(entries, backup.Physical); err != nil {
		return nil, err
	}
	m, err := backup.ChooseBackup(backup.Complete(entries, backup.Physical), t)
	if err != nil {
		return nil, fmt.Errorf("%w (repository %s)", err, repo.Storage)
	}
	return m, nil
}

// parseTarget builds the recovery target from the flags.
func parseTarget(o restoreOptions) (backup.Target, error) {
	t := backup.Target{Action: o.TargetAction, Exclusive: o.TargetExclusive}
	n := 0
	if o.TargetTime != "" {
		n++
		tm, err := backup.ParseTargetTime(o.TargetTime, time.Local)
		if err != nil {
			return t, err
		}
		t.Kind, t.Time = backup.TargetTime, tm
	}
	if o.TargetLSN != "" {
		n++
		lsn, err := backup.ParseLSN(o.TargetLSN)
		if err != nil {
			return t, fmt.Errorf("--target-lsn: %w", err)
		}
		t.Kind, t.LSN = backup.TargetLSN, lsn
	}
	if o.TargetXID != "" {
		n++
		xid, err := strconv.ParseUint(o.TargetXID, 10, 64)
		if err != nil {
			return t, fmt.Errorf("--target-xid %q: not a transaction id (a number, e.g. from pg_current_xact_id())", o.TargetXID)
		}
		t.Kind, t.XID = backup.TargetXID, xid
	}
	if o.TargetName != "" {
		n++
		t.Kind, t.Name = backup.TargetName, o.TargetName
	}
	if n > 1 {
		return t, errors.New("give at most one of --target-time, --target-lsn, --target-xid and --target-name")
	}
	if t.Kind == backup.TargetLatest && o.TargetAction != "" {
		return t, errors.New("--target-action needs a target: without one, recovery replays all archived WAL and the server promotes")
	}
	return t, t.Validate()
}

// parseTablespaceMap parses --tablespace-map OID=DIR values.
func parseTablespaceMap(vals []string) (map[uint32]string, error) {
	out := map[uint32]string{}
	for _, v := range vals {
		oidStr, dir, ok := strings.Cut(v, "=")
		oid, err := strconv.ParseUint(oidStr, 10, 32)
		if !ok || err != nil || dir == "" || oid == 0 {
			return nil, fmt.Errorf("--tablespace-map %q: want OID=DIR, e.g. 16385=/srv/restored-ts (OIDs: hestami backup show ID)", v)
		}
		if _, dup := out[uint32(oid)]; dup {
			return nil, fmt.Errorf("--tablespace-map: tablespace %d given twice", oid)
		}
		out[uint32(oid)] = dir
	}
	return out, nil
}

// effectiveConfigPath returns the absolute path of the config file in use, if any.
func (p *Program) effectiveConfigPath() string {
	path := p.configPath
	if path == "" {
		path, _ = p.Getenv("HESTAMI_CONFIG")
	}
	if path == "" {
		return ""
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// warnUnreachable warns when the cluster user cannot reach dir through its parents.
func (p *Program) warnUnreachable(dir string, u *postgres.OSUser) {
	if u == nil {
		return
	}
	for d := filepath.Dir(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return
		}
		if fi.Mode().Perm()&0o001 == 0 {
			p.logger.Warn("the cluster user may not reach the restored directory: a parent directory is not searchable by others",
				"user", u.Name, "parent", d, "mode", fi.Mode().Perm().String(), "fix", "chmod o+x "+d)
			return
		}
	}
}

// printRestored tells the operator what was restored and what to do next.
func (p *Program) printRestored(m *backup.Manifest, dir string, dirs map[uint32]string, t backup.Target, rc backup.RecoveryConfig, cfgPath string, took time.Duration) {
	w := p.Stdout
	fmt.Fprintf(w, "Restored backup %s into %s in %s (%s)\n", m.ID, dir, took.Round(10*time.Millisecond), progress.Bytes(m.Size))
	fmt.Fprintf(w, "  backup:    PostgreSQL %s, timeline %d, consistent at %s (%s)\n",
		pgVersion(m.PGVersion), m.Timeline, m.StopLSN, m.StopTime.UTC().Format(time.RFC3339))
	for oid, d := range dirs {
		fmt.Fprintf(w, "  tablespace %d: %s\n", oid, d)
	}
	action := t.EffectiveAction()
	fmt.Fprintf(w, "  recovery:  replays WAL to %s, then %s (recovery.signal, postgresql.auto.conf)\n", t, thenVerb(action))
	fmt.Fprintf(w, "  restore_command = %s\n", backup.QuoteConfValue(rc.RestoreCommand))
	if cfgPath != "" {
		fmt.Fprintf(w, "  The server reaches the repository through %s: the PostgreSQL user must be able to read it.\n", cfgPath)
		if f := p.cfg.Encryption.IdentityFile; f != "" {
			fmt.Fprintf(w, "  restore_command decrypts WAL with the identity in %s: the PostgreSQL user must be able to read that too.\n", f)
		}
	} else {
		fmt.Fprintln(w, "  No config file was given: the server's environment must carry HESTAMI_STORAGE_URL (and the other HESTAMI_*")
		fmt.Fprintln(w, "  settings you use) for restore_command, or edit restore_command to add --config FILE.")
	}
	fmt.Fprintln(w, "Next:")
	fmt.Fprintf(w, "  1. Check port and listen_addresses in %s/postgresql*.conf if the original server runs on this host.\n", dir)
	fmt.Fprintf(w, "  2. Start it as the PostgreSQL user: pg_ctl -D %s -l %s/restore.log start\n", dir, dir)
	fmt.Fprintln(w, "  3. Follow recovery in the log, or: psql -c \"SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp()\"")
	switch action {
	case backup.ActionPause:
		fmt.Fprintln(w, "  4. At the target it pauses, read-only: check the data, then promote with SELECT pg_wal_replay_resume();")
		fmt.Fprintln(w, "     (or restore again with another target: nothing has diverged yet)")
	case backup.ActionShutdown:
		fmt.Fprintln(w, "  4. At the target the server shuts down; remove recovery.signal and the recovery_target settings to open it.")
	default:
		fmt.Fprintln(w, "  4. At the target it promotes to a new timeline and opens for writes; with archiving on, its WAL joins the repository.")
	}
}

// verifyRestore runs a recovery drill on the restored directory.
func (p *Program) verifyRestore(ctx context.Context, dir string, m *backup.Manifest, t backup.Target, u *postgres.OSUser, timeout time.Duration, unpacked time.Duration) error {
	bin, err := p.binariesFor(m.PGVersion / 10000)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	tmp, err := os.MkdirTemp("", "hestami-verify-")
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer os.RemoveAll(tmp)
	port, err := postgres.FreePort()
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	c := &postgres.Cluster{
		Bin: bin, DataDir: dir, Port: port, SocketDir: tmp, LogFile: filepath.Join(tmp, "postgres.log"),
		User: u, Logger: p.logger,
	}
	logTail := func() string {
		b, err := os.ReadFile(c.LogFile)
		if err != nil {
			return fmt.Sprintf("(no server log: %v)", err)
		}
		return postgres.LastLines(b, 30)
	}
	action := t.EffectiveAction()
	vctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	began := time.Now()
	fmt.Fprintf(p.Stdout, "Verifying: starting the restored server on 127.0.0.1:%d (archive_mode=off), waiting for %s...\n", port, t)
	err = c.Start(vctx, map[string]string{"archive_mode": "off", "hot_standby": "on"})
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := c.Stop(stopCtx); err != nil {
			p.logger.Warn("stop the verification server", "err", err)
		}
	}()
	cleanExit := func() bool {
		select {
		case <-c.Exited():
			return c.ExitErr() == nil
		default:
			return false
		}
	}
	if err != nil && !(errors.Is(err, postgres.ErrExited) && action == backup.ActionShutdown && cleanExit()) {
		return fmt.Errorf("verify: the restored server did not come up: %w", err)
	}
	var answered int64
	if action == backup.ActionShutdown {
		select {
		case <-c.Exited():
		case <-vctx.Done():
			return fmt.Errorf("verify: the server did not reach %s and shut down within %s; last lines of its log:\n%s", t, timeout, logTail())
		}
		if !cleanExit() {
			return fmt.Errorf("verify: recovery failed (%v); last lines of the server log:\n%s", c.ExitErr(), logTail())
		}
	} else {
		connStr := p.drillConnString(port)
		if err := postgres.WaitRecovered(vctx, c, connStr, action); err != nil {
			return fmt.Errorf("verify: %w; last lines of the server log:\n%s", err, logTail())
		}
		conn, err := postgres.Connect(vctx, connStr)
		if err != nil {
			return fmt.Errorf("verify: the restored server reached the target but does not answer: %w", err)
		}
		err = conn.QueryRow(vctx, "SELECT count(*) FROM pg_database").Scan(&answered)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("verify: the restored server reached the target but a query failed: %w; last lines of its log:\n%s", err, logTail())
		}
	}
	recovered := time.Since(began)
	rto := unpacked + recovered
	w := p.Stdout
	switch action {
	case backup.ActionShutdown:
		fmt.Fprintf(w, "Verified: recovery reached %s and the server shut down cleanly in %.1f s.\n", t, recovered.Seconds())
	default:
		fmt.Fprintf(w, "Verified: recovery reached %s (%s) and the server answered a query (%d databases) in %.1f s.\n", t, verbOf(action), answered, recovered.Seconds())
	}
	fmt.Fprintf(w, "RTO: %.1f s (restore %.1f s + recovery %.1f s)\n", rto.Seconds(), unpacked.Seconds(), recovered.Seconds())
	if action == backup.ActionPromote {
		if n, err := backup.MarkHistoryForArchive(dir, ownerOf(u)); err != nil {
			p.logger.Warn("mark the new timeline's history file for archiving", "err", err)
		} else if n > 0 {
			fmt.Fprintf(w, "The drill promoted %s to a new timeline; its history file will be archived when the server next starts with archiving on.\n", dir)
		}
	}
	return nil
}

func verbOf(action string) string {
	switch action {
	case backup.ActionPause:
		return "paused"
	case backup.ActionPromote:
		return "promoted"
	}
	return action
}

func thenVerb(action string) string {
	switch action {
	case backup.ActionPause:
		return "pauses"
	case backup.ActionPromote:
		return "promotes"
	}
	return "shuts down"
}

func ownerOf(u *postgres.OSUser) *backup.Owner {
	if u == nil {
		return nil
	}
	return &backup.Owner{UID: int(u.UID), GID: int(u.GID)}
}

// drillConnString connects to the verification server with the configured user.
func (p *Program) drillConnString(port int) string {
	user := p.cfg.Postgres.User
	if user == "" {
		user = "postgres"
	}
	s := fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres sslmode=disable user='%s'", port, strings.ReplaceAll(user, "'", `\'`))
	if p.cfg.Postgres.Password != "" {
		s += " password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(p.cfg.Postgres.Password) + "'"
	}
	return s
}

// binariesFor returns PostgreSQL server programs of the given major version.
func (p *Program) binariesFor(major int) (postgres.Binaries, error) {
	return postgres.BinariesFor(p.cfg.Postgres.BinDir, major)
}
