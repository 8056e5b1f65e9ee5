package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/daemon"
)

// What the backup daemon needs of PostgreSQL: the live server (Server), throwaway
// servers for restore drills (Sandbox) and PostgreSQL's own checks of a backup
// (BackupChecks).

// tableReader reads tables over connections made with connString.
type tableReader struct {
	// connString returns the connection string for database db.
	connString func(db string) string
	// maintenance is the database to connect to for cluster-wide queries.
	maintenance string
}

func (r tableReader) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return Connect(ctx, r.connString(db))
}

// Databases implements daemon.TableReader.
func (r tableReader) Databases(ctx context.Context) ([]string, error) {
	conn, err := r.connect(ctx, r.maintenance)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database
		WHERE NOT datistemplate AND datallowconn AND has_database_privilege(oid, 'CONNECT') ORDER BY datname`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// LargestTables implements daemon.TableReader: permanent ordinary tables (unlogged
// ones are empty after a restore by design) outside the system schemas.
func (r tableReader) LargestTables(ctx context.Context, db string, n int) ([]daemon.TableSize, error) {
	conn, err := r.connect(ctx, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname, pg_total_relation_size(c.oid)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND c.relpersistence = 'p'
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
		ORDER BY 3 DESC, 1, 2 LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("list the tables of database %q: %w", db, err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (daemon.TableSize, error) {
		var t daemon.TableSize
		err := row.Scan(&t.Schema, &t.Name, &t.Bytes)
		return t, err
	})
}

// CountRows implements daemon.TableReader, in one repeatable-read transaction so the
// counts are of one moment.
func (r tableReader) CountRows(ctx context.Context, db string, tables []daemon.Table) (map[daemon.Table]daemon.TableCount, error) {
	conn, err := r.connect(ctx, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("count rows in database %q: %w", db, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	out := map[daemon.Table]daemon.TableCount{}
	for _, t := range tables {
		var c daemon.TableCount
		var found bool
		err := tx.QueryRow(ctx, `SELECT true, coalesce(s.n_tup_ins, 0), coalesce(s.n_tup_del, 0)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
			WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'`, t.Schema, t.Name).Scan(&found, &c.Inserted, &c.Deleted)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("find table %s in database %q: %w", t, db, err)
		}
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{t.Schema, t.Name}.Sanitize()).Scan(&c.Rows); err != nil {
			return nil, fmt.Errorf("count the rows of %s in database %q: %w", t, db, err)
		}
		out[t] = c
	}
	return out, nil
}

// Server is the live PostgreSQL server, as the backup daemon sees it.
type Server struct {
	tableReader
	tools Tools
}

var _ daemon.Server = (*Server)(nil)

// NewServer returns the server reached with connString(db) for each database db;
// maintenance is the database for cluster-wide work ("" for postgres); tools restore
// logical backups into it.
func NewServer(connString func(db string) string, maintenance string, tools Tools) *Server {
	if maintenance == "" {
		maintenance = "postgres"
	}
	return &Server{tableReader: tableReader{connString: connString, maintenance: maintenance}, tools: tools}
}

// Ping implements daemon.Server.
func (s *Server) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := s.connect(ctx, s.maintenance)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("query the database: %w", err)
	}
	return nil
}

// StatsSince implements daemon.Server. Since PostgreSQL 15, statistics survive a
// clean restart but not a crash, which cannot be told apart afterwards: the server's
// start counts as the beginning of its statistics either way.
func (s *Server) StatsSince(ctx context.Context, db string) (time.Time, error) {
	conn, err := s.connect(ctx, s.maintenance)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var t time.Time
	err = conn.QueryRow(ctx, `SELECT greatest(pg_postmaster_start_time(),
		coalesce((SELECT stats_reset FROM pg_stat_database WHERE datname = $1), '-infinity'))`, db).Scan(&t)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the statistics' start: %w", err)
	}
	return t, nil
}

