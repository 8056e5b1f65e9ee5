package authhttp_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
)

// TestMFAStaffGracePeriod: a new staff member lands on the setup wizard with
// the deadline at each sign-in and may skip it; after 24 hours sign-in is
// blocked (pages and API); another staff member's extension lets them in
// again, to the wizard with the new deadline.
func TestMFAStaffGracePeriod(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	staff, prof := m.newUser(t, auth.TypeStaff, "sam@hestami.example")
	_, adminProf := m.newUser(t, auth.TypeStaff, "ada@hestami.example", "staff:admin")

	// The administrator sets up an authenticator app on day one.
	ab := m.browser()
	p := ab.signIn(adminProf, "", "")
	mustAt(t, p, "/mfa/setup")
	adminSecret, p := m.setUpTOTP(t, ab, p)
	mustAt(t, p, "/mfa/setup/totp/confirm")
	backupCodes(t, p)

	b := m.browser()
	p = b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/setup")
	if got := text(p.body); !strings.Contains(got, "Staff accounts must use two-step verification") || !strings.Contains(got, "Set up by") || !strings.Contains(got, "24 hours left") {
		t.Fatalf("the wizard does not show the deadline:\n%s", got)
	}
	if p.Request.URL.Query().Get("return_to") != "/account" {
		t.Errorf("the wizard's return_to is %q", p.Request.URL.Query().Get("return_to"))
	}
	// Skippable before the deadline.
	if !strings.Contains(p.body, `href="/account">Skip for now`) {
		t.Fatalf("no way to skip the wizard before the deadline:\n%s", p.body)
	}
	mustAt(t, b.get("/account"), "/account")

	// A day later: blocked, everywhere.
	m.clock.Advance(24*time.Hour + time.Minute)
	p = b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/setup")
	if got := text(p.body); !strings.Contains(got, "Signing in is blocked") || !strings.Contains(got, "ask an administrator") {
		t.Fatalf("after the deadline:\n%s", got)
	}
	if strings.Contains(p.body, "/mfa/setup/totp") || strings.Contains(p.body, "Skip for now") {
		t.Errorf("the blocked page offers a setup or a skip:\n%s", p.body)
	}
	p = b.get("/account")
	if p.Request.URL.Path != "/mfa/setup" {
		t.Errorf("GET /account while blocked ended at %s", p.Request.URL)
	}
	p = b.api("GET", "/api/v1/me/sessions", "")
	var refusal struct {
		Error struct{ Code string } `json:"error"`
		MFA   struct {
			Action   string    `json:"action"`
			Deadline time.Time `json:"deadline"`
		} `json:"mfa"`
	}
	if err := json.Unmarshal([]byte(p.body), &refusal); err != nil || p.StatusCode != http.StatusForbidden || refusal.Error.Code != "mfa_blocked" || refusal.MFA.Action != "blocked" {
		t.Fatalf("API while blocked: %d %s", p.StatusCode, p.body)
	}
	p = b.api("GET", "/api/v1/me", "")
	if p.StatusCode != 200 || !strings.Contains(p.body, `"action":"blocked"`) {
		t.Errorf("GET /api/v1/me while blocked: %d %s", p.StatusCode, p.body)
	}
	// Staff cannot extend their own deadline (no permission), and the
	// administrator's own page refuses them too.
	p = b.api("PUT", "/api/v1/users/"+staff.ID+"/mfa/deadline", `{"deadline":"`+m.clock.Now().Add(48*time.Hour).Format(time.RFC3339)+`"}`)
	if p.StatusCode != http.StatusForbidden {
		t.Errorf("a blocked staff member extending their deadline: %d %s", p.StatusCode, p.body)
	}

	// The administrator (past the deadline too, but set up) signs in with a
	// code and extends it by two days.
	p = ab.signIn(adminProf, "", "")
	mustAt(t, p, "/mfa/challenge")
	p = ab.submit(p, "/mfa/challenge", url.Values{"code": {m.code(t, adminSecret, 1)}})
	mustAt(t, p, "/account")
	p = ab.get("/admin/users/" + staff.ID)
	mustAt(t, p, "/admin/users/"+staff.ID)
	if got := text(p.body); !strings.Contains(got, "signing in is blocked") {
		t.Errorf("the admin page does not say the user is blocked:\n%s", got)
	}
	p = ab.submit(p, "/admin/users/"+staff.ID+"/mfa/deadline", url.Values{"days": {"2"}})
	mustAt(t, p, "/admin/users/"+staff.ID)
	if !strings.Contains(text(p.body), "deadline is extended") {
		t.Errorf("after extending:\n%s", text(p.body))
	}
	if !m.audited(t, staff.ID, "mfa.deadline.extend", auth.OutcomeSuccess) {
		t.Error("the extension is not in the audit log")
	}

	p = b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/setup")
	if got := text(p.body); strings.Contains(got, "blocked") || !strings.Contains(got, "48 hours left") {
		t.Fatalf("after the extension:\n%s", got)
	}
	mustAt(t, b.get("/account"), "/account")
}

