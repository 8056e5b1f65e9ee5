package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sort"
	"strings"
)

// A secondary repository is a second, independent copy of the primary one (typically a
// local primary and a cloud secondary). Objects are copied byte for byte: they are
// self-verifying (trailer checksum, optional signature and encryption), so a copy
// needs no key to be made, and is verified by reading it back.

// Copy copies the stored object key from r to dst byte for byte, then verifies the
// copy by reading it back through dst: the stored bytes must hash as the source's did
// and, where dst can read the object (unencrypted, or with an identity configured),
// it must pass CheckObject (trailer checksum and, with a Verifier, the signature). A
// copy that fails verification is deleted and Copy returns an error wrapping
// ErrCorrupt. WAL and the marker are written create-if-absent: when dst already holds
// the key with the same bytes Copy succeeds, with other bytes it returns a
// *ConflictError and leaves dst untouched.
func (r *Repository) Copy(ctx context.Context, dst *Repository, key string) error {
	ifAbsent := strings.HasPrefix(key, walPrefix) || key == markerKey
	rc, err := r.Storage.Open(ctx, key)
	if err != nil {
		return fmt.Errorf("copy %s from %s: %w", key, r.Storage, err)
	}
	h := sha256.New()
	err = dst.Storage.Put(ctx, key, io.TeeReader(rc, h), ifAbsent)
	rc.Close()
	want := hex.EncodeToString(h.Sum(nil))
	if errors.Is(err, ErrExist) {
		got, herr := rawSum(ctx, dst.Storage, key)
		if herr != nil {
			return fmt.Errorf("copy %s to %s: compare the copy already there: %w", key, dst.Storage, herr)
		}
		// The source was only read as far as Put needed: hash it whole.
		if want, err = rawSum(ctx, r.Storage, key); err != nil {
			return fmt.Errorf("copy %s from %s: %w", key, r.Storage, err)
		}
		if got != want {
			return &ConflictError{Name: key, Storage: dst.Storage.String(), StoredSHA256: got, OfferedSHA256: want}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", key, dst.Storage, err)
	}
	if err := dst.verifyCopy(ctx, key, want); err != nil {
		if derr := dst.Storage.Delete(ctx, key); derr != nil {
			err = errors.Join(err, fmt.Errorf("delete the bad copy: %w", derr))
		}
		return fmt.Errorf("copy %s to %s: verification failed, the copy was deleted: %w", key, dst.Storage, err)
	}
	return nil
}

// verifyCopy reads the copied object key back: its bytes must hash to want, and it
// must pass CheckObject unless this repository holds no key to decrypt it.
func (r *Repository) verifyCopy(ctx context.Context, key, want string) error {
	if key != markerKey {
		// One read serves both checks: the object's own verification, and the hash
		// of the stored bytes it reads (an object store charges for each read).
		tee := &hashingStorage{Storage: r.Storage, h: sha256.New()}
		check := &Repository{Storage: tee, Codec: r.Codec, Decrypter: r.Decrypter, Verifier: r.Verifier,
			AllowUnsigned: r.AllowUnsigned, Logger: r.Logger}
		_, err := check.CheckObject(ctx, key)
		if err == nil {
			if got := hex.EncodeToString(tee.h.Sum(nil)); got != want {
				return &CorruptError{Key: key, Reason: fmt.Sprintf("stored copy has SHA-256 %s, the source %s", got, want)}
			}
			return nil
		}
		if !errors.Is(err, ErrWrongKey) {
			return err
		}
		// Encrypted and no identity here: the stored bytes must equal the source's.
	}
	got, err := rawSum(ctx, r.Storage, key)
	if err != nil {
		return err
	}
	if got != want {
		return &CorruptError{Key: key, Reason: fmt.Sprintf("stored copy has SHA-256 %s, the source %s", got, want)}
	}
	if key == markerKey {
		_, err := r.Marker(ctx)
		return err
	}
	return nil
}

// hashingStorage hashes every byte read through Open.
type hashingStorage struct {
	Storage
	h hash.Hash
}

func (s *hashingStorage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Storage.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.TeeReader(rc, s.h), rc}, nil
}

