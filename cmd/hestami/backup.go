package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/progress"
)

// pushOptions are the flags of backup push.
type pushOptions struct {
	Type      string
	Databases []string
	// WALTimeout bounds a physical backup's wait for its WAL to be archived (0: default).
	WALTimeout time.Duration
}

func (p *Program) backupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Take, list, inspect and delete backups",
	}
	cmd.AddCommand(p.backupPushCommand(), p.backupListCommand(), p.backupShowCommand(), p.backupDeleteCommand(), p.backupPruneCommand())
	cmd.AddCommand(p.backupVerifyCommand())
	cmd.AddCommand(p.backupDaemonCommand()) // daemon.go
	cmd.AddCommand(p.backupForecastCommand())
	return cmd
}

func (p *Program) backupPushCommand() *cobra.Command {
	var o pushOptions
	cmd := &cobra.Command{
		Use:   "push --type physical|logical",
		Short: "Take a backup now",
		Long: `Takes a backup and stores it in the repository, streamed and compressed (nothing
is staged on local disk).

  physical  a base backup over the replication protocol; with the archived WAL it
            restores to any point in time after it. Complete only once the WAL up
            to its stop position is archived.
  logical   pg_dump (custom format) of every non-template database, or --database,
            plus roles and tablespaces (pg_dumpall --globals-only).

Before starting it checks the database connection, the repository (same cluster),
and the expected size against the storage's free space.`,
		Example: `  hestami backup push --type physical
  hestami backup push --type logical --database app`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := backup.ParseType(o.Type)
			if err != nil {
				return usageError{err}
			}
			if t == backup.Physical {
				if len(o.Databases) > 0 {
					return usageError{errors.New("--database applies to logical backups only")}
				}
				return p.pushPhysical(cmd, o)
			}
			return p.pushLogical(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.Type, "type", "", "physical or logical (required)")
	cmd.Flags().StringSliceVar(&o.Databases, "database", nil, "logical: only these databases (repeatable)")
	cmd.Flags().DurationVar(&o.WALTimeout, "wal-timeout", backup.DefaultWALTimeout, "physical: how long to wait for the WAL up to the backup's stop position to be archived")
	_ = cmd.MarkFlagRequired("type")
	return cmd
}

// progress returns a progress reporter: a live line when stderr is a terminal,
// structured log lines otherwise.
func (p *Program) progress() *progress.Reporter {
	if f, ok := p.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return progress.New(f, p.logger)
	}
	return progress.New(nil, p.logger)
}

// backupRow is one line of backup list.
type backupRow struct {
	ID         string      `json:"id"`
	Type       backup.Type `json:"type,omitempty"`
	Status     string      `json:"status"`
	StartTime  *time.Time  `json:"start_time,omitempty"`
	StopTime   *time.Time  `json:"stop_time,omitempty"`
	Duration   float64     `json:"duration_seconds,omitempty"`
	Timeline   uint32      `json:"timeline,omitempty"`
	StartLSN   string      `json:"start_lsn,omitempty"`
	StopLSN    string      `json:"stop_lsn,omitempty"`
	Size       int64       `json:"size"`
	StoredSize int64       `json:"stored_size"`
	Databases  []string    `json:"databases,omitempty"`
	Error      string      `json:"error,omitempty"`
	// Locations says which repositories hold the complete backup: "primary",
	// "secondary" (storage.secondary_url).
	Locations []string `json:"locations"`
}

func rowOf(e backup.BackupEntry) backupRow {
	r := backupRow{ID: e.ID, Status: e.Status}
	if e.Err != nil {
		r.Error = e.Err.Error()
	}
	if m := e.Manifest; m != nil {
		r.Type = m.Type
		r.StartTime, r.StopTime = &m.StartTime, &m.StopTime
		r.Duration = m.Duration().Seconds()
		r.Size, r.StoredSize = m.Size, m.StoredSize
		r.Databases = m.Databases
		if m.Type == backup.Physical {
			r.Timeline = m.Timeline
			r.StartLSN, r.StopLSN = m.StartLSN.String(), m.StopLSN.String()
		}
		return r
	}
	r.Type = backup.IDType(e.ID)
	for _, o := range e.Objects {
		r.StoredSize += o.Size
	}
	return r
}

