package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/config"
)

func (p *Program) backupPruneCommand() *cobra.Command {
	var dryRun, asJSON bool
	var at string
	cmd := &cobra.Command{
		Use:   "prune [--dry-run] [--at TIME] [--json]",
		Short: "Apply the retention policy: delete the backups and WAL it no longer keeps",
		Long: `Keeps, per backup type, the newest backup of each of the last retention.daily days,
retention.weekly ISO weeks and retention.monthly months that have backups (default 7, 4
and 6, in retention.time_zone), the newest backup, and every backup dated after now;
deletes the rest — but only once a newer backup of that type has passed verification
(hestami backup verify), so an unverified chain is never thinned. Incomplete backups
older than retention.incomplete_grace are deleted too.

WAL: everything from the start of the oldest physical backup of the point-in-time
window (retention.pitr_window, default the daily tier) is kept; for older kept physical
backups the WAL from their start to their stop, so each still restores to a consistent
state. Timeline history files are never deleted. Every deletion is logged.

--dry-run shows, for each backup, kept or deleted and why; --at previews the plan at
another time.`,
		Example: `  hestami backup prune --dry-run
  hestami backup prune --dry-run --at 2027-01-31T00:00:00Z --json
  hestami backup prune`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			now := time.Now()
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return usageError{fmt.Errorf("--at %q: want a time like 2027-01-31T00:00:00Z", at)}
				}
				now = t
			}
			repo, err := p.repository(false)
			if err != nil {
				return err
			}
			walRepo, err := p.repository(true)
			if err != nil {
				return err
			}
			pr := &backup.Pruner{Repo: repo, WALRepo: walRepo, Policies: retentionPolicies(p.cfg.Retention),
				PITRTier: p.cfg.Retention.PITRWindow, Logger: p.logger}
			plan, err := pr.Plan(ctx, now)
			if err != nil {
				return err
			}
			if asJSON {
				if err := p.printJSON(plan); err != nil {
					return err
				}
			} else {
				p.printPrunePlan(plan, dryRun)
			}
			if dryRun {
				return nil
			}
			err = pr.Execute(ctx, plan)
			deleted := 0
			for _, ds := range plan.Backups {
				for _, d := range ds {
					if !d.Keep {
						deleted++
					}
				}
			}
			p.audit(ctx, repo, "backup.prune", "", err, map[string]string{
				"backups_deleted": fmt.Sprint(deleted), "wal_deleted": fmt.Sprint(len(plan.WALDelete)), "at": plan.At.UTC().Format(time.RFC3339)})
			return err
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show the plan, delete nothing")
	cmd.Flags().StringVar(&at, "at", "", "plan as if it were this time (RFC 3339); with --dry-run, previews the future")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

// retentionPolicies turns the configuration into a policy per backup type.
func retentionPolicies(r config.Retention) map[backup.Type]backup.RetentionPolicy {
	loc, err := time.LoadLocation(r.TimeZone)
	if err != nil {
		loc = time.UTC // Validate has reported it
	}
	policy := func(t *config.Tiers) backup.RetentionPolicy {
		tiers := r.Tiers
		if t != nil {
			tiers = *t
		}
		return backup.RetentionPolicy{Daily: tiers.Daily, Weekly: tiers.Weekly, Monthly: tiers.Monthly, Location: loc, IncompleteGrace: r.IncompleteGrace}
	}
	return map[backup.Type]backup.RetentionPolicy{backup.Physical: policy(r.Physical), backup.Logical: policy(r.Logical)}
}

func (p *Program) printPrunePlan(plan *backup.PrunePlan, dryRun bool) {
	w := p.Stdout
	verb := "deleting"
	if dryRun {
		verb = "would delete"
	}
	fmt.Fprintf(w, "Retention plan at %s\n\n", plan.At.UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKUP\tSTARTED (UTC)\tDECISION\tWHY")
	deleted := 0
	for _, t := range []backup.Type{backup.Physical, backup.Logical} {
		for _, d := range plan.Backups[t] {
			decision := "keep"
			if !d.Keep {
				decision, deleted = verb, deleted+1
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.ID, d.Time.UTC().Format("2006-01-02 15:04"), decision, strings.Join(d.Reasons, ", "))
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nBackups: %s %d. WAL: %s %d file(s), keeping %d", verb, deleted, verb, len(plan.WALDelete), plan.WALKept)
	if plan.WindowStart != "" {
		fmt.Fprintf(w, " (all WAL from the start of %s on)", plan.WindowStart)
	}
	fmt.Fprintln(w, ".")
}
