package backup

import (
	"slices"
	"strings"
)

// PITRWindowStart returns the backup the point-in-time-recovery window starts at:
// the oldest kept physical backup that stands for tier ("daily" by default). The
// window's WAL chain is what older backups would need to reach the present, so its
// start must be a verified backup: if it is not, the window reaches back to the
// newest verified kept backup before it, and with none, nil (prune no WAL).
// decisions (oldest first) and manifests are of physical backups.
func PITRWindowStart(decisions []RetentionDecision, byID map[string]*Manifest, verified map[string]bool, tier string) *Manifest {
	if tier == "" {
		tier = "daily"
	}
	start := -1
	for i, d := range decisions {
		if !d.Keep || byID[d.ID] == nil {
			continue
		}
		if slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.HasPrefix(r, tier+" ") }) {
			start = i
			break
		}
		start = i // no backup stands for the tier: the newest kept one
	}
	for i := start; i >= 0; i-- {
		if d := decisions[i]; d.Keep && byID[d.ID] != nil && verified[d.ID] {
			return byID[d.ID]
		}
	}
	return nil
}

// PlanWALRetention returns the archived WAL files that no kept physical backup
// needs: everything from window's start segment on is kept (on every timeline, so
// any point after it can be reached); for older kept backups the segments from their
// start to their stop, so each still restores to a consistent state. Timeline
// history files are never deleted. With no window backup nothing is deleted.
func PlanWALRetention(wal []WALObject, kept []*Manifest, window *Manifest) []WALObject {
	if window == nil {
		return nil
	}
	segSize := window.WALSegmentSize
	if segSize == 0 {
		segSize = DefaultSegmentSize
	}
	start, err := ParseWALName(window.StartWAL)
	if err != nil {
		return nil
	}
	cutoff := start.SegNo(segSize)
	type span struct {
		from, to   uint64
		tliA, tliB uint32
	}
	var spans []span
	for _, m := range kept {
		a, errA := ParseWALName(m.StartWAL)
		b, errB := ParseWALName(m.StopWAL)
		if errA != nil || errB != nil {
			return nil // a manifest we cannot read: delete nothing
		}
		spans = append(spans, span{a.SegNo(segSize), b.SegNo(segSize), a.Timeline, b.Timeline})
	}
	var del []WALObject
	for _, w := range wal {
		if w.Kind == WALHistory {
			continue
		}
		n := w.SegNo(segSize)
		if n >= cutoff {
			continue
		}
		needed := false
		for _, s := range spans {
			if n >= s.from && n <= s.to && (w.Timeline == s.tliA || w.Timeline == s.tliB) {
				needed = true
				break
			}
		}
		if !needed {
			del = append(del, w)
		}
	}
	return del
}
