// Package backupapi is the backup daemon's HTTP API: the backups (list, take,
// verify, drill, delete, prune) and restores, under /api/v1/, described by the
// OpenAPI document at /api/openapi.json.
//
// Every call is authenticated against the auth service (a staff member's session or
// an access token it issued, through an Authenticator) and authorized by permission:
// backup:read to look, backup:run to take, verify and drill backups, backup:restore
// to restore and delete. Restoring and deleting also need a second factor verified
// within the last five minutes (step-up). A restore into production needs a second
// staff member with backup:restore to approve it (the two-person rule); a restore
// into scratch (a new directory, a new database) runs for one person.
//
// Restore requests live in the repository (see RequestStore), so every daemon
// pointed at it sees them, and every request, approval, rejection, refusal and
// outcome is written to the repository's hash-chained audit log with who, from
// where and what.
package backupapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/daemon"
)

// Defaults for Options.
const (
	// DefaultStepUp is how recently a second factor must have been verified for a
	// restore, a deletion or an approval.
	DefaultStepUp = 5 * time.Minute
	// DefaultRequestTTL is how long a production restore waits for its approval.
	DefaultRequestTTL = time.Hour
)

// Principal is who makes a request, as the auth service vouches for them.
type Principal struct {
	UserID string
	Email  string
	Name   string
	// Type is the user type: staff, owner or provider. Only staff use the API.
	Type        string
	Permissions []string
	// MFAAt is when a second factor was last verified in the session the
	// credential belongs to (zero: never).
	MFAAt time.Time
}

// Can reports whether p holds permission perm.
func (p *Principal) Can(perm auth.Permission) bool {
	return p != nil && slices.Contains(p.Permissions, string(perm))
}

// Authenticator tells who makes a request, from its bearer token or its cookie.
type Authenticator interface {
	// Authenticate returns the request's principal. It returns an error wrapping
	// ErrUnauthenticated when the request carries no credential, or one the auth
	// service does not accept (expired, revoked, forged); a *Refusal when the auth
	// service refuses the person for a reason they can fix (MFA to set up); and
	// any other error when the auth service cannot be asked (the request is
	// refused then too: the API fails closed).
	Authenticate(r *http.Request) (*Principal, error)
}

// ErrUnauthenticated means a request has no credential the auth service accepts.
var ErrUnauthenticated = errors.New("not signed in")

// Refusal is the auth service's refusal of a signed-in person, passed on as 403
// with its code and message.
type Refusal struct {
	Code    string
	Message string
	// Location is where the person resolves it, if anywhere.
	Location string
}

func (e *Refusal) Error() string { return e.Code + ": " + e.Message }

// Jobs is the daemon, as the API runs its jobs; *daemon.Daemon is one.
type Jobs interface {
	// Status returns every job's status.
	Status() []daemon.JobStatus
	// RunJob runs job name now and returns its error.
	RunJob(ctx context.Context, name string) error
	// VerifyBackup verifies backup id, recording and auditing the outcome.
	VerifyBackup(ctx context.Context, id string) error
	// DrillBackup runs a restore drill of backup id, recording and auditing it.
	DrillBackup(ctx context.Context, id string) error
}

var _ Jobs = (*daemon.Daemon)(nil)

// Restorer carries out restores; the daemon's wiring implements it with the backup
// and postgres packages.
type Restorer interface {
	// Check reports why req (of backup m) could not run, before the request is
	// made: a target that is not configured, a scratch database that exists, a
	// production restore directory that is not empty. It sets req.Into to where
	// the restore will write when the requester did not say. Errors are
	// *auth.Error with CodeInvalid or CodeConflict and a message for the person.
	Check(ctx context.Context, req *RestoreRequest, m *backup.Manifest) error
	// Restore runs req (approved, if it needs it) and returns what it produced.
	// It must leave nothing that looks like a finished restore behind when it
	// fails.
	Restore(ctx context.Context, req *RestoreRequest, m *backup.Manifest) (*Result, error)
}

// Options configure the API. Auth, Repo, Jobs and Restorer are required.
type Options struct {
	Auth Authenticator
	// Repo is the repository: its backups, the restore requests and the audit log.
	Repo *backup.Repository
	Jobs Jobs
	// Pruner plans retention, for prune's dry runs (nil: no dry runs).
	Pruner   *backup.Pruner
	Restorer Restorer
	// AuthURL is the auth service's public URL, where people verify a second
	// factor again (step-up).
	AuthURL string
	// StepUpReturnTo is where the auth service sends the browser after a step-up
	// (the daemon's sign-in, so the browser gets a credential carrying it).
	StepUpReturnTo string
	// Host and PID identify this daemon in the audit log and on the restores it runs.
	Host string
	PID  int
	// StepUp is how recently a second factor must have been verified for restores,
	// deletions and approvals (default DefaultStepUp).
	StepUp time.Duration
	// RequestTTL is how long a production restore waits for approval (default
	// DefaultRequestTTL).
	RequestTTL time.Duration
	// ClientIP returns the address a request comes from, for the audit log (nil:
	// the connection's peer; set it behind a reverse proxy).
	ClientIP func(*http.Request) string
	Now      func() time.Time
	Logger   *slog.Logger
}