// rawSum returns the hex SHA-256 of the stored bytes of key.
func rawSum(ctx context.Context, s Storage, key string) (string, error) {
	rc, err := s.Open(ctx, key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return "", fmt.Errorf("read %s in %s: %w", key, s, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CopyBackup copies every object of the complete backup id to dst, its manifest last,
// so that dst shows the backup complete only once all of it is there and verified.
func (r *Repository) CopyBackup(ctx context.Context, dst *Repository, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q is not a backup id", ErrBackupNotFound, id)
	}
	prefix := backupsPrefix + id + "/"
	objs, err := r.Storage.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("copy backup %s: list %s: %w", id, r.Storage, err)
	}
	manifest := prefix + manifestName
	found := false
	for _, o := range objs {
		if o.Key == manifest {
			found = true
			continue
		}
		if err := r.Copy(ctx, dst, o.Key); err != nil {
			return fmt.Errorf("copy backup %s: %w", id, err)
		}
	}
	if !found {
		return fmt.Errorf("copy backup %s: %w: it has no manifest in %s (incomplete)", id, ErrBackupNotFound, r.Storage)
	}
	if err := r.Copy(ctx, dst, manifest); err != nil {
		return fmt.Errorf("copy backup %s: %w", id, err)
	}
	return nil
}

// SyncResult is what Sync copied.
type SyncResult struct {
	Marker  bool     `json:"marker"`
	WAL     []string `json:"wal"`
	Backups []string `json:"backups"`
}

// Sync copies to dst what it is missing: the marker (when dst has none), every WAL
// object and every complete backup. It goes on past a failed object and returns
// every failure joined, with what it did copy.
func (r *Repository) Sync(ctx context.Context, dst *Repository) (SyncResult, error) {
	res := SyncResult{WAL: []string{}, Backups: []string{}}
	var errs []error
	copied, err := r.CopyMarker(ctx, dst)
	if err != nil {
		return res, err
	}
	res.Marker = copied
	have, err := keySet(ctx, dst.Storage, walPrefix)
	if err != nil {
		return res, fmt.Errorf("sync to %s: list WAL: %w", dst.Storage, err)
	}
	wal, err := r.Storage.List(ctx, walPrefix)
	if err != nil {
		return res, fmt.Errorf("sync from %s: list WAL: %w", r.Storage, err)
	}
	for _, o := range wal {
		if have[o.Key] {
			continue
		}
		if err := r.Copy(ctx, dst, o.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		res.WAL = append(res.WAL, o.Key)
	}
	entries, err := r.Backups(ctx)
	if err != nil {
		return res, errors.Join(append(errs, err)...)
	}
	have, err = keySet(ctx, dst.Storage, backupsPrefix)
	if err != nil {
		return res, fmt.Errorf("sync to %s: list backups: %w", dst.Storage, err)
	}
	for _, e := range entries {
		if e.Status != StatusComplete || have[backupsPrefix+e.ID+"/"+manifestName] {
			continue
		}
		if err := r.CopyBackup(ctx, dst, e.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Backups = append(res.Backups, e.ID)
	}
	return res, errors.Join(errs...)
}

// CopyMarker copies the repository marker to dst when dst has none (reporting true),
// and otherwise checks that dst belongs to the same cluster (a *ClusterMismatchError
// if not). Without a marker in r there is nothing to copy.
func (r *Repository) CopyMarker(ctx context.Context, dst *Repository) (bool, error) {
	_, err := dst.Storage.Stat(ctx, markerKey)
	if errors.Is(err, ErrNotFound) {
		if _, err := r.Storage.Stat(ctx, markerKey); errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err := r.Copy(ctx, dst, markerKey); err != nil {
			return false, err
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the repository marker in %s: %w", dst.Storage, err)
	}
	src, err := r.Marker(ctx)
	if err != nil {
		return false, err
	}
	m, err := dst.Marker(ctx)
	if err != nil {
		return false, err
	}
	if m.SystemIdentifier != src.SystemIdentifier {
		return false, &ClusterMismatchError{Storage: dst.Storage.String(), Repository: m.SystemIdentifier, Offered: src.SystemIdentifier}
	}
	return false, nil
}

func keySet(ctx context.Context, s Storage, prefix string) (map[string]bool, error) {
	objs, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(objs))
	for _, o := range objs {
		set[o.Key] = true
	}
	return set, nil
}

// HasBackup reports whether the storage holds backup id's manifest (the backup is
// complete there).
func (r *Repository) HasBackup(ctx context.Context, id string) (bool, error) {
	if !validID(id) {
		return false, nil
	}
	_, err := r.Storage.Stat(ctx, backupsPrefix+id+"/"+manifestName)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Fallback is a Storage that reads from Primary and, when Primary does not have an
// object or cannot be reached, from Secondary, so restores and WAL fetches survive
// the loss of the primary repository. Put and Delete go to Primary only: writes to
// the secondary are explicit copies (Repository.Copy, Sync), and retention on the
// secondary is applied by running prune against it, so a prune or delete through
// the primary never removes the second copy by accident.
type Fallback struct {
	Primary, Secondary Storage
	// Logger gets a warning each time the secondary served something.
	Logger *slog.Logger
}

var _ Storage = (*Fallback)(nil)

func (f *Fallback) warn(what, key string, primaryErr error) {
	if f.Logger != nil {
		f.Logger.Warn("served from the secondary storage: the primary does not have it or failed; check the primary storage and run hestami storage sync once it is back",
			"op", what, "key", key, "primary", f.Primary.String(), "secondary", f.Secondary.String(), "primary_error", primaryErr)
	}
}

// fallbackErr is the error when both storages failed: ErrNotFound only when both
// said so, so that "not found" is never reported for an object an unreachable
// storage may hold.
func (f *Fallback) fallbackErr(pe, se error) error {
	if errors.Is(pe, ErrNotFound) && errors.Is(se, ErrNotFound) {
		return pe
	}
	if errors.Is(pe, ErrNotFound) {
		return fmt.Errorf("not in the primary storage, and the secondary %s failed: %w", f.Secondary, se)
	}
	if errors.Is(se, ErrNotFound) {
		return pe
	}
	return errors.Join(pe, fmt.Errorf("secondary %s: %w", f.Secondary, se))
}

// Put stores the object in the primary only.
func (f *Fallback) Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	return f.Primary.Put(ctx, key, r, ifAbsent)
}

// Open opens the object in the primary, else in the secondary; ErrNotFound only if
// neither has it.
func (f *Fallback) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, pe := f.Primary.Open(ctx, key)
	if pe == nil || ctx.Err() != nil {
		return rc, pe
	}
	rc, se := f.Secondary.Open(ctx, key)
	if se != nil {
		return nil, f.fallbackErr(pe, se)
	}
	f.warn("open", key, pe)
	return rc, nil
}

// Stat describes the object in the primary, else in the secondary.
func (f *Fallback) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	oi, pe := f.Primary.Stat(ctx, key)
	if pe == nil || ctx.Err() != nil {
		return oi, pe
	}
	oi, se := f.Secondary.Stat(ctx, key)
	if se != nil {
		return ObjectInfo{}, f.fallbackErr(pe, se)
	}
	f.warn("stat", key, pe)
	return oi, nil
}

// List returns the union of both listings, each key once (the primary's entry when
// both have it). When one storage fails the other's listing is returned, with a
// warning; when both fail, an error.
func (f *Fallback) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	p, pe := f.Primary.List(ctx, prefix)
	s, se := f.Secondary.List(ctx, prefix)
	switch {
	case pe != nil && se != nil:
		return nil, errors.Join(pe, fmt.Errorf("secondary %s: %w", f.Secondary, se))
	case pe != nil:
		f.warn("list", prefix, pe)
		return s, nil
	case se != nil:
		if f.Logger != nil {
			f.Logger.Warn("cannot list the secondary storage; showing the primary only", "secondary", f.Secondary.String(), "err", se)
		}
		return p, nil
	}
	seen := make(map[string]bool, len(p))
	out := append([]ObjectInfo(nil), p...)
	for _, o := range p {
		seen[o.Key] = true
	}
	for _, o := range s {
		if !seen[o.Key] {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object from the primary only (see Fallback).
func (f *Fallback) Delete(ctx context.Context, key string) error {
	return f.Primary.Delete(ctx, key)
}

// String names both storages.
func (f *Fallback) String() string {
	return f.Primary.String() + " (secondary " + f.Secondary.String() + ")"
}
