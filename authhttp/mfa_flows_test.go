package authhttp_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
)

// enrolOwner signs up a property owner and sets up an authenticator app from
// the prompt; it returns the browser (signed in, verified), the profile, the
// secret and the backup codes.
func (m *mfaEnv) enrolOwner(t *testing.T, email string) (*browser, auth.Profile, string, []string) {
	t.Helper()
	b := m.browser()
	prof := profile("alpha", randomID(), email)
	p := b.signIn(prof, auth.TypeOwner, "")
	mustAt(t, p, "/mfa/setup")
	secret, p := m.setUpTOTP(t, b, p)
	return b, prof, secret, backupCodes(t, p)
}

// TestMFAChallengeAndRememberedDevice: a second factor at each sign-in; a wrong
// code is refused on the page; "remember this device" skips it next time,
// until the device is revoked; a backup code works once.
func TestMFAChallengeAndRememberedDevice(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	b, prof, secret, codes := m.enrolOwner(t, "rita@example.com")
	u := m.userByEmail(t, "rita@example.com")
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))

	p := b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/challenge")
	got := text(p.body)
	if !strings.Contains(got, "Enter the code from your authenticator app") || !strings.Contains(got, "Remember this device for 30 days") ||
		!strings.Contains(got, "Backup code") || !strings.Contains(got, "Lost your phone") {
		t.Fatalf("the challenge page:\n%s", got)
	}
	// Nothing else is reachable before the second factor.
	if p := b.get("/account"); p.Request.URL.Path != "/mfa/challenge" || p.Request.URL.Query().Get("return_to") != "/account" {
		t.Fatalf("GET /account before the challenge ended at %s", p.Request.URL)
	}
	if p := b.api("GET", "/api/v1/me/identities", ""); p.StatusCode != http.StatusForbidden || !strings.Contains(p.body, `"accepted_methods":["otp","backup"]`) {
		t.Fatalf("API before the challenge: %d %s", p.StatusCode, p.body)
	}
	wrong := "000000"
	if m.code(t, secret, 1) == wrong {
		wrong = "111111"
	}
	p = b.submit(p, "/mfa/challenge", url.Values{"code": {wrong}})
	if p.StatusCode != http.StatusUnauthorized || p.Request.URL.Path != "/mfa/challenge" || !strings.Contains(text(p.body), "not right") {
		t.Fatalf("a wrong code: %d at %s\n%s", p.StatusCode, p.Request.URL, text(p.body))
	}
	before := b.cookie(authhttp.SessionCookie)
	p = b.submit(p, "/mfa/challenge", url.Values{"code": {m.code(t, secret, 1)}, "remember": {"on"}})
	mustAt(t, p, "/account")
	if b.cookie(authhttp.SessionCookie) == before {
		t.Error("the session cookie did not change when the session was elevated")
	}
	if b.cookie(authhttp.TrustCookie) == "" || b.cookie(auth.DeviceCookie) == "" {
		t.Fatal("no device or trust cookie after \"remember this device\"")
	}
	p = b.api("GET", "/api/v1/me/assurance", "")
	var a struct {
		AAL           int      `json:"aal"`
		ACR           string   `json:"acr"`
		Methods       []string `json:"methods"`
		MFAAgeSeconds *int64   `json:"mfa_age_seconds"`
	}
	if err := json.Unmarshal([]byte(p.body), &a); err != nil || a.AAL != 2 || a.ACR != auth.ACRMFA || strings.Join(a.Methods, ",") != "alpha,otp" || a.MFAAgeSeconds == nil {
		t.Fatalf("assurance after the challenge: %s", p.body)
	}

	// Remembered: the next sign-in needs no code.
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))
	mustAt(t, b.signIn(prof, "", ""), "/account")
	p = b.api("GET", "/api/v1/me/devices", "")
	var devs struct {
		Devices []struct {
			ID           string     `json:"id"`
			Current      bool       `json:"current"`
			TrustedUntil *time.Time `json:"trusted_until"`
			LastIP       string     `json:"last_ip"`
		} `json:"devices"`
	}
	if err := json.Unmarshal([]byte(p.body), &devs); err != nil || len(devs.Devices) != 1 || !devs.Devices[0].Current || devs.Devices[0].TrustedUntil == nil || devs.Devices[0].LastIP != "127.0.0.1" {
		t.Fatalf("devices: %s", p.body)
	}
	// The security page lists it; revoking it there asks again next time.
	p = b.get("/account/security")
	mustAt(t, p, "/account/security")
	if got := text(p.body); !strings.Contains(got, "(this device)") || !strings.Contains(got, "Authenticator app") || !strings.Contains(got, "10 of 10 backup codes left") {
		t.Fatalf("the security page:\n%s", got)
	}
	p = b.submit(p, "/account/security/devices/"+devs.Devices[0].ID+"/revoke", nil)
	// This session rested on the device: it is asked for the second factor
	// at once, and so is the next sign-in.
	mustAt(t, p, "/mfa/challenge")
	if b.cookie(authhttp.TrustCookie) != "" {
		t.Error("the trust cookie outlived the device's revocation")
	}
	b.post("/signout", formFields(t, p.body, "/signout"))
	p = b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/challenge")

	// A backup code instead, once.
	p = b.get("/mfa/challenge?method=backup&return_to=/account")
	p = b.submit(p, "/mfa/challenge", url.Values{"code": {strings.ToUpper(codes[3])}})
	mustAt(t, p, "/account")
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))
	b.signIn(prof, "", "")
	p = b.get("/mfa/challenge?method=backup&return_to=/account")
	p = b.submit(p, "/mfa/challenge", url.Values{"code": {codes[3]}})
	if p.StatusCode != http.StatusUnauthorized || !strings.Contains(text(p.body), "used already") {
		t.Fatalf("a backup code used twice: %d\n%s", p.StatusCode, text(p.body))
	}
	for _, action := range []string{"device.remember", "device.revoke", "mfa.totp.verify", "mfa.backup.verify"} {
		if !m.audited(t, u.ID, action, auth.OutcomeSuccess) {
			t.Errorf("no successful %s in the audit log", action)
		}
	}
	if !m.audited(t, u.ID, "mfa.totp.verify", auth.OutcomeFailure) {
		t.Error("the wrong code is not in the audit log")
	}
}

