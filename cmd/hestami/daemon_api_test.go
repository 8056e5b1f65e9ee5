package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/file"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/totp"
	"github.com/hestami/hestami/zstd"
)

// apiClient is one person at the keyboard: a browser signed in at the auth
// service (through its development identity provider), and the access tokens its
// session got for the daemon.
type apiClient struct {
	t      *testing.T
	b      *formClient
	auth   *authStack
	daemon string // the daemon's URL
	secret string // the TOTP secret, once enrolled
}

const daemonClientSecret = "daemon-client-secret-for-tests-0123456789abcdef"

// signIn signs subject (a development identity provider user) in at the auth service.
func signInStaff(t *testing.T, s *authStack, daemonURL, subject string) *apiClient {
	t.Helper()
	c := &apiClient{t: t, b: newFormClient(t), auth: s, daemon: daemonURL}
	c.b.signInDev(s, subject)
	return c
}

// authJSON sends a JSON request to the auth service with the browser's cookie, as
// its pages' scripts do.
func (c *apiClient) authJSON(method, path, body string, want int) map[string]any {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.auth.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := c.b.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s at the auth service: %d, want %d\n%s", method, path, resp.StatusCode, want, b)
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// enrollTOTP sets up an authenticator app through the auth service's API: the
// first code verifies it, which also counts as a second factor verified now.
func (c *apiClient) enrollTOTP() {
	c.t.Helper()
	en := c.authJSON("POST", "/api/v1/me/factors/totp", "{}", http.StatusCreated)
	c.secret, _ = en["secret"].(string)
	code, err := totp.Code(c.secret, time.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	c.authJSON("POST", fmt.Sprintf("/api/v1/me/factors/totp/%s/confirm", en["factor_id"]), fmt.Sprintf(`{"code": %q}`, code), http.StatusOK)
}

// token runs the daemon client's authorization code flow in the browser and
// returns the access token: what an API client of the daemon holds.
func (c *apiClient) token() string {
	c.t.Helper()
	ctx := oidc.ClientContext(c.t.Context(), &http.Client{Timeout: 30 * time.Second})
	prov, err := oidc.NewProvider(ctx, c.auth.URL+"/oidc")
	if err != nil {
		c.t.Fatalf("discovery: %v", err)
	}
	redirect := c.daemon + "/callback"
	conf := oauth2.Config{ClientID: "backup-daemon", ClientSecret: daemonClientSecret, Endpoint: prov.Endpoint(), RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
	verifier, state := oauth2.GenerateVerifier(), "state-"+rand.Text()
	stop := *c.b.c
	stop.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := stop.Get(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(rand.Text())))
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || back.Query().Get("state") != state || back.Query().Get("code") == "" {
		c.t.Fatalf("the code flow ended with %d at %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		c.t.Fatalf("code exchange: %v", err)
	}
	return tok.AccessToken
}

// daemonCall calls the daemon's API with token ("": none) and returns the status
// and the body.
func daemonCall(t *testing.T, base, token, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// daemonMust is daemonCall that fails the test unless the status is want, and
// decodes the answer into v (if not nil).
func daemonMust(t *testing.T, base, token, method, path, body string, want int, v any) {
	t.Helper()
	status, b := daemonCall(t, base, token, method, path, body)
	if status != want {
		t.Fatalf("%s %s: %d, want %d\n%s", method, path, status, want, b)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(b), v); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, b)
		}
	}
}

// apiRestore is a restore request as the daemon's API shows it.
type apiRestore struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Into     string `json:"into"`
	Decision *struct {
		By struct {
			Email string `json:"email"`
		} `json:"by"`
	} `json:"decision"`
	Outcome *struct {
		OK     bool   `json:"ok"`
		Error  string `json:"error"`
		Result *struct {
			Location string   `json:"location"`
			Checks   []string `json:"checks"`
			Next     string   `json:"next"`
		} `json:"result"`
	} `json:"outcome"`
}

