package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// FormatVersion is the repository layout version this build reads and writes.
// Version 2: signed trailers, encrypted objects, the marker's encryption flag.
const FormatVersion = 2

// The repository layout. Everything a restore needs is in storage: the marker, the
// backups (each a folder whose manifest is written last) and WAL keyed by timeline.
const (
	markerKey     = "hestami.json"
	backupsPrefix = "backups/"
	walPrefix     = "wal/"
	manifestName  = "manifest.json.zst"
	objectSuffix  = ".zst"
)

// Marker identifies a repository and the cluster it belongs to.
type Marker struct {
	Format           int       `json:"format"`
	SystemIdentifier uint64    `json:"system_identifier,string"`
	WALSegmentSize   uint64    `json:"wal_segment_size"`
	Created          time.Time `json:"created"`
	// Encrypted says every object in the repository is encrypted (and none may be
	// stored unencrypted); the marker itself stays plaintext.
	Encrypted bool `json:"encrypted"`
}

// ErrNoRepository is returned when the storage holds no repository marker yet.
var ErrNoRepository = errors.New("no hestami repository at this storage location")

// ClusterMismatchError is returned when WAL or a backup of one cluster is offered to a
// repository that belongs to another.
type ClusterMismatchError struct {
	Storage    string
	Repository uint64
	Offered    uint64
}

func (e *ClusterMismatchError) Error() string {
	return fmt.Sprintf("repository %s belongs to the cluster with system identifier %d, not %d: "+
		"this server is a different cluster (a new initdb?); point HESTAMI_STORAGE_URL at a repository of its own",
		e.Storage, e.Repository, e.Offered)
}

// Repository is a hestami backup repository in a Storage.
type Repository struct {
	Storage Storage
	Codec   Codec
	// Encrypter, when set, encrypts every object stored; the repository must be an
	// encrypted one (see Marker.Encrypted).
	Encrypter Encrypter
	// Decrypter opens encrypted objects; without one they give a *KeyError.
	Decrypter Decrypter
	// Signer, when set, signs every object stored.
	Signer Signer
	// Verifier, when set, checks every object's signature: unsigned objects and
	// objects not signed by a trusted key give a *SignatureError.
	Verifier Verifier
	// AllowUnsigned makes a Verifier accept unsigned objects, each logged as a
	// warning. Wrongly signed objects are still refused.
	AllowUnsigned bool
	Logger        *slog.Logger
	Now           func() time.Time

	mu        sync.Mutex
	encrypted *bool // what the marker says, once read
}

func (r *Repository) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Repository) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Marker reads the repository marker; ErrNoRepository if there is none.
func (r *Repository) Marker(ctx context.Context) (Marker, error) {
	rc, err := r.Storage.Open(ctx, markerKey)
	if errors.Is(err, ErrNotFound) {
		return Marker{}, fmt.Errorf("%w %s (no backup or WAL was ever pushed there; check HESTAMI_STORAGE_URL)", ErrNoRepository, r.Storage)
	}
	if err != nil {
		return Marker{}, fmt.Errorf("read repository marker: %w", err)
	}
	defer rc.Close()
	var m Marker
	dec := json.NewDecoder(rc)
	if err := dec.Decode(&m); err != nil {
		return Marker{}, fmt.Errorf("read repository marker %s in %s: %w", markerKey, r.Storage, err)
	}
	if m.Format != FormatVersion {
		return Marker{}, fmt.Errorf("repository %s has format %d; this hestami reads format %d: use a matching hestami version", r.Storage, m.Format, FormatVersion)
	}
	r.mu.Lock()
	r.encrypted = &m.Encrypted
	r.mu.Unlock()
	return m, nil
}

// checkEncryption returns an *EncryptionMismatchError when the repository's marker
// says otherwise about encryption than the Encrypter; without a marker (a repository
// not yet created) there is nothing to check.
func (r *Repository) checkEncryption(ctx context.Context) error {
	r.mu.Lock()
	known := r.encrypted
	r.mu.Unlock()
	if known == nil {
		if _, err := r.Marker(ctx); errors.Is(err, ErrNoRepository) {
			return nil
		} else if err != nil {
			return err
		}
		r.mu.Lock()
		known = r.encrypted
		r.mu.Unlock()
	}
	if *known != (r.Encrypter != nil) {
		return &EncryptionMismatchError{Storage: r.Storage.String(), Encrypted: *known}
	}
	return nil
}

