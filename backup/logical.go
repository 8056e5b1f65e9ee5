package backup

import (
	"bytes"
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
	"sort"
	"strings"
	"sync"
	"time"
)

// Logical backups: one pg_dump archive (custom format) per database plus the
// cluster's roles and tablespaces (pg_dumpall --globals-only), each a repository
// object under backups/<id>/, and the manifest last.

// GlobalsFile is the name of the roles-and-tablespaces script in a logical backup.
const GlobalsFile = "globals.sql"

// dumpSuffix ends the file name of every database archive in a logical backup.
const dumpSuffix = ".dump"

// DefaultDumpParallel is how many databases a logical backup dumps at once. Each dump
// is one pg_dump process and one server backend reading tables sequentially; two keep
// a server and the compressor busy without taking over a production machine.
const DefaultDumpParallel = 2

// Database is a database of the cluster being backed up.
type Database struct {
	Name      string
	Template  bool  // datistemplate
	AllowConn bool  // datallowconn
	Size      int64 // pg_database_size, bytes on disk (0 if unknown)
}

// Dumper produces the logical dumps of a cluster. The postgres package implements it
// by running pg_dump and pg_dumpall.
//
// A stream returned by either method is read straight from the tool's output. Its Read
// returns an error instead of io.EOF if the tool fails (carrying the tool's own
// message), so a failed dump never looks complete; Close stops a dump that was not
// read to its end.
type Dumper interface {
	// DumpDatabase starts a dump of database db in pg_dump's custom format,
	// uncompressed (the repository compresses), and returns its stream.
	DumpDatabase(ctx context.Context, db string) (io.ReadCloser, error)
	// DumpGlobals starts a dump of the cluster's roles and tablespaces as SQL.
	DumpGlobals(ctx context.Context) (io.ReadCloser, error)
}

