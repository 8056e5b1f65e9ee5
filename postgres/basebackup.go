package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/hestami/hestami/backup"
)

// Source is a PostgreSQL server to take physical backups of, over the replication
// protocol (BASE_BACKUP), with ordinary connections for the rest.
type Source struct {
	// ConnString is a libpq connection string (keyword/value or URL); empty fields
	// fall back to the PG* environment. The user needs the REPLICATION attribute
	// (or superuser) and a "replication" line in pg_hba.conf.
	ConnString string
	Logger     *slog.Logger
}

var _ backup.BaseBackupSource = (*Source)(nil)

// Status implements backup.BaseBackupSource.
func (s *Source) Status(ctx context.Context) (backup.ServerStatus, error) {
	conn, err := Connect(ctx, s.ConnString)
	if err != nil {
		return backup.ServerStatus{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	si, err := Info(ctx, conn)
	if err != nil {
		return backup.ServerStatus{}, err
	}
	st := backup.ServerStatus{
		SystemIdentifier: si.SystemIdentifier,
		VersionNum:       si.VersionNum,
		WALSegmentSize:   si.WALSegmentSize,
		InRecovery:       si.InRecovery,
		ArchiveMode:      si.ArchiveMode,
	}
	// pg_tablespace_size needs CREATE on the tablespace or pg_read_all_stats; a
	// backup user may have neither: then the size is unknown, not an error.
	var size *int64
	if err := conn.QueryRow(ctx, `SELECT sum(pg_tablespace_size(oid))::bigint FROM pg_tablespace`).Scan(&size); err != nil {
		s.logger().Warn("cannot read the tablespace sizes; the free-space check is skipped", "err", err)
	} else if size != nil {
		st.DataSize = *size
	}
	return st, nil
}

// NextXID implements backup.BaseBackupSource.
func (s *Source) NextXID(ctx context.Context) (uint64, error) {
	conn, err := Connect(ctx, s.ConnString)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var xmax string
	if err := conn.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text`).Scan(&xmax); err != nil {
		return 0, fmt.Errorf("read the next transaction id: %w", err)
	}
	return strconv.ParseUint(xmax, 10, 64)
}

// replicationConn opens a physical replication connection.
func (s *Source) replicationConn(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(s.ConnString)
	if err != nil {
		return nil, fmt.Errorf("database connection settings: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	cfg.RuntimeParams["replication"] = "true"
	delete(cfg.RuntimeParams, "database") // a physical replication connection has none
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open a replication connection to %s:%d as %s: %w (the user needs the REPLICATION attribute, "+
			"pg_hba.conf a \"replication\" entry for it, and max_wal_senders a free slot)", cfg.Host, cfg.Port, cfg.User, err)
	}
	return conn, nil
}

// BaseBackup implements backup.BaseBackupSource with BASE_BACKUP (PostgreSQL 15's
// protocol): a result with the start position, one with the tablespaces, then a
// single COPY whose messages carry a type byte ('n' new archive, 'd' data, 'p'
// progress, 'm' manifest follows), then a result with the stop position. Each
// archive is handed to sink as a stream while it arrives; nothing is buffered
// beyond one message.
func (s *Source) BaseBackup(ctx context.Context, label string, sink backup.ArchiveSink) (res backup.BaseBackupResult, err error) {
	conn, err := s.replicationConn(ctx)
	if err != nil {
		return res, err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx) // after an error this aborts the backup on the server
	}()
	if v := conn.ParameterStatus("server_version"); v != "" {
		if major, err := strconv.Atoi(strings.SplitN(strings.SplitN(v, ".", 2)[0], " ", 2)[0]); err == nil && major < 15 {
			return res, fmt.Errorf("the server runs PostgreSQL %s; physical backups need PostgreSQL 15 or newer", v)
		}
	}
	sql := fmt.Sprintf("BASE_BACKUP ( LABEL %s, CHECKPOINT 'fast', MANIFEST 'yes', TABLESPACE_MAP true, WAIT false, PROGRESS true )", quoteLiteral(label))
	conn.Frontend().Send(&pgproto3.Query{String: sql})
	if err := conn.Frontend().Flush(); err != nil {
		return res, fmt.Errorf("send BASE_BACKUP: %w", err)
	}
	s.logger().Debug("BASE_BACKUP sent", "command", sql)

	var (
		rowSets int  // result sets begun: 1 start, 2 tablespaces, 3 stop
		stopped bool // the stop row was read
		cur     *stream
	)
	// finish ends the current archive's stream and returns its consumer's error.
	finish := func() error {
		if cur == nil {
			return nil
		}
		err := cur.finish()
		cur = nil
		return err
	}
	defer func() {
		if cur != nil {
			cur.abort(err)
		}
	}()
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			if cerr := context.Cause(ctx); cerr != nil && ctx.Err() != nil {
				err = cerr
			}
			return res, fmt.Errorf("base backup: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			rowSets++
		case *pgproto3.DataRow:
			switch rowSets {
			case 1:
				res.StartLSN, res.StartTimeline, err = positionRow(m.Values)
			case 2:
				var ts backup.ServerTablespace
				ts, err = tablespaceRow(m.Values)
				res.Tablespaces = append(res.Tablespaces, ts)
			case 3:
				res.StopLSN, res.StopTimeline, err = positionRow(m.Values)
				stopped = true
			}
			if err != nil {
				return res, fmt.Errorf("base backup: %w", err)
			}
		case *pgproto3.CopyOutResponse:
			sink.Started(res.StartLSN, res.StartTimeline, res.Tablespaces)
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case 'n': // new archive: name and tablespace location, NUL-terminated
				if err := finish(); err != nil {
					return res, err
				}
				name, loc, err := archiveHeader(m.Data[1:])
				if err != nil {
					return res, fmt.Errorf("base backup: %w", err)
				}
				ts, ok := tablespaceAt(res.Tablespaces, loc)
				if !ok {
					return res, fmt.Errorf("base backup: archive %s for tablespace location %q, which the server did not announce", name, loc)
				}
				s.logger().Debug("receiving archive", "archive", name, "oid", ts.OID, "location", loc)
				cur = newStream(func(r io.Reader) error { return sink.Archive(ctx, ts, r) })
			case 'm':
				if err := finish(); err != nil {
					return res, err
				}
				cur = newStream(func(r io.Reader) error { return sink.Manifest(ctx, r) })
			case 'd':
				if cur == nil {
					return res, errors.New("base backup: data before any archive")
				}
				// The message's buffer is reused by the next receive: write it through now.
				if _, err := cur.pw.Write(m.Data[1:]); err != nil {
					return res, cur.consumerErr(err)
				}
			case 'p': // progress: we count the bytes ourselves
			default: // a later protocol's message: skip it
			}
		case *pgproto3.CopyDone:
			if err := finish(); err != nil {
				return res, err
			}
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(m)
			if cur != nil {
				cur.abort(pgErr)
				cur = nil
			}
			return res, fmt.Errorf("base backup: the server failed: %w", pgErr)
		case *pgproto3.ReadyForQuery:
			if err := finish(); err != nil {
				return res, err
			}
			if !stopped {
				return res, errors.New("base backup: the server ended without reporting the stop position")
			}
			return res, nil
		}
	}
}

func (s *Source) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// stream hands one archive to its consumer through a pipe, in a goroutine.
type stream struct {
	pw   *io.PipeWriter
	done chan error
	err  error
	over bool
}

func newStream(consume func(io.Reader) error) *stream {
	pr, pw := io.Pipe()
	s := &stream{pw: pw, done: make(chan error, 1)}
	go func() {
		err := consume(pr)
		if err == nil {
			// A consumer that stopped early must not leave the writer blocked.
			pr.CloseWithError(errors.New("archive consumer stopped reading"))
		} else {
			pr.CloseWithError(err)
		}
		s.done <- err
	}()
	return s
}

// finish closes the stream and waits for the consumer's result.
func (s *stream) finish() error {
	s.pw.Close()
	return s.wait()
}

// abort fails the consumer's reads with err and waits for it.
func (s *stream) abort(err error) {
	if err == nil {
		err = errors.New("base backup aborted")
	}
	s.pw.CloseWithError(err)
	s.wait()
}

// consumerErr returns why a write to the stream failed: the consumer's error.
func (s *stream) consumerErr(writeErr error) error {
	if err := s.wait(); err != nil {
		return err
	}
	return writeErr
}

func (s *stream) wait() error {
	if !s.over {
		s.err, s.over = <-s.done, true
	}
	return s.err
}

// positionRow parses a (recptr text, tli int8) row.
func positionRow(v [][]byte) (backup.LSN, uint32, error) {
	if len(v) < 2 || v[0] == nil || v[1] == nil {
		return 0, 0, fmt.Errorf("unexpected position row %q", v)
	}
	lsn, err := backup.ParseLSN(string(v[0]))
	if err != nil {
		return 0, 0, err
	}
	tli, err := strconv.ParseUint(string(v[1]), 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("timeline %q: %w", v[1], err)
	}
	return lsn, uint32(tli), nil
}

// tablespaceRow parses a (spcoid oid, spclocation text, size int8 in kB) row; the
// data directory has NULL oid and location.
func tablespaceRow(v [][]byte) (backup.ServerTablespace, error) {
	ts := backup.ServerTablespace{Size: -1}
	if len(v) < 3 {
		return ts, fmt.Errorf("unexpected tablespace row %q", v)
	}
	if v[0] != nil {
		oid, err := strconv.ParseUint(string(v[0]), 10, 32)
		if err != nil {
			return ts, fmt.Errorf("tablespace oid %q: %w", v[0], err)
		}
		ts.OID = uint32(oid)
		ts.Location = string(v[1])
	}
	if v[2] != nil {
		kb, err := strconv.ParseInt(string(v[2]), 10, 64)
		if err != nil {
			return ts, fmt.Errorf("tablespace size %q: %w", v[2], err)
		}
		ts.Size = kb * 1024
	}
	return ts, nil
}

// archiveHeader parses an 'n' message body: archive name and location, each
// NUL-terminated.
func archiveHeader(b []byte) (name, location string, err error) {
	parts := bytes.SplitN(b, []byte{0}, 3)
	if len(parts) < 3 {
		return "", "", fmt.Errorf("malformed new-archive message %q", b)
	}
	return string(parts[0]), string(parts[1]), nil
}

// tablespaceAt finds the announced tablespace at location ("" for the data dir).
func tablespaceAt(tss []backup.ServerTablespace, location string) (backup.ServerTablespace, bool) {
	for _, ts := range tss {
		if ts.Location == location && (location != "" || ts.OID == 0) {
			return ts, true
		}
	}
	return backup.ServerTablespace{}, false
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
