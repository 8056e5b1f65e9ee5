package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TargetKind says what a recovery target names.
type TargetKind string

// Recovery target kinds.
const (
	TargetLatest TargetKind = ""     // replay every archived WAL file
	TargetTime   TargetKind = "time" // recovery_target_time
	TargetLSN    TargetKind = "lsn"  // recovery_target_lsn
	TargetXID    TargetKind = "xid"  // recovery_target_xid
	TargetName   TargetKind = "name" // recovery_target_name (pg_create_restore_point)
)

// What the server does once it reaches a recovery target (recovery_target_action).
const (
	ActionPause    = "pause"    // stay read-only in recovery: inspect, then pg_wal_replay_resume()
	ActionPromote  = "promote"  // end recovery and open for writes on a new timeline
	ActionShutdown = "shutdown" // stop the server; starting it again re-runs recovery
)

// Target is the point a restore replays WAL to.
type Target struct {
	Kind TargetKind
	Time time.Time
	LSN  LSN
	XID  uint64
	Name string
	// Action is recovery_target_action; empty means ActionPause, PostgreSQL's default.
	Action string
	// Exclusive stops just before the target instead of just after it.
	Exclusive bool
}

// Validate checks the target's fields.
func (t Target) Validate() error {
	switch t.Kind {
	case TargetLatest:
		if t.Exclusive {
			return errors.New("--target-exclusive needs a recovery target")
		}
	case TargetTime:
		if t.Time.IsZero() {
			return errors.New("recovery target time is empty")
		}
	case TargetLSN:
		if t.LSN == 0 {
			return errors.New("recovery target LSN 0/0 is before every backup")
		}
	case TargetXID:
		if t.XID < 3 {
			return fmt.Errorf("recovery target xid %d is not a normal transaction id (3 or more)", t.XID)
		}
	case TargetName:
		if t.Name == "" {
			return errors.New("recovery target name is empty")
		}
		if len(t.Name) >= 64 {
			return fmt.Errorf("recovery target name %q is longer than PostgreSQL's 63-byte restore point names", t.Name)
		}
	default:
		return fmt.Errorf("unknown recovery target kind %q", t.Kind)
	}
	switch t.Action {
	case "", ActionPause, ActionPromote, ActionShutdown:
	default:
		return fmt.Errorf("unknown target action %q: want promote, pause or shutdown", t.Action)
	}
	return nil
}

// EffectiveAction returns what the server does at the end of recovery. Without a
// target, recovery ends at the end of the archived WAL and the server promotes,
// whatever the action.
func (t Target) EffectiveAction() string {
	if t.Kind == TargetLatest {
		return ActionPromote
	}
	if t.Action == "" {
		return ActionPause
	}
	return t.Action
}

// String describes the target for people.
func (t Target) String() string {
	switch t.Kind {
	case TargetTime:
		return "time " + t.Time.UTC().Format("2006-01-02 15:04:05.999999Z07:00")
	case TargetLSN:
		return "LSN " + t.LSN.String()
	case TargetXID:
		return "transaction " + strconv.FormatUint(t.XID, 10)
	case TargetName:
		return fmt.Sprintf("restore point %q", t.Name)
	}
	return "the end of the archived WAL"
}

// targetTimeLayouts are the forms ParseTargetTime accepts, with a zone first.
var targetTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999 MST",
}

// targetTimeLocalLayouts have no zone: the time is taken in loc.
var targetTimeLocalLayouts = []string{
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02",
}

