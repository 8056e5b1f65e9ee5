package authhttp_test

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
	"github.com/hestami/hestami/oidcprovider"
	"github.com/hestami/hestami/webauthn/webauthntest"
)

// forwardedFor makes the browser's requests come through a trusted proxy on
// behalf of the address ip holds.
type forwardedFor struct {
	ip atomic.Value // string
}

func (f *forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.ip.Load().(string))
	return http.DefaultTransport.RoundTrip(r)
}

func (b *browser) from(ip string) *forwardedFor {
	f := &forwardedFor{}
	f.ip.Store(ip)
	b.c.Transport = f
	return f
}

// TestMFAIPRules: staff may only sign in, and go on, from the office network;
// other accounts are not concerned; refusals are audited.
func TestMFAIPRules(t *testing.T) {
	t.Parallel()
	rule, err := auth.ParseIPRule("for=staff; allow=10.0.0.0/8; network=the office or VPN network")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := auth.NewIPRules(rule)
	if err != nil {
		t.Fatal(err)
	}
	m := newMFAEnv(t, mfaEnvOptions{
		trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		tweak:          func(o *authhttp.MFAOptions) { o.IPRules = rules },
	})
	staff, prof := m.newUser(t, auth.TypeStaff, "ivo@hestami.example")

	// From home: refused at sign-in, and no session is left.
	home := m.browser()
	home.from("203.0.113.9")
	p := home.signIn(prof, "", "")
	if p.StatusCode != http.StatusForbidden || !strings.Contains(text(p.body), "the office or VPN network") {
		t.Fatalf("a staff sign-in from home: %d\n%s", p.StatusCode, text(p.body))
	}
	if home.cookie(authhttp.SessionCookie) != "" {
		t.Error("a refused sign-in left a session cookie")
	}
	if ss, _ := m.svc.Sessions(t.Context(), staff.ID); len(ss) != 0 {
		t.Errorf("a refused sign-in left %d sessions", len(ss))
	}

	// From the office: in; moving out mid-session is refused.
	office := m.browser()
	addr := office.from("10.1.2.3")
	mustAt(t, office.signIn(prof, "", ""), "/mfa/setup")
	mustAt(t, office.get("/account"), "/account")
	addr.ip.Store("198.51.100.7")
	if p := office.get("/account"); p.StatusCode != http.StatusForbidden {
		t.Fatalf("the session from outside the office: %d", p.StatusCode)
	}
	if p := office.api("GET", "/api/v1/me", ""); p.StatusCode != http.StatusForbidden || !strings.Contains(p.body, "office or VPN") {
		t.Fatalf("the API from outside the office: %d %s", p.StatusCode, p.body)
	}
	if !m.audited(t, staff.ID, "ip.refuse", auth.OutcomeFailure) {
		t.Error("the refusals are not in the audit log")
	}
	// Signing out still works from there.
	addr.ip.Store("10.1.2.3")
	form := formFields(t, office.get("/account").body, "/signout")
	addr.ip.Store("198.51.100.7")
	if p := office.post("/signout", form); p.Request.URL.Path != "/signin" {
		t.Errorf("signing out from outside the office ended at %s (%d)", p.Request.URL, p.StatusCode)
	}
	if ss, _ := m.svc.Sessions(t.Context(), staff.ID); len(ss) != 0 {
		t.Errorf("%d sessions left after signing out", len(ss))
	}

	// Owners are not concerned.
	owner := m.browser()
	owner.from("203.0.113.9")
	mustAt(t, owner.signIn(profile("alpha", randomID(), "oona@example.com"), auth.TypeOwner, ""), "/mfa/setup")
}

