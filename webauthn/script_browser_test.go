package webauthn_test

import (
	"context"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdpwebauthn "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/webauthn"
)

// scriptSite is a tiny relying party serving webauthn.Script and forms marked up
// as its doc comment says, with ceremonies kept in memory.
type scriptSite struct {
	rp   *webauthn.RelyingParty
	user *auth.User

	mu        sync.Mutex
	sessions  map[string][]byte // ceremony id → session
	creds     [][]byte
	beginForm []string // the form fields each begin request carried
}

var scriptPage = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Passkeys</title>
<script src="/assets/webauthn.js" defer></script></head>
<body>
<p id="result">{{.}}</p>
<form id="register" method="post" action="/register/finish" data-webauthn-begin="/register/begin" hidden>
  <input type="hidden" name="csrf" value="good-token">
  <label>Name <input name="name" id="name"></label>
  <p data-webauthn-status role="status" aria-live="polite"></p>
  <button type="submit">Add a passkey</button>
</form>
<form id="login" method="post" action="/login/finish" data-webauthn-begin="/login/begin" hidden>
  <input type="hidden" name="csrf" value="good-token">
  <label><input type="checkbox" name="remember" value="1" checked> Remember this device</label>
  <p data-webauthn-status role="status" aria-live="polite"></p>
  <button type="submit">Use a passkey</button>
</form>
<form id="stale" method="post" action="/login/finish" data-webauthn-begin="/login/begin" hidden>
  <input type="hidden" name="csrf" value="stale-token">
  <p data-webauthn-status role="status" aria-live="polite"></p>
  <button type="submit">Use a passkey (stale form)</button>
</form>
<p id="fallback" data-webauthn-fallback>Passkeys need JavaScript.</p>
</body></html>`))

func (s *scriptSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/assets/webauthn.js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = w.Write(webauthn.Script)
	case r.Method == http.MethodGet && r.URL.Path == "/":
		s.page(w, "")
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/begin"):
		s.begin(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/register/finish":
		s.mu.Lock()
		defer s.mu.Unlock()
		cred, err := s.rp.FinishRegistration(s.user, s.creds, s.take(r), []byte(r.PostFormValue("response")))
		if err != nil {
			s.page(w, "error: "+err.Error())
			return
		}
		s.creds = append(s.creds, cred)
		s.page(w, fmt.Sprintf("registered %q", r.PostFormValue("name")))
	case r.Method == http.MethodPost && r.URL.Path == "/login/finish":
		s.mu.Lock()
		defer s.mu.Unlock()
		res, err := s.rp.FinishLogin(s.user, s.creds, s.take(r), []byte(r.PostFormValue("response")))
		if err != nil {
			s.page(w, "error: "+err.Error())
			return
		}
		s.creds[res.Index] = res.Data
		s.page(w, fmt.Sprintf("signed in with passkey %d, remember=%s", res.Index, r.PostFormValue("remember")))
	default:
		http.NotFound(w, r)
	}
}

func (s *scriptSite) page(w http.ResponseWriter, result string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = scriptPage.Execute(w, result)
}

// take returns (once) the session of the request's ceremony field.
func (s *scriptSite) take(r *http.Request) []byte {
	id := r.PostFormValue("ceremony")
	sess := s.sessions[id]
	delete(s.sessions, id)
	return sess
}

func (s *scriptSite) begin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if err := r.ParseForm(); err != nil || r.PostForm.Get("csrf") != "good-token" || !strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":{"code":"forbidden","message":"This form has expired. Reload the page and try again."}}`))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beginForm = append(s.beginForm, r.PostForm.Encode())
	var opts, sess []byte
	var err error
	if strings.HasPrefix(r.URL.Path, "/register/") {
		opts, sess, err = s.rp.BeginRegistration(s.user, s.creds)
	} else {
		opts, sess, err = s.rp.BeginLogin(s.user, s.creds)
	}
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintf(w, `{"error":{"code":"internal","message":%q}}`, err.Error())
		return
	}
	id := auth.NewToken()
	s.sessions[id] = sess
	_, _ = fmt.Fprintf(w, `{"ceremony":%q,"options":%s}`, id, opts)
}