// TestMFAOwnerPrompt: a property owner without MFA is invited to set it up
// after signing in, and can say "not now"; nothing is blocked.
func TestMFAOwnerPrompt(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	b := m.browser()
	p := b.signIn(profile("alpha", randomID(), "olga@example.com"), auth.TypeOwner, "")
	mustAt(t, p, "/mfa/setup")
	if p.Request.URL.Query().Get("prompt") != "1" {
		t.Errorf("the prompt's URL is %s", p.Request.URL)
	}
	got := text(p.body)
	if !strings.Contains(got, "Protect your account") || !strings.Contains(p.body, `href="/account">Not now`) || strings.Contains(got, "Set up by") {
		t.Fatalf("the owner's prompt:\n%s", got)
	}
	mustAt(t, b.get("/account"), "/account")
	p = b.api("GET", "/api/v1/me", "")
	if p.StatusCode != 200 || !strings.Contains(p.body, `"action":"prompt"`) {
		t.Errorf("GET /api/v1/me: %d %s", p.StatusCode, p.body)
	}
	// The next sign-in prompts again; nothing else changes.
	if p := b.api("GET", "/api/v1/me/sessions", ""); p.StatusCode != 200 {
		t.Errorf("API without MFA: %d %s", p.StatusCode, p.body)
	}
}

// TestMFAProviderServiceType: a service provider offering a service type the
// policy lists must set up MFA before anything else; one who does not, need
// not.
func TestMFAProviderServiceType(t *testing.T) {
	t.Parallel()
	policy := auth.DefaultMFAPolicy()
	pp := policy.Types[auth.TypeProvider]
	pp.RequiredServiceTypes = []string{"gas", "locksmith"}
	policy.Types[auth.TypeProvider] = pp
	m := newMFAEnv(t, mfaEnvOptions{policy: &policy})

	// A plumber is let in.
	b := m.browser()
	mustAt(t, b.signIn(profile("alpha", randomID(), "pat@example.com"), auth.TypeProvider, ""), "/account")

	// A gas engineer is not, until set up.
	gb := m.browser()
	prof := profile("alpha", randomID(), "gus@example.com")
	mustAt(t, gb.signIn(prof, auth.TypeProvider, ""), "/account") // the account is new: no service types yet
	u := m.userByEmail(t, "gus@example.com")
	if err := m.mfaStore.SaveMFASettings(t.Context(), &auth.MFASettings{UserID: u.ID, ServiceTypes: []string{"gas"}}); err != nil {
		t.Fatal(err)
	}
	m.clock.Advance(authhttp.DefaultMFACacheTTL) // a change made elsewhere is seen after the cache's TTL

	p := gb.get("/account")
	mustAt(t, p, "/mfa/setup")
	if got := text(p.body); !strings.Contains(got, "required for the services you offer") || strings.Contains(got, "Skip for now") || strings.Contains(got, "Not now") {
		t.Fatalf("the wizard for a gas engineer:\n%s", got)
	}
	if p := gb.api("GET", "/api/v1/me/sessions", ""); p.StatusCode != http.StatusForbidden || !strings.Contains(p.body, `"mfa_required"`) || !strings.Contains(p.body, `"setup_required"`) {
		t.Fatalf("API before setup: %d %s", p.StatusCode, p.body)
	}
	_, p = m.setUpTOTP(t, gb, p)
	codes := backupCodes(t, p)
	if len(slices.Compact(slices.Sorted(slices.Values(codes)))) != auth.BackupCodeCount {
		t.Errorf("backup codes repeat: %v", codes)
	}
	// The codes page continues to where the sign-in was going.
	next := regexp.MustCompile(`class="choice continue" href="([^"]+)"`).FindStringSubmatch(p.body)
	if next == nil || next[1] != "/account" {
		t.Fatalf("the codes page continues to %v", next)
	}
	mustAt(t, gb.get(next[1]), "/account")
	if p := gb.api("GET", "/api/v1/me/sessions", ""); p.StatusCode != 200 {
		t.Errorf("API after setup: %d %s", p.StatusCode, p.body)
	}
	if !m.audited(t, u.ID, "mfa.totp.confirm", auth.OutcomeSuccess) || !m.audited(t, u.ID, "mfa.backup.generate", auth.OutcomeSuccess) {
		t.Error("the setup is not in the audit log")
	}
}

func (m *mfaEnv) userByEmail(t *testing.T, email string) *auth.User {
	t.Helper()
	us, err := m.store.UsersByEmail(t.Context(), email)
	if err != nil || len(us) != 1 {
		t.Fatalf("users with %s: %v %v", email, us, err)
	}
	return us[0]
}
