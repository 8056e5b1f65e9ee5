package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Type is a kind of backup.
type Type string

// Backup types.
const (
	Physical Type = "physical" // a base backup (BASE_BACKUP): restores with WAL to any point in time
	Logical  Type = "logical"  // pg_dump archives: portable, single-database restores
)

// ParseType parses "physical" or "logical".
func ParseType(s string) (Type, error) {
	switch Type(s) {
	case Physical, Logical:
		return Type(s), nil
	}
	return "", fmt.Errorf("unknown backup type %q: want physical or logical", s)
}

// Manifest describes a complete backup. It is the last object written for a backup:
// its presence is the backup's completion marker.
type Manifest struct {
	Format           int       `json:"format"`
	ID               string    `json:"id"`
	Type             Type      `json:"type"`
	StartTime        time.Time `json:"start_time"`
	StopTime         time.Time `json:"stop_time"`
	SystemIdentifier uint64    `json:"system_identifier,string"`
	PGVersion        int       `json:"pg_version"` // server_version_num
	Host             string    `json:"host,omitempty"`
	HestamiVersion   string    `json:"hestami_version,omitempty"`

	// Physical backups.
	Timeline       uint32 `json:"timeline,omitempty"`
	StartLSN       LSN    `json:"start_lsn,omitempty"`
	StopLSN        LSN    `json:"stop_lsn,omitempty"`
	StartWAL       string `json:"start_wal,omitempty"`
	StopWAL        string `json:"stop_wal,omitempty"`
	WALSegmentSize uint64 `json:"wal_segment_size,omitempty"`
	// NextXID is the first transaction id not yet assigned when the backup stopped: a
	// recovery target xid at or past it lies after the backup's consistent point.
	NextXID       uint64       `json:"next_xid,omitempty"`
	BackupLabel   []byte       `json:"backup_label,omitempty"`   // byte for byte
	TablespaceMap []byte       `json:"tablespace_map,omitempty"` // byte for byte
	Tablespaces   []Tablespace `json:"tablespaces,omitempty"`

	// Logical backups.
	Databases []string `json:"databases,omitempty"`

	Files      []File `json:"files"`
	Size       int64  `json:"size"`        // uncompressed bytes
	StoredSize int64  `json:"stored_size"` // bytes in storage
}

// Tablespace is a tablespace in a physical backup.
type Tablespace struct {
	OID      uint32 `json:"oid"`
	Location string `json:"location"`
}

// File is one stored file of a backup.
type File struct {
	Name string `json:"name"` // e.g. "base.tar", "16385.tar", "backup_manifest", "app.dump"
	Sum
	Database   string `json:"database,omitempty"`
	Tablespace uint32 `json:"tablespace,omitempty"`
}

// Duration is how long the backup took.
func (m *Manifest) Duration() time.Duration { return m.StopTime.Sub(m.StartTime) }

// File returns the named file entry.
func (m *Manifest) File(name string) (File, bool) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, true
		}
	}
	return File{}, false
}

// Validate checks the manifest's invariants.
func (m *Manifest) Validate() error {
	var errs []error
	if m.Format != FormatVersion {
		errs = append(errs, fmt.Errorf("format %d, want %d", m.Format, FormatVersion))
	}
	if !validID(m.ID) {
		errs = append(errs, fmt.Errorf("invalid id %q", m.ID))
	}
	if _, err := ParseType(string(m.Type)); err != nil {
		errs = append(errs, err)
	}
	if m.StartTime.IsZero() || m.StopTime.Before(m.StartTime) {
		errs = append(errs, fmt.Errorf("stop time %s before start time %s", m.StopTime, m.StartTime))
	}
	if m.Type == Physical {
		if m.Timeline == 0 {
			errs = append(errs, errors.New("physical backup without timeline"))
		}
		if m.StopLSN < m.StartLSN || m.StartLSN == 0 {
			errs = append(errs, fmt.Errorf("stop LSN %s before start LSN %s", m.StopLSN, m.StartLSN))
		}
		for _, w := range []string{m.StartWAL, m.StopWAL} {
			if f, err := ParseWALName(w); err != nil || f.Kind != WALSegment {
				errs = append(errs, fmt.Errorf("invalid WAL segment name %q", w))
			}
		}
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if f.Name == "" || f.Name != path.Clean(f.Name) || strings.ContainsAny(f.Name, "/\\") || f.Name == "." || f.Name == ".." || seen[f.Name] {
			errs = append(errs, fmt.Errorf("invalid file name %q", f.Name))
		}
		seen[f.Name] = true
		if f.Size < 0 || f.StoredSize < 0 || len(f.SHA256) != 64 {
			errs = append(errs, fmt.Errorf("file %q: invalid size or checksum", f.Name))
		}
	}
	for _, ts := range m.Tablespaces {
		if !path.IsAbs(ts.Location) {
			errs = append(errs, fmt.Errorf("tablespace %d: location %q is not absolute", ts.OID, ts.Location))
		}
	}
	return errors.Join(errs...)
}

// DecodeManifest parses and validates a manifest.
func DecodeManifest(r io.Reader) (*Manifest, error) {
	dec := json.NewDecoder(io.LimitReader(r, 64<<20))
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("invalid manifest: %w", err)
	}
	return &m, nil
}