// ParseTargetTime parses a recovery target time: RFC 3339 ("2024-05-01T10:00:00Z"),
// PostgreSQL's form ("2024-05-01 10:00:00.123+00"), or without a zone, in loc.
func ParseTargetTime(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range targetTimeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	for _, l := range targetTimeLocalLayouts {
		if t, err := time.ParseInLocation(l, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid target time %q: want e.g. 2024-05-01T10:00:00Z or \"2024-05-01 10:00:00+00\"", s)
}

// ErrNoBackupBeforeTarget is matched (errors.Is) by *NoBackupBeforeTargetError.
var ErrNoBackupBeforeTarget = errors.New("no backup precedes the recovery target")

// NoBackupBeforeTargetError reports a recovery target that no backup can reach: WAL
// replays forward only, from a backup's consistent point.
type NoBackupBeforeTargetError struct {
	Target Target
	// Oldest is the oldest complete physical backup (the one that comes closest), or
	// the one asked for with --backup.
	Oldest *Manifest
	Chosen bool // Oldest was chosen by the user
}

func (e *NoBackupBeforeTargetError) Error() string {
	m := e.Oldest
	var at string
	switch e.Target.Kind {
	case TargetXID:
		at = fmt.Sprintf("with transaction ids up to %d already assigned", m.NextXID)
		if m.NextXID == 0 {
			at = "without a recorded next transaction id"
		}
	case TargetLSN:
		at = "at LSN " + m.StopLSN.String()
	default:
		at = "at " + m.StopTime.UTC().Format(time.RFC3339)
	}
	if e.Chosen {
		return fmt.Sprintf("backup %s stopped %s, after the recovery target %s: WAL replays forward only from a backup's end, "+
			"so choose an older backup or leave out --backup to let hestami choose (hestami backup list)", m.ID, at, e.Target)
	}
	return fmt.Sprintf("no complete physical backup precedes the recovery target %s: the oldest, %s, stopped %s. "+
		"WAL replays forward only from a backup's end: choose a later target, or restore a logical backup (hestami backup list)",
		e.Target, m.ID, at)
}

// Is lets errors.Is(err, ErrNoBackupBeforeTarget) match.
func (e *NoBackupBeforeTargetError) Is(target error) bool { return target == ErrNoBackupBeforeTarget }

// Precedes reports whether recovery from backup m can reach target t: the backup
// must be consistent (stopped) before the target.
func Precedes(m *Manifest, t Target) bool {
	switch t.Kind {
	case TargetTime:
		return m.StopTime.Before(t.Time)
	case TargetLSN:
		return m.StopLSN <= t.LSN
	case TargetXID:
		return m.NextXID != 0 && m.NextXID <= t.XID
	}
	return true // a name or the end of WAL: any backup; the newest replays least
}

// ChooseBackup returns the backup to restore for target t from the complete
// backups ms: the newest physical one that precedes t. It returns an error wrapping
// ErrBackupNotFound without physical backups, and a *NoBackupBeforeTargetError
// when none precedes t.
func ChooseBackup(ms []*Manifest, t Target) (*Manifest, error) {
	var best, oldest *Manifest
	for _, m := range ms {
		if m.Type != Physical {
			continue
		}
		if oldest == nil || m.StopTime.Before(oldest.StopTime) {
			oldest = m
		}
		if !Precedes(m, t) {
			continue
		}
		if best == nil || newer(m, best, t.Kind) {
			best = m
		}
	}
	if oldest == nil {
		return nil, fmt.Errorf("%w: no complete physical backup in the repository (take one with hestami backup push --type physical)", ErrBackupNotFound)
	}
	if best == nil {
		return nil, &NoBackupBeforeTargetError{Target: t, Oldest: oldest}
	}
	return best, nil
}

// newer orders backups by how close they end to a target of kind k.
func newer(a, b *Manifest, k TargetKind) bool {
	switch k {
	case TargetLSN:
		if a.StopLSN != b.StopLSN {
			return a.StopLSN > b.StopLSN
		}
	case TargetXID:
		if a.NextXID != b.NextXID {
			return a.NextXID > b.NextXID
		}
	}
	if !a.StopTime.Equal(b.StopTime) {
		return a.StopTime.After(b.StopTime)
	}
	return a.StopLSN > b.StopLSN
}

// CheckPrecedes returns a *NoBackupBeforeTargetError unless the chosen backup m
// can reach target t.
func CheckPrecedes(m *Manifest, t Target) error {
	if m.Type != Physical {
		return fmt.Errorf("backup %s is a %s backup; point-in-time recovery needs a physical one (hestami backup list --type physical)", m.ID, m.Type)
	}
	if !Precedes(m, t) {
		return &NoBackupBeforeTargetError{Target: t, Oldest: m, Chosen: true}
	}
	return nil
}

// Owner is the account restored files are given to: the cluster's user, when the
// restore runs as root.
type Owner struct{ UID, GID int }

func (o *Owner) chown(p string) error {
	if o == nil {
		return nil
	}
	if err := os.Lchown(p, o.UID, o.GID); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	return nil
}

// ErrDirNotEmpty is returned by PrepareDir for a non-empty directory without force.
var ErrDirNotEmpty = errors.New("directory is not empty")

// ErrServerRunning is returned by PrepareDir when a live PostgreSQL server owns dir.
var ErrServerRunning = errors.New("a PostgreSQL server is running on this directory")

// PrepareDir makes dir ready to restore into: it creates it (0700) if missing and
// refuses it if it is not empty, unless force, which deletes its contents first. It
// refuses even with force when dir holds the postmaster.pid of a live process. It
// returns how many entries it deleted.
func PrepareDir(dir string, force bool) (int, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		// Parents the cluster user can traverse; the directory itself private.
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			return 0, fmt.Errorf("create %s: %w", abs, err)
		}
		if err := os.Mkdir(abs, 0o700); err != nil {
			return 0, fmt.Errorf("create %s: %w", abs, err)
		}
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("%s is not a directory", abs)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return 0, err
	}
	if len(entries) == 0 {
		return 0, nil
	}
	if pid, alive := postmasterAlive(abs); alive {
		return 0, fmt.Errorf("%w: %s holds postmaster.pid of process %d, which is alive: stop that server first "+
			"(or, if the process is not PostgreSQL, remove postmaster.pid)", ErrServerRunning, abs, pid)
	}
	if !force {
		names := make([]string, 0, 3)
		for _, e := range entries[:min(3, len(entries))] {
			names = append(names, e.Name())
		}
		more := ""
		if len(entries) > len(names) {
			more = fmt.Sprintf(" and %d more", len(entries)-len(names))
		}
		return 0, fmt.Errorf("%w: %s holds %s%s: restore into an empty or new directory, "+
			"or add --force to delete its contents first", ErrDirNotEmpty, abs, strings.Join(names, ", "), more)
	}
	if abs == filepath.Dir(abs) {
		return 0, fmt.Errorf("refusing to delete the contents of %s", abs)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(abs, e.Name())); err != nil {
			return 0, fmt.Errorf("clear %s: %w", abs, err)
		}
	}
	return len(entries), nil
}

