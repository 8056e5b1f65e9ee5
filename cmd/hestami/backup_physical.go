package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hestami/hestami/progress"
)

// pushPhysical takes a physical base backup (backup push --type physical).
func (p *Program) pushPhysical(cmd *cobra.Command, o pushOptions) error {
	ctx := cmd.Context()
	repo, err := p.repository(false)
	if err != nil {
		return err
	}
	b, err := p.physicalBackup(repo, o.WALTimeout, p.progress()) // backup_jobs.go
	if err != nil {
		return err
	}
	began := time.Now()
	m, err := b.Run(ctx)
	p.audit(ctx, repo, "backup.push", backupID(m), err, map[string]string{"type": "physical"})
	if err != nil {
		return err
	}
	took := time.Since(began)

	w := p.Stdout
	ratio := ""
	if m.StoredSize > 0 {
		ratio = fmt.Sprintf(", %.1fx smaller", float64(m.Size)/float64(m.StoredSize))
	}
	fmt.Fprintf(w, "Physical backup %s complete in %s\n", m.ID, took.Round(10*time.Millisecond))
	fmt.Fprintf(w, "  server:    PostgreSQL %s, system identifier %d, host %s\n", pgVersion(m.PGVersion), m.SystemIdentifier, orDash(m.Host))
	fmt.Fprintf(w, "  position:  timeline %d, %s to %s (WAL %s to %s, archived)\n", m.Timeline, m.StartLSN, m.StopLSN, m.StartWAL, m.StopWAL)
	fmt.Fprintf(w, "  size:      %s, stored %s%s, %d files", progress.Bytes(m.Size), progress.Bytes(m.StoredSize), ratio, len(m.Files))
	if len(m.Tablespaces) > 0 {
		fmt.Fprintf(w, " (%d extra tablespaces)", len(m.Tablespaces))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  restore:   hestami restore --to /new/data/dir --backup %s\n", m.ID)
	fmt.Fprintf(w, "             or to a point in time after %s: hestami restore --to /new/data/dir --target-time \"YYYY-MM-DD HH:MM:SS+00\"\n",
		m.StopTime.UTC().Format("2006-01-02 15:04:05Z"))
	return p.copyToSecondary(ctx, repo, m.ID) // storage_check.go
}

// serverHost names the backed-up server for the manifest: the configured host, or
// this machine's name when the server is local.
func (p *Program) serverHost() string {
	h := p.cfg.Postgres.Host
	if h != "" && !strings.HasPrefix(h, "/") && h != "localhost" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsLoopback() {
			return h
		}
	}
	name, err := os.Hostname()
	if err != nil {
		return h
	}
	return name
}

// pgVersion formats a server_version_num (150018 -> "15.18", 90624 -> "9.6.24").
func pgVersion(v int) string {
	if v >= 100000 {
		return fmt.Sprintf("%d.%d", v/10000, v%10000)
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}
