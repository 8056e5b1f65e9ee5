package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/progress"
)

// restoreLogicalOptions are the flags of restore logical.
type restoreLogicalOptions struct {
	Backup       string
	Database     string
	Into         string
	Globals      bool
	Jobs         int
	Replace      bool
	KeepReplaced bool
	Force        bool // no longer supported: refused, pointing at Replace
	TempDir      string
	// audit records the restore (nil: not recorded, for a restore that is part of
	// another audited action, such as backup verify --restore-test).
	audit *restoreAudit
}

func (p *Program) restoreLogicalCommand() *cobra.Command {
	var o restoreLogicalOptions
	cmd := &cobra.Command{
		Use:   "logical --database NAME --into NEWNAME [--backup ID|latest] [--replace]",
		Short: "Restore one database of a logical backup into a new database",
		Long: `Restores database NAME of a logical backup into a new database NEWNAME on the
configured server, created from template0 and owned by the connecting user. Objects
keep their owners and privileges: with --globals the backup's roles and tablespaces
are created first. Database-level settings (owner, ALTER DATABASE ... SET, database
privileges) belong to the old name and are not restored.

The stored archive is verified completely before anything on the server changes, so
a corrupt object fails the restore with nothing touched. With --jobs N > 1 it is
decompressed, verified, into a temporary file (its size is checked against the free
space of --temp-dir, and the file removed at the end) for pg_restore -j N; with
--jobs 1 it is read once to verify it and then streamed into pg_restore, with no
local disk used. pg_restore stops at the first error, whose message is shown; a
database the restore created is then dropped again, so NEWNAME either holds the
whole backup or does not exist.

NEWNAME must not exist: a restore never writes into an existing database. With
--replace an existing NEWNAME is replaced: the backup is restored into a new database
(NEWNAME_restoring_<time>), and only once that holds the whole backup, new
connections to NEWNAME are refused, its sessions ended, and in one transaction it is
renamed to NEWNAME_replaced_<time> and the restored copy to NEWNAME, with NEWNAME's
owner. The replaced database is then dropped, or with --keep-replaced kept under
that name (refusing connections). If anything fails before the swap, the copy is
dropped and NEWNAME is as it was. Its database-level settings and privileges (ALTER
DATABASE ... SET, GRANT ... ON DATABASE) are not carried over. Replacing takes the
database's owner with CREATEDB, or a superuser, connected to another database;
ending other users' sessions takes a superuser or pg_signal_backend.

--globals creates the roles and tablespaces of the backup that the server lacks,
with their attributes, passwords, settings and memberships; roles and tablespaces
that exist are left exactly as they are (their statements are skipped), so it is
safe on a live server and can be repeated. Statements that still fail are counted
and shown, and do not stop the restore.

Every restore is recorded in the repository's audit log (hestami audit list) with
the OS user, the host, the backup, the server and NEWNAME: when it is refused, when it
starts changing the server and when it ends. A restore that cannot be recorded is not
started. A repository that is encrypted needs the decryption identity
(HESTAMI_ENCRYPTION_IDENTITY_FILE): without it the restore stops before it reads or
changes anything.`,
		Example: `  hestami restore logical --database app --into app_restored
  hestami restore logical --backup logical-20250301T020000Z --database app --into app_0301 --globals --jobs 4
  hestami restore logical --database app --into app --replace --globals`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.audit = p.newRestoreAudit("restore.logical", o.Into, map[string]string{
				"requested": o.Backup, "database": o.Database, "replace": fmt.Sprint(o.Replace), "globals": fmt.Sprint(o.Globals)})
			err := p.restoreLogical(cmd, o)
			o.audit.finish(cmd.Context(), err)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Backup, "backup", "latest", "backup id, or latest for the newest logical backup")
	f.StringVar(&o.Database, "database", "", "database of the backup to restore (may be left out when the backup holds only one)")
	f.StringVar(&o.Into, "into", "", "name of the database to restore into (required; must not exist unless --replace)")
	f.BoolVar(&o.Globals, "globals", false, "first create the backup's roles and tablespaces that the server lacks")
	f.IntVar(&o.Jobs, "jobs", 0, "parallel pg_restore jobs; 1 streams without a temporary file (default: backup.parallel)")
	f.BoolVar(&o.Replace, "replace", false, "replace NEWNAME if it exists, by a complete restored copy swapped in at once (see above)")
	f.BoolVar(&o.KeepReplaced, "keep-replaced", false, "with --replace, keep the replaced database as NEWNAME_replaced_<time> instead of dropping it")
	f.BoolVar(&o.Force, "force", false, "no longer supported: see --replace")
	_ = f.MarkHidden("force")
	f.StringVar(&o.TempDir, "temp-dir", "", "directory for the temporary archive of a parallel restore (default: $TMPDIR or /tmp)")
	_ = cmd.MarkFlagRequired("into")
	return cmd
}