// ErrMountPoint is returned by MoveAside for a directory that is a mount point:
// it cannot be renamed, and its contents cannot be moved off its file system by a
// rename either.
var ErrMountPoint = errors.New("directory is a mount point")

// DirState is what CheckRestoreDir found at a restore's target directory.
type DirState struct {
	Path    string   // absolute
	Missing bool     // it does not exist (a restore creates it)
	Entries []string // the names of its entries, sorted; none: it is empty
	// PGVersion is the content of its PG_VERSION file: it holds a PostgreSQL data
	// directory (of a stopped server: a running one is ErrServerRunning).
	PGVersion string
	// MountPoint says it is the root of a mounted file system (MoveAside refuses it).
	MountPoint bool
}

// Empty reports whether a restore can write into the directory as it is.
func (s DirState) Empty() bool { return len(s.Entries) == 0 }

// Describe says what the directory holds, for an operator: "a PostgreSQL 16 data
// directory (PG_VERSION, base, global and 20 more)".
func (s DirState) Describe() string {
	names := s.Entries[:min(3, len(s.Entries))]
	list := strings.Join(names, ", ")
	if len(s.Entries) > len(names) {
		list += fmt.Sprintf(" and %d more", len(s.Entries)-len(names))
	}
	if s.PGVersion != "" {
		return fmt.Sprintf("a PostgreSQL %s data directory (%s)", s.PGVersion, list)
	}
	return list
}

// NotEmptyError returns the error for restoring into the directory as it is: it
// wraps ErrDirNotEmpty and says what the directory holds; hint says what to do.
func (s DirState) NotEmptyError(hint string) error {
	return fmt.Errorf("%w: %s holds %s: %s", ErrDirNotEmpty, s.Path, s.Describe(), hint)
}

// CheckRestoreDir looks at dir, a restore's target, without changing anything. It
// returns ErrServerRunning when dir holds the postmaster.pid of a live process, and
// an error when dir is not a directory or cannot be read.
func CheckRestoreDir(dir string) (DirState, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return DirState{}, err
	}
	s := DirState{Path: abs}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		s.Missing = true
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if !fi.IsDir() {
		return s, fmt.Errorf("%s is not a directory: give --to a directory (new or empty)", abs)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return s, fmt.Errorf("read %s: %w", abs, err)
	}
	for _, e := range entries {
		s.Entries = append(s.Entries, e.Name())
	}
	if pid, alive := postmasterAlive(abs); alive {
		return s, fmt.Errorf("%w: %s holds postmaster.pid of process %d, which is alive: stop that server first "+
			"(or, if the process is not PostgreSQL, remove postmaster.pid)", ErrServerRunning, abs, pid)
	}
	if b, err := os.ReadFile(filepath.Join(abs, "PG_VERSION")); err == nil {
		s.PGVersion = strings.TrimSpace(string(b))
	}
	if parent, err := os.Stat(filepath.Dir(abs)); err == nil && abs != filepath.Dir(abs) {
		st, ok1 := fi.Sys().(*syscall.Stat_t)
		pt, ok2 := parent.Sys().(*syscall.Stat_t)
		s.MountPoint = ok1 && ok2 && st.Dev != pt.Dev
	} else if abs == filepath.Dir(abs) {
		s.MountPoint = true
	}
	return s, nil
}

