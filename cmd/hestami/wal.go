package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/postgres"
)

func (p *Program) walCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wal",
		Short: "Archive and fetch WAL (PostgreSQL's archive_command and restore_command)",
	}
	cmd.AddCommand(p.walPushCommand(), p.walFetchCommand(), p.walStatusCommand())
	return cmd
}

func (p *Program) walPushCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "push PATH",
		Short: "Archive one WAL file durably (archive_command)",
		Long: `Archives the WAL file at PATH and exits 0 only once it is durably stored. A file
already archived with identical content is success; a different file under the same
name is refused (exit 1) and the archived copy kept. While it runs it also pushes the
next segments PostgreSQL has marked ready, in parallel (wal.push_parallel), so the
following calls return at once.`,
		Example: `  # postgresql.conf
  archive_mode = on
  archive_command = 'hestami --config /etc/hestami/hestami.yaml wal push %p'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := p.repository(true)
			if err != nil {
				return err
			}
			pusher := &backup.WALPusher{Repo: repo, Parallel: p.cfg.WAL.PushParallel, Cores: p.cfg.Backup.Parallel, Logger: p.logger}
			if err := pusher.Push(cmd.Context(), args[0]); err != nil {
				return err
			}
			p.pushWALToSecondary(cmd.Context(), repo, args[0]) // storage_check.go: never fails the push
			return nil
		},
	}
}

func (p *Program) walFetchCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "fetch NAME DEST",
		Short: "Fetch one archived WAL file, verified (restore_command)",
		Long: fmt.Sprintf(`Writes the archived WAL file NAME to DEST after verifying its checksum; DEST only
ever appears complete. Exit codes: 0 fetched, %d NAME is not in the archive (PostgreSQL
asks for files that do not exist, e.g. the next timeline's history file), 1 any other
error. The next segments of the timeline are fetched ahead in parallel (wal.prefetch).`, ExitNotFound),
		Example: `  # postgresql.conf (hestami restore writes this for you)
  restore_command = 'hestami --config /etc/hestami/hestami.yaml wal fetch %f %p'`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := p.readRepository(true)
			if err != nil {
				return err
			}
			f := &backup.WALFetcher{Repo: repo, Prefetch: p.cfg.WAL.Prefetch, Logger: p.logger}
			err = f.Fetch(cmd.Context(), args[0], args[1])
			if errors.Is(err, backup.ErrNotFound) {
				return &exitError{code: ExitNotFound, err: err}
			}
			return err
		},
	}
}

func (p *Program) walStatusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show archiving state: PostgreSQL's archiver, stored WAL per timeline, gaps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			repo, err := p.repository(true)
			if err != nil {
				return err
			}
			st := backup.WALStatus{Storage: repo.Storage.String(), Timelines: []backup.TimelineStatus{}}
			segSize := uint64(backup.DefaultSegmentSize)
			if m, err := repo.Marker(ctx); err == nil && m.WALSegmentSize != 0 {
				segSize = m.WALSegmentSize
			}
			if conn, err := postgres.Connect(ctx, p.cfg.Postgres.ConnString("")); err != nil {
				st.ArchiverError = err.Error()
			} else {
				st.Archiver, err = postgres.ArchiverStats(ctx, conn, segSize)
				if err != nil {
					st.ArchiverError = err.Error()
				}
				conn.Close(ctx)
			}
			tls, err := repo.Timelines(ctx)
			if err != nil && !errors.Is(err, backup.ErrNoRepository) {
				return err
			}
			if tls != nil {
				st.Timelines = tls
			}
			if asJSON {
				return p.printJSON(st)
			}
			return p.printWALStatus(st, err)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (p *Program) printWALStatus(st backup.WALStatus, repoErr error) error {
	w := p.Stdout
	fmt.Fprintf(w, "Repository: %s\n", st.Storage)
	if repoErr != nil {
		fmt.Fprintf(w, "  %v\n", repoErr)
	}
	fmt.Fprintln(w)
	if a := st.Archiver; a != nil {
		fmt.Fprintln(w, "PostgreSQL archiver (pg_stat_archiver):")
		fmt.Fprintf(w, "  archived:       %d, last %s at %s\n", a.ArchivedCount, orDash(a.LastArchivedWAL), fmtTime(a.LastArchivedTime))
		fmt.Fprintf(w, "  failed:         %d, last %s at %s\n", a.FailedCount, orDash(a.LastFailedWAL), fmtTime(a.LastFailedTime))
		fmt.Fprintf(w, "  current WAL:    %s\n", orDash(a.CurrentWAL))
		fmt.Fprintf(w, "  lag:            %d segments, %.0f s since the last archived\n", a.LagSegments, a.LagSeconds)
		if a.LastFailedTime != nil && (a.LastArchivedTime == nil || a.LastFailedTime.After(*a.LastArchivedTime)) {
			fmt.Fprintln(w, "  WARNING: the last archive attempt failed; see the PostgreSQL log for hestami's message (docs/runbooks/troubleshooting.md)")
		}
	} else {
		fmt.Fprintf(w, "PostgreSQL archiver: unavailable: %s\n", st.ArchiverError)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIMELINE\tSEGMENTS\tFIRST\tLAST\tLAST STORED\tHISTORY\tGAPS")
	for _, t := range st.Timelines {
		hist := "-"
		if t.History {
			hist = "yes"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%d\n", t.Timeline, t.Segments, orDash(t.First), orDash(t.Last), fmtTime(&t.LastTime), hist, len(t.Gaps))
	}
	tw.Flush()
	for _, t := range st.Timelines {
		for _, g := range t.Gaps {
			fmt.Fprintf(w, "GAP on timeline %d: %d segment(s) missing between %s and %s — point-in-time recovery cannot cross it\n", t.Timeline, g.Missing, g.After, g.Before)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
