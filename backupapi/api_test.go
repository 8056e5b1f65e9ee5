package backupapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/backupapi"
)

// TestAccess: every route refuses callers who are not signed in (401), whom the
// auth service cannot vouch for right now (503), who are not staff or lack the
// route's permission (403); with the permission they get through.
func TestAccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	routes := []struct {
		method, path, body string
		perm               string
	}{
		{"GET", "/api/v1/backups", "", "backup:read"},
		{"GET", "/api/v1/backups/" + "physical-20260501T020000Z", "", "backup:read"},
		{"GET", "/api/v1/jobs", "", "backup:read"},
		{"GET", "/api/v1/restores", "", "backup:read"},
		{"POST", "/api/v1/prune", `{"dry_run": true}`, "backup:read"},
		{"POST", "/api/v1/backups", `{"type": "logical"}`, "backup:run"},
		{"POST", "/api/v1/backups/physical-20260501T020000Z/verify", "", "backup:run"},
		{"POST", "/api/v1/backups/logical-20260501T023000Z/drill", "", "backup:run"},
		{"POST", "/api/v1/backups/physical-20260501T020000Z/restore", `{"target": "scratch"}`, "backup:restore"},
		{"POST", "/api/v1/prune", `{}`, "backup:restore"},
		{"DELETE", "/api/v1/backups/logical-20260501T023000Z", "", "backup:restore"},
	}
	for _, rt := range routes {
		name := rt.method + " " + rt.path + " " + rt.body
		if r := h.call("", rt.method, rt.path, rt.body); r.Status != http.StatusUnauthorized || r.code() != "unauthorized" || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s without a token: %d %s", name, r.Status, r.Body)
		}
		if r := h.call("forged", rt.method, rt.path, rt.body); r.Status != http.StatusUnauthorized {
			t.Errorf("%s with an unknown token: %d %s", name, r.Status, r.Body)
		}
		if r := h.call("olga", rt.method, rt.path, rt.body); r.Status != http.StatusForbidden || !strings.Contains(r.Body, "staff only") {
			t.Errorf("%s as a property owner: %d %s", name, r.Status, r.Body)
		}
		if rt.perm != "backup:read" {
			if r := h.call("carol", rt.method, rt.path, rt.body); r.Status != http.StatusForbidden || !strings.Contains(r.Body, rt.perm) {
				t.Errorf("%s as staff with backup:read only: %d %s", name, r.Status, r.Body)
			}
		}
	}
	// Who may, may (the deletion last: the backup is gone then).
	h.signIn("alice", alice, time.Minute)
	for _, rt := range routes {
		if r := h.call("alice", rt.method, rt.path, rt.body); r.Status >= 300 {
			t.Errorf("%s %s as an operator with fresh MFA: %d %s", rt.method, rt.path, r.Status, r.Body)
		}
	}
	// The auth service down: nobody gets in, and the answer says why.
	h.auth.mu.Lock()
	h.auth.down = true
	h.auth.mu.Unlock()
	if r := h.call("alice", "GET", "/api/v1/backups", ""); r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "auth service cannot be reached") {
		t.Errorf("with the auth service down: %d %s", r.Status, r.Body)
	}
	// Unknown API paths answer JSON.
	h.auth.mu.Lock()
	h.auth.down = false
	h.auth.mu.Unlock()
	if r := h.call("alice", "GET", "/api/v1/nothing", ""); r.Status != http.StatusNotFound || r.code() != "not_found" {
		t.Errorf("unknown route: %d %s", r.Status, r.Body)
	}
}