// MoveAside renames the directory dir to a new sibling, dir + ".replaced-" + now
// (UTC, e.g. /srv/pg.replaced-20240501T101500Z), and creates dir again, empty, with
// mode 0700. Nothing is deleted: the old contents stay whole under the new name. It
// refuses (ErrServerRunning) while a live server's postmaster.pid is in dir, and
// (ErrMountPoint) when dir is a mount point. It returns the new name of the old
// directory.
func MoveAside(dir string, now time.Time) (string, error) {
	s, err := CheckRestoreDir(dir)
	if err != nil {
		return "", err
	}
	if s.Missing {
		return "", fmt.Errorf("move %s aside: it does not exist", s.Path)
	}
	if s.MountPoint {
		return "", fmt.Errorf("%w: %s cannot be moved aside (renaming a mount point is not possible, and its contents "+
			"cannot leave its file system by a rename): move or remove its contents yourself, or restore into a new directory",
			ErrMountPoint, s.Path)
	}
	aside := s.Path + ".replaced-" + now.UTC().Format("20060102T150405Z")
	if _, err := os.Lstat(aside); err == nil {
		return "", fmt.Errorf("move %s aside: %s already exists: try again in a second, or move it away", s.Path, aside)
	}
	if err := os.Rename(s.Path, aside); err != nil {
		if errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EXDEV) {
			return "", fmt.Errorf("%w: %s cannot be moved aside (%v): move or remove its contents yourself, or restore into a new directory", ErrMountPoint, s.Path, err)
		}
		return "", fmt.Errorf("move %s aside: %w", s.Path, err)
	}
	if err := os.Mkdir(s.Path, 0o700); err != nil {
		return aside, fmt.Errorf("moved %s aside to %s, then could not create it again: %w", s.Path, aside, err)
	}
	return aside, nil
}

// postmasterAlive reads dir/postmaster.pid and reports whether its process exists.
func postmasterAlive(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, false
	}
	err = syscall.Kill(pid, 0)
	return pid, err == nil || errors.Is(err, syscall.EPERM)
}

