package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/user"
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
	MoveAside       bool
	Force           bool // no longer supported: refused, pointing at MoveAside
	HestamiPath     string
	// audit records the restore (nil: not recorded, for a restore that is part of
	// another audited action, such as backup verify --restore-test).
	audit *restoreAudit
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

DIR must be empty or missing: a restore never writes over existing files. With
--move-aside a non-empty DIR (a stopped server's data directory, say) is renamed to
DIR.replaced-<UTC time> and DIR created again, empty: nothing is deleted, and the old
files stay whole beside it until you remove them. It is refused while a server runs
on DIR (its postmaster.pid names a live process), and when DIR is a mount point (it
cannot be renamed: empty it yourself, or restore into a new directory). Tablespace
directories are never moved or cleared: they must be empty or missing.

Every restore is recorded in the repository's audit log (hestami audit list) with
the OS user, the host, the backup and DIR: when it is refused, when it starts writing
and when it ends. A restore that cannot be recorded is not started. A repository
that is encrypted needs the decryption identity (HESTAMI_ENCRYPTION_IDENTITY_FILE):
without it the restore stops before it reads or writes anything.

--verify then runs a recovery drill: it starts the restored server on a free local
port with archive_mode=off (a drill never archives into the repository), waits until
the target is reached, runs a query, reports the time it took (the RTO) and stops the
server again.`,
		Example: `  hestami restore --to /var/lib/postgresql/15/restored
  hestami restore --to /srv/pitr --target-time "2024-05-01 09:59:00+00" --target-action promote
  hestami restore --to /srv/pitr --target-name before_migration --verify
  hestami restore --to /srv/pitr --backup physical-20240501T020000Z --tablespace-map 16385=/srv/pitr-ts
  hestami restore --to /var/lib/postgresql/16/main --move-aside   # over a stopped, broken server`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			to := o.To
			if abs, err := filepath.Abs(o.To); err == nil && o.To != "" {
				to = abs
			}
			o.audit = p.newRestoreAudit("restore", to, map[string]string{
				"requested": o.Backup, "recovery_target": strings.TrimSpace(o.TargetTime + o.TargetLSN + o.TargetXID + o.TargetName),
				"verify": fmt.Sprint(o.Verify), "move_aside": fmt.Sprint(o.MoveAside)})
			err := p.restorePhysical(cmd, o)
			o.audit.finish(cmd.Context(), err)
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
	f.BoolVar(&o.MoveAside, "move-aside", false, "if DIR is not empty, rename it to DIR.replaced-<time> first (nothing is deleted; refused while a server runs on DIR)")
	f.BoolVar(&o.Force, "force", false, "no longer supported: see --move-aside")
	_ = f.MarkHidden("force")
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
	if o.Force {
		return usageError{errors.New("--force no longer deletes the contents of --to DIR: use --move-aside, which renames a non-empty DIR to " +
			"DIR.replaced-<time> and deletes nothing, or empty DIR yourself")}
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
	if err := requireIdentity(ctx, repo); err != nil {
		return err
	}

	m, err := p.chooseRestoreBackup(ctx, repo, o.Backup, target)
	if err != nil {
		return err
	}
	o.audit.set("backup", m.ID)
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

	// Check every directory before changing any.
	for oid, d := range dirs {
		if d == dir || strings.HasPrefix(d+"/", dir+"/") {
			return usageError{fmt.Errorf("tablespace %d would be restored to %s, inside the data directory: move it with --tablespace-map %d=DIR", oid, d, oid)}
		}
		st, err := backup.CheckRestoreDir(d)
		if err != nil {
			return fmt.Errorf("tablespace %d: %w", oid, err)
		}
		if !st.Empty() {
			return fmt.Errorf("tablespace %d: %w", oid, st.NotEmptyError(fmt.Sprintf(
				"tablespace directories are never moved or cleared: restore the tablespace elsewhere with --tablespace-map %d=DIR, or empty it yourself", oid)))
		}
	}
	st, err := backup.CheckRestoreDir(dir)
	if err != nil {
		return err
	}
	if !st.Empty() {
		if !o.MoveAside {
			return st.NotEmptyError(fmt.Sprintf("restore into an empty or new directory, or add --move-aside to rename it to %s.replaced-<time> first (nothing is deleted)", dir))
		}
		if st.MountPoint {
			return fmt.Errorf("%w: %s holds %s and cannot be moved aside (renaming a mount point is not possible): "+
				"move or remove its contents yourself, or restore into a new directory", backup.ErrMountPoint, dir, st.Describe())
		}
	}

	// Everything is checked: from here on the restore writes.
	if err := o.audit.start(ctx); err != nil {
		return err
	}
	for oid, d := range dirs {
		if _, err := backup.PrepareDir(d, false); err != nil {
			return fmt.Errorf("tablespace %d: %w", oid, err)
		}
	}
	if st.Empty() {
		if _, err := backup.PrepareDir(dir, false); err != nil {
			return err
		}
	} else {
		aside, err := backup.MoveAside(dir, time.Now())
		if aside != "" {
			o.audit.set("moved_aside", aside)
		}
		if err != nil {
			return err
		}
		p.logger.Warn("moved the target directory's contents aside (--move-aside)", "dir", dir, "moved_to", aside, "held", st.Describe())
		fmt.Fprintf(p.Stdout, "Moved %s (%s) aside to %s; remove it once the restore is checked.\n", dir, st.Describe(), aside)
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

// restoreAudit records one command-line restore in the repository's audit log, with
// the OS user and the host: refused (a safeguard stopped it before it wrote
// anything), started (it is about to write), then ok or failed. The start is
// recorded before anything is written, and a restore whose start cannot be recorded
// does not run. A nil *restoreAudit records nothing.
type restoreAudit struct {
	p       *Program
	action  string // restore, restore.logical
	target  string // the data directory, or the database
	details map[string]string
	started bool
}

// errNotRecorded stops a restore whose start could not be written to the audit log.
var errNotRecorded = errors.New("the restore could not be recorded in the audit log")

func (p *Program) newRestoreAudit(action, target string, details map[string]string) *restoreAudit {
	a := &restoreAudit{p: p, action: action, target: target, details: map[string]string{}}
	for k, v := range details {
		if v != "" {
			a.details[k] = v
		}
	}
	a.details["uid"] = strconv.Itoa(os.Getuid())
	if su, ok := p.Getenv("SUDO_USER"); ok && su != "" {
		a.details["sudo_user"] = su
	}
	return a
}

// set adds a detail to the entries still to be written.
func (a *restoreAudit) set(key, value string) {
	if a != nil && value != "" {
		a.details[key] = value
	}
}

// start records that the restore begins to write; an error means it must not.
func (a *restoreAudit) start(ctx context.Context) error {
	if a == nil {
		return nil
	}
	if err := a.write(ctx, "started", nil); err != nil {
		return fmt.Errorf("%w: %v; every restore is recorded before it writes anything, so nothing was restored: "+
			"give this host write access to the repository (its audit/ objects), or, if that storage is lost, point "+
			"HESTAMI_STORAGE_URL at the surviving copy", errNotRecorded, err)
	}
	a.started = true
	return nil
}

// finish records how the restore ended (err nil: ok).
func (a *restoreAudit) finish(ctx context.Context, err error) {
	if a == nil {
		return
	}
	outcome := "ok"
	switch {
	case err == nil:
	case a.started:
		outcome = "failed"
	case restoreRefused(err):
		outcome = "refused"
	default:
		outcome = "failed"
	}
	if werr := a.write(ctx, outcome, err); werr != nil && !errors.Is(err, errNotRecorded) {
		a.p.logger.Error("could not write the audit log", "action", a.action, "target", a.target, "outcome", outcome, "err", werr)
		fmt.Fprintf(a.p.Stderr, "WARNING: the outcome of this restore (%s) could not be recorded in the audit log: %v\n", outcome, werr)
	}
}

func (a *restoreAudit) write(ctx context.Context, outcome string, actionErr error) error {
	repo, err := a.p.repository(false)
	if err != nil {
		return err
	}
	details := maps.Clone(a.details)
	if actionErr != nil {
		details["error"] = actionErr.Error()
	}
	if !a.started && outcome != "started" {
		details["changed"] = "nothing"
	}
	host, _ := os.Hostname()
	actor := "uid " + strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		actor = u.Username
	}
	_, err = repo.Audit(context.WithoutCancel(ctx), backup.AuditEntry{
		Action: a.action, Actor: actor, Host: host, Target: a.target, Outcome: outcome, Details: details})
	return err
}

// restoreRefused reports whether err is a safeguard's refusal rather than a failure.
func restoreRefused(err error) bool {
	var ue usageError
	return errors.As(err, &ue) || errors.Is(err, errNotRecorded) ||
		errors.Is(err, backup.ErrDirNotEmpty) || errors.Is(err, backup.ErrServerRunning) || errors.Is(err, backup.ErrMountPoint) ||
		errors.Is(err, backup.ErrDatabaseExists) || errors.Is(err, backup.ErrWrongKey) || errors.Is(err, backup.ErrUntrusted)
}

// requireIdentity stops a restore from an encrypted repository before it reads a
// backup or writes anything when no decryption identity is configured, or the
// configured one cannot be loaded.
func requireIdentity(ctx context.Context, repo *backup.Repository) error {
	mk, err := repo.Marker(ctx)
	if err != nil {
		return err
	}
	if !mk.Encrypted {
		return nil
	}
	if repo.Decrypter != nil {
		if _, err := repo.Decrypter.Recipients(); err != nil {
			return fmt.Errorf("%w: repository %s is encrypted and the decryption identity could not be loaded: %v; "+
				"fix HESTAMI_ENCRYPTION_IDENTITY_FILE (encryption.identity_file); nothing was restored", backup.ErrWrongKey, repo.Storage, err)
		}
		return nil
	}
	// Name the recipients the operator needs an identity for: any stored object's
	// header lists them.
	if objs, err := repo.Storage.List(ctx, "backups/"); err == nil && len(objs) > 0 {
		if kerr := repo.CheckDecryptable(ctx, objs[len(objs)-1].Key); errors.Is(kerr, backup.ErrWrongKey) {
			return fmt.Errorf("repository %s is encrypted, and restoring needs its decryption identity; nothing was restored: %w", repo.Storage, kerr)
		}
	}
	return fmt.Errorf("%w: repository %s is encrypted and no identity is configured: set HESTAMI_ENCRYPTION_IDENTITY_FILE (encryption.identity_file) "+
		"to the age identity file of one of its recipients; nothing was restored", backup.ErrWrongKey, repo.Storage)
}
