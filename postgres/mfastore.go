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

// MFAStore keeps second factors, backup codes and the per-user MFA settings in
// PostgreSQL (the tables of migration 0003_mfa).
type MFAStore struct {
	pool *pgxpool.Pool
}

var (
	_ auth.FactorStore      = (*MFAStore)(nil)
	_ auth.MFASettingsStore = (*MFAStore)(nil)
)

// NewMFAStore returns a store over pool; the database must be migrated (MigrateUp).
func NewMFAStore(pool *pgxpool.Pool) *MFAStore {
	return &MFAStore{pool: pool}
}

const factorColumns = `id, user_id, method, label, data, confirmed, created_at, last_used_at, last_step`

func scanFactor(row pgx.Row) (*auth.Factor, error) {
	var f auth.Factor
	var lastUsed *time.Time
	if err := row.Scan(&f.ID, &f.UserID, &f.Method, &f.Label, &f.Data, &f.Confirmed, &f.CreatedAt, &lastUsed, &f.LastStep); err != nil {
		return nil, err
	}
	if lastUsed != nil {
		f.LastUsedAt = *lastUsed
	}
	return &f, nil
}

// CreateFactor stores f, assigning ID and (if zero) CreatedAt; auth.ErrNotFound
// if there is no user f.UserID.
func (s *MFAStore) CreateFactor(ctx context.Context, f *auth.Factor) error {
	if !isUUID(f.UserID) {
		return fmt.Errorf("create factor for %q: %w", f.UserID, auth.ErrNotFound)
	}
	data := f.Data
	if data == nil {
		data = []byte{}
	}
	err := s.pool.QueryRow(ctx, `INSERT INTO mfa_factors (user_id, method, label, data, confirmed, created_at, last_used_at, last_step)
		VALUES ($1, $2, $3, $4, $5, coalesce($6, now()), $7, $8) RETURNING id, created_at`,
		f.UserID, f.Method, f.Label, data, f.Confirmed, nullTime(f.CreatedAt), nullTime(f.LastUsedAt), f.LastStep).Scan(&f.ID, &f.CreatedAt)
	return storeErr("create "+f.Method+" factor", err)
}

// Factor returns the user's factor id; auth.ErrNotFound if the user has none such.
func (s *MFAStore) Factor(ctx context.Context, userID, id string) (*auth.Factor, error) {
	if !isUUID(userID) || !isUUID(id) {
		return nil, fmt.Errorf("factor %q: %w", id, auth.ErrNotFound)
	}
	f, err := scanFactor(s.pool.QueryRow(ctx, `SELECT `+factorColumns+` FROM mfa_factors WHERE user_id = $1 AND id = $2`, userID, id))
	if err != nil {
		return nil, storeErr("factor "+id, err)
	}
	return f, nil
}

// Factors returns the user's factors (confirmed or not), oldest first.
func (s *MFAStore) Factors(ctx context.Context, userID string) ([]*auth.Factor, error) {
	if !isUUID(userID) {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+factorColumns+` FROM mfa_factors WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, storeErr("factors", err)
	}
	fs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*auth.Factor, error) { return scanFactor(r) })
	if err != nil {
		return nil, storeErr("factors", err)
	}
	return fs, nil
}

// updateFactor runs an UPDATE of the user's factor id (whose first two
// parameters are user_id and id); auth.ErrNotFound if no row matched.
func (s *MFAStore) updateFactor(ctx context.Context, what, userID, id, sql string, args ...any) error {
	if !isUUID(userID) || !isUUID(id) {
		return fmt.Errorf("%s %q: %w", what, id, auth.ErrNotFound)
	}
	tag, err := s.pool.Exec(ctx, sql, append([]any{userID, id}, args...)...)
	if err != nil {
		return storeErr(what+" "+id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s %s: %w", what, id, auth.ErrNotFound)
	}
	return nil
}

// ConfirmFactor marks the user's factor confirmed (and used) at at;
// auth.ErrNotFound if none.
func (s *MFAStore) ConfirmFactor(ctx context.Context, userID, id string, at time.Time) error {
	return s.updateFactor(ctx, "confirm factor", userID, id,
		`UPDATE mfa_factors SET confirmed = true, last_used_at = $3 WHERE user_id = $1 AND id = $2`, at)
}

// UpdateFactorData replaces the factor's Data; auth.ErrNotFound if none.
func (s *MFAStore) UpdateFactorData(ctx context.Context, userID, id string, data []byte) error {
	if data == nil {
		data = []byte{}
	}
	return s.updateFactor(ctx, "update factor", userID, id,
		`UPDATE mfa_factors SET data = $3 WHERE user_id = $1 AND id = $2`, data)
}

// UseTOTPStep records step as the factor's last accepted step (and at as its
// last use) if step is greater than the one recorded, in one statement: of
// concurrent uses of one code exactly one returns true. auth.ErrNotFound if the
// user has no such factor.
func (s *MFAStore) UseTOTPStep(ctx context.Context, userID, id string, step int64, at time.Time) (bool, error) {
	if !isUUID(userID) || !isUUID(id) {
		return false, fmt.Errorf("use totp step of %q: %w", id, auth.ErrNotFound)
	}
	var got string
	err := s.pool.QueryRow(ctx, `UPDATE mfa_factors SET last_step = $3, last_used_at = $4
		WHERE user_id = $1 AND id = $2 AND last_step < $3 RETURNING id`, userID, id, step, at).Scan(&got)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return false, storeErr("use totp step of "+id, err)
	}
	// Nothing updated: a replay, or no such factor.
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT exists(SELECT 1 FROM mfa_factors WHERE user_id = $1 AND id = $2)`, userID, id).Scan(&exists); err != nil {
		return false, storeErr("use totp step of "+id, err)
	}
	if !exists {
		return false, fmt.Errorf("use totp step of %s: %w", id, auth.ErrNotFound)
	}
	return false, nil
}