// TestStepUp: restoring, deleting, pruning and approving need a second factor
// verified within five minutes; without one the answer says where to get it, and
// the refusal is audited with who asked.
func TestStepUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := []struct {
		name   string
		mfaAgo time.Duration
		want   int
	}{
		{"never", -1, http.StatusForbidden},
		{"six minutes ago", 6 * time.Minute, http.StatusForbidden},
		{"five minutes ago", 5 * time.Minute, http.StatusAccepted},
		{"just now", 0, http.StatusAccepted},
	}
	for _, c := range cases {
		h.signIn("alice", alice, c.mfaAgo)
		r := h.call("alice", "POST", "/api/v1/backups/"+h.physical+"/restore", `{"target": "scratch"}`)
		if r.Status != c.want {
			t.Errorf("MFA %s: %d, want %d\n%s", c.name, r.Status, c.want, r.Body)
			continue
		}
		if c.want != http.StatusForbidden {
			continue
		}
		var e struct {
			Error  struct{ Code string }
			StepUp struct {
				Location      string `json:"location"`
				WithinSeconds int    `json:"within_seconds"`
			} `json:"step_up"`
		}
		r.decode(t, &e)
		u, err := url.Parse(e.StepUp.Location)
		if e.Error.Code != "step_up_required" || e.StepUp.WithinSeconds != 300 || err != nil ||
			u.Host != "auth.hestami.example" || u.Path != "/mfa/challenge" || u.Query().Get("purpose") != "step-up" ||
			u.Query().Get("return_to") != "https://backups.hestami.example/login" {
			t.Errorf("MFA %s: answer %+v", c.name, e)
		}
	}
	h.signIn("alice", alice, 10*time.Minute)
	for _, rt := range [][3]string{
		{"DELETE", "/api/v1/backups/" + h.logical, ""},
		{"POST", "/api/v1/prune", `{"dry_run": false}`},
	} {
		if r := h.call("alice", rt[0], rt[1], rt[2]); r.Status != http.StatusForbidden || r.code() != "step_up_required" {
			t.Errorf("%s %s with stale MFA: %d %s", rt[0], rt[1], r.Status, r.Body)
		}
	}
	if _, err := h.repo.Manifest(t.Context(), h.logical); err != nil {
		t.Errorf("the backup is gone after a refused deletion: %v", err)
	}
	entries := h.audit()
	refused := find(entries, "restore.request", "refused")
	if len(refused) != 2 {
		t.Fatalf("audited %d refused restore requests, want 2: %+v", len(refused), entries)
	}
	for _, e := range refused {
		if e.Actor != alice.Email || e.Details["user_id"] != alice.UserID || e.Details["ip"] != "127.0.0.1" ||
			e.Details["user_agent"] != "hestami-test/1" || !strings.Contains(e.Details["reason"], "step-up required") || e.Target != h.physical {
			t.Errorf("refusal entry %+v", e)
		}
	}
	if len(find(entries, "backup.delete", "refused")) != 1 || len(find(entries, "backup.prune.request", "refused")) != 1 {
		t.Errorf("refused deletion and prune not both audited: %+v", entries)
	}
}

