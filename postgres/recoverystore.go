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

// RecoveryStore keeps account recovery requests (the recovery_requests table of
// migration 0007_devices_recovery).
type RecoveryStore struct {
	pool *pgxpool.Pool
}

var _ auth.RecoveryStore = (*RecoveryStore)(nil)

// NewRecoveryStore returns a store over pool; the database must be migrated
// (MigrateUp).
func NewRecoveryStore(pool *pgxpool.Pool) *RecoveryStore {
	return &RecoveryStore{pool: pool}
}

const recoveryColumns = `id, user_id, status, reason, primary_email, secondary_email, primary_code_hash, secondary_code_hash,
	codes_expire_at, attempts, ip, user_agent, created_at, verified_at, ticket_id, decided_by, decided_at, decision_note,
	token_hash, token_expires_at, redeemed_at`

func scanRecovery(row pgx.Row) (*auth.RecoveryRequest, error) {
	var r auth.RecoveryRequest
	var status string
	var verified, decided, tokenExp, redeemed *time.Time
	err := row.Scan(&r.ID, &r.UserID, &status, &r.Reason, &r.PrimaryEmail, &r.SecondaryEmail, &r.PrimaryCodeHash, &r.SecondaryCodeHash,
		&r.CodesExpireAt, &r.Attempts, &r.IP, &r.UserAgent, &r.CreatedAt, &verified, &r.TicketID, &r.DecidedBy, &decided, &r.DecisionNote,
		&r.TokenHash, &tokenExp, &redeemed)
	if err != nil {
		return nil, err
	}
	r.Status = auth.RecoveryStatus(status)
	r.VerifiedAt, r.DecidedAt, r.TokenExpiresAt, r.RedeemedAt = fromOpt(verified), fromOpt(decided), fromOpt(tokenExp), fromOpt(redeemed)
	return &r, nil
}

func collectRecoveries(rows pgx.Rows) ([]*auth.RecoveryRequest, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*auth.RecoveryRequest, error) { return scanRecovery(r) })
}

// CreateRecovery stores r under r.ID; auth.ErrConflict if the user has an open
// request (the partial unique index), auth.ErrNotFound if there is no such user.
func (s *RecoveryStore) CreateRecovery(ctx context.Context, r *auth.RecoveryRequest) error {
	if !isUUID(r.UserID) {
		return fmt.Errorf("create recovery request: user %q: %w", r.UserID, auth.ErrNotFound)
	}
	if !isUUID(r.ID) {
		return fmt.Errorf("create recovery request: id %q is not a UUID", r.ID)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO recovery_requests (id, user_id, status, reason, primary_email, secondary_email,
		primary_code_hash, secondary_code_hash, codes_expire_at, attempts, ip, user_agent, created_at, verified_at, ticket_id,
		decided_by, decided_at, decision_note, token_hash, token_expires_at, redeemed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`,
		r.ID, r.UserID, string(r.Status), r.Reason, r.PrimaryEmail, r.SecondaryEmail, r.PrimaryCodeHash, r.SecondaryCodeHash,
		r.CodesExpireAt, r.Attempts, r.IP, r.UserAgent, r.CreatedAt, nullTime(r.VerifiedAt), r.TicketID,
		r.DecidedBy, nullTime(r.DecidedAt), r.DecisionNote, r.TokenHash, nullTime(r.TokenExpiresAt), nullTime(r.RedeemedAt))
	return storeErr("create recovery request", err)
}

// Recovery returns the request with id.
func (s *RecoveryStore) Recovery(ctx context.Context, id string) (*auth.RecoveryRequest, error) {
	if !isUUID(id) {
		return nil, fmt.Errorf("recovery request %q: %w", id, auth.ErrNotFound)
	}
	r, err := scanRecovery(s.pool.QueryRow(ctx, `SELECT `+recoveryColumns+` FROM recovery_requests WHERE id = $1`, id))
	if err != nil {
		return nil, storeErr("recovery request "+id, err)
	}
	return r, nil
}

// RecoveryByToken returns the request whose recovery link has the token hash.
func (s *RecoveryStore) RecoveryByToken(ctx context.Context, tokenHash string) (*auth.RecoveryRequest, error) {
	if tokenHash == "" {
		return nil, fmt.Errorf("recovery request by token: %w", auth.ErrNotFound)
	}
	r, err := scanRecovery(s.pool.QueryRow(ctx, `SELECT `+recoveryColumns+` FROM recovery_requests WHERE token_hash = $1`, tokenHash))
	if err != nil {
		return nil, storeErr("recovery request by token", err)
	}
	return r, nil
}

// Recoveries returns the user's requests, newest first.
func (s *RecoveryStore) Recoveries(ctx context.Context, userID string, limit int) ([]*auth.RecoveryRequest, error) {
	if !isUUID(userID) {
		return nil, nil
	}
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT `+recoveryColumns+` FROM recovery_requests
		WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2`, userID, limit)
	if err != nil {
		return nil, storeErr("recovery requests", err)
	}
	out, err := collectRecoveries(rows)
	return out, storeErr("recovery requests", err)
}

// RecoveriesByStatus returns the requests in status, oldest first.
func (s *RecoveryStore) RecoveriesByStatus(ctx context.Context, status auth.RecoveryStatus, limit int) ([]*auth.RecoveryRequest, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT `+recoveryColumns+` FROM recovery_requests
		WHERE status = $1 ORDER BY created_at, id LIMIT $2`, string(status), limit)
	if err != nil {
		return nil, storeErr("recovery requests by status", err)
	}
	out, err := collectRecoveries(rows)
	return out, storeErr("recovery requests by status", err)
}

// AddRecoveryAttempt counts one code verification, atomically.
func (s *RecoveryStore) AddRecoveryAttempt(ctx context.Context, id string) (int, error) {
	if !isUUID(id) {
		return 0, fmt.Errorf("count recovery attempt %q: %w", id, auth.ErrNotFound)
	}
	var n int
	err := s.pool.QueryRow(ctx, `UPDATE recovery_requests SET attempts = attempts + 1
		WHERE id = $1 AND status = 'verifying' RETURNING attempts`, id).Scan(&n)
	if err != nil {
		return 0, storeErr("count recovery attempt", err)
	}
	return n, nil
}

// UpdateRecovery saves r's changing fields if the stored request is in status
// from, in one statement.
func (s *RecoveryStore) UpdateRecovery(ctx context.Context, r *auth.RecoveryRequest, from auth.RecoveryStatus) error {
	if !isUUID(r.ID) {
		return fmt.Errorf("update recovery request %q: %w", r.ID, auth.ErrNotFound)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE recovery_requests SET status = $3, verified_at = $4, ticket_id = $5, decided_by = $6,
		decided_at = $7, decision_note = $8, token_hash = $9, token_expires_at = $10, redeemed_at = $11
		WHERE id = $1 AND status = $2`,
		r.ID, string(from), string(r.Status), nullTime(r.VerifiedAt), r.TicketID, r.DecidedBy, nullTime(r.DecidedAt),
		r.DecisionNote, r.TokenHash, nullTime(r.TokenExpiresAt), nullTime(r.RedeemedAt))
	if err != nil {
		return storeErr("update recovery request", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var status string
	err = s.pool.QueryRow(ctx, `SELECT status FROM recovery_requests WHERE id = $1`, r.ID).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("update recovery request %s: %w", r.ID, auth.ErrNotFound)
	}
	if err != nil {
		return storeErr("update recovery request", err)
	}
	return fmt.Errorf("update recovery request %s: it is %s, not %s: %w", r.ID, status, from, auth.ErrConflict)
}
