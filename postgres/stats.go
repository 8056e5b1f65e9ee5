package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Session is one connection to the server, from pg_stat_activity.
type Session struct {
	PID         int
	User        string
	Database    string
	Application string
	// Client is the client's address, "local" for a Unix socket.
	Client string
	// BackendType is "client backend" or "walsender" (replication, pg_basebackup).
	BackendType string
	// State is active, idle, idle in transaction, idle in transaction (aborted),
	// fastpath function call or disabled; "" when the reader may not see it.
	State string
	// StateFor is how long the session has been in State, by the server's clock.
	StateFor time.Duration
	// TransactionFor is how long its transaction has been open; 0 outside one.
	TransactionFor time.Duration
	// WaitEvent is what it waits for (type:event), "" when it does not wait.
	WaitEvent string
	// Query is the running query or, when not active, the last one (as much as
	// track_activity_query_size keeps; "<insufficient privilege>" for other
	// users' sessions without pg_read_all_stats).
	Query        string
	BackendStart time.Time
}

// IdleInTransaction reports whether s holds a transaction open while doing nothing:
// it keeps its locks and its snapshot (which stops VACUUM) until it ends.
func (s Session) IdleInTransaction() bool {
	return s.State == "idle in transaction" || s.State == "idle in transaction (aborted)"
}

