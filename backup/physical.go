package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// MinPhysicalVersion is the oldest server (server_version_num) physical backups
// support: BASE_BACKUP's single-stream protocol (one COPY with typed messages,
// backup_label and tablespace_map inside base.tar) is PostgreSQL 15's.
const MinPhysicalVersion = 150000

// Defaults for PhysicalBackup.
const (
	DefaultWALTimeout      = 5 * time.Minute
	DefaultWALPollInterval = 50 * time.Millisecond
)

// headCaptureSize is how much of base.tar is kept to read backup_label and
// tablespace_map from: the server sends them first, and both are small.
const headCaptureSize = 1 << 20

// PostgreSQL's file names in a base backup.
const (
	BackupLabelFile    = "backup_label"
	TablespaceMapFile  = "tablespace_map"
	BackupManifestFile = "backup_manifest"
	BaseArchive        = "base.tar"
)

// ServerStatus is what a physical backup checks on the server before it starts.
type ServerStatus struct {
	SystemIdentifier uint64
	VersionNum       int // server_version_num
	WALSegmentSize   uint64
	InRecovery       bool
	ArchiveMode      string // off, on, always
	// DataSize is the expected size of the backup in bytes (the tablespaces' sizes).
	DataSize int64
}

// ServerTablespace is a tablespace as BASE_BACKUP announces it. The data directory
// itself is the one with OID 0 and no location.
type ServerTablespace struct {
	OID      uint32
	Location string
	Size     int64 // bytes, -1 if the server did not say
}

// BaseBackupResult is where a base backup started and stopped.
type BaseBackupResult struct {
	StartLSN      LSN
	StartTimeline uint32
	StopLSN       LSN
	StopTimeline  uint32
	Tablespaces   []ServerTablespace
}

// ArchiveSink receives what a base backup streams, in the order the server sends it.
type ArchiveSink interface {
	// Started is called once the server has started the backup, before any archive.
	Started(start LSN, timeline uint32, tablespaces []ServerTablespace)
	// Archive consumes one tar archive of tablespace ts (OID 0: the data directory).
	// It must read r to EOF, or return an error, which aborts the backup.
	Archive(ctx context.Context, ts ServerTablespace, r io.Reader) error
	// Manifest consumes PostgreSQL's backup_manifest; an error aborts the backup.
	Manifest(ctx context.Context, r io.Reader) error
}

// BaseBackupSource is a PostgreSQL server that streams base backups. The postgres
// package implements it over the replication protocol.
type BaseBackupSource interface {
	// Status reads the server's identity and the settings a backup depends on; an
	// error means the server cannot be reached or queried.
	Status(ctx context.Context) (ServerStatus, error)
	// BaseBackup takes a base backup labelled label without waiting for WAL
	// archiving, feeding sink as the data arrives. It returns the start and stop
	// positions once the server has stopped the backup.
	BaseBackup(ctx context.Context, label string, sink ArchiveSink) (BaseBackupResult, error)
	// NextXID returns the first transaction id not yet assigned (the xmax of a
	// snapshot taken now).
	NextXID(ctx context.Context) (uint64, error)
}

// ErrWALNotArchived is matched (errors.Is) by *WALNotArchivedError.
var ErrWALNotArchived = errors.New("WAL not archived")

// WALNotArchivedError reports a base backup whose WAL did not reach the repository in
// time: the backup was streamed but is not restorable, so it has no manifest.
type WALNotArchivedError struct {
	BackupID string
	Segment  string
	Storage  string
	Waited   time.Duration
}

func (e *WALNotArchivedError) Error() string {
	return fmt.Sprintf("backup %s is incomplete: WAL segment %s, needed to restore it, did not reach %s within %s. "+
		"Check that archive_mode is on and archive_command runs `hestami wal push %%p` into this repository "+
		"(see the PostgreSQL log and `hestami wal status`); the backup's data stays in the repository without a manifest "+
		"(remove it with `hestami backup delete %s`), then take a new backup",
		e.BackupID, e.Segment, e.Storage, e.Waited, e.BackupID)
}

// Is lets errors.Is(err, ErrWALNotArchived) match.
func (e *WALNotArchivedError) Is(target error) bool { return target == ErrWALNotArchived }

