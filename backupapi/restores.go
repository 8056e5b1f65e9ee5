package backupapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/backup"
)

// restoreJSON is a restore request as the API shows it.
type restoreJSON struct {
	RestoreRequest
	Status   string    `json:"status"`
	Decision *Decision `json:"decision,omitempty"`
	Run      *Run      `json:"run,omitempty"`
	Outcome  *Outcome  `json:"outcome,omitempty"`
	// Message says what happens next.
	Message string `json:"message,omitempty"`
}

func (s *Server) restoreOut(st *RestoreState) restoreJSON {
	out := restoreJSON{RestoreRequest: st.Request, Status: st.Status(s.o.Now()), Decision: st.Decision, Run: st.Run, Outcome: st.Outcome}
	switch out.Status {
	case StatusPending:
		out.Message = fmt.Sprintf("Waiting for a second staff member with backup:restore (not %s) to approve it (POST /api/v1/restores/%s/approve) before %s; it runs once approved.",
			orID(st.Request.RequestedBy), st.Request.ID, st.Request.Expires.UTC().Format("2006-01-02 15:04:05 UTC"))
	case StatusExpired:
		out.Message = "Nobody approved it in time: make a new request if it is still needed."
	case StatusRunning:
		out.Message = fmt.Sprintf("Restoring on %s since %s: GET /api/v1/restores/%s shows the outcome once done.", st.Run.Host, st.Run.Started.UTC().Format("15:04:05 UTC"), st.Request.ID)
	case StatusSucceeded:
		if r := st.Outcome.Result; r != nil {
			out.Message = r.Next
		}
	}
	return out
}

func orID(p Person) string {
	if p.Email != "" {
		return p.Email
	}
	return p.UserID
}

