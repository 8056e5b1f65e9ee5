package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
)

// DeviceStore keeps the devices people sign in from (the devices table of
// migration 0007_devices_recovery).
type DeviceStore struct {
	pool *pgxpool.Pool
}

var _ auth.DeviceStore = (*DeviceStore)(nil)

// NewDeviceStore returns a store over pool; the database must be migrated
// (MigrateUp).
func NewDeviceStore(pool *pgxpool.Pool) *DeviceStore {
	return &DeviceStore{pool: pool}
}

const deviceColumns = `id, user_id, token_hash, name, browser, os, first_seen, last_seen, last_ip, last_location,
	trust_hash, trusted_until, revoked_at`

func scanDevice(row pgx.Row, extra ...any) (*auth.Device, error) {
	var d auth.Device
	var until, revoked *time.Time
	dest := append([]any{&d.ID, &d.UserID, &d.TokenHash, &d.Name, &d.Browser, &d.OS, &d.FirstSeen, &d.LastSeen,
		&d.LastIP, &d.LastLocation, &d.TrustHash, &until, &revoked}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	d.TrustedUntil, d.RevokedAt = fromOpt(until), fromOpt(revoked)
	return &d, nil
}

// SeeDevice stores d, or updates the user's device with its token hash, in one
// statement (INSERT ... ON CONFLICT on the unique index of devices not revoked).
func (s *DeviceStore) SeeDevice(ctx context.Context, d *auth.Device) (bool, error) {
	if !isUUID(d.UserID) {
		return false, fmt.Errorf("see device: user %q: %w", d.UserID, auth.ErrNotFound)
	}
	var inserted bool
	got, err := scanDevice(s.pool.QueryRow(ctx, `INSERT INTO devices (user_id, token_hash, name, browser, os, first_seen, last_seen, last_ip, last_location)
		VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)
		ON CONFLICT (user_id, token_hash) WHERE revoked_at IS NULL DO UPDATE SET
			last_seen = GREATEST(devices.last_seen, EXCLUDED.last_seen), last_ip = EXCLUDED.last_ip,
			last_location = EXCLUDED.last_location, name = EXCLUDED.name, browser = EXCLUDED.browser, os = EXCLUDED.os
		RETURNING `+deviceColumns+`, xmax = 0`,
		d.UserID, d.TokenHash, d.Name, d.Browser, d.OS, d.LastSeen, d.LastIP, d.LastLocation), &inserted)
	if err != nil {
		return false, storeErr("see device", err)
	}
	*d = *got
	return inserted, nil
}

// Device returns the user's device id, revoked or not.
func (s *DeviceStore) Device(ctx context.Context, userID, id string) (*auth.Device, error) {
	if !isUUID(userID) || !isUUID(id) {
		return nil, fmt.Errorf("device %q: %w", id, auth.ErrNotFound)
	}
	d, err := scanDevice(s.pool.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = $1 AND id = $2`, userID, id))
	if err != nil {
		return nil, storeErr("device "+id, err)
	}
	return d, nil
}

// DeviceByToken returns the user's device (not revoked) with the token hash.
func (s *DeviceStore) DeviceByToken(ctx context.Context, userID, tokenHash string) (*auth.Device, error) {
	if !isUUID(userID) {
		return nil, fmt.Errorf("device by token: %w", auth.ErrNotFound)
	}
	d, err := scanDevice(s.pool.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices
		WHERE user_id = $1 AND token_hash = $2 AND revoked_at IS NULL`, userID, tokenHash))
	if err != nil {
		return nil, storeErr("device by token", err)
	}
	return d, nil
}

// Devices returns the user's devices that are not revoked, most recently seen
// first.
func (s *DeviceStore) Devices(ctx context.Context, userID string) ([]*auth.Device, error) {
	if !isUUID(userID) {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+deviceColumns+` FROM devices
		WHERE user_id = $1 AND revoked_at IS NULL ORDER BY last_seen DESC, first_seen DESC, id`, userID)
	if err != nil {
		return nil, storeErr("devices", err)
	}
	devs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*auth.Device, error) { return scanDevice(r) })
	if err != nil {
		return nil, storeErr("devices", err)
	}
	return devs, nil
}

// TrustDevice sets the trust of the user's device, if it is not revoked.
func (s *DeviceStore) TrustDevice(ctx context.Context, userID, id, trustHash string, until time.Time) error {
	if !isUUID(userID) || !isUUID(id) {
		return fmt.Errorf("trust device %q: %w", id, auth.ErrNotFound)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE devices SET trust_hash = $3, trusted_until = $4
		WHERE user_id = $1 AND id = $2 AND revoked_at IS NULL`, userID, id, trustHash, until)
	if err != nil {
		return storeErr("trust device", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("trust device %s: %w", id, auth.ErrNotFound)
	}
	return nil
}

// RevokeDevice revokes the user's device and drops its trust.
func (s *DeviceStore) RevokeDevice(ctx context.Context, userID, id string, at time.Time) error {
	if !isUUID(userID) || !isUUID(id) {
		return fmt.Errorf("revoke device %q: %w", id, auth.ErrNotFound)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE devices SET revoked_at = $3, trust_hash = '', trusted_until = NULL
		WHERE user_id = $1 AND id = $2 AND revoked_at IS NULL`, userID, id, at)
	if err != nil {
		return storeErr("revoke device", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("revoke device %s: %w", id, auth.ErrNotFound)
	}
	return nil
}

// RevokeDevices revokes every device of the user that is not revoked.
func (s *DeviceStore) RevokeDevices(ctx context.Context, userID string, at time.Time) (int, error) {
	if !isUUID(userID) {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `UPDATE devices SET revoked_at = $2, trust_hash = '', trusted_until = NULL
		WHERE user_id = $1 AND revoked_at IS NULL`, userID, at)
	if err != nil {
		return 0, storeErr("revoke devices", err)
	}
	return int(tag.RowsAffected()), nil
}