// waitDone polls restore request id until it has an outcome.
func waitDone(t *testing.T, base, token, id string) apiRestore {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var r apiRestore
		daemonMust(t, base, token, "GET", "/api/v1/restores/"+id, "", http.StatusOK, &r)
		if r.Outcome != nil {
			if !r.Outcome.OK {
				t.Fatalf("restore %s failed: %s", id, r.Outcome.Error)
			}
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("restore %s still %s after 90 s", id, r.Status)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

// TestDaemonAPIRestores runs the real auth service and the real backup daemon
// (hestami auth serve and backup daemon, in-process) against a real PostgreSQL
// server: people sign in through the development identity provider, set up an
// authenticator app through the auth service's API and get access tokens through
// the daemon's client. Calls without a token, or by staff without backup
// permissions, are refused; a restore without a fresh second factor is refused;
// the operator who asks for a production restore cannot approve it; once another
// staff member approves it, it runs. Scratch restores (logical into a new database,
// physical into a new directory, started once) run for one person. The status page
// shows to signed-in staff only. Everything is in the audit log, whose chain
// hestami audit verify proves, until an entry is edited.
func TestDaemonAPIRestores(t *testing.T) {
	t.Parallel()
	began := time.Now()
	port, err := postgres.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://localhost:%d", port)
	s := startAuth(t, fmt.Sprintf(`  dev_mode: true
  return_origins: [%s]
  oidc:
    clients:
      - id: backup-daemon
        name: Hestami backups
        secret: %s
        redirect_uris: [%s/callback]
`, base, daemonClientSecret, base))
	for _, u := range [][2]string{{"staff:ops", "ops@hestami.local"}, {"staff:admin", "admin@hestami.local"}, {"staff:support", "support@hestami.local"}} {
		mustRun(t, s.Config, "auth", "users", "create", "--type", "staff", "--role", u[0], "--email", u[1])
	}

	dir := t.TempDir()
	secretFile, keyFile := filepath.Join(dir, "client-secret"), filepath.Join(dir, "cookie-keys")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(secretFile, []byte(daemonClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("k1:"+base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prodDir := filepath.Join(dir, "production", "restored")
	a := pgtest.NewArchivingConfig(t, map[string]string{"wal_recycle": "off"}, fmt.Sprintf(`daemon:
  state_dir: %s
  schedules: {physical: "off", logical: "off", sync: "off"}
  drills: {physical: "off", logical: "off"}
  prune: "off"
  auth:
    url: %s
    public_url: %s
    client_secret_file: %s
    cookie_key_file: %s
  production:
    restore_dir: %s
    databases: [app]
`, filepath.Join(dir, "state"), s.URL, base, secretFile, keyFile, prodDir))
	c := a.Cluster
	pgtest.Exec(t, c, "postgres", "CREATE DATABASE app")
	pgtest.Exec(t, c, "app", "CREATE TABLE orders (id int PRIMARY KEY, note text)")
	pgtest.Exec(t, c, "app", "INSERT INTO orders SELECT g, 'before the backups' FROM generate_series(1, 1000) g")
	mustRun(t, a.Config, "backup", "push", "--type", "logical")
	mustRun(t, a.Config, "backup", "push", "--type", "physical")
	var logicalID, physicalID string
	for _, r := range listBackups(t, a.Config) {
		if r.Type == backup.Logical {
			logicalID = r.ID
		} else {
			physicalID = r.ID
		}
	}

	p := daemonProgram(t, a.Config, slog.LevelWarn)
	ctx, cancel := context.WithCancel(t.Context())
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- p.runDaemon(ctx, fmt.Sprintf("127.0.0.1:%d", port), daemonDeps{HestamiPath: a.Bin, Listening: func(a net.Addr) { addrs <- a }})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon stopped with %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the daemon did not stop within a minute")
		}
	}()
	select {
	case <-addrs:
	case err := <-done:
		t.Fatalf("daemon stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("daemon did not listen within a minute")
	}
	t.Logf("setup took %s", time.Since(began))

	// Nobody signed in: refused, and the open endpoints stay open.
	for _, rt := range [][3]string{{"GET", "/api/v1/backups", ""}, {"POST", "/api/v1/backups/" + physicalID + "/restore", `{"target": "production"}`}} {
		if status, body := daemonCall(t, base, "", rt[0], rt[1], rt[2]); status != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d %s", rt[0], rt[1], status, body)
		}
	}
	if status, body := daemonCall(t, base, "not-a-token", "GET", "/api/v1/backups", ""); status != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/backups with a made-up token: %d %s", status, body)
	}
	for _, path := range []string{"/healthz", "/metrics", "/api/openapi.json"} {
		if status, _ := daemonCall(t, base, "", "GET", path, ""); status != http.StatusOK {
			t.Errorf("GET %s: %d, want it open", path, status)
		}
	}

	// Staff without backup permissions: refused.
	support := signInStaff(t, s, base, "dev-support")
	if status, body := daemonCall(t, base, support.token(), "GET", "/api/v1/backups", ""); status != http.StatusForbidden || !strings.Contains(body, "backup:read") {
		t.Errorf("GET /api/v1/backups as support staff: %d %s", status, body)
	}

	// An operator signed in without a second factor may look, not restore.
	ops := signInStaff(t, s, base, "dev-ops")
	plain := ops.token()
	var listed struct {
		Backups []struct{ ID string } `json:"backups"`
	}
	daemonMust(t, base, plain, "GET", "/api/v1/backups", "", http.StatusOK, &listed)
	if len(listed.Backups) != 2 {
		t.Fatalf("backups listed: %+v", listed)
	}
	status, body := daemonCall(t, base, plain, "POST", "/api/v1/backups/"+physicalID+"/restore", `{"target": "production"}`)
	var stepUp struct {
		Error  struct{ Code string } `json:"error"`
		StepUp struct {
			Location string `json:"location"`
		} `json:"step_up"`
	}
	_ = json.Unmarshal([]byte(body), &stepUp)
	if status != http.StatusForbidden || stepUp.Error.Code != "step_up_required" || !strings.HasPrefix(stepUp.StepUp.Location, s.URL+"/mfa/challenge?") {
		t.Fatalf("restore without a fresh second factor: %d %s", status, body)
	}

	// With a fresh second factor: a production restore waits for a second person.
	ops.enrollTOTP()
	opsToken := ops.token()
	var req apiRestore
	daemonMust(t, base, opsToken, "POST", "/api/v1/backups/"+physicalID+"/restore",
		`{"target": "production", "reason": "test the two-person rule"}`, http.StatusAccepted, &req)
	if req.Status != "pending" || req.Into != prodDir {
		t.Fatalf("production restore request: %+v", req)
	}
	if status, body := daemonCall(t, base, opsToken, "POST", "/api/v1/restores/"+req.ID+"/approve", ""); status != http.StatusForbidden || !strings.Contains(body, "self_approval") {
		t.Fatalf("the requester approving their own production restore: %d %s", status, body)
	}
	if _, err := os.Stat(prodDir); !os.IsNotExist(err) {
		t.Fatalf("the production restore directory exists before the approval: %v", err)
	}
	admin := signInStaff(t, s, base, "dev-admin")
	admin.enrollTOTP()
	var approved apiRestore
	daemonMust(t, base, admin.token(), "POST", "/api/v1/restores/"+req.ID+"/approve", `{"reason": "looks right"}`, http.StatusAccepted, &approved)
	prod := waitDone(t, base, opsToken, req.ID)
	if prod.Outcome.Result.Location != prodDir || prod.Decision == nil || prod.Decision.By.Email != "admin@hestami.local" ||
		!strings.Contains(prod.Outcome.Result.Next, "not started") {
		t.Errorf("production restore: %+v %+v", prod, prod.Outcome.Result)
	}
	for _, name := range []string{"PG_VERSION", "recovery.signal", "backup_label"} {
		if _, err := os.Stat(filepath.Join(prodDir, name)); err != nil {
			t.Errorf("the production restore lacks %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(prodDir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Errorf("the production restore was started: %v", err)
	}

	// Scratch restores run for one person: a database into a new one...
	pgtest.Exec(t, c, "app", "INSERT INTO orders SELECT g, 'after the backups' FROM generate_series(1001, 1500) g")
	var logical apiRestore
	daemonMust(t, base, opsToken, "POST", "/api/v1/backups/"+logicalID+"/restore", `{"target": "scratch", "database": "app", "into": "app_inspect"}`, http.StatusAccepted, &logical)
	waitDone(t, base, opsToken, logical.ID)
	var n int
	pgtest.QueryRow(t, c, "app_inspect", "SELECT count(*) FROM orders").Scan(&n)
	if n != 1000 {
		t.Errorf("the scratch database holds %d orders, want the backup's 1000", n)
	}
	// ...and the cluster into a new directory, started once to check it.
	var physical apiRestore
	daemonMust(t, base, opsToken, "POST", "/api/v1/backups/"+physicalID+"/restore", `{"target": "scratch"}`, http.StatusAccepted, &physical)
	scratch := waitDone(t, base, opsToken, physical.ID)
	if checks := strings.Join(scratch.Outcome.Result.Checks, "\n"); !strings.Contains(checks, "answered") || !strings.Contains(checks, "checksums verified") {
		t.Errorf("scratch restore checks:\n%s", checks)
	}
	if _, err := os.Stat(filepath.Join(scratch.Outcome.Result.Location, "PG_VERSION")); err != nil {
		t.Errorf("the scratch restore is not at %s: %v", scratch.Outcome.Result.Location, err)
	}

	// The status page: signed-in staff with backup:read see it; others do not.
	page := newFormClient(t)
	page.c.CheckRedirect = func(req *http.Request, via []*http.Request) error { return http.ErrUseLastResponse }
	pageReq, _ := http.NewRequest("GET", base+"/", nil)
	pageReq.Header.Set("Accept", "text/html")
	if resp, err := page.c.Do(pageReq); err != nil || resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("the status page without signing in: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, who := range []struct {
		c    *apiClient
		want int
	}{{ops, http.StatusOK}, {support, http.StatusForbidden}} {
		if _, body := who.c.b.get(base+"/login?next=/", who.want); who.want == http.StatusOK && !strings.Contains(body, "Hestami backups") {
			t.Errorf("the status page:\n%.300s", body)
		}
	}

	// The audit log has it all, chained.
	var entries []backup.AuditEntry
	if err := json.Unmarshal([]byte(mustRun(t, a.Config, "audit", "list", "--json")), &entries); err != nil {
		t.Fatal(err)
	}
	var got []string
	selfApproval := uint64(0)
	for _, e := range entries {
		if strings.HasPrefix(e.Action, "restore") && e.Details["via"] == "api" {
			got = append(got, fmt.Sprintf("%s %s %s", e.Action, e.Outcome, e.Actor))
			if e.Action == "restore.approve" && e.Outcome == "refused" {
				selfApproval = e.Seq
			}
		}
	}
	want := []string{
		"restore.request refused anonymous",
		"restore.request refused ops@hestami.local",
		"restore.request ok ops@hestami.local",
		"restore.approve refused ops@hestami.local",
		"restore.approve ok admin@hestami.local",
		"restore ok ops@hestami.local",
		"restore.request ok ops@hestami.local",
		"restore.logical ok ops@hestami.local",
		"restore.request ok ops@hestami.local",
		"restore ok ops@hestami.local",
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit log of the API's restores:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	mustRun(t, a.Config, "audit", "verify")

	// Someone with write access to the storage turns the refused self-approval
	// into an approval: hestami audit verify finds it.
	st, err := file.New(a.Repo)
	if err != nil {
		t.Fatal(err)
	}
	repo := &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}}
	auditKey := fmt.Sprintf("audit/%020d.json.zst", selfApproval)
	raw, err := repo.ReadObject(t.Context(), auditKey)
	if err != nil {
		t.Fatal(err)
	}
	var e backup.AuditEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	e.Outcome = "ok"
	edited, _ := json.Marshal(e)
	if _, err := repo.PutPlainObject(t.Context(), auditKey, bytes.NewReader(edited), false); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, a.Config, "audit", "verify")
	if err == nil || !strings.Contains(out, fmt.Sprintf("entry %d", selfApproval)) || !strings.Contains(out, "edited") {
		t.Errorf("audit verify after an entry was edited: %v\n%s", err, out)
	}
	t.Logf("took %s", time.Since(began))
}