// databaseName accepts names a scratch database may have: lower-case letters,
// digits and underscores, as PostgreSQL folds unquoted names, at most 63 bytes.
func databaseName(s string) bool {
	if s == "" || len(s) > 63 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// restoreInput is the body of POST /api/v1/backups/{id}/restore.
type restoreInput struct {
	Target   string    `json:"target"`
	Database string    `json:"database"`
	Into     string    `json:"into"`
	Recovery *Recovery `json:"recovery"`
	Reason   string    `json:"reason"`
}

// requestRestore asks for a restore (POST /api/v1/backups/{id}/restore): into
// scratch it starts at once; into production it waits for a second person.
func (s *Server) requestRestore(w http.ResponseWriter, r *http.Request, p *Principal) {
	ctx := r.Context()
	id := r.PathValue("id")
	var in restoreInput
	d := s.details(r, p)
	refuse := func(err error) {
		d["reason"] = auth.ErrorMessage(err)
		s.audit(ctx, "restore.request", id, "refused", d)
		s.fail(w, r, err)
	}
	if err := decode(r, &in); err != nil {
		refuse(err)
		return
	}
	d["target"], d["database"], d["into"] = in.Target, in.Database, in.Into
	if in.Target != TargetScratch && in.Target != TargetProduction {
		refuse(auth.Errorf(auth.CodeInvalid, `"target" %q: want scratch (a new directory or database, for one person) or production (needs a second person's approval).`, in.Target))
		return
	}
	m, err := s.o.Repo.Manifest(ctx, id)
	switch {
	case errors.Is(err, backup.ErrBackupNotFound):
		refuse(auth.Errorf(auth.CodeNotFound, "There is no complete backup %q in the repository (GET /api/v1/backups lists them).", id).WithCause(err))
		return
	case err != nil:
		refuse(auth.Errorf(auth.CodeConflict, "Backup %s cannot be read: %v. Check it with hestami backup verify %s.", id, err, id).WithCause(err))
		return
	}
	now := s.o.Now()
	req := &RestoreRequest{ID: NewRequestID(now), Backup: m.ID, Type: m.Type, Target: in.Target, Database: in.Database, Into: in.Into,
		Recovery: in.Recovery, Reason: truncate(strings.TrimSpace(in.Reason), 500), RequestedBy: s.person(r, p), Created: now.UTC(),
		TwoPerson: in.Target == TargetProduction}
	if req.TwoPerson {
		req.Expires = now.Add(s.o.RequestTTL).UTC()
	}
	if err := checkRequest(req, m); err != nil {
		refuse(err)
		return
	}
	if err := s.o.Restorer.Check(ctx, req, m); err != nil {
		refuse(err)
		return
	}
	if err := s.store.Create(ctx, req); err != nil {
		refuse(fmt.Errorf("record the restore request: %w", err))
		return
	}
	st := &RestoreState{Request: *req}
	status := st.Status(now)
	s.audit(ctx, "restore.request", req.Backup, "ok", s.requestDetails(r, p, req, "status", status))
	if !req.TwoPerson {
		if err := s.start(ctx, st); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	w.Header().Set("Location", "/api/v1/restores/"+req.ID)
	writeJSON(w, http.StatusAccepted, s.restoreOut(st))
}

// checkRequest checks what a request asks of backup m, filling in the database of
// a logical backup with one.
func checkRequest(req *RestoreRequest, m *backup.Manifest) error {
	if m.Type == backup.Physical {
		if req.Database != "" || req.Into != "" {
			return auth.Errorf(auth.CodeInvalid, `Backup %s is a physical backup of the whole cluster: "database" and "into" are for logical backups.`, m.ID)
		}
		t, err := req.Recovery.Target()
		if err != nil {
			return auth.Errorf(auth.CodeInvalid, "%s", sentence(err))
		}
		if err := backup.CheckPrecedes(m, t); err != nil {
			return auth.Errorf(auth.CodeInvalid, "%s", sentence(err))
		}
		if req.Recovery != nil && *req.Recovery == (Recovery{}) {
			req.Recovery = nil
		}
		return nil
	}
	if req.Recovery != nil && *req.Recovery != (Recovery{}) {
		return auth.Errorf(auth.CodeInvalid, "Backup %s is a logical backup: it restores as it was when it was taken. A recovery target needs a physical backup.", m.ID)
	}
	req.Recovery = nil
	if req.Database == "" {
		if len(m.Databases) != 1 {
			return auth.Errorf(auth.CodeInvalid, `Backup %s holds the databases %s: say which in "database".`, m.ID, strings.Join(m.Databases, ", "))
		}
		req.Database = m.Databases[0]
	}
	if !slices.Contains(m.Databases, req.Database) {
		return auth.Errorf(auth.CodeInvalid, "Backup %s has no database %q; it holds %s.", m.ID, req.Database, strings.Join(m.Databases, ", "))
	}
	switch {
	case req.Target == TargetProduction && req.Into != "":
		return auth.Errorf(auth.CodeInvalid, `A production restore goes into the production database itself: leave "into" out.`)
	case req.Target == TargetScratch && req.Into != "" && !databaseName(req.Into):
		return auth.Errorf(auth.CodeInvalid, `"into" %q: want a new database name of lower-case letters, digits and underscores (at most 63).`, req.Into)
	}
	return nil
}

// requestDetails are the audit details of request req by p.
func (s *Server) requestDetails(r *http.Request, p *Principal, req *RestoreRequest, kv ...string) map[string]string {
	target := ""
	if t, err := req.Recovery.Target(); err == nil && req.Type == backup.Physical {
		target = t.String()
	}
	d := s.details(r, p, append([]string{"request", req.ID, "backup", req.Backup, "type", string(req.Type), "target", req.Target,
		"database", req.Database, "into", req.Into, "recovery_target", target, "reason", req.Reason,
		"requested_by", orID(req.RequestedBy)}, kv...)...)
	if req.TwoPerson {
		d["two_person"] = "true"
	}
	return d
}

// listRestores lists the newest restore requests (GET /api/v1/restores).
func (s *Server) listRestores(w http.ResponseWriter, r *http.Request, p *Principal) {
	limit, err := atoiDefault(r.URL.Query().Get("limit"), 100)
	if err != nil || limit < 1 || limit > 1000 {
		writeError(w, http.StatusBadRequest, "invalid", "limit: want a number from 1 to 1000.")
		return
	}
	sts, err := s.store.List(r.Context(), limit)
	if err != nil {
		s.fail(w, r, auth.Errorf(auth.CodeUnavailable, "The restore requests cannot be read from the repository: %v.", err).WithCause(err))
		return
	}
	out := make([]restoreJSON, 0, len(sts))
	for _, st := range sts {
		out = append(out, s.restoreOut(st))
	}
	writeJSON(w, http.StatusOK, map[string]any{"restores": out})
}

// request returns the restore request of the path, or answers 404.
func (s *Server) request(w http.ResponseWriter, r *http.Request) (*RestoreState, bool) {
	st, err := s.store.Get(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNoRequest):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("There is no restore request %q (GET /api/v1/restores lists them).", r.PathValue("id")))
		return nil, false
	case err != nil:
		s.fail(w, r, auth.Errorf(auth.CodeUnavailable, "The restore request cannot be read from the repository: %v.", err).WithCause(err))
		return nil, false
	}
	return st, true
}