// Server serves the API. Create it with New; Close it to wait for the restores and
// jobs it started.
type Server struct {
	o        Options
	store    *RequestStore
	mux      *http.ServeMux
	handler  http.Handler
	patterns []string
	log      *slog.Logger

	// ctx is what background work (restores, triggered jobs) runs in; Close
	// cancels it once its grace ends.
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// refused is when an anonymous refusal from an address was last audited,
	// so that a flood of unauthenticated calls cannot flood the audit log.
	refused map[string]time.Time
}

// refusalAuditInterval is how often anonymous refusals from one address are
// audited; the others are logged.
const refusalAuditInterval = time.Minute

// ErrClosed is the cause of the cancellation of restores still running when Close
// gives up waiting.
var ErrClosed = errors.New("the daemon is shutting down")

// New checks o and returns the API.
func New(o Options) (*Server, error) {
	var errs []error
	if o.Auth == nil {
		errs = append(errs, errors.New("no authenticator"))
	}
	if o.Repo == nil {
		errs = append(errs, errors.New("no repository"))
	}
	if o.Jobs == nil {
		errs = append(errs, errors.New("no daemon"))
	}
	if o.Restorer == nil {
		errs = append(errs, errors.New("no restorer"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("backup api: %w", err)
	}
	if o.StepUp <= 0 {
		o.StepUp = DefaultStepUp
	}
	if o.RequestTTL <= 0 {
		o.RequestTTL = DefaultRequestTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ClientIP == nil {
		o.ClientIP = peerIP
	}
	s := &Server{o: o, store: &RequestStore{Repo: o.Repo}, mux: http.NewServeMux(), log: o.Logger, refused: map[string]time.Time{}}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.routes()
	s.handler = http.NewCrossOriginProtection().Handler(s.mux)
	return s, nil
}

// Handler returns the API's handler: mount it at /api/.
func (s *Server) Handler() http.Handler { return s.handler }

// Patterns lists the routes' patterns ("GET /api/v1/backups"...), for tests.
func (s *Server) Patterns() []string { return slices.Clone(s.patterns) }

// Store returns the restore requests' store.
func (s *Server) Store() *RequestStore { return s.store }

// Close waits for the restores and jobs the API started until ctx ends, then
// cancels them (ErrClosed) and waits for them to end: an interrupted restore is
// recorded as failed.
func (s *Server) Close(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("shutting down: cancelling the restores and jobs the API started")
		s.cancel(ErrClosed)
		<-done
	}
	s.cancel(ErrClosed)
}

// go runs fn in the background, in the server's context.
func (s *Server) background(fn func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn(s.ctx)
	}()
}

// access is what a route needs of its caller.
type access struct {
	perm auth.Permission
	// stepUp: a second factor verified within Options.StepUp.
	stepUp bool
	// audit names the action refusals are audited as ("": not audited, only
	// logged).
	audit string
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, p *Principal)

func (s *Server) handle(pattern string, a access, h handlerFunc) {
	s.patterns = append(s.patterns, pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		p, ok := s.authenticate(w, r, a.audit)
		if !ok || !s.authorize(w, r, p, a) {
			return
		}
		h(w, r, p)
	})
}

func (s *Server) routes() {
	read := access{perm: auth.PermBackupRead}
	run := access{perm: auth.PermBackupRun}
	s.mux.HandleFunc("GET /api/openapi.json", serveOpenAPI)
	s.handle("GET /api/v1/backups", read, s.listBackups)
	s.handle("POST /api/v1/backups", run, s.takeBackup)
	s.handle("GET /api/v1/backups/{id}", read, s.getBackup)
	s.handle("DELETE /api/v1/backups/{id}", access{perm: auth.PermBackupRestore, stepUp: true, audit: "backup.delete"}, s.deleteBackup)
	s.handle("POST /api/v1/backups/{id}/verify", run, s.verifyBackup)
	s.handle("POST /api/v1/backups/{id}/drill", run, s.drillBackup)
	s.handle("POST /api/v1/backups/{id}/restore", access{perm: auth.PermBackupRestore, stepUp: true, audit: "restore.request"}, s.requestRestore)
	// A dry run deletes nothing: the handler asks for more when it is not one.
	s.handle("POST /api/v1/prune", access{perm: auth.PermBackupRead, audit: "backup.prune.request"}, s.prune)
	s.handle("GET /api/v1/jobs", read, s.listJobs)
	s.handle("GET /api/v1/restores", read, s.listRestores)
	s.handle("GET /api/v1/restores/{id}", read, s.getRestore)
	s.handle("POST /api/v1/restores/{id}/approve", access{perm: auth.PermBackupRestore, stepUp: true, audit: "restore.approve"}, s.approveRestore)
	s.handle("POST /api/v1/restores/{id}/reject", access{perm: auth.PermBackupRestore, audit: "restore.reject"}, s.rejectRestore)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "There is no such API route: see /api/openapi.json.")
	})
}

