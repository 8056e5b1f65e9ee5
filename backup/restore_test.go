package backup_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/file"
	"github.com/hestami/hestami/zstd"
)

var t0 = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

func physical(id string, stop time.Time, stopLSN backup.LSN, nextXID uint64) *backup.Manifest {
	return &backup.Manifest{ID: id, Type: backup.Physical, StartTime: stop.Add(-time.Minute), StopTime: stop, StopLSN: stopLSN, NextXID: nextXID}
}

func TestChooseBackup(t *testing.T) {
	a := physical("a", t0, 0x1000000, 100)
	b := physical("b", t0.Add(time.Hour), 0x3000000, 500)
	c := physical("c", t0.Add(2*time.Hour), 0x5000000, 0) // next xid unknown
	logical := &backup.Manifest{ID: "l", Type: backup.Logical, StopTime: t0.Add(3 * time.Hour)}
	all := []*backup.Manifest{a, b, c, logical}

	tests := []struct {
		name   string
		ms     []*backup.Manifest
		target backup.Target
		want   string // chosen id, or "" for no backup before the target
	}{
		{"latest is the newest physical", all, backup.Target{}, "c"},
		{"name: the newest", all, backup.Target{Kind: backup.TargetName, Name: "x"}, "c"},
		{"time between two backups", all, backup.Target{Kind: backup.TargetTime, Time: t0.Add(90 * time.Minute)}, "b"},
		{"time exactly at a stop is not after it", all, backup.Target{Kind: backup.TargetTime, Time: t0.Add(time.Hour)}, "a"},
		{"time after all", all, backup.Target{Kind: backup.TargetTime, Time: t0.Add(24 * time.Hour)}, "c"},
		{"time before all", all, backup.Target{Kind: backup.TargetTime, Time: t0.Add(-time.Second)}, ""},
		{"lsn at a stop is reachable", all, backup.Target{Kind: backup.TargetLSN, LSN: 0x3000000}, "b"},
		{"lsn between", all, backup.Target{Kind: backup.TargetLSN, LSN: 0x4000000}, "b"},
		{"lsn before all", all, backup.Target{Kind: backup.TargetLSN, LSN: 0x10}, ""},
		{"xid after b's stop", all, backup.Target{Kind: backup.TargetXID, XID: 600}, "b"},
		{"xid equal to next xid: assigned after the stop", all, backup.Target{Kind: backup.TargetXID, XID: 500}, "b"},
		{"xid running during b", all, backup.Target{Kind: backup.TargetXID, XID: 499}, "a"},
		{"xid before all", all, backup.Target{Kind: backup.TargetXID, XID: 50}, ""},
		{"unordered input", []*backup.Manifest{c, a, b}, backup.Target{Kind: backup.TargetTime, Time: t0.Add(90 * time.Minute)}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := backup.ChooseBackup(tt.ms, tt.target)
			if tt.want == "" {
				var nb *backup.NoBackupBeforeTargetError
				if !errors.As(err, &nb) || !errors.Is(err, backup.ErrNoBackupBeforeTarget) {
					t.Fatalf("ChooseBackup = %v, %v; want NoBackupBeforeTargetError", m, err)
				}
				if nb.Oldest.ID != "a" || !strings.Contains(err.Error(), "the oldest, a,") {
					t.Errorf("error names %s as the oldest: %v", nb.Oldest.ID, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ChooseBackup: %v", err)
			}
			if m.ID != tt.want {
				t.Errorf("chose %s, want %s", m.ID, tt.want)
			}
		})
	}

	t.Run("no physical backup", func(t *testing.T) {
		_, err := backup.ChooseBackup([]*backup.Manifest{logical}, backup.Target{})
		if !errors.Is(err, backup.ErrBackupNotFound) {
			t.Errorf("err = %v, want ErrBackupNotFound", err)
		}
	})
	t.Run("chosen backup after the target", func(t *testing.T) {
		err := backup.CheckPrecedes(b, backup.Target{Kind: backup.TargetTime, Time: t0})
		if !errors.Is(err, backup.ErrNoBackupBeforeTarget) || !strings.Contains(err.Error(), "backup b stopped") {
			t.Errorf("CheckPrecedes = %v", err)
		}
		if err := backup.CheckPrecedes(b, backup.Target{Kind: backup.TargetTime, Time: t0.Add(2 * time.Hour)}); err != nil {
			t.Errorf("CheckPrecedes of a backup before the target = %v", err)
		}
		if err := backup.CheckPrecedes(logical, backup.Target{}); err == nil {
			t.Error("CheckPrecedes accepted a logical backup")
		}
	})
}

func TestTargetValidate(t *testing.T) {
	tests := []struct {
		name string
		t    backup.Target
		ok   bool
	}{
		{"latest", backup.Target{}, true},
		{"latest exclusive", backup.Target{Exclusive: true}, false},
		{"time", backup.Target{Kind: backup.TargetTime, Time: t0, Action: backup.ActionPromote}, true},
		{"zero time", backup.Target{Kind: backup.TargetTime}, false},
		{"lsn 0", backup.Target{Kind: backup.TargetLSN}, false},
		{"xid 2 is not normal", backup.Target{Kind: backup.TargetXID, XID: 2}, false},
		{"empty name", backup.Target{Kind: backup.TargetName}, false},
		{"long name", backup.Target{Kind: backup.TargetName, Name: strings.Repeat("n", 64)}, false},
		{"bad action", backup.Target{Kind: backup.TargetName, Name: "n", Action: "explode"}, false},
	}
	for _, tt := range tests {
		if err := tt.t.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestParseTargetTime(t *testing.T) {
	berlin := time.FixedZone("CEST", 2*3600)
	want := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2024-05-01T10:00:00Z", want},
		{"2024-05-01T12:00:00+02:00", want},
		{"2024-05-01 10:00:00+00", want},
		{"2024-05-01 10:00:00.250+00", want.Add(250 * time.Millisecond)},
		{"2024-05-01 12:00:00+02:00", want},
		{"2024-05-01 12:00:00", want}, // no zone: loc
		{"2024-05-01T10:00:00.123456789Z", want.Add(123456789)},
	}
	for _, tt := range tests {
		got, err := backup.ParseTargetTime(tt.in, berlin)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("ParseTargetTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2024-13-01 00:00:00+00", "10:00"} {
		if _, err := backup.ParseTargetTime(bad, time.UTC); err == nil {
			t.Errorf("ParseTargetTime(%q) accepted", bad)
		}
	}
}

func TestRecoveryConfigSettings(t *testing.T) {
	tests := []struct {
		name   string
		target backup.Target
		want   string
	}{
		{"latest", backup.Target{}, "restore_command=CMD"},
		{"time", backup.Target{Kind: backup.TargetTime, Time: time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.FixedZone("", 7200))},
			"restore_command=CMD recovery_target_time=2024-05-01 10:00:00.123456+00:00 recovery_target_action=pause"},
		{"lsn promote", backup.Target{Kind: backup.TargetLSN, LSN: 0x16B374D848, Action: backup.ActionPromote},
			"restore_command=CMD recovery_target_lsn=16/B374D848 recovery_target_action=promote"},
		{"xid exclusive", backup.Target{Kind: backup.TargetXID, XID: 4294967300, Exclusive: true},
			"restore_command=CMD recovery_target_xid=4294967300 recovery_target_inclusive=false recovery_target_action=pause"},
		{"name shutdown", backup.Target{Kind: backup.TargetName, Name: "before it's gone", Action: backup.ActionShutdown},
			"restore_command=CMD recovery_target_name=before it's gone recovery_target_action=shutdown"},
	}
	for _, tt := range tests {
		var parts []string
		for _, kv := range (backup.RecoveryConfig{RestoreCommand: "CMD", Target: tt.target}).Settings() {
			parts = append(parts, kv[0]+"="+kv[1])
		}
		if got := strings.Join(parts, " "); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestWriteRecoveryConfig(t *testing.T) {
	dir := t.TempDir()
	old := "# Do not edit this file manually!\n" +
		"max_connections = '40'\n" +
		"restore_command = 'old fetch %f %p'\n" +
		"  recovery_target_time='2020-01-01 00:00:00+00'\n" +
		"Recovery_Target_Action = 'promote'\n" +
		"recovery_target_timeline = '3'\n" +
		"# recovery_target_name = 'already a comment'\n" +
		"primary_conninfo = 'host=elsewhere'\n"
	if err := os.WriteFile(filepath.Join(dir, "postgresql.auto.conf"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := backup.RecoveryConfig{
		RestoreCommand: backup.RestoreCommand("/opt/hestami/bin/hestami", "/etc/hestami/it's.yaml"),
		Target:         backup.Target{Kind: backup.TargetName, Name: `a\b`},
		BackupID:       "physical-20240501T100000Z",
		Time:           t0,
	}
	if err := backup.WriteRecoveryConfig(dir, rc, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"max_connections = '40'\n",
		"primary_conninfo = 'host=elsewhere'\n",
		"# Removed by hestami restore: restore_command = 'old fetch %f %p'\n",
		"# Removed by hestami restore:   recovery_target_time='2020-01-01 00:00:00+00'\n",
		"# Removed by hestami restore: Recovery_Target_Action = 'promote'\n",
		"# Removed by hestami restore: recovery_target_timeline = '3'\n",
		"\n# recovery_target_name = 'already a comment'\n",
		"# Recovery settings added by hestami restore of backup physical-20240501T100000Z at 2024-05-01T10:00:00Z (target: restore point \"a\\\\b\")\n",
		// Shell-quoted, then conf-quoted: PostgreSQL reads '' as ' and \\ as \.
		`restore_command = '/opt/hestami/bin/hestami --config ''/etc/hestami/it''\\''''s.yaml'' wal fetch %f %p'` + "\n",
		`recovery_target_name = 'a\\b'` + "\n",
		"recovery_target_action = 'pause'\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("postgresql.auto.conf lacks %q:\n%s", want, got)
		}
	}
	// Every active line sets each recovery key at most once: ours.
	seen := map[string]int{}
	for _, line := range strings.Split(got, "\n") {
		if k, _, ok := strings.Cut(line, " = "); ok && !strings.HasPrefix(line, "#") {
			seen[strings.ToLower(k)]++
		}
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("%s is set %d times", k, n)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "recovery.signal")); err != nil || fi.Size() != 0 {
		t.Errorf("recovery.signal: %v", err)
	}
}

func TestRestoreCommand(t *testing.T) {
	tests := []struct{ exe, cfg, want string }{
		{"/usr/bin/hestami", "", "/usr/bin/hestami wal fetch %f %p"},
		{"/usr/bin/hestami", "/etc/hestami.yaml", "/usr/bin/hestami --config /etc/hestami.yaml wal fetch %f %p"},
		{"/opt/my tools/hestami", "/etc/100%.yaml", "'/opt/my tools/hestami' --config /etc/100%%.yaml wal fetch %f %p"},
	}
	for _, tt := range tests {
		if got := backup.RestoreCommand(tt.exe, tt.cfg); got != tt.want {
			t.Errorf("RestoreCommand(%q, %q) = %q, want %q", tt.exe, tt.cfg, got, tt.want)
		}
	}
}

func TestPrepareDir(t *testing.T) {
	t.Run("missing is created private", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		if _, err := backup.PrepareDir(dir, false); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("created %v (%v), want mode 0700", fi, err)
		}
		if parent, _ := os.Stat(filepath.Dir(dir)); parent.Mode().Perm() != 0o755 {
			t.Errorf("created parent with mode %v, want 0755 so the cluster user can reach the directory", parent.Mode().Perm())
		}
	})
	t.Run("non-empty refused, then forced", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "junk"), nil, 0o600)
		os.Mkdir(filepath.Join(dir, "sub"), 0o700)
		if _, err := backup.PrepareDir(dir, false); !errors.Is(err, backup.ErrDirNotEmpty) {
			t.Fatalf("PrepareDir = %v, want ErrDirNotEmpty", err)
		}
		// A stale postmaster.pid (its process is gone) does not block --force.
		os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte("2147483646\n"), 0o600)
		n, err := backup.PrepareDir(dir, true)
		if err != nil || n != 3 {
			t.Fatalf("PrepareDir(force) = %d, %v; want 3 entries removed", n, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("left %d entries", len(entries))
		}
	})
	t.Run("live postmaster refused even with force", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n/data\n"), 0o600)
		if _, err := backup.PrepareDir(dir, true); !errors.Is(err, backup.ErrServerRunning) {
			t.Fatalf("PrepareDir = %v, want ErrServerRunning", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err != nil {
			t.Error("postmaster.pid was removed")
		}
	})
	t.Run("a file is not a directory", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "f")
		os.WriteFile(f, nil, 0o600)
		if _, err := backup.PrepareDir(f, true); err == nil {
			t.Error("PrepareDir accepted a file")
		}
	})
}