// TestMFALockout: after five wrong codes the account is paused from this
// address, even for the right code, with Retry-After; the pause ends by itself.
func TestMFALockout(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	b, prof, secret, _ := m.enrolOwner(t, "lou@example.com")
	u := m.userByEmail(t, "lou@example.com")
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))
	p := b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/challenge")
	right := m.code(t, secret, 1)
	wrong := []string{"000001", "000002", "000003", "000004", "000005"}
	for i, c := range wrong {
		if c == right {
			c = "999999"
		}
		p = b.submit(p, "/mfa/challenge", url.Values{"code": {c}})
		want := http.StatusUnauthorized
		if i == len(wrong)-1 {
			want = http.StatusTooManyRequests
		}
		if p.StatusCode != want {
			t.Fatalf("wrong code %d: %d, want %d\n%s", i+1, p.StatusCode, want, text(p.body))
		}
	}
	if got := text(p.body); !strings.Contains(got, "Too many wrong codes") {
		t.Errorf("the lock's message:\n%s", got)
	}
	p = b.submit(p, "/mfa/challenge", url.Values{"code": {right}})
	if p.StatusCode != http.StatusTooManyRequests || p.Header.Get("Retry-After") == "" {
		t.Fatalf("the right code while locked: %d, Retry-After %q", p.StatusCode, p.Header.Get("Retry-After"))
	}
	// The API is locked too.
	if p := b.api("POST", "/api/v1/mfa/challenge/verify", `{"method":"otp","code":"`+right+`"}`); p.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the API while locked: %d %s", p.StatusCode, p.body)
	}
	if !m.audited(t, u.ID, "mfa.lockout", auth.OutcomeFailure) {
		t.Error("the lock is not in the audit log")
	}
	m.clock.Advance(61 * time.Second)
	p = b.get("/mfa/challenge?return_to=/account")
	p = b.submit(p, "/mfa/challenge", url.Values{"code": {m.code(t, secret, 1)}})
	mustAt(t, p, "/account")
}