// authenticate returns the request's principal, or answers 401 (or 403, 503) and
// reports false. Refusals on routes that audit them are audited.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, action string) (*Principal, bool) {
	p, err := s.o.Auth.Authenticate(r)
	var ref *Refusal
	switch {
	case err == nil && p != nil:
		return p, true
	case err == nil || errors.Is(err, ErrUnauthenticated):
		s.refuseAnonymous(r, action, "not signed in, or the credential is not accepted")
		w.Header().Set("WWW-Authenticate", `Bearer realm="hestami-backup"`)
		writeError(w, http.StatusUnauthorized, "unauthorized",
			"Sign in first: send an access token from the auth service (Authorization: Bearer ...), or sign in to the status page.")
	case errors.As(err, &ref):
		s.refuseAnonymous(r, action, "the auth service refused: "+ref.Code)
		writeJSON(w, http.StatusForbidden, apiError{Error: errorBody{Code: ref.Code, Message: ref.Message}, Location: ref.Location})
	default:
		s.log.Error("cannot authenticate a request: the auth service is unreachable", "method", r.Method, "path", r.URL.Path, "err", err)
		s.refuseAnonymous(r, action, "the auth service could not be asked")
		writeError(w, http.StatusServiceUnavailable, "unavailable",
			"The auth service cannot be reached to check who you are, so nothing was done. Try again in a minute; if it persists, check the auth service.")
	}
	return nil, false
}

// authorize checks p against a, answering 403 and reporting false when p falls short.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, p *Principal, a access) bool {
	switch {
	case p.Type != string(auth.TypeStaff):
		s.refuse(r, p, a.audit, "not a staff member")
		writeError(w, http.StatusForbidden, "forbidden", "The backup API is for staff only.")
		return false
	case !p.Can(a.perm):
		s.refuse(r, p, a.audit, "lacks permission "+string(a.perm))
		writeError(w, http.StatusForbidden, "forbidden",
			fmt.Sprintf("This needs the %s permission, which your roles do not grant. Ask an administrator for the staff:ops role.", a.perm))
		return false
	case a.stepUp && !s.freshMFA(p):
		why := "no second factor verified in this session"
		if !p.MFAAt.IsZero() {
			why = fmt.Sprintf("second factor verified %s ago, more than %s", s.o.Now().Sub(p.MFAAt).Round(time.Second), s.o.StepUp)
		}
		s.refuse(r, p, a.audit, "step-up required: "+why)
		writeJSON(w, http.StatusForbidden, apiError{
			Error: errorBody{Code: "step_up_required", Message: fmt.Sprintf(
				"This needs a second factor verified within the last %s (%s). Verify one at the auth service (step_up.location), "+
					"then get a new access token (or sign in to the status page again) and retry.", s.o.StepUp, why)},
			StepUp: &stepUpJSON{Location: s.stepUpURL(), WithinSeconds: int(s.o.StepUp / time.Second)},
		})
		return false
	}
	return true
}

// freshMFA reports whether p verified a second factor within the step-up window.
func (s *Server) freshMFA(p *Principal) bool {
	if p.MFAAt.IsZero() {
		return false
	}
	now := s.o.Now()
	return !p.MFAAt.After(now.Add(time.Minute)) && now.Sub(p.MFAAt) <= s.o.StepUp
}

// stepUpURL is the auth service's step-up page.
func (s *Server) stepUpURL() string {
	if s.o.AuthURL == "" {
		return ""
	}
	q := url.Values{}
	if s.o.StepUpReturnTo != "" {
		q.Set("return_to", s.o.StepUpReturnTo)
	}
	q.Set("purpose", "step-up")
	return strings.TrimRight(s.o.AuthURL, "/") + "/mfa/challenge?" + q.Encode()
}

// refuse audits (when action is set) and logs a refusal of a signed-in person.
func (s *Server) refuse(r *http.Request, p *Principal, action, reason string) {
	s.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "user", p.UserID, "email", p.Email, "ip", s.o.ClientIP(r), "reason", reason)
	if action == "" {
		return
	}
	s.audit(r.Context(), action, r.PathValue("id"), "refused", s.details(r, p, "reason", reason))
}