// TablespaceDirs returns where each tablespace of m is restored: remap[oid] if
// given, else the location it had. An OID in remap that m lacks is an error.
func TablespaceDirs(m *Manifest, remap map[uint32]string) (map[uint32]string, error) {
	dirs := map[uint32]string{}
	for _, ts := range m.Tablespaces {
		dirs[ts.OID] = ts.Location
	}
	for oid, dir := range remap {
		if _, ok := dirs[oid]; !ok {
			return nil, fmt.Errorf("--tablespace-map %d=%s: backup %s has no tablespace %d (see hestami backup show %s)", oid, dir, m.ID, oid, m.ID)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		dirs[oid] = abs
	}
	return dirs, nil
}

// BackupSegments returns the WAL segments physical backup m needs to reach a
// consistent state: its start to its stop segment on its timeline (only the stop
// segment when the backup started on the parent timeline).
func BackupSegments(m *Manifest) ([]WALFile, error) {
	start, err1 := ParseWALName(m.StartWAL)
	stop, err2 := ParseWALName(m.StopWAL)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	segSize := m.WALSegmentSize
	if segSize == 0 {
		segSize = DefaultSegmentSize
	}
	first := start.SegNo(segSize)
	if start.Timeline != stop.Timeline {
		first = stop.SegNo(segSize)
	}
	var out []WALFile
	for n := first; n <= stop.SegNo(segSize); n++ {
		f, err := ParseWALName(SegmentName(stop.Timeline, n, segSize))
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// ErrWALMissing is returned by CheckBackupWAL.
var ErrWALMissing = errors.New("WAL missing")

// CheckBackupWAL returns an error wrapping ErrWALMissing when the WAL repository
// lacks a segment between m's start and stop: without it the backup cannot reach a
// consistent state.
func CheckBackupWAL(ctx context.Context, walRepo *Repository, m *Manifest) error {
	segs, err := BackupSegments(m)
	if err != nil {
		return err
	}
	for _, f := range segs {
		if _, err := walRepo.Storage.Stat(ctx, WALKey(f)); errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: backup %s needs WAL segment %s, which %s lacks, so it cannot be restored to a consistent state: "+
				"check hestami wal status, or restore another backup (hestami backup list)", ErrWALMissing, m.ID, f.Name, walRepo.Storage)
		} else if err != nil {
			return fmt.Errorf("check the WAL of backup %s: %w", m.ID, err)
		}
	}
	return nil
}

// MarkHistoryForArchive marks timeline history files in dataDir's pg_wal that the
// archiver never saw (a server promoted with archiving off) as ready, so the server
// archives them once it runs with archiving on: a timeline without its history file
// in the repository cannot be followed by a later recovery. It returns how many it
// marked.
func MarkHistoryForArchive(dataDir string, owner *Owner) (int, error) {
	walDir := filepath.Join(dataDir, "pg_wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		f, err := ParseWALName(e.Name())
		if err != nil || f.Kind != WALHistory {
			continue
		}
		status := filepath.Join(walDir, "archive_status", e.Name())
		if _, err := os.Stat(status + ".done"); err == nil {
			continue
		}
		if _, err := os.Stat(status + ".ready"); err == nil {
			continue
		}
		if err := writeFile(bytes.NewReader(nil), status+".ready", 0o600, owner); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Restorer unpacks physical backups from a repository.
type Restorer struct {
	Repo *Repository
	// Parallel is how many archives are unpacked at once (each in its own goroutine,
	// its decompression running ahead of its file writes).
	Parallel int
	Progress Progress
	Logger   *slog.Logger
	// Owner, when set, owns every restored file and directory.
	Owner *Owner
}

// archiveJob is one stored file of a backup to unpack or copy.
type archiveJob struct {
	file File
	dest string // directory for a tar, file path otherwise
	tar  bool
	base bool
}

// Unpack writes physical backup m into dataDir and its tablespaces into dirs (see
// TablespaceDirs), verifying every object's checksum, and links pg_tblspc to the
// tablespaces. dataDir and dirs must exist and be empty (see PrepareDir). On error
// the directories hold a partial restore, which the error says to remove; a damaged
// object gives an error wrapping ErrCorrupt that names it.
func (r *Restorer) Unpack(ctx context.Context, m *Manifest, dataDir string, dirs map[uint32]string) error {
	if m.Type != Physical {
		return fmt.Errorf("restore %s: a %s backup cannot be unpacked into a data directory", m.ID, m.Type)
	}
	incomplete := func(err error) error {
		where := dataDir
		if len(dirs) > 0 {
			var tsDirs []string
			for _, d := range dirs {
				tsDirs = append(tsDirs, d)
			}
			sort.Strings(tsDirs)
			where += " (and the tablespace directories " + strings.Join(tsDirs, ", ") + ")"
		}
		return fmt.Errorf("restore backup %s: %w; %s is incomplete: remove it before restoring again", m.ID, err, where)
	}
	var jobs []archiveJob
	var total int64
	for _, f := range m.Files {
		switch {
		case f.Name == BaseArchive:
			jobs = append(jobs, archiveJob{file: f, dest: dataDir, tar: true, base: true})
		case strings.HasSuffix(f.Name, ".tar") && f.Tablespace != 0:
			dir, ok := dirs[f.Tablespace]
			if !ok {
				return incomplete(fmt.Errorf("no directory for tablespace %d (%s)", f.Tablespace, f.Name))
			}
			jobs = append(jobs, archiveJob{file: f, dest: dir, tar: true})
		case f.Name == BackupManifestFile:
			// Beside the data, so pg_verifybackup can check the restored files.
			jobs = append(jobs, archiveJob{file: f, dest: filepath.Join(dataDir, BackupManifestFile)})
		default:
			continue
		}
		total += f.Size
	}
	if !hasBase(jobs) {
		return incomplete(fmt.Errorf("the backup has no %s", BaseArchive))
	}
	// A wrong or missing key shows in each object's first bytes: fail before
	// writing anything.
	keys := make([]string, 0, len(jobs))
	for _, j := range jobs {
		keys = append(keys, BackupKey(m.ID, j.file.Name))
	}
	if err := r.Repo.CheckDecryptable(ctx, keys...); err != nil {
		return fmt.Errorf("restore backup %s: %w; nothing was written", m.ID, err)
	}
	prog := r.progress()
	prog.Start("restore", total)
	defer prog.Done()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	parallel := max(r.Parallel, 1)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			start := time.Now()
			err := r.unpackOne(ctx, m.ID, j)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					cancel(err)
				}
				mu.Unlock()
				return
			}
			r.logger().Info("restored", "backup", m.ID, "file", j.file.Name, "to", j.dest, "size", j.file.Size, "seconds", time.Since(start).Seconds())
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = context.Cause(ctx)
	}
	if firstErr != nil {
		return incomplete(firstErr)
	}
	if err := r.linkTablespaces(m, dataDir, dirs); err != nil {
		return incomplete(err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return incomplete(err)
	}
	if err := r.Owner.chown(dataDir); err != nil {
		return incomplete(err)
	}
	for _, d := range dirs {
		if err := r.Owner.chown(d); err != nil {
			return incomplete(err)
		}
	}
	// PostgreSQL fsyncs the data directory when it starts from a backup_label; this
	// makes the restore itself durable before we report it done.
	syscall.Sync()
	return nil
}

func hasBase(jobs []archiveJob) bool {
	for _, j := range jobs {
		if j.base {
			return true
		}
	}
	return false
}

// unpackOne restores one stored file, reading the object to its end so that its
// checksum is verified even where tar stops reading early.
func (r *Restorer) unpackOne(ctx context.Context, id string, j archiveJob) error {
	key := BackupKey(id, j.file.Name)
	rc, err := r.Repo.OpenObject(ctx, key)
	if err != nil {
		return fmt.Errorf("%s (%s): %w", j.file.Name, key, err)
	}
	defer rc.Close()
	ra := newReadAhead(ProgressReader{R: rc, P: r.progress()}, 1<<20, 4)
	defer ra.Close()
	if j.tar {
		err = extractTar(ctx, ra, j.dest, j.base, r.Owner)
	} else {
		err = writeFile(ra, j.dest, 0o600, r.Owner)
	}
	if err == nil {
		_, err = io.Copy(io.Discard, ra) // to EOF: the checksum is verified there
	} else if ctx.Err() == nil {
		// A damaged object explains a broken archive: read on to find out.
		if _, derr := io.Copy(io.Discard, ra); derr != nil {
			err = derr
		}
	}
	if err != nil {
		return fmt.Errorf("%s (%s): %w", j.file.Name, key, err)
	}
	return nil
}

// tablespaceLink matches the only symbolic links a base backup may hold.
var tablespaceLink = regexp.MustCompile(`^pg_tblspc/[0-9]+$`)

// extractTar writes the tar stream r under dest. Entries may not leave dest: no
// absolute names, no "..", no writing through a link.
func extractTar(ctx context.Context, r io.Reader, dest string, base bool, owner *Owner) error {
	tr := tar.NewReader(r)
	buf := make([]byte, 256<<10)
	links := map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		for p := path.Dir(name); p != "."; p = path.Dir(p) {
			if links[p] {
				return fmt.Errorf("archive entry %q lies under the link %s", hdr.Name, p)
			}
		}
		target := filepath.Join(dest, filepath.FromSlash(name))
		mode := os.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := mkdirOwned(target, mode|0o700, owner); err != nil {
				return err
			}
			if err := os.Chmod(target, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := mkdirOwned(filepath.Dir(target), 0o700, owner); err != nil {
				return err
			}
			if err := writeFileBuf(tr, target, mode, owner, buf); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if !base || !tablespaceLink.MatchString(name) {
				return fmt.Errorf("archive entry %q is a symbolic link; a base backup holds links only in pg_tblspc", hdr.Name)
			}
			if err := mkdirOwned(filepath.Dir(target), 0o700, owner); err != nil {
				return err
			}
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
			if err := owner.chown(target); err != nil {
				return err
			}
			links[name] = true
		default:
			return fmt.Errorf("archive entry %q has type %q, which a base backup does not hold", hdr.Name, hdr.Typeflag)
		}
	}
}

