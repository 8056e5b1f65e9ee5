package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/postgres"
)

// ANSI styles for what needs attention, used only when stdout is a terminal.
const (
	ansiAlert = "\x1b[1;31m" // bold red
	ansiReset = "\x1b[0m"
	ansiClear = "\x1b[H\x1b[2J" // cursor home, clear screen
)

func (p *Program) dbCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Work on the platform's PostgreSQL: psql, live connections, schema migrations, sizes and health",
		Long: `psql, connections and info work on the database in the postgres section of the
configuration (the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE).
migrate works on the auth service's database (HESTAMI_DATABASE_URL / auth.database_url,
else the libpq variables), as hestami auth serve does. See docs/cli.md.`,
	}
	cmd.AddCommand(p.dbPsqlCommand(), p.dbConnectionsCommand(), p.dbMigrateCommand(), p.dbInfoCommand())
	return cmd
}

// isTerminal reports whether f is an *os.File open on a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// connectDB connects to the configured server (the postgres section), to database
// db ("": the configured one).
func (p *Program) connectDB(ctx context.Context, db string) (*pgx.Conn, error) {
	return postgres.Connect(ctx, p.cfg.Postgres.ConnString(db))
}

// --- db psql

func (p *Program) dbPsqlCommand() *cobra.Command {
	var database string
	cmd := &cobra.Command{
		Use:   "psql [--database NAME] [-- PSQL ARGUMENTS...]",
		Short: "Run psql on the configured database",
		Long: `Runs psql with the connection of the postgres section (host, port, user, database)
in its environment. The password goes to psql in PGPASSWORD, in psql's environment
only, never on a command line. Arguments after -- go to psql unchanged. hestami exits
with psql's status.

psql is taken from postgres.bin_dir (HESTAMI_PG_BINDIR) when set, else from the newest
PostgreSQL installation under /usr/lib/postgresql, else from PATH.`,
		Example: `  hestami db psql
  hestami db psql --database hestami
  hestami db psql -- -c 'select count(*) from users'
  hestami db psql -- -f fix.sql --set ON_ERROR_STOP=1`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := p.findPsql()
			if err != nil {
				return err
			}
			c := p.psqlCommand(path, database, args)
			// Not CommandContext: Ctrl-C reaches psql too, which cancels the running
			// query and carries on; hestami waits for it.
			if err := c.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) && ee.ExitCode() > 0 {
					return &exitError{code: ee.ExitCode(), err: fmt.Errorf("psql exited with status %d", ee.ExitCode())}
				}
				return fmt.Errorf("run %s: %w", path, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&database, "database", "", "database to connect to (default: postgres.database, PGDATABASE)")
	return cmd
}

// libpqVars are the variables psql gets from the configuration, replacing any of
// this process's environment.
var libpqVars = []string{"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"}

// psqlCommand returns psql at path with args, connecting to database ("": the
// configured one) through its environment.
func (p *Program) psqlCommand(path, database string, args []string) *exec.Cmd {
	pg := p.cfg.Postgres
	if database == "" {
		database = pg.Database
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(libpqVars, k)
	})
	env = append(env, pg.Env()...)
	if database != "" {
		env = append(env, "PGDATABASE="+database)
	}
	c := exec.Command(path, args...)
	c.Env = env
	c.Stdin, c.Stdout, c.Stderr = p.Stdin, p.Stdout, p.Stderr
	return c
}

// findPsql locates psql: in postgres.bin_dir only, when that is set; else in the
// newest server installation, else on PATH.
func (p *Program) findPsql() (string, error) {
	if dir := p.cfg.Postgres.BinDir; dir != "" {
		path := filepath.Join(dir, "psql")
		if executableFile(path) {
			return path, nil
		}
		return "", fmt.Errorf("no psql in postgres.bin_dir %s (HESTAMI_PG_BINDIR): point it at the directory holding psql (for example /usr/lib/postgresql/17/bin) or unset it", dir)
	}
	if b, err := postgres.FindBinaries(0); err == nil && executableFile(b.Path("psql")) {
		return b.Path("psql"), nil
	}
	if path, err := exec.LookPath("psql"); err == nil {
		return path, nil
	}
	return "", errors.New("psql not found in /usr/lib/postgresql/*/bin or on PATH: install the PostgreSQL client (apt-get install postgresql-client) or set postgres.bin_dir (HESTAMI_PG_BINDIR) to the directory holding psql")
}

func executableFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}

// --- db connections

// connectionGroup counts the sessions of one state, application and client.
type connectionGroup struct {
	State       string `json:"state"`
	Application string `json:"application"`
	Client      string `json:"client"`
	Count       int    `json:"count"`
}

// sessionJSON is a session held idle in a transaction.
type sessionJSON struct {
	PID                int     `json:"pid"`
	User               string  `json:"user"`
	Database           string  `json:"database"`
	Application        string  `json:"application"`
	Client             string  `json:"client"`
	State              string  `json:"state"`
	StateSeconds       float64 `json:"state_seconds"`
	TransactionSeconds float64 `json:"transaction_seconds"`
	Query              string  `json:"query"`
}

// connectionUsage is postgres.ConnectionUsage as the CLI prints it.
type connectionUsage struct {
	Used              int     `json:"used"`
	Max               int     `json:"max_connections"`
	SuperuserReserved int     `json:"superuser_reserved_connections"`
	Reserved          int     `json:"reserved_connections"`
	Available         int     `json:"available"`
	UsageRatio        float64 `json:"usage_ratio"`
}

func usageOf(u postgres.ConnectionUsage) connectionUsage {
	c := connectionUsage{Used: u.Used, Max: u.Max, SuperuserReserved: u.SuperuserReserved, Reserved: u.Reserved, Available: u.Available()}
	if u.Max > 0 {
		c.UsageRatio = float64(u.Used) / float64(u.Max)
	}
	return c
}

// connectionsReport is what db connections shows.
type connectionsReport struct {
	At time.Time `json:"at"`
	// Sessions counts client connections and WAL senders, this one left out.
	Sessions    int             `json:"sessions"`
	Connections connectionUsage `json:"connections"`
	ByState     map[string]int  `json:"by_state"`
	// Groups are by state, application and client, most sessions first.
	Groups               []connectionGroup `json:"groups"`
	IdleThresholdSeconds float64           `json:"idle_threshold_seconds"`
	// IdleInTransaction are the sessions idle in a transaction for longer than the
	// threshold, longest first.
	IdleInTransaction []sessionJSON `json:"idle_in_transaction"`
}