// refuseAnonymous audits (when action is set, at most once a minute per address)
// and logs a refusal of a request nobody is signed in to.
func (s *Server) refuseAnonymous(r *http.Request, action, reason string) {
	ip := s.o.ClientIP(r)
	s.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "ip", ip, "reason", reason)
	if action == "" {
		return
	}
	now := s.o.Now()
	s.mu.Lock()
	last, seen := s.refused[ip]
	if seen && now.Sub(last) < refusalAuditInterval {
		s.mu.Unlock()
		return
	}
	if len(s.refused) > 10000 {
		for k, t := range s.refused {
			if now.Sub(t) >= refusalAuditInterval {
				delete(s.refused, k)
			}
		}
	}
	s.refused[ip] = now
	s.mu.Unlock()
	s.audit(r.Context(), action, r.PathValue("id"), "refused", s.details(r, nil, "reason", reason,
		"note", fmt.Sprintf("anonymous refusals from one address are audited at most once per %s", refusalAuditInterval)))
}

// details are the audit details of a request by p (nil: nobody signed in), plus kv.
func (s *Server) details(r *http.Request, p *Principal, kv ...string) map[string]string {
	d := map[string]string{"via": "api", "ip": s.o.ClientIP(r), "user_agent": truncate(r.UserAgent(), 200)}
	if p != nil {
		d["user_id"], d["email"] = p.UserID, p.Email
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			d[kv[i]] = kv[i+1]
		}
	}
	return d
}

// actor names p in the audit log.
func actor(p *Principal) string {
	switch {
	case p == nil:
		return "anonymous"
	case p.Email != "":
		return p.Email
	}
	return "user:" + p.UserID
}

// audit appends an entry to the repository's audit log; a failure is logged (the
// action's own outcome does not change).
func (s *Server) audit(ctx context.Context, action, target, outcome string, details map[string]string) {
	s.auditAs(ctx, details["email"], action, target, outcome, details)
}

func (s *Server) auditAs(ctx context.Context, who, action, target, outcome string, details map[string]string) {
	if who == "" {
		who = "anonymous"
		if id := details["user_id"]; id != "" {
			who = "user:" + id
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	e := backup.AuditEntry{Time: s.o.Now().UTC(), Action: action, Actor: who, Host: s.o.Host, Target: target, Outcome: outcome, Details: details}
	if _, err := s.o.Repo.Audit(ctx, e); err != nil {
		s.log.Error("could not write the audit log", "action", action, "target", target, "outcome", outcome, "err", err)
	}
}

// person is p making request r, for the restore requests.
func (s *Server) person(r *http.Request, p *Principal) Person {
	return Person{UserID: p.UserID, Email: p.Email, Name: p.Name, IP: s.o.ClientIP(r), UserAgent: truncate(r.UserAgent(), 200)}
}

func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// apiError is the body of every error answer.
type apiError struct {
	Error errorBody `json:"error"`
	// StepUp says where to verify a second factor (code step_up_required).
	StepUp *stepUpJSON `json:"step_up,omitempty"`
	// Location is where to resolve an auth service refusal.
	Location string `json:"location,omitempty"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type stepUpJSON struct {
	Location      string `json:"location,omitempty"`
	WithinSeconds int    `json:"within_seconds"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, apiError{Error: errorBody{Code: code, Message: message}})
}

// fail answers err: an *auth.Error with its code and message, anything else as a
// 500 whose details go to the log only.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := auth.ErrorCode(err)
	status := map[auth.Code]int{
		auth.CodeInvalid: http.StatusBadRequest, auth.CodeNotFound: http.StatusNotFound, auth.CodeConflict: http.StatusConflict,
		auth.CodeUnauthorized: http.StatusUnauthorized, auth.CodeForbidden: http.StatusForbidden,
		auth.CodeRateLimited: http.StatusTooManyRequests, auth.CodeUnavailable: http.StatusServiceUnavailable,
	}[code]
	if status == 0 {
		status, code = http.StatusInternalServerError, auth.CodeInternal
	}
	msg := auth.ErrorMessage(err)
	if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		if code == auth.CodeInternal {
			msg = "Something went wrong in the backup daemon; its log says what. Nothing was changed unless the answer said so."
		}
	}
	writeError(w, status, string(code), msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"Something went wrong in the backup daemon."}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// maxBody bounds request bodies.
const maxBody = 64 << 10

// decode reads r's JSON body into v; an empty body leaves v as it is.
func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return auth.Errorf(auth.CodeInvalid, "The request body could not be read.").WithCause(err)
	}
	if len(b) > maxBody {
		return auth.Errorf(auth.CodeInvalid, "The request body is larger than %d KiB.", maxBody>>10)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return auth.Errorf(auth.CodeInvalid, "The request body is not the JSON this route takes (%v): see /api/openapi.json.", err)
	}
	return nil
}