// PhysicalBackup takes a physical base backup into a repository: each archive is
// streamed through compression into storage (nothing is staged on local disk), the
// backup waits until the WAL up to its stop position is archived, and its manifest
// is written last, as the completion marker.
type PhysicalBackup struct {
	Repo *Repository
	// WALRepo is the repository archive_command writes WAL into; nil: Repo.
	WALRepo *Repository
	Source  BaseBackupSource
	// Parallel is the compression concurrency of each archive.
	Parallel int
	// WALTimeout bounds the wait for the stop segment to be archived (default 5 min).
	WALTimeout time.Duration
	// WALPollInterval is how often the repository is checked (default 50 ms).
	WALPollInterval time.Duration
	Progress        Progress
	Logger          *slog.Logger
	// Host names the server in the manifest; HestamiVersion the build.
	Host           string
	HestamiVersion string
	Now            func() time.Time
}

// Run takes the backup and returns its manifest. Before streaming it checks the
// server (reachable, PostgreSQL 15 or newer, archiving on), the repository (same
// cluster) and the storage's free space. It returns a *WALNotArchivedError, and
// writes no manifest, when the WAL does not reach the repository in time.
func (b *PhysicalBackup) Run(ctx context.Context) (*Manifest, error) {
	log := b.logger()
	st, err := b.Source.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("physical backup: %w", err)
	}
	if err := checkServer(st); err != nil {
		return nil, fmt.Errorf("physical backup: %w", err)
	}
	if _, err := b.Repo.Ensure(ctx, st.SystemIdentifier, st.WALSegmentSize); err != nil {
		return nil, fmt.Errorf("physical backup: %w", err)
	}
	walRepo := b.walRepo()
	if walRepo != b.Repo {
		if _, err := walRepo.Ensure(ctx, st.SystemIdentifier, st.WALSegmentSize); err != nil {
			return nil, fmt.Errorf("physical backup: WAL repository: %w", err)
		}
	}
	if sr, ok := b.Repo.Storage.(SpaceReporter); ok && st.DataSize > 0 {
		free, err := sr.FreeSpace(ctx)
		if err != nil {
			log.Warn("cannot tell the storage's free space; not checked", "storage", b.Repo.Storage.String(), "err", err)
		} else if uint64(st.DataSize) > free {
			return nil, fmt.Errorf("physical backup: %w", &SpaceError{Storage: b.Repo.Storage.String(), Needed: uint64(st.DataSize), Free: free, Basis: "the database size before compression"})
		}
	}

	start := b.now()
	id, err := b.Repo.NewBackupID(ctx, Physical, start)
	if err != nil {
		return nil, fmt.Errorf("physical backup: %w", err)
	}
	log = log.With("backup", id)
	log.Info("starting physical backup", "server_version", st.VersionNum, "system_identifier", st.SystemIdentifier, "expected_size", st.DataSize)

	sink := &repoSink{b: b, id: id, estimate: st.DataSize, log: log}
	res, err := b.Source.BaseBackup(ctx, "hestami "+id, sink)
	if sink.started {
		b.progress().Done()
	}
	if err != nil {
		return nil, fmt.Errorf("physical backup %s failed: %w (objects already stored stay as an incomplete backup; `hestami backup delete %s` removes them)", id, err, id)
	}
	if !sink.gotBase {
		return nil, fmt.Errorf("physical backup %s: the server sent no %s", id, BaseArchive)
	}
	stop := b.now()
	if stop.Before(start) {
		stop = start
	}
	segSize := st.WALSegmentSize
	if segSize == 0 {
		segSize = DefaultSegmentSize
	}
	m := &Manifest{
		Format:           FormatVersion,
		ID:               id,
		Type:             Physical,
		StartTime:        start.UTC(),
		StopTime:         stop.UTC(),
		SystemIdentifier: st.SystemIdentifier,
		PGVersion:        st.VersionNum,
		Host:             b.Host,
		HestamiVersion:   b.HestamiVersion,
		Timeline:         res.StopTimeline,
		StartLSN:         res.StartLSN,
		StopLSN:          res.StopLSN,
		StartWAL:         SegmentName(res.StartTimeline, SegmentOf(res.StartLSN, segSize), segSize),
		StopWAL:          SegmentName(res.StopTimeline, lastSegmentOf(res.StopLSN, segSize), segSize),
		WALSegmentSize:   segSize,
		BackupLabel:      sink.label,
		TablespaceMap:    sink.tsMap,
		Files:            sink.files,
	}
	for _, ts := range res.Tablespaces {
		if ts.OID != 0 {
			m.Tablespaces = append(m.Tablespaces, Tablespace{OID: ts.OID, Location: ts.Location})
		}
	}
	for _, f := range m.Files {
		m.Size += f.Size
		m.StoredSize += f.StoredSize
	}
	log.Info("base backup streamed", "start_lsn", m.StartLSN, "stop_lsn", m.StopLSN, "timeline", m.Timeline,
		"size", m.Size, "stored_size", m.StoredSize, "seconds", stop.Sub(start).Seconds())

	if xid, err := b.Source.NextXID(ctx); err != nil {
		log.Warn("cannot read the next transaction id; this backup will not be chosen for --target-xid", "err", err)
	} else {
		m.NextXID = xid
	}

	waitStart := time.Now()
	if err := b.waitForWAL(ctx, id, res, segSize); err != nil {
		return nil, err
	}
	log.Info("WAL up to the stop position is archived", "stop_wal", m.StopWAL, "waited_seconds", time.Since(waitStart).Seconds())

	if err := b.Repo.WriteManifest(ctx, m); err != nil {
		return nil, fmt.Errorf("physical backup %s: %w", id, err)
	}
	log.Info("physical backup complete", "size", m.Size, "stored_size", m.StoredSize)
	return m, nil
}