func (p *Program) restoreLogical(cmd *cobra.Command, o restoreLogicalOptions) error {
	ctx := cmd.Context()
	if o.Force {
		return usageError{errors.New("--force (pg_restore --clean into the existing database, which could leave it half restored) is no longer supported: " +
			"use --replace, which restores into a new database and swaps it in only once complete")}
	}
	if o.KeepReplaced && !o.Replace {
		return usageError{errors.New("--keep-replaced goes with --replace")}
	}
	if o.Jobs == 0 {
		o.Jobs = p.cfg.Backup.Parallel
	}
	if o.Jobs < 1 {
		return usageError{fmt.Errorf("--jobs %d: want 1 or more", o.Jobs)}
	}
	repo, err := p.readRepository(false)
	if err != nil {
		return err
	}
	if err := requireIdentity(ctx, repo); err != nil {
		return err
	}
	m, err := resolveBackup(cmd, repo, o.Backup, backup.Logical)
	if err != nil {
		return err
	}
	o.audit.set("backup", m.ID)
	if o.Database == "" {
		if len(m.Databases) != 1 {
			return usageError{fmt.Errorf("backup %s holds %d databases (%s): name one with --database", m.ID, len(m.Databases), strings.Join(m.Databases, ", "))}
		}
		o.Database = m.Databases[0]
		o.audit.set("database", o.Database)
	}
	conn, err := postgres.Connect(ctx, p.cfg.Postgres.ConnString(""))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	info, err := postgres.Info(ctx, conn)
	if err != nil {
		return err
	}
	o.audit.set("server", fmt.Sprintf("%s:%d", conn.Config().Host, conn.Config().Port))
	// pg_restore must read the archive (written by a pg_dump at least as new as the
	// backed-up server) and should know the target server.
	need := max(info.VersionNum, m.PGVersion) / 10000
	tools, err := postgres.FindTools(ctx, p.cfg.Postgres.BinDir, need)
	if err != nil {
		return err
	}
	tools.Env = p.cfg.Postgres.Env()
	tools.Database = p.cfg.Postgres.Database
	tools.Logger = p.logger
	target := &postgres.Restorer{Tools: tools, Conn: conn}

	r := &backup.LogicalRestore{
		Repo:      repo,
		Target:    target,
		Globals:   target,
		Progress:  p.progress(),
		Logger:    p.logger,
		TempDir:   o.TempDir,
		FreeSpace: freeSpace,
	}
	if o.audit != nil {
		r.BeforeWrite = o.audit.start
	}
	res, err := r.Run(ctx, m, backup.LogicalRestoreOptions{
		Database: o.Database, Into: o.Into, Globals: o.Globals, Jobs: o.Jobs, Replace: o.Replace, KeepReplaced: o.KeepReplaced,
	})
	if err != nil {
		return err
	}
	if res.Replaced {
		o.audit.set("replaced", "true")
		o.audit.set("kept_replaced", res.Kept)
	}
	p.printLogicalRestore(res)
	return nil
}

func (p *Program) printLogicalRestore(res *backup.LogicalRestoreResult) {
	w := p.Stdout
	how := fmt.Sprintf("pg_restore -j %d from a verified temporary file", res.Jobs)
	if res.Streamed {
		how = "streamed into pg_restore after verification"
	}
	into := "new database"
	if res.Replaced {
		into = "a copy that replaced database"
	}
	fmt.Fprintf(w, "Restored database %q of backup %s into %s %q in %s\n", res.Database, res.Backup, into, res.Into, res.Stop.Sub(res.Start).Round(100*time.Millisecond))
	switch {
	case res.DropErr != nil:
		fmt.Fprintf(w, "  WARNING: the replaced database, now %q, could not be dropped (%v): drop it once you no longer need it:\n", res.Kept, res.DropErr)
		fmt.Fprintf(w, "    psql -d postgres -c 'DROP DATABASE %s'\n", strings.ReplaceAll(sqlIdent(res.Kept), "'", `'\''`))
	case res.Kept != "":
		fmt.Fprintf(w, "  replaced: the old database is kept as %q, refusing connections; to look at it:\n", res.Kept)
		fmt.Fprintf(w, "    ALTER DATABASE %s WITH ALLOW_CONNECTIONS true;  to drop it: DROP DATABASE %s;\n", sqlIdent(res.Kept), sqlIdent(res.Kept))
	case res.Replaced:
		fmt.Fprintln(w, "  replaced: the old database was dropped; database-level settings and privileges were not carried over")
	}
	fmt.Fprintf(w, "  archive:  %s, %s (%s)\n", res.File.Name, progress.Bytes(res.File.Size), how)
	if g := res.Globals; g != nil {
		fmt.Fprintf(w, "  roles:    created %d %s; %d already existed and were left unchanged %s\n",
			len(g.CreatedRoles), nameList(g.CreatedRoles), len(g.ExistingRoles), nameList(g.ExistingRoles))
		if len(g.CreatedTablespaces)+len(g.ExistingTablespaces) > 0 {
			fmt.Fprintf(w, "  tablespaces: created %d %s; %d already existed %s\n",
				len(g.CreatedTablespaces), nameList(g.CreatedTablespaces), len(g.ExistingTablespaces), nameList(g.ExistingTablespaces))
		}
		if len(res.GlobalErr) > 0 {
			fmt.Fprintf(w, "  WARNING: %d statement(s) of the globals script failed:\n", len(res.GlobalErr))
			for _, e := range res.GlobalErr {
				fmt.Fprintf(w, "    %s\n", e)
			}
		}
	}
	fmt.Fprintf(w, "Connect with: psql -d %s\n", shellQuote(res.Into))
}

// sqlIdent quotes an SQL identifier for the operator to paste.
func sqlIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

func nameList(names []string) string {
	if len(names) == 0 {
		return ""
	}
	const show = 10
	if len(names) > show {
		return "(" + strings.Join(names[:show], ", ") + fmt.Sprintf(", and %d more)", len(names)-show)
	}
	return "(" + strings.Join(names, ", ") + ")"
}

// freeSpace returns the bytes available to an unprivileged writer in dir.
func freeSpace(ctx context.Context, dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}