// DumpFileName returns the name of database db's archive inside a logical backup.
// Database names may hold any character but NUL, so the name is escaped the way URLs
// escape a path segment, more strictly: only ASCII letters, digits, '_', '-' and a '.'
// that does not start the name are kept; every other byte becomes %XX. The result is
// a safe, reversible object name on every storage ("my db" -> "my%20db.dump",
// "a/b" -> "a%2Fb.dump"); the real name is kept in File.Database.
func DumpFileName(db string) string {
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(db); i++ {
		c := db[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
	return b.String() + dumpSuffix
}

// DatabaseNotFoundError reports a database that was asked for but is not there: not
// in the cluster (backup) or not in the backup (restore).
type DatabaseNotFoundError struct {
	Name      string
	Where     string   // "the cluster" or "backup <id>"
	Available []string // what there is instead
}

func (e *DatabaseNotFoundError) Error() string {
	return fmt.Sprintf("database %q is not in %s; it has: %s", e.Name, e.Where, quoteList(e.Available))
}

func quoteList(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// SelectDatabases returns the databases a logical backup dumps, sorted by name: the
// ones named in only, or, if only is empty, every database that is not a template and
// accepts connections (template0 never does; template1 is a template). A name in only
// that the cluster lacks or that refuses connections is an error.
func SelectDatabases(all []Database, only []string) ([]Database, error) {
	byName := map[string]Database{}
	var names []string
	for _, d := range all {
		byName[d.Name] = d
		if !d.Template && d.AllowConn {
			names = append(names, d.Name)
		}
	}
	sort.Strings(names)
	var out []Database
	if len(only) == 0 {
		for _, n := range names {
			out = append(out, byName[n])
		}
		if len(out) == 0 {
			return nil, errors.New("the cluster has no database to dump (every database is a template or refuses connections)")
		}
		return out, nil
	}
	seen := map[string]bool{}
	var errs []error
	for _, n := range only {
		if seen[n] {
			continue
		}
		seen[n] = true
		d, ok := byName[n]
		switch {
		case !ok:
			errs = append(errs, &DatabaseNotFoundError{Name: n, Where: "the cluster", Available: names})
		case !d.AllowConn:
			errs = append(errs, fmt.Errorf("database %q does not accept connections (datallowconn is false): pg_dump cannot dump it", n))
		default:
			out = append(out, d)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// EstimateDumpSpace returns the storage space a logical backup of dbs is expected to
// need. A compressed dump is almost always well under half the databases' size on
// disk: indexes are dumped as one CREATE INDEX line, dead rows, free space and page
// overhead are not dumped at all, and what remains (mostly text) compresses several
// times. Only data that neither shrinks nor compresses (already-compressed bytea,
// say) comes close to its size on disk. Half is therefore a defensible floor: a
// storage with less free space than that will almost certainly fill up, and refusing
// up front is better than failing hours in. It is not a guarantee either way; a
// storage that fills up mid-backup leaves no partial object (writes are atomic) and
// no manifest, so nothing is lost but time.
func EstimateDumpSpace(dbs []Database) int64 {
	var total int64
	for _, d := range dbs {
		total += d.Size
	}
	return total / 2
}

// ClusterInfo is what a backup records about the cluster it comes from.
type ClusterInfo struct {
	SystemIdentifier uint64
	WALSegmentSize   uint64
	PGVersion        int // server_version_num
	Host             string
}

// LogicalBackup takes logical backups into a repository.
type LogicalBackup struct {
	Repo   *Repository
	Dumper Dumper
	// Progress receives the bytes of dump output (nil: none).
	Progress Progress
	Logger   *slog.Logger
	// Parallel is how many dumps run at once (0: DefaultDumpParallel).
	Parallel int
	// Concurrency is how many cores the compression of one dump may use (0: 1).
	Concurrency    int
	HestamiVersion string
	Now            func() time.Time
}

// LogicalRequest says what to back up.
type LogicalRequest struct {
	Cluster ClusterInfo
	// Databases are all the cluster's databases (see SelectDatabases).
	Databases []Database
	// Only, when not empty, names the databases to dump.
	Only []string
}

func (b *LogicalBackup) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *LogicalBackup) logger() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Check runs the checks a logical backup makes before it starts: the databases to dump
// exist, the repository belongs to this cluster (creating it if there is none), and
// the storage, when it can tell, has room for the expected dump size. It returns the
// databases to dump.
func (b *LogicalBackup) Check(ctx context.Context, req LogicalRequest) ([]Database, error) {
	dbs, err := SelectDatabases(req.Databases, req.Only)
	if err != nil {
		return nil, err
	}
	if _, err := b.Repo.Ensure(ctx, req.Cluster.SystemIdentifier, req.Cluster.WALSegmentSize); err != nil {
		return nil, err
	}
	if sr, ok := b.Repo.Storage.(SpaceReporter); ok {
		free, err := sr.FreeSpace(ctx)
		if err != nil {
			return nil, fmt.Errorf("check free space: %w", err)
		}
		if need := EstimateDumpSpace(dbs); need > 0 && free < uint64(need) {
			var onDisk int64
			for _, d := range dbs {
				onDisk += d.Size
			}
			return nil, &SpaceError{Storage: b.Repo.Storage.String(), Needed: uint64(need), Free: free,
				Basis: fmt.Sprintf("half of the %s the databases take on disk", FormatBytes(onDisk))}
		}
	}
	return dbs, nil
}

// Run takes a logical backup: after Check, it dumps the globals and every selected
// database (Parallel at a time, the largest first) straight into the repository,
// then writes the manifest last. If any dump fails, the objects already stored are
// removed, no manifest is written, and the error carries the tool's message.
func (b *LogicalBackup) Run(ctx context.Context, req LogicalRequest) (*Manifest, error) {
	dbs, err := b.Check(ctx, req)
	if err != nil {
		return nil, err
	}
	start := b.now().UTC()
	id, err := b.Repo.NewBackupID(ctx, Logical, start)
	if err != nil {
		return nil, err
	}
	log := b.logger().With("backup", id)
	prog := b.Progress
	if prog == nil {
		prog = NoProgress{}
	}
	var estimate int64
	for _, d := range dbs {
		estimate += d.Size
	}
	log.Info("logical backup started", "databases", len(dbs), "size_on_disk", estimate)

	type job struct {
		file File
		open func(context.Context) (io.ReadCloser, error)
		size int64
	}
	jobs := []job{{file: File{Name: GlobalsFile}, open: b.Dumper.DumpGlobals}}
	for _, d := range dbs {
		jobs = append(jobs, job{file: File{Name: DumpFileName(d.Name), Database: d.Name}, size: d.Size,
			open: func(ctx context.Context) (io.ReadCloser, error) { return b.Dumper.DumpDatabase(ctx, d.Name) }})
	}
	// Largest first keeps the last dump from starting alone at the end.
	order := make([]int, len(jobs))
	for i := range order {
		order[i] = i
	}
	dumps := order[1:] // the globals stay first: they are small and every restore may need them
	sort.SliceStable(dumps, func(i, j int) bool { return jobs[dumps[i]].size > jobs[dumps[j]].size })

	parallel := b.Parallel
	if parallel < 1 {
		parallel = DefaultDumpParallel
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	prog.Start("logical backup", estimate)
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, i := range order {
		select {
		case sem <- struct{}{}:
		case <-runCtx.Done():
		}
		if runCtx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			j := &jobs[i]
			sum, err := b.store(runCtx, BackupKey(id, j.file.Name), j.open, prog)
			if err != nil {
				what := "globals"
				if j.file.Database != "" {
					what = fmt.Sprintf("database %q", j.file.Database)
				}
				errs[i] = fmt.Errorf("dump %s: %w", what, err)
				cancel()
				return
			}
			j.file.Sum = sum
			log.Info("stored", "file", j.file.Name, "database", j.file.Database, "size", sum.Size, "stored_size", sum.StoredSize)
		}()
	}
	wg.Wait()
	prog.Done()
	if err := firstError(ctx, errs); err != nil {
		b.discard(ctx, id, log)
		return nil, fmt.Errorf("logical backup %s failed, no backup was recorded: %w", id, err)
	}

	m := &Manifest{
		Format:           FormatVersion,
		ID:               id,
		Type:             Logical,
		StartTime:        start,
		SystemIdentifier: req.Cluster.SystemIdentifier,
		PGVersion:        req.Cluster.PGVersion,
		Host:             req.Cluster.Host,
		HestamiVersion:   b.HestamiVersion,
	}
	for _, j := range jobs {
		m.Files = append(m.Files, j.file)
		m.Size += j.file.Size
		m.StoredSize += j.file.StoredSize
		if j.file.Database != "" {
			m.Databases = append(m.Databases, j.file.Database)
		}
	}
	m.StopTime = b.now().UTC()
	if m.StopTime.Before(m.StartTime) {
		m.StopTime = m.StartTime
	}
	if err := b.Repo.WriteManifest(ctx, m); err != nil {
		b.discard(ctx, id, log)
		return nil, err
	}
	log.Info("logical backup complete", "databases", len(m.Databases), "size", m.Size, "stored_size", m.StoredSize, "duration", m.Duration())
	return m, nil
}

// firstError returns the error that caused the failure: the first one that is not
// merely the cancellation of the others, or ctx's own error.
func firstError(ctx context.Context, errs []error) error {
	var canceled error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if errors.Is(err, context.Canceled) && ctx.Err() == nil {
			if canceled == nil {
				canceled = err
			}
			continue
		}
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return canceled
}

// store streams one dump into the object key. If the dump fails, the dump's own error
// is returned rather than the storage's report of a failed read.
func (b *LogicalBackup) store(ctx context.Context, key string, open func(context.Context) (io.ReadCloser, error), prog Progress) (Sum, error) {
	rc, err := open(ctx)
	if err != nil {
		return Sum{}, err
	}
	defer rc.Close()
	src := &errReader{r: ProgressReader{R: rc, P: prog}}
	conc := b.Concurrency
	if conc < 1 {
		conc = 1
	}
	sum, err := b.Repo.PutObject(ctx, key, src, true, conc)
	if err != nil {
		if src.err != nil {
			return Sum{}, src.err
		}
		return Sum{}, err
	}
	return sum, nil
}

// discard removes the objects of a failed backup, so that it leaves nothing behind
// (it has no manifest, so nothing would ever use them).
func (b *LogicalBackup) discard(ctx context.Context, id string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	objs, err := b.Repo.Storage.List(ctx, backupsPrefix+id+"/")
	if err == nil && len(objs) == 0 {
		return
	}
	if err == nil {
		err = b.Repo.DeleteBackup(ctx, id)
	}
	if err != nil {
		log.Warn("could not remove the objects of the failed backup; remove them with hestami backup delete", "backup", id, "err", err)
	}
}

// errReader remembers the first error of r other than io.EOF.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

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

// GlobalsRestorer runs the globals script of a logical backup.
type GlobalsRestorer interface {
	// ExistingGlobals returns the names of the roles and tablespaces the server has.
	ExistingGlobals(ctx context.Context) (roles, tablespaces []string, err error)
	// RunGlobals runs an SQL script, going on after a failed statement, and returns
	// the error messages of the statements that failed.
	RunGlobals(ctx context.Context, script []byte) (failed []string, err error)
}

// ErrDatabaseExists is returned when a logical restore's target database exists and
// the restore was not forced.
var ErrDatabaseExists = errors.New("database already exists")

// LogicalRestoreOptions says what to restore where.
type LogicalRestoreOptions struct {
	Database string // in the backup
	Into     string // the database to create (or, with Force, to restore into)
	Globals  bool   // also create the backup's missing roles and tablespaces
	Jobs     int    // parallel pg_restore jobs (1: stream, no temporary file)
	Force    bool   // restore into Into even if it exists
}

// LogicalRestoreResult reports a finished logical restore.
type LogicalRestoreResult struct {
	Backup    string
	Database  string
	Into      string
	File      File
	Existing  bool // restored into an existing database with --clean --if-exists
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
// an interrupt), so it either holds the whole backup or does not exist. A restore into
// an existing database (Force) cannot be undone that way and may be left partial: the
// error says so.
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
	Now       func() time.Time
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
	if exists && !o.Force {
		return nil, fmt.Errorf("%w: %q; restore into a new database (another --into), or pass --force to restore into it with pg_restore --clean --if-exists (the backup's objects are dropped and recreated, others are kept)",
			ErrDatabaseExists, o.Into)
	}
	res.Existing = exists

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

	if o.Globals {
		if res.Globals, res.GlobalErr, err = r.restoreGlobals(ctx, globals); err != nil {
			return nil, err
		}
		log.Info("globals restored", "roles_created", len(res.Globals.CreatedRoles), "roles_kept", len(res.Globals.ExistingRoles), "errors", len(res.GlobalErr))
	}

	created := false
	if exists {
		log.Warn("restoring into the existing database with pg_restore --clean --if-exists: the backup's objects in it are dropped and recreated")
	} else {
		if err := r.Target.CreateDatabase(ctx, o.Into); err != nil {
			return nil, err
		}
		created = true
	}
	req := ArchiveRestore{Database: o.Into, Path: path, Jobs: o.Jobs, Clean: exists}
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
			return nil, r.undo(ctx, o.Into, created, err, log)
		}
	}
	if err := r.Target.RestoreArchive(ctx, req); err != nil {
		return nil, r.undo(ctx, o.Into, created, err, log)
	}
	res.Stop = r.now()
	log.Info("logical restore complete", "duration", res.Stop.Sub(res.Start))
	return res, nil
}

// undo drops the database a failed restore created, and says what state it left.
func (r *LogicalRestore) undo(ctx context.Context, db string, created bool, cause error, log *slog.Logger) error {
	if !created {
		return fmt.Errorf("restore into existing database %q failed, it may be partially restored: %w", db, cause)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := r.Target.DropDatabase(dctx, db); err != nil {
		log.Error("could not drop the partially restored database", "err", err)
		return fmt.Errorf("restore into %q failed and the partially restored database could not be dropped (%v); drop it by hand: %w", db, err, cause)
	}
	return fmt.Errorf("restore into %q failed; the database was dropped again, nothing was restored: %w", db, cause)
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

// GlobalsPlan is a backup's globals script (pg_dumpall --globals-only) rewritten to
// leave alone what the server already has, so that restoring globals never changes an
// existing role (its password, attributes, settings or memberships) or tablespace, and
// running it twice is harmless: a role or tablespace is created, with everything the
// backup says about it, only if the server lacks it.
type GlobalsPlan struct {
	// Script is the rewritten script, for psql.
	Script []byte
	// CreatedRoles and CreatedTablespaces are what the script creates.
	CreatedRoles       []string
	CreatedTablespaces []string
	// ExistingRoles and ExistingTablespaces are in the backup and on the server
	// already: their statements were left out.
	ExistingRoles       []string
	ExistingTablespaces []string
	// Skipped counts the statements left out.
	Skipped int
}

// PlanGlobals rewrites a globals script given the roles and tablespaces the server
// has; see GlobalsPlan. Statements about an existing role (ALTER ROLE, COMMENT ON
// ROLE, SECURITY LABEL ... ON ROLE) or tablespace (ALTER, COMMENT, GRANT, REVOKE)
// are dropped with its CREATE; a role membership (GRANT a TO b) is kept only if a or b
// is new. Everything else (SET, psql meta-commands such as \restrict, parameter
// privileges, anything unknown) is kept as it is.
func PlanGlobals(script []byte, roles, tablespaces []string) *GlobalsPlan {
	hasRole := make(map[string]bool, len(roles))
	for _, r := range roles {
		hasRole[r] = true
	}
	hasSpc := make(map[string]bool, len(tablespaces))
	for _, t := range tablespaces {
		hasSpc[t] = true
	}
	p := &GlobalsPlan{}
	var out []byte
	for _, st := range splitSQL(script) {
		keep := true
		if !st.meta {
			toks := sqlTokens(st.text, 12)
			kw := func(i int, words ...string) bool {
				for k, w := range words {
					if i+k >= len(toks) || toks[i+k].quoted || toks[i+k].s != w {
						return false
					}
				}
				return true
			}
			name := func(i int) (string, bool) {
				if i < len(toks) && toks[i].ident() {
					return toks[i].s, true
				}
				return "", false
			}
			switch {
			case kw(0, "create", "role"):
				if r, ok := name(2); ok {
					if hasRole[r] {
						keep = false
						p.ExistingRoles = append(p.ExistingRoles, r)
					} else {
						p.CreatedRoles = append(p.CreatedRoles, r)
					}
				}
			case kw(0, "alter", "role") || kw(0, "alter", "user"):
				if r, ok := name(2); ok && hasRole[r] {
					keep = false
				}
			case kw(0, "comment", "on", "role"):
				if r, ok := name(3); ok && hasRole[r] {
					keep = false
				}
			case kw(0, "create", "tablespace"):
				if t, ok := name(2); ok {
					if hasSpc[t] {
						keep = false
						p.ExistingTablespaces = append(p.ExistingTablespaces, t)
					} else {
						p.CreatedTablespaces = append(p.CreatedTablespaces, t)
					}
				}
			case kw(0, "alter", "tablespace"):
				if t, ok := name(2); ok && hasSpc[t] {
					keep = false
				}
			case kw(0, "comment", "on", "tablespace"):
				if t, ok := name(3); ok && hasSpc[t] {
					keep = false
				}
			case kw(0, "grant") && kw(2, "to"):
				// A role membership: GRANT role TO member [WITH ...] [GRANTED BY ...].
				a, ok1 := name(1)
				b, ok2 := name(3)
				if ok1 && ok2 && hasRole[a] && hasRole[b] {
					keep = false
				}
			default:
				// GRANT/REVOKE ... ON TABLESPACE t, SECURITY LABEL ... ON ROLE|TABLESPACE x.
				if kw(0, "grant") || kw(0, "revoke") || kw(0, "security", "label") {
					for i := 1; i < len(toks); i++ {
						if kw(i, "on", "tablespace") {
							if t, ok := name(i + 2); ok && hasSpc[t] {
								keep = false
							}
							break
						}
						if kw(i, "on", "role") {
							if r, ok := name(i + 2); ok && hasRole[r] {
								keep = false
							}
							break
						}
					}
				}
			}
		}
		if !keep {
			p.Skipped++
			continue
		}
		out = append(out, st.text...)
		if len(st.text) > 0 && st.text[len(st.text)-1] != '\n' {
			out = append(out, '\n')
		}
	}
	p.Script = out
	return p
}

// sqlStatement is one statement of an SQL script, or one psql meta-command line.
type sqlStatement struct {
	text []byte
	meta bool
}

// splitSQL splits an SQL script into statements at the semicolons outside quotes,
// comments and dollar quotes, and keeps psql meta-command lines (\connect, \restrict)
// as statements of their own. It never fails and loses nothing: the statements joined
// are the script (text after the last semicolon is a last statement).
func splitSQL(b []byte) []sqlStatement {
	var out []sqlStatement
	start := 0
	blank := true // only white space and comments since start
	identByte := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
	}
	i := 0
	for i < len(b) {
		c := b[i]
		switch {
		case blank && c == '\\':
			end := i
			for end < len(b) && b[end] != '\n' {
				end++
			}
			if end < len(b) {
				end++
			}
			if i > start {
				out = append(out, sqlStatement{text: b[start:i]})
			}
			out = append(out, sqlStatement{text: b[i:end], meta: true})
			i, start = end, end
			continue
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
			continue
		case c == '-' && i+1 < len(b) && b[i+1] == '-':
			for i < len(b) && b[i] != '\n' {
				i++
			}
			continue
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			depth := 0
			for i < len(b) {
				if b[i] == '/' && i+1 < len(b) && b[i+1] == '*' {
					depth++
					i += 2
				} else if b[i] == '*' && i+1 < len(b) && b[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
			continue
		}
		blank = false
		switch {
		case c == '\'':
			escapes := i > 0 && (b[i-1] == 'E' || b[i-1] == 'e') && (i < 2 || !identByte(b[i-2]))
			i++
			for i < len(b) {
				if escapes && b[i] == '\\' {
					i += 2
					continue
				}
				if b[i] == '\'' {
					if i+1 < len(b) && b[i+1] == '\'' {
						i += 2
						continue
					}
					break
				}
				i++
			}
			i++
		case c == '"':
			i++
			for i < len(b) {
				if b[i] == '"' {
					if i+1 < len(b) && b[i+1] == '"' {
						i += 2
						continue
					}
					break
				}
				i++
			}
			i++
		case c == '$' && (i == 0 || !identByte(b[i-1])):
			j := i + 1
			for j < len(b) && (identByte(b[j]) && !(j == i+1 && b[j] >= '0' && b[j] <= '9')) {
				j++
			}
			if j < len(b) && b[j] == '$' {
				tag := b[i : j+1]
				k := bytes.Index(b[j+1:], tag)
				if k < 0 {
					i = len(b)
				} else {
					i = j + 1 + k + len(tag)
				}
			} else {
				i++
			}
		case c == ';':
			i++
			// Keep the rest of the line (a trailing comment, the newline) with it.
			for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r') {
				i++
			}
			if i < len(b) && b[i] == '\n' {
				i++
			}
			out = append(out, sqlStatement{text: b[start:i]})
			start, blank = i, true
		default:
			i++
		}
	}
	if start < len(b) {
		out = append(out, sqlStatement{text: b[start:]})
	}
	return out
}

// sqlToken is a word of an SQL statement: a keyword or bare identifier (folded to
// lower case, as PostgreSQL does), a quoted identifier (unquoted, case kept) or a
// piece of punctuation or a literal.
type sqlToken struct {
	s      string
	quoted bool
	word   bool
}

func (t sqlToken) ident() bool { return t.quoted || t.word }

// sqlTokens returns up to max leading tokens of one statement, skipping comments.
func sqlTokens(b []byte, max int) []sqlToken {
	var toks []sqlToken
	i := 0
	for i < len(b) && len(toks) < max {
		c := b[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '-' && i+1 < len(b) && b[i+1] == '-':
			for i < len(b) && b[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			depth := 0
			for i < len(b) {
				if b[i] == '/' && i+1 < len(b) && b[i+1] == '*' {
					depth++
					i += 2
				} else if b[i] == '*' && i+1 < len(b) && b[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '"':
			var s []byte
			i++
			for i < len(b) {
				if b[i] == '"' {
					if i+1 < len(b) && b[i+1] == '"' {
						s = append(s, '"')
						i += 2
						continue
					}
					break
				}
				s = append(s, b[i])
				i++
			}
			i++
			toks = append(toks, sqlToken{s: string(s), quoted: true})
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80:
			j := i
			for j < len(b) && (b[j] == '_' || b[j] == '$' || b[j] >= 'a' && b[j] <= 'z' || b[j] >= 'A' && b[j] <= 'Z' || b[j] >= '0' && b[j] <= '9' || b[j] >= 0x80) {
				j++
			}
			toks = append(toks, sqlToken{s: asciiLower(string(b[i:j])), word: true})
			i = j
		default:
			// A literal, number or punctuation: one opaque token is enough here.
			toks = append(toks, sqlToken{s: string(c)})
			i++
			if c == '\'' {
				for i < len(b) {
					if b[i] == '\'' {
						if i+1 < len(b) && b[i+1] == '\'' {
							i += 2
							continue
						}
						break
					}
					i++
				}
				i++
			}
		}
	}
	return toks
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