// checkServer refuses servers a physical backup cannot work with.
func checkServer(st ServerStatus) error {
	if st.VersionNum < MinPhysicalVersion {
		return fmt.Errorf("the server runs PostgreSQL %d (server_version_num %d); physical backups need PostgreSQL 15 or newer "+
			"(upgrade the server, or take logical backups with --type logical)", st.VersionNum/10000, st.VersionNum)
	}
	switch {
	case st.ArchiveMode == "off" || st.ArchiveMode == "":
		return errors.New("archive_mode is off on the server, so the WAL a physical backup needs is never archived and the backup could not complete: " +
			"set archive_mode = on and archive_command = 'hestami wal push %p' (restart required), then check `hestami wal status`")
	case st.InRecovery && st.ArchiveMode != "always":
		return fmt.Errorf("the server is a standby with archive_mode = %s: it archives no WAL, so a backup of it could not complete; "+
			"set archive_mode = always on the standby or back up the primary", st.ArchiveMode)
	}
	return nil
}

func (b *PhysicalBackup) walRepo() *Repository {
	if b.WALRepo != nil {
		return b.WALRepo
	}
	return b.Repo
}

// lastSegmentOf returns the segment holding the byte just before lsn: the last one
// a backup stopping at lsn needs (a stop exactly on a boundary needs none after it).
func lastSegmentOf(lsn LSN, segSize uint64) uint64 {
	if lsn == 0 {
		return 0
	}
	return SegmentOf(lsn-1, segSize)
}

// waitForWAL polls the WAL repository until every segment from the backup's start to
// its stop is archived. The server switched WAL when the backup stopped, so the
// archiver is already at work; polling often is what keeps a backup of a quiet
// database to a fraction of a second past its stop.
func (b *PhysicalBackup) waitForWAL(ctx context.Context, id string, res BaseBackupResult, segSize uint64) error {
	repo := b.walRepo()
	first, last := SegmentOf(res.StartLSN, segSize), lastSegmentOf(res.StopLSN, segSize)
	if res.StartTimeline != res.StopTimeline {
		first = last // the start lies on the parent timeline; its WAL is the parent's
	}
	var needed []WALFile
	for n := first; n <= last; n++ {
		f, err := ParseWALName(SegmentName(res.StopTimeline, n, segSize))
		if err != nil {
			return fmt.Errorf("physical backup %s: %w", id, err)
		}
		needed = append(needed, f)
	}
	timeout := b.WALTimeout
	if timeout <= 0 {
		timeout = DefaultWALTimeout
	}
	interval := b.WALPollInterval
	if interval <= 0 {
		interval = DefaultWALPollInterval
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	i := 0
	for {
		for i < len(needed) {
			_, err := repo.Storage.Stat(ctx, WALKey(needed[i]))
			if errors.Is(err, ErrNotFound) {
				break
			}
			if err != nil {
				return fmt.Errorf("physical backup %s: check archived WAL %s: %w", id, needed[i].Name, err)
			}
			i++
		}
		if i == len(needed) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("physical backup %s: waiting for WAL %s: %w", id, needed[i].Name, context.Cause(ctx))
		case <-deadline.C:
			b.logger().Error("WAL not archived in time; the backup has no manifest", "backup", id, "wal", needed[i].Name, "timeout", timeout)
			return &WALNotArchivedError{BackupID: id, Segment: needed[i].Name, Storage: repo.Storage.String(), Waited: timeout}
		case <-ticker.C:
		}
	}
}