func TestCheckRestoreDirAndMoveAside(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 15, 0, 0, time.UTC)
	t.Run("missing and empty", func(t *testing.T) {
		for name, dir := range map[string]string{"missing": filepath.Join(t.TempDir(), "new"), "empty": t.TempDir()} {
			s, err := backup.CheckRestoreDir(dir)
			if err != nil || !s.Empty() || s.Missing != (name == "missing") {
				t.Errorf("%s: CheckRestoreDir = %+v, %v", name, s, err)
			}
		}
	})
	t.Run("a stopped data directory is moved aside whole", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		os.Mkdir(dir, 0o750)
		os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("16\n"), 0o600)
		os.Mkdir(filepath.Join(dir, "base"), 0o700)
		os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte("2147483646\n"), 0o600) // stale
		s, err := backup.CheckRestoreDir(dir)
		if err != nil || s.Empty() || s.PGVersion != "16" || s.MountPoint {
			t.Fatalf("CheckRestoreDir = %+v, %v; want a non-empty PostgreSQL 16 directory", s, err)
		}
		if err := s.NotEmptyError("add --move-aside"); !errors.Is(err, backup.ErrDirNotEmpty) || !strings.Contains(err.Error(), "PostgreSQL 16 data directory") {
			t.Errorf("NotEmptyError = %v", err)
		}
		aside, err := backup.MoveAside(dir, now)
		if err != nil || aside != dir+".replaced-20240501T101500Z" {
			t.Fatalf("MoveAside = %q, %v", aside, err)
		}
		if b, err := os.ReadFile(filepath.Join(aside, "PG_VERSION")); err != nil || string(b) != "16\n" {
			t.Errorf("moved contents: PG_VERSION %q, %v", b, err)
		}
		fi, err := os.Stat(dir)
		entries, _ := os.ReadDir(dir)
		if err != nil || fi.Mode().Perm() != 0o700 || len(entries) != 0 {
			t.Errorf("recreated %s: %v, %d entries (%v); want empty, mode 0700", dir, fi, len(entries), err)
		}
		if _, err := backup.MoveAside(dir, now); err == nil {
			// dir is empty now, but the name it would move to is taken.
			t.Error("MoveAside reused an existing .replaced- name")
		}
	})
	t.Run("live postmaster refused", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n/data\n"), 0o600)
		if _, err := backup.CheckRestoreDir(dir); !errors.Is(err, backup.ErrServerRunning) {
			t.Errorf("CheckRestoreDir = %v, want ErrServerRunning", err)
		}
		if _, err := backup.MoveAside(dir, now); !errors.Is(err, backup.ErrServerRunning) {
			t.Errorf("MoveAside = %v, want ErrServerRunning", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err != nil {
			t.Error("postmaster.pid was moved")
		}
	})
	t.Run("a mount point is not moved", func(t *testing.T) {
		s, err := backup.CheckRestoreDir("/proc")
		if err != nil || !s.MountPoint {
			t.Fatalf("CheckRestoreDir(/proc) = %+v, %v; want a mount point", s, err)
		}
		if _, err := backup.MoveAside("/proc", now); !errors.Is(err, backup.ErrMountPoint) {
			t.Errorf("MoveAside(/proc) = %v, want ErrMountPoint", err)
		}
	})
	t.Run("a file is not a directory", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "f")
		os.WriteFile(f, nil, 0o600)
		if _, err := backup.CheckRestoreDir(f); err == nil {
			t.Error("CheckRestoreDir accepted a file")
		}
	})
}

