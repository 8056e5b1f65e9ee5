package alert

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// StateStore keeps the Manager's de-duplication state across restarts, so a restarted
// daemon neither re-sends every ongoing alert nor forgets a pending "resolved" message.
// The blob is opaque to the store.
type StateStore interface {
	// Load returns the last saved blob, or nil and no error when nothing was saved yet.
	Load(ctx context.Context) ([]byte, error)
	// Save replaces the saved blob. After an error the previous blob must still load
	// whole (never a partial write).
	Save(ctx context.Context, blob []byte) error
}

// FileStore is a StateStore in one local file, replaced atomically: the blob is
// written to a temporary file beside it, synced, renamed over it, and the directory
// synced.
type FileStore struct {
	// Path of the state file, e.g. /var/lib/hestami/notifications.json. Its
	// directory must exist.
	Path string
}

var _ StateStore = (*FileStore)(nil)

// Load reads the state file; a missing file is no state yet.
func (s *FileStore) Load(ctx context.Context) ([]byte, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load alert state: %w", err)
	}
	return b, nil
}

// Save replaces the state file atomically and durably.
func (s *FileStore) Save(ctx context.Context, blob []byte) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save alert state %s: %w", s.Path, err)
	}
	dir := filepath.Dir(s.Path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(s.Path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save alert state: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(blob); err != nil {
		return fmt.Errorf("save alert state %s: %w", s.Path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("save alert state %s: %w", s.Path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("save alert state %s: %w", s.Path, err)
	}
	if err = os.Rename(f.Name(), s.Path); err != nil {
		return fmt.Errorf("save alert state %s: %w", s.Path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		// Make the rename itself durable; a failure here leaves a valid file either way.
		d.Sync()
		d.Close()
	}
	return nil
}

// MemoryStore is a StateStore in memory, for tests and for running without a state
// file. Its zero value is ready to use; it is safe for concurrent use.
type MemoryStore struct {
	mu   sync.Mutex
	blob []byte
}

var _ StateStore = (*MemoryStore)(nil)

// Load returns a copy of the last saved blob.
func (s *MemoryStore) Load(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blob == nil {
		return nil, nil
	}
	return append([]byte(nil), s.blob...), nil
}

// Save keeps a copy of blob.
func (s *MemoryStore) Save(ctx context.Context, blob []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blob = append([]byte(nil), blob...)
	return nil
}