// TestTwoPersonRule: a production restore waits for approval; its requester
// cannot approve it; another operator (with fresh MFA) can, and it runs once; each
// step is audited and the chain holds.
func TestTwoPersonRule(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var req restore
	h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups/"+h.physical+"/restore",
		`{"target": "production", "recovery": {"time": "2026-05-01T09:00:00Z", "action": "promote"}, "reason": "bad migration at 09:05"}`).decode(t, &req)
	if req.Status != backupapi.StatusPending || !req.TwoPerson || req.RequestedBy.UserID != alice.UserID || req.RequestedBy.IP != "127.0.0.1" ||
		!strings.Contains(req.Message, "approve") {
		t.Fatalf("production restore request: %+v", req)
	}
	if n := len(h.restorer.runs()); n != 0 {
		t.Fatalf("a production restore ran before its approval (%d runs)", n)
	}
	// Its requester cannot approve it, even with fresh MFA.
	if r := h.call("alice", "POST", "/api/v1/restores/"+req.ID+"/approve", ""); r.Status != http.StatusForbidden || r.code() != "self_approval" {
		t.Fatalf("self-approval: %d %s", r.Status, r.Body)
	}
	// A reader cannot approve; nor can an operator without fresh MFA.
	if r := h.call("carol", "POST", "/api/v1/restores/"+req.ID+"/approve", ""); r.Status != http.StatusForbidden {
		t.Fatalf("approval by a reader: %d %s", r.Status, r.Body)
	}
	h.signIn("bob", bob, -1)
	if r := h.call("bob", "POST", "/api/v1/restores/"+req.ID+"/approve", ""); r.Status != http.StatusForbidden || r.code() != "step_up_required" {
		t.Fatalf("approval without MFA: %d %s", r.Status, r.Body)
	}
	var listed struct{ Restores []restore }
	h.must(http.StatusOK, "carol", "GET", "/api/v1/restores", "").decode(t, &listed)
	if len(listed.Restores) != 1 || listed.Restores[0].Status != backupapi.StatusPending {
		t.Fatalf("restores after refusals: %+v", listed)
	}
	h.signIn("bob", bob, 30*time.Second)
	var approved restore
	h.must(http.StatusAccepted, "bob", "POST", "/api/v1/restores/"+req.ID+"/approve", `{"reason": "checked with alice"}`).decode(t, &approved)
	if approved.Decision == nil || !approved.Decision.Approved || approved.Decision.By.UserID != bob.UserID {
		t.Fatalf("approved: %+v", approved)
	}
	done := h.waitRestore("carol", req.ID)
	if done.Status != backupapi.StatusSucceeded || done.Outcome == nil || done.Outcome.Result == nil || done.Outcome.Result.Location != "/restores/"+req.ID {
		t.Fatalf("after approval: %+v", done)
	}
	// Approved once, run once: approving again is a conflict.
	if r := h.call("bob", "POST", "/api/v1/restores/"+req.ID+"/approve", ""); r.Status != http.StatusConflict {
		t.Errorf("second approval: %d %s", r.Status, r.Body)
	}
	if runs := h.restorer.runs(); !slices.Equal(runs, []string{req.ID}) {
		t.Errorf("restores run: %v", runs)
	}

	entries := h.audit()
	var got []string
	for _, e := range entries {
		got = append(got, fmt.Sprintf("%s %s %s", e.Action, e.Outcome, e.Actor))
	}
	want := []string{
		"restore.request ok alice@hestami.example",
		"restore.approve refused alice@hestami.example",
		"restore.approve refused carol@hestami.example",
		"restore.approve refused bob@hestami.example",
		"restore.approve ok bob@hestami.example",
		"restore ok alice@hestami.example",
		"restore.approve refused bob@hestami.example",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if e := entries[1]; e.Details["reason"] != "the requester tried to approve their own request" || e.Details["request"] != req.ID {
		t.Errorf("self-approval entry: %+v", e)
	}
	if e := entries[5]; e.Target != "/restores/"+req.ID || e.Details["approved_by"] != bob.Email || e.Details["recovery_target"] == "" || e.Details["request"] != req.ID {
		t.Errorf("outcome entry: %+v", e)
	}
	if e := entries[0]; e.Details["reason"] != "bad migration at 09:05" || e.Details["two_person"] != "true" || e.Details["status"] != "pending" {
		t.Errorf("request entry: %+v", e)
	}
}

// TestConcurrentApprovals: two operators approve the same request at once: one
// wins, the other hears it was decided, and the restore runs once.
func TestConcurrentApprovals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dave := *bob
	dave.UserID, dave.Email = "u-dave", "dave@hestami.example"
	h.signIn("dave", &dave, 0)
	for round := 0; round < 5; round++ {
		var req restore
		h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups/"+h.logical+"/restore", `{"target": "production", "database": "crm"}`).decode(t, &req)
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i, who := range []string{"bob", "dave"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = h.call(who, "POST", "/api/v1/restores/"+req.ID+"/approve", "").Status
			}()
		}
		wg.Wait()
		slices.Sort(codes)
		if !slices.Equal(codes, []int{http.StatusAccepted, http.StatusConflict}) {
			t.Fatalf("round %d: concurrent approvals answered %v", round, codes)
		}
		h.waitRestore("alice", req.ID)
	}
	if n := len(h.restorer.runs()); n != 5 {
		t.Errorf("%d restores ran for 5 requests", n)
	}
}