// TableStats implements daemon.Server.
func (s *Server) TableStats(ctx context.Context, db string) (map[daemon.Table]daemon.TableCount, error) {
	conn, err := s.connect(ctx, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT schemaname, relname, n_tup_ins, n_tup_del FROM pg_stat_user_tables")
	if err != nil {
		return nil, fmt.Errorf("read the table statistics of database %q: %w", db, err)
	}
	out := map[daemon.Table]daemon.TableCount{}
	var t daemon.Table
	var c daemon.TableCount
	_, err = pgx.ForEachRow(rows, []any{&t.Schema, &t.Name, &c.Inserted, &c.Deleted}, func() error {
		out[t] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the table statistics of database %q: %w", db, err)
	}
	return out, nil
}

// SwitchWAL implements daemon.Server with pg_switch_wal(), which needs superuser or
// a grant of EXECUTE on it. pg_walfile_name names the segment the returned position
// ends.
func (s *Server) SwitchWAL(ctx context.Context) (string, error) {
	conn, err := s.connect(ctx, s.maintenance)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var name string
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&name); err != nil {
		return "", fmt.Errorf("switch WAL (pg_switch_wal; the daemon's database user needs superuser or EXECUTE on it): %w", err)
	}
	return name, nil
}

// LogicalTarget implements daemon.Server.
func (s *Server) LogicalTarget(ctx context.Context) (backup.DatabaseRestorer, func(), error) {
	conn, err := s.connect(ctx, s.maintenance)
	if err != nil {
		return nil, nil, err
	}
	return &Restorer{Tools: s.tools, Conn: conn}, func() { conn.Close(context.Background()) }, nil
}

// Sandbox starts restored data directories as throwaway servers for drills.
type Sandbox struct {
	// Dir holds the scratch directories ("": the system's temporary directory).
	Dir string
	// BinDir holds the server programs ("": found by major version, see BinariesFor).
	BinDir string
	// User and Password connect to the restored server (a role of the backed-up
	// cluster; "": postgres).
	User     string
	Password string
	Logger   *slog.Logger
}

var _ daemon.Sandbox = (*Sandbox)(nil)

// drillSettings override the restored configuration: a drill must never archive into
// the repository, and must run beside production on the same host.
var drillSettings = map[string]string{
	"archive_mode":      "off",
	"hot_standby":       "off", // accept connections only once recovery has ended
	"shared_buffers":    "128MB",
	"huge_pages":        "off",
	"ssl":               "off", // loopback only; certificates may live outside the data directory
	"logging_collector": "off",
	"max_wal_senders":   "0",
	"wal_level":         "replica",
	"max_connections":   "20",
}

// Prepare implements daemon.Sandbox: a directory the cluster user owns and can reach.
func (s *Sandbox) Prepare(ctx context.Context) (string, *backup.Owner, func(), error) {
	u, err := ClusterUser()
	if err != nil {
		return "", nil, nil, err
	}
	dir, err := os.MkdirTemp(s.Dir, "hestami-drill-")
	if err != nil {
		return "", nil, nil, fmt.Errorf("drill directory: %w", err)
	}
	remove := func() { _ = os.RemoveAll(dir) }
	var owner *backup.Owner
	if u != nil {
		owner = &backup.Owner{UID: int(u.UID), GID: int(u.GID)}
		if err := MakeTraversable(dir); err != nil {
			remove()
			return "", nil, nil, err
		}
		if err := os.Chown(dir, int(u.UID), int(u.GID)); err != nil {
			remove()
			return "", nil, nil, fmt.Errorf("drill directory: %w", err)
		}
	}
	return dir, owner, remove, nil
}

// Start implements daemon.Sandbox. A data directory restored from a server whose
// configuration lives elsewhere (Debian keeps it in /etc/postgresql) gets an empty
// postgresql.conf and a pg_hba.conf allowing password logins on loopback only.
func (s *Sandbox) Start(ctx context.Context, dataDir string, major int) (daemon.ScratchServer, error) {
	bin, err := BinariesFor(s.BinDir, major)
	if err != nil {
		return nil, err
	}
	u, err := ClusterUser()
	if err != nil {
		return nil, err
	}
	for name, content := range map[string]string{
		"postgresql.conf": "# written by hestami's restore drill: the backup had no postgresql.conf\n",
		"pg_hba.conf":     "# written by hestami's restore drill: the backup had no pg_hba.conf\nhost all all 127.0.0.1/32 md5\n",
	} {
		p := filepath.Join(dataDir, name)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				return nil, err
			}
			if err := Chown(p, u); err != nil {
				return nil, err
			}
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Bin: bin, DataDir: dataDir, Port: port, LogFile: filepath.Join(filepath.Dir(dataDir), "postgres.log"), User: u, Logger: s.Logger}
	srv := &scratchServer{c: c, bin: bin, user: s.user(), password: s.Password}
	srv.tableReader = tableReader{connString: srv.connString, maintenance: "postgres"}
	logTail := func() string {
		b, err := os.ReadFile(c.LogFile)
		if err != nil {
			return fmt.Sprintf("(no server log: %v)", err)
		}
		return LastLines(b, 30)
	}
	if err := c.Start(ctx, drillSettings); err != nil {
		return nil, err
	}
	if err := WaitRecovered(ctx, c, srv.connString("postgres"), recoveryPromote); err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = c.Stop(stopCtx)
		return nil, fmt.Errorf("%w; last lines of the server log:\n%s", err, logTail())
	}
	return srv, nil
}