// Ensure returns the repository's marker, creating the repository for the cluster
// sysid if the storage has none yet (encrypted when the repository has an
// Encrypter). It returns a *ClusterMismatchError if the repository belongs to
// another cluster, an *EncryptionMismatchError if it is encrypted and the
// repository has no Encrypter, or the other way round.
func (r *Repository) Ensure(ctx context.Context, sysid uint64, segSize uint64) (Marker, error) {
	m, err := r.Marker(ctx)
	if errors.Is(err, ErrNoRepository) {
		m = Marker{Format: FormatVersion, SystemIdentifier: sysid, WALSegmentSize: segSize, Created: r.now().UTC(), Encrypted: r.Encrypter != nil}
		b, _ := json.MarshalIndent(m, "", "  ")
		err = r.Storage.Put(ctx, markerKey, bytes.NewReader(append(b, '\n')), true)
		if err == nil {
			r.mu.Lock()
			r.encrypted = &m.Encrypted
			r.mu.Unlock()
			r.logger().Info("created repository", "storage", r.Storage.String(), "system_identifier", sysid, "encrypted", m.Encrypted)
			return m, nil
		}
		if !errors.Is(err, ErrExist) {
			return Marker{}, fmt.Errorf("create repository in %s: %w", r.Storage, err)
		}
		m, err = r.Marker(ctx) // created concurrently by another process
	}
	if err != nil {
		return Marker{}, err
	}
	if m.SystemIdentifier != sysid {
		return m, &ClusterMismatchError{Storage: r.Storage.String(), Repository: m.SystemIdentifier, Offered: sysid}
	}
	if m.Encrypted != (r.Encrypter != nil) {
		return m, &EncryptionMismatchError{Storage: r.Storage.String(), Encrypted: m.Encrypted}
	}
	return m, nil
}

// WALKey returns the storage key of an archived WAL file.
func WALKey(f WALFile) string {
	return fmt.Sprintf("%s%08X/%s%s", walPrefix, f.Timeline, f.Name, objectSuffix)
}

// WALObject is an archived WAL file in the repository.
type WALObject struct {
	WALFile
	ObjectInfo
}

// ListWAL returns the archived WAL files, optionally only of one timeline (0: all),
// sorted by timeline and name.
func (r *Repository) ListWAL(ctx context.Context, timeline uint32) ([]WALObject, error) {
	prefix := walPrefix
	if timeline != 0 {
		prefix = fmt.Sprintf("%s%08X/", walPrefix, timeline)
	}
	objs, err := r.Storage.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list WAL in %s: %w", r.Storage, err)
	}
	out := make([]WALObject, 0, len(objs))
	for _, o := range objs {
		name := strings.TrimSuffix(o.Key[strings.LastIndex(o.Key, "/")+1:], objectSuffix)
		f, err := ParseWALName(name)
		if err != nil {
			continue // not ours; ignore
		}
		out = append(out, WALObject{WALFile: f, ObjectInfo: o})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Timeline != out[j].Timeline {
			return out[i].Timeline < out[j].Timeline
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// BackupKey returns the key of a file inside backup id.
func BackupKey(id, name string) string { return backupsPrefix + id + "/" + name + objectSuffix }

// WriteManifest stores m as the backup's completion marker. Call it last: a backup
// without a manifest is incomplete.
func (r *Repository) WriteManifest(ctx context.Context, m *Manifest) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("write manifest of %s: %w", m.ID, err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if _, err := r.PutObject(ctx, backupsPrefix+m.ID+"/"+manifestName, bytes.NewReader(b), true, 1); err != nil {
		return fmt.Errorf("write manifest of %s: %w", m.ID, err)
	}
	return nil
}

// ErrBackupNotFound is returned for an unknown backup id.
var ErrBackupNotFound = errors.New("backup not found")

// Manifest reads and verifies the manifest of backup id.
func (r *Repository) Manifest(ctx context.Context, id string) (*Manifest, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q is not a backup id (see hestami backup list)", ErrBackupNotFound, id)
	}
	b, err := r.ReadObject(ctx, backupsPrefix+id+"/"+manifestName)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %s in %s (see hestami backup list)", ErrBackupNotFound, id, r.Storage)
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest of %s: %w", id, err)
	}
	m, err := DecodeManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("read manifest of %s: %w", id, err)
	}
	if m.ID != id {
		return nil, &CorruptError{Key: backupsPrefix + id + "/" + manifestName, Reason: fmt.Sprintf("manifest names backup %s", m.ID)}
	}
	return m, nil
}