func (p *Program) dbConnectionsCommand() *cobra.Command {
	var o struct {
		asJSON        bool
		watch         time.Duration
		idleThreshold time.Duration
	}
	cmd := &cobra.Command{
		Use:   "connections [--watch 2s] [--idle-threshold 5m] [--json]",
		Short: "Who is connected: sessions by state, application and client; long idle transactions",
		Long: `Reads pg_stat_activity on the configured server: the client connections and WAL
senders counted by state, application_name and client address, against
max_connections; then every session idle in a transaction for longer than
--idle-threshold. Such a session holds its locks and keeps VACUUM from removing dead
rows until it ends: find its application, or end it with
SELECT pg_terminate_backend(PID). On a terminal they are shown in red.

--watch refreshes every interval until Ctrl-C. Without pg_read_all_stats (or
superuser), other users' sessions show no state or query.`,
		Example: `  hestami db connections
  hestami db connections --watch 2s --idle-threshold 1m
  hestami db connections --json | jq '.idle_in_transaction[].pid'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.watch < 0 || (o.watch > 0 && o.watch < 100*time.Millisecond) {
				return usageError{fmt.Errorf("--watch %s: give an interval of at least 100ms", o.watch)}
			}
			if o.idleThreshold < 0 {
				return usageError{fmt.Errorf("--idle-threshold %s: must not be negative", o.idleThreshold)}
			}
			ctx := cmd.Context()
			color := isTerminal(p.Stdout) && !o.asJSON
			draw := func(conn *pgx.Conn) error {
				rep, err := readConnections(ctx, conn, o.idleThreshold)
				if err != nil {
					return err
				}
				if o.asJSON {
					return p.printJSON(rep)
				}
				if o.watch > 0 {
					if color {
						fmt.Fprint(p.Stdout, ansiClear)
					}
					fmt.Fprintf(p.Stdout, "Every %s: hestami db connections (Ctrl-C to stop)\n", o.watch)
				}
				p.printConnections(rep, color)
				return nil
			}
			conn, err := p.connectDB(ctx, "")
			if err != nil {
				return err
			}
			defer func() {
				if conn != nil {
					_ = conn.Close(context.WithoutCancel(ctx))
				}
			}()
			if err := draw(conn); err != nil || o.watch == 0 {
				return err
			}
			tick := time.NewTicker(o.watch)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
				}
				if conn == nil {
					// The server went away on an earlier refresh: connect again.
					if conn, err = p.connectDB(ctx, ""); err != nil {
						if ctx.Err() != nil {
							return nil
						}
						fmt.Fprintf(p.Stdout, "%s: %v (retrying every %s)\n", time.Now().Format(time.TimeOnly), err, o.watch)
						continue
					}
				}
				if err := draw(conn); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					fmt.Fprintf(p.Stdout, "%s: %v (retrying every %s)\n", time.Now().Format(time.TimeOnly), err, o.watch)
					_ = conn.Close(context.WithoutCancel(ctx))
					conn = nil
				}
			}
		},
	}
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print JSON (with --watch, one document per refresh)")
	cmd.Flags().DurationVar(&o.watch, "watch", 0, "refresh every interval until Ctrl-C (e.g. 2s)")
	cmd.Flags().DurationVar(&o.idleThreshold, "idle-threshold", 5*time.Minute, "list sessions idle in a transaction for longer than this")
	return cmd
}

// readConnections reads the sessions and groups them.
func readConnections(ctx context.Context, conn *pgx.Conn, idleThreshold time.Duration) (*connectionsReport, error) {
	sessions, err := postgres.Sessions(ctx, conn)
	if err != nil {
		return nil, err
	}
	usage, err := postgres.Connections(ctx, conn)
	if err != nil {
		return nil, err
	}
	rep := &connectionsReport{
		At: time.Now().UTC(), Sessions: len(sessions), Connections: usageOf(usage), ByState: map[string]int{},
		Groups: []connectionGroup{}, IdleThresholdSeconds: idleThreshold.Seconds(), IdleInTransaction: []sessionJSON{},
	}
	groups := map[connectionGroup]int{}
	for _, s := range sessions {
		state := s.State
		if state == "" {
			state = "unknown"
		}
		if s.BackendType == "walsender" {
			state = "replication (" + state + ")"
		}
		rep.ByState[state]++
		groups[connectionGroup{State: state, Application: s.Application, Client: s.Client}]++
		if s.IdleInTransaction() && s.StateFor > idleThreshold {
			rep.IdleInTransaction = append(rep.IdleInTransaction, sessionJSON{
				PID: s.PID, User: s.User, Database: s.Database, Application: s.Application, Client: s.Client, State: s.State,
				StateSeconds: s.StateFor.Seconds(), TransactionSeconds: s.TransactionFor.Seconds(), Query: s.Query,
			})
		}
	}
	for g, n := range groups {
		g.Count = n
		rep.Groups = append(rep.Groups, g)
	}
	slices.SortFunc(rep.Groups, func(a, b connectionGroup) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.State+"\x00"+a.Application+"\x00"+a.Client, b.State+"\x00"+b.Application+"\x00"+b.Client)
	})
	slices.SortFunc(rep.IdleInTransaction, func(a, b sessionJSON) int {
		if a.StateSeconds != b.StateSeconds {
			if a.StateSeconds > b.StateSeconds {
				return -1
			}
			return 1
		}
		return a.PID - b.PID
	})
	return rep, nil
}

func (p *Program) printConnections(rep *connectionsReport, color bool) {
	w := p.Stdout
	u := rep.Connections
	fmt.Fprintf(w, "%s  %d of %d connections used (%.0f%%; %d reserved for superusers",
		rep.At.Local().Format(time.DateTime), u.Used, u.Max, 100*u.UsageRatio, u.SuperuserReserved)
	if u.Reserved > 0 {
		fmt.Fprintf(w, ", %d for pg_use_reserved_connections", u.Reserved)
	}
	fmt.Fprintf(w, "; %d more available)\n", u.Available)
	states := make([]string, 0, len(rep.ByState))
	for s := range rep.ByState {
		states = append(states, s)
	}
	slices.Sort(states)
	for i, s := range states {
		states[i] = fmt.Sprintf("%s %d", s, rep.ByState[s])
	}
	if len(states) > 0 {
		fmt.Fprintf(w, "By state: %s\n", strings.Join(states, ", "))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tAPPLICATION\tCLIENT\tSESSIONS")
	for _, g := range rep.Groups {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", g.State, orDash(g.Application), orDash(g.Client), g.Count)
	}
	tw.Flush()
	fmt.Fprintln(w)
	threshold := time.Duration(rep.IdleThresholdSeconds * float64(time.Second))
	if len(rep.IdleInTransaction) == 0 {
		fmt.Fprintf(w, "No session idle in a transaction for longer than %s.\n", elapsed(threshold))
		return
	}
	head := fmt.Sprintf("%d session(s) idle in a transaction for longer than %s: they hold locks and hold back VACUUM. Fix the application, or end one with SELECT pg_terminate_backend(PID).",
		len(rep.IdleInTransaction), elapsed(threshold))
	// Render the table plain, then colour whole lines, so that escape codes do
	// not upset tabwriter's column widths.
	var buf bytes.Buffer
	tw = tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tUSER\tDATABASE\tAPPLICATION\tCLIENT\tIDLE FOR\tIN TRANSACTION FOR\tLAST QUERY")
	for _, s := range rep.IdleInTransaction {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.PID, orDash(s.User), orDash(s.Database), orDash(s.Application), orDash(s.Client),
			elapsed(durationOf(s.StateSeconds)), elapsed(durationOf(s.TransactionSeconds)), firstLine(s.Query, 80))
	}
	tw.Flush()
	lines := strings.SplitAfter(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if color {
		fmt.Fprintln(w, ansiAlert+head+ansiReset)
		fmt.Fprintln(w, strings.TrimSuffix(lines[0], "\n"))
		for _, l := range lines[1:] {
			fmt.Fprintln(w, ansiAlert+strings.TrimSuffix(l, "\n")+ansiReset)
		}
		return
	}
	fmt.Fprintln(w, head)
	fmt.Fprint(w, buf.String())
}

// durationOf converts seconds to a Duration.
func durationOf(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// elapsed formats how long something has lasted: 350ms, 42s, 5m3s, 2h5m, 3d4h.
func elapsed(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	default:
		days := int(d / (24 * time.Hour))
		return fmt.Sprintf("%dd%dh", days, int((d%(24*time.Hour))/time.Hour))
	}
}

// firstLine returns s's first non-empty line, cut to n runes.
func firstLine(s string, n int) string {
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			if r := []rune(l); len(r) > n {
				return string(r[:n-1]) + "…"
			}
			return l
		}
	}
	return "-"
}

// --- db migrate

// migrationJSON is one migration as db migrate prints it.
type migrationJSON struct {
	Version   int        `json:"version"`
	Name      string     `json:"name"`
	Applied   bool       `json:"applied"`
	AppliedAt *time.Time `json:"applied_at,omitempty"`
	// Modified: applied from a file that differs from this hestami's.
	Modified bool `json:"modified"`
	// Unknown: the database has it, this hestami does not know it.
	Unknown bool `json:"unknown"`
}

func migrationsJSON(ms []postgres.MigrationStatus) []migrationJSON {
	out := make([]migrationJSON, 0, len(ms))
	for _, m := range ms {
		j := migrationJSON{Version: m.Version, Name: m.Name, Modified: m.Modified, Unknown: m.Unknown}
		if !m.AppliedAt.IsZero() {
			at := m.AppliedAt.UTC()
			j.Applied, j.AppliedAt = true, &at
		}
		out = append(out, j)
	}
	return out
}

func migrationLabel(m postgres.MigrationStatus) string {
	return fmt.Sprintf("%04d_%s", m.Version, m.Name)
}

func (p *Program) dbMigrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "The platform's schema migrations: apply, revert, status",
		Long: `The platform's schema migrations are built into hestami: versioned, each applied
in a transaction of its own and recorded in hestami_schema_migrations, under an
advisory lock so that two hestamis never migrate at once. They run on the auth
service's database: HESTAMI_DATABASE_URL (auth.database_url), else the libpq
variables. hestami auth serve applies pending ones at start while auth.migrate is on.`,
	}
	var upJSON bool
	up := &cobra.Command{
		Use:     "up",
		Short:   "Apply every pending migration, in version order",
		Example: "  hestami db migrate up\n  HESTAMI_DATABASE_URL=postgres://hestami@db:5432/hestami hestami db migrate up --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			pool, where, err := p.migrationPool(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			done, err := postgres.MigrateUp(ctx, pool, p.logger)
			if err != nil {
				return fmt.Errorf("%w (on %s)", err, where)
			}
			if upJSON {
				return p.printJSON(migrationsJSON(done))
			}
			if len(done) == 0 {
				fmt.Fprintf(p.Stdout, "Nothing to apply: %s is up to date.\n", where)
				return nil
			}
			for _, m := range done {
				fmt.Fprintf(p.Stdout, "applied %s\n", migrationLabel(m))
			}
			fmt.Fprintf(p.Stdout, "Applied %d migration(s) to %s.\n", len(done), where)
			return nil
		},
	}
	up.Flags().BoolVar(&upJSON, "json", false, "print the applied migrations as JSON")

	var d struct {
		steps  int
		yes    bool
		asJSON bool
	}
	down := &cobra.Command{
		Use:   "down [--steps N] [--yes]",
		Short: "Revert the newest applied migrations (default: one)",
		Long: `Reverts the --steps newest applied migrations, newest first, each in its own
transaction. Reverting drops the tables and data those migrations created: back up
first (hestami backup push). On a terminal it asks for confirmation unless --yes;
without a terminal it needs --yes.`,
		Example: "  hestami db migrate down\n  hestami db migrate down --steps 2 --yes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if d.steps < 1 {
				return usageError{fmt.Errorf("--steps %d: revert at least 1", d.steps)}
			}
			ctx := cmd.Context()
			pool, where, err := p.migrationPool(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			if !d.yes {
				if !isTerminal(p.Stdin) {
					return usageError{errors.New("migrate down drops tables and their data: pass --yes to confirm (there is no terminal to ask on)")}
				}
				statuses, err := postgres.MigrationStatuses(ctx, pool)
				if err != nil {
					return fmt.Errorf("%w (on %s)", err, where)
				}
				var revert []string
				for _, m := range slices.Backward(statuses) {
					if len(revert) < d.steps && !m.Unknown && !m.AppliedAt.IsZero() {
						revert = append(revert, migrationLabel(m))
					}
				}
				if len(revert) == 0 {
					fmt.Fprintf(p.Stdout, "Nothing to revert: %s has no migration applied.\n", where)
					return nil
				}
				fmt.Fprintf(p.Stdout, "Revert %s on %s? Their tables and data are dropped. [y/N] ", strings.Join(revert, ", "), where)
				answer, _ := bufio.NewReader(p.Stdin).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return errors.New("not confirmed: nothing reverted")
				}
			}
			done, err := postgres.MigrateDown(ctx, pool, d.steps, p.logger)
			if err != nil {
				return fmt.Errorf("%w (on %s)", err, where)
			}
			if d.asJSON {
				return p.printJSON(migrationsJSON(done))
			}
			for _, m := range done {
				fmt.Fprintf(p.Stdout, "reverted %s\n", migrationLabel(m))
			}
			fmt.Fprintf(p.Stdout, "Reverted %d migration(s) on %s.\n", len(done), where)
			return nil
		},
	}
	down.Flags().IntVar(&d.steps, "steps", 1, "how many applied migrations to revert, newest first")
	down.Flags().BoolVar(&d.yes, "yes", false, "do not ask for confirmation")
	down.Flags().BoolVar(&d.asJSON, "json", false, "print the reverted migrations as JSON")

	var statusJSON bool
	status := &cobra.Command{
		Use:     "status",
		Short:   "List the migrations: applied (when) or pending, and any modified or unknown",
		Example: "  hestami db migrate status\n  hestami db migrate status --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			pool, where, err := p.migrationPool(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			statuses, err := postgres.MigrationStatuses(ctx, pool)
			if err != nil {
				return fmt.Errorf("%w (on %s)", err, where)
			}
			if statusJSON {
				return p.printJSON(migrationsJSON(statuses))
			}
			p.printMigrationStatus(statuses, where)
			return nil
		},
	}
	status.Flags().BoolVar(&statusJSON, "json", false, "print JSON")
	cmd.AddCommand(up, down, status)
	return cmd
}

func (p *Program) printMigrationStatus(statuses []postgres.MigrationStatus, where string) {
	var applied, pending int
	var notes []string
	tw := tabwriter.NewWriter(p.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED AT\tNOTE")
	for _, m := range statuses {
		at, note := "pending", ""
		if !m.AppliedAt.IsZero() {
			applied++
			at = fmtTime(&m.AppliedAt)
		} else {
			pending++
		}
		switch {
		case m.Unknown:
			note = "UNKNOWN to this hestami"
			notes = append(notes, fmt.Sprintf("%s was applied by a newer hestami: run that version's hestami db migrate, or upgrade", migrationLabel(m)))
		case m.Modified:
			note = "MODIFIED"
			notes = append(notes, fmt.Sprintf("%s was applied from a file that differs from this hestami's: the database keeps what was applied", migrationLabel(m)))
		}
		fmt.Fprintf(tw, "%04d\t%s\t%s\t%s\n", m.Version, m.Name, at, note)
	}
	tw.Flush()
	fmt.Fprintf(p.Stdout, "\n%d applied, %d pending on %s", applied, pending, where)
	if pending > 0 {
		fmt.Fprint(p.Stdout, " (hestami db migrate up applies them)")
	}
	fmt.Fprintln(p.Stdout)
	for _, n := range notes {
		fmt.Fprintln(p.Stdout, n)
	}
}

// migrationPool opens the auth service's database, as hestami auth serve does,
// and says which database it is (for messages; never the password).
func (p *Program) migrationPool(ctx context.Context) (*pgxpool.Pool, string, error) {
	pool, err := postgres.OpenPool(ctx, p.cfg.Auth.DatabaseURL)
	if err != nil {
		return nil, "", err
	}
	c := pool.Config().ConnConfig
	return pool, fmt.Sprintf("database %q at %s:%d", c.Database, c.Host, c.Port), nil
}

// --- db info

// dbInfo is what db info shows.
type dbInfo struct {
	Server struct {
		Version       string    `json:"version"`
		VersionNum    int       `json:"version_num"`
		StartedAt     time.Time `json:"started_at"`
		UptimeSeconds float64   `json:"uptime_seconds"`
		InRecovery    bool      `json:"in_recovery"`
	} `json:"server"`
	// Database is the one the tables are listed for.
	Database    string          `json:"database"`
	Connections connectionUsage `json:"connections"`
	// CacheHitRatio is over every database; null before any block was read.
	CacheHitRatio *float64       `json:"cache_hit_ratio"`
	Databases     []databaseJSON `json:"databases"`
	Tables        []tableJSON    `json:"tables"`
	Archiving     archivingJSON  `json:"archiving"`
}

type databaseJSON struct {
	Name          string   `json:"name"`
	SizeBytes     *int64   `json:"size_bytes"`
	Connections   int      `json:"connections"`
	CacheHitRatio *float64 `json:"cache_hit_ratio"`
}

type tableJSON struct {
	Schema       string `json:"schema"`
	Name         string `json:"name"`
	TotalBytes   int64  `json:"total_bytes"`
	TableBytes   int64  `json:"table_bytes"`
	IndexBytes   int64  `json:"index_bytes"`
	RowsEstimate int64  `json:"rows_estimate"`
}

type archivingJSON struct {
	Mode string `json:"archive_mode"`
	*backup.ArchiverStats
}

func (p *Program) dbInfoCommand() *cobra.Command {
	var o struct {
		database string
		top      int
		asJSON   bool
	}
	cmd := &cobra.Command{
		Use:   "info [--database NAME] [--top 10] [--json]",
		Short: "Server version and uptime, database and largest table sizes, cache hits, archiving, connections",
		Long: `An overview of the configured server: version, uptime and whether it is in
recovery (a standby, or a restore replaying WAL); connections against
max_connections; the cache hit ratio (pg_stat_database: blocks found in shared
buffers over blocks read; a busy database much under 99% may want more
shared_buffers); the archiver (pg_stat_archiver: archived and failed WAL, the last of
each); every database's size; and the --top largest tables of the database
(--database, else the configured one) with their table and index sizes.`,
		Example: `  hestami db info
  hestami db info --database hestami --top 20
  hestami db info --json | jq .cache_hit_ratio`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.top < 0 {
				return usageError{fmt.Errorf("--top %d: must not be negative", o.top)}
			}
			ctx := cmd.Context()
			conn, err := p.connectDB(ctx, o.database)
			if err != nil {
				return err
			}
			defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
			info, err := readInfo(ctx, conn, o.top)
			if err != nil {
				return err
			}
			if o.asJSON {
				return p.printJSON(info)
			}
			p.printInfo(info, isTerminal(p.Stdout))
			return nil
		},
	}
	cmd.Flags().StringVar(&o.database, "database", "", "database whose tables to list (default: postgres.database, PGDATABASE)")
	cmd.Flags().IntVar(&o.top, "top", 10, "how many of the largest tables to list")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print JSON")
	return cmd
}

func readInfo(ctx context.Context, conn *pgx.Conn, top int) (*dbInfo, error) {
	st, err := postgres.ServerOverview(ctx, conn)
	if err != nil {
		return nil, err
	}
	info := &dbInfo{Database: st.Database, Connections: usageOf(st.Connections), CacheHitRatio: st.CacheHitRatio,
		Databases: []databaseJSON{}, Tables: []tableJSON{}}
	info.Server.Version, info.Server.VersionNum = st.Version, st.VersionNum
	info.Server.StartedAt, info.Server.UptimeSeconds, info.Server.InRecovery = st.StartedAt.UTC(), st.Uptime.Seconds(), st.InRecovery
	for _, d := range st.Databases {
		info.Databases = append(info.Databases, databaseJSON{Name: d.Name, SizeBytes: d.Size, Connections: d.Connections, CacheHitRatio: d.CacheHitRatio})
	}
	if top > 0 {
		tables, err := postgres.LargestTables(ctx, conn, top)
		if err != nil {
			return nil, err
		}
		for _, t := range tables {
			info.Tables = append(info.Tables, tableJSON{Schema: t.Schema, Name: t.Name, TotalBytes: t.Total, TableBytes: t.Table, IndexBytes: t.Indexes, RowsEstimate: t.Rows})
		}
	}
	seg := st.WALSegmentSize
	if seg == 0 {
		seg = backup.DefaultSegmentSize
	}
	arch, err := postgres.ArchiverStats(ctx, conn, seg)
	if err != nil {
		return nil, err
	}
	info.Archiving = archivingJSON{Mode: st.ArchiveMode, ArchiverStats: arch}
	return info, nil
}

func (p *Program) printInfo(info *dbInfo, color bool) {
	w := p.Stdout
	alert := func(s string) string {
		if color {
			return ansiAlert + s + ansiReset
		}
		return s
	}
	role := "primary"
	if info.Server.InRecovery {
		role = "in recovery (a standby, or a restore still replaying WAL)"
	}
	fmt.Fprintf(w, "Server:       PostgreSQL %s, up %s (since %s), %s\n", info.Server.Version,
		elapsed(durationOf(info.Server.UptimeSeconds)), fmtTime(&info.Server.StartedAt), role)
	u := info.Connections
	line := fmt.Sprintf("%d of %d max_connections used (%.0f%%); %d reserved for superusers", u.Used, u.Max, 100*u.UsageRatio, u.SuperuserReserved)
	if u.Reserved > 0 {
		line += fmt.Sprintf(", %d for pg_use_reserved_connections", u.Reserved)
	}
	line += fmt.Sprintf("; %d more available", u.Available)
	if u.UsageRatio >= 0.8 {
		line = alert(line + " — nearly full: pool connections (pgbouncer) or raise max_connections")
	}
	fmt.Fprintf(w, "Connections:  %s\n", line)
	fmt.Fprintf(w, "Cache hits:   %s of block reads over all databases\n", ratio(info.CacheHitRatio))
	a := info.Archiving
	fmt.Fprintf(w, "Archiving:    archive_mode %s; ", a.Mode)
	if a.LastArchivedWAL == "" {
		fmt.Fprintf(w, "nothing archived since the statistics were reset; %d failed", a.FailedCount)
	} else {
		fmt.Fprintf(w, "%d archived, last %s at %s; %d failed", a.ArchivedCount, a.LastArchivedWAL, fmtTime(a.LastArchivedTime), a.FailedCount)
	}
	if a.FailedCount > 0 {
		fmt.Fprintf(w, ", last %s at %s", orDash(a.LastFailedWAL), fmtTime(a.LastFailedTime))
	}
	fmt.Fprintln(w)
	if a.LastFailedTime != nil && (a.LastArchivedTime == nil || a.LastFailedTime.After(*a.LastArchivedTime)) {
		fmt.Fprintln(w, alert("              the last archive attempt failed: see the PostgreSQL log and docs/runbooks/troubleshooting.md"))
	}
	if a.Mode == "off" {
		fmt.Fprintln(w, "              archive_mode is off: no WAL is archived, so there is no point-in-time recovery")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tSIZE\tCONNECTIONS\tCACHE HITS")
	for _, d := range info.Databases {
		size := "no access"
		if d.SizeBytes != nil {
			size = backup.FormatBytes(*d.SizeBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", d.Name, size, d.Connections, ratio(d.CacheHitRatio))
	}
	tw.Flush()
	if len(info.Tables) == 0 {
		fmt.Fprintf(w, "\nNo tables in database %s.\n", info.Database)
		return
	}
	fmt.Fprintf(w, "\nLargest tables of database %s:\n", info.Database)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tTOTAL\tTABLE\tINDEXES\tROWS (EST.)")
	for _, t := range info.Tables {
		rows := "?"
		if t.RowsEstimate >= 0 {
			rows = fmt.Sprint(t.RowsEstimate)
		}
		fmt.Fprintf(tw, "%s.%s\t%s\t%s\t%s\t%s\n", t.Schema, t.Name, backup.FormatBytes(t.TotalBytes), backup.FormatBytes(t.TableBytes), backup.FormatBytes(t.IndexBytes), rows)
	}
	tw.Flush()
}

// ratio formats a ratio as a percentage, "-" when unknown.
func ratio(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100**r)
}