// TestScriptInChromium adds a passkey and signs in with it through
// webauthn.Script in headless Chromium, whose virtual authenticator (CDP's
// WebAuthn domain) plays a platform authenticator with user verification: the
// real browser side of both ceremonies, under a Content-Security-Policy of
// default-src 'self'.
func TestScriptInChromium(t *testing.T) {
	t.Parallel()
	var chromium string
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		t.Fatal("no chromium in PATH: run `make test` or scripts/install-deps.sh (it installs Debian's chromium package)")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	origin := fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	rp, err := webauthn.New(webauthn.Config{PublicURL: origin})
	if err != nil {
		t.Fatal(err)
	}
	site := &scriptSite{rp: rp, user: alice, sessions: map[string][]byte{}}
	srv := httptest.NewUnstartedServer(site)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root in CI
		chromedp.Flag("disable-gpu", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancelT := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(cancelT)

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			t.Fatalf("%s: %v\n%s", what, err, body)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector(`+fmt.Sprintf("%q", sel)+`) || {}).textContent || ""`))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(v)
	}
	// waitText polls until the element's text contains want.
	waitText := func(sel, want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := text(sel)
			if strings.Contains(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s says %q, want %q", sel, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	step("virtual authenticator", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, cdpwebauthn.Enable, cdpwebauthn.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, cdpwebauthn.AddVirtualAuthenticator, cdpwebauthn.AddVirtualAuthenticatorParams{
			Options: &cdpwebauthn.VirtualAuthenticatorOptions{
				Protocol: cdpwebauthn.AuthenticatorProtocolCtap2, Ctap2version: cdpwebauthn.Ctap2versionCtap21,
				Transport: cdpwebauthn.AuthenticatorTransportInternal, HasResidentKey: true, HasUserVerification: true,
				IsUserVerified: true, AutomaticPresenceSimulation: true,
			},
		})
		return err
	}))

	step("open the page", chromedp.Navigate(origin+"/"), chromedp.WaitVisible(chromedp.CSS("#register button")))
	if visible, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.querySelector("#fallback").hidden`)); visible {
		t.Error("the no-JavaScript fallback text is still shown in a browser with passkeys")
	}

	step("add a passkey", chromedp.SendKeys(chromedp.CSS("#name"), "Work laptop"), chromedp.Click(chromedp.CSS("#register button")))
	waitText("#result", `registered "Work laptop"`)

	step("sign in with it", chromedp.WaitVisible(chromedp.CSS("#login button")), chromedp.Click(chromedp.CSS("#login button")))
	waitText("#result", "signed in with passkey 0, remember=1")

	// The same authenticator again: the options exclude its credential, so the
	// browser refuses and the form says why.
	step("add it twice", chromedp.WaitVisible(chromedp.CSS("#register button")), chromedp.Click(chromedp.CSS("#register button")))
	waitText("#register [data-webauthn-status]", "registered for your account already")
	if disabled, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#register button").disabled`)); disabled {
		t.Error("after a refusal the form's button stays disabled")
	}

	// A begin endpoint's error message reaches the person.
	step("a stale form", chromedp.Click(chromedp.CSS("#stale button")))
	waitText("#stale [data-webauthn-status]", "This form has expired. Reload the page and try again.")

	site.mu.Lock()
	defer site.mu.Unlock()
	if len(site.creds) != 1 {
		t.Errorf("the site has %d credentials, want 1", len(site.creds))
	}
	for _, f := range site.beginForm {
		if !strings.Contains(f, "csrf=good-token") || strings.Contains(f, "response=") || strings.Contains(f, "ceremony=") {
			t.Errorf("a begin request carried %q: want the form's fields (csrf...) without ceremony or response", f)
		}
	}
}