// TestMFAStepUp: POST /api/v1/stepup says whether the second factor is fresh
// (5 minutes), what to verify when it is not, and a verification through the
// API makes it fresh again.
func TestMFAStepUp(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	b, _, secret, _ := m.enrolOwner(t, "stella@example.com")
	type stepUp struct {
		Satisfied bool `json:"satisfied"`
		Assurance struct {
			MFAAgeSeconds *int64 `json:"mfa_age_seconds"`
		} `json:"assurance"`
		MFA *struct {
			Action          string   `json:"action"`
			AcceptedMethods []string `json:"accepted_methods"`
			Location        string   `json:"location"`
		} `json:"mfa"`
	}
	ask := func(body string) stepUp {
		t.Helper()
		p := b.api("POST", "/api/v1/stepup", body)
		var s stepUp
		if p.StatusCode != 200 || json.Unmarshal([]byte(p.body), &s) != nil {
			t.Fatalf("POST /api/v1/stepup: %d %s", p.StatusCode, p.body)
		}
		return s
	}
	m.clock.Advance(4*time.Minute + 59*time.Second)
	if s := ask(""); !s.Satisfied || s.MFA != nil || s.Assurance.MFAAgeSeconds == nil || *s.Assurance.MFAAgeSeconds != 299 {
		t.Fatalf("step-up at 4:59: %+v", s)
	}
	if s := ask(`{"max_age": 60}`); s.Satisfied || s.MFA == nil || s.MFA.Action != "challenge" {
		t.Fatalf("step-up with max_age 60 at 4:59: %+v", s)
	}
	// An owner's sensitive information needs no more than the session has.
	if s := ask(`{"purpose": "sensitive", "max_age": 60}`); !s.Satisfied {
		t.Fatalf("sensitive information for an owner: %+v", s)
	}
	if p := b.api("POST", "/api/v1/stepup", `{"purpose": "payroll"}`); p.StatusCode != http.StatusBadRequest {
		t.Errorf("an unknown purpose: %d %s", p.StatusCode, p.body)
	}
	m.clock.Advance(2 * time.Second)
	if s := ask(`{"purpose": "high-value"}`); s.Satisfied || s.MFA == nil || s.MFA.Action != "challenge" {
		t.Fatalf("a high-value transaction at 5:01: %+v", s)
	}
	s := ask(`{"return_to": "/account"}`)
	if s.Satisfied || s.MFA == nil || s.MFA.Action != "challenge" || strings.Join(s.MFA.AcceptedMethods, ",") != "otp,backup" ||
		!strings.HasPrefix(s.MFA.Location, "/mfa/challenge?") || !strings.Contains(s.MFA.Location, "purpose=step-up") {
		t.Fatalf("step-up at 5:01: %+v", s)
	}
	// Pages and the API still work: step-up is asked for, not imposed.
	if p := b.api("GET", "/api/v1/me/sessions", ""); p.StatusCode != 200 {
		t.Fatalf("API with an old second factor: %d", p.StatusCode)
	}
	// Changing factors needs a fresh one.
	if p := b.api("POST", "/api/v1/me/backup-codes", ""); p.StatusCode != http.StatusForbidden || !strings.Contains(p.body, "mfa_required") {
		t.Fatalf("regenerating codes with an old second factor: %d %s", p.StatusCode, p.body)
	}
	p := b.api("POST", "/api/v1/mfa/challenge/verify", `{"method":"otp","code":"`+m.code(t, secret, 0)+`"}`)
	if p.StatusCode != 200 {
		t.Fatalf("verify: %d %s", p.StatusCode, p.body)
	}
	if s := ask(""); !s.Satisfied || *s.Assurance.MFAAgeSeconds != 0 {
		t.Fatalf("step-up after verifying: %+v", s)
	}
	if p := b.api("POST", "/api/v1/me/backup-codes", ""); p.StatusCode != 200 || strings.Count(p.body, "-") < 20 {
		t.Fatalf("regenerating codes after a step-up: %d %s", p.StatusCode, p.body)
	}
	// The step-up page: a stale session is sent through the challenge and back.
	m.clock.Advance(6 * time.Minute)
	p = b.get("/mfa/challenge?purpose=step-up&return_to=/account/security")
	mustAt(t, p, "/mfa/challenge")
	if strings.Contains(p.body, "Remember this device") {
		t.Error("a step-up offers to remember the device")
	}
	p = b.submit(p, "/mfa/challenge", url.Values{"code": {m.code(t, secret, 1)}})
	mustAt(t, p, "/account/security")
}

var linkRE = regexp.MustCompile(`https?://[^\s]+/mfa/recover\?token=[A-Za-z0-9_-]+`)

