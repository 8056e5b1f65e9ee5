package authclient_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authclient"
	"github.com/hestami/hestami/authclient/authclienttest"
	"github.com/hestami/hestami/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is a test clock that starts at the real time and moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a real auth service and a service that trusts it through
// authclient, on one test clock. The service serves:
//
//	GET  /                 a page for backup:read
//	GET  /api/backups      JSON for backup:read
//	GET  /restore          a page for backup:restore with a second factor of the last 5 minutes
//	POST /restore          the same, as an action
//	/login, /callback, /logout
type fixture struct {
	t      *testing.T
	clock  *clock
	auth   *authclienttest.Auth
	reg    authclienttest.Client
	url    string // the service, http://localhost:PORT
	client *authclient.Client
	login  *authclient.Login
	sealer *auth.Sealer
	logs   *syncBuffer
}

const (
	clientID     = "backup-daemon"
	clientSecret = "backup-daemon-secret-0123456789-abcdefghijklmnop"
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, clock: &clock{t: time.Now()}, logs: &syncBuffer{}}
	f.url = fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
	f.reg = authclienttest.Client{ID: clientID, Name: "Backup daemon", Secret: clientSecret, RedirectURIs: []string{f.url + "/callback"}}
	f.auth = authclienttest.Start(t, authclienttest.Options{DatabaseURL: pgtest.Database(t), Clients: []authclienttest.Client{f.reg},
		ReturnOrigins: []string{f.url}, Now: f.clock.Now})
	f.client, err = authclient.New(authclient.Config{URL: f.auth.URL, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.sealer = newSealer(t)
	f.login, err = authclient.NewLogin(authclient.LoginConfig{Client: f.client, ClientID: clientID, ClientSecret: clientSecret,
		PublicURL: f.url, Sealer: f.sealer, ServiceName: "Backup daemon", Now: f.clock.Now,
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	f.login.Mount(mux)
	page := func(w http.ResponseWriter, r *http.Request) {
		p := authclient.PrincipalFrom(r.Context())
		fmt.Fprintf(w, "%s %s as %s", r.Method, r.URL.Path, p.Email)
	}
	mux.Handle("GET /{$}", f.login.Require("backup:read")(http.HandlerFunc(page)))
	mux.Handle("GET /api/backups", f.login.Require("backup:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := authclient.PrincipalFrom(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"user": p.UserID, "permissions": p.Permissions})
	})))
	restore := f.login.RequireMFA("backup:restore", 5*time.Minute)(http.HandlerFunc(page))
	mux.Handle("GET /restore", restore)
	mux.Handle("POST /restore", restore)
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	hs.Start()
	t.Cleanup(hs.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log:\n%s", f.logs.String())
		}
	})
	return f
}

func newSealer(t *testing.T) *auth.Sealer {
	t.Helper()
	key := make([]byte, auth.SealerKeySize)
	_, _ = rand.Read(key)
	s, err := auth.NewSealer(map[string][]byte{"k1": key}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// staff creates a staff member with roles and a browser signed in as them at
// the auth service.
func (f *fixture) staff(email string, roles ...string) (*auth.User, *authclienttest.Browser) {
	f.t.Helper()
	u := f.auth.User(auth.TypeStaff, email, roles...)
	b := f.auth.Browser()
	b.SignIn(u)
	return u, b
}

// response is an answer with its body read, and the redirects that led to it.
type response struct {
	*http.Response
	body string
	via  []string // the URLs redirected through, in order
}

// do sends req with b, following redirects and recording them.
func (f *fixture) do(b *authclienttest.Browser, req *http.Request) *response {
	f.t.Helper()
	c := *b.Client
	var via []string
	c.CheckRedirect = func(r *http.Request, prior []*http.Request) error {
		via = append(via, r.URL.String())
		if len(prior) > 15 {
			return fmt.Errorf("too many redirects: %v", via)
		}
		return nil
	}
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &response{Response: resp, body: string(body), via: via}
}

func (f *fixture) get(b *authclienttest.Browser, path string) *response {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.url+path, nil)
	return f.do(b, req)
}

// noFollow sends req with b's cookies and returns the first answer.
func (f *fixture) noFollow(b *authclienttest.Browser, req *http.Request) *response {
	f.t.Helper()
	c := *b.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &response{Response: resp, body: string(body)}
}

// callback goes through the sign-in that starts at path (the service's
// /login) one redirect at a time, and returns the service's /callback answer.
func (f *fixture) callback(b *authclienttest.Browser, path string) *response {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.url+path, nil)
	for range 8 {
		resp := f.noFollow(b, req)
		if strings.HasPrefix(req.URL.String(), f.url+"/callback") {
			return resp
		}
		next, err := req.URL.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode/100 != 3 {
			f.t.Fatalf("signing in from %s: %s answered %d: %s", path, req.URL, resp.StatusCode, resp.body)
		}
		req, _ = http.NewRequest(http.MethodGet, next.String(), nil)
	}
	f.t.Fatalf("signing in from %s: no /callback after 8 redirects", path)
	return nil
}

// api calls the service as an API client: with the bearer token (if any),
// asking for JSON, without cookies.
func (f *fixture) api(method, path, bearer string) *response {
	f.t.Helper()
	req, _ := http.NewRequest(method, f.url+path, nil)
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &response{Response: resp, body: string(body)}
}

// apiError is the JSON of a refusal.
type apiError struct {
	Error struct {
		Code     string `json:"code"`
		Message  string `json:"message"`
		Location string `json:"location"`
	} `json:"error"`
	MFA *struct {
		Action        string `json:"action"`
		Location      string `json:"location"`
		MaxAgeSeconds int64  `json:"max_age_seconds"`
	} `json:"mfa"`
}

func (r *response) apiError(t *testing.T) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("%s %s: %d, not a JSON error: %v\n%s", r.Request.Method, r.Request.URL, r.StatusCode, err, r.body)
	}
	return e
}

// sessionCookie returns the service's session cookie in b ("" if none).
func (f *fixture) sessionCookie(b *authclienttest.Browser) *http.Cookie {
	req, _ := http.NewRequest(http.MethodGet, f.url+"/", nil)
	for _, c := range b.Jar.Cookies(req.URL) {
		if c.Name == "hestami_backup-daemon_session" {
			return c
		}
	}
	return nil
}

// syncBuffer is a log destination safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