// tarEntry is one entry of a test archive.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func makeTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), Linkname: e.link, Format: tar.FormatUSTAR}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o600
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// storeBackup stores files (name -> content) as backup id and returns its manifest.
func storeBackup(t *testing.T, repo *backup.Repository, id string, tablespaces []backup.Tablespace, files map[string][]byte) *backup.Manifest {
	t.Helper()
	m := &backup.Manifest{Format: backup.FormatVersion, ID: id, Type: backup.Physical, Tablespaces: tablespaces}
	for _, name := range []string{"base.tar", "16400.tar", "backup_manifest"} {
		body, ok := files[name]
		if !ok {
			continue
		}
		sum, err := repo.PutObject(context.Background(), backup.BackupKey(id, name), bytes.NewReader(body), true, 1)
		if err != nil {
			t.Fatal(err)
		}
		f := backup.File{Name: name, Sum: sum}
		if name == "16400.tar" {
			f.Tablespace = 16400
		}
		m.Files = append(m.Files, f)
	}
	return m
}

func newRestoreRepo(t *testing.T) (*backup.Repository, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &backup.Repository{Storage: st, Codec: zstd.Codec{}}, dir
}

func TestUnpack(t *testing.T) {
	repo, repoDir := newRestoreRepo(t)
	big := strings.Repeat("0123456789abcdef", 300_000) // several read-ahead chunks
	base := makeTar(t,
		tarEntry{name: "backup_label", body: "START WAL LOCATION: 0/2000028\n"},
		tarEntry{name: "tablespace_map", body: "16400 /old/ts\n"},
		tarEntry{name: "global", typ: tar.TypeDir, mode: 0o700},
		tarEntry{name: "global/pg_control", body: "control"},
		tarEntry{name: "base/1/1259", body: big}, // no directory entry before it
		tarEntry{name: "pg_tblspc", typ: tar.TypeDir, mode: 0o700},
		tarEntry{name: "pg_wal/archive_status", typ: tar.TypeDir, mode: 0o700},
		tarEntry{name: "postgresql.conf", body: "port = 5432\n", mode: 0o640},
	)
	ts := makeTar(t,
		tarEntry{name: "PG_15_202209061", typ: tar.TypeDir, mode: 0o700},
		tarEntry{name: "PG_15_202209061/5/16401", body: "table in a tablespace"},
	)
	m := storeBackup(t, repo, "physical-1", []backup.Tablespace{{OID: 16400, Location: "/old/ts"}},
		map[string][]byte{"base.tar": base, "16400.tar": ts, "backup_manifest": []byte(`{"PostgreSQL-Backup-Manifest-Version": 1}`)})

	t.Run("restores files, tablespace moved", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		newTS := filepath.Join(t.TempDir(), "ts")
		if _, err := backup.PrepareDir(data, false); err != nil {
			t.Fatal(err)
		}
		dirs, err := backup.TablespaceDirs(m, map[uint32]string{16400: newTS})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := backup.PrepareDir(newTS, false); err != nil {
			t.Fatal(err)
		}
		r := &backup.Restorer{Repo: repo, Parallel: 2}
		if err := r.Unpack(context.Background(), m, data, dirs); err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]string{
			"global/pg_control": "control",
			"base/1/1259":       big,
			"backup_label":      "START WAL LOCATION: 0/2000028\n",
			"tablespace_map":    "16400 " + newTS + "\n",
			"backup_manifest":   `{"PostgreSQL-Backup-Manifest-Version": 1}`,
		} {
			got, err := os.ReadFile(filepath.Join(data, path))
			if err != nil || string(got) != want {
				t.Errorf("%s = %.40q (%v), want %.40q", path, got, err, want)
			}
		}
		if got, _ := os.ReadFile(filepath.Join(newTS, "PG_15_202209061/5/16401")); string(got) != "table in a tablespace" {
			t.Errorf("tablespace file = %q", got)
		}
		if link, err := os.Readlink(filepath.Join(data, "pg_tblspc/16400")); err != nil || link != newTS {
			t.Errorf("pg_tblspc/16400 -> %q (%v), want %s", link, err, newTS)
		}
		if fi, _ := os.Stat(filepath.Join(data, "postgresql.conf")); fi.Mode().Perm() != 0o640 {
			t.Errorf("postgresql.conf mode %v, want the archive's 0640", fi.Mode().Perm())
		}
		if fi, _ := os.Stat(data); fi.Mode().Perm() != 0o700 {
			t.Errorf("data directory mode %v, want 0700", fi.Mode().Perm())
		}
	})

	t.Run("unknown tablespace in the map", func(t *testing.T) {
		if _, err := backup.TablespaceDirs(m, map[uint32]string{99: "/x"}); err == nil {
			t.Error("TablespaceDirs accepted an OID the backup lacks")
		}
	})

	t.Run("damaged checksum trailer", func(t *testing.T) {
		// The tar ends long before the object does: only reading to EOF finds this.
		damaged := storeBackup(t, repo, "physical-2", nil, map[string][]byte{"base.tar": base})
		obj := filepath.Join(repoDir, filepath.FromSlash(backup.BackupKey("physical-2", "base.tar")))
		b, _ := os.ReadFile(obj)
		b[len(b)-1] ^= 1
		os.WriteFile(obj, b, 0o640)
		data := filepath.Join(t.TempDir(), "data")
		os.Mkdir(data, 0o700)
		err := (&backup.Restorer{Repo: repo}).Unpack(context.Background(), damaged, data, nil)
		if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), "base.tar") || !strings.Contains(err.Error(), data+" is incomplete") {
			t.Fatalf("Unpack of a damaged object = %v, want ErrCorrupt naming base.tar and the incomplete directory", err)
		}
	})

	for _, tt := range []struct {
		name  string
		entry tarEntry
	}{
		{"path escaping the directory", tarEntry{name: "../evil", body: "x"}},
		{"absolute path", tarEntry{name: "/etc/evil", body: "x"}},
		{"symlink outside pg_tblspc", tarEntry{name: "pg_wal", typ: tar.TypeSymlink, link: "/tmp"}},
		{"hard link", tarEntry{name: "hl", typ: tar.TypeLink, link: "global/pg_control"}},
	} {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			id := "physical-" + strings.ReplaceAll(tt.name, " ", "-")
			evil := storeBackup(t, repo, id, nil, map[string][]byte{"base.tar": makeTar(t, tarEntry{name: "backup_label", body: "x"}, tt.entry)})
			root := t.TempDir()
			data := filepath.Join(root, "data")
			os.Mkdir(data, 0o700)
			if err := (&backup.Restorer{Repo: repo}).Unpack(context.Background(), evil, data, nil); err == nil {
				t.Fatal("Unpack accepted the archive")
			}
			if _, err := os.Lstat(filepath.Join(root, "evil")); !errors.Is(err, fs.ErrNotExist) {
				t.Error("an entry was written outside the data directory")
			}
		})
	}

	t.Run("writing through a tablespace link", func(t *testing.T) {
		outside := t.TempDir()
		evil := storeBackup(t, repo, "physical-through-link", nil, map[string][]byte{"base.tar": makeTar(t,
			tarEntry{name: "pg_tblspc/16400", typ: tar.TypeSymlink, link: outside},
			tarEntry{name: "pg_tblspc/16400/evil", body: "x"},
		)})
		data := filepath.Join(t.TempDir(), "data")
		os.Mkdir(data, 0o700)
		if err := (&backup.Restorer{Repo: repo}).Unpack(context.Background(), evil, data, nil); err == nil {
			t.Fatal("Unpack wrote through a link")
		}
		if _, err := os.Lstat(filepath.Join(outside, "evil")); !errors.Is(err, fs.ErrNotExist) {
			t.Error("a file was written through the link")
		}
	})
}

