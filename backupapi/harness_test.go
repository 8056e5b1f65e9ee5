package backupapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/backupapi"
	"github.com/hestami/hestami/daemon"
	"github.com/hestami/hestami/file"
	"github.com/hestami/hestami/zstd"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// tokens is an Authenticator over a fixed table of bearer tokens.
type tokens struct {
	mu   sync.Mutex
	byID map[string]*backupapi.Principal
	// down makes every call fail as if the auth service were unreachable.
	down bool
}

func (a *tokens) Authenticate(r *http.Request) (*backupapi.Principal, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		return nil, errors.New("dial tcp 127.0.0.1:1: connection refused")
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, backupapi.ErrUnauthenticated
	}
	p := a.byID[tok]
	if p == nil {
		return nil, backupapi.ErrUnauthenticated
	}
	c := *p
	return &c, nil
}

func (a *tokens) set(tok string, p *backupapi.Principal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byID[tok] = p
}

// jobs is the daemon as the API sees it, recording what it was asked to do.
type jobs struct {
	mu       sync.Mutex
	ran      []string
	verified []string
	drilled  []string
	running  map[string]bool
	done     chan string
}

func newJobs() *jobs { return &jobs{running: map[string]bool{}, done: make(chan string, 10)} }

func (j *jobs) Status() []daemon.JobStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []daemon.JobStatus
	for _, name := range []string{daemon.JobPhysical, daemon.JobLogical, daemon.JobPrune, daemon.JobDrillPhysical} {
		out = append(out, daemon.JobStatus{Name: name, Running: j.running[name], LastOutcome: daemon.OutcomeOK})
	}
	return out
}

func (j *jobs) RunJob(ctx context.Context, name string) error {
	j.mu.Lock()
	j.ran = append(j.ran, name)
	j.mu.Unlock()
	j.done <- "job:" + name
	return nil
}

func (j *jobs) VerifyBackup(ctx context.Context, id string) error {
	j.mu.Lock()
	j.verified = append(j.verified, id)
	j.mu.Unlock()
	j.done <- "verify:" + id
	return nil
}

func (j *jobs) DrillBackup(ctx context.Context, id string) error {
	j.mu.Lock()
	j.drilled = append(j.drilled, id)
	j.mu.Unlock()
	j.done <- "drill:" + id
	return nil
}

// restorer pretends to restore, counting the restores it ran.
type restorer struct {
	mu    sync.Mutex
	ran   []string
	fail  error
	block chan struct{} // nil: restores end at once
}

func (f *restorer) Check(ctx context.Context, req *backupapi.RestoreRequest, m *backup.Manifest) error {
	if req.Into == "" {
		req.Into = "/restores/" + req.ID
	}
	if req.Into == "exists" {
		return auth.Errorf(auth.CodeConflict, "Database %q exists already.", req.Into)
	}
	return nil
}

func (f *restorer) Restore(ctx context.Context, req *backupapi.RestoreRequest, m *backup.Manifest) (*backupapi.Result, error) {
	f.mu.Lock()
	f.ran = append(f.ran, req.ID)
	block, fail := f.block, f.fail
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	if fail != nil {
		return nil, fail
	}
	return &backupapi.Result{Location: req.Into, Checks: []string{"checksums: ok"}, Next: "Look at it."}, nil
}

func (f *restorer) runs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ran...)
}

// harness is the API over a repository on disk with two backups.
type harness struct {
	t        *testing.T
	srv      *httptest.Server
	api      *backupapi.Server
	repo     *backup.Repository
	auth     *tokens
	jobs     *jobs
	restorer *restorer
	clock    *clock
	physical string // a physical backup's id
	logical  string // a logical backup's id (databases app and crm)
}

var (
	// The people: two operators, a reader, an owner.
	alice  = &backupapi.Principal{UserID: "u-alice", Email: "alice@hestami.example", Type: "staff", Permissions: []string{"backup:read", "backup:restore", "backup:run"}}
	bob    = &backupapi.Principal{UserID: "u-bob", Email: "bob@hestami.example", Type: "staff", Permissions: []string{"backup:read", "backup:restore", "backup:run"}}
	reader = &backupapi.Principal{UserID: "u-carol", Email: "carol@hestami.example", Type: "staff", Permissions: []string{"backup:read"}}
	owner  = &backupapi.Principal{UserID: "u-olga", Email: "olga@example.com", Type: "owner", Permissions: []string{"marketplace:use", "backup:read"}}
)