func (b *PhysicalBackup) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *PhysicalBackup) logger() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return b.Repo.logger()
}

func (b *PhysicalBackup) progress() Progress {
	if b.Progress != nil {
		return b.Progress
	}
	return NoProgress{}
}

// repoSink stores what the server streams into backups/<id>/.
type repoSink struct {
	b        *PhysicalBackup
	id       string
	estimate int64
	log      *slog.Logger

	started bool
	files   []File
	gotBase bool
	label   []byte
	tsMap   []byte
}

func (s *repoSink) Started(start LSN, tli uint32, tablespaces []ServerTablespace) {
	var total int64
	known := true
	for _, ts := range tablespaces {
		if ts.Size < 0 {
			known = false
		}
		total += ts.Size
	}
	if !known {
		total = s.estimate
	}
	s.log.Info("server started the backup", "start_lsn", start, "timeline", tli, "tablespaces", len(tablespaces), "total", total)
	s.b.progress().Start("physical backup", total)
	s.started = true
}

func (s *repoSink) Archive(ctx context.Context, ts ServerTablespace, r io.Reader) error {
	name := BaseArchive
	if ts.OID != 0 {
		name = fmt.Sprintf("%d.tar", ts.OID)
	}
	var src io.Reader = ProgressReader{R: r, P: s.b.progress()}
	var head *headBuffer
	if ts.OID == 0 {
		head = &headBuffer{max: headCaptureSize}
		src = io.TeeReader(src, head)
	}
	sum, err := s.b.Repo.PutObject(ctx, BackupKey(s.id, name), src, true, s.b.Parallel)
	if err != nil {
		return fmt.Errorf("store %s: %w", name, err)
	}
	f := File{Name: name, Sum: sum, Tablespace: ts.OID}
	s.files = append(s.files, f)
	s.log.Info("stored archive", "file", name, "size", sum.Size, "stored_size", sum.StoredSize)
	if ts.OID == 0 {
		s.gotBase = true
		s.label, s.tsMap, err = readLabelFiles(head.Bytes())
		if err != nil {
			return fmt.Errorf("read %s from %s: %w", BackupLabelFile, name, err)
		}
	}
	return nil
}

func (s *repoSink) Manifest(ctx context.Context, r io.Reader) error {
	sum, err := s.b.Repo.PutObject(ctx, BackupKey(s.id, BackupManifestFile), r, true, 1)
	if err != nil {
		return fmt.Errorf("store %s: %w", BackupManifestFile, err)
	}
	s.files = append(s.files, File{Name: BackupManifestFile, Sum: sum})
	return nil
}

// headBuffer keeps the first max bytes written to it and discards the rest.
type headBuffer struct {
	bytes.Buffer
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - h.Len(); room > 0 {
		h.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// readLabelFiles reads backup_label and tablespace_map, byte for byte, from the
// beginning of a base tar: the server sends them before any other file.
func readLabelFiles(head []byte) (label, tsMap []byte, err error) {
	tr := tar.NewReader(bytes.NewReader(head))
	for {
		hdr, err := tr.Next()
		if err != nil {
			// The captured head may end inside a later entry: fine once the label is read.
			if label != nil {
				return label, tsMap, nil
			}
			if err == io.EOF {
				err = errors.New("not in the archive")
			}
			return nil, nil, err
		}
		var dst *[]byte
		switch hdr.Name {
		case BackupLabelFile:
			dst = &label
		case TablespaceMapFile:
			dst = &tsMap
		default:
			if label == nil {
				return nil, nil, fmt.Errorf("the archive starts with %s, not %s", hdr.Name, BackupLabelFile)
			}
			return label, tsMap, nil
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if b == nil {
			b = []byte{}
		}
		*dst = b
	}
}
