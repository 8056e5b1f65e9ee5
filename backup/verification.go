package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// verificationName is the object in a backup's folder recording its last
// verification. It is written after the manifest and is not part of the backup.
const verificationName = "verification.json"

// VerificationRecord is the outcome of verifying a backup.
type VerificationRecord struct {
	Time   time.Time `json:"time"`
	OK     bool      `json:"ok"`
	Method string    `json:"method"` // e.g. "checksums", "restore-test"
	Error  string    `json:"error,omitempty"`
}

// RecordVerification stores the outcome of verifying backup id.
func (r *Repository) RecordVerification(ctx context.Context, id string, v VerificationRecord) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrBackupNotFound, id)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := r.PutObject(ctx, BackupKey(id, verificationName), bytes.NewReader(b), false, 1); err != nil {
		return fmt.Errorf("record verification of %s: %w", id, err)
	}
	return nil
}

// Verification returns the last recorded verification of backup id, or nil if it was
// never verified.
func (r *Repository) Verification(ctx context.Context, id string) (*VerificationRecord, error) {
	b, err := r.ReadObject(ctx, BackupKey(id, verificationName))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read verification of %s: %w", id, err)
	}
	var v VerificationRecord
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, &CorruptError{Key: BackupKey(id, verificationName), Reason: err.Error()}
	}
	return &v, nil
}
