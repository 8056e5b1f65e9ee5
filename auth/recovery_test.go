package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/webhook"
)

// recHelpdesk is a local helpdesk API over TLS that keeps the tickets it gets.
type recHelpdesk struct {
	srv     *httptest.Server
	mu      sync.Mutex
	tickets []webhook.HelpdeskTicket
	down    bool
}

func newRecHelpdesk(t *testing.T) *recHelpdesk {
	t.Helper()
	h := &recHelpdesk{}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.down || r.Header.Get("Authorization") != "Bearer helpdesk-token" {
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		var tk webhook.HelpdeskTicket
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &tk); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		h.tickets = append(h.tickets, tk)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"ticket": map[string]any{"id": 4000 + len(h.tickets)}})
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *recHelpdesk) setDown(down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = down
}

func (h *recHelpdesk) received() []webhook.HelpdeskTicket {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.tickets)
}

// recEnv is Recovery over the fixture, with a helpdesk and a counting reset.
type recEnv struct {
	*drFixture
	mfa      *postgres.MFAStore
	helpdesk *recHelpdesk
	rec      *auth.Recovery
	resets   atomic.Int64
	resetErr atomic.Pointer[error]
	limiter  *auth.MemoryLimiter
}

func newRecEnv(t *testing.T) *recEnv {
	t.Helper()
	e := &recEnv{drFixture: newDRFixture(t), helpdesk: newRecHelpdesk(t)}
	e.mfa = postgres.NewMFAStore(e.pool)
	hd, err := webhook.NewHelpdesk(webhook.HelpdeskConfig{URL: e.helpdesk.srv.URL + "/api/tickets", Token: "helpdesk-token",
		IDField: "ticket.id", Client: e.helpdesk.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	e.limiter = auth.NewMemoryLimiter(e.clock.now)
	reset := func(ctx context.Context, userID string) error {
		if p := e.resetErr.Load(); p != nil {
			return *p
		}
		e.resets.Add(1)
		_, err := e.mfa.DeleteFactors(ctx, userID)
		return err
	}
	e.rec, err = auth.NewRecovery(auth.RecoveryConfig{PublicURL: "https://auth.hestami.example/", CodeKey: []byte("recovery code key: 32 bytes at least")},
		postgres.NewRecoveryStore(e.pool), e.mfa, e.mailer, hd, e.limiter, reset, e.svc.Audit, e.clock.now, e.logger())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// lostUser is a user with a confirmed factor, backup codes and (if secondary is
// set) a verified secondary email.
func (e *recEnv) lostUser(t *testing.T, typ auth.UserType, secondary string, roles ...string) *auth.User {
	t.Helper()
	u := e.user(t, typ, roles...)
	ctx := t.Context()
	f := &auth.Factor{UserID: u.ID, Method: auth.MethodTOTP, Label: "Authenticator app", Data: []byte("sealed"), Confirmed: true}
	if err := e.mfa.CreateFactor(ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := e.mfa.ReplaceBackupCodes(ctx, u.ID, []string{"h1", "h2"}, e.clock.now()); err != nil {
		t.Fatal(err)
	}
	if secondary != "" {
		if err := e.mfa.SaveMFASettings(ctx, &auth.MFASettings{UserID: u.ID, SecondaryEmail: secondary, SecondaryEmailVerified: true}); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

var recCodeRE = regexp.MustCompile(`(?m)^(\d{8}) is your Hestami account recovery code`)

// codeFor returns the recovery code last mailed to addr.
func (e *recEnv) codeFor(t *testing.T, addr string) string {
	t.Helper()
	msgs := e.smtp.Messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		if !slices.Contains(msgs[i].To, addr) {
			continue
		}
		if m := recCodeRE.FindStringSubmatch(msgs[i].Parse(t).Body); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no recovery code was mailed to %s", addr)
	return ""
}

var recLinkRE = regexp.MustCompile(`https://auth\.hestami\.example/mfa/recover\?token=(\S+)`)

// linkToken returns the token of the recovery link last mailed to addr.
func (e *recEnv) linkToken(t *testing.T, addr string) string {
	t.Helper()
	msgs := e.smtp.Messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		if !slices.Contains(msgs[i].To, addr) {
			continue
		}
		if m := recLinkRE.FindStringSubmatch(msgs[i].Parse(t).Body); m != nil {
			tok, err := url.QueryUnescape(m[1])
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
	}
	t.Fatalf("no recovery link was mailed to %s", addr)
	return ""
}

func (e *recEnv) factorsLeft(t *testing.T, u *auth.User) (factors, codes int) {
	t.Helper()
	fs, err := e.mfa.Factors(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.mfa.BackupCodesLeft(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	return len(fs), n
}

func recWantCode(t *testing.T, what string, err error, code auth.Code, msg string) {
	t.Helper()
	if auth.ErrorCode(err) != code || !strings.Contains(auth.ErrorMessage(err), msg) {
		t.Errorf("%s: %v (code %s); want code %s saying %q", what, err, auth.ErrorCode(err), code, msg)
	}
}

// verified files a request for u and enters the right codes.
func (e *recEnv) verified(t *testing.T, u *auth.User, secondary string) *auth.RecoveryRequest {
	t.Helper()
	c := auth.Client{IP: "203.0.113.9", UserAgent: firefoxWindows}
	req, err := e.rec.Request(t.Context(), u, c, "lost my phone")
	if err != nil {
		t.Fatal(err)
	}
	second := ""
	if secondary != "" {
		second = e.codeFor(t, secondary)
	}
	req, err = e.rec.VerifyCodes(t.Context(), u, req.ID, e.codeFor(t, u.Email), second, c)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestRecoveryHappyPath(t *testing.T) {
	t.Parallel()
	e := newRecEnv(t)
	u := e.lostUser(t, auth.TypeStaff, "ana.backup@example.org", "staff:ops")
	support := e.user(t, auth.TypeStaff, "staff:support")
	c := auth.Client{IP: "203.0.113.9", UserAgent: firefoxWindows}
	ctx := t.Context()

	req, err := e.rec.Request(ctx, u, c, "  My phone was stolen; the authenticator app was on it.  ")
	if err != nil {
		t.Fatal(err)
	}
	if req.Status != auth.RecoveryVerifying || req.SecondaryEmail != "ana.backup@example.org" || req.Reason != "My phone was stolen; the authenticator app was on it." {
		t.Errorf("new request = %+v", *req)
	}
	primary, secondary := e.codeFor(t, u.Email), e.codeFor(t, "ana.backup@example.org")
	if primary == secondary {
		t.Errorf("both emails got the same code %s; want two different codes", primary)
	}
	if latest, err := e.rec.Latest(ctx, u); err != nil || latest.ID != req.ID {
		t.Errorf("Latest = %v, %v; want the request", latest, err)
	}
	// The primary code alone is not enough when a secondary email exists.
	_, err = e.rec.VerifyCodes(ctx, u, req.ID, primary, "", c)
	recWantCode(t, "VerifyCodes without the secondary code", err, auth.CodeUnauthorized, "4 tries left")

	req, err = e.rec.VerifyCodes(ctx, u, req.ID, " "+primary[:4]+"-"+primary[4:]+" ", secondary, c)
	if err != nil {
		t.Fatalf("VerifyCodes with both codes (typed with a dash and spaces): %v", err)
	}
	if req.Status != auth.RecoveryAwaitingApproval || req.TicketID != "4001" {
		t.Errorf("after verification: status %s, ticket %q; want awaiting approval with ticket 4001", req.Status, req.TicketID)
	}
	tickets := e.helpdesk.received()
	if len(tickets) != 1 {
		t.Fatalf("helpdesk got %d tickets, want 1", len(tickets))
	}
	tk := tickets[0]
	if tk.ExternalID != req.ID || tk.RequesterEmail != u.Email || !strings.Contains(tk.Subject, "Account recovery") ||
		!strings.Contains(tk.Body, "My phone was stolen") || !strings.Contains(tk.Body, "https://auth.hestami.example/admin/recovery") ||
		!strings.Contains(tk.Body, "ana.backup@example.org (code verified)") || !strings.Contains(tk.Body, "Firefox on Windows") {
		t.Errorf("ticket = %+v", tk)
	}
	if strings.Contains(tk.Body, primary) || strings.Contains(tk.Body, secondary) {
		t.Error("the ticket holds a recovery code")
	}

	pending, err := e.rec.Pending(ctx, support)
	if err != nil || len(pending) != 1 || pending[0].ID != req.ID || pending[0].TicketID != "4001" {
		t.Fatalf("Pending = %v, %v; want the request with its ticket", pending, err)
	}
	got, err := e.rec.Get(ctx, support, req.ID)
	if err != nil || got.ID != req.ID {
		t.Errorf("Get by support = %v, %v", got, err)
	}
	if _, err := e.rec.Get(ctx, e.user(t, auth.TypeOwner), req.ID); auth.ErrorCode(err) != auth.CodeNotFound {
		t.Errorf("Get by an unrelated user = %v, want CodeNotFound", err)
	}
	req, err = e.rec.Approve(ctx, support, req.ID, auth.Client{IP: "198.51.100.20", UserAgent: safariIPhone})
	if err != nil {
		t.Fatal(err)
	}
	if req.Status != auth.RecoveryApproved || req.DecidedBy != support.ID || !req.TokenExpiresAt.Equal(e.clock.now().Add(15*time.Minute)) {
		t.Errorf("approved request = %+v", *req)
	}
	token := e.linkToken(t, u.Email)
	if f, n := e.factorsLeft(t, u); f != 1 || n != 2 {
		t.Fatalf("before redeeming: %d factors, %d backup codes; the fixture has 1 and 2", f, n)
	}
	e.clock.add(15*time.Minute - time.Second)
	req, err = e.rec.Redeem(ctx, u, token, c)
	if err != nil {
		t.Fatalf("Redeem within 15 minutes: %v", err)
	}
	if req.Status != auth.RecoveryRedeemed || !req.RedeemedAt.Equal(e.clock.now()) {
		t.Errorf("redeemed request = %+v", *req)
	}
	if f, n := e.factorsLeft(t, u); f != 0 || n != 0 || e.resets.Load() != 1 {
		t.Errorf("after redeeming: %d factors, %d backup codes, %d resets; want everything reset once", f, n, e.resets.Load())
	}

	// Every step is in the audit log, in order.
	var steps []string
	for _, ev := range e.audit(t, u.ID, "") {
		if strings.HasPrefix(ev.Action, "recovery.") {
			steps = append(steps, ev.Action+" "+ev.Outcome)
		}
	}
	want := []string{
		"recovery.request success", "recovery.codes_sent success", "recovery.verify failure", "recovery.verify success",
		"recovery.ticket success", "recovery.approve success", "recovery.link_sent success", "recovery.redeem success",
	}
	if !slices.Equal(steps, want) {
		t.Errorf("audit trail of the recovery:\n got %q\nwant %q", steps, want)
	}
	approve := e.audit(t, u.ID, "recovery.approve")[0]
	if approve.ActorID != support.ID || approve.SubjectID != u.ID || approve.IP != "198.51.100.20" {
		t.Errorf("approval event: actor %s subject %s ip %s; want the approver acting on the user", approve.ActorID, approve.SubjectID, approve.IP)
	}
	for _, ev := range e.audit(t, "", "") {
		for _, secret := range []string{primary, secondary, token} {
			if strings.Contains(ev.Detail, secret) {
				t.Errorf("audit event %s holds a secret: %q", ev.Action, ev.Detail)
			}
		}
	}
	for _, secret := range []string{primary, secondary, token} {
		if strings.Contains(e.logged(), secret) {
			t.Errorf("the log holds a secret %q", secret)
		}
	}
	// After the recovery, a new request is possible again.
	if _, err := e.rec.Request(ctx, u, c, "again"); err != nil {
		t.Errorf("a new request after a completed one: %v", err)
	}
}

func TestRecoveryOnlyPrimaryEmail(t *testing.T) {
	t.Parallel()
	e := newRecEnv(t)
	u := e.lostUser(t, auth.TypeOwner, "")
	// An unverified secondary email gets nothing.
	if err := e.mfa.SaveMFASettings(t.Context(), &auth.MFASettings{UserID: u.ID, SecondaryEmail: "unverified@example.org"}); err != nil {
		t.Fatal(err)
	}
	c := auth.Client{IP: "203.0.113.9"}
	req, err := e.rec.Request(t.Context(), u, c, "")
	if err != nil {
		t.Fatal(err)
	}
	if req.SecondaryEmail != "" {
		t.Errorf("request names secondary email %q; an unverified one must not be used", req.SecondaryEmail)
	}
	for _, m := range e.smtp.Messages() {
		if slices.Contains(m.To, "unverified@example.org") {
			t.Error("a code went to an unverified secondary email")
		}
	}
	_, err = e.rec.VerifyCodes(t.Context(), u, req.ID, "00000000", "", c)
	recWantCode(t, "a wrong single code", err, auth.CodeUnauthorized, "That code is not right")
	if req, err = e.rec.VerifyCodes(t.Context(), u, req.ID, e.codeFor(t, u.Email), "ignored", c); err != nil || req.Status != auth.RecoveryAwaitingApproval {
		t.Fatalf("VerifyCodes with the one code = %v, %v", req, err)
	}
}

func TestRecoveryApprovalRules(t *testing.T) {
	t.Parallel()
	e := newRecEnv(t)
	admin := e.lostUser(t, auth.TypeStaff, "", "staff:admin") // an approver who lost their own factors
	support := e.user(t, auth.TypeStaff, "staff:support")
	ops := e.user(t, auth.TypeStaff, "staff:ops")
	owner := e.user(t, auth.TypeOwner, "owner")
	c := auth.Client{IP: "198.51.100.20"}
	ctx := t.Context()

	req := e.verified(t, admin, "")
	_, err := e.rec.Approve(ctx, admin, req.ID, c)
	recWantCode(t, "approving one's own request", err, auth.CodeForbidden, "your own recovery request")
	e.wantAudit(t, admin.ID, "recovery.approve", auth.OutcomeFailure, "own request")
	_, err = e.rec.Deny(ctx, admin, req.ID, "", c)
	recWantCode(t, "denying one's own request", err, auth.CodeForbidden, "your own recovery request")
	for _, who := range []*auth.User{ops, owner} {
		_, err := e.rec.Approve(ctx, who, req.ID, c)
		recWantCode(t, "approving without mfa:reset ("+strings.Join(who.Roles, ",")+")", err, auth.CodeForbidden, "mfa:reset")
		e.wantAudit(t, who.ID, "recovery.approve", auth.OutcomeFailure, "no mfa:reset permission")
		_, err = e.rec.Pending(ctx, who)
		recWantCode(t, "Pending without mfa:reset", err, auth.CodeForbidden, "mfa:reset")
	}
	disabled := *support
	disabled.Disabled = true
	_, err = e.rec.Approve(ctx, &disabled, req.ID, c)
	recWantCode(t, "approving as a disabled account", err, auth.CodeForbidden, "mfa:reset")
	_, err = e.rec.Approve(ctx, nil, req.ID, c)
	recWantCode(t, "approving signed out", err, auth.CodeUnauthorized, "signed out")
	_, err = e.rec.Approve(ctx, support, "00000000-0000-4000-8000-000000000000", c)
	recWantCode(t, "approving an unknown request", err, auth.CodeNotFound, "no recovery request")
	if _, n := e.factorsLeft(t, admin); n != 2 || len(e.smtp.Messages()) != 1 {
		t.Fatalf("a refused approval changed something: %d backup codes, %d mails", n, len(e.smtp.Messages()))
	}

	// Still verifying: nothing to decide yet.
	pendingUser := e.lostUser(t, auth.TypeOwner, "")
	early, err := e.rec.Request(ctx, pendingUser, c, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.rec.Approve(ctx, support, early.ID, c)
	recWantCode(t, "approving a request whose codes were not entered", err, auth.CodeConflict, "not awaiting approval")

	// Another staff member denies; then nobody can approve it.
	denied, err := e.rec.Deny(ctx, support, req.ID, "We could not reach you on the number on file.", c)
	if err != nil || denied.Status != auth.RecoveryDenied || denied.DecidedBy != support.ID {
		t.Fatalf("Deny = %+v, %v", denied, err)
	}
	e.wantAudit(t, admin.ID, "recovery.deny", auth.OutcomeSuccess, req.ID)
	if p := e.smtp.Last(t).Parse(t); !strings.Contains(p.Body, "declined") || !strings.Contains(p.Body, "number on file") {
		t.Errorf("denial email:\n%s", p.Body)
	}
	_, err = e.rec.Approve(ctx, support, req.ID, c)
	recWantCode(t, "approving a denied request", err, auth.CodeConflict, "Declined")
	if pending, err := e.rec.Pending(ctx, support); err != nil || len(pending) != 0 {
		t.Errorf("Pending after the decision = %v, %v; want none", pending, err)
	}
}

func TestRecoveryConcurrentDecisions(t *testing.T) {
	t.Parallel()
	e := newRecEnv(t)
	u := e.lostUser(t, auth.TypeOwner, "")
	req := e.verified(t, u, "")
	approvers := []*auth.User{e.user(t, auth.TypeStaff, "staff:support"), e.user(t, auth.TypeStaff, "staff:admin")}
	var wg sync.WaitGroup
	var ok, conflict atomic.Int64
	for i := range 8 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = e.rec.Approve(t.Context(), approvers[i%2], req.ID, auth.Client{})
			} else {
				_, err = e.rec.Deny(t.Context(), approvers[i%2], req.ID, "", auth.Client{})
			}
			switch {
			case err == nil:
				ok.Add(1)
			case auth.ErrorCode(err) == auth.CodeConflict:
				conflict.Add(1)
			default:
				t.Errorf("concurrent decision: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || conflict.Load() != 7 {
		t.Errorf("8 concurrent decisions: %d succeeded, %d conflicts; want exactly one decision", ok.Load(), conflict.Load())
	}
}

func TestRecoveryLinkExpiryAndReplay(t *testing.T) {
	t.Parallel()
	e := newRecEnv(t)
	u := e.lostUser(t, auth.TypeOwner, "")
	other := e.lostUser(t, auth.TypeOwner, "")
	support := e.user(t, auth.TypeStaff, "staff:support")
	c := auth.Client{IP: "203.0.113.9"}
	ctx := t.Context()

	// Expiry: at exactly 15 minutes the link is dead.
	req := e.verified(t, u, "")
	if _, err := e.rec.Approve(ctx, support, req.ID, c); err != nil {
		t.Fatal(err)
	}
	token := e.linkToken(t, u.Email)
	e.clock.add(15 * time.Minute)
	_, err := e.rec.Redeem(ctx, u, token, c)
	recWantCode(t, "redeeming at 15 minutes", err, auth.CodeInvalid, "expired")
	e.wantAudit(t, u.ID, "recovery.redeem", auth.OutcomeFailure, "link expired")
	if f, _ := e.factorsLeft(t, u); f != 1 || e.resets.Load() != 0 {
		t.Fatalf("an expired link reset the factors")
	}
	if got, _ := e.rec.Latest(ctx, u); got.Status != auth.RecoveryExpired {
		t.Errorf("status after the link expired: %s", got.Status)
	}
	e.clock.add(-time.Minute)
	_, err = e.rec.Redeem(ctx, u, token, c)
	recWantCode(t, "redeeming an expired link again, even with the clock back", err, auth.CodeUnauthorized, "not valid")

	// A new request; the link of one user does not work for another.
	req = e.verified(t, u, "")
	if _, err := e.rec.Approve(ctx, support, req.ID, c); err != nil {
		t.Fatal(err)
	}
	token = e.linkToken(t, u.Email)
	_, err = e.rec.Redeem(ctx, other, token, c)
	recWantCode(t, "another user redeeming the link", err, auth.CodeUnauthorized, "belongs to another account")
	e.wantAudit(t, other.ID, "recovery.redeem", auth.OutcomeFailure, "another user")
	for _, bad := range []string{"", "not-a-token", token + "x"} {
		_, err = e.rec.Redeem(ctx, u, bad, c)
		recWantCode(t, "redeeming "+bad, err, auth.CodeUnauthorized, "not valid")
	}

	// Replay: of 10 concurrent uses of the link, exactly one resets.
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for range 10 {
		wg.Go(func() {
			_, err := e.rec.Redeem(t.Context(), u, token, c)
			switch {
			case err == nil:
				ok.Add(1)
			case auth.ErrorCode(err) == auth.CodeUnauthorized:
				refused.Add(1)
			default:
				t.Errorf("concurrent Redeem: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || refused.Load() != 9 || e.resets.Load() != 1 {
		t.Fatalf("10 concurrent uses of one link: %d worked, %d refused, %d resets; want exactly one", ok.Load(), refused.Load(), e.resets.Load())
	}
	_, err = e.rec.Redeem(ctx, u, token, c)
	recWantCode(t, "replaying the link", err, auth.CodeUnauthorized, "used already")
	e.wantAudit(t, u.ID, "recovery.redeem", auth.OutcomeFailure, "is redeemed")
}

func TestRecoveryResetFailureGivesTheLinkBack(t *testing.T) {
	t.Parallel()
	e := newRecEnv(t)
	u := e.lostUser(t, auth.TypeOwner, "")
	support := e.user(t, auth.TypeStaff, "staff:support")
	req := e.verified(t, u, "")
	if _, err := e.rec.Approve(t.Context(), support, req.ID, auth.Client{}); err != nil {
		t.Fatal(err)
	}
	token := e.linkToken(t, u.Email)
	broken := errors.New("database went away")
	e.resetErr.Store(&broken)
	if _, err := e.rec.Redeem(t.Context(), u, token, auth.Client{}); !errors.Is(err, broken) {
		t.Fatalf("Redeem with a failing reset = %v, want the reset's error", err)
	}
	e.wantAudit(t, u.ID, "recovery.redeem", auth.OutcomeFailure, "reset failed")
	e.resetErr.Store(nil)
	if _, err := e.rec.Redeem(t.Context(), u, token, auth.Client{}); err != nil {
		t.Fatalf("Redeem after the reset works again (the link is still valid): %v", err)
	}
	if f, _ := e.factorsLeft(t, u); f != 0 {
		t.Errorf("%d factors left", f)
	}
}

func TestRecoveryWrongCodes(t *testing.T) {
	t.Parallel()
	e := newRecEnv(t)
	u := e.lostUser(t, auth.TypeOwner, "second@example.org")
	c := auth.Client{IP: "203.0.113.9"}
	ctx := t.Context()
	req, err := e.rec.Request(ctx, u, c, "")
	if err != nil {
		t.Fatal(err)
	}
	primary, secondary := e.codeFor(t, u.Email), e.codeFor(t, "second@example.org")
	wrong := func(code string) string {
		return string('0'+(code[0]-'0'+1)%10) + code[1:]
	}
	for i, tc := range []struct {
		name, p, s string
		code       auth.Code
		msg        string
	}{
		{"wrong primary", wrong(primary), secondary, auth.CodeUnauthorized, "4 tries left"},
		{"wrong secondary", primary, wrong(secondary), auth.CodeUnauthorized, "3 tries left"},
		{"codes swapped", secondary, primary, auth.CodeUnauthorized, "2 tries left"},
		{"both empty", "", "", auth.CodeUnauthorized, "1 try left"},
		{"fifth wrong", wrong(primary), wrong(secondary), auth.CodeForbidden, "last try"},
		{"right, but too late", primary, secondary, auth.CodeConflict, "too many wrong codes"},
	} {
		_, err := e.rec.VerifyCodes(ctx, u, req.ID, tc.p, tc.s, c)
		recWantCode(t, tc.name, err, tc.code, tc.msg)
		if i < 5 {
			e.wantAudit(t, u.ID, "recovery.verify", auth.OutcomeFailure, "wrong codes")
		}
	}
	if got, _ := e.rec.Latest(ctx, u); got.Status != auth.RecoveryFailed || got.Attempts != 5 {
		t.Errorf("after five wrong tries: status %s, %d attempts; want failed after 5", got.Status, got.Attempts)
	}
	if len(e.helpdesk.received()) != 0 {
		t.Error("a ticket was opened for a request whose codes were never right")
	}

	// Codes expire after 15 minutes.
	req, err = e.rec.Request(ctx, u, c, "")
	if err != nil {
		t.Fatal(err)
	}
	primary, secondary = e.codeFor(t, u.Email), e.codeFor(t, "second@example.org")
	e.clock.add(15 * time.Minute)
	_, err = e.rec.VerifyCodes(ctx, u, req.ID, primary, secondary, c)
	recWantCode(t, "codes at 15 minutes", err, auth.CodeInvalid, "expired")
	e.wantAudit(t, u.ID, "recovery.verify", auth.OutcomeFailure, "codes expired")

	// Someone else's request is not found.
	req, err = e.rec.Request(ctx, u, c, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.rec.VerifyCodes(ctx, e.user(t, auth.TypeOwner), req.ID, e.codeFor(t, u.Email), e.codeFor(t, "second@example.org"), c)
	recWantCode(t, "another user's request", err, auth.CodeNotFound, "no such recovery request")
	_, err = e.rec.VerifyCodes(ctx, u, "garbage", "1", "2", c)
	recWantCode(t, "an unknown request", err, auth.CodeNotFound, "no such recovery request")
}

func TestRecoveryConcurrentGuesses(t *testing.T) {
	t.Parallel()
	e := newRecEnv(t)
	u := e.lostUser(t, auth.TypeOwner, "")
	req, err := e.rec.Request(t.Context(), u, auth.Client{}, "")
	if err != nil {
		t.Fatal(err)
	}
	right := e.codeFor(t, u.Email)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			code := "0000000" + string(rune('0'+i%10))
			if code == right {
				code = "99999999"
			}
			_, _ = e.rec.VerifyCodes(t.Context(), u, req.ID, code, "", auth.Client{})
		})
	}
	wg.Wait()
	// 20 guesses at once still share the 5 tries: the right code is refused now.
	_, err = e.rec.VerifyCodes(t.Context(), u, req.ID, right, "", auth.Client{})
	if auth.ErrorCode(err) != auth.CodeConflict && auth.ErrorCode(err) != auth.CodeForbidden {
		t.Fatalf("the right code after 20 concurrent wrong guesses = %v; want it refused (no tries left)", err)
	}
	wrongTries := 0
	for _, ev := range e.audit(t, u.ID, "recovery.verify") {
		if strings.Contains(ev.Detail, "wrong codes") {
			wrongTries++
		}
	}
	if wrongTries != 5 {
		t.Errorf("%d guesses were compared; want exactly 5", wrongTries)
	}
}

func TestRecoveryRequestRules(t *testing.T) {
	t.Parallel()
	e := newRecEnv(t)
	u := e.lostUser(t, auth.TypeOwner, "")
	c := auth.Client{IP: "203.0.113.9"}
	ctx := t.Context()

	first, err := e.rec.Request(ctx, u, c, "")
	if err != nil {
		t.Fatal(err)
	}
	oldCode := e.codeFor(t, u.Email)
	second, err := e.rec.Request(ctx, u, c, "")
	if err != nil {
		t.Fatalf("a second request while the first waits for codes: %v; want it to replace the first", err)
	}
	e.wantAudit(t, u.ID, "recovery.cancelled", auth.OutcomeSuccess, first.ID)
	_, err = e.rec.VerifyCodes(ctx, u, first.ID, oldCode, "", c)
	recWantCode(t, "the replaced request's code", err, auth.CodeConflict, "Replaced")
	_, err = e.rec.VerifyCodes(ctx, u, second.ID, oldCode, "", c)
	recWantCode(t, "the replaced request's code on the new request", err, auth.CodeUnauthorized, "not right")
	if _, err := e.rec.VerifyCodes(ctx, u, second.ID, e.codeFor(t, u.Email), "", c); err != nil {
		t.Fatal(err)
	}
	_, err = e.rec.Request(ctx, u, c, "")
	recWantCode(t, "a request while one awaits approval", err, auth.CodeConflict, "waiting for approval by support (ticket 4001)")

	// Rate limit: 3 requests per user per hour (the two above, and the refused
	// one, count).
	_, err = e.rec.Request(ctx, u, c, "")
	recWantCode(t, "a fourth request in an hour", err, auth.CodeRateLimited, "Too many recovery requests")
	e.wantAudit(t, u.ID, "recovery.request", auth.OutcomeFailure, "rate limited: user")
	// Per IP: 10 per hour, across accounts.
	for i := range 10 {
		_, err = e.rec.Request(ctx, e.lostUser(t, auth.TypeOwner, ""), auth.Client{IP: "198.51.100.66"}, "")
		if i < 10 && err != nil {
			t.Fatalf("request %d from one IP: %v", i+1, err)
		}
	}
	_, err = e.rec.Request(ctx, e.lostUser(t, auth.TypeOwner, ""), auth.Client{IP: "198.51.100.66"}, "")
	recWantCode(t, "the eleventh request from one IP", err, auth.CodeRateLimited, "Try again in")

	// The mail server down: the person is told to try again.
	e.smtp.SetDown(true)
	_, err = e.rec.Request(ctx, e.lostUser(t, auth.TypeOwner, ""), c, "")
	recWantCode(t, "a request with the mail server down", err, auth.CodeUnavailable, "could not send")
}

func TestRecoveryHelpdeskDown(t *testing.T) {
	t.Parallel()
	e := newRecEnv(t)
	u := e.lostUser(t, auth.TypeOwner, "")
	support := e.user(t, auth.TypeStaff, "staff:support")
	e.helpdesk.setDown(true)
	req := e.verified(t, u, "")
	if req.Status != auth.RecoveryAwaitingApproval || req.TicketID != "" {
		t.Errorf("with the helpdesk down: status %s, ticket %q; want awaiting approval without a ticket", req.Status, req.TicketID)
	}
	e.wantAudit(t, u.ID, "recovery.ticket", auth.OutcomeFailure, "helpdesk refused")
	if pending, err := e.rec.Pending(t.Context(), support); err != nil || len(pending) != 1 {
		t.Errorf("Pending = %v, %v; staff must still see the request", pending, err)
	}
	if !strings.Contains(e.logged(), "create recovery ticket") {
		t.Error("the helpdesk failure is not logged")
	}
	if strings.Contains(e.logged(), "helpdesk-token") {
		t.Error("the helpdesk token is in the log")
	}
}

func TestNewRecoveryRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  auth.RecoveryConfig
		want string
	}{
		{"short key", auth.RecoveryConfig{PublicURL: "https://a.example", CodeKey: []byte("short")}, "at least 32"},
		{"no public URL", auth.RecoveryConfig{CodeKey: []byte("recovery code key: 32 bytes at least")}, "public URL"},
	} {
		if _, err := auth.NewRecovery(tc.cfg, nil, nil, nil, nil, nil, nil, nil, time.Now, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewRecovery = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
