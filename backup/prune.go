package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Pruner applies retention to a repository: backups per type by their policy, then
// the WAL no kept physical backup needs.
type Pruner struct {
	Repo *Repository
	// WALRepo holds the archived WAL; nil: Repo.
	WALRepo  *Repository
	Policies map[Type]RetentionPolicy
	// PITRTier is the tier whose oldest physical backup starts the window of
	// continuous WAL ("daily", "weekly" or "monthly"; default "daily").
	PITRTier string
	Logger   *slog.Logger
}

// PrunePlan is what a prune deletes and keeps, and why.
type PrunePlan struct {
	At      time.Time                    `json:"at"`
	Backups map[Type][]RetentionDecision `json:"backups"`
	// WindowStart is the physical backup from which all WAL is kept.
	WindowStart string      `json:"pitr_window_start,omitempty"`
	WAL         []WALObject `json:"-"`
	WALDelete   []string    `json:"wal_delete"`
	WALKept     int         `json:"wal_kept"`
}

// Plan computes the prune at time at without changing anything.
func (p *Pruner) Plan(ctx context.Context, at time.Time) (*PrunePlan, error) {
	entries, err := p.Repo.Backups(ctx)
	if err != nil {
		return nil, err
	}
	plan := &PrunePlan{At: at, Backups: map[Type][]RetentionDecision{}, WALDelete: []string{}}
	byID := map[string]*Manifest{}
	verified := map[string]bool{}
	for _, t := range []Type{Physical, Logical} {
		policy, ok := p.Policies[t]
		if !ok {
			policy = DefaultRetention()
		}
		var cands []RetentionCandidate
		for _, e := range entries {
			if e.Manifest != nil {
				if e.Manifest.Type != t {
					continue
				}
				byID[e.ID] = e.Manifest
			} else if IDType(e.ID) != t {
				continue
			}
			c := RetentionCandidate{ID: e.ID, Complete: e.Manifest != nil}
			if e.Manifest != nil {
				c.Time, c.StopLSN = e.Manifest.StartTime, e.Manifest.StopLSN
				v, err := p.Repo.Verification(ctx, e.ID)
				var se *SignatureError
				var ke *KeyError
				if errors.As(err, &se) || errors.As(err, &ke) {
					// A record this host cannot trust or read counts as no
					// verification: prune keeps more, never less.
					p.logger().Warn("verification record not trusted; treating the backup as unverified", "backup", e.ID, "err", err)
					v, err = nil, nil
				}
				if err != nil {
					return nil, err
				}
				c.Verified = v != nil && v.OK
				verified[e.ID] = c.Verified
			} else {
				c.Time = entryTime(e)
			}
			cands = append(cands, c)
		}
		plan.Backups[t] = PlanRetention(cands, policy, at)
	}

	var kept []*Manifest
	for _, d := range plan.Backups[Physical] {
		if d.Keep && byID[d.ID] != nil {
			kept = append(kept, byID[d.ID])
		}
	}
	window := PITRWindowStart(plan.Backups[Physical], byID, verified, p.PITRTier)
	if window != nil {
		plan.WindowStart = window.ID
	}
	walRepo := p.walRepo()
	wal, err := walRepo.ListWAL(ctx, 0)
	if err != nil {
		return nil, err
	}
	plan.WAL = PlanWALRetention(wal, kept, window)
	for _, w := range plan.WAL {
		plan.WALDelete = append(plan.WALDelete, w.Name)
	}
	plan.WALKept = len(wal) - len(plan.WAL)
	return plan, nil
}

// IDType returns the backup type an id names ("physical-20261204T030000Z"), or "".
func IDType(id string) Type {
	t, _, _ := strings.Cut(id, "-")
	if _, err := ParseType(t); err != nil {
		return ""
	}
	return Type(t)
}

func (p *Pruner) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return p.Repo.logger()
}

func (p *Pruner) walRepo() *Repository {
	if p.WALRepo != nil {
		return p.WALRepo
	}
	return p.Repo
}

// Execute deletes what plan says, backups first (each manifest first), then WAL,
// logging every deletion.
func (p *Pruner) Execute(ctx context.Context, plan *PrunePlan) error {
	log := p.logger()
	for _, t := range []Type{Physical, Logical} {
		for _, d := range plan.Backups[t] {
			if d.Keep {
				continue
			}
			if err := p.Repo.DeleteBackup(ctx, d.ID); err != nil {
				return fmt.Errorf("prune: %w", err)
			}
			log.Info("pruned backup", "backup", d.ID, "type", t, "reason", d.Reasons)
		}
	}
	walRepo := p.walRepo()
	for _, w := range plan.WAL {
		if err := walRepo.Storage.Delete(ctx, w.Key); err != nil {
			return fmt.Errorf("prune WAL %s: %w", w.Name, err)
		}
		log.Info("pruned WAL", "wal", w.Name, "reason", "before the point-in-time window ("+plan.WindowStart+") and outside every kept backup")
	}
	return nil
}
