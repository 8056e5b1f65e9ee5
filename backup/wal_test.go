package backup_test

import (
	"errors"
	"testing"

	"github.com/hestami/hestami/backup"
)

func TestParseWALName(t *testing.T) {
	for _, tc := range []struct {
		name      string
		kind      backup.WALKind
		tli, log  uint32
		seg       uint32
		wantError bool
	}{
		{name: "000000010000000000000003", kind: backup.WALSegment, tli: 1, seg: 3},
		{name: "0000000A00000001000000FF", kind: backup.WALSegment, tli: 10, log: 1, seg: 255},
		{name: "00000002.history", kind: backup.WALHistory, tli: 2},
		{name: "000000010000000000000003.00000028.backup", kind: backup.WALBackupLabel, tli: 1, seg: 3},
		{name: "000000010000000000000003.partial", kind: backup.WALPartial, tli: 1, seg: 3},
		{name: "000000000000000000000003", wantError: true}, // timeline 0
		{name: "00000000.history", wantError: true},
		{name: "0000000100000000000000", wantError: true},
		{name: "00000001000000000000000g", wantError: true},
		{name: "000000010000000000000003.ready", wantError: true},
		{name: "../000000010000000000000003", wantError: true},
		{name: "000000010000000000000003/", wantError: true},
		{name: "0000000a0000000000000003", wantError: true}, // PostgreSQL writes upper case
		{name: "RECOVERYXLOG", wantError: true},
		{name: "", wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := backup.ParseWALName(tc.name)
			if tc.wantError {
				if !errors.Is(err, backup.ErrInvalidWALName) {
					t.Fatalf("ParseWALName(%q) = %+v, %v; want ErrInvalidWALName", tc.name, f, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Kind != tc.kind || f.Timeline != tc.tli || f.Log != tc.log || f.Seg != tc.seg || f.Name != tc.name {
				t.Fatalf("ParseWALName(%q) = %+v", tc.name, f)
			}
		})
	}
}

func TestSegmentArithmetic(t *testing.T) {
	for _, segSize := range []uint64{1 << 20, 16 << 20, 1 << 30} {
		per := uint64(0x100000000) / segSize
		for _, segNo := range []uint64{0, 1, per - 1, per, per + 1, 5*per + 7} {
			name := backup.SegmentName(3, segNo, segSize)
			f, err := backup.ParseWALName(name)
			if err != nil {
				t.Fatalf("SegmentName(%d, %d) = %q: %v", segNo, segSize, name, err)
			}
			if got := f.SegNo(segSize); got != segNo {
				t.Fatalf("SegNo(%s) = %d, want %d", name, got, segNo)
			}
		}
	}
	if got := backup.SegmentName(1, backup.SegmentOf(0x1_0300_0028, 16<<20), 16<<20); got != "000000010000000100000003" {
		t.Fatalf("segment of 1/3000028 = %s", got)
	}
}

func TestLSN(t *testing.T) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		l, err := backup.ParseLSN(s)
		if err != nil {
			t.Fatal(err)
		}
		if l.String() != s {
			t.Fatalf("ParseLSN(%q).String() = %q", s, l)
		}
	}
	for _, s := range []string{"", "16", "/1", "1/", "x/1", "123456789/0", "1/2/3"} {
		if _, err := backup.ParseLSN(s); err == nil {
			t.Errorf("ParseLSN(%q) succeeded", s)
		}
	}
}

func FuzzParseWALName(f *testing.F) {
	for _, s := range []string{"000000010000000000000003", "00000002.history", "000000010000000000000003.00000028.backup", "000000010000000000000003.partial", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		w, err := backup.ParseWALName(name)
		if err != nil {
			return
		}
		if w.Name != name || w.Timeline == 0 {
			t.Fatalf("ParseWALName(%q) = %+v", name, w)
		}
		// A parsed name never escapes its directory and keys back to itself.
		key := backup.WALKey(w)
		if len(key) == 0 || w.Name == "" || containsAny(name, "/\\\x00") {
			t.Fatalf("unsafe name %q accepted (key %q)", name, key)
		}
		if w.Kind == backup.WALSegment {
			if got := backup.SegmentName(w.Timeline, w.SegNo(16<<20), 16<<20); got != name && w.Seg < 256 {
				t.Fatalf("SegmentName round trip: %q -> %q", name, got)
			}
		}
	})
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}
