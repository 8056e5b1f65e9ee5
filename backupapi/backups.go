package backupapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/daemon"
)

// backupJSON is a backup as the API shows it.
type backupJSON struct {
	ID         string      `json:"id"`
	Type       backup.Type `json:"type,omitempty"`
	Status     string      `json:"status"`
	StartTime  *time.Time  `json:"start_time,omitempty"`
	StopTime   *time.Time  `json:"stop_time,omitempty"`
	Timeline   uint32      `json:"timeline,omitempty"`
	StartLSN   string      `json:"start_lsn,omitempty"`
	StopLSN    string      `json:"stop_lsn,omitempty"`
	PGVersion  int         `json:"pg_version,omitempty"`
	Size       int64       `json:"size"`
	StoredSize int64       `json:"stored_size"`
	Databases  []string    `json:"databases,omitempty"`
	Error      string      `json:"error,omitempty"`
	// Verification is the last verification (GET /api/v1/backups/{id} only).
	Verification *backup.VerificationRecord `json:"verification,omitempty"`
}

func backupOut(e backup.BackupEntry) backupJSON {
	b := backupJSON{ID: e.ID, Status: e.Status, Type: backup.IDType(e.ID)}
	if e.Err != nil {
		b.Error = e.Err.Error()
	}
	for _, o := range e.Objects {
		b.StoredSize += o.Size
	}
	if m := e.Manifest; m != nil {
		start, stop := m.StartTime.UTC(), m.StopTime.UTC()
		b.Type, b.StartTime, b.StopTime, b.PGVersion = m.Type, &start, &stop, m.PGVersion
		b.Size, b.StoredSize, b.Databases = m.Size, m.StoredSize, m.Databases
		if m.Type == backup.Physical {
			b.Timeline, b.StartLSN, b.StopLSN = m.Timeline, m.StartLSN.String(), m.StopLSN.String()
		}
	}
	return b
}

// listBackups lists the repository's backups, oldest first (GET /api/v1/backups).
func (s *Server) listBackups(w http.ResponseWriter, r *http.Request, p *Principal) {
	entries, err := s.o.Repo.Backups(r.Context())
	if err != nil {
		s.fail(w, r, auth.Errorf(auth.CodeUnavailable, "The repository cannot be read: %v.", err).WithCause(err))
		return
	}
	out := make([]backupJSON, 0, len(entries))
	for _, e := range entries {
		out = append(out, backupOut(e))
	}
	writeJSON(w, http.StatusOK, map[string]any{"backups": out})
}

// entry returns the backup id of the request's path, or answers 404.
func (s *Server) entry(w http.ResponseWriter, r *http.Request) (*backup.BackupEntry, bool) {
	id := r.PathValue("id")
	entries, err := s.o.Repo.Backups(r.Context())
	if err != nil {
		s.fail(w, r, auth.Errorf(auth.CodeUnavailable, "The repository cannot be read: %v.", err).WithCause(err))
		return nil, false
	}
	for i := range entries {
		if entries[i].ID == id {
			return &entries[i], true
		}
	}
	writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("There is no backup %q in the repository (GET /api/v1/backups lists them).", id))
	return nil, false
}

// getBackup shows one backup with its last verification (GET /api/v1/backups/{id}).
func (s *Server) getBackup(w http.ResponseWriter, r *http.Request, p *Principal) {
	e, ok := s.entry(w, r)
	if !ok {
		return
	}
	out := backupOut(*e)
	if e.Manifest != nil {
		v, err := s.o.Repo.Verification(r.Context(), e.ID)
		if err != nil {
			s.log.Warn("cannot read a backup's verification record", "backup", e.ID, "err", err)
		}
		out.Verification = v
	}
	writeJSON(w, http.StatusOK, out)
}

// listJobs shows the daemon's jobs (GET /api/v1/jobs).
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, p *Principal) {
	jobs := s.o.Jobs.Status()
	if jobs == nil {
		jobs = []daemon.JobStatus{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": jobs})
}

// running reports whether the daemon is running job name.
func (s *Server) running(name string) bool {
	for _, j := range s.o.Jobs.Status() {
		if j.Name == name {
			return j.Running
		}
	}
	return false
}

// accepted is the answer to work started in the background.
type accepted struct {
	Status  string `json:"status"`
	Job     string `json:"job,omitempty"`
	Backup  string `json:"backup,omitempty"`
	Message string `json:"message"`
}

// takeBackup starts a backup (POST /api/v1/backups {"type": "physical"|"logical"}).
func (s *Server) takeBackup(w http.ResponseWriter, r *http.Request, p *Principal) {
	var in struct {
		Type backup.Type `json:"type"`
	}
	if err := decode(r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	job := map[backup.Type]string{backup.Physical: daemon.JobPhysical, backup.Logical: daemon.JobLogical}[in.Type]
	if job == "" {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf(`"type" %q: want physical or logical.`, in.Type))
		return
	}
	if s.running(job) {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("A %s backup is running already: follow it at GET /api/v1/jobs.", in.Type))
		return
	}
	s.audit(r.Context(), "backup.push.request", "", "ok", s.details(r, p, "type", string(in.Type)))
	s.background(func(ctx context.Context) {
		if err := s.o.Jobs.RunJob(ctx, job); err != nil {
			s.log.Warn("backup asked for through the API did not succeed", "job", job, "user", p.Email, "err", err)
		}
	})
	w.Header().Set("Location", "/api/v1/jobs")
	writeJSON(w, http.StatusAccepted, accepted{Status: "started", Job: job,
		Message: fmt.Sprintf("The %s backup has started, with the daemon's pre-checks and verification: follow it at GET /api/v1/jobs; it is listed at GET /api/v1/backups once complete.", in.Type)})
}

// verifyBackup starts verifying a backup (POST /api/v1/backups/{id}/verify).
func (s *Server) verifyBackup(w http.ResponseWriter, r *http.Request, p *Principal) {
	e, ok := s.entry(w, r)
	if !ok {
		return
	}
	if e.Status != backup.StatusComplete {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("Backup %s is %s: only complete backups can be verified.", e.ID, e.Status))
		return
	}
	id := e.ID
	s.audit(r.Context(), "backup.verify.request", id, "ok", s.details(r, p))
	s.background(func(ctx context.Context) {
		if err := s.o.Jobs.VerifyBackup(ctx, id); err != nil {
			s.log.Warn("verification asked for through the API failed", "backup", id, "user", p.Email, "err", err)
		}
	})
	w.Header().Set("Location", "/api/v1/backups/"+id)
	writeJSON(w, http.StatusAccepted, accepted{Status: "started", Backup: id,
		Message: "Verification has started (every object's checksum, then PostgreSQL's own check): its outcome shows at GET /api/v1/backups/" + id + " once done."})
}

