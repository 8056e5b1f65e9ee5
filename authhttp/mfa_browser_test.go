package authhttp_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hestami/hestami/auth"
)

// TestMFAInRealBrowser: in Chromium, a new staff member signs in and lands on
// the setup wizard with the deadline, sets up an authenticator app from the
// key shown (the QR code image loads under the CSP), sees the backup codes,
// signs out, signs in with a code and "remember this device", signs in again
// without a code, revokes the device on the security page, and is asked again.
func TestMFAInRealBrowser(t *testing.T) {
	t.Parallel()
	m := newMFAEnv(t, mfaEnvOptions{})
	staff, prof := m.newUser(t, auth.TypeStaff, "sara@hestami.example", "staff:support")
	m.idp.setNext("alpha", prof)
	ctx := chromium(t)
	shot := func(name string) {
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(filepath.Join(t.ArtifactDir(), name+".png"), png, 0o644)
		}
	}
	path := func() string { return eval[string](t, ctx, `location.pathname`) }
	signIn := func(what, waitFor string) {
		t.Helper()
		step(t, ctx, what+": the sign-in page", chromedp.Navigate(m.base+"/signin"), chromedp.WaitVisible(chromedp.CSS(`form[action="/signin/alpha"] button`)))
		step(t, ctx, what+": sign in with Alpha", chromedp.Click(chromedp.CSS(`form[action="/signin/alpha"] button`)), chromedp.WaitVisible(chromedp.CSS(waitFor)))
	}
	signOut := func(what string) {
		t.Helper()
		step(t, ctx, what, chromedp.Click(chromedp.CSS(`form[action="/signout"] button`)), chromedp.WaitVisible(chromedp.CSS(`form[action="/signin/alpha"]`)))
	}

	// First sign-in: the wizard, with the deadline.
	signIn("first sign-in", `form[action="/mfa/setup/totp"] button`)
	if p := path(); p != "/mfa/setup" {
		t.Fatalf("the first sign-in of a staff member ended at %s, want the setup wizard", p)
	}
	if body := eval[string](t, ctx, `document.body.innerText`); !strings.Contains(body, "Set up by") || !strings.Contains(body, "24 hours left") {
		t.Fatalf("the wizard does not show the deadline:\n%s", body)
	}
	shot("mfa-wizard")

	// The authenticator app, from the key shown.
	step(t, ctx, "set up an authenticator app", chromedp.Click(chromedp.CSS(`form[action="/mfa/setup/totp"] button`)), chromedp.WaitVisible(chromedp.CSS(`#totp-secret`)))
	shown := eval[string](t, ctx, `document.querySelector("#totp-secret").textContent`)
	secret := strings.ReplaceAll(shown, " ", "")
	if len(secret) < 16 {
		t.Fatalf("the key shown is %q", shown)
	}
	qr, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(async () => {
		const i = document.querySelector("img.qr");
		if (!i.complete) await new Promise(r => i.onload = i.onerror = r);
		return i.naturalWidth >= 200;
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || !qr {
		t.Errorf("the QR code image did not load (%v)", err)
	}
	shot("mfa-totp")
	step(t, ctx, "confirm the first code",
		chromedp.SendKeys(chromedp.CSS(`#code`), m.code(t, secret, 0)),
		chromedp.Click(chromedp.CSS(`form[action="/mfa/setup/totp/confirm"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`ol.backup-codes`)))
	if n := eval[float64](t, ctx, `document.querySelectorAll("ol.backup-codes li").length`); n != 10 {
		t.Errorf("%v backup codes shown, want 10", n)
	}
	if !eval[bool](t, ctx, `!!document.querySelector('form[action="/mfa/backup-codes/download"] button[value="text"]')`) {
		t.Error("no download of the backup codes")
	}
	shot("mfa-backup-codes")
	step(t, ctx, "continue to the account", chromedp.Click(chromedp.CSS(`a.continue`)), chromedp.WaitVisible(chromedp.CSS(`#profile`)))
	signOut("sign out")

	// With a code, remembering the device.
	signIn("second sign-in", `form[action="/mfa/challenge"] #code`)
	if p := path(); p != "/mfa/challenge" {
		t.Fatalf("the second sign-in ended at %s, want the challenge", p)
	}
	shot("mfa-challenge")
	step(t, ctx, "enter a code and remember the device",
		chromedp.SendKeys(chromedp.CSS(`form[action="/mfa/challenge"] #code`), m.code(t, secret, 1)),
		chromedp.Click(chromedp.CSS(`#remember`)),
		chromedp.Click(chromedp.CSS(`form[action="/mfa/challenge"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#profile`)))
	signOut("sign out again")

	// Remembered: no code.
	signIn("third sign-in", `#profile`)
	if p := path(); p != "/account" {
		t.Fatalf("the sign-in on the remembered device ended at %s, want /account", p)
	}

	// Revoke the device: asked again.
	step(t, ctx, "the security page", chromedp.Navigate(m.base+"/account/security"), chromedp.WaitVisible(chromedp.CSS(`#devices`)))
	if body := eval[string](t, ctx, `document.querySelector("tr.current").innerText`); !strings.Contains(body, "this device") || !strings.Contains(body, "until") {
		t.Errorf("the current device's row: %q", body)
	}
	shot("mfa-security")
	step(t, ctx, "revoke this device", chromedp.Click(chromedp.CSS(`tr.current form button`)), chromedp.WaitVisible(chromedp.CSS(`form[action="/mfa/challenge"] #code`)))
	signOut("sign out after revoking")
	signIn("fourth sign-in", `form[action="/mfa/challenge"] #code`)
	if p := path(); p != "/mfa/challenge" {
		t.Fatalf("the sign-in after revoking the device ended at %s, want the challenge", p)
	}
	if !m.audited(t, staff.ID, "device.revoke", auth.OutcomeSuccess) || !m.audited(t, staff.ID, "device.remember", auth.OutcomeSuccess) {
		t.Error("remembering and revoking the device are not in the audit log")
	}
}