// TestMFASuspiciousSignIn: a burst of wrong codes on the account makes even the
// remembered device answer a challenge (its trust is dropped), and the owner
// gets an email saying why; a sign-in from a new browser gets the new-device
// email.
func TestMFASuspiciousSignIn(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{risk: auth.RiskConfig{BurstFailures: 3}})
	a, prof, secret, _ := m.enrolOwner(t, "ursula@example.com")
	u := m.userByEmail(t, "ursula@example.com")
	a.post("/signout", formFields(t, a.get("/account").body, "/signout"))
	p := a.signIn(prof, "", "")
	p = a.submit(p, "/mfa/challenge", url.Values{"code": {m.code(t, secret, 1)}, "remember": {"on"}})
	mustAt(t, p, "/account")
	a.post("/signout", formFields(t, p.body, "/signout"))

	// Someone else, with the owner's provider account, guesses codes.
	b := m.browser()
	p = b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/challenge")
	if mails := m.mailTo(t, "ursula@example.com"); len(mails) == 0 || !strings.Contains(mails[len(mails)-1].Subject, "New sign-in") {
		t.Fatalf("no new-device email for the new browser: %v", mails)
	}
	for _, c := range []string{"100000", "200000", "300000"} {
		p = b.submit(p, "/mfa/challenge", url.Values{"code": {c}})
	}

	// The owner's remembered browser is asked too, and told why.
	p = a.signIn(prof, "", "")
	mustAt(t, p, "/mfa/challenge")
	if got := text(p.body); !strings.Contains(got, "Enter your second factor") {
		t.Errorf("the challenge after the burst:\n%s", got)
	}
	if a.cookie(authhttp.TrustCookie) != "" {
		t.Error("the trust cookie survived the suspicious sign-in")
	}
	mails := m.mailTo(t, "ursula@example.com")
	last := mails[len(mails)-1]
	if last.Subject != "Unusual sign-in to your Hestami account" || !strings.Contains(last.Body, "many failed attempts") || !strings.Contains(last.Body, "/account/security") {
		t.Fatalf("the suspicious sign-in email: %q\n%s", last.Subject, last.Body)
	}
	if !m.audited(t, u.ID, "signin.risk", auth.OutcomeSuccess) || !m.audited(t, u.ID, "signin.risk.notify", auth.OutcomeSuccess) {
		t.Error("the risk and its email are not in the audit log")
	}
	m.clock.Advance(30 * time.Second) // the next code: the last one was used
	p = a.submit(p, "/mfa/challenge", url.Values{"code": {m.code(t, secret, 1)}})
	mustAt(t, p, "/account")
}

// TestMFAEmailCodes: a secondary email added from the security page (its code
// proves it) then answers a challenge by email.
func TestMFAEmailCodes(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	b, prof, _, _ := m.enrolOwner(t, "emma@example.com")
	p := b.get("/account/security")
	p = b.get("/mfa/setup?return_to=/account/security")
	mustAt(t, p, "/mfa/setup")
	p = b.submit(p, "/mfa/setup/email", url.Values{"email": {"emma.backup@example.net"}})
	mustAt(t, p, "/mfa/setup/email")
	if got := text(p.body); !strings.Contains(got, "We sent a code to") {
		t.Fatalf("after asking for the email code:\n%s", got)
	}
	p = b.submit(p, "/mfa/setup/email/confirm", url.Values{"code": {m.lastCode(t, "emma.backup@example.net")}})
	mustAt(t, p, "/account/security")
	if got := text(p.body); !strings.Contains(got, "Email code") {
		t.Fatalf("the security page after adding the email:\n%s", got)
	}
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))

	p = b.signIn(prof, "", "")
	p = b.get("/mfa/challenge?method=email&return_to=/account")
	p = b.submit(p, "/mfa/challenge/send", nil)
	if got := text(p.body); p.StatusCode != 200 || !strings.Contains(got, "We sent a code to e") {
		t.Fatalf("after sending the challenge code: %d\n%s", p.StatusCode, got)
	}
	p = b.submit(p, "/mfa/challenge", url.Values{"code": {m.lastCode(t, "emma.backup@example.net")}})
	mustAt(t, p, "/account")
	p = b.api("GET", "/api/v1/me/assurance", "")
	if !strings.Contains(p.body, `"second_factors":["email"]`) {
		t.Errorf("assurance after an email code: %s", p.body)
	}
}

