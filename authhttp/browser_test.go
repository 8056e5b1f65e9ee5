package authhttp_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hestami/hestami/auth"
)

// chromium starts a headless Chromium with a fresh profile and returns a context
// driving one tab of it, bounded to a minute.
func chromium(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("no chromium in PATH: run `make test` or scripts/install-deps.sh (it installs Debian's chromium package)")
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root in CI
		chromedp.Flag("disable-gpu", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelT := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(cancelT)
	return ctx
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, body)
	}
}

// TestInRealBrowser signs up, links a second provider and signs out in
// Chromium: its Secure, SameSite=Lax cookies on http://localhost, its
// Sec-Fetch-Site and Origin headers through cross-origin protection, the
// stylesheet under the Content-Security-Policy, and the layout on a phone.
func TestInRealBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := chromium(t)
	e.idp.setNext("alpha", profile("alpha", randomID(), "browser@example.com"))
	e.idp.setNext("beta", profile("beta", randomID(), "browser-b@example.com"))

	step(t, ctx, "open the sign-in page", chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.CSS(`a.choice[href*="type=owner"]`)))
	if title := eval[string](t, ctx, `document.title`); title != "Sign in to Hestami · Hestami" {
		t.Errorf("title %q", title)
	}
	step(t, ctx, "choose owner", chromedp.Click(chromedp.CSS(`a.choice[href*="type=owner"]`)), chromedp.WaitVisible(chromedp.CSS(`form[action="/signin/alpha"] button`)))
	step(t, ctx, "continue with Alpha", chromedp.Click(chromedp.CSS(`form[action="/signin/alpha"] button`)), chromedp.WaitVisible(chromedp.CSS(`#profile`)))
	if got := eval[string](t, ctx, `location.pathname`); got != "/account" {
		t.Fatalf("signed up at %s, want /account", got)
	}
	// The stylesheet applies (CSP allows 'self', nothing inline is needed).
	if bg := eval[string](t, ctx, `getComputedStyle(document.querySelector("button.primary")).backgroundColor`); bg != "rgb(11, 74, 168)" {
		t.Errorf("the stylesheet did not apply: sign-out button background %q", bg)
	}

	step(t, ctx, "link Beta", chromedp.Click(chromedp.CSS(`form[action="/account/link/beta"] button`)), chromedp.WaitVisible(chromedp.CSS(`[role=status]`)))
	if msg := eval[string](t, ctx, `document.querySelector("[role=status]").textContent`); !strings.Contains(msg, "The account is linked") {
		t.Errorf("after linking: %q", msg)
	}
	if n := eval[float64](t, ctx, `document.querySelectorAll('form[action="/account/identities/unlink"]').length`); n != 2 {
		t.Errorf("%v linked accounts listed, want 2", n)
	}

	// A phone: nothing scrolls sideways.
	step(t, ctx, "phone viewport", chromedp.EmulateViewport(360, 740), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#profile`)))
	if w := eval[float64](t, ctx, `document.documentElement.scrollWidth`); w > 360 {
		t.Errorf("the account page is %vpx wide on a 360px screen", w)
	}
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		_ = os.WriteFile(filepath.Join(t.ArtifactDir(), "account-phone.png"), png, 0o644)
	}

	step(t, ctx, "sign out", chromedp.Click(chromedp.CSS(`form[action="/signout"] button`)), chromedp.WaitVisible(chromedp.CSS(`form[action="/signin/alpha"]`)))
	if msg := eval[string](t, ctx, `document.querySelector("[role=status]").textContent`); !strings.Contains(msg, "You are signed out") {
		t.Errorf("after signing out: %q", msg)
	}
	users, _ := e.store.UsersByEmail(t.Context(), "browser@example.com")
	if len(users) != 1 || users[0].Type != auth.TypeOwner {
		t.Fatalf("accounts: %+v", users)
	}
	sessions, _ := e.svc.Sessions(t.Context(), users[0].ID)
	if len(sessions) != 0 {
		t.Errorf("%d sessions left after signing out, want 0", len(sessions))
	}
}
