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
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"
)

// LogicalFile returns the archive of database db in logical backup m.
func LogicalFile(m *Manifest, db string) (File, error) {
	if m.Type != Logical {
		return File{}, fmt.Errorf("backup %s is a %s backup, not a logical one (see hestami backup list --type logical)", m.ID, m.Type)
	}
	for _, f := range m.Files {
		if f.Database == db && f.Database != "" {
			return f, nil
		}
	}
	return File{}, &DatabaseNotFoundError{Name: db, Where: "backup " + m.ID, Available: m.Databases}
}

// ArchiveRestore asks a DatabaseRestorer to restore one archive.
type ArchiveRestore struct {
	// Database is the existing database to restore into.
	Database string
	// Path is the archive file; with it, Jobs parallel jobs may restore it.
	Path string
	// Archive, when Path is empty, streams the archive (Jobs is then 1). If it returns
	// an error, the restore is stopped at once and that error returned.
	Archive io.Reader
	Jobs    int
	// Clean drops the archive's objects before recreating them (pg_restore --clean
	// --if-exists), for a restore into a database that already holds them.
	Clean bool
}

// DatabaseRestorer is the PostgreSQL server a logical restore writes into.
type DatabaseRestorer interface {
	// DatabaseExists reports whether the database exists.
	DatabaseExists(ctx context.Context, name string) (bool, error)
	// CreateDatabase creates an empty database (from template0).
	CreateDatabase(ctx context.Context, name string) error
	// DropDatabase drops a database, ending its sessions; a missing one is no error.
	DropDatabase(ctx context.Context, name string) error
	// RestoreArchive restores a pg_dump custom-format archive, stopping at its first
	// error, which it returns with the tool's message.
	RestoreArchive(ctx context.Context, req ArchiveRestore) error
}

// DatabaseReplacer is a DatabaseRestorer that can put a restored database in the
// place of an existing one (LogicalRestoreOptions.Replace).
type DatabaseReplacer interface {
	// CheckReplace returns an error, before anything changes, when this connection
	// cannot replace database name: it neither owns it nor is a superuser, or it is
	// connected to name itself.
	CheckReplace(ctx context.Context, name string) error
	// ReplaceDatabase renames database name to aside and database restored to name
	// in one transaction, after refusing new connections to name and ending its
	// sessions; restored gets name's owner. aside is left refusing connections. On
	// error nothing was renamed and name accepts connections as before.
	ReplaceDatabase(ctx context.Context, name, restored, aside string) error
}

// GlobalsRestorer runs the globals script of a logical backup.
type GlobalsRestorer interface {
	// ExistingGlobals returns the names of the roles and tablespaces the server has.
	ExistingGlobals(ctx context.Context) (roles, tablespaces []string, err error)
	// RunGlobals runs an SQL script, going on after a failed statement, and returns
	// the error messages of the statements that failed.
	RunGlobals(ctx context.Context, script []byte) (failed []string, err error)
}

// ErrDatabaseExists is returned when a logical restore's target database exists and
// the restore was not asked to replace it.
var ErrDatabaseExists = errors.New("database already exists")

// LogicalRestoreOptions says what to restore where.
type LogicalRestoreOptions struct {
	Database string // in the backup
	Into     string // the database to create (or, with Replace, to replace)
	Globals  bool   // also create the backup's missing roles and tablespaces
	Jobs     int    // parallel pg_restore jobs (1: stream, no temporary file)
	// Replace replaces Into if it exists: the backup is restored into a new,
	// temporary database, which takes Into's name (and owner) in one transaction
	// once it holds the whole backup; the replaced database is then dropped. The
	// Target must be a DatabaseReplacer.
	Replace bool
	// KeepReplaced keeps the replaced database, renamed (LogicalRestoreResult.Kept)
	// and refusing connections, instead of dropping it.
	KeepReplaced bool
}

// LogicalRestoreResult reports a finished logical restore.
type LogicalRestoreResult struct {
	Backup    string
	Database  string
	Into      string
	File      File
	Replaced  bool   // Into existed and was replaced
	Kept      string // the replaced database's new name, when it was kept (or could not be dropped)
	DropErr   error  // why the replaced database could not be dropped, if it could not
	Jobs      int
	Streamed  bool // streamed into pg_restore (no temporary file)
	Globals   *GlobalsPlan
	GlobalErr []string // statements of the globals script that failed
	Start     time.Time
	Stop      time.Time
}

