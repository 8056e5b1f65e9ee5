package backup

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// ConflictError is returned when a WAL file is pushed under a name the archive already
// holds with other content. The stored file is never overwritten.
type ConflictError struct {
	Name    string
	Storage string
	// StoredSHA256 is empty when the stored copy is encrypted and was compared
	// without decrypting it (see Repository.SameContent).
	StoredSHA256  string
	OfferedSHA256 string
}

func (e *ConflictError) Error() string {
	stored := "encrypted; compared by signature tag"
	if len(e.StoredSHA256) >= 12 {
		stored = "sha256 " + e.StoredSHA256[:12]
	}
	return fmt.Sprintf("WAL file %s is already archived in %s with different content (stored %s, this one sha256 %.12s); "+
		"the archived copy was kept. Two clusters (or a restored copy that was not promoted to a new timeline) "+
		"are archiving into one repository: stop archiving from the wrong one and check which server owns %s",
		e.Name, e.Storage, stored, e.OfferedSHA256, e.Storage)
}

// statusDir is where wal push records segments it archived ahead of PostgreSQL's
// request, inside pg_wal (PostgreSQL and base backups ignore it).
const statusDir = "hestami_archive_status"

// WALPusher implements archive_command: it archives one WAL file durably, and pushes
// the next ready segments in parallel so later calls return at once.
type WALPusher struct {
	Repo *Repository
	// Parallel is how many files one call pushes at once (1: no look-ahead).
	Parallel int
	// Cores is how many cores compression may use; a call pushing several files
	// shares them out.
	Cores  int
	Logger *slog.Logger
}

