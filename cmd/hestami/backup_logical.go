package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/progress"
)

// pushLogical takes a logical backup: pg_dump of each database and pg_dumpall
// --globals-only, streamed into the repository.
func (p *Program) pushLogical(cmd *cobra.Command, o pushOptions) error {
	ctx := cmd.Context()
	repo, err := p.repository(false)
	if err != nil {
		return err
	}
	m, tools, err := p.logicalBackup(ctx, repo, o.Databases, p.progress()) // backup_jobs.go
	p.audit(ctx, repo, "backup.push", backupID(m), err, map[string]string{"type": "logical"})
	if err != nil {
		return err
	}
	p.printLogicalSummary(m, tools)
	return p.copyToSecondary(ctx, repo, m.ID) // storage_check.go
}

func (p *Program) printLogicalSummary(m *backup.Manifest, tools postgres.Tools) {
	w := p.Stdout
	fmt.Fprintf(w, "Logical backup %s complete in %s (pg_dump %d from %s)\n", m.ID, m.Duration().Round(100*time.Millisecond), tools.Major, tools.Dir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  DATABASE\tFILE\tDUMP\tSTORED")
	for _, f := range m.Files {
		db := f.Database
		if db == "" {
			db = "(roles, tablespaces)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", db, f.Name, progress.Bytes(f.Size), progress.Bytes(f.StoredSize))
	}
	fmt.Fprintf(tw, "  total\t\t%s\t%s\n", progress.Bytes(m.Size), progress.Bytes(m.StoredSize))
	tw.Flush()
	db := "DATABASE"
	if len(m.Databases) > 0 {
		db = shellQuote(m.Databases[0])
	}
	fmt.Fprintf(w, "Restore a database into a new one with:\n  hestami restore logical --backup %s --database %s --into NEWNAME [--globals]\n", m.ID, db)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
