package backup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
)

// Outcomes of one object in a VerifyReport.
const (
	ObjectOK            = "ok"
	ObjectMissing       = "missing"       // not in storage
	ObjectCorrupt       = "corrupt"       // damaged or altered: checksum, decompression, decryption
	ObjectUntrusted     = "untrusted"     // unsigned, or not signed by a trusted key
	ObjectUndecryptable = "undecryptable" // no configured identity opens it
	ObjectMismatch      = "mismatch"      // intact, but not the content the manifest records
	ObjectError         = "error"         // storage could not be read
)

// Kinds of objects a backup needs.
const (
	KindManifest = "manifest"
	KindFile     = "file"
	KindWAL      = "wal"
	KindHistory  = "history"
)

// ObjectResult is the outcome of verifying one object.
type ObjectResult struct {
	Key    string `json:"key"`
	Kind   string `json:"kind"`
	Status string `json:"status"`
	ObjectCheck
	Error string `json:"error,omitempty"`
}

// VerifyReport is the outcome of verifying a backup and the WAL it needs.
type VerifyReport struct {
	Backup  string         `json:"backup"`
	Type    Type           `json:"type,omitempty"`
	OK      bool           `json:"ok"`
	Checked int            `json:"checked"`
	Failed  int            `json:"failed"`
	Objects []ObjectResult `json:"objects"`
}

// Failures returns the objects that failed.
func (r *VerifyReport) Failures() []ObjectResult {
	var out []ObjectResult
	for _, o := range r.Objects {
		if o.Status != ObjectOK {
			out = append(out, o)
		}
	}
	return out
}

// BackupVerifier checks that a backup can be restored: every object it needs is
// present, intact (read fully: checksums, decompression), decryptable with the
// configured identities and signed by a trusted key (when the repository verifies
// signatures), and every file is the one its manifest records.
type BackupVerifier struct {
	Repo *Repository
	// WALRepo holds the archived WAL; nil: Repo.
	WALRepo *Repository
	// Parallel is how many objects are read at once.
	Parallel int
	Logger   *slog.Logger
}

// Verify checks backup id: its manifest, its files and, for a physical backup, the
// WAL from its start to its stop segment and the history files of its timeline. It
// returns an error wrapping ErrBackupNotFound when the backup has no manifest, and a
// report (OK false if anything failed) otherwise.
func (v *BackupVerifier) Verify(ctx context.Context, id string) (*VerifyReport, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q is not a backup id (see hestami backup list)", ErrBackupNotFound, id)
	}
	rep := &VerifyReport{Backup: id}
	mkey := backupsPrefix + id + "/" + manifestName
	var buf bytes.Buffer
	c, err := v.Repo.copyObject(ctx, mkey, &buf)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %s in %s (see hestami backup list)", ErrBackupNotFound, id, v.Repo.Storage)
	}
	mres := result(mkey, KindManifest, c, err)
	var m *Manifest
	if err == nil {
		if m, err = DecodeManifest(&buf); err != nil {
			mres.Status, mres.Error = ObjectCorrupt, err.Error()
		} else if m.ID != id {
			mres.Status, mres.Error = ObjectCorrupt, fmt.Sprintf("the manifest names backup %s", m.ID)
			m = nil
		}
	}
	rep.Objects = append(rep.Objects, mres)
	if m == nil {
		return rep.finish(), nil
	}
	rep.Type = m.Type

	type job struct {
		repo *Repository
		key  string
		kind string
		file *File
	}
	var jobs []job
	for i := range m.Files {
		f := &m.Files[i]
		jobs = append(jobs, job{repo: v.Repo, key: BackupKey(id, f.Name), kind: KindFile, file: f})
	}
	walRepo := v.walRepo()
	if m.Type == Physical {
		segs, err := BackupSegments(m)
		if err != nil {
			return nil, err
		}
		for _, s := range segs {
			jobs = append(jobs, job{repo: walRepo, key: WALKey(s), kind: KindWAL})
		}
	}
	results := make([]ObjectResult, len(jobs))
	sem := make(chan struct{}, max(1, v.Parallel))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := j.repo.CheckObject(ctx, j.key)
			r := result(j.key, j.kind, c, err)
			if f := j.file; f != nil && r.Status == ObjectOK && (c.Size != f.Size || c.SHA256 != f.SHA256) {
				r.Status = ObjectMismatch
				r.Error = fmt.Sprintf("content (%d bytes, sha256 %.12s) is not the file the manifest records (%d bytes, sha256 %.12s)", c.Size, c.SHA256, f.Size, f.SHA256)
			}
			results[i] = r
			v.logger().Debug("verified object", "key", j.key, "status", r.Status)
		}()
	}
	wg.Wait()
	rep.Objects = append(rep.Objects, results...)
	if m.Type == Physical && m.Timeline > 1 {
		rep.Objects = append(rep.Objects, v.histories(ctx, walRepo, m.Timeline)...)
	}
	return rep.finish(), nil
}

// histories verifies the history file of timeline tli and of every ancestor it names.
func (v *BackupVerifier) histories(ctx context.Context, repo *Repository, tli uint32) []ObjectResult {
	var out []ObjectResult
	seen := map[uint32]bool{}
	todo := []uint32{tli}
	for len(todo) > 0 {
		t := todo[0]
		todo = todo[1:]
		if t <= 1 || seen[t] {
			continue
		}
		seen[t] = true
		name := fmt.Sprintf("%08X.history", t)
		f, _ := ParseWALName(name)
		var buf bytes.Buffer
		c, err := repo.copyObject(ctx, WALKey(f), &buf)
		out = append(out, result(WALKey(f), KindHistory, c, err))
		if err == nil {
			todo = append(todo, historyParents(buf.Bytes())...)
		}
	}
	return out
}

// historyParents returns the timelines a timeline history file lists: each line is
// "parentTLI<tab>switchpoint<tab>reason"; # comments and blank lines are skipped.
func historyParents(b []byte) []uint32 {
	var out []uint32
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		field, _, _ := strings.Cut(line, "\t")
		if n, err := strconv.ParseUint(strings.TrimSpace(field), 10, 32); err == nil {
			out = append(out, uint32(n))
		}
	}
	return out
}

func result(key, kind string, c ObjectCheck, err error) ObjectResult {
	r := ObjectResult{Key: key, Kind: kind, Status: ObjectOK, ObjectCheck: c}
	if err == nil {
		return r
	}
	r.Error = err.Error()
	switch {
	case errors.Is(err, ErrNotFound):
		r.Status = ObjectMissing
	case errors.Is(err, ErrWrongKey):
		r.Status = ObjectUndecryptable
	case errors.Is(err, ErrUntrusted):
		r.Status = ObjectUntrusted
	case errors.Is(err, ErrCorrupt):
		r.Status = ObjectCorrupt
	default:
		r.Status = ObjectError
	}
	return r
}

func (r *VerifyReport) finish() *VerifyReport {
	r.Checked = len(r.Objects)
	r.Failed = len(r.Failures())
	r.OK = r.Failed == 0
	return r
}

func (v *BackupVerifier) walRepo() *Repository {
	if v.WALRepo != nil {
		return v.WALRepo
	}
	return v.Repo
}

func (v *BackupVerifier) logger() *slog.Logger {
	if v.Logger != nil {
		return v.Logger
	}
	return v.Repo.logger()
}