// LogicalRestore restores one database of a logical backup.
//
// A stored object is verified completely (its checksum trailer and the checksum in the
// manifest) before any of it reaches the server, because a stream's checksum can only
// be checked at its end, after pg_restore would have applied most of it: with several
// jobs the object is decompressed to a temporary file (which pg_restore -j needs
// anyway) and verified on the way; with one job it is read through once to verify it
// and then streamed into pg_restore, trading a second download for no local disk. A
// corrupt object therefore fails the restore before the target database is created or
// any role is touched. A database the restore created is dropped again if the restore
// fails for any reason (a pg_restore error, the object changing between the two reads,
// an interrupt), so it either holds the whole backup or does not exist. An existing
// database is never restored into: with Replace the backup goes into a new database
// that takes the existing one's place only once it is complete, so the name holds
// either the old database, untouched, or the whole backup.
type LogicalRestore struct {
	Repo    *Repository
	Target  DatabaseRestorer
	Globals GlobalsRestorer // needed only with LogicalRestoreOptions.Globals
	// Progress receives the bytes read from the repository (nil: none).
	Progress Progress
	Logger   *slog.Logger
	// TempDir holds the temporary archive of a parallel restore ("": os.TempDir()).
	TempDir string
	// FreeSpace returns the bytes free in a directory, to check TempDir before
	// decompressing into it (nil: no check).
	FreeSpace func(ctx context.Context, dir string) (uint64, error)
	// BeforeWrite, if set, is called once everything is read and verified, just
	// before the first change on the server; an error stops the restore there, with
	// nothing changed. (The command line records the restore's start in the audit
	// log with it.)
	BeforeWrite func(ctx context.Context) error
	Now         func() time.Time
}

// tempHeadroom is kept free on the temporary file's file system beyond the archive.
const tempHeadroom = 64 << 20

// maxIdentifierLength is PostgreSQL's NAMEDATALEN-1: longer names are truncated.
const maxIdentifierLength = 63

func (r *LogicalRestore) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *LogicalRestore) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (r *LogicalRestore) progress() Progress {
	if r.Progress != nil {
		return r.Progress
	}
	return NoProgress{}
}