// TestMFAPasskeys: a passkey added through the API (a software authenticator
// plays the browser) answers the challenge through the pages' passkey
// endpoints, which follow webauthn.Script's contract.
func TestMFAPasskeys(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	_, prof := m.newUser(t, auth.TypeStaff, "pia@hestami.example")
	key := webauthntest.New(m.base)
	b := m.browser()
	mustAt(t, b.signIn(prof, "", ""), "/mfa/setup")

	p := b.api("POST", "/api/v1/me/factors/passkey/begin", `{"name":"Test key"}`)
	var begin struct {
		Ceremony string          `json:"ceremony"`
		Options  json.RawMessage `json:"options"`
	}
	if p.StatusCode != 200 || json.Unmarshal([]byte(p.body), &begin) != nil || begin.Ceremony == "" {
		t.Fatalf("passkey begin: %d %s", p.StatusCode, p.body)
	}
	cred, err := key.Create(begin.Options)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"ceremony": begin.Ceremony, "response": json.RawMessage(cred)})
	p = b.api("POST", "/api/v1/me/factors/passkey/finish", string(body))
	var added struct {
		Assurance   struct{ AAL int } `json:"assurance"`
		BackupCodes []string          `json:"backup_codes"`
	}
	if p.StatusCode != http.StatusCreated || json.Unmarshal([]byte(p.body), &added) != nil || added.Assurance.AAL != 2 || len(added.BackupCodes) != 10 {
		t.Fatalf("passkey finish: %d %s", p.StatusCode, p.body)
	}
	p = b.api("GET", "/api/v1/me/factors", "")
	if !strings.Contains(p.body, `"method":"hwk"`) || !strings.Contains(p.body, `"label":"Test key"`) || !strings.Contains(p.body, `"action":"allow"`) {
		t.Fatalf("factors after the passkey: %s", p.body)
	}
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))

	// The challenge page offers the passkey first, with its script.
	p = b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/challenge")
	if !strings.Contains(p.body, `data-webauthn-begin="/mfa/challenge/passkey/begin"`) || !strings.Contains(p.body, `src="/assets/webauthn.js"`) {
		t.Fatalf("the challenge page has no passkey form:\n%s", p.body)
	}
	if s := b.get("/assets/webauthn.js"); s.StatusCode != 200 || !strings.HasPrefix(s.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /assets/webauthn.js: %d %s", s.StatusCode, s.Header.Get("Content-Type"))
	}
	// What the script does: the begin endpoint with the form's fields...
	form := formFields(t, p.body, "/mfa/challenge/passkey/finish")
	req, _ := http.NewRequest("POST", m.base+"/mfa/challenge/passkey/begin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Origin", m.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	p = b.do(req)
	if p.StatusCode != 200 || json.Unmarshal([]byte(p.body), &begin) != nil {
		t.Fatalf("the page's passkey begin: %d %s", p.StatusCode, p.body)
	}
	assertion, err := key.Get(begin.Options)
	if err != nil {
		t.Fatal(err)
	}
	// ... then the form itself, with the ceremony and the answer.
	form.Set("ceremony", begin.Ceremony)
	form.Set("response", string(assertion))
	form.Set("remember", "on")
	p = b.post("/mfa/challenge/passkey/finish", form)
	mustAt(t, p, "/account")
	if b.cookie(authhttp.TrustCookie) == "" {
		t.Error("\"remember this device\" with a passkey set no trust cookie")
	}
	p = b.api("GET", "/api/v1/me/assurance", "")
	if !strings.Contains(p.body, `"second_factors":["hwk"]`) || !strings.Contains(p.body, auth.ACRMFA) {
		t.Errorf("assurance after the passkey: %s", p.body)
	}
}