// entryName cleans a tar entry name and refuses names that leave the directory.
func entryName(n string) (string, error) {
	c := path.Clean(strings.TrimSuffix(n, "/"))
	if n == "" || path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") || strings.Contains(n, "\\") {
		return "", fmt.Errorf("archive entry %q leaves the target directory", n)
	}
	return c, nil
}

// mkdirOwned creates dir and its missing parents, each owned by owner.
func mkdirOwned(dir string, mode os.FileMode, owner *Owner) error {
	fi, err := os.Lstat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirOwned(parent, 0o700, owner); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return owner.chown(dir)
}

func writeFile(r io.Reader, p string, mode os.FileMode, owner *Owner) error {
	return writeFileBuf(r, p, mode, owner, make([]byte, 256<<10))
}

// writeFileBuf creates p (which must not exist) with r's content.
func writeFileBuf(r io.Reader, p string, mode os.FileMode, owner *Owner, buf []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(f, r, buf); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if mode&0o077 != 0 { // the umask may have cut group bits the backup had
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	return owner.chown(p)
}

// linkTablespaces points pg_tblspc/<oid> at each tablespace's directory and, when a
// tablespace moved, rewrites tablespace_map (which PostgreSQL reads at the start of
// recovery to recreate those links) to match.
func (r *Restorer) linkTablespaces(m *Manifest, dataDir string, dirs map[uint32]string) error {
	if len(m.Tablespaces) == 0 {
		return nil
	}
	moved := false
	for _, ts := range m.Tablespaces {
		dir := dirs[ts.OID]
		if dir != ts.Location {
			moved = true
		}
		link := filepath.Join(dataDir, "pg_tblspc", strconv.FormatUint(uint64(ts.OID), 10))
		if err := mkdirOwned(filepath.Dir(link), 0o700, r.Owner); err != nil {
			return err
		}
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replace tablespace link %s: %w", link, err)
		}
		if err := os.Symlink(dir, link); err != nil {
			return fmt.Errorf("link tablespace %d: %w", ts.OID, err)
		}
		if err := r.Owner.chown(link); err != nil {
			return err
		}
	}
	mapPath := filepath.Join(dataDir, TablespaceMapFile)
	if _, err := os.Stat(mapPath); err != nil || !moved {
		return nil
	}
	var b bytes.Buffer
	oids := make([]uint32, 0, len(dirs))
	for oid := range dirs {
		oids = append(oids, oid)
	}
	sort.Slice(oids, func(i, j int) bool { return oids[i] < oids[j] })
	for _, oid := range oids {
		fmt.Fprintf(&b, "%d %s\n", oid, escapeMapPath(dirs[oid]))
	}
	if err := os.Remove(mapPath); err != nil {
		return err
	}
	return writeFile(&b, mapPath, 0o600, r.Owner)
}