// pushMark is what the status directory records about a file pushed ahead.
type pushMark struct {
	Storage string `json:"storage"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// Push archives the file at path (archive_command's %p, a path into pg_wal). It
// returns nil once the file is durably stored, or already stored with identical
// content; a *ConflictError if the archive holds other content under its name; a
// *ClusterMismatchError if the file belongs to another cluster.
func (p *WALPusher) Push(ctx context.Context, path string) error {
	name := filepath.Base(path)
	wf, err := ParseWALName(name)
	if err != nil {
		return fmt.Errorf("wal push %s: %w", path, err)
	}
	pgwal := filepath.Dir(path)
	log := p.logger().With("wal", name)

	if p.consumeMark(pgwal, name, log) {
		return nil
	}
	sysid, segSize, err := clusterOf(path, wf)
	if err != nil {
		return fmt.Errorf("wal push %s: %w", name, err)
	}
	if _, err := p.Repo.Ensure(ctx, sysid, segSize); err != nil {
		return fmt.Errorf("wal push %s: %w", name, err)
	}

	ahead := p.readyAhead(pgwal, name)
	cores := max(1, p.Cores/(1+len(ahead)))
	var wg sync.WaitGroup
	for _, n := range ahead {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.pushAhead(ctx, pgwal, n, sysid, cores, log)
		}()
	}
	start := time.Now()
	sum, err := p.pushFile(ctx, path, wf, sysid, cores)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("wal push %s: %w", name, err)
	}
	log.Info("archived", "size", sum.Size, "stored_size", sum.StoredSize, "ahead", len(ahead), "seconds", time.Since(start).Seconds())
	return nil
}

func (p *WALPusher) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return p.Repo.logger()
}

// pushFile stores one WAL file, treating an identical stored copy as success.
func (p *WALPusher) pushFile(ctx context.Context, path string, wf WALFile, sysid uint64, cores int) (Sum, error) {
	f, err := os.Open(path)
	if err != nil {
		return Sum{}, err
	}
	defer f.Close()
	if wf.Kind == WALSegment || wf.Kind == WALPartial {
		if id, _, ok := readSegmentHeader(f); ok && id != sysid {
			return Sum{}, &ClusterMismatchError{Storage: p.Repo.Storage.String(), Repository: sysid, Offered: id}
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return Sum{}, err
		}
	}
	key := WALKey(wf)
	sum, err := p.Repo.PutObject(ctx, key, f, true, cores)
	if err == nil {
		return sum, nil
	}
	if !errors.Is(err, ErrExist) {
		return Sum{}, err
	}
	// Already archived: identical content is success, anything else a conflict.
	local, err := fileSum(path)
	if err != nil {
		return Sum{}, err
	}
	same, stored, err := p.Repo.SameContent(ctx, key, local)
	if err != nil {
		return Sum{}, fmt.Errorf("compare with the archived copy: %w", err)
	}
	if !same {
		return Sum{}, &ConflictError{Name: wf.Name, Storage: p.Repo.Storage.String(), StoredSHA256: stored.SHA256, OfferedSHA256: local.SHA256}
	}
	p.logger().Info("already archived with identical content", "wal", wf.Name)
	return stored, nil
}

// readyAhead returns up to Parallel-1 other files PostgreSQL has marked ready, in the
// order the archiver would take them (history files first, then by name).
func (p *WALPusher) readyAhead(pgwal, current string) []string {
	if p.Parallel <= 1 {
		return nil
	}
	entries, err := os.ReadDir(filepath.Join(pgwal, "archive_status"))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), ".ready")
		if !ok || n == current {
			continue
		}
		if _, err := ParseWALName(n); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(pgwal, statusDir, n)); err == nil {
			continue // pushed ahead already
		}
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		hi, hj := strings.HasSuffix(names[i], ".history"), strings.HasSuffix(names[j], ".history")
		if hi != hj {
			return hi
		}
		return names[i] < names[j]
	})
	if len(names) > p.Parallel-1 {
		names = names[:p.Parallel-1]
	}
	return names
}

// pushAhead pushes a ready file before PostgreSQL asks, and records it so the later
// call returns at once. Failures are only logged: PostgreSQL will ask again.
func (p *WALPusher) pushAhead(ctx context.Context, pgwal, name string, sysid uint64, cores int, log *slog.Logger) {
	wf, err := ParseWALName(name)
	if err != nil {
		return
	}
	path := filepath.Join(pgwal, name)
	sum, err := p.pushFile(ctx, path, wf, sysid, cores)
	if err != nil {
		log.Warn("push ahead failed; PostgreSQL will retry it", "ahead", name, "err", err)
		return
	}
	b, _ := json.Marshal(pushMark{Storage: p.Repo.Storage.String(), Size: sum.Size, SHA256: sum.SHA256})
	dir := filepath.Join(pgwal, statusDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Warn("record pushed-ahead file", "ahead", name, "err", err)
		return
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			log.Warn("record pushed-ahead file", "ahead", name, "err", err)
		}
	}
}

// consumeMark reports whether name was already pushed ahead to this repository; it
// removes the record, since PostgreSQL now marks the file done.
func (p *WALPusher) consumeMark(pgwal, name string, log *slog.Logger) bool {
	markPath := filepath.Join(pgwal, statusDir, name)
	b, err := os.ReadFile(markPath)
	if err != nil {
		return false
	}
	var m pushMark
	fi, serr := os.Stat(filepath.Join(pgwal, name))
	ok := json.Unmarshal(b, &m) == nil && m.Storage == p.Repo.Storage.String() && serr == nil && fi.Size() == m.Size
	os.Remove(markPath)
	if ok {
		log.Debug("archived ahead by an earlier call")
	}
	return ok
}

// clusterOf returns the system identifier and segment size of the cluster a WAL file
// belongs to: from the segment's page header, or for history and backup files from
// the data directory's pg_control (archive_command runs in the data directory).
func clusterOf(path string, wf WALFile) (sysid, segSize uint64, err error) {
	if wf.Kind == WALSegment || wf.Kind == WALPartial {
		f, err := os.Open(path)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		if id, size, ok := readSegmentHeader(f); ok {
			return id, size, nil
		}
		return 0, 0, fmt.Errorf("%s has no valid WAL page header: not a PostgreSQL WAL segment", path)
	}
	ctl := filepath.Join(filepath.Dir(filepath.Dir(path)), "global", "pg_control")
	b := make([]byte, 8)
	f, err := os.Open(ctl)
	if err != nil {
		return 0, 0, fmt.Errorf("read the cluster's system identifier from %s: %w (run wal push from the data directory, as archive_command does)", ctl, err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, b); err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", ctl, err)
	}
	return binary.LittleEndian.Uint64(b), 0, nil
}

// xlpLongHeader is set in xlp_info on a segment's first page.
const xlpLongHeader = 0x0002

// readSegmentHeader reads a WAL segment's long page header: XLogPageHeaderData
// (magic, info, tli, pageaddr, rem_len, padding: 24 bytes) then xlp_sysid,
// xlp_seg_size and xlp_xlog_blcksz.
func readSegmentHeader(r io.Reader) (sysid, segSize uint64, ok bool) {
	var b [40]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, 0, false
	}
	info := binary.LittleEndian.Uint16(b[2:])
	if info&xlpLongHeader == 0 {
		return 0, 0, false
	}
	sysid = binary.LittleEndian.Uint64(b[24:])
	segSize = uint64(binary.LittleEndian.Uint32(b[32:]))
	if segSize == 0 || segSize&(segSize-1) != 0 {
		return 0, 0, false
	}
	return sysid, segSize, true
}

// fileSum hashes a local file.
func fileSum(path string) (Sum, error) {
	f, err := os.Open(path)
	if err != nil {
		return Sum{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Sum{}, err
	}
	return Sum{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