func (p *Program) backupListCommand() *cobra.Command {
	var asJSON bool
	var typ string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the backups in the repository, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := p.readRepository(false)
			if err != nil {
				return err
			}
			entries, err := repo.Backups(cmd.Context())
			if err != nil {
				return err
			}
			locations := backupLocations(cmd.Context(), repo) // storage_check.go
			rows := []backupRow{}
			for _, e := range entries {
				r := rowOf(e)
				r.Locations = locations(e.ID)
				if typ != "" && string(r.Type) != typ {
					continue
				}
				rows = append(rows, r)
			}
			if asJSON {
				return p.printJSON(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintf(p.Stdout, "No backups in %s. Take one with: hestami backup push --type physical\n", repo.Storage)
				return nil
			}
			tw := tabwriter.NewWriter(p.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tSTARTED (UTC)\tDURATION\tTIMELINE\tSTART LSN\tSTOP LSN\tSIZE\tSTORED\tLOCATIONS")
			for _, r := range rows {
				started, dur, tli := "-", "-", "-"
				if r.StartTime != nil {
					started = r.StartTime.UTC().Format("2006-01-02 15:04:05")
					dur = (time.Duration(r.Duration*1000) * time.Millisecond).Round(100 * time.Millisecond).String()
				}
				if r.Timeline != 0 {
					tli = fmt.Sprint(r.Timeline)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Type, r.Status, started, dur, tli,
					orDash(r.StartLSN), orDash(r.StopLSN), progress.Bytes(r.Size), progress.Bytes(r.StoredSize), orDash(strings.Join(r.Locations, ",")))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&typ, "type", "", "only physical or logical backups")
	return cmd
}

func (p *Program) backupShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "show ID|latest",
		Short:   "Show one backup's manifest",
		Example: "  hestami backup show latest --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := p.readRepository(false)
			if err != nil {
				return err
			}
			m, err := resolveBackup(cmd, repo, args[0], "")
			if err != nil {
				return err
			}
			if asJSON {
				return p.printJSON(m)
			}
			w := p.Stdout
			fmt.Fprintf(w, "Backup %s (%s)\n", m.ID, m.Type)
			fmt.Fprintf(w, "  started:           %s\n", m.StartTime.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "  stopped:           %s (%s)\n", m.StopTime.UTC().Format(time.RFC3339), m.Duration().Round(100*time.Millisecond))
			fmt.Fprintf(w, "  system identifier: %d\n", m.SystemIdentifier)
			fmt.Fprintf(w, "  PostgreSQL:        %d\n", m.PGVersion)
			if m.Type == backup.Physical {
				fmt.Fprintf(w, "  timeline:          %d\n", m.Timeline)
				fmt.Fprintf(w, "  start:             %s (%s)\n", m.StartLSN, m.StartWAL)
				fmt.Fprintf(w, "  stop:              %s (%s)\n", m.StopLSN, m.StopWAL)
				for _, ts := range m.Tablespaces {
					fmt.Fprintf(w, "  tablespace:        %d at %s\n", ts.OID, ts.Location)
				}
			}
			if len(m.Databases) > 0 {
				fmt.Fprintf(w, "  databases:         %s\n", strings.Join(m.Databases, ", "))
			}
			fmt.Fprintf(w, "  size:              %s (stored %s)\n", progress.Bytes(m.Size), progress.Bytes(m.StoredSize))
			fmt.Fprintln(w, "  files:")
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, f := range m.Files {
				fmt.Fprintf(tw, "    %s\t%s\t%s\tsha256:%s\n", f.Name, progress.Bytes(f.Size), progress.Bytes(f.StoredSize), f.SHA256)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (p *Program) backupDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete one backup (complete or incomplete) from the repository",
		Long: `Deletes every object of the backup, its manifest first, so an interrupted delete
leaves an incomplete backup, never one that looks complete. Archived WAL is not
touched.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := p.repository(false)
			if err != nil {
				return err
			}
			err = repo.DeleteBackup(cmd.Context(), args[0])
			p.audit(cmd.Context(), repo, "backup.delete", args[0], err, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(p.Stdout, "Deleted backup %s\n", args[0])
			return nil
		},
	}
}

// resolveBackup returns the manifest for id, where "latest" is the newest complete
// backup (of type t when given).
func resolveBackup(cmd *cobra.Command, repo *backup.Repository, id string, t backup.Type) (*backup.Manifest, error) {
	if id != "latest" {
		m, err := repo.Manifest(cmd.Context(), id)
		if err != nil {
			return nil, err
		}
		if t != "" && m.Type != t {
			return nil, fmt.Errorf("backup %s is a %s backup; this needs a %s one (see hestami backup list --type %s)", id, m.Type, t, t)
		}
		return m, nil
	}
	entries, err := repo.Backups(cmd.Context())
	if err != nil {
		return nil, err
	}
	if err := keyProblem(entries, t); err != nil { // keys.go: never pass over it silently
		return nil, err
	}
	ms := backup.Complete(entries, t)
	if len(ms) == 0 {
		what := "complete backup"
		if t != "" {
			what = "complete " + string(t) + " backup"
		}
		return nil, fmt.Errorf("%w: no %s in %s (take one with hestami backup push)", backup.ErrBackupNotFound, what, repo.Storage)
	}
	return ms[len(ms)-1], nil
}