// Run restores database o.Database of backup m into o.Into; see LogicalRestore.
func (r *LogicalRestore) Run(ctx context.Context, m *Manifest, o LogicalRestoreOptions) (*LogicalRestoreResult, error) {
	switch {
	case o.Into == "":
		return nil, errors.New("no target database: name the new database with --into")
	case len(o.Into) > maxIdentifierLength:
		return nil, fmt.Errorf("target database name %q is %d bytes long; PostgreSQL allows at most %d", o.Into, len(o.Into), maxIdentifierLength)
	case strings.ContainsRune(o.Into, 0):
		return nil, fmt.Errorf("target database name %q holds a NUL byte", o.Into)
	}
	if o.Jobs < 1 {
		o.Jobs = 1
	}
	f, err := LogicalFile(m, o.Database)
	if err != nil {
		return nil, err
	}
	res := &LogicalRestoreResult{Backup: m.ID, Database: o.Database, Into: o.Into, File: f, Jobs: o.Jobs, Streamed: o.Jobs == 1, Start: r.now()}
	log := r.logger().With("backup", m.ID, "database", o.Database, "into", o.Into)

	exists, err := r.Target.DatabaseExists(ctx, o.Into)
	if err != nil {
		return nil, err
	}
	// into is the database pg_restore writes into: Into, or with Replace a new one
	// that takes Into's place once it holds the whole backup.
	into := o.Into
	var replacer DatabaseReplacer
	var temp string
	if exists {
		if !o.Replace {
			return nil, fmt.Errorf("%w: %q; restore into a new database (another --into), or pass --replace to replace it: the backup is restored into "+
				"a new database that takes its name only once complete, and the old one is then dropped (--keep-replaced keeps it under another name)",
				ErrDatabaseExists, o.Into)
		}
		var ok bool
		if replacer, ok = r.Target.(DatabaseReplacer); !ok {
			return nil, fmt.Errorf("replace database %q: this target cannot swap databases", o.Into)
		}
		if err := replacer.CheckReplace(ctx, o.Into); err != nil {
			return nil, fmt.Errorf("replace database %q: %w", o.Into, err)
		}
		stamp := r.now().UTC().Format("20060102T150405")
		temp = derivedName(o.Into, "_restoring_"+stamp)
		res.Kept = derivedName(o.Into, "_replaced_"+stamp)
		for _, name := range []string{temp, res.Kept} {
			taken, err := r.Target.DatabaseExists(ctx, name)
			if err != nil {
				return nil, err
			}
			if taken {
				return nil, fmt.Errorf("replace database %q: database %q already exists (left by an earlier restore?): drop or rename it, then restore again", o.Into, name)
			}
		}
		into = temp
		res.Replaced = true
		log = log.With("temporary", temp)
	}

	// Read and verify everything before changing anything.
	var globals []byte
	if o.Globals {
		if r.Globals == nil {
			return nil, errors.New("restore globals: no globals restorer")
		}
		if globals, err = r.readGlobals(ctx, m); err != nil {
			return nil, fmt.Errorf("restore of %q stopped before changing anything on the server: %w", o.Database, err)
		}
	}
	key := BackupKey(m.ID, f.Name)
	var path string
	if o.Jobs > 1 {
		dir, err := os.MkdirTemp(r.TempDir, "hestami-restore-")
		if err != nil {
			return nil, fmt.Errorf("create temporary directory for the archive: %w (set --temp-dir, or use --jobs 1 to stream without one)", err)
		}
		defer os.RemoveAll(dir)
		if r.FreeSpace != nil {
			free, err := r.FreeSpace(ctx, dir)
			if err != nil {
				return nil, fmt.Errorf("check free space in %s: %w", dir, err)
			}
			if need := uint64(f.Size) + tempHeadroom; free < need {
				return nil, fmt.Errorf("not enough space in %s for the archive of %q: it needs %s, there is %s free; use --temp-dir on a larger file system, or --jobs 1 to stream the archive without a temporary file",
					filepath.Dir(dir), o.Database, FormatBytes(int64(need)), FormatBytes(int64(free)))
			}
		}
		path = filepath.Join(dir, "archive.dump")
		if err := r.fetch(ctx, key, f, path); err != nil {
			return nil, fmt.Errorf("restore of %q stopped before changing anything on the server: %w", o.Database, err)
		}
	} else if err := r.fetch(ctx, key, f, ""); err != nil {
		return nil, fmt.Errorf("restore of %q stopped before changing anything on the server: %w", o.Database, err)
	}

	if r.BeforeWrite != nil {
		if err := r.BeforeWrite(ctx); err != nil {
			return nil, err
		}
	}
	if o.Globals {
		if res.Globals, res.GlobalErr, err = r.restoreGlobals(ctx, globals); err != nil {
			return nil, err
		}
		log.Info("globals restored", "roles_created", len(res.Globals.CreatedRoles), "roles_kept", len(res.Globals.ExistingRoles), "errors", len(res.GlobalErr))
	}

	if err := r.Target.CreateDatabase(ctx, into); err != nil {
		return nil, err
	}
	req := ArchiveRestore{Database: into, Path: path, Jobs: o.Jobs}
	if path == "" {
		rc, err := r.Repo.OpenObject(ctx, key)
		if err == nil {
			defer rc.Close()
			prog := r.progress()
			prog.Start("restore "+o.Database, f.Size)
			defer prog.Done()
			req.Archive = &sumReader{r: ProgressReader{R: rc, P: prog}, want: f, key: key}
		} else {
			err = fmt.Errorf("open %s: %w", key, err)
			return nil, r.undo(ctx, o.Into, temp, err, log)
		}
	}
	if err := r.Target.RestoreArchive(ctx, req); err != nil {
		return nil, r.undo(ctx, o.Into, temp, err, log)
	}
	if replacer != nil {
		if err := replacer.ReplaceDatabase(ctx, o.Into, temp, res.Kept); err != nil {
			return nil, r.undo(ctx, o.Into, temp, fmt.Errorf("swap the restored copy in: %w", err), log)
		}
		log.Info("replaced the database with the restored copy", "replaced", res.Kept)
		if !o.KeepReplaced {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			err := r.Target.DropDatabase(dctx, res.Kept)
			cancel()
			if err != nil {
				log.Error("could not drop the replaced database", "replaced", res.Kept, "err", err)
				res.DropErr = err
			} else {
				res.Kept = ""
			}
		}
	}
	res.Stop = r.now()
	log.Info("logical restore complete", "duration", res.Stop.Sub(res.Start))
	return res, nil
}

