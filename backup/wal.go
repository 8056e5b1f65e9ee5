package backup

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL write-ahead log location.
type LSN uint64

// String formats the LSN the way PostgreSQL prints it ("16/B374D848").
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// MarshalText implements encoding.TextMarshaler so manifests carry readable LSNs.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLSN parses "XXXXXXXX/XXXXXXXX".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("invalid LSN %q: want the form 16/B374D848", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("invalid LSN %q: want the form 16/B374D848", s)
	}
	return LSN(h<<32 | l), nil
}

// WALKind tells the kinds of files PostgreSQL hands to archive_command.
type WALKind int

// The kinds of archived WAL files.
const (
	WALSegment     WALKind = iota + 1 // 000000010000000000000003
	WALHistory                        // 00000002.history
	WALBackupLabel                    // 000000010000000000000003.00000028.backup
	WALPartial                        // 000000010000000000000003.partial
)

func (k WALKind) String() string {
	switch k {
	case WALSegment:
		return "segment"
	case WALHistory:
		return "history"
	case WALBackupLabel:
		return "backup"
	case WALPartial:
		return "partial"
	}
	return "unknown"
}

// WALFile is a parsed archived WAL file name.
type WALFile struct {
	Name     string
	Kind     WALKind
	Timeline uint32
	Log      uint32 // high 32 bits of the segment number space ("XXXXXXXX")
	Seg      uint32 // low part ("YYYYYYYY"); 0 for history files
}

// ErrInvalidWALName is returned by ParseWALName for names PostgreSQL never archives.
var ErrInvalidWALName = errors.New("not a WAL file name")

// ParseWALName parses the names PostgreSQL archives: segments, timeline history files,
// backup history files and partial segments. Paths are rejected: only the base name.
func ParseWALName(name string) (WALFile, error) {
	bad := func() (WALFile, error) {
		return WALFile{}, fmt.Errorf("%w: %q (want e.g. 000000010000000000000003 or 00000002.history)", ErrInvalidWALName, name)
	}
	if strings.HasSuffix(name, ".history") {
		hex := strings.TrimSuffix(name, ".history")
		if len(hex) != 8 || !isUpperHex(hex) {
			return bad()
		}
		tli, _ := strconv.ParseUint(hex, 16, 32)
		if tli == 0 {
			return bad()
		}
		return WALFile{Name: name, Kind: WALHistory, Timeline: uint32(tli)}, nil
	}
	if len(name) < 24 || !isUpperHex(name[:24]) {
		return bad()
	}
	f := WALFile{Name: name}
	tli, _ := strconv.ParseUint(name[0:8], 16, 32)
	lg, _ := strconv.ParseUint(name[8:16], 16, 32)
	sg, _ := strconv.ParseUint(name[16:24], 16, 32)
	if tli == 0 {
		return bad()
	}
	f.Timeline, f.Log, f.Seg = uint32(tli), uint32(lg), uint32(sg)
	rest := name[24:]
	switch {
	case rest == "":
		f.Kind = WALSegment
	case rest == ".partial":
		f.Kind = WALPartial
	case len(rest) == len(".00000028.backup") && strings.HasSuffix(rest, ".backup") && rest[0] == '.' && isUpperHex(rest[1:9]):
		f.Kind = WALBackupLabel
	default:
		return bad()
	}
	return f, nil
}

// SegmentName returns the file name of segment number segNo on timeline tli.
func SegmentName(tli uint32, segNo uint64, segSize uint64) string {
	per := segmentsPerXLogID(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, uint32(segNo/per), uint32(segNo%per))
}

// SegNo returns the segment number of f for the given segment size.
func (f WALFile) SegNo(segSize uint64) uint64 {
	return uint64(f.Log)*segmentsPerXLogID(segSize) + uint64(f.Seg)
}

// SegmentOf returns the segment number holding lsn.
func SegmentOf(lsn LSN, segSize uint64) uint64 { return uint64(lsn) / segSize }

func segmentsPerXLogID(segSize uint64) uint64 {
	if segSize == 0 {
		segSize = DefaultSegmentSize
	}
	return 0x100000000 / segSize
}

// DefaultSegmentSize is PostgreSQL's default wal_segment_size.
const DefaultSegmentSize = 16 << 20

func isUpperHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
