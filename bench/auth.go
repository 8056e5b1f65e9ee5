package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/postgres"
)

const (
	// opSession is the auth step's operation: GET /api/v1/me with a session cookie.
	opSession = "session validation"
	// authDB is the database the auth service runs on, in the benchmark's cluster.
	authDB = "hestami_auth"
	// sessionCookie is the cookie auth serve reads the session token from.
	sessionCookie = "hestami_session"
	// mePath is the endpoint measured.
	mePath = "/api/v1/me"
	// authConns is the number of concurrent clients, each on its own keep-alive
	// connection.
	authConns = 64
	// authWarmup is the load before the measuring window (connections opened,
	// caches and the database's pool warm).
	authWarmup = time.Second
	// serverStart bounds a server's start, migrations included.
	serverStart = 2 * time.Minute
	// serverStop is how long a server has to exit after SIGTERM before it is killed.
	serverStop = 10 * time.Second
	// bareFlag makes the bench binary serve the bare net/http baseline (hidden:
	// the auth step starts it).
	bareFlag = "--bare-http"
	// benchEmail is the account the auth step signs in.
	benchEmail = "bench@hestami.example"
)

// auth measures session validation: GET /api/v1/me with a session cookie against
// hestami auth serve and against a bare net/http handler in a process of its own,
// each under authConns concurrent keep-alive clients on loopback, after a warm-up,
// for --auth-seconds. Each run measures both; the row keeps the run with the best
// throughput.
func (b *bench) auth(ctx context.Context) error {
	h := b.rep.row(opSession, "hestami auth serve GET "+mePath, true)
	bare := b.rep.row(opSession, "bare net/http handler", false)
	dir := filepath.Join(b.work, "auth")
	if err := b.mkdir(dir); err != nil {
		return err
	}
	defer b.removeUnlessKept(dir)

	bareSrv, err := b.startBare(ctx, dir)
	bare.failIf(err)
	defer bareSrv.stop()
	hSrv, token, err := b.startAuthServe(ctx, dir)
	h.failIf(err)
	defer hSrv.stop()
	if token == "" {
		token = auth.NewToken() // hestami failed; the bare handler takes any cookie
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}

	for _, c := range []struct {
		r   *result
		srv *server
	}{{bare, bareSrv}, {h, hSrv}} {
		if !c.r.failed() {
			c.r.failIf(checkMe(ctx, c.srv, token))
		}
	}

	window := time.Duration(b.opts.AuthSeconds) * time.Second
	for run := range b.opts.Runs {
		for _, c := range []struct {
			r   *result
			srv *server
		}{{bare, bareSrv}, {h, hSrv}} {
			if c.r.failed() {
				continue
			}
			b.log.Info("session validation", "server", c.srv.name, "run", run+1, "conns", authConns, "window", window)
			l := runLoad(ctx, loadSpec{URL: c.srv.url + mePath, Addr: c.srv.addr, Cookie: token,
				Conns: authConns, Warmup: authWarmup, Window: window})
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			if err := l.err(); err != nil {
				c.r.fail(fmt.Errorf("%s: %w", c.srv.name, err))
				continue
			}
			c.r.addLoad(l)
		}
	}

	for _, c := range []struct {
		r   *result
		srv *server
	}{{bare, bareSrv}, {h, hSrv}} {
		rss := c.srv.stop()
		if c.r.measured() {
			c.r.PeakRSSKiB = rss
			c.r.Note = loadNote(c.r, window, b.opts.Runs)
		}
	}
	return nil
}

// loadNote sums up a session validation row.
func loadNote(r *result, window time.Duration, runs int) string {
	return fmt.Sprintf("%.0f req/s, p50 %.2f ms (the wall column), p99 %.2f ms; %d keep-alive conns, %s after %s warm-up; best throughput of %d run(s)",
		r.PerSecond, r.P50Millis, r.P99Millis, authConns, window, authWarmup, runs)
}

// addLoad records one measuring window of a load row: Seconds is the p50
// latency of the run with the best throughput, whose numbers the row keeps.
func (r *result) addLoad(l loadResult) {
	ps := l.perSecond()
	p50, p99 := percentile(l.Latencies, 50), percentile(l.Latencies, 99)
	r.RunsSeconds = append(r.RunsSeconds, p50.Seconds())
	r.RunsPerSecond = append(r.RunsPerSecond, ps)
	if len(r.RunsPerSecond) == 1 || ps > r.PerSecond {
		r.PerSecond = ps
		r.Seconds = p50.Seconds()
		r.P50Millis = float64(p50) / float64(time.Millisecond)
		r.P99Millis = float64(p99) / float64(time.Millisecond)
		r.Requests = int64(l.Requests)
		r.SizeBytes = l.BodyBytes
	}
}

