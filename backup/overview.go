package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Overview is the state of a repository and of PostgreSQL's archiving as monitoring
// shows it: the metrics, the status page and the daemon's alerts all read one. Each
// part that could not be read says why in its *Error field instead of failing the
// whole: a dashboard must still show what it can while the database is down.
type Overview struct {
	// Time is when it was read, and ReadDuration how long reading took.
	Time         time.Time
	ReadDuration time.Duration
	// Storage names the repository's storage.
	Storage string
	// RepositoryError says why the backups could not be listed (nothing in Backups
	// is then known).
	RepositoryError string
	// Backups is every backup in the repository, oldest first.
	Backups []BackupSummary
	// Timelines is the archived WAL by timeline; WALError says why it is missing.
	Timelines []TimelineStatus
	WALError  string
	// Archiver is PostgreSQL's view of archiving; ArchiverError says why it is
	// missing (PostgreSQL down, or no connection configured).
	Archiver      *ArchiverStats
	ArchiverError string
	// Drills are the most recent restore drills, oldest first; DrillError says why
	// they could not be read.
	Drills     []DrillRecord
	DrillError string
	// Usage is the space used, and free where known, per storage: the repository,
	// then the WAL storage when it is another one.
	Usage []StorageUsage
}

// BackupSummary is one backup as monitoring sees it.
type BackupSummary struct {
	ID     string
	Type   Type
	Status string // StatusComplete, StatusIncomplete or StatusUnreadable
	// StartTime and StopTime are the manifest's; for a backup without one, StartTime
	// is the time of its oldest object and StopTime is zero.
	StartTime time.Time
	StopTime  time.Time
	// Size is the uncompressed size (complete backups only); StoredSize the bytes in
	// storage.
	Size       int64
	StoredSize int64
	// Verification is the backup's last recorded verification, nil if never verified.
	Verification *VerificationRecord
	// Error says why an unreadable backup could not be read.
	Error string
}

// Duration is how long the backup took (zero while unknown).
func (b BackupSummary) Duration() time.Duration {
	if b.StopTime.IsZero() {
		return 0
	}
	return b.StopTime.Sub(b.StartTime)
}

// StorageUsage is the space one storage holds.
type StorageUsage struct {
	// Name is "repository" or "wal" (a separate WAL storage).
	Name string
	// URL names the storage (without secrets).
	URL string
	// Used is the sum of the stored objects' sizes, Objects their number.
	Used    int64
	Objects int
	// Free is the space left, nil when the storage cannot tell (object stores).
	Free *uint64
	// Error says why the storage could not be listed.
	Error string
}

// LatestComplete returns the newest complete backup of type t, or nil.
func (o *Overview) LatestComplete(t Type) *BackupSummary {
	for i := len(o.Backups) - 1; i >= 0; i-- {
		if b := &o.Backups[i]; b.Type == t && b.Status == StatusComplete {
			return b
		}
	}
	return nil
}

// CompleteOf returns the complete backups of type t, oldest first.
func (o *Overview) CompleteOf(t Type) []BackupSummary {
	var out []BackupSummary
	for _, b := range o.Backups {
		if b.Type == t && b.Status == StatusComplete {
			out = append(out, b)
		}
	}
	return out
}

// Counts returns how many backups of type t have each status (every status has an
// entry, zero included).
func (o *Overview) Counts(t Type) map[string]int {
	out := map[string]int{StatusComplete: 0, StatusIncomplete: 0, StatusUnreadable: 0}
	for _, b := range o.Backups {
		if b.Type == t {
			out[b.Status]++
		}
	}
	return out
}

// LastVerification returns the most recent verification of any backup of type t,
// with that backup, or nil.
func (o *Overview) LastVerification(t Type) (*VerificationRecord, *BackupSummary) {
	var rec *VerificationRecord
	var of *BackupSummary
	for i := range o.Backups {
		b := &o.Backups[i]
		if b.Type != t || b.Verification == nil {
			continue
		}
		if rec == nil || !b.Verification.Time.Before(rec.Time) {
			rec, of = b.Verification, b
		}
	}
	return rec, of
}

// LastDrill returns the most recent drill of a backup of type t ("" for any), or nil.
func (o *Overview) LastDrill(t Type) *DrillRecord {
	for i := len(o.Drills) - 1; i >= 0; i-- {
		if d := &o.Drills[i]; t == "" || d.Type == t {
			return d
		}
	}
	return nil
}

// LastArchived returns when the newest archived WAL segment was stored, on any
// timeline (zero if none).
func (o *Overview) LastArchived() time.Time {
	var t time.Time
	for _, tl := range o.Timelines {
		if tl.LastTime.After(t) {
			t = tl.LastTime
		}
	}
	return t
}

// ArchiverReader reads PostgreSQL's archiving statistics.
type ArchiverReader interface {
	// ArchiverStats reads pg_stat_archiver and the current WAL position, counting
	// lag in segments of segSize bytes. It returns an error when the server cannot
	// be reached or queried.
	ArchiverStats(ctx context.Context, segSize uint64) (*ArchiverStats, error)
}

// DefaultOverviewTTL is how long an OverviewReader reuses what it read: scrapes and
// page views within it cost nothing.
const DefaultOverviewTTL = 15 * time.Second

// DefaultOverviewDrills is how many recent drills an overview holds.
const DefaultOverviewDrills = 10