// getRestore shows a restore request (GET /api/v1/restores/{id}).
func (s *Server) getRestore(w http.ResponseWriter, r *http.Request, p *Principal) {
	if st, ok := s.request(w, r); ok {
		writeJSON(w, http.StatusOK, s.restoreOut(st))
	}
}

// decide checks that p may decide on the request of the path, answering (and
// auditing the refusal as action) when not.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, p *Principal, action string) (*RestoreState, string, bool) {
	var in struct {
		Reason string `json:"reason"`
	}
	st, ok := s.request(w, r)
	if !ok {
		s.audit(r.Context(), action, r.PathValue("id"), "refused", s.details(r, p, "reason", "no such restore request"))
		return nil, "", false
	}
	req := &st.Request
	refuse := func(status int, code, reason, msg string) {
		s.audit(r.Context(), action, req.Backup, "refused", s.requestDetails(r, p, req, "reason", reason, "status", st.Status(s.o.Now())))
		writeError(w, status, code, msg)
	}
	if err := decode(r, &in); err != nil {
		refuse(http.StatusBadRequest, "invalid", "bad request body", auth.ErrorMessage(err))
		return nil, "", false
	}
	switch status := st.Status(s.o.Now()); status {
	case StatusPending:
	case StatusExpired:
		refuse(http.StatusConflict, "expired", "expired",
			fmt.Sprintf("Restore request %s expired at %s without an approval: make a new one if it is still needed.", req.ID, req.Expires.UTC().Format("2006-01-02 15:04:05 UTC")))
		return nil, "", false
	default:
		what := status
		if st.Decision != nil {
			what += " by " + orID(st.Decision.By)
		}
		refuse(http.StatusConflict, "conflict", "already "+status,
			fmt.Sprintf("Restore request %s is %s: only pending requests can be approved or rejected.", req.ID, what))
		return nil, "", false
	}
	if action == "restore.approve" && req.RequestedBy.UserID == p.UserID {
		refuse(http.StatusForbidden, "self_approval", "the requester tried to approve their own request",
			"The two-person rule: a production restore needs the approval of a staff member other than the one who asked for it. Ask a colleague with backup:restore to approve it.")
		return nil, "", false
	}
	return st, truncate(strings.TrimSpace(in.Reason), 500), true
}

// approveRestore approves a pending production restore and starts it (POST
// /api/v1/restores/{id}/approve). The requester cannot approve their own.
func (s *Server) approveRestore(w http.ResponseWriter, r *http.Request, p *Principal) {
	st, reason, ok := s.decide(w, r, p, "restore.approve")
	if !ok {
		return
	}
	if !s.record(w, r, p, st, &Decision{Approved: true, By: s.person(r, p), Time: s.o.Now().UTC(), Reason: reason}, "restore.approve") {
		return
	}
	if err := s.start(r.Context(), st); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, s.restoreOut(st))
}

// rejectRestore rejects a pending production restore, or lets its requester
// withdraw it (POST /api/v1/restores/{id}/reject).
func (s *Server) rejectRestore(w http.ResponseWriter, r *http.Request, p *Principal) {
	st, reason, ok := s.decide(w, r, p, "restore.reject")
	if !ok {
		return
	}
	if !s.record(w, r, p, st, &Decision{Approved: false, By: s.person(r, p), Time: s.o.Now().UTC(), Reason: reason}, "restore.reject") {
		return
	}
	writeJSON(w, http.StatusOK, s.restoreOut(st))
}

// record stores decision d on st, answering when another decision came first.
func (s *Server) record(w http.ResponseWriter, r *http.Request, p *Principal, st *RestoreState, d *Decision, action string) bool {
	req := &st.Request
	err := s.store.Decide(r.Context(), req.ID, d)
	if errors.Is(err, ErrExists) {
		s.audit(r.Context(), action, req.Backup, "refused", s.requestDetails(r, p, req, "reason", "decided by someone else at the same moment"))
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("Restore request %s was decided by someone else at the same moment: GET /api/v1/restores/%s shows how.", req.ID, req.ID))
		return false
	}
	if err != nil {
		s.fail(w, r, err)
		return false
	}
	st.Decision = d
	s.audit(r.Context(), action, req.Backup, "ok", s.requestDetails(r, p, req, "decided_by", orID(d.By), "decision_reason", d.Reason))
	return true
}