// TestRequestLifecycle: scratch restores run for one person; production requests
// can be rejected or withdrawn, and expire; failures are recorded; input is checked.
func TestRequestLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	t.Run("scratch runs for one person", func(t *testing.T) {
		var req restore
		h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups/"+h.logical+"/restore", `{"target": "scratch", "database": "app", "into": "app_copy"}`).decode(t, &req)
		if req.TwoPerson || req.Status != backupapi.StatusRunning || req.Into != "app_copy" {
			t.Fatalf("scratch request: %+v", req)
		}
		if done := h.waitRestore("alice", req.ID); done.Status != backupapi.StatusSucceeded {
			t.Fatalf("scratch restore: %+v", done)
		}
	})
	t.Run("rejected", func(t *testing.T) {
		var req restore
		h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups/"+h.physical+"/restore", `{"target": "production"}`).decode(t, &req)
		var rej restore
		h.must(http.StatusOK, "bob", "POST", "/api/v1/restores/"+req.ID+"/reject", `{"reason": "use scratch first"}`).decode(t, &rej)
		if rej.Status != backupapi.StatusRejected {
			t.Fatalf("rejected: %+v", rej)
		}
		if r := h.call("bob", "POST", "/api/v1/restores/"+req.ID+"/approve", ""); r.Status != http.StatusConflict || !strings.Contains(r.Body, "rejected by bob@") {
			t.Fatalf("approving a rejected request: %d %s", r.Status, r.Body)
		}
	})
	t.Run("withdrawn by its requester", func(t *testing.T) {
		var req restore
		h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups/"+h.physical+"/restore", `{"target": "production"}`).decode(t, &req)
		h.must(http.StatusOK, "alice", "POST", "/api/v1/restores/"+req.ID+"/reject", "")
	})
	t.Run("expired", func(t *testing.T) {
		var req restore
		h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups/"+h.physical+"/restore", `{"target": "production"}`).decode(t, &req)
		h.clock.Add(backupapi.DefaultRequestTTL + time.Second)
		h.signIn("bob", bob, 0)
		defer h.signIn("alice", alice, 0)
		h.signIn("alice", alice, 0)
		r := h.call("bob", "POST", "/api/v1/restores/"+req.ID+"/approve", "")
		if r.Status != http.StatusConflict || r.code() != "expired" {
			t.Fatalf("approving an expired request: %d %s", r.Status, r.Body)
		}
		var got restore
		h.must(http.StatusOK, "carol", "GET", "/api/v1/restores/"+req.ID, "").decode(t, &got)
		if got.Status != backupapi.StatusExpired {
			t.Fatalf("expired request shows %+v", got)
		}
		entries := h.audit()
		if last := entries[len(entries)-1]; last.Action != "restore.approve" || last.Outcome != "refused" || last.Details["reason"] != "expired" {
			t.Errorf("last audit entry: %+v", last)
		}
	})
	t.Run("failure recorded", func(t *testing.T) {
		h.restorer.mu.Lock()
		h.restorer.fail = fmt.Errorf("pg_restore: out of disk")
		h.restorer.mu.Unlock()
		defer func() {
			h.restorer.mu.Lock()
			h.restorer.fail = nil
			h.restorer.mu.Unlock()
		}()
		var req restore
		h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups/"+h.logical+"/restore", `{"target": "scratch", "database": "crm"}`).decode(t, &req)
		done := h.waitRestore("alice", req.ID)
		if done.Status != backupapi.StatusFailed || done.Outcome == nil || !strings.Contains(done.Outcome.Error, "out of disk") {
			t.Fatalf("failed restore: %+v", done)
		}
		entries := h.audit()
		if last := entries[len(entries)-1]; last.Action != "restore.logical" || last.Outcome != "failed" || !strings.Contains(last.Details["error"], "out of disk") {
			t.Errorf("last audit entry: %+v", last)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct {
			backup, body string
			status       int
			says         string
		}{
			{h.physical, `{"target": "elsewhere"}`, 400, "want scratch"},
			{h.physical, `{"target": "scratch", "database": "app"}`, 400, "physical backup"},
			{h.physical, `{"target": "scratch", "recovery": {"lsn": "0/1000000"}}`, 400, "after the recovery target"},
			{h.physical, `{"target": "scratch", "recovery": {"lsn": "0/4000000", "name": "x"}}`, 400, "at most one"},
			{h.physical, `{"target": "scratch", "recovery": {"action": "promote"}}`, 400, "needs a recovery target"},
			{h.physical, `{"target": "scratch", "surprise": 1}`, 400, "unknown field"},
			{h.logical, `{"target": "scratch"}`, 400, "app, crm"},
			{h.logical, `{"target": "scratch", "database": "hr"}`, 400, "no database"},
			{h.logical, `{"target": "scratch", "database": "app", "recovery": {"lsn": "0/4000000"}}`, 400, "physical backup"},
			{h.logical, `{"target": "scratch", "database": "app", "into": "App; DROP"}`, 400, "lower-case"},
			{h.logical, `{"target": "production", "database": "app", "into": "other"}`, 400, "production database itself"},
			{h.logical, `{"target": "scratch", "database": "app", "into": "exists"}`, 409, "exists already"},
			{"physical-20990101T000000Z", `{"target": "scratch"}`, 404, "no complete backup"},
		} {
			r := h.call("alice", "POST", "/api/v1/backups/"+c.backup+"/restore", c.body)
			if r.Status != c.status || !strings.Contains(r.Body, c.says) {
				t.Errorf("%s %s: %d %s; want %d saying %q", c.backup, c.body, r.Status, r.Body, c.status, c.says)
			}
		}
		entries := h.audit()
		if last := entries[len(entries)-1]; last.Action != "restore.request" || last.Outcome != "refused" || !strings.Contains(last.Details["reason"], "no complete backup") {
			t.Errorf("last audit entry: %+v", last)
		}
	})
}