// OverviewReader reads Overviews, caching each for TTL. It is safe for concurrent
// use: concurrent callers wait for one read.
type OverviewReader struct {
	Repo *Repository
	// WALRepo holds the archived WAL; nil: Repo.
	WALRepo *Repository
	// Archiver reads PostgreSQL's statistics; nil: the overview says none is set.
	Archiver ArchiverReader
	// TTL is how long an overview is reused (0: DefaultOverviewTTL; negative: never).
	TTL time.Duration
	// Drills is how many recent drills to read (0: DefaultOverviewDrills).
	Drills int
	Now    func() time.Time

	mu     sync.Mutex
	cached *Overview
	at     time.Time
}

func (r *OverviewReader) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Overview returns the current overview, read at most TTL ago. The result is shared
// between callers: do not modify it. Failures to read a part are reported in the
// overview; the error is only the context's.
func (r *OverviewReader) Overview(ctx context.Context) (*Overview, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultOverviewTTL
	}
	now := r.now()
	if r.cached != nil && ttl > 0 && now.Sub(r.at) < ttl && !now.Before(r.at) {
		return r.cached, nil
	}
	o := r.read(ctx, now)
	if err := ctx.Err(); err != nil {
		return nil, err // a cancelled read is not worth caching
	}
	r.cached, r.at = o, now
	return o, nil
}

func (r *OverviewReader) walRepo() *Repository {
	if r.WALRepo != nil {
		return r.WALRepo
	}
	return r.Repo
}

func (r *OverviewReader) read(ctx context.Context, now time.Time) *Overview {
	start := time.Now()
	repo := r.Repo
	o := &Overview{Time: now, Storage: repo.Storage.String()}

	if entries, err := repo.Backups(ctx); err != nil {
		o.RepositoryError = err.Error()
	} else {
		o.Backups = summarize(ctx, repo, entries)
	}

	walRepo := r.walRepo()
	segSize := uint64(DefaultSegmentSize)
	if m, err := walRepo.Marker(ctx); err == nil && m.WALSegmentSize != 0 {
		segSize = m.WALSegmentSize
	}
	if tls, err := walRepo.Timelines(ctx); err != nil {
		o.WALError = err.Error()
	} else {
		o.Timelines = tls
	}
	if r.Archiver == nil {
		o.ArchiverError = "no PostgreSQL connection configured"
	} else if st, err := r.Archiver.ArchiverStats(ctx, segSize); err != nil {
		o.ArchiverError = err.Error()
	} else {
		o.Archiver = st
	}

	n := r.Drills
	if n <= 0 {
		n = DefaultOverviewDrills
	}
	if d, err := repo.recentDrills(ctx, n); err != nil {
		o.DrillError = err.Error()
	} else {
		o.Drills = d
	}

	o.Usage = append(o.Usage, usage(ctx, "repository", repo.Storage))
	if walRepo.Storage.String() != repo.Storage.String() {
		o.Usage = append(o.Usage, usage(ctx, "wal", walRepo.Storage))
	}
	o.ReadDuration = time.Since(start)
	return o
}

// summarize turns backup entries into summaries, reading each recorded verification.
func summarize(ctx context.Context, repo *Repository, entries []BackupEntry) []BackupSummary {
	out := make([]BackupSummary, 0, len(entries))
	for _, e := range entries {
		s := BackupSummary{ID: e.ID, Type: IDType(e.ID), Status: e.Status, StartTime: entryTime(e)}
		if e.Err != nil {
			s.Error = e.Err.Error()
		}
		hasVerification := false
		for _, obj := range e.Objects {
			if strings.HasSuffix(obj.Key, "/"+verificationName+objectSuffix) {
				hasVerification = true
			}
		}
		if m := e.Manifest; m != nil {
			s.Type, s.StartTime, s.StopTime = m.Type, m.StartTime, m.StopTime
			s.Size, s.StoredSize = m.Size, m.StoredSize
		} else {
			for _, obj := range e.Objects {
				s.StoredSize += obj.Size
			}
		}
		if hasVerification {
			// An unreadable record is no verification: shown as never verified.
			if v, err := repo.Verification(ctx, e.ID); err == nil {
				s.Verification = v
			}
		}
		out = append(out, s)
	}
	return out
}

// recentDrills reads the last n drill records, oldest first. Their keys sort by
// time, so only the newest n objects are read.
func (r *Repository) recentDrills(ctx context.Context, n int) ([]DrillRecord, error) {
	objs, err := r.Storage.List(ctx, drillPrefix)
	if err != nil {
		return nil, fmt.Errorf("list drills: %w", err)
	}
	var keys []string
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".json"+objectSuffix) {
			keys = append(keys, o.Key)
		}
	}
	sort.Strings(keys)
	if len(keys) > n {
		keys = keys[len(keys)-n:]
	}
	out := make([]DrillRecord, 0, len(keys))
	for _, k := range keys {
		rec, err := r.readDrill(ctx, k)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

func (r *Repository) readDrill(ctx context.Context, key string) (DrillRecord, error) {
	var rec DrillRecord
	b, err := r.ReadObject(ctx, key)
	if err != nil {
		return rec, fmt.Errorf("read drill record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, &CorruptError{Key: key, Reason: "not a drill record: " + err.Error()}
	}
	return rec, nil
}

func usage(ctx context.Context, name string, st Storage) StorageUsage {
	u := StorageUsage{Name: name, URL: st.String()}
	objs, err := st.List(ctx, "")
	if err != nil {
		u.Error = fmt.Sprintf("list %s: %v", st, err)
	}
	for _, o := range objs {
		u.Used += o.Size
		u.Objects++
	}
	if sr, ok := st.(SpaceReporter); ok {
		if free, err := sr.FreeSpace(ctx); err == nil {
			u.Free = &free
		} else if u.Error == "" {
			u.Error = fmt.Sprintf("free space of %s: %v", st, err)
		}
	}
	return u
}
