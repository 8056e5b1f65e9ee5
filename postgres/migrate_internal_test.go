package postgres

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, tc := range []struct {
		name     string
		files    fstest.MapFS
		versions []int
		err      string
	}{
		{"in version order", fstest.MapFS{
			"m/0010_ten.up.sql": file("a"), "m/0010_ten.down.sql": file("b"),
			"m/0002_two.up.sql": file("c"), "m/0002_two.down.sql": file("d"),
		}, []int{2, 10}, ""},
		{"empty", fstest.MapFS{"m": &fstest.MapFile{Mode: 0o755 | 1<<31}}, nil, ""},
		{"no down", fstest.MapFS{"m/0001_a.up.sql": file("a")}, nil, "0001_a has no .down.sql"},
		{"no up", fstest.MapFS{"m/0001_a.down.sql": file("a")}, nil, "0001_a has no .up.sql"},
		{"stray file", fstest.MapFS{"m/0001_a.up.sql": file("a"), "m/0001_a.down.sql": file("a"), "m/README.md": file("x")}, nil, "README.md: name it"},
		{"no version", fstest.MapFS{"m/auth.up.sql": file("a")}, nil, "auth.up.sql: name it"},
		{"version zero", fstest.MapFS{"m/0000_a.up.sql": file("a"), "m/0000_a.down.sql": file("a")}, nil, "start at 0001"},
		{"two names", fstest.MapFS{"m/0001_a.up.sql": file("a"), "m/0001_b.down.sql": file("a")}, nil, "has two names"},
		{"two up files", fstest.MapFS{"m/0001_a.up.sql": file("a"), "m/0001_a.down.sql": file("a"), "m/0001_b.up.sql": file("a")}, nil, "has two names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := loadMigrations(tc.files, "m")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.version)
				if m.up == "" || m.down == "" || len(m.checksum) != 64 {
					t.Errorf("migration %d incomplete: %+v", m.version, m)
				}
			}
			if len(got) != len(tc.versions) {
				t.Fatalf("versions %v, want %v", got, tc.versions)
			}
			for i := range got {
				if got[i] != tc.versions[i] {
					t.Fatalf("versions %v, want %v", got, tc.versions)
				}
			}
		})
	}
}

func TestEmbeddedMigrations(t *testing.T) {
	ms, err := embeddedMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 || ms[0].name != "auth" {
		t.Fatalf("the first migration should be 0001_auth; got %+v", ms)
	}
	for i, m := range ms {
		if m.version != i+1 {
			t.Errorf("migration %04d_%s: versions must follow one another without gaps (expected %04d)", m.version, m.name, i+1)
		}
	}
}
