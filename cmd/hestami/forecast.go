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

// forecastReport is backup forecast's output: the projection and what it rests on.
type forecastReport struct {
	backup.Forecast
	// WALMeasuredHours is the span the WAL rate was measured over.
	WALMeasuredHours float64 `json:"wal_measured_hours"`
	// WALStored is the WAL stored now.
	WALStored int64 `json:"wal_stored_bytes"`
	// Notes say what limits the projection.
	Notes []string `json:"notes"`
}

func (p *Program) backupForecastCommand() *cobra.Command {
	var months int
	var asJSON bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "forecast [--months 6] [--json]",
		Short: "Project the storage the retention policy will need over the coming months",
		Long: `Projects, for the end of each of the next --months months, how many backups the
retention policy keeps and how much storage they and the WAL take:

  - per backup type, the stored size of the complete backups is fitted against time
    (least squares; with fewer than 3 backups the newest size is held flat);
  - a backup is projected every --interval (default: the median interval of the
    existing backups, at least 1h), each of the size the trend gives;
  - the retention policy (retention.* in the configuration, as backup prune applies
    it) is applied at each month's end, every backup assumed to pass verification;
  - WAL is the rate it was archived at (stored bytes per day, measured from the
    repository's WAL) times the point-in-time window's length (retention.pitr_window).

A projection from a few days of history is rough: read it as an order of magnitude.`,
		Example: `  hestami backup forecast
  hestami backup forecast --months 12 --interval 24h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if months < 1 || months > 120 {
				return usageError{fmt.Errorf("--months %d: want 1 to 120", months)}
			}
			if interval < 0 {
				return usageError{fmt.Errorf("--interval %s: want a positive duration such as 24h", interval)}
			}
			ctx := cmd.Context()
			repo, err := p.repository(false)
			if err != nil {
				return err
			}
			walRepo, err := p.repository(true)
			if err != nil {
				return err
			}
			entries, err := repo.Backups(ctx)
			if err != nil {
				return err
			}
			wal, err := walRepo.ListWAL(ctx, 0)
			if err != nil {
				return err
			}
			rep := forecastReport{Notes: []string{}}
			in := backup.ForecastInput{Now: time.Now(), Months: months, Backups: map[backup.Type][]backup.SizePoint{},
				Policies: retentionPolicies(p.cfg.Retention), PITRTier: p.cfg.Retention.PITRWindow, Interval: map[backup.Type]time.Duration{}}
			unreadable := 0
			for _, e := range entries {
				if e.Status == backup.StatusUnreadable {
					unreadable++
				}
			}
			if unreadable > 0 {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%d backup(s) could not be read and are left out (see hestami backup list)", unreadable))
			}
			for _, t := range []backup.Type{backup.Physical, backup.Logical} {
				for _, m := range backup.Complete(entries, t) {
					in.Backups[t] = append(in.Backups[t], backup.SizePoint{ID: m.ID, Time: m.StartTime, Bytes: m.StoredSize})
				}
				if interval > 0 {
					in.Interval[t] = interval
				}
				pts := in.Backups[t]
				if len(pts) == 0 {
					rep.Notes = append(rep.Notes, fmt.Sprintf("no complete %s backups: none projected", t))
				} else if span := pts[len(pts)-1].Time.Sub(pts[0].Time); len(pts) >= backup.MinTrendPoints && span < 7*24*time.Hour {
					rep.Notes = append(rep.Notes, fmt.Sprintf("the %s size trend rests on backups spanning %s: read it as rough", t, shortDuration(span)))
				}
			}
			var span time.Duration
			in.WALBytesPerDay, span = backup.WALRate(wal)
			for _, w := range wal {
				in.WALStored += w.Size
			}
			rep.WALMeasuredHours, rep.WALStored = span.Hours(), in.WALStored
			if span < 24*time.Hour {
				rep.Notes = append(rep.Notes, fmt.Sprintf("the WAL rate is measured over %s only: it may not reflect a whole day's load", shortDuration(span)))
			}
			rep.Forecast = backup.ForecastStorage(in)
			if len(rep.Months) > 0 && rep.Months[0].WALUnpruned {
				rep.Notes = append(rep.Notes, "no physical backup starts a point-in-time window, so prune deletes no WAL: it grows until one does")
			}
			if asJSON {
				return p.printJSON(rep)
			}
			p.printForecast(rep, p.cfg.Retention)
			return nil
		},
	}
	cmd.Flags().IntVar(&months, "months", 6, "how many months ahead")
	cmd.Flags().DurationVar(&interval, "interval", 0, "time between backups of each type (default: estimated from the existing backups)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (p *Program) printForecast(rep forecastReport, r config.Retention) {
	w := p.Stdout
	pol := retentionPolicies(r)
	fmt.Fprintf(w, "Storage forecast from %s\n\n", rep.At.UTC().Format("2006-01-02 15:04 UTC"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, t := range []backup.Type{backup.Physical, backup.Logical} {
		tf, ok := rep.Types[t]
		if !ok {
			continue
		}
		po := pol[t]
		trend := tf.Trend.Note
		if tf.Trend.Fitted {
			trend = fmt.Sprintf("%s per day (fitted to %d backups)", signedBytes(tf.Trend.BytesPerDay), tf.Trend.Points)
		}
		how := "given"
		if tf.IntervalEstimated {
			how = "estimated"
		}
		fmt.Fprintf(tw, "  %s:\tkeeping %d daily, %d weekly, %d monthly;\ta backup every %s (%s);\tsize trend: %s\n",
			t, po.Daily, po.Weekly, po.Monthly, shortDuration(tf.Interval), how, trend)
	}
	fmt.Fprintf(tw, "  WAL:\t%s archived per day;\tkept for the %s point-in-time window\t\n", backup.FormatBytes(int64(rep.WALBytesPerDay)), r.PITRWindow)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MONTH\tRETAINED BACKUPS\tBACKUPS\tWAL\tTOTAL\t")
	for _, m := range rep.Months {
		var parts []string
		for _, t := range []backup.Type{backup.Physical, backup.Logical} {
			if n, ok := m.Retained[t]; ok {
				parts = append(parts, fmt.Sprintf("%d %s", n, t))
			}
		}
		retained := fmt.Sprint(m.RetainedBackups)
		if len(parts) > 0 {
			retained += " (" + strings.Join(parts, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", m.Month, retained, backup.FormatBytes(m.BackupBytes), backup.FormatBytes(m.WALBytes), backup.FormatBytes(m.TotalBytes))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nSizes are as stored (compressed, encrypted); each month is its end, after prune.")
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "Note: %s.\n", n)
	}
}

func signedBytes(v float64) string {
	if v < 0 {
		return "-" + backup.FormatBytes(int64(-v))
	}
	return "+" + backup.FormatBytes(int64(v))
}

// shortDuration formats d without zero units: "24h", "1h30m", "45s", "120ms".
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	}
	s := d.Round(time.Minute).String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
