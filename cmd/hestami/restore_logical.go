package main

import (
	"context"
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
	Backup   string
	Database string
	Into     string
	Globals  bool
	Jobs     int
	Force    bool
	TempDir  string
}

func (p *Program) restoreLogicalCommand() *cobra.Command {
	var o restoreLogicalOptions
	cmd := &cobra.Command{
		Use:   "logical --database NAME --into NEWNAME [--backup ID|latest]",
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

NEWNAME must not exist. With --force an existing database is restored into with
pg_restore --clean --if-exists: the backup's objects are dropped and recreated,
other objects are kept; a failed forced restore may leave it partially restored.

--globals creates the roles and tablespaces of the backup that the server lacks,
with their attributes, passwords, settings and memberships; roles and tablespaces
that exist are left exactly as they are (their statements are skipped), so it is
safe on a live server and can be repeated. Statements that still fail are counted
and shown, and do not stop the restore.`,
		Example: `  hestami restore logical --database app --into app_restored
  hestami restore logical --backup logical-20250301T020000Z --database app --into app_0301 --globals --jobs 4
  hestami restore logical --database app --into app_restored --force --jobs 1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := p.restoreLogical(cmd, o)
			if repo, rerr := p.repository(false); rerr == nil {
				p.audit(cmd.Context(), repo, "restore.logical", o.Into, err, map[string]string{"backup": o.Backup, "database": o.Database})
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Backup, "backup", "latest", "backup id, or latest for the newest logical backup")
	f.StringVar(&o.Database, "database", "", "database of the backup to restore (may be left out when the backup holds only one)")
	f.StringVar(&o.Into, "into", "", "name of the database to restore into (required; must not exist unless --force)")
	f.BoolVar(&o.Globals, "globals", false, "first create the backup's roles and tablespaces that the server lacks")
	f.IntVar(&o.Jobs, "jobs", 0, "parallel pg_restore jobs; 1 streams without a temporary file (default: backup.parallel)")
	f.BoolVar(&o.Force, "force", false, "restore into NEWNAME even if it exists (pg_restore --clean --if-exists)")
	f.StringVar(&o.TempDir, "temp-dir", "", "directory for the temporary archive of a parallel restore (default: $TMPDIR or /tmp)")
	_ = cmd.MarkFlagRequired("into")
	return cmd
}

func (p *Program) restoreLogical(cmd *cobra.Command, o restoreLogicalOptions) error {
	ctx := cmd.Context()
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
	m, err := resolveBackup(cmd, repo, o.Backup, backup.Logical)
	if err != nil {
		return err
	}
	if o.Database == "" {
		if len(m.Databases) != 1 {
			return usageError{fmt.Errorf("backup %s holds %d databases (%s): name one with --database", m.ID, len(m.Databases), strings.Join(m.Databases, ", "))}
		}
		o.Database = m.Databases[0]
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
	res, err := r.Run(ctx, m, backup.LogicalRestoreOptions{
		Database: o.Database, Into: o.Into, Globals: o.Globals, Jobs: o.Jobs, Force: o.Force,
	})
	if err != nil {
		return err
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
	if res.Existing {
		into = "existing database (--clean --if-exists)"
	}
	fmt.Fprintf(w, "Restored database %q of backup %s into %s %q in %s\n", res.Database, res.Backup, into, res.Into, res.Stop.Sub(res.Start).Round(100*time.Millisecond))
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