// TestMFAFrontendSignIn: the frontend's OpenID Connect sign-in of a user with
// an authenticator app goes through the challenge before the application gets
// its code, and the ID token says so: acr MFA, amr with otp.
func TestMFAFrontendSignIn(t *testing.T) {
	t.Parallel()
	const redirect = "http://localhost:3000/api/auth/callback/hestami"
	const secret = "frontend-secret-0123456789-abcdefghijklmnop"
	m := newMFAEnv(t, mfaEnvOptions{oidcClients: []oidcprovider.Client{{ID: "frontend", Name: "Hestami", Secret: secret, RedirectURIs: []string{redirect}}}})
	b, prof, totpSecret, _ := m.enrolOwner(t, "fran@example.com")
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))

	ctx := t.Context()
	provider, err := oidc.NewProvider(ctx, m.base+"/oidc")
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	conf := oauth2.Config{ClientID: "frontend", ClientSecret: secret, Endpoint: provider.Endpoint(), RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "email"}}
	state, nonce, verifier := auth.NewToken(), auth.NewToken(), oauth2.GenerateVerifier()
	b.stopAt = "http://localhost:3000/"
	p := b.get(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)))
	m.idp.setNext("alpha", prof)
	p = b.submit(p, "/signin/alpha", nil)
	mustAt(t, p, "/mfa/challenge")
	if rt := p.Request.URL.Query().Get("return_to"); !strings.HasPrefix(rt, "/oidc-login?id=") {
		t.Fatalf("the challenge returns to %q, want the application's sign-in", rt)
	}
	// The application's sign-in waits for the second factor.
	if p := b.get(p.Request.URL.Query().Get("return_to")); p.Request.URL.Path != "/mfa/challenge" {
		t.Fatalf("/oidc-login before the second factor ended at %s", p.Request.URL)
	}
	p = b.submit(p, "/mfa/challenge", url.Values{"code": {m.code(t, totpSecret, 1)}})
	back, err := url.Parse(p.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(back.String(), redirect+"?") || back.Query().Get("state") != state {
		t.Fatalf("after the challenge the browser went to %q (%d at %s)", p.Header.Get("Location"), p.StatusCode, p.Request.URL)
	}
	tok, err := conf.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "frontend"}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var claims struct {
		ACR      string   `json:"acr"`
		AMR      []string `json:"amr"`
		AuthTime int64    `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil || claims.ACR != auth.ACRMFA || strings.Join(claims.AMR, ",") != "alpha,otp" || claims.AuthTime == 0 {
		t.Fatalf("ID token claims %+v (%v), want acr %s and amr alpha,otp", claims, err, auth.ACRMFA)
	}
}

// TestMFAStaffSMSOnly: a text message is a fallback: a staff member whose only
// factor is SMS answers challenges with it but is still sent to the wizard,
// and is blocked after the deadline like one without any.
func TestMFAStaffSMSOnly(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	_, prof := m.newUser(t, auth.TypeStaff, "tom@hestami.example")
	b := m.browser()
	p := b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/setup")
	if strings.Contains(p.body, `action="/mfa/setup/sms"`) {
		t.Error("the staff wizard offers SMS as a first method")
	}
	p = b.api("POST", "/api/v1/me/factors/sms", `{"number": "07911 123456", "region": "GB"}`)
	var begun struct {
		Sent struct {
			FactorID string `json:"factor_id"`
			To       string `json:"to"`
		} `json:"sent"`
	}
	if p.StatusCode != http.StatusAccepted || json.Unmarshal([]byte(p.body), &begun) != nil || begun.Sent.FactorID == "" || strings.Contains(begun.Sent.To, "123456") {
		t.Fatalf("SMS enrolment: %d %s", p.StatusCode, p.body)
	}
	p = b.api("POST", "/api/v1/me/factors/sms/"+begun.Sent.FactorID+"/confirm", `{"code": "`+m.lastText(t, "+447911123456")+`"}`)
	if p.StatusCode != 200 || !strings.Contains(p.body, `"backup_codes"`) {
		t.Fatalf("SMS confirmation: %d %s", p.StatusCode, p.body)
	}
	p = b.api("GET", "/api/v1/me", "")
	if !strings.Contains(p.body, `"action":"setup"`) || !strings.Contains(p.body, "alone is not enough") {
		t.Fatalf("a staff member with SMS only: %s", p.body)
	}
	b.post("/signout", formFields(t, b.get("/account").body, "/signout"))

	p = b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/challenge")
	if !strings.Contains(p.body, `action="/mfa/challenge/send"`) {
		t.Fatalf("the challenge does not offer the text message first:\n%s", text(p.body))
	}
	p = b.submit(p, "/mfa/challenge/send", nil)
	p = b.submit(p, "/mfa/challenge", url.Values{"code": {m.lastText(t, "+447911123456")}})
	mustAt(t, p, "/mfa/setup")
	if got := text(p.body); !strings.Contains(got, "alone is not enough") || !strings.Contains(got, "Skip for now") {
		t.Fatalf("after the SMS challenge:\n%s", got)
	}

	m.clock.Advance(25 * time.Hour)
	p = b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/setup")
	if got := text(p.body); !strings.Contains(got, "Signing in is blocked") {
		t.Fatalf("a staff member with SMS only after the deadline:\n%s", got)
	}
}

// TestMFAReset: a staff member cannot remove their last factor; another staff
// member with mfa:reset resets it (with a reason; never their own): factors,
// devices and sessions go, and a new setup period starts.
func TestMFAReset(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	sam, prof := m.newUser(t, auth.TypeStaff, "sam@hestami.example")
	ada, adminProf := m.newUser(t, auth.TypeStaff, "ada@hestami.example", "staff:admin")
	ab := m.browser()
	_, p := m.setUpTOTP(t, ab, ab.signIn(adminProf, "", ""))
	backupCodes(t, p)
	b := m.browser()
	_, p = m.setUpTOTP(t, b, b.signIn(prof, "", ""))
	backupCodes(t, p)

	// The last factor of a staff member stays.
	p = b.get("/account/security")
	id := regexp.MustCompile(`action="(/account/security/factors/[0-9a-f-]+/remove)"`).FindStringSubmatch(p.body)
	if id == nil {
		t.Fatalf("no remove form:\n%s", p.body)
	}
	p = b.submit(p, id[1], nil)
	if p.StatusCode != http.StatusConflict || !strings.Contains(text(p.body), "must keep two-step verification") {
		t.Fatalf("removing the last factor: %d\n%s", p.StatusCode, text(p.body))
	}

	// Nobody resets their own.
	if p := ab.api("POST", "/api/v1/users/"+ada.ID+"/mfa/reset", `{"reason":"testing"}`); p.StatusCode != http.StatusForbidden {
		t.Errorf("resetting one's own MFA: %d %s", p.StatusCode, p.body)
	}
	p = ab.get("/admin/users/" + sam.ID)
	p = ab.submit(p, "/admin/users/"+sam.ID+"/mfa/reset", url.Values{"reason": {""}})
	if p.StatusCode != http.StatusBadRequest {
		t.Errorf("a reset without a reason: %d", p.StatusCode)
	}
	m.clock.Advance(30 * time.Hour) // Sam's first deadline is long gone
	p = ab.signIn(adminProf, "", "")
	mustAt(t, p, "/mfa/challenge")
	if p := ab.get("/admin/users/" + sam.ID); p.Request.URL.Path != "/mfa/challenge" {
		t.Fatalf("the admin page before the admin's own challenge: %s", p.Request.URL)
	}
	// Ada answers with a backup code (a new set, made here to know one) and
	// resets Sam.
	fresh, err := m.opts.Factors.GenerateBackupCodes(t.Context(), ada, auth.Client{})
	if err != nil {
		t.Fatal(err)
	}
	p = ab.get("/mfa/challenge?method=backup&return_to=/admin/users/" + sam.ID)
	p = ab.submit(p, "/mfa/challenge", url.Values{"code": {fresh[0]}})
	mustAt(t, p, "/admin/users/"+sam.ID)
	p = ab.submit(p, "/admin/users/"+sam.ID+"/mfa/reset", url.Values{"reason": {"Lost phone, confirmed by a call"}})
	mustAt(t, p, "/admin/users/"+sam.ID)
	if got := text(p.body); !strings.Contains(got, "Two-step verification is reset") {
		t.Fatalf("after the reset:\n%s", got)
	}
	if fs, _ := m.mfaStore.Factors(t.Context(), sam.ID); len(fs) != 0 {
		t.Errorf("%d factors left after the reset", len(fs))
	}
	if ss, _ := m.svc.Sessions(t.Context(), sam.ID); len(ss) != 0 {
		t.Errorf("%d sessions left after the reset", len(ss))
	}
	// Sam signs in to the wizard with a fresh 24 hours, not blocked.
	p = b.signIn(prof, "", "")
	mustAt(t, p, "/mfa/setup")
	if got := text(p.body); !strings.Contains(got, "24 hours left") {
		t.Fatalf("Sam after the reset:\n%s", got)
	}
	if !m.audited(t, sam.ID, "mfa.reset", auth.OutcomeSuccess) {
		t.Error("the reset is not in the audit log")
	}
}