// TestRecover: a restore this host was running when its daemon died is recorded
// as failed at the next start, not left running for ever.
func TestRecover(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	req := &backupapi.RestoreRequest{ID: backupapi.NewRequestID(h.clock.Now()), Backup: h.physical, Type: "physical", Target: "scratch",
		Into: "/srv/restores/x", RequestedBy: backupapi.Person{UserID: alice.UserID, Email: alice.Email}, Created: h.clock.Now()}
	store := h.api.Store()
	if err := store.Create(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if err := store.Claim(t.Context(), req.ID, &backupapi.Run{Host: "db1", PID: 7, Started: h.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	other := *req
	other.ID = backupapi.NewRequestID(h.clock.Now())
	if err := store.Create(t.Context(), &other); err != nil {
		t.Fatal(err)
	}
	if err := store.Claim(t.Context(), other.ID, &backupapi.Run{Host: "db2", PID: 7, Started: h.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := h.api.Recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	var mine, theirs restore
	h.must(http.StatusOK, "alice", "GET", "/api/v1/restores/"+req.ID, "").decode(t, &mine)
	h.must(http.StatusOK, "alice", "GET", "/api/v1/restores/"+other.ID, "").decode(t, &theirs)
	if mine.Status != backupapi.StatusFailed || !strings.Contains(mine.Outcome.Error, "pid 7") || theirs.Status != backupapi.StatusRunning {
		t.Errorf("after recovery: this host's %+v; another host's %+v", mine, theirs)
	}
	if err := store.Claim(t.Context(), req.ID, &backupapi.Run{Host: "db1", PID: 8}); err == nil {
		t.Error("a restore was claimed twice")
	}
}

// TestAnonymousRefusalsAudited: refused anonymous calls to the restore routes are
// audited, at most once a minute per address, so they cannot flood the log.
func TestAnonymousRefusalsAudited(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for range 20 {
		h.must(http.StatusUnauthorized, "", "POST", "/api/v1/backups/"+h.physical+"/restore", `{"target": "production"}`)
	}
	h.must(http.StatusUnauthorized, "", "GET", "/api/v1/backups", "") // not a restore route: not audited
	h.clock.Add(time.Minute)
	h.must(http.StatusUnauthorized, "", "DELETE", "/api/v1/backups/"+h.physical, "")
	entries := h.audit()
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+" "+e.Outcome+" "+e.Actor+" "+e.Target)
	}
	want := []string{"restore.request refused anonymous " + h.physical, "backup.delete refused anonymous " + h.physical}
	if !slices.Equal(got, want) {
		t.Errorf("audit log %q, want %q", got, want)
	}
}

// TestBackupRoutes: listing, taking, verifying, drilling, deleting and pruning go
// to the daemon and the repository; deletions and prunes are audited.
func TestBackupRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var list struct {
		Backups []struct {
			ID, Type, Status string
			Databases        []string
		}
	}
	h.must(http.StatusOK, "carol", "GET", "/api/v1/backups", "").decode(t, &list)
	if len(list.Backups) != 2 || list.Backups[0].ID != h.physical || list.Backups[1].Type != "logical" || len(list.Backups[1].Databases) != 2 {
		t.Fatalf("backups: %+v", list)
	}
	h.must(http.StatusNotFound, "carol", "GET", "/api/v1/backups/logical-20990101T000000Z", "")

	wait := func(want string) {
		t.Helper()
		select {
		case got := <-h.jobs.done:
			if got != want {
				t.Fatalf("the daemon did %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the daemon never did %s", want)
		}
	}
	h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups", `{"type": "physical"}`)
	wait("job:physical")
	h.must(http.StatusBadRequest, "alice", "POST", "/api/v1/backups", `{"type": "snapshot"}`)
	h.jobs.mu.Lock()
	h.jobs.running["logical"] = true
	h.jobs.mu.Unlock()
	h.must(http.StatusConflict, "alice", "POST", "/api/v1/backups", `{"type": "logical"}`)
	h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups/"+h.physical+"/verify", "")
	wait("verify:" + h.physical)
	h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups/"+h.logical+"/drill", "")
	wait("drill:" + h.logical)

	var plan struct {
		DryRun bool `json:"dry_run"`
		Plan   struct {
			Backups map[string][]struct{ ID string }
		}
	}
	h.must(http.StatusOK, "carol", "POST", "/api/v1/prune", `{"dry_run": true}`).decode(t, &plan)
	if !plan.DryRun || len(plan.Plan.Backups["physical"]) != 1 {
		t.Errorf("dry run: %+v", plan)
	}
	h.must(http.StatusOK, "alice", "POST", "/api/v1/prune", "")
	wait("job:prune")

	h.must(http.StatusOK, "alice", "DELETE", "/api/v1/backups/"+h.logical, "")
	if _, err := h.repo.Manifest(t.Context(), h.logical); err == nil {
		t.Error("the deleted backup is still there")
	}
	h.must(http.StatusNotFound, "alice", "DELETE", "/api/v1/backups/"+h.logical, "")
	entries := h.audit()
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+" "+e.Outcome+" "+e.Actor)
	}
	want := []string{
		"backup.push.request ok alice@hestami.example",
		"backup.verify.request ok alice@hestami.example",
		"backup.drill.request ok alice@hestami.example",
		"backup.prune.request ok alice@hestami.example",
		"backup.delete ok alice@hestami.example",
		"backup.delete refused alice@hestami.example",
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCloseInterruptsRestores: a restore still running when the daemon's grace
// ends is cancelled and recorded as failed, with the reason.
func TestCloseInterruptsRestores(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.restorer.block = make(chan struct{})
	var req restore
	h.must(http.StatusAccepted, "alice", "POST", "/api/v1/backups/"+h.physical+"/restore", `{"target": "scratch"}`).decode(t, &req)
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // no grace at all
	h.api.Close(ctx)
	st, err := h.api.Store().Get(t.Context(), req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status(h.clock.Now()) != backupapi.StatusFailed || !strings.Contains(st.Outcome.Error, "shutting down") {
		t.Errorf("after Close: %+v", st.Outcome)
	}
}
