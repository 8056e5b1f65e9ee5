package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
)

// PasskeyStore keeps passkey ceremonies in progress in PostgreSQL (the table of
// migration 0005_webauthn). The passkeys themselves are factors (MFA store).
type PasskeyStore struct {
	pool *pgxpool.Pool
}

var _ auth.PasskeyCeremonyStore = (*PasskeyStore)(nil)

// NewPasskeyStore returns a store over pool; the database must be migrated
// (MigrateUp).
func NewPasskeyStore(pool *pgxpool.Pool) *PasskeyStore {
	return &PasskeyStore{pool: pool}
}

// PutPasskeyCeremony stores c under c.ID; auth.ErrConflict if the id is taken,
// auth.ErrNotFound if the user does not exist.
func (s *PasskeyStore) PutPasskeyCeremony(ctx context.Context, c *auth.PasskeyCeremony) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO webauthn_ceremonies (id, user_id, kind, name, session, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, c.ID, c.UserID, c.Kind, c.Name, c.Session, c.CreatedAt, c.ExpiresAt)
	return storeErr("store passkey ceremony", err)
}

// TakePasskeyCeremony deletes the ceremony with id and returns it, in one
// statement: of concurrent takers exactly one gets it. auth.ErrNotFound if there
// is none.
func (s *PasskeyStore) TakePasskeyCeremony(ctx context.Context, id string) (*auth.PasskeyCeremony, error) {
	var c auth.PasskeyCeremony
	err := s.pool.QueryRow(ctx, `DELETE FROM webauthn_ceremonies WHERE id = $1
		RETURNING id, user_id::text, kind, name, session, created_at, expires_at`, id).
		Scan(&c.ID, &c.UserID, &c.Kind, &c.Name, &c.Session, &c.CreatedAt, &c.ExpiresAt)
	if err != nil {
		return nil, storeErr("take passkey ceremony", err)
	}
	return &c, nil
}

// DeleteExpiredPasskeyCeremonies removes ceremonies that expired before before.
func (s *PasskeyStore) DeleteExpiredPasskeyCeremonies(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webauthn_ceremonies WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("delete expired passkey ceremonies: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
