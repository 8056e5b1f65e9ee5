package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
