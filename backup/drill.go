package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// drillPrefix holds the records of restore drills, one object per drill, named by
// time so they list in order.
const drillPrefix = "drills/"

// DrillRecord is the outcome of a restore drill: a backup restored into a scratch
// target, replayed and checked.
type DrillRecord struct {
	Time     time.Time `json:"time"`
	BackupID string    `json:"backup_id"`
	Type     Type      `json:"type"`
	OK       bool      `json:"ok"`
	// RTOSeconds is how long the restore took until the server answered queries.
	RTOSeconds float64 `json:"rto_seconds"`
	// RPOSeconds is the age of the newest archived WAL when the drill ran: how much
	// a restore at that moment would have lost.
	RPOSeconds float64 `json:"rpo_seconds"`
	// Checks lists what was checked and how it went ("pg_amcheck: ok", ...).
	Checks []string `json:"checks,omitempty"`
	Error  string   `json:"error,omitempty"`
}

func drillKey(rec DrillRecord) string {
	return fmt.Sprintf("%s%s-%s.json%s", drillPrefix, rec.Time.UTC().Format("20060102T150405.000000000Z"), rec.BackupID, objectSuffix)
}

// RecordDrill stores the outcome of a restore drill.
func (r *Repository) RecordDrill(ctx context.Context, rec DrillRecord) error {
	if !validID(rec.BackupID) {
		return fmt.Errorf("record drill: invalid backup id %q", rec.BackupID)
	}
	if rec.Time.IsZero() {
		rec.Time = r.now()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := r.PutObject(ctx, drillKey(rec), bytes.NewReader(b), true, 1); err != nil {
		return fmt.Errorf("record drill of %s: %w", rec.BackupID, err)
	}
	return nil
}

// Drills returns the recorded drills, oldest first.
func (r *Repository) Drills(ctx context.Context) ([]DrillRecord, error) {
	objs, err := r.Storage.List(ctx, drillPrefix)
	if err != nil {
		return nil, fmt.Errorf("list drills: %w", err)
	}
	var out []DrillRecord
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, ".json"+objectSuffix) {
			continue
		}
		b, err := r.ReadObject(ctx, o.Key)
		if err != nil {
			return nil, fmt.Errorf("read drill record: %w", err)
		}
		var rec DrillRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, &CorruptError{Key: o.Key, Reason: "not a drill record: " + err.Error()}
		}
		out = append(out, rec)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}