func (s *Sandbox) user() string {
	if s.User != "" {
		return s.User
	}
	return "postgres"
}

// scratchServer is a server a drill started.
type scratchServer struct {
	tableReader
	c        *Cluster
	bin      Binaries
	user     string
	password string
}

func (s *scratchServer) connString(db string) string {
	q := func(v string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'" }
	cs := fmt.Sprintf("host=127.0.0.1 port=%d sslmode=disable user=%s dbname=%s", s.c.Port, q(s.user), q(db))
	if s.password != "" {
		cs += " password=" + q(s.password)
	}
	return cs
}

// Amcheck implements daemon.ScratchServer with pg_amcheck --all --install-missing:
// it checks every table and B-tree index of every database, installing the amcheck
// extension where it is missing (in the scratch server only).
func (s *scratchServer) Amcheck(ctx context.Context) error {
	prog := s.bin.Path("pg_amcheck")
	if _, err := os.Stat(prog); err != nil {
		return fmt.Errorf("%w: %s", daemon.ErrToolMissing, prog)
	}
	cmd := exec.CommandContext(ctx, prog, "--all", "--install-missing", "--no-password",
		"--host=127.0.0.1", "--port="+strconv.Itoa(s.c.Port), "--username="+s.user, "--maintenance-db=postgres")
	cmd.Env = append(os.Environ(), "PGSSLMODE=disable", "PGPASSWORD="+s.password)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = toolStopGrace
	out := &tailBuffer{max: stderrKeep}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return &ToolError{Program: "pg_amcheck", Target: "the restored cluster", Err: err, Stderr: LastLines([]byte(out.String()), stderrLines)}
	}
	return nil
}

// Stop implements daemon.ScratchServer.
func (s *scratchServer) Stop(ctx context.Context) error { return s.c.Stop(ctx) }

// BackupChecks runs PostgreSQL's own checks of backups: pg_verifybackup and
// pg_restore --list.
type BackupChecks struct {
	// Tools holds pg_restore; pg_verifybackup is looked for beside it, then in
	// BinDir.
	Tools  Tools
	BinDir string
}

var _ daemon.BackupChecker = (*BackupChecks)(nil)

// VerifyBackup implements daemon.BackupChecker with pg_verifybackup --no-parse-wal:
// every file of the unpacked backup against backup_manifest (the WAL is checked by
// hestami's own verification instead, in the repository).
func (b *BackupChecks) VerifyBackup(ctx context.Context, dir string) error {
	prog := ""
	for _, d := range []string{b.Tools.Dir, b.BinDir} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "pg_verifybackup")); err == nil {
			prog = filepath.Join(d, "pg_verifybackup")
			break
		}
	}
	if prog == "" {
		return fmt.Errorf("%w: pg_verifybackup (in the postgresql package)", daemon.ErrToolMissing)
	}
	cmd := exec.CommandContext(ctx, prog, "--no-parse-wal", "--quiet", dir)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = toolStopGrace
	out := &tailBuffer{max: stderrKeep}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return &ToolError{Program: "pg_verifybackup", Target: dir, Err: err, Stderr: LastLines([]byte(out.String()), stderrLines)}
	}
	return nil
}

// ListArchive implements daemon.BackupChecker with pg_restore --list, which reads
// the archive's table of contents. The rest of r is drained, so a caller that checks
// r's checksum at its end still does.
func (b *BackupChecks) ListArchive(ctx context.Context, r io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, stderr := b.Tools.command(ctx, "pg_restore", "--list")
	cmd.Stdout = io.Discard
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pg_restore: %w", err)
	}
	src := &readErrRecorder{r: r}
	// pg_restore stops reading after the table of contents: a write error then only
	// means it is done, and its exit status says how it went.
	_, _ = io.Copy(stdin, src)
	stdin.Close()
	werr := cmd.Wait()
	if src.err == nil {
		_, _ = io.Copy(io.Discard, src)
	}
	switch {
	case src.err != nil:
		return fmt.Errorf("read the archive: %w", src.err)
	case werr != nil:
		return &ToolError{Program: "pg_restore --list", Target: "the archive", Err: werr, Stderr: LastLines([]byte(stderr.String()), stderrLines)}
	}
	return nil
}