// server is a long-running child process serving HTTP on loopback.
type server struct {
	name string
	addr string // 127.0.0.1:PORT, where it listens
	url  string // http://localhost:PORT, what clients are told
	log  string // its stdout and stderr

	cmd     *exec.Cmd
	done    chan struct{} // closed when it has exited
	waitErr error
	once    sync.Once
	rss     int64
}

// startServer starts cmd as a server on addr, its output going to logPath, and
// waits until GET readyPath answers 200. The server is stopped if it does not.
func startServer(ctx context.Context, name, addr, readyPath, logPath string, cmd *exec.Cmd) (*server, error) {
	_, port, _ := net.SplitHostPort(addr)
	s := &server{name: name, addr: addr, url: "http://localhost:" + port, log: logPath, cmd: cmd, done: make(chan struct{})}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // no terminal signals: we stop it
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx, readyPath); err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// waitReady polls GET path until it answers 200, the process exits, ctx ends or
// serverStart passes.
func (s *server) waitReady(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, serverStart)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	last := errors.New("no answer yet")
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+path, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("GET %s: %s", path, resp.Status)
		} else {
			last = err
		}
		select {
		case <-s.done:
			return fmt.Errorf("exited before it was ready (%v); last lines of %s:\n%s", s.waitErr, s.log, indent(s.logTail()))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not ready within %s (last: %v); last lines of %s:\n%s", serverStart, last, s.log, indent(s.logTail()))
			}
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail is the end of the server's output.
func (s *server) logTail() string {
	data, err := os.ReadFile(s.log)
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(postgres.LastLines(data, 20))
}

