package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Storage errors. Implementations wrap them so callers match with errors.Is.
var (
	// ErrNotFound means the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrExist means a create-if-absent write found the object already there.
	ErrExist = errors.New("object already exists")
)

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Storage is the blob store under a repository. Keys are slash-separated paths relative
// to the repository root.
type Storage interface {
	// Put stores everything read from r under key. The object becomes visible only
	// once it is completely and durably written: a failed or interrupted Put leaves
	// no object (and no partial one) behind. With ifAbsent, Put returns ErrExist when
	// key already exists and leaves the stored object untouched.
	Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error
	// Open opens the object for reading; ErrNotFound if it does not exist.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the object's size and time; ErrNotFound if it does not exist.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns every object whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes the object; deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// String names the storage for messages (a URL without secrets).
	String() string
}

// SpaceReporter is implemented by storages that can tell their free space.
type SpaceReporter interface {
	// FreeSpace returns the bytes available to new objects.
	FreeSpace(ctx context.Context) (uint64, error)
}

// ErrInsufficientSpace is matched (errors.Is) by *SpaceError.
var ErrInsufficientSpace = errors.New("insufficient space")

// SpaceError reports a storage without room for a backup.
type SpaceError struct {
	Storage string
	Needed  uint64
	Free    uint64
	// Basis says how Needed was estimated.
	Basis string
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("not enough free space in %s: the backup needs about %s (%s), the storage has %s free; "+
		"free some space (hestami backup delete ID), or point storage.url at a larger volume",
		e.Storage, FormatBytes(int64(e.Needed)), e.Basis, FormatBytes(int64(e.Free)))
}

// Is lets errors.Is(err, ErrInsufficientSpace) match.
func (e *SpaceError) Is(target error) bool { return target == ErrInsufficientSpace }

// FormatBytes formats a byte count for people (1.5 GiB).
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