// Sessions reads pg_stat_activity: the client connections and WAL senders other
// than conn's own, oldest first. Durations are measured by the server's clock, so
// a skewed client clock does not distort them.
func Sessions(ctx context.Context, conn *pgx.Conn) ([]Session, error) {
	rows, err := conn.Query(ctx, `SELECT pid, coalesce(usename, ''), coalesce(datname, ''), coalesce(application_name, ''),
		CASE WHEN client_addr IS NOT NULL THEN host(client_addr) WHEN client_port = -1 THEN 'local' ELSE '' END,
		backend_type, coalesce(state, ''),
		coalesce(extract(epoch FROM clock_timestamp() - state_change), 0)::float8,
		coalesce(extract(epoch FROM clock_timestamp() - xact_start), 0)::float8,
		coalesce(wait_event_type || ':' || wait_event, ''), coalesce(query, ''), backend_start
		FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND backend_type IN ('client backend', 'walsender')
		ORDER BY backend_start, pid`)
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	var out []Session
	var s Session
	var stateFor, xactFor float64
	_, err = pgx.ForEachRow(rows, []any{&s.PID, &s.User, &s.Database, &s.Application, &s.Client, &s.BackendType, &s.State,
		&stateFor, &xactFor, &s.WaitEvent, &s.Query, &s.BackendStart}, func() error {
		s.StateFor = seconds(stateFor)
		s.TransactionFor = seconds(xactFor)
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_activity: %w", err)
	}
	return out, nil
}

func seconds(f float64) time.Duration {
	return time.Duration(f * float64(time.Second)).Round(time.Millisecond)
}

// ConnectionUsage is how many of the server's connection slots are taken.
type ConnectionUsage struct {
	// Used counts client connections, the caller's included (WAL senders have
	// slots of their own, max_wal_senders).
	Used int
	// Max is max_connections; SuperuserReserved (superuser_reserved_connections)
	// and Reserved (reserved_connections, PostgreSQL 16 and newer, for roles with
	// pg_use_reserved_connections) of them are kept back from everyone else.
	Max, SuperuserReserved, Reserved int
}

// Available is how many more ordinary (non-superuser) connections the server accepts.
func (u ConnectionUsage) Available() int {
	return max(0, u.Max-u.SuperuserReserved-u.Reserved-u.Used)
}

// Connections reads how many connection slots are taken and how many there are.
func Connections(ctx context.Context, conn *pgx.Conn) (ConnectionUsage, error) {
	var u ConnectionUsage
	var reserved *string
	err := conn.QueryRow(ctx, `SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int,
		current_setting('reserved_connections', true),
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int`).Scan(
		&u.Max, &u.SuperuserReserved, &reserved, &u.Used)
	if err != nil {
		return u, fmt.Errorf("read connection usage: %w", err)
	}
	if reserved != nil && *reserved != "" {
		if n, err := strconv.Atoi(*reserved); err == nil {
			u.Reserved = n
		}
	}
	return u, nil
}

// DatabaseStats is one database of the cluster.
type DatabaseStats struct {
	Name string
	// Size is pg_database_size; nil when the reader may not connect to it.
	Size *int64
	// Connections is pg_stat_database.numbackends.
	Connections int
	// CacheHitRatio is blocks found in shared buffers over blocks read; nil before
	// any block was read.
	CacheHitRatio *float64
}

// ServerStats is an overview of the server, as hestami db info shows it.
type ServerStats struct {
	// Version is server_version (15.8 (Debian 15.8-1)), VersionNum server_version_num.
	Version    string
	VersionNum int
	// Database is the database the overview was read in.
	Database   string
	StartedAt  time.Time
	Uptime     time.Duration
	InRecovery bool
	// ArchiveMode is archive_mode (off, on, always); WALSegmentSize in bytes.
	ArchiveMode    string
	WALSegmentSize uint64
	Connections    ConnectionUsage
	// CacheHitRatio is over every database (pg_stat_database); nil before any
	// block was read.
	CacheHitRatio *float64
	// Databases, largest first (those of unknown size last), templates left out.
	Databases []DatabaseStats
}

// ServerOverview reads the server's version, uptime, connection usage, cache hit
// ratios and database sizes. It needs no privilege beyond connecting; databases the
// reader may not connect to are listed without a size.
func ServerOverview(ctx context.Context, conn *pgx.Conn) (*ServerStats, error) {
	var s ServerStats
	var uptime float64
	var segBytes int64
	err := conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('server_version_num')::int,
		current_database(), pg_postmaster_start_time(),
		extract(epoch FROM clock_timestamp() - pg_postmaster_start_time())::float8,
		pg_is_in_recovery(), current_setting('archive_mode'),
		(SELECT setting::bigint * CASE unit WHEN 'B' THEN 1 WHEN 'kB' THEN 1024 WHEN '8kB' THEN 8192 WHEN 'MB' THEN 1048576 ELSE 1 END
			FROM pg_settings WHERE name = 'wal_segment_size')`).Scan(
		&s.Version, &s.VersionNum, &s.Database, &s.StartedAt, &uptime, &s.InRecovery, &s.ArchiveMode,
		&segBytes)
	if err != nil {
		return nil, fmt.Errorf("read server settings: %w", err)
	}
	s.Uptime = seconds(uptime)
	s.WALSegmentSize = uint64(segBytes)
	if s.Connections, err = Connections(ctx, conn); err != nil {
		return nil, err
	}
	if err := conn.QueryRow(ctx, `SELECT CASE WHEN sum(blks_hit + blks_read) > 0
		THEN (sum(blks_hit)::float8 / sum(blks_hit + blks_read)::float8) END FROM pg_stat_database`).Scan(&s.CacheHitRatio); err != nil {
		return nil, fmt.Errorf("read pg_stat_database: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT d.datname,
		CASE WHEN has_database_privilege(d.oid, 'CONNECT') THEN pg_database_size(d.oid) END,
		coalesce(s.numbackends, 0),
		CASE WHEN s.blks_hit + s.blks_read > 0 THEN s.blks_hit::float8 / (s.blks_hit + s.blks_read)::float8 END
		FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid
		WHERE NOT d.datistemplate
		ORDER BY 2 DESC NULLS LAST, 1`)
	if err != nil {
		return nil, fmt.Errorf("read database sizes: %w", err)
	}
	var d DatabaseStats
	_, err = pgx.ForEachRow(rows, []any{&d.Name, &d.Size, &d.Connections, &d.CacheHitRatio}, func() error {
		s.Databases = append(s.Databases, d)
		d = DatabaseStats{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read database sizes: %w", err)
	}
	return &s, nil
}

// TableSize is the disk space of one table of the current database.
type TableSize struct {
	Schema, Name string
	// Total is Table plus Indexes. Table includes its TOAST data and free space
	// map; Indexes is every index on it.
	Total, Table, Indexes int64
	// Rows is the planner's estimate (pg_class.reltuples); -1 before the table
	// was first vacuumed or analyzed.
	Rows int64
}

// LargestTables returns the n largest tables and materialized views of the
// current database by total size, largest first, system catalogs left out.
func LargestTables(ctx context.Context, conn *pgx.Conn, n int) ([]TableSize, error) {
	rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname, pg_total_relation_size(c.oid), pg_table_size(c.oid),
		pg_indexes_size(c.oid), c.reltuples::bigint
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
		ORDER BY 3 DESC, 1, 2 LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("read table sizes: %w", err)
	}
	var out []TableSize
	var t TableSize
	_, err = pgx.ForEachRow(rows, []any{&t.Schema, &t.Name, &t.Total, &t.Table, &t.Indexes, &t.Rows}, func() error {
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read table sizes: %w", err)
	}
	return out, nil
}
