package backup

import (
	"context"
	"time"
)

// ArchiverStats is PostgreSQL's view of archiving (pg_stat_archiver).
type ArchiverStats struct {
	ArchivedCount    int64      `json:"archived_count"`
	LastArchivedWAL  string     `json:"last_archived_wal,omitempty"`
	LastArchivedTime *time.Time `json:"last_archived_time,omitempty"`
	FailedCount      int64      `json:"failed_count"`
	LastFailedWAL    string     `json:"last_failed_wal,omitempty"`
	LastFailedTime   *time.Time `json:"last_failed_time,omitempty"`
	// CurrentWAL is the segment the server is writing now.
	CurrentWAL string `json:"current_wal,omitempty"`
	// LagSegments is how many segments lie between the last archived and the current.
	LagSegments int64 `json:"lag_segments"`
	// LagSeconds is the age of the last archived segment.
	LagSeconds float64 `json:"lag_seconds"`
}

// TimelineStatus summarises the archived WAL of one timeline.
type TimelineStatus struct {
	Timeline   uint32    `json:"timeline"`
	Segments   int       `json:"segments"`
	First      string    `json:"first,omitempty"`
	Last       string    `json:"last,omitempty"`
	LastTime   time.Time `json:"last_time"`
	History    bool      `json:"history_file"`
	Gaps       []Gap     `json:"gaps"`
	StoredSize int64     `json:"stored_size"`
}

// Gap is a run of missing segments between two archived ones.
type Gap struct {
	After   string `json:"after"`
	Before  string `json:"before"`
	Missing uint64 `json:"missing"`
}

// WALStatus is the archive's state.
type WALStatus struct {
	Storage  string         `json:"storage"`
	Archiver *ArchiverStats `json:"archiver,omitempty"`
	// ArchiverError says why PostgreSQL's statistics are missing.
	ArchiverError string           `json:"archiver_error,omitempty"`
	Timelines     []TimelineStatus `json:"timelines"`
}

// Timelines summarises the archived WAL by timeline, with every gap in each chain.
func (r *Repository) Timelines(ctx context.Context) ([]TimelineStatus, error) {
	m, err := r.Marker(ctx)
	if err != nil {
		return nil, err
	}
	segSize := m.WALSegmentSize
	if segSize == 0 {
		segSize = DefaultSegmentSize
	}
	objs, err := r.ListWAL(ctx, 0)
	if err != nil {
		return nil, err
	}
	var out []TimelineStatus
	idx := map[uint32]int{}
	var prev = map[uint32]WALFile{}
	for _, o := range objs {
		i, ok := idx[o.Timeline]
		if !ok {
			out = append(out, TimelineStatus{Timeline: o.Timeline, Gaps: []Gap{}})
			i = len(out) - 1
			idx[o.Timeline] = i
		}
		ts := &out[i]
		ts.StoredSize += o.Size
		switch o.Kind {
		case WALHistory:
			ts.History = true
			continue
		case WALSegment:
		default:
			continue
		}
		ts.Segments++
		if ts.First == "" {
			ts.First = o.Name
		}
		if p, ok := prev[o.Timeline]; ok {
			a, b := p.SegNo(segSize), o.SegNo(segSize)
			if b > a+1 {
				ts.Gaps = append(ts.Gaps, Gap{After: p.Name, Before: o.Name, Missing: b - a - 1})
			}
		}
		prev[o.Timeline] = o.WALFile
		ts.Last = o.Name
		if o.ModTime.After(ts.LastTime) {
			ts.LastTime = o.ModTime
		}
	}
	return out, nil
}
