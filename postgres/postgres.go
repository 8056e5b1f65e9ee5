// Package postgres talks to PostgreSQL: connections through pgx, the replication
// protocol for base backups, and PostgreSQL's own tools run as processes.
package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hestami/hestami/backup"
)

// Connect opens a connection for connString (a libpq keyword/value string or URL; empty
// fields fall back to the PG* environment and libpq defaults).
func Connect(ctx context.Context, connString string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("database connection settings: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s:%d as %s: %w (check PGHOST, PGPORT, PGUSER, PGPASSWORD or the postgres section of the config)",
			cfg.Host, cfg.Port, cfg.User, err)
	}
	return conn, nil
}

// ServerInfo is what a backup records about the server.
type ServerInfo struct {
	SystemIdentifier uint64
	VersionNum       int
	WALSegmentSize   uint64
	InRecovery       bool
	ArchiveMode      string
}

// Info reads the server's identity and settings.
func Info(ctx context.Context, conn *pgx.Conn) (ServerInfo, error) {
	var si ServerInfo
	var sysid int64
	err := conn.QueryRow(ctx, `SELECT (SELECT system_identifier FROM pg_control_system()),
		current_setting('server_version_num')::int,
		pg_is_in_recovery(), current_setting('archive_mode')`).Scan(&sysid, &si.VersionNum, &si.InRecovery, &si.ArchiveMode)
	if err != nil {
		return si, fmt.Errorf("read server information: %w", err)
	}
	si.SystemIdentifier = uint64(sysid)
	// wal_segment_size is reported with a unit; ask for bytes explicitly.
	var bytes int64
	if err := conn.QueryRow(ctx, `SELECT setting::bigint * CASE unit WHEN 'B' THEN 1 WHEN 'kB' THEN 1024 WHEN '8kB' THEN 8192 WHEN 'MB' THEN 1048576 ELSE 1 END
		FROM pg_settings WHERE name = 'wal_segment_size'`).Scan(&bytes); err == nil {
		si.WALSegmentSize = uint64(bytes)
	}
	return si, nil
}

// ArchiverStats reads pg_stat_archiver and the current WAL position.
func ArchiverStats(ctx context.Context, conn *pgx.Conn, segSize uint64) (*backup.ArchiverStats, error) {
	var s backup.ArchiverStats
	var lastArchived, lastFailed, current *string
	err := conn.QueryRow(ctx, `SELECT archived_count, last_archived_wal, last_archived_time,
		failed_count, last_failed_wal, last_failed_time,
		CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END
		FROM pg_stat_archiver`).Scan(&s.ArchivedCount, &lastArchived, &s.LastArchivedTime,
		&s.FailedCount, &lastFailed, &s.LastFailedTime, &current)
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_archiver: %w", err)
	}
	if lastArchived != nil {
		s.LastArchivedWAL = *lastArchived
	}
	if lastFailed != nil {
		s.LastFailedWAL = *lastFailed
	}
	if current != nil {
		s.CurrentWAL = *current
	}
	if s.LastArchivedTime != nil {
		s.LagSeconds = time.Since(*s.LastArchivedTime).Seconds()
	}
	if cur, err := backup.ParseWALName(s.CurrentWAL); err == nil {
		if last, err := backup.ParseWALName(s.LastArchivedWAL); err == nil && last.Kind == backup.WALSegment {
			if d := int64(cur.SegNo(segSize)) - int64(last.SegNo(segSize)) - 1; d > 0 {
				s.LagSegments = d
			}
		} else if s.LastArchivedWAL == "" {
			s.LagSegments = int64(cur.SegNo(segSize))
		}
	}
	return &s, nil
}
