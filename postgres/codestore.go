package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
)

// CodeStore keeps the one-time codes sent by email and SMS in PostgreSQL (the
// table of migration 0004_codes): one row per user, purpose and method, replaced
// by each new code.
type CodeStore struct {
	pool *pgxpool.Pool
}

var _ auth.CodeStore = (*CodeStore)(nil)

// NewCodeStore returns a store over pool; the database must be migrated
// (MigrateUp).
func NewCodeStore(pool *pgxpool.Pool) *CodeStore {
	return &CodeStore{pool: pool}
}

// PutCode stores c as the user's live code for its purpose and method, replacing
// the previous one in place under a new id, and assigns c.ID. auth.ErrNotFound if
// there is no user c.UserID (or factor c.FactorID).
func (s *CodeStore) PutCode(ctx context.Context, c *auth.OneTimeCode) error {
	if !isUUID(c.UserID) || c.FactorID != "" && !isUUID(c.FactorID) {
		return fmt.Errorf("put %s code: %w", c.Method, auth.ErrNotFound)
	}
	var factor *string
	if c.FactorID != "" {
		factor = &c.FactorID
	}
	err := s.pool.QueryRow(ctx, `
		INSERT INTO mfa_codes (id, user_id, purpose, method, factor_id, destination, salt, hash, attempts, created_at, expires_at, used_at)
		VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, 0, $8, $9, NULL)
		ON CONFLICT (user_id, purpose, method) DO UPDATE SET
			id = excluded.id, factor_id = excluded.factor_id, destination = excluded.destination, salt = excluded.salt,
			hash = excluded.hash, attempts = 0, created_at = excluded.created_at, expires_at = excluded.expires_at, used_at = NULL
		RETURNING id`,
		c.UserID, c.Purpose, c.Method, factor, c.Destination, c.Salt, c.Hash, c.CreatedAt, c.ExpiresAt).Scan(&c.ID)
	if err != nil {
		return storeErr("put "+c.Method+" code", err)
	}
	c.Attempts, c.UsedAt = 0, time.Time{}
	return nil
}

// Code returns the user's code for purpose and method; auth.ErrNotFound if none.
func (s *CodeStore) Code(ctx context.Context, userID, purpose, method string) (*auth.OneTimeCode, error) {
	if !isUUID(userID) {
		return nil, fmt.Errorf("%s code: %w", method, auth.ErrNotFound)
	}
	var c auth.OneTimeCode
	var factor *string
	var used *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT id, user_id, purpose, method, factor_id, destination, salt, hash, attempts, created_at, expires_at, used_at
		FROM mfa_codes WHERE user_id = $1 AND purpose = $2 AND method = $3`, userID, purpose, method).Scan(
		&c.ID, &c.UserID, &c.Purpose, &c.Method, &factor, &c.Destination, &c.Salt, &c.Hash, &c.Attempts, &c.CreatedAt, &c.ExpiresAt, &used)
	if err != nil {
		return nil, storeErr(method+" code", err)
	}
	if factor != nil {
		c.FactorID = *factor
	}
	if used != nil {
		c.UsedAt = *used
	}
	return &c, nil
}

// AttemptCode counts an attempt at code id in one statement, so concurrent
// attempts never pass max.
func (s *CodeStore) AttemptCode(ctx context.Context, id string, max int) (int, bool, error) {
	if !isUUID(id) {
		return 0, false, nil
	}
	var n int
	err := s.pool.QueryRow(ctx, `UPDATE mfa_codes SET attempts = attempts + 1
		WHERE id = $1 AND used_at IS NULL AND attempts < $2 RETURNING attempts`, id, max).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, storeErr("count code attempt", err)
	}
	return n, true, nil
}

// UseCode marks code id used in one statement: of concurrent calls, one wins.
func (s *CodeStore) UseCode(ctx context.Context, id string, at time.Time) (bool, error) {
	if !isUUID(id) {
		return false, nil
	}
	tag, err := s.pool.Exec(ctx, `UPDATE mfa_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL`, id, at)
	if err != nil {
		return false, storeErr("use code", err)
	}
	return tag.RowsAffected() == 1, nil
}

// DeleteExpiredCodes removes codes that expired before before.
func (s *CodeStore) DeleteExpiredCodes(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM mfa_codes WHERE expires_at < $1`, before)
	if err != nil {
		return 0, storeErr("delete expired codes", err)
	}
	return int(tag.RowsAffected()), nil
}
