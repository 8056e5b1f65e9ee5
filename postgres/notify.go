package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
)

// InvalidationChannel is the PostgreSQL notification channel on which AuthStore
// publishes what the auth service's replicas must stop serving from their session
// caches. Payloads are "session:<session id>" (a session was revoked) and
// "user:<user id>" (a user's roles or account changed, or it was disabled).
const InvalidationChannel = "hestami_auth_invalidate"

// notifySession and notifyUser are select-list expressions publishing the
// invalidation of the row id returned by a data-modifying CTE: the notification is
// part of the statement's transaction, so it is sent when (and only if) the change
// commits.
const (
	notifySession = `pg_notify('` + InvalidationChannel + `', '` + auth.InvalidateSession + `:' || id)`
	notifyUser    = `pg_notify('` + InvalidationChannel + `', '` + auth.InvalidateUser + `:' || id::text)`
)

// How long ListenInvalidations waits before connecting again after a failure:
// from the first, doubling up to the last.
const (
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 10 * time.Second
)

// listenerAppName names the listening connection in pg_stat_activity.
const listenerAppName = "hestami auth invalidations"

// ListenInvalidations LISTENs on InvalidationChannel on a connection of its own
// (made with pool's settings, not taken from it) and calls fn(kind, id) for every
// notification: auth.InvalidateSession or auth.InvalidateUser and the id, as
// auth.Service.Invalidate takes them. Whenever it starts listening (at first, and
// after a lost connection, when notifications may have been missed) it calls
// fn(auth.InvalidateAll, ""). It connects again with backoff (100 ms doubling to
// 10 s), logging each failure, and returns when ctx ends. fn runs on the calling
// goroutine and should return quickly.
func ListenInvalidations(ctx context.Context, pool *pgxpool.Pool, fn func(kind, id string), logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg := pool.Config().ConnConfig
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = listenerAppName
	backoff := listenBackoffMin
	for {
		err := listen(ctx, cfg, fn, func() {
			backoff = listenBackoffMin
			logger.Info("listening for session invalidations", "channel", InvalidationChannel)
		})
		if ctx.Err() != nil {
			return
		}
		logger.Warn("session invalidations: the database connection listening for them failed; until it is back, "+
			"sessions revoked on other replicas end here only when this replica's session cache expires (auth session cache TTL)",
			"channel", InvalidationChannel, "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, listenBackoffMax)
	}
}

// listen connects, LISTENs, calls listening and fn(auth.InvalidateAll, ""), and
// then passes notifications to fn until the connection or ctx fails.
func listen(ctx context.Context, cfg *pgx.ConnConfig, fn func(kind, id string), listening func()) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+InvalidationChannel); err != nil {
		return fmt.Errorf("listen on %s: %w", InvalidationChannel, err)
	}
	listening()
	fn(auth.InvalidateAll, "")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notifications: %w", err)
		}
		kind, id, _ := strings.Cut(n.Payload, ":")
		fn(kind, id)
	}
}