// TestMFARecovery: a staff member who lost every factor files a recovery
// request, proves their email, another staff member approves, and the emailed
// single-use link resets the factors so they set up again.
func TestMFARecovery(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	sam, prof := m.newUser(t, auth.TypeStaff, "sam@hestami.example", "staff:support")
	_, adminProf := m.newUser(t, auth.TypeStaff, "ada@hestami.example", "staff:admin")
	ab := m.browser()
	p := ab.signIn(adminProf, "", "")
	_, p = m.setUpTOTP(t, ab, p)
	backupCodes(t, p)
	b := m.browser()
	p = b.signIn(prof, "", "")
	_, p = m.setUpTOTP(t, b, p)
	backupCodes(t, p)
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))

	// Sam lost the phone and the codes.
	p = b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/challenge")
	p = b.get("/mfa/recovery")
	mustAt(t, p, "/mfa/recovery")
	p = b.submit(p, "/mfa/recovery", url.Values{"reason": {"Phone stolen, backup codes were in it"}})
	mustAt(t, p, "/mfa/recovery")
	if got := text(p.body); !strings.Contains(got, "We emailed you the codes") || !strings.Contains(got, "sam@hestami.example") {
		t.Fatalf("after requesting:\n%s", got)
	}
	p = b.submit(p, "/mfa/recovery/verify", url.Values{"primary_code": {m.lastCode(t, "sam@hestami.example")}})
	mustAt(t, p, "/mfa/recovery")
	if got := text(p.body); !strings.Contains(got, "Awaiting approval by support") {
		t.Fatalf("after the codes:\n%s", got)
	}
	// Sam, still without a second factor, cannot reach the approvals.
	if p := b.get("/admin/recovery"); p.Request.URL.Path != "/mfa/challenge" {
		t.Fatalf("GET /admin/recovery without a second factor ended at %s", p.Request.URL)
	}

	// Ada sees it on Sam's page, and approves.
	if got := text(ab.get("/admin/users/" + sam.ID).body); !strings.Contains(got, "Awaiting approval by support") || !strings.Contains(got, "decide on it") {
		t.Errorf("Sam's admin page does not show the request:\n%s", got)
	}
	p = ab.get("/admin/recovery")
	mustAt(t, p, "/admin/recovery")
	if !strings.Contains(text(p.body), "Phone stolen") {
		t.Fatalf("the pending requests:\n%s", text(p.body))
	}
	id := regexp.MustCompile(`action="/admin/recovery/([0-9a-f-]{36})/approve"`).FindStringSubmatch(p.body)
	if id == nil {
		t.Fatalf("no approve form:\n%s", p.body)
	}
	p = ab.submit(p, "/admin/recovery/"+id[1]+"/approve", nil)
	mustAt(t, p, "/admin/recovery")
	mails := m.mailTo(t, "sam@hestami.example")
	link := linkRE.FindString(mails[len(mails)-1].Body)
	if link == "" {
		t.Fatalf("no recovery link in the mail:\n%s", mails[len(mails)-1].Body)
	}
	lu, _ := url.Parse(link)

	// Sam opens the link (a GET changes nothing), then resets.
	p = b.get(lu.RequestURI())
	mustAt(t, p, "/mfa/recover")
	p = b.submit(p, "/mfa/recover", nil)
	mustAt(t, p, "/mfa/setup")
	if got := text(p.body); !strings.Contains(got, "Set up by") || strings.Contains(got, "Already set up") {
		t.Fatalf("after the reset:\n%s", got)
	}
	if fs, _ := m.mfaStore.Factors(t.Context(), sam.ID); len(fs) != 0 {
		t.Errorf("%d factors left after the reset", len(fs))
	}
	// The link worked once.
	p = b.get(lu.RequestURI())
	p = b.submit(p, "/mfa/recover", nil)
	if p.StatusCode != http.StatusUnauthorized {
		t.Errorf("the link used twice: %d\n%s", p.StatusCode, text(p.body))
	}
	_, p = m.setUpTOTP(t, b, b.get("/mfa/setup"))
	backupCodes(t, p)
	for _, action := range []string{"recovery.request", "recovery.verify", "recovery.approve", "recovery.redeem"} {
		if !m.audited(t, sam.ID, action, auth.OutcomeSuccess) {
			t.Errorf("no successful %s in the audit log", action)
		}
	}
}
