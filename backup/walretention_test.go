package backup_test

import (
	"slices"
	"testing"

	"github.com/hestami/hestami/backup"
)

func walObjects(names ...string) []backup.WALObject {
	var out []backup.WALObject
	for _, n := range names {
		f, err := backup.ParseWALName(n)
		if err != nil {
			panic(err)
		}
		out = append(out, backup.WALObject{WALFile: f, ObjectInfo: backup.ObjectInfo{Key: backup.WALKey(f)}})
	}
	return out
}

func TestPlanWALRetention(t *testing.T) {
	seg := func(tli uint32, n uint64) string { return backup.SegmentName(tli, n, 16<<20) }
	m := func(id string, tli uint32, from, to uint64) *backup.Manifest {
		return &backup.Manifest{ID: id, Timeline: tli, StartWAL: seg(tli, from), StopWAL: seg(tli, to), WALSegmentSize: 16 << 20}
	}
	var all []string
	for n := uint64(1); n <= 20; n++ {
		all = append(all, seg(1, n))
	}
	all = append(all, "00000002.history", seg(2, 15), seg(2, 16), seg(1, 14)+".partial", seg(1, 3)+".00000028.backup")
	wal := walObjects(all...)
	old := m("old", 1, 3, 4)
	mid := m("mid", 1, 8, 8)
	window := m("window", 1, 12, 13)
	for _, tc := range []struct {
		name   string
		kept   []*backup.Manifest
		window *backup.Manifest
		want   []string
	}{
		{"no window: nothing", []*backup.Manifest{old, window}, nil, nil},
		{"keeps the chain from the window and each older backup's own range", []*backup.Manifest{old, mid, window}, window,
			[]string{seg(1, 1), seg(1, 2), seg(1, 5), seg(1, 6), seg(1, 7), seg(1, 9), seg(1, 10), seg(1, 11)}},
		{"without older backups everything before the window goes, but history", []*backup.Manifest{window}, window,
			[]string{seg(1, 1), seg(1, 2), seg(1, 3), seg(1, 4), seg(1, 5), seg(1, 6), seg(1, 7), seg(1, 8), seg(1, 9), seg(1, 10), seg(1, 11), seg(1, 3) + ".00000028.backup"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, w := range backup.PlanWALRetention(wal, tc.kept, tc.window) {
				got = append(got, w.Name)
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("deletes %v\nwant    %v", got, want)
			}
		})
	}
}

func TestPITRWindowStartNeedsVerified(t *testing.T) {
	byID := map[string]*backup.Manifest{"a": {ID: "a"}, "b": {ID: "b"}, "c": {ID: "c"}}
	ds := []backup.RetentionDecision{
		{ID: "a", Keep: true, Reasons: []string{"monthly 2026-10"}},
		{ID: "b", Keep: true, Reasons: []string{"daily 2026-12-03"}},
		{ID: "c", Keep: true, Reasons: []string{"daily 2026-12-04", "newest complete backup"}},
	}
	for _, tc := range []struct {
		verified map[string]bool
		want     string
	}{
		{map[string]bool{"a": true, "b": true, "c": true}, "b"},
		{map[string]bool{"a": true, "c": true}, "a"}, // b unverified: reach back
		{map[string]bool{"c": true}, ""},             // nothing verified at or before b
	} {
		got := backup.PITRWindowStart(ds, byID, tc.verified, "daily")
		name := ""
		if got != nil {
			name = got.ID
		}
		if name != tc.want {
			t.Errorf("verified %v: window starts at %q, want %q", tc.verified, name, tc.want)
		}
	}
}
