package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/progress"
)

// verifyOutput is what backup verify --json prints.
type verifyOutput struct {
	*backup.VerifyReport
	// Recorded says whether the outcome was stored for backup prune.
	Recorded    bool   `json:"recorded"`
	RecordError string `json:"record_error,omitempty"`
	// RestoreTest is the outcome of --restore-test ("" when not asked).
	RestoreTest      string  `json:"restore_test,omitempty"`
	RestoreTestError string  `json:"restore_test_error,omitempty"`
	RestoreSeconds   float64 `json:"restore_test_seconds,omitempty"`
}

func (p *Program) backupVerifyCommand() *cobra.Command {
	var asJSON, restoreTest bool
	cmd := &cobra.Command{
		Use:   "verify ID|latest [--json]",
		Short: "Check that a backup can be restored: every object it needs, read in full",
		Long: `Reads every object a restore of the backup needs, in full: its manifest and files
and, for a physical backup, the WAL from its start to its stop segment and the history
files of its timeline. Each must be present, intact (size and SHA-256, decompression),
decryptable with the configured identity (HESTAMI_ENCRYPTION_IDENTITY_FILE) and, when
HESTAMI_SIGNING_PUBLIC_KEYS is set, signed by a trusted key; each file must be the one
the manifest records.

The outcome is recorded in the repository (backup prune deletes a backup only after a
newer one passed). Exit code 0: every object passed; 1: any failed (or the outcome
could not be recorded). --json lists each object's outcome: ok, missing, corrupt,
untrusted, undecryptable, mismatch or error.

"latest" is the newest backup with a manifest, readable or not.`,
		Example: `  hestami backup verify latest
  hestami backup verify physical-20240501T020000Z --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			repo, err := p.readRepository(false)
			if err != nil {
				return err
			}
			walRepo, err := p.readRepository(true)
			if err != nil {
				return err
			}
			id := args[0]
			if id == "latest" {
				if id, err = latestWithManifest(ctx, repo); err != nil {
					return err
				}
			}
			began := time.Now()
			v := &backup.BackupVerifier{Repo: repo, WALRepo: walRepo, Parallel: p.cfg.Backup.Parallel, Logger: p.logger}
			rep, err := v.Verify(ctx, id)
			if err != nil {
				return err
			}
			out := verifyOutput{VerifyReport: rep}
			rec := backup.VerificationRecord{Time: time.Now().UTC(), OK: rep.OK, Method: "checksums"}
			if !rep.OK {
				rec.Error = failureSummary(rep)
			}
			if restoreTest && rep.OK {
				rec.Method = "checksums+restore-test"
				t0 := time.Now()
				if terr := p.restoreTest(cmd, repo, id, asJSON); terr != nil {
					rep.OK = false
					rec.OK, rec.Error = false, "restore test: "+terr.Error()
					out.RestoreTest, out.RestoreTestError = "failed", terr.Error()
				} else {
					out.RestoreTest = "ok"
				}
				out.RestoreSeconds = time.Since(t0).Seconds()
			}
			if repo.Verifier != nil && repo.Signer == nil {
				p.logger.Warn("the verification record is stored unsigned, and hosts that check signatures will not trust it: configure the signing key (HESTAMI_SIGNING_KEY_FILE) here too", "backup", id)
			}
			if err := repo.RecordVerification(ctx, id, rec); err != nil {
				out.RecordError = err.Error()
			} else {
				out.Recorded = true
			}
			p.logger.Info("verified backup", "backup", id, "ok", rep.OK, "objects", rep.Checked, "failed", rep.Failed, "seconds", time.Since(began).Seconds())
			var verr error
			if !rep.OK {
				verr = errors.New(failureSummary(rep))
				if out.RestoreTestError != "" {
					verr = errors.New("restore test: " + out.RestoreTestError)
				}
			}
			p.audit(ctx, repo, "backup.verify", id, verr, map[string]string{"objects": fmt.Sprint(rep.Checked)})
			if asJSON {
				if err := p.printJSON(out); err != nil {
					return err
				}
			} else {
				p.printVerify(rep)
			}
			if out.RestoreTestError != "" {
				return fmt.Errorf("backup %s passed the checksums but failed the restore test: %s", id, out.RestoreTestError)
			}
			if !rep.OK {
				return fmt.Errorf("backup %s failed verification: %s", id, failureSummary(rep))
			}
			if out.RestoreTest == "ok" && !asJSON {
				fmt.Fprintf(p.Stdout, "Restore test passed in %.1f s.\n", out.RestoreSeconds)
			}
			if out.RecordError != "" {
				return fmt.Errorf("backup %s passed verification, but the outcome could not be recorded, so backup prune will not count it: %s", id, out.RecordError)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&restoreTest, "restore-test", false, "also restore it for real: a physical backup into a scratch directory, replayed and started once "+
		"on a free local port (as restore --verify); each database of a logical backup into a scratch database, dropped again")
	return cmd
}

// failureSummary names the failed objects (the first few) and why.
func failureSummary(rep *backup.VerifyReport) string {
	fails := rep.Failures()
	var parts []string
	for _, f := range fails[:min(3, len(fails))] {
		parts = append(parts, fmt.Sprintf("%s is %s", f.Key, f.Status))
	}
	s := fmt.Sprintf("%d of %d objects failed: %s", rep.Failed, rep.Checked, strings.Join(parts, "; "))
	if len(fails) > 3 {
		s += fmt.Sprintf(" and %d more", len(fails)-3)
	}
	if len(fails) > 0 {
		s += " (first error: " + fails[0].Error + ")"
	}
	return s
}

func (p *Program) printVerify(rep *backup.VerifyReport) {
	w := p.Stdout
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OBJECT\tKIND\tSTATUS\tSIZE\tSIGNATURE\tENCRYPTED")
	for _, o := range rep.Objects {
		enc := "no"
		if len(o.Recipients) > 0 {
			enc = fmt.Sprintf("%d recipient(s)", len(o.Recipients))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Key, o.Kind, o.Status, progress.Bytes(o.Size), orDash(o.Signature), enc)
	}
	tw.Flush()
	for _, o := range rep.Failures() {
		fmt.Fprintf(w, "%s: %s\n", o.Key, o.Error)
	}
	if rep.OK {
		fmt.Fprintf(w, "Backup %s verified: %d objects present, intact, decryptable and (where checked) signed.\n", rep.Backup, rep.Checked)
	} else {
		fmt.Fprintf(w, "Backup %s FAILED verification: %d of %d objects.\n", rep.Backup, rep.Failed, rep.Checked)
	}
}

// latestWithManifest returns the newest backup that has a manifest, readable or
// not: a damaged or forged newest manifest must fail verification, not make
// "latest" an older backup.
func latestWithManifest(ctx context.Context, repo *backup.Repository) (string, error) {
	entries, err := repo.Backups(ctx)
	if err != nil {
		return "", err
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Status != backup.StatusIncomplete {
			return entries[i].ID, nil
		}
	}
	return "", fmt.Errorf("%w: no backup with a manifest in %s (take one with hestami backup push)", backup.ErrBackupNotFound, repo.Storage)
}

// restoreTest restores backup id for real and throws the result away: a physical
// backup as restore --verify does, into a scratch directory; each database of a
// logical backup into a scratch database hestami_verify_<n>, dropped afterwards.
// With asJSON the restores' own output goes to stderr, so stdout stays JSON.
func (p *Program) restoreTest(cmd *cobra.Command, repo *backup.Repository, id string, asJSON bool) error {
	ctx := cmd.Context()
	m, err := repo.Manifest(ctx, id)
	if err != nil {
		return err
	}
	if asJSON {
		saved := p.Stdout
		p.Stdout = p.Stderr
		defer func() { p.Stdout = saved }()
	}
	if m.Type == backup.Physical {
		scratch, err := os.MkdirTemp("", "hestami-restore-test-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(scratch)
		if err := postgres.MakeTraversable(scratch); err != nil {
			return err
		}
		if err := os.Chmod(scratch, 0o755); err != nil {
			return err
		}
		return p.restorePhysical(cmd, restoreOptions{To: filepath.Join(scratch, "data"), Backup: id, Verify: true, VerifyTimeout: time.Hour})
	}
	conn, err := postgres.Connect(ctx, p.cfg.Postgres.ConnString(""))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var errs []error
	for i, db := range m.Databases {
		into := fmt.Sprintf("hestami_verify_%d", i+1)
		err := p.restoreLogical(cmd, restoreLogicalOptions{Backup: id, Database: db, Into: into, Jobs: 1})
		if _, derr := conn.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+pgx.Identifier{into}.Sanitize()+" WITH (FORCE)"); derr != nil {
			errs = append(errs, fmt.Errorf("drop scratch database %s: %w", into, derr))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("database %s: %w", db, err))
		}
	}
	return errors.Join(errs...)
}
