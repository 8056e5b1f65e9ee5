package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hestami/hestami/backup"
)

var _ backup.DatabaseReplacer = (*Restorer)(nil)

// sessionsGone is how long ReplaceDatabase waits for the ended sessions of the
// database it replaces to go away.
const sessionsGone = 30 * time.Second

// CheckReplace implements backup.DatabaseReplacer: renaming a database takes its
// owner with CREATEDB, or a superuser, on a connection to another database.
func (r *Restorer) CheckReplace(ctx context.Context, name string) error {
	var current, user, owner string
	var super, createdb, owns bool
	err := r.Conn.QueryRow(ctx, `SELECT current_database(), current_user, pg_get_userbyid(d.datdba),
			r.rolsuper, r.rolcreatedb, pg_has_role(current_user, d.datdba, 'USAGE')
		FROM pg_database d, pg_roles r WHERE d.datname = $1 AND r.rolname = current_user`, name).
		Scan(&current, &user, &owner, &super, &createdb, &owns)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("database %q does not exist", name)
	}
	if err != nil {
		return fmt.Errorf("check whether database %q can be replaced: %w", name, err)
	}
	switch {
	case current == name:
		return fmt.Errorf("the restore connects to database %q itself: connect to another one (postgres.database or PGDATABASE, e.g. postgres) to replace it", name)
	case !super && !(owns && createdb):
		return fmt.Errorf("user %q may not rename database %q: that takes its owner %q with CREATEDB, or a superuser (connect as one: postgres.user or PGUSER)", user, name, owner)
	}
	return nil
}

// ReplaceDatabase implements backup.DatabaseReplacer. New connections to name are
// refused (ALLOW_CONNECTIONS false) and its sessions ended (pg_terminate_backend),
// then both renames and the change of owner commit in one transaction: other
// sessions see either the old database under name or the restored one.
func (r *Restorer) ReplaceDatabase(ctx context.Context, name, restored, aside string) (err error) {
	var allowed bool
	var owner, user string
	if err := r.Conn.QueryRow(ctx, "SELECT datallowconn, pg_get_userbyid(datdba), current_user FROM pg_database WHERE datname = $1", name).
		Scan(&allowed, &owner, &user); err != nil {
		return fmt.Errorf("read database %q: %w", name, err)
	}
	id := pgx.Identifier{name}.Sanitize()
	if _, err := r.Conn.Exec(ctx, "ALTER DATABASE "+id+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("refuse new connections to database %q: %w", name, err)
	}
	defer func() {
		if err == nil || !allowed {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, rerr := r.Conn.Exec(rctx, "ALTER DATABASE "+id+" WITH ALLOW_CONNECTIONS true"); rerr != nil {
			err = fmt.Errorf("%w; and connections to %q could not be allowed again (%v): run ALTER DATABASE %s WITH ALLOW_CONNECTIONS true", err, name, rerr, id)
		}
	}()
	if err := r.endSessions(ctx, name); err != nil {
		return err
	}
	tx, err := r.Conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("replace database %q: %w", name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	stmts := []string{
		"ALTER DATABASE " + id + " RENAME TO " + pgx.Identifier{aside}.Sanitize(),
		"ALTER DATABASE " + pgx.Identifier{restored}.Sanitize() + " RENAME TO " + id,
	}
	if owner != user {
		stmts = append(stmts, "ALTER DATABASE "+id+" OWNER TO "+pgx.Identifier{owner}.Sanitize())
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("replace database %q (%s): %w", name, s, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("replace database %q: commit: %w", name, err)
	}
	return nil
}

// endSessions terminates the sessions on database name and waits until they are gone.
func (r *Restorer) endSessions(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, sessionsGone)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var left int
		err := r.Conn.QueryRow(ctx, `SELECT count(*) FROM (
				SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()) t`, name).Scan(&left)
		if err != nil {
			return fmt.Errorf("end the sessions on database %q: %w (ending other users' sessions takes a superuser or pg_signal_backend)", name, err)
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("end the sessions on database %q: %d still connected after %s", name, left, sessionsGone)
		case <-tick.C:
		}
	}
}