// TouchFactor sets the factor's LastUsedAt; auth.ErrNotFound if none.
func (s *MFAStore) TouchFactor(ctx context.Context, userID, id string, at time.Time) error {
	return s.updateFactor(ctx, "touch factor", userID, id,
		`UPDATE mfa_factors SET last_used_at = $3 WHERE user_id = $1 AND id = $2`, at)
}

// DeleteFactor removes the user's factor; auth.ErrNotFound if none.
func (s *MFAStore) DeleteFactor(ctx context.Context, userID, id string) error {
	return s.updateFactor(ctx, "delete factor", userID, id, `DELETE FROM mfa_factors WHERE user_id = $1 AND id = $2`)
}

// DeleteFactors removes every factor and backup code of the user in one
// transaction, and returns how many factors it removed.
func (s *MFAStore) DeleteFactors(ctx context.Context, userID string) (int, error) {
	if !isUUID(userID) {
		return 0, nil
	}
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM mfa_backup_codes WHERE user_id = $1`, userID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM mfa_factors WHERE user_id = $1`, userID)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, storeErr("delete factors", err)
	}
	return int(n), nil
}

// ReplaceBackupCodes replaces the user's backup codes with hashes in one
// transaction that first locks the user's row, so of two concurrent
// replacements the later one wins whole (never a mix of both sets).
// auth.ErrNotFound if there is no such user.
func (s *MFAStore) ReplaceBackupCodes(ctx context.Context, userID string, hashes []string, at time.Time) error {
	if !isUUID(userID) {
		return fmt.Errorf("replace backup codes of %q: %w", userID, auth.ErrNotFound)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&one); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM mfa_backup_codes WHERE user_id = $1`, userID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO mfa_backup_codes (user_id, hash, created_at)
			SELECT $1, h, $3 FROM unnest($2::text[]) AS h ON CONFLICT DO NOTHING`, userID, textArray(hashes), at)
		return err
	})
	return storeErr("replace backup codes", err)
}

// UseBackupCode marks the user's unused code with hash used at at, in one
// statement: of concurrent uses of a code exactly one returns true.
func (s *MFAStore) UseBackupCode(ctx context.Context, userID, hash string, at time.Time) (bool, error) {
	if !isUUID(userID) {
		return false, nil
	}
	tag, err := s.pool.Exec(ctx, `UPDATE mfa_backup_codes SET used_at = $3 WHERE user_id = $1 AND hash = $2 AND used_at IS NULL`, userID, hash, at)
	if err != nil {
		return false, storeErr("use backup code", err)
	}
	return tag.RowsAffected() == 1, nil
}

// BackupCodesLeft counts the user's unused backup codes.
func (s *MFAStore) BackupCodesLeft(ctx context.Context, userID string) (int, error) {
	if !isUUID(userID) {
		return 0, nil
	}
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM mfa_backup_codes WHERE user_id = $1 AND used_at IS NULL`, userID).Scan(&n)
	if err != nil {
		return 0, storeErr("backup codes left", err)
	}
	return n, nil
}

// MFASettings returns the user's settings; zero settings (with UserID set) if
// none were stored.
func (s *MFAStore) MFASettings(ctx context.Context, userID string) (*auth.MFASettings, error) {
	st := &auth.MFASettings{UserID: userID}
	if !isUUID(userID) {
		return st, nil
	}
	var deadline *time.Time
	err := s.pool.QueryRow(ctx, `SELECT deadline, required, service_types, secondary_email, secondary_email_verified
		FROM mfa_settings WHERE user_id = $1`, userID).Scan(&deadline, &st.Required, &st.ServiceTypes, &st.SecondaryEmail, &st.SecondaryEmailVerified)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return nil, storeErr("mfa settings", err)
	}
	if deadline != nil {
		st.Deadline = *deadline
	}
	return st, nil
}

// SaveMFASettings stores st (all of it); auth.ErrNotFound if there is no user
// st.UserID.
func (s *MFAStore) SaveMFASettings(ctx context.Context, st *auth.MFASettings) error {
	if !isUUID(st.UserID) {
		return fmt.Errorf("save mfa settings of %q: %w", st.UserID, auth.ErrNotFound)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO mfa_settings (user_id, deadline, required, service_types, secondary_email, secondary_email_verified)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_id) DO UPDATE SET deadline = EXCLUDED.deadline, required = EXCLUDED.required,
			service_types = EXCLUDED.service_types, secondary_email = EXCLUDED.secondary_email,
			secondary_email_verified = EXCLUDED.secondary_email_verified`,
		st.UserID, nullTime(st.Deadline), st.Required, textArray(st.ServiceTypes), st.SecondaryEmail, st.SecondaryEmailVerified)
	return storeErr("save mfa settings", err)
}