func TestCheckBackupWAL(t *testing.T) {
	repo, _ := newRestoreRepo(t)
	m := &backup.Manifest{ID: "p", StartWAL: "000000010000000000000002", StopWAL: "000000010000000000000004", WALSegmentSize: 16 << 20}
	for _, name := range []string{"000000010000000000000002", "000000010000000000000004"} {
		f, _ := backup.ParseWALName(name)
		if _, err := repo.PutObject(context.Background(), backup.WALKey(f), strings.NewReader("wal"), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	err := backup.CheckBackupWAL(context.Background(), repo, m)
	if !errors.Is(err, backup.ErrWALMissing) || !strings.Contains(err.Error(), "000000010000000000000003") {
		t.Fatalf("CheckBackupWAL with a gap = %v, want ErrWALMissing naming ...03", err)
	}
	f, _ := backup.ParseWALName("000000010000000000000003")
	repo.PutObject(context.Background(), backup.WALKey(f), strings.NewReader("wal"), true, 1)
	if err := backup.CheckBackupWAL(context.Background(), repo, m); err != nil {
		t.Errorf("CheckBackupWAL with every segment = %v", err)
	}
}

// fakeSource is a BaseBackupSource streaming a tiny, fixed base backup.
type fakeSource struct {
	status  backup.ServerStatus
	base    []byte
	failErr error
}

func (f *fakeSource) Status(context.Context) (backup.ServerStatus, error) { return f.status, nil }
func (f *fakeSource) NextXID(context.Context) (uint64, error)             { return 1234, nil }
func (f *fakeSource) BaseBackup(ctx context.Context, label string, sink backup.ArchiveSink) (backup.BaseBackupResult, error) {
	res := backup.BaseBackupResult{StartLSN: 0x2000028, StartTimeline: 1, StopLSN: 0x3000100, StopTimeline: 1,
		Tablespaces: []backup.ServerTablespace{{Size: int64(len(f.base))}}}
	sink.Started(res.StartLSN, 1, res.Tablespaces)
	if err := sink.Archive(ctx, res.Tablespaces[0], bytes.NewReader(f.base)); err != nil {
		return res, err
	}
	if f.failErr != nil {
		return res, f.failErr
	}
	return res, sink.Manifest(ctx, strings.NewReader(`{"PostgreSQL-Backup-Manifest-Version": 1}`))
}

// These check PhysicalBackup's refusals and completion rule without a server; the
// streaming itself is tested against PostgreSQL in cmd/hestami.
func TestPhysicalBackupRun(t *testing.T) {
	good := backup.ServerStatus{SystemIdentifier: 42, VersionNum: 150004, WALSegmentSize: 16 << 20, ArchiveMode: "on", DataSize: 1000}
	base := makeTar(t,
		tarEntry{name: "backup_label", body: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"},
		tarEntry{name: "tablespace_map", body: ""},
		tarEntry{name: "PG_VERSION", body: "15\n"},
	)
	archiveWAL := func(t *testing.T, repo *backup.Repository, names ...string) {
		for _, n := range names {
			f, _ := backup.ParseWALName(n)
			if _, err := repo.PutObject(context.Background(), backup.WALKey(f), strings.NewReader("wal"), true, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func(t *testing.T, repo *backup.Repository, src *fakeSource) (*backup.Manifest, error) {
		b := &backup.PhysicalBackup{Repo: repo, Source: src, WALTimeout: 200 * time.Millisecond, WALPollInterval: 10 * time.Millisecond}
		return b.Run(context.Background())
	}

	t.Run("complete once the WAL is archived", func(t *testing.T) {
		repo, _ := newRestoreRepo(t)
		archiveWAL(t, repo, "000000010000000000000002", "000000010000000000000003")
		m, err := run(t, repo, &fakeSource{status: good, base: base})
		if err != nil {
			t.Fatal(err)
		}
		if m.StartWAL != "000000010000000000000002" || m.StopWAL != "000000010000000000000003" || m.NextXID != 1234 {
			t.Errorf("manifest WAL %s..%s, next xid %d", m.StartWAL, m.StopWAL, m.NextXID)
		}
		if !strings.HasPrefix(string(m.BackupLabel), "START WAL LOCATION") || m.TablespaceMap == nil || len(m.TablespaceMap) != 0 {
			t.Errorf("label %q, tablespace map %q (want empty, present)", m.BackupLabel, m.TablespaceMap)
		}
		stored, err := repo.Manifest(context.Background(), m.ID)
		if err != nil || len(stored.Files) != 2 || stored.Files[0].Name != "base.tar" || stored.Files[0].Size != int64(len(base)) {
			t.Fatalf("stored manifest %+v, %v", stored, err)
		}
	})
	t.Run("stop exactly on a segment boundary needs no later segment", func(t *testing.T) {
		repo, _ := newRestoreRepo(t)
		archiveWAL(t, repo, "000000010000000000000002")
		src := &fakeSource{status: good, base: base}
		b := &backup.PhysicalBackup{Repo: repo, Source: boundarySource{src}, WALTimeout: time.Second, WALPollInterval: 10 * time.Millisecond}
		m, err := b.Run(context.Background())
		if err != nil || m.StopWAL != "000000010000000000000002" {
			t.Fatalf("Run = %v, stop WAL %v; want ...02", err, m)
		}
	})
	t.Run("WAL never archived: no manifest", func(t *testing.T) {
		repo, _ := newRestoreRepo(t)
		archiveWAL(t, repo, "000000010000000000000002") // ...03 missing
		_, err := run(t, repo, &fakeSource{status: good, base: base})
		var we *backup.WALNotArchivedError
		if !errors.As(err, &we) || we.Segment != "000000010000000000000003" {
			t.Fatalf("err = %v, want WALNotArchivedError for ...03", err)
		}
		entries, _ := repo.Backups(context.Background())
		if len(entries) != 1 || entries[0].Status != backup.StatusIncomplete {
			t.Errorf("backups = %+v, want one incomplete", entries)
		}
	})
	for _, tt := range []struct {
		name   string
		status func(s *backup.ServerStatus)
		want   string
	}{
		{"PostgreSQL 14", func(s *backup.ServerStatus) { s.VersionNum = 140010 }, "PostgreSQL 15 or newer"},
		{"archive_mode off", func(s *backup.ServerStatus) { s.ArchiveMode = "off" }, "archive_mode is off"},
		{"standby not archiving", func(s *backup.ServerStatus) { s.InRecovery = true }, "archive_mode = always"},
		{"too big for the storage", func(s *backup.ServerStatus) { s.DataSize = 1 << 62 }, "not enough free space"},
	} {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			repo, dir := newRestoreRepo(t)
			st := good
			tt.status(&st)
			_, err := run(t, repo, &fakeSource{status: st, base: base})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "backups")); !errors.Is(err, fs.ErrNotExist) {
				t.Error("a refused backup stored data")
			}
		})
	}
	t.Run("refuses another cluster's repository", func(t *testing.T) {
		repo, _ := newRestoreRepo(t)
		if _, err := repo.Ensure(context.Background(), 7, 16<<20); err != nil {
			t.Fatal(err)
		}
		_, err := run(t, repo, &fakeSource{status: good, base: base})
		var cm *backup.ClusterMismatchError
		if !errors.As(err, &cm) {
			t.Fatalf("err = %v, want ClusterMismatchError", err)
		}
	})
	t.Run("stream failure names the incomplete backup", func(t *testing.T) {
		repo, _ := newRestoreRepo(t)
		_, err := run(t, repo, &fakeSource{status: good, base: base, failErr: errors.New("connection reset")})
		if err == nil || !strings.Contains(err.Error(), "connection reset") || !strings.Contains(err.Error(), "hestami backup delete physical-") {
			t.Fatalf("err = %v", err)
		}
	})
}

// boundarySource stops its backup exactly at the start of segment 3.
type boundarySource struct{ *fakeSource }

func (b boundarySource) BaseBackup(ctx context.Context, label string, sink backup.ArchiveSink) (backup.BaseBackupResult, error) {
	res, err := b.fakeSource.BaseBackup(ctx, label, sink)
	res.StopLSN = 0x3000000
	return res, err
}