func newHarness(t *testing.T) *harness {
	t.Helper()
	st, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	repo := &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}, Now: clk.Now}
	h := &harness{t: t, repo: repo, clock: clk, jobs: newJobs(), restorer: &restorer{},
		auth: &tokens{byID: map[string]*backupapi.Principal{}}}
	h.physical = h.writeBackup(&backup.Manifest{ID: "physical-20260501T020000Z", Type: backup.Physical,
		StartTime: clk.t.Add(-8 * time.Hour), StopTime: clk.t.Add(-8*time.Hour + time.Minute), Timeline: 1, StartLSN: 0x3000028, StopLSN: 0x3000100, PGVersion: 170000,
		StartWAL: "000000010000000000000003", StopWAL: "000000010000000000000003"})
	h.logical = h.writeBackup(&backup.Manifest{ID: "logical-20260501T023000Z", Type: backup.Logical,
		StartTime: clk.t.Add(-7 * time.Hour), StopTime: clk.t.Add(-7*time.Hour + time.Minute), Databases: []string{"app", "crm"}, PGVersion: 170000})
	api, err := backupapi.New(backupapi.Options{
		Auth: h.auth, Repo: repo, Jobs: h.jobs, Restorer: h.restorer,
		Pruner:         &backup.Pruner{Repo: repo, Policies: map[backup.Type]backup.RetentionPolicy{backup.Physical: {Daily: 7, Location: time.UTC}, backup.Logical: {Daily: 7, Location: time.UTC}}},
		AuthURL:        "https://auth.hestami.example",
		StepUpReturnTo: "https://backups.hestami.example/login",
		Host:           "db1", PID: 42, Now: clk.Now, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.api = api
	h.srv = httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		h.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		api.Close(ctx)
	})
	h.signIn("alice", alice, 0)
	h.signIn("bob", bob, 0)
	h.signIn("carol", reader, 0)
	h.signIn("olga", owner, 0)
	return h
}

// signIn makes token stand for p, who verified a second factor mfaAgo before now
// (negative: never).
func (h *harness) signIn(token string, p *backupapi.Principal, mfaAgo time.Duration) {
	c := *p
	if mfaAgo >= 0 {
		c.MFAAt = h.clock.Now().Add(-mfaAgo)
	}
	h.auth.set(token, &c)
}

func (h *harness) writeBackup(m *backup.Manifest) string {
	h.t.Helper()
	m.Format = backup.FormatVersion
	if err := h.repo.WriteManifest(context.Background(), m); err != nil {
		h.t.Fatal(err)
	}
	return m.ID
}

// response is an answer of the API.
type response struct {
	Status int
	Body   string
	Header http.Header
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.Body), v); err != nil {
		t.Fatalf("%v\n%s", err, r.Body)
	}
}

// code is the error code of an error answer.
func (r response) code() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(r.Body), &e)
	return e.Error.Code
}

// call makes a request as token ("": nobody).
func (h *harness) call(token, method, path, body string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("User-Agent", "hestami-test/1")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Body: string(b), Header: resp.Header}
}

// must makes a request and fails the test unless the status is want.
func (h *harness) must(want int, token, method, path, body string) response {
	h.t.Helper()
	r := h.call(token, method, path, body)
	if r.Status != want {
		h.t.Fatalf("%s %s as %q: %d, want %d\n%s", method, path, token, r.Status, want, r.Body)
	}
	return r
}

// restore is a restore request as the API shows it.
type restore struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	Target      string `json:"target"`
	Into        string `json:"into"`
	Database    string `json:"database"`
	TwoPerson   bool   `json:"two_person"`
	Message     string `json:"message"`
	RequestedBy struct {
		UserID string `json:"user_id"`
		IP     string `json:"ip"`
	} `json:"requested_by"`
	Decision *struct {
		Approved bool `json:"approved"`
		By       struct {
			UserID string `json:"user_id"`
		} `json:"by"`
	} `json:"decision"`
	Outcome *struct {
		OK     bool   `json:"ok"`
		Error  string `json:"error"`
		Result *struct {
			Location string `json:"location"`
		} `json:"result"`
	} `json:"outcome"`
}

// waitRestore polls request id until it leaves the running states.
func (h *harness) waitRestore(token, id string) restore {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var r restore
		h.must(http.StatusOK, token, "GET", "/api/v1/restores/"+id, "").decode(h.t, &r)
		if r.Status != backupapi.StatusRunning && r.Status != backupapi.StatusApproved {
			return r
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("restore %s still %s after 20 s", id, r.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// audit returns the audit log, failing the test if its chain is broken.
func (h *harness) audit() []backup.AuditEntry {
	h.t.Helper()
	entries, problems, err := h.repo.AuditLog(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	if len(problems) > 0 {
		h.t.Fatalf("audit log problems: %+v", problems)
	}
	return entries
}

// find returns the audit entries with action and outcome.
func find(entries []backup.AuditEntry, action, outcome string) []backup.AuditEntry {
	var out []backup.AuditEntry
	for _, e := range entries {
		if e.Action == action && e.Outcome == outcome {
			out = append(out, e)
		}
	}
	return out
}