// stop reads the server's peak resident memory (VmHWM), then stops it by its
// PID: SIGTERM, and SIGKILL if it has not exited within serverStop. It returns
// the peak in KiB (0 if unknown); calling it again, or on nil, does nothing more.
func (s *server) stop() int64 {
	if s == nil {
		return 0
	}
	s.once.Do(func() {
		s.rss, _ = vmHWM(s.cmd.Process.Pid)
		select {
		case <-s.done:
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(serverStop):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s.rss
}

// vmHWM reads the peak resident set size of process pid, in KiB.
func vmHWM(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmHWM(data)
}

// parseVmHWM finds "VmHWM:   12345 kB" in the text of /proc/PID/status.
func parseVmHWM(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmHWM: unexpected %q", rest)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, errors.New("no VmHWM line")
}

// startBare re-executes the bench binary as the bare net/http baseline on a free
// loopback port.
func (b *bench) startBare(ctx context.Context, dir string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bare net/http server: %w", err)
	}
	port, err := postgres.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(self, bareFlag, addr)
	cmd.Env = b.r.env
	return startServer(ctx, "bare net/http server", addr, "/readyz", filepath.Join(dir, "bare-http.log"), cmd)
}

// startAuthServe creates the auth service's database, starts hestami auth serve
// on it on a free loopback port, and signs a staff administrator in through the
// Go API on the same database. It returns the server and the session token.
func (b *bench) startAuthServe(ctx context.Context, dir string) (*server, string, error) {
	if err := b.exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+authDB, "CREATE DATABASE "+authDB); err != nil {
		return nil, "", fmt.Errorf("create the auth database: %w", err)
	}
	port, err := postgres.FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dbURL := b.cluster.ConnString(authDB)
	// The key TOTP secrets are sealed with: auth serve wants one.
	keys := filepath.Join(dir, "mfa-keys")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(keys, []byte("bench:"+base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(b.hestami, "auth", "serve", "--listen", addr)
	cmd.Dir = dir
	cmd.Env = append(append([]string{}, b.r.env...),
		"HESTAMI_DATABASE_URL="+dbURL,
		"HESTAMI_AUTH_SECRET="+auth.NewToken(),
		"HESTAMI_AUTH_PUBLIC_URL=http://localhost:"+strconv.Itoa(port),
		"HESTAMI_MFA_KEYS_FILE="+keys,
		// auth serve wants an identity provider; this one is never contacted.
		"HESTAMI_GITHUB_CLIENT_ID=hestami-bench", "HESTAMI_GITHUB_CLIENT_SECRET=hestami-bench-unused")
	srv, err := startServer(ctx, "hestami auth serve", addr, "/readyz", filepath.Join(dir, "auth-serve.log"), cmd)
	if err != nil {
		return nil, "", err
	}
	// The server has applied its migrations by now: it is ready.
	token, err := b.benchSession(ctx, dbURL)
	if err != nil {
		srv.stop()
		return nil, "", fmt.Errorf("sign the benchmark's user in: %w", err)
	}
	return srv, token, nil
}

// benchSession creates a staff administrator in the auth database at dbURL and
// starts a session for it, returning the session token.
func (b *bench) benchSession(ctx context.Context, dbURL string) (string, error) {
	pool, err := postgres.OpenPool(ctx, dbURL)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	svc := auth.NewService(postgres.NewAuthStore(pool), nil, auth.DefaultConfig(), time.Now, b.log)
	u, err := svc.CreateUser(ctx, nil, auth.NewUser{Type: auth.TypeStaff, Email: benchEmail, Name: "Benchmark",
		Roles: []string{"staff:admin"}}, auth.Client{UserAgent: "hestami-bench"})
	if err != nil {
		return "", err
	}
	token, _, err := svc.StartSession(ctx, u, []string{"bench"}, auth.Client{IP: "127.0.0.1", UserAgent: "hestami-bench"})
	return token, err
}

// checkMe makes sure the server really validates the session before it is
// measured: GET /api/v1/me answers 200 with the benchmark's user for the
// session cookie, and 401 without it.
func checkMe(ctx context.Context, s *server, token string) error {
	client := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(cookie bool) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+mePath, nil)
		if err != nil {
			return 0, nil, err
		}
		req.Host = strings.TrimPrefix(s.url, "http://")
		if cookie {
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: token})
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, body, err
	}
	code, body, err := get(true)
	if err != nil {
		return fmt.Errorf("check GET %s: %w", mePath, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("check GET %s with the session cookie: %d, want 200: %s", mePath, code, bytes.TrimSpace(body))
	}
	if !bytes.Contains(body, []byte(benchEmail)) {
		return fmt.Errorf("check GET %s with the session cookie: the body does not name %s: %s", mePath, benchEmail, body)
	}
	if code, body, err = get(false); err != nil {
		return fmt.Errorf("check GET %s: %w", mePath, err)
	}
	if code != http.StatusUnauthorized {
		return fmt.Errorf("check GET %s without a session cookie: %d, want 401: %s", mePath, code, bytes.TrimSpace(body))
	}
	return nil
}

// loadSpec is one load test: Conns clients, each looping GET URL with the
// session cookie on its own keep-alive connection to Addr, for Warmup and then
// the measuring Window.
type loadSpec struct {
	URL    string // http://localhost:PORT/api/v1/me: the Host the server sees
	Addr   string // where connections go (127.0.0.1:PORT), whatever localhost resolves to
	Cookie string // the session token
	Conns  int
	Warmup time.Duration
	Window time.Duration
}

// loadResult is what one load test found.
type loadResult struct {
	Window time.Duration
	// Requests completed with 200 inside the window; Latencies are theirs.
	Requests  int
	Latencies []time.Duration
	// Errors counts failed requests (transport errors, any status but 200),
	// warm-up included; FirstErr is the first one.
	Errors   int
	FirstErr error
	// Dials is how many connections were opened: Conns when keep-alive held.
	Dials int64
	// BodyBytes is the size of a response body.
	BodyBytes int64
}

// perSecond is the throughput in the window.
func (l loadResult) perSecond() float64 {
	if l.Window <= 0 {
		return 0
	}
	return float64(l.Requests) / l.Window.Seconds()
}

// err is why the load test does not count: any failed request, or none done.
func (l loadResult) err() error {
	switch {
	case l.Errors > 0:
		return fmt.Errorf("%d request(s) failed (%d succeeded in the window); first: %w", l.Errors, l.Requests, l.FirstErr)
	case l.Requests == 0:
		return errors.New("no request completed in the measuring window")
	}
	return nil
}

// maxWorkerErrors stops a client that keeps failing, so a dead server is not
// hammered for the whole window.
const maxWorkerErrors = 100

// runLoad runs the load test s. It returns when the window has passed or ctx
// ends.
func runLoad(ctx context.Context, s loadSpec) loadResult {
	var dials atomic.Int64
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			dials.Add(1)
			return dialer.DialContext(ctx, "tcp", s.Addr)
		},
		MaxConnsPerHost:       s.Conns,
		MaxIdleConnsPerHost:   s.Conns,
		MaxIdleConns:          s.Conns,
		IdleConnTimeout:       time.Minute,
		ResponseHeaderTimeout: 10 * time.Second,
		DisableCompression:    true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr,
		// A redirect (to a sign-in page) is a failure, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cookie := (&http.Cookie{Name: sessionCookie, Value: s.Cookie}).String()

	type worker struct {
		lat      []time.Duration
		errs     int
		firstErr error
		body     int64
	}
	workers := make([]worker, s.Conns)
	start := time.Now()
	from := start.Add(s.Warmup)
	end := from.Add(s.Window)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			for ctx.Err() == nil && w.errs < maxWorkerErrors {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				n, err := getOnce(ctx, client, s.URL, cookie)
				t1 := time.Now()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					w.errs++
					if w.firstErr == nil {
						w.firstErr = err
					}
					continue
				}
				w.body = n
				if !t1.Before(from) && !t1.After(end) {
					w.lat = append(w.lat, t1.Sub(t0))
				}
			}
		})
	}
	wg.Wait()

	l := loadResult{Window: s.Window, Dials: dials.Load()}
	for _, w := range workers {
		l.Latencies = append(l.Latencies, w.lat...)
		l.Errors += w.errs
		if l.FirstErr == nil {
			l.FirstErr = w.firstErr
		}
		l.BodyBytes = max(l.BodyBytes, w.body)
	}
	l.Requests = len(l.Latencies)
	return l
}

