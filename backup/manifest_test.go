package backup_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
)

func validManifest() *backup.Manifest {
	start := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	return &backup.Manifest{
		Format: backup.FormatVersion, ID: "physical-20261204T030000Z", Type: backup.Physical,
		StartTime: start, StopTime: start.Add(time.Minute), SystemIdentifier: 7450000000000000001,
		PGVersion: 150018, Timeline: 1, StartLSN: 0x3000028, StopLSN: 0x3000138,
		StartWAL: "000000010000000000000003", StopWAL: "000000010000000000000003", WALSegmentSize: 16 << 20,
		BackupLabel: []byte("START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n"),
		Files:       []backup.File{{Name: "base.tar", Sum: backup.Sum{Size: 10, StoredSize: 5, SHA256: strings.Repeat("a", 64)}}},
	}
}

func TestManifestRoundTrip(t *testing.T) {
	m := validManifest()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := backup.DecodeManifest(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got.StopLSN != m.StopLSN || !bytes.Equal(got.BackupLabel, m.BackupLabel) || got.SystemIdentifier != m.SystemIdentifier {
		t.Fatalf("round trip changed the manifest: %+v", got)
	}
	if !strings.Contains(string(b), `"stop_lsn":"0/3000138"`) {
		t.Fatalf("LSNs are not readable in JSON: %s", b)
	}
}

func TestManifestValidate(t *testing.T) {
	for name, mutate := range map[string]func(*backup.Manifest){
		"path in file name":   func(m *backup.Manifest) { m.Files[0].Name = "../etc/passwd" },
		"duplicate file":      func(m *backup.Manifest) { m.Files = append(m.Files, m.Files[0]) },
		"stop before start":   func(m *backup.Manifest) { m.StopLSN = 1 },
		"no timeline":         func(m *backup.Manifest) { m.Timeline = 0 },
		"bad id":              func(m *backup.Manifest) { m.ID = "a/b" },
		"unknown type":        func(m *backup.Manifest) { m.Type = "incremental" },
		"future format":       func(m *backup.Manifest) { m.Format = 99 },
		"relative tablespace": func(m *backup.Manifest) { m.Tablespaces = []backup.Tablespace{{OID: 1, Location: "x"}} },
		"bad checksum":        func(m *backup.Manifest) { m.Files[0].SHA256 = "abc" },
		"bad stop wal":        func(m *backup.Manifest) { m.StopWAL = "00000002.history" },
	} {
		t.Run(name, func(t *testing.T) {
			m := validManifest()
			mutate(m)
			if err := m.Validate(); err == nil {
				t.Fatal("Validate accepted an invalid manifest")
			}
		})
	}
	if err := validManifest().Validate(); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
}

func FuzzDecodeManifest(f *testing.F) {
	b, _ := json.Marshal(validManifest())
	f.Add(b)
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := backup.DecodeManifest(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever decodes is valid and safe to use for paths.
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded manifest fails Validate: %v", err)
		}
		for _, f := range m.Files {
			if strings.ContainsAny(f.Name, "/\\") || f.Name == ".." {
				t.Fatalf("unsafe file name %q", f.Name)
			}
		}
	})
}