// undo drops the database a failed restore created (db, or temp when it was to
// replace db), and says what state it left.
func (r *LogicalRestore) undo(ctx context.Context, db, temp string, cause error, log *slog.Logger) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if temp != "" {
		if err := r.Target.DropDatabase(dctx, temp); err != nil {
			log.Error("could not drop the partially restored database", "database", temp, "err", err)
			return fmt.Errorf("restore to replace %q failed; %q is unchanged, but the partially restored copy %q could not be dropped (%v): drop it by hand: %w", db, db, temp, err, cause)
		}
		return fmt.Errorf("restore to replace %q failed; %q is unchanged and the partially restored copy was dropped again: %w", db, db, cause)
	}
	if err := r.Target.DropDatabase(dctx, db); err != nil {
		log.Error("could not drop the partially restored database", "err", err)
		return fmt.Errorf("restore into %q failed and the partially restored database could not be dropped (%v); drop it by hand: %w", db, err, cause)
	}
	return fmt.Errorf("restore into %q failed; the database was dropped again, nothing was restored: %w", db, cause)
}

// derivedName is base followed by suffix, base cut (at a character boundary) so
// that the name fits PostgreSQL's identifier length.
func derivedName(base, suffix string) string {
	n := maxIdentifierLength - len(suffix)
	if len(base) > n {
		for n > 0 && !utf8.RuneStart(base[n]) {
			n--
		}
		base = base[:n]
	}
	return base + suffix
}

// fetch reads the object key through, verifying it against its trailer and against
// the manifest's entry f, into the file path (or nowhere, only to verify it).
func (r *LogicalRestore) fetch(ctx context.Context, key string, f File, path string) (err error) {
	prog := r.progress()
	phase := "verify " + f.Name
	if path != "" {
		phase = "fetch " + f.Name
	}
	prog.Start(phase, f.Size)
	defer prog.Done()
	rc, err := r.Repo.OpenObject(ctx, key)
	if err != nil {
		return fmt.Errorf("open %s: %w", key, err)
	}
	defer rc.Close()
	w := io.Discard
	if path != "" {
		out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("create temporary archive: %w", err)
		}
		defer func() {
			if cerr := out.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("write temporary archive %s: %w", path, cerr)
			}
		}()
		w = out
	}
	sr := &sumReader{r: ProgressReader{R: rc, P: prog}, want: f, key: key}
	if _, err := io.Copy(w, sr); err != nil {
		if sr.err != nil {
			return sr.err
		}
		return fmt.Errorf("write temporary archive %s: %w", path, err)
	}
	return nil
}

// sumReader checks, at EOF, that what it read matches the manifest's entry.
type sumReader struct {
	r    io.Reader
	want File
	key  string
	h    hash.Hash
	n    int64
	err  error
}

func (s *sumReader) Read(p []byte) (int, error) {
	if s.h == nil {
		s.h = sha256.New()
	}
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	if err == io.EOF {
		if got := hex.EncodeToString(s.h.Sum(nil)); s.n != s.want.Size || got != s.want.SHA256 {
			err = &CorruptError{Key: s.key, Reason: fmt.Sprintf("content (%d bytes, sha256 %.12s) is not the file the manifest records (%d bytes, sha256 %.12s)",
				s.n, got, s.want.Size, s.want.SHA256)}
		}
	}
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// readGlobals reads and verifies the backup's globals script.
func (r *LogicalRestore) readGlobals(ctx context.Context, m *Manifest) ([]byte, error) {
	f, ok := m.File(GlobalsFile)
	if !ok {
		return nil, fmt.Errorf("backup %s has no %s: it holds no roles or tablespaces to restore", m.ID, GlobalsFile)
	}
	key := BackupKey(m.ID, f.Name)
	rc, err := r.Repo.OpenObject(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(&sumReader{r: rc, want: f, key: key})
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (r *LogicalRestore) restoreGlobals(ctx context.Context, script []byte) (*GlobalsPlan, []string, error) {
	roles, spcs, err := r.Globals.ExistingGlobals(ctx)
	if err != nil {
		return nil, nil, err
	}
	plan := PlanGlobals(script, roles, spcs)
	failed, err := r.Globals.RunGlobals(ctx, plan.Script)
	if err != nil {
		return nil, nil, fmt.Errorf("restore globals: %w", err)
	}
	return plan, failed, nil
}
