package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// prefetchDir holds verified segments fetched ahead, inside pg_wal.
const prefetchDir = "hestami_prefetch"

// WALFetcher implements restore_command: it fetches one archived WAL file, verified,
// and the next segments of the same timeline in parallel so replay does not wait on
// one download at a time.
type WALFetcher struct {
	Repo *Repository
	// Prefetch is how many following segments to fetch ahead (0: none).
	Prefetch int
	Logger   *slog.Logger
}

// Fetch writes the archived file name to dest (restore_command's %f and %p). dest
// appears only complete and verified. It returns an error wrapping ErrNotFound when
// the archive does not hold name (PostgreSQL probes for such files).
func (f *WALFetcher) Fetch(ctx context.Context, name, dest string) error {
	wf, err := ParseWALName(name)
	if err != nil {
		return fmt.Errorf("wal fetch: %w", err)
	}
	spool := filepath.Join(filepath.Dir(dest), prefetchDir)
	log := f.logger().With("wal", name)

	if wf.Kind == WALSegment {
		if err := os.Rename(filepath.Join(spool, name), dest); err == nil {
			log.Debug("restored from prefetch")
			// Refill in batches, when half the look-ahead is used: a batch downloads
			// in parallel, and the calls in between return at once.
			if entries, _ := os.ReadDir(spool); len(entries) <= f.Prefetch/2 {
				f.prefetch(ctx, wf, spool, log)
			}
			return nil
		}
	}
	var wg sync.WaitGroup
	if wf.Kind == WALSegment {
		wg.Add(1)
		go func() { defer wg.Done(); f.prefetch(ctx, wf, spool, log) }()
	}
	err = f.download(ctx, wf, dest)
	wg.Wait()
	if errors.Is(err, ErrNotFound) {
		if wf.Kind == WALSegment {
			// The end of this timeline's archive: nothing fetched ahead is needed.
			os.RemoveAll(spool)
		}
		return fmt.Errorf("wal fetch %s: %w in %s", name, ErrNotFound, f.Repo.Storage)
	}
	if err != nil {
		return fmt.Errorf("wal fetch %s: %w", name, err)
	}
	log.Info("restored")
	return nil
}

func (f *WALFetcher) logger() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return f.Repo.logger()
}

// download writes the verified content of wf to dest through a temporary file,
// creating dest's directory if needed once the object has opened.
func (f *WALFetcher) download(ctx context.Context, wf WALFile, dest string) (err error) {
	rc, err := f.Repo.OpenObject(ctx, WALKey(wf))
	if err != nil {
		return err // a missing key, say: nothing is written
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil { // the prefetch spool
		return err
	}
	tmp := filepath.Join(filepath.Dir(dest), ".hestami-tmp-"+filepath.Base(dest)+"-"+wf.Name)
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = io.Copy(out, rc); err != nil {
		return err
	}
	if err = out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dest)
}

// prefetch fetches the next segments of wf's timeline into the spool directory and
// drops spooled segments replay has gone past.
func (f *WALFetcher) prefetch(ctx context.Context, wf WALFile, spool string, log *slog.Logger) {
	if f.Prefetch <= 0 {
		return
	}
	if entries, err := os.ReadDir(spool); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") || e.Name() < wf.Name {
				os.Remove(filepath.Join(spool, e.Name()))
			}
		}
	}
	// Segment numbering: the name's low part wraps at 0x100000000/segSize; without
	// the size, step within XLogId and let a not-found end the look-ahead.
	segSize := uint64(0)
	if m, err := f.Repo.Marker(ctx); err == nil {
		segSize = m.WALSegmentSize
	}
	if segSize == 0 {
		segSize = DefaultSegmentSize
	}
	next := wf.SegNo(segSize)
	var wg sync.WaitGroup
	for i := 1; i <= f.Prefetch; i++ {
		name := SegmentName(wf.Timeline, next+uint64(i), segSize)
		dst := filepath.Join(spool, name)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		nf, _ := ParseWALName(name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f.download(ctx, nf, dst)
			switch {
			case err == nil, errors.Is(err, ErrNotFound):
			case errors.Is(err, ErrWrongKey): // the fetch asked for says so
				log.Debug("prefetch failed", "ahead", name, "err", err)
			default:
				log.Warn("prefetch failed; it will be fetched when needed", "ahead", name, "err", err)
			}
		}()
	}
	wg.Wait()
}
