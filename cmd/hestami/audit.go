package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/backup"
)

func (p *Program) auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read and verify the audit log of backup-management actions",
		Long: `Every backup, delete, prune and restore is recorded in the repository's audit log
(audit/ in the repository), with who, where, when and the outcome. Each entry carries
the hash of the one before it, so an entry edited, replaced or removed afterwards
breaks the chain: hestami audit verify finds it.`,
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the audit log, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := p.repository(false)
			if err != nil {
				return err
			}
			entries, _, err := repo.AuditLog(cmd.Context())
			if err != nil {
				return err
			}
			if entries == nil {
				entries = []backup.AuditEntry{}
			}
			if asJSON {
				return p.printJSON(entries)
			}
			tw := tabwriter.NewWriter(p.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME (UTC)\tACTION\tACTOR\tHOST\tTARGET\tOUTCOME")
			for _, e := range entries {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format("2006-01-02 15:04:05"), e.Action, e.Actor, e.Host, orDash(e.Target), e.Outcome)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var verifyJSON bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain; exit 1 if an entry was edited or removed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := p.repository(false)
			if err != nil {
				return err
			}
			entries, problems, err := repo.AuditLog(cmd.Context())
			if err != nil {
				return err
			}
			if verifyJSON {
				if problems == nil {
					problems = []backup.AuditProblem{}
				}
				if err := p.printJSON(map[string]any{"entries": len(entries), "ok": len(problems) == 0, "problems": problems}); err != nil {
					return err
				}
			} else if len(problems) == 0 {
				fmt.Fprintf(p.Stdout, "Audit log intact: %d entries, every hash and link checks out.\n", len(entries))
			} else {
				for _, pr := range problems {
					fmt.Fprintf(p.Stdout, "entry %d %s: %s\n", pr.Seq, pr.Key, pr.Problem)
				}
			}
			if len(problems) > 0 {
				return fmt.Errorf("audit log of %s is not intact: %d problem(s); treat the entries around them as untrustworthy and find out who changed the repository", repo.Storage, len(problems))
			}
			return nil
		},
	}
	verify.Flags().BoolVar(&verifyJSON, "json", false, "print JSON")
	cmd.AddCommand(list, verify)
	return cmd
}

// audit records an action in the repository's audit log, with the OS user and host.
// A failure to record is logged, and does not change the action's own outcome.
func (p *Program) audit(ctx context.Context, repo *backup.Repository, action, target string, actionErr error, details map[string]string) {
	p.auditAs(ctx, repo, "", action, target, actionErr, details)
}

// auditAs is audit with a given actor ("": the OS user).
func (p *Program) auditAs(ctx context.Context, repo *backup.Repository, actor, action, target string, actionErr error, details map[string]string) {
	outcome := "ok"
	if actionErr != nil {
		outcome = "failed"
		var ue usageError
		if errors.As(actionErr, &ue) {
			outcome = "refused"
		}
		if details == nil {
			details = map[string]string{}
		}
		details["error"] = actionErr.Error()
	}
	host, _ := os.Hostname()
	if actor == "" {
		actor = "unknown"
		if u, err := user.Current(); err == nil {
			actor = u.Username
		}
	}
	if _, err := repo.Audit(context.WithoutCancel(ctx), backup.AuditEntry{Action: action, Actor: actor, Host: host, Target: target, Outcome: outcome, Details: details}); err != nil {
		p.logger.Error("could not write the audit log", "action", action, "target", target, "err", err)
	}
}

// backupID is m's id, or "" when the backup failed before it had one.
func backupID(m *backup.Manifest) string {
	if m == nil {
		return ""
	}
	return m.ID
}

// auditStart records the daemon's start-up with a fingerprint of its effective
// configuration (secrets hashed, never shown), and whether it changed since the
// previous start.
func (p *Program) auditStart(ctx context.Context, repo *backup.Repository) {
	fp := p.cfg.Fingerprint()
	changed := "first start"
	if entries, _, err := repo.AuditLog(ctx); err == nil {
		for i := len(entries) - 1; i >= 0; i-- {
			if entries[i].Action == "daemon.start" {
				changed = "no"
				if entries[i].Details["config_sha256"] != fp {
					changed = "yes"
				}
				break
			}
		}
	}
	host, _ := os.Hostname()
	p.auditAs(ctx, repo, "hestami-daemon@"+host, "daemon.start", p.configPath, nil, map[string]string{
		"config_sha256": fp, "config_changed": changed, "version": version})
}
