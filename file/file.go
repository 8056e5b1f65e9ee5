// Package file stores a repository's objects on a local file system (a local disk, a
// mounted volume, NFS). Every write is atomic and durable: the object is written to a
// temporary file, fsynced, moved into place and its directory fsynced, so a crash or a
// kill leaves either the whole object or nothing under its key.
package file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/hestami/hestami/backup"
)

// tempPrefix marks files still being written; they are never listed or opened.
const tempPrefix = ".tmp-"

// Storage is a backup.Storage rooted at a directory.
type Storage struct {
	root string
	// owner, when running as root, is the uid/gid of the root directory: new files and
	// directories take it, so PostgreSQL's archive_command (run as the server's user)
	// and a root-run CLI can share one repository.
	owner *[2]int
}

var _ backup.Storage = (*Storage)(nil)
var _ backup.SpaceReporter = (*Storage)(nil)

// New opens (creating if needed) a file storage rooted at dir.
func New(dir string) (*Storage, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("file storage %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("file storage: create %s: %w (check the path and its permissions)", abs, err)
	}
	s := &Storage{root: abs}
	if os.Geteuid() == 0 {
		if fi, err := os.Stat(abs); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
				s.owner = &[2]int{int(st.Uid), int(st.Gid)}
			}
		}
	}
	return s, nil
}

// String returns the storage's URL.
func (s *Storage) String() string { return "file://" + s.root }

// Root returns the directory the storage lives in.
func (s *Storage) Root() string { return s.root }

func (s *Storage) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return "", fmt.Errorf("invalid object key %q", key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, tempPrefix) {
			return "", fmt.Errorf("invalid object key %q", key)
		}
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put writes the object atomically; see backup.Storage.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) (err error) {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if ifAbsent {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("put %s: %w", key, backup.ErrExist)
		}
	}
	if err := s.mkdirAll(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tempPrefix+filepath.Base(p)+"-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// A large buffer: fewer system calls, fewer hand-offs from a pipe.
	if _, err = io.CopyBuffer(struct{ io.Writer }{f}, ctxReader{ctx, r}, make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("put %s: write: %w", key, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("put %s: fsync: %w", key, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("put %s: close: %w", key, err)
	}
	if err = s.chown(tmp); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if ifAbsent {
		// link(2) fails if the name exists: an atomic create-if-absent.
		if err = os.Link(tmp, p); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("put %s: %w", key, backup.ErrExist)
			}
			return fmt.Errorf("put %s: %w", key, err)
		}
		os.Remove(tmp)
	} else if err = os.Rename(tmp, p); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("put %s: fsync directory: %w", key, err)
	}
	return nil
}

// mkdirAll creates dir and its missing parents, fsyncing each parent that gained an
// entry so the new directories survive a crash.
func (s *Storage) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := s.mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := s.chown(dir); err != nil {
		return err
	}
	return syncDir(parent)
}

func (s *Storage) chown(p string) error {
	if s.owner == nil {
		return nil
	}
	return os.Lchown(p, s.owner[0], s.owner[1])
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Open opens the object for reading; see backup.Storage.
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", key, backup.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	return f, nil
}

// Stat returns the object's size and time; see backup.Storage.
func (s *Storage) Stat(ctx context.Context, key string) (backup.ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return backup.ObjectInfo{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return backup.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, backup.ErrNotFound)
	}
	if err != nil {
		return backup.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return backup.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List returns the objects under prefix, sorted by key; see backup.Storage.
func (s *Storage) List(ctx context.Context, prefix string) ([]backup.ObjectInfo, error) {
	start := s.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	var out []backup.ObjectInfo
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		rel, _ := filepath.Rel(s.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if p != start && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, backup.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object; see backup.Storage.
func (s *Storage) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return syncDir(filepath.Dir(p))
}

// FreeSpace returns the bytes available to an unprivileged writer.
func (s *Storage) FreeSpace(ctx context.Context) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.root, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", s.root, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