// start claims st for this daemon and runs it in the background.
func (s *Server) start(ctx context.Context, st *RestoreState) error {
	run := &Run{Host: s.o.Host, PID: s.o.PID, Started: s.o.Now().UTC()}
	if err := s.store.Claim(ctx, st.Request.ID, run); errors.Is(err, ErrExists) {
		return auth.Errorf(auth.CodeConflict, "Restore request %s is being run by another daemon already.", st.Request.ID)
	} else if err != nil {
		return fmt.Errorf("start restore %s: %w", st.Request.ID, err)
	}
	st.Run = run
	req, decision := st.Request, st.Decision
	s.background(func(ctx context.Context) { s.runRestore(ctx, req, decision) })
	return nil
}

// runRestore restores req and records and audits the outcome.
func (s *Server) runRestore(ctx context.Context, req RestoreRequest, decision *Decision) {
	log := s.log.With("request", req.ID, "backup", req.Backup, "target", req.Target)
	log.Info("restore started", "requested_by", orID(req.RequestedBy))
	m, err := s.o.Repo.Manifest(ctx, req.Backup)
	var res *Result
	if err == nil {
		res, err = s.o.Restorer.Restore(ctx, &req, m)
	}
	if err != nil && errors.Is(context.Cause(ctx), ErrClosed) {
		err = fmt.Errorf("%w; interrupted: %w", err, ErrClosed)
	}
	out := &Outcome{OK: err == nil, Finished: s.o.Now().UTC(), Result: res}
	kv := []string{"outcome_of", "restore request " + req.ID}
	if decision != nil {
		kv = append(kv, "approved_by", orID(decision.By))
	}
	location := req.Into
	if err != nil {
		out.Error, out.Result = err.Error(), nil
		kv = append(kv, "error", err.Error())
		log.Error("restore failed", "err", err)
	} else {
		location = res.Location
		kv = append(kv, "checks", strings.Join(res.Checks, "; "))
		log.Info("restore done", "location", res.Location)
	}
	fctx := context.WithoutCancel(ctx)
	action := "restore"
	if req.Type == backup.Logical {
		action = "restore.logical"
	}
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	d := map[string]string{"via": "api", "request": req.ID, "backup": req.Backup, "type": string(req.Type), "target": req.Target,
		"database": req.Database, "user_id": req.RequestedBy.UserID, "email": req.RequestedBy.Email, "ip": req.RequestedBy.IP}
	if t, terr := req.Recovery.Target(); terr == nil && req.Type == backup.Physical {
		d["recovery_target"] = t.String()
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			d[kv[i]] = truncate(kv[i+1], 2000)
		}
	}
	for k, v := range d {
		if v == "" {
			delete(d, k)
		}
	}
	// The audit entry first: whoever sees the outcome (a poller, a test) can
	// then rely on the audit log having it.
	s.auditAs(fctx, orID(req.RequestedBy), action, location, outcome, d)
	if ferr := s.store.Finish(fctx, req.ID, out); ferr != nil {
		log.Error("could not record the restore's outcome in the repository", "err", ferr)
	}
}

// Recover records as failed the restores a daemon on this host was running when
// its process ended (a crash, a kill -9): they would otherwise show as running for
// ever. Call it once when the daemon starts.
func (s *Server) Recover(ctx context.Context) error {
	sts, err := s.store.List(ctx, 1000)
	if err != nil {
		return err
	}
	for _, st := range sts {
		if st.Run == nil || st.Outcome != nil || st.Run.Host != s.o.Host || st.Run.PID == s.o.PID {
			continue
		}
		req := st.Request
		msg := fmt.Sprintf("interrupted: the daemon on %s (pid %d) stopped while it ran this restore; whatever it wrote to %s is incomplete: remove it, then make a new request",
			st.Run.Host, st.Run.PID, orDash(req.Into))
		if err := s.store.Finish(ctx, req.ID, &Outcome{OK: false, Finished: s.o.Now().UTC(), Error: msg}); err != nil && !errors.Is(err, ErrExists) {
			return err
		}
		s.auditAs(ctx, orID(req.RequestedBy), "restore", req.Into, "failed", map[string]string{"via": "api", "request": req.ID,
			"backup": req.Backup, "target": req.Target, "error": msg})
		s.log.Warn("a restore was interrupted when the daemon stopped; recorded as failed", "request", req.ID, "pid", st.Run.PID)
	}
	return nil
}

// sentence is err's message as a sentence.
func sentence(err error) string {
	s := err.Error()
	if s != "" {
		s = strings.ToUpper(s[:1]) + s[1:]
	}
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "its target"
	}
	return s
}