// escapeMapPath escapes a path the way tablespace_map does: a backslash before each
// newline, carriage return and backslash.
func escapeMapPath(p string) string {
	var b strings.Builder
	for _, c := range []byte(p) {
		if c == '\n' || c == '\r' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

func (r *Restorer) progress() Progress {
	if r.Progress != nil {
		return r.Progress
	}
	return NoProgress{}
}

func (r *Restorer) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return r.Repo.logger()
}

// readAhead reads its source in a goroutine, up to depth chunks ahead of its
// consumer, so decompression and checksumming overlap with file writing.
type readAhead struct {
	ch   chan []byte
	free chan []byte
	stop chan struct{}
	done chan struct{}
	cur  []byte
	buf  []byte // cur's backing buffer, returned to free once consumed
	err  error  // the source's error, set before ch is closed
}

func newReadAhead(src io.Reader, size, depth int) *readAhead {
	ra := &readAhead{
		ch:   make(chan []byte, depth),
		free: make(chan []byte, depth+2),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range depth + 2 {
		ra.free <- make([]byte, size)
	}
	go func() {
		defer close(ra.done)
		defer close(ra.ch)
		for {
			var buf []byte
			select {
			case buf = <-ra.free:
			case <-ra.stop:
				return
			}
			n, err := io.ReadFull(src, buf)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			if n > 0 {
				select {
				case ra.ch <- buf[:n]:
				case <-ra.stop:
					return
				}
			}
			if err != nil {
				ra.err = err
				return
			}
		}
	}()
	return ra
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.free <- ra.buf[:cap(ra.buf)]
			ra.buf = nil
		}
		b, ok := <-ra.ch
		if !ok {
			if ra.err == nil { // stopped by Close
				return 0, io.ErrClosedPipe
			}
			return 0, ra.err // published before ch was closed
		}
		ra.cur, ra.buf = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the reader and waits for its goroutine, which may be in a read.
func (ra *readAhead) Close() error {
	select {
	case <-ra.stop:
	default:
		close(ra.stop)
	}
	<-ra.done
	return nil
}

// RecoveryConfig is what a restore adds to the restored server's configuration.
type RecoveryConfig struct {
	// RestoreCommand fetches archived WAL (see RestoreCommand).
	RestoreCommand string
	Target         Target
	// BackupID and Time are recorded in a comment.
	BackupID string
	Time     time.Time
}

// Settings returns the recovery settings in the order they are written, values
// unquoted.
func (rc RecoveryConfig) Settings() [][2]string {
	s := [][2]string{{"restore_command", rc.RestoreCommand}}
	t := rc.Target
	switch t.Kind {
	case TargetLatest:
		return s
	case TargetTime:
		s = append(s, [2]string{"recovery_target_time", t.Time.UTC().Format("2006-01-02 15:04:05.999999-07:00")})
	case TargetLSN:
		s = append(s, [2]string{"recovery_target_lsn", t.LSN.String()})
	case TargetXID:
		s = append(s, [2]string{"recovery_target_xid", strconv.FormatUint(t.XID, 10)})
	case TargetName:
		s = append(s, [2]string{"recovery_target_name", t.Name})
	}
	if t.Exclusive {
		s = append(s, [2]string{"recovery_target_inclusive", "false"})
	}
	return append(s, [2]string{"recovery_target_action", t.EffectiveAction()})
}

// recoveryKey matches settings a restore replaces: earlier restores' (a backup of a
// restored server carries them in postgresql.auto.conf) would steer this recovery.
var recoveryKey = regexp.MustCompile(`^(restore_command|recovery_target|recovery_target_[a-z]+|recovery_end_command)$`)

// WriteRecoveryConfig configures dataDir to recover: in postgresql.auto.conf it
// comments out earlier recovery settings and appends rc's, then creates
// recovery.signal. Files it writes are given to owner.
func WriteRecoveryConfig(dataDir string, rc RecoveryConfig, owner *Owner) error {
	if err := rc.Target.Validate(); err != nil {
		return err
	}
	if rc.RestoreCommand == "" {
		return errors.New("write recovery configuration: no restore_command")
	}
	confPath := filepath.Join(dataDir, "postgresql.auto.conf")
	old, err := os.ReadFile(confPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", confPath, err)
	}
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(old))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if recoveryKey.MatchString(confKey(line)) {
			b.WriteString("# Removed by hestami restore: ")
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", confPath, err)
	}
	when := rc.Time
	if when.IsZero() {
		when = time.Now()
	}
	fmt.Fprintf(&b, "# Recovery settings added by hestami restore of backup %s at %s (target: %s)\n",
		rc.BackupID, when.UTC().Format(time.RFC3339), rc.Target)
	for _, kv := range rc.Settings() {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], QuoteConfValue(kv[1]))
	}
	tmp := confPath + ".hestami-tmp"
	os.Remove(tmp)
	if err := writeFile(&b, tmp, 0o600, owner); err != nil {
		return fmt.Errorf("write %s: %w", confPath, err)
	}
	if err := os.Rename(tmp, confPath); err != nil {
		return fmt.Errorf("write %s: %w", confPath, err)
	}
	signal := filepath.Join(dataDir, "recovery.signal")
	os.Remove(signal)
	if err := writeFile(bytes.NewReader(nil), signal, 0o600, owner); err != nil {
		return fmt.Errorf("create %s: %w", signal, err)
	}
	return nil
}

// confKey returns the setting name a postgresql.conf line sets, or "".
func confKey(line string) string {
	s := strings.TrimSpace(line)
	if s == "" || s[0] == '#' {
		return ""
	}
	end := strings.IndexFunc(s, func(r rune) bool { return r == '=' || r == ' ' || r == '\t' })
	if end < 0 {
		end = len(s)
	}
	return strings.ToLower(s[:end])
}

// QuoteConfValue quotes s as a postgresql.conf string value.
func QuoteConfValue(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// RestoreCommand returns the restore_command that runs hestami's wal fetch: exe is
// the absolute path of the hestami binary, configPath (may be empty) its config,
// flags further global flags (--allow-unsigned).
func RestoreCommand(exe, configPath string, flags ...string) string {
	arg := func(s string) string { return strings.ReplaceAll(shellQuote(s), "%", "%%") }
	cmd := arg(exe)
	if configPath != "" {
		cmd += " --config " + arg(configPath)
	}
	for _, f := range flags {
		cmd += " " + arg(f)
	}
	return cmd + " wal fetch %f %p"
}

// shellQuote quotes s for /bin/sh when it holds anything but plain path characters.
func shellQuote(s string) string {
	plain := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_./:=@%+-,", c)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