// BackupEntry is one backup found in the repository: complete (with its manifest),
// incomplete (no manifest: failed, interrupted or still running) or unreadable.
type BackupEntry struct {
	ID       string
	Status   string // "complete", "incomplete", "unreadable"
	Manifest *Manifest
	Err      error
	Objects  []ObjectInfo
}

// Backup statuses.
const (
	StatusComplete   = "complete"
	StatusIncomplete = "incomplete"
	StatusUnreadable = "unreadable"
)

// Backups lists every backup folder in the repository, ordered by start time (then
// stop LSN), never by name.
func (r *Repository) Backups(ctx context.Context) ([]BackupEntry, error) {
	objs, err := r.Storage.List(ctx, backupsPrefix)
	if err != nil {
		return nil, fmt.Errorf("list backups in %s: %w", r.Storage, err)
	}
	byID := map[string]*BackupEntry{}
	var ids []string
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, backupsPrefix)
		id, _, ok := strings.Cut(rest, "/")
		if !ok || !validID(id) {
			continue
		}
		e := byID[id]
		if e == nil {
			e = &BackupEntry{ID: id, Status: StatusIncomplete}
			byID[id] = e
			ids = append(ids, id)
		}
		e.Objects = append(e.Objects, o)
	}
	out := make([]BackupEntry, 0, len(ids))
	for _, id := range ids {
		e := byID[id]
		for _, o := range e.Objects {
			if strings.HasSuffix(o.Key, "/"+manifestName) {
				m, err := r.Manifest(ctx, id)
				if err != nil {
					e.Status, e.Err = StatusUnreadable, err
				} else {
					e.Status, e.Manifest = StatusComplete, m
				}
			}
		}
		out = append(out, *e)
	}
	sort.SliceStable(out, func(i, j int) bool { return entryBefore(out[i], out[j]) })
	return out, nil
}

func entryBefore(a, b BackupEntry) bool {
	ta, tb := entryTime(a), entryTime(b)
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if a.Manifest != nil && b.Manifest != nil && a.Manifest.StopLSN != b.Manifest.StopLSN {
		return a.Manifest.StopLSN < b.Manifest.StopLSN
	}
	return a.ID < b.ID
}

func entryTime(e BackupEntry) time.Time {
	if e.Manifest != nil {
		return e.Manifest.StartTime
	}
	var t time.Time
	for _, o := range e.Objects {
		if t.IsZero() || o.ModTime.Before(t) {
			t = o.ModTime
		}
	}
	return t
}

// Complete returns the complete backups of type t ("" for all), oldest first.
func Complete(entries []BackupEntry, t Type) []*Manifest {
	var out []*Manifest
	for _, e := range entries {
		if e.Manifest != nil && (t == "" || e.Manifest.Type == t) {
			out = append(out, e.Manifest)
		}
	}
	return out
}

// NewBackupID returns a fresh id for a backup of type t started at start, unique in
// the repository.
func (r *Repository) NewBackupID(ctx context.Context, t Type, start time.Time) (string, error) {
	base := string(t) + "-" + start.UTC().Format("20060102T150405Z")
	for i := 1; i < 100; i++ {
		id := base
		if i > 1 {
			id = fmt.Sprintf("%s-%d", base, i)
		}
		objs, err := r.Storage.List(ctx, backupsPrefix+id+"/")
		if err != nil {
			return "", fmt.Errorf("new backup id: %w", err)
		}
		if len(objs) == 0 {
			return id, nil
		}
	}
	return "", fmt.Errorf("new backup id: too many backups started at %s", base)
}

// DeleteBackup removes every object of backup id, its manifest first so the backup
// stops counting as complete before any of its data goes.
func (r *Repository) DeleteBackup(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrBackupNotFound, id)
	}
	objs, err := r.Storage.List(ctx, backupsPrefix+id+"/")
	if err != nil {
		return fmt.Errorf("delete backup %s: %w", id, err)
	}
	if len(objs) == 0 {
		return fmt.Errorf("delete backup %s: %w", id, ErrBackupNotFound)
	}
	sort.SliceStable(objs, func(i, j int) bool { return strings.HasSuffix(objs[i].Key, "/"+manifestName) })
	for _, o := range objs {
		if err := r.Storage.Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("delete backup %s: %w", id, err)
		}
	}
	r.logger().Info("deleted backup", "backup", id, "objects", len(objs))
	return nil
}

func validID(id string) bool {
	if id == "" || len(id) > 100 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