// drillBackup starts a restore drill of a backup (POST /api/v1/backups/{id}/drill):
// restored into scratch, started, checked, removed.
func (s *Server) drillBackup(w http.ResponseWriter, r *http.Request, p *Principal) {
	e, ok := s.entry(w, r)
	if !ok {
		return
	}
	if e.Status != backup.StatusComplete {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("Backup %s is %s: only complete backups can be drilled.", e.ID, e.Status))
		return
	}
	job := daemon.JobDrillLogical
	if e.Manifest.Type == backup.Physical {
		job = daemon.JobDrillPhysical
	}
	if s.running(job) {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("A %s is running already: try again when it has finished (GET /api/v1/jobs).", job))
		return
	}
	id := e.ID
	s.audit(r.Context(), "backup.drill.request", id, "ok", s.details(r, p))
	s.background(func(ctx context.Context) {
		if err := s.o.Jobs.DrillBackup(ctx, id); err != nil {
			s.log.Warn("drill asked for through the API failed", "backup", id, "user", p.Email, "err", err)
		}
	})
	writeJSON(w, http.StatusAccepted, accepted{Status: "started", Backup: id, Job: job,
		Message: "The drill has started: the backup is restored into scratch, started and checked; the outcome is recorded with the backup's drills, audited, and alerted if it fails."})
}

// deleteBackup deletes a backup (DELETE /api/v1/backups/{id}).
func (s *Server) deleteBackup(w http.ResponseWriter, r *http.Request, p *Principal) {
	e, ok := s.entry(w, r)
	if !ok {
		s.audit(r.Context(), "backup.delete", r.PathValue("id"), "refused", s.details(r, p, "reason", "no such backup"))
		return
	}
	err := s.o.Repo.DeleteBackup(context.WithoutCancel(r.Context()), e.ID)
	d := s.details(r, p, "type", string(backupOut(*e).Type), "status", e.Status)
	if err != nil {
		d["error"] = err.Error()
		s.audit(r.Context(), "backup.delete", e.ID, "failed", d)
		s.fail(w, r, fmt.Errorf("delete backup %s: %w", e.ID, err))
		return
	}
	s.audit(r.Context(), "backup.delete", e.ID, "ok", d)
	writeJSON(w, http.StatusOK, map[string]string{"deleted": e.ID})
}

// prune applies retention (POST /api/v1/prune {"dry_run": bool}).
func (s *Server) prune(w http.ResponseWriter, r *http.Request, p *Principal) {
	var in struct {
		DryRun bool `json:"dry_run"`
	}
	if err := decode(r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.DryRun {
		if s.o.Pruner == nil {
			writeError(w, http.StatusConflict, "conflict", "This daemon has no retention policy to plan with.")
			return
		}
		plan, err := s.o.Pruner.Plan(r.Context(), s.o.Now())
		if err != nil {
			s.fail(w, r, auth.Errorf(auth.CodeUnavailable, "The retention plan could not be made: %v.", err).WithCause(err))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"dry_run": true, "plan": plan})
		return
	}
	// It deletes: as a deletion.
	if !s.authorize(w, r, p, access{perm: auth.PermBackupRestore, stepUp: true, audit: "backup.prune.request"}) {
		return
	}
	if s.running(daemon.JobPrune) {
		writeError(w, http.StatusConflict, "conflict", "Retention is running already: see GET /api/v1/jobs.")
		return
	}
	s.audit(r.Context(), "backup.prune.request", "", "ok", s.details(r, p))
	// The daemon's prune job: under its lease, audited as the daemon's.
	err := s.o.Jobs.RunJob(context.WithoutCancel(r.Context()), daemon.JobPrune)
	var st daemon.JobStatus
	for _, j := range s.o.Jobs.Status() {
		if j.Name == daemon.JobPrune {
			st = j
		}
	}
	switch {
	case err != nil && st.LastOutcome == daemon.OutcomeSkipped:
		writeError(w, http.StatusConflict, "conflict", "Another daemon is applying retention right now; nothing was done here.")
	case err != nil:
		s.fail(w, r, auth.Errorf(auth.CodeUnavailable, "Retention failed: %v. Nothing is lost; check with a dry run.", err).WithCause(err))
	default:
		writeJSON(w, http.StatusOK, map[string]any{"dry_run": false, "job": st})
	}
}

// atoiDefault parses s, or returns def for "".
func atoiDefault(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	return strconv.Atoi(s)
}
