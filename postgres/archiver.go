package postgres

import (
	"context"
	"time"

	"github.com/hestami/hestami/backup"
)

// Archiver reads PostgreSQL's archiving statistics for monitoring, with a connection
// of its own for each read, so that a server restart between two reads costs nothing.
type Archiver struct {
	// ConnString is a libpq keyword/value string or URL (see Connect).
	ConnString string
	// Timeout bounds each read, connecting included (0: 5 s), so that a server that
	// does not answer delays a scrape by that much at most.
	Timeout time.Duration
}

var _ backup.ArchiverReader = (*Archiver)(nil)

// ArchiverStats connects, reads pg_stat_archiver (see ArchiverStats) and disconnects.
func (a *Archiver) ArchiverStats(ctx context.Context, segSize uint64) (*backup.ArchiverStats, error) {
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := Connect(ctx, a.ConnString)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return ArchiverStats(ctx, conn, segSize)
}
