package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
)

// SignInStore keeps the sign-in history of the suspicious-activity checks in
// PostgreSQL (the table of migration 0006_signins).
type SignInStore struct {
	pool *pgxpool.Pool
}

var _ auth.SignInHistory = (*SignInStore)(nil)

// NewSignInStore returns a store over pool; the database must be migrated
// (MigrateUp).
func NewSignInStore(pool *pgxpool.Pool) *SignInStore {
	return &SignInStore{pool: pool}
}

// RecordSignIn stores s, assigning s.ID; auth.ErrNotFound if s.UserID names no
// user.
func (s *SignInStore) RecordSignIn(ctx context.Context, in *auth.SignIn) error {
	if !isUUID(in.UserID) {
		return fmt.Errorf("record sign-in: user %q: %w", in.UserID, auth.ErrNotFound)
	}
	if in.Outcome != auth.OutcomeSuccess && in.Outcome != auth.OutcomeFailure {
		return fmt.Errorf("record sign-in: outcome %q is neither success nor failure", in.Outcome)
	}
	var lat, lon *float64
	if in.Location.HasPosition {
		lat, lon = &in.Location.Lat, &in.Location.Lon
	}
	err := s.pool.QueryRow(ctx, `INSERT INTO signins (user_id, at, ip, country, city, latitude, longitude, device_id, outcome)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
		in.UserID, in.Time, in.IP, in.Location.Country, in.Location.City, lat, lon, in.DeviceID, in.Outcome).Scan(&in.ID)
	return storeErr("record sign-in", err)
}

// SignIns returns the user's sign-ins matching f, newest first (ties: the later
// recorded first).
func (s *SignInStore) SignIns(ctx context.Context, userID string, f auth.SignInFilter) ([]*auth.SignIn, error) {
	if !isUUID(userID) {
		return nil, nil
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	rows, err := s.pool.Query(ctx, `SELECT id, user_id::text, at, ip, country, city, latitude, longitude, device_id, outcome
		FROM signins WHERE user_id = $1 AND ($2::timestamptz IS NULL OR at >= $2) AND ($3 = '' OR outcome = $3)
		ORDER BY at DESC, id DESC LIMIT $4`, userID, since, f.Outcome, limit)
	if err != nil {
		return nil, storeErr("read sign-ins", err)
	}
	defer rows.Close()
	var out []*auth.SignIn
	for rows.Next() {
		var in auth.SignIn
		var lat, lon *float64
		if err := rows.Scan(&in.ID, &in.UserID, &in.Time, &in.IP, &in.Location.Country, &in.Location.City, &lat, &lon, &in.DeviceID, &in.Outcome); err != nil {
			return nil, storeErr("read sign-ins", err)
		}
		if lat != nil && lon != nil {
			in.Location.Lat, in.Location.Lon, in.Location.HasPosition = *lat, *lon, true
		}
		out = append(out, &in)
	}
	return out, storeErr("read sign-ins", rows.Err())
}

// DeleteSignInsBefore removes the sign-ins older than before.
func (s *SignInStore) DeleteSignInsBefore(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM signins WHERE at < $1`, before)
	if err != nil {
		return 0, storeErr("prune sign-ins", err)
	}
	return int(tag.RowsAffected()), nil
}