// getOnce sends one GET with the cookie and reads the body; any status but 200
// is an error.
func getOnce(ctx context.Context, client *http.Client, url, cookie string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Cookie", cookie)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("GET %s: %s", req.URL.Path, resp.Status)
	}
	return n, err
}

// bareMe is what the bare handler answers: a body of the shape and about the
// size of auth serve's GET /api/v1/me (the user, their permissions, the session).
type bareMe struct {
	User struct {
		ID            string    `json:"id"`
		Type          string    `json:"type"`
		Email         string    `json:"email"`
		EmailVerified bool      `json:"email_verified"`
		Name          string    `json:"name"`
		AvatarURL     string    `json:"avatar_url"`
		Roles         []string  `json:"roles"`
		Disabled      bool      `json:"disabled"`
		CreatedAt     time.Time `json:"created_at"`
		UpdatedAt     time.Time `json:"updated_at"`
	} `json:"user"`
	Permissions []auth.Permission `json:"permissions"`
	Session     struct {
		ID         string    `json:"id"`
		Current    bool      `json:"current"`
		CreatedAt  time.Time `json:"created_at"`
		LastSeenAt time.Time `json:"last_seen_at"`
		ExpiresAt  time.Time `json:"expires_at"`
		AuthTime   time.Time `json:"auth_time"`
		Methods    []string  `json:"methods"`
		IP         string    `json:"ip"`
		UserAgent  string    `json:"user_agent"`
	} `json:"session"`
}

// bareHandler is the baseline: GET /api/v1/me answers a fixed body as JSON when
// a session cookie is present (and 401 without), GET /readyz answers ok. It does
// what any handler does — routing, reading a cookie, encoding JSON — and none of
// the service's work.
func bareHandler() http.Handler {
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var me bareMe
	u := &me.User
	u.ID, u.Type, u.Email, u.EmailVerified, u.Name = "0194b3f2-6c1e-7d3a-9b8e-2f4a5c6d7e8f", string(auth.TypeStaff), benchEmail, true, "Benchmark"
	u.Roles, u.CreatedAt, u.UpdatedAt = []string{"staff:admin"}, t, t
	me.Permissions = (&auth.User{Type: auth.TypeStaff, Roles: u.Roles}).Permissions()
	x := &me.Session
	x.ID, x.Current, x.CreatedAt, x.LastSeenAt, x.ExpiresAt, x.AuthTime = auth.HashToken("bench"), true, t, t, t.Add(12*time.Hour), t
	x.Methods, x.IP, x.UserAgent = []string{"bench"}, "127.0.0.1", "Go-http-client/1.1"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET "+mePath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if c, err := r.Cookie(sessionCookie); err != nil || c.Value == "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":"unauthorized","message":"Sign in."}}`+"\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(me)
	})
	return mux
}

// serveBare serves bareHandler on addr until ctx ends (the hidden --bare-http
// mode of the bench binary).
func serveBare(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bare net/http server: %w", err)
	}
	srv := &http.Server{Handler: bareHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("bare net/http server: %w", err)
	}
	return nil
}
