// Package blobtest starts object-storage emulators on loopback ports for tests: S3
// (gofakes3), Google Cloud Storage (fake-gcs-server) and Azure Blob Storage (Azurite).
// S3, GCS and Azure each return a fresh, empty bucket with the storage URL hestami
// opens and the environment a process needs to reach it, so tests can hand both to a
// child process (PostgreSQL's archive_command, the hestami binary).
//
// Each emulator runs in a process of its own, shared by the tests of one test process
// and stopped (by PID) when the last test using it ends. Requests reach it through a
// proxy in the test process that can inject failures per bucket (Target.Faults).
//
// The emulators speak plain HTTP: the URLs need hestami's allow-insecure-HTTP setting.
// The test process's own environment gets Target.Env as well, since the cloud SDKs
// read their credentials and the GCS emulator's address from there; the values are
// the same for every bucket of a running emulator.
package blobtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// AzuriteVersion is the Azurite release the tests run, installed from npm.
const AzuriteVersion = "3.37.0"

// Azurite's well-known development account (public, documented by Microsoft).
const (
	AzureAccount = "devstoreaccount1"
	AzureKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// startTimeout bounds how long an emulator may take to accept connections.
const startTimeout = 60 * time.Second

// Target is an empty bucket (an Azure container) in an emulator.
type Target struct {
	// URL is the storage URL for hestami (with storage.allow_insecure_http).
	URL string
	// Env is the environment a process needs to reach the bucket: credentials and
	// endpoints, as KEY=VALUE.
	Env []string
	// Bucket is the bucket's (container's) name.
	Bucket string
	// Endpoint is the emulator's base URL, as the proxy serves it.
	Endpoint string
	// Faults makes requests for this bucket fail.
	Faults *Faults
}

// S3 returns an empty bucket in an S3 emulator (gofakes3), as
// s3://BUCKET?endpoint=...&use_path_style=true&region=us-east-1.
func S3(t testing.TB) Target {
	t.Helper()
	s := acquire(t, "s3")
	name := bucketName()
	resp := s.do(t, http.MethodPut, "/"+name, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("blobtest: create S3 bucket %s: %s", name, resp.Status)
	}
	// gofakes3 neither takes the aws-chunked uploads with trailing checksums the
	// SDK sends by default nor returns checksums for the SDK to validate (which it
	// logs on stderr): checksums only where S3 requires them.
	u := fmt.Sprintf("s3://%s?endpoint=%s&use_path_style=true&region=us-east-1"+
		"&request_checksum_calculation=when_required&response_checksum_validation=when_required", name, url.QueryEscape(s.proxy.URL))
	return s.target(name, u)
}

// GCS returns an empty bucket in a Google Cloud Storage emulator (fake-gcs-server),
// as gs://BUCKET; Env sets STORAGE_EMULATOR_HOST, which gocloud's gcsblob (and
// Google's client library) use instead of the real service.
func GCS(t testing.TB) Target {
	t.Helper()
	s := acquire(t, "gcs")
	name := bucketName()
	resp := s.do(t, http.MethodPost, "/storage/v1/b?project=hestami", strings.NewReader(`{"name":"`+name+`"}`),
		map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("blobtest: create GCS bucket %s: %s", name, resp.Status)
	}
	return s.target(name, "gs://"+name)
}

// Azure returns an empty container in Azurite, as
// azblob://CONTAINER?protocol=http&domain=127.0.0.1:PORT&localemu=true; Env holds the
// development account's name and key. Azurite is installed from npm into the user's
// cache directory when missing (see AzuriteDir); the test fails, with the reason, if
// it cannot be.
func Azure(t testing.TB) Target {
	t.Helper()
	s := acquire(t, "azure")
	name := bucketName()
	cred, err := container.NewSharedKeyCredential(AzureAccount, AzureKey)
	if err != nil {
		t.Fatalf("blobtest: %v", err)
	}
	c, err := container.NewClientWithSharedKeyCredential(s.proxy.URL+"/"+AzureAccount+"/"+name, cred, nil)
	if err != nil {
		t.Fatalf("blobtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Create(ctx, nil); err != nil {
		t.Fatalf("blobtest: create Azure container %s: %v", name, err)
	}
	host := strings.TrimPrefix(s.proxy.URL, "http://")
	return s.target(name, fmt.Sprintf("azblob://%s?protocol=http&domain=%s&localemu=true", name, host))
}

var bucketSeq atomic.Int64

// bucketName returns a name valid in every store and unique in this process.
func bucketName() string {
	return fmt.Sprintf("hestami-%d-%d", os.Getpid(), bucketSeq.Add(1))
}

// server is one running emulator and the proxy in front of it.
type server struct {
	kind  string
	cmd   *exec.Cmd
	dir   string // removed at stop
	stdin io.WriteCloser
	proxy *httptest.Server
	env   []string
	refs  int

	mu     sync.Mutex
	faults map[string]*Faults // by bucket
}

var (
	serversMu sync.Mutex
	servers   = map[string]*server{}
	// kindMu serializes starting and stopping each kind of emulator.
	kindMu = map[string]*sync.Mutex{"s3": {}, "gcs": {}, "azure": {}}
)

// acquire returns the running emulator of kind, starting it if needed; it is
// stopped when the last test that acquired it ends.
func acquire(t testing.TB, kind string) *server {
	t.Helper()
	km := kindMu[kind]
	km.Lock()
	defer km.Unlock()
	serversMu.Lock()
	s := servers[kind]
	serversMu.Unlock()
	if s == nil {
		var err error
		s, err = start(kind)
		if err != nil {
			t.Fatalf("blobtest: %v", err)
		}
		for _, kv := range s.env {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
		serversMu.Lock()
		servers[kind] = s
		serversMu.Unlock()
	}
	s.refs++
	t.Cleanup(func() {
		km.Lock()
		defer km.Unlock()
		s.refs--
		if s.refs > 0 {
			return
		}
		serversMu.Lock()
		delete(servers, kind)
		serversMu.Unlock()
		s.stop()
	})
	return s
}

func start(kind string) (*server, error) {
	s := &server{kind: kind, faults: map[string]*Faults{}}
	// The proxy listens first: fake-gcs-server must know the address clients use.
	var backend atomic.Pointer[url.URL]
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(backend.Load()); r.Out.Host = r.In.Host },
		FlushInterval: -1,
		// A client that gives up mid-request (a cancelled upload) is not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	s.proxy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := s.faultsFor(r.URL.Path); f != nil && f.take() {
			f.respond(w, r, kind)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	var addr string
	var err error
	switch kind {
	case "s3":
		addr, err = s.startEmulator(kind)
		s.env = []string{
			"AWS_ACCESS_KEY_ID=hestami-test", "AWS_SECRET_ACCESS_KEY=hestami-test-secret", "AWS_REGION=us-east-1",
			// Never ask an instance-metadata service (a non-loopback address) for anything.
			"AWS_EC2_METADATA_DISABLED=true",
		}
	case "gcs":
		addr, err = s.startEmulator(kind)
		// gcsblob then talks to http://HOST/storage/v1/, unauthenticated.
		s.env = []string{"STORAGE_EMULATOR_HOST=" + strings.TrimPrefix(s.proxy.URL, "http://")}
	case "azure":
		addr, err = s.startAzurite()
		s.env = []string{"AZURE_STORAGE_ACCOUNT=" + AzureAccount, "AZURE_STORAGE_KEY=" + AzureKey}
	}
	if err != nil {
		s.stop()
		return nil, err
	}
	u, _ := url.Parse("http://" + addr)
	backend.Store(u)
	if err := s.waitAnswers(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// emulatorBinary builds the emulator command once per test process, into the user's
// cache directory (one file, replaced by each build) rather than a temporary directory
// that nothing would remove.
func emulatorBinary() (string, error) {
	buildOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "hestami")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "storage-emulator")
		tmp := fmt.Sprintf("%s.%d", buildPath, os.Getpid())
		cmd := exec.Command("go", "build", "-o", tmp, "github.com/hestami/hestami/blobtest/internal/emulator")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build the storage emulator: %v\n%s", err, out)
			return
		}
		// A rename replaces the file atomically, even while another test process
		// runs the previous build.
		buildErr = os.Rename(tmp, buildPath)
	})
	return buildPath, buildErr
}

func (s *server) startEmulator(kind string) (string, error) {
	bin, err := emulatorBinary()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "-kind", kind, "-external-url", s.proxy.URL)
	return s.run(cmd, "listening on ", kind+" emulator")
}

// AzuriteDir is where the tests (and scripts/install-deps.sh) install Azurite:
// $HESTAMI_AZURITE_DIR, or hestami/azurite under the user's cache directory
// ($XDG_CACHE_HOME, else ~/.cache).
func AzuriteDir() (string, error) {
	if d := os.Getenv("HESTAMI_AZURITE_DIR"); d != "" {
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory for Azurite: %w (set HESTAMI_AZURITE_DIR)", err)
	}
	return filepath.Join(cache, "hestami", "azurite"), nil
}

// azuriteMain returns Azurite's blob service script, installing Azurite first when
// it is missing.
func azuriteMain() (string, error) {
	dir, err := AzuriteDir()
	if err != nil {
		return "", err
	}
	script := filepath.Join(dir, "node_modules", "azurite", "dist", "src", "blob", "main.js")
	if installedVersion(dir) == AzuriteVersion {
		return script, nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", fmt.Errorf("azurite %s is not installed in %s and npm is not on PATH: install Node.js and npm (apt-get install nodejs npm), then run scripts/install-deps.sh", AzuriteVersion, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("install azurite: %w", err)
	}
	// Test processes of several packages may get here at once: one installs.
	lock, err := os.OpenFile(filepath.Join(dir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("install azurite: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("install azurite: lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if installedVersion(dir) == AzuriteVersion {
		return script, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error", "azurite@"+AzuriteVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install azurite@%s into %s failed: %v\n%s\nFix npm's access to its registry, or run scripts/install-deps.sh", AzuriteVersion, dir, err, out)
	}
	if v := installedVersion(dir); v != AzuriteVersion {
		return "", fmt.Errorf("npm install azurite@%s into %s left version %q", AzuriteVersion, dir, v)
	}
	return script, nil
}

// installedVersion returns the version of Azurite installed under dir, or "".
func installedVersion(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "azurite", "package.json"))
	if err != nil {
		return ""
	}
	// "version": "3.37.0" — no need for a JSON decoder for one field.
	_, rest, ok := strings.Cut(string(b), `"version":`)
	if !ok {
		return ""
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasPrefix(rest, `"`) {
		return ""
	}
	v, _, _ := strings.Cut(rest[1:], `"`)
	return v
}

func (s *server) startAzurite() (string, error) {
	script, err := azuriteMain()
	if err != nil {
		return "", err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("node is not on PATH: Azurite needs Node.js (apt-get install nodejs)")
	}
	s.dir, err = os.MkdirTemp("", "hestami-azurite-")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(node, script, "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", s.dir,
		"--skipApiVersionCheck", "--loose", "--silent")
	return s.run(cmd, "successfully listens on http://", "azurite")
}

// run starts cmd and waits for a stdout line holding marker followed by the address
// it listens on.
func (s *server) run(cmd *exec.Cmd, marker, what string) (string, error) {
	var stderr lockedBuffer
	var err error
	cmd.Stderr = &stderr
	// Ends with the test process even if it is killed: the kernel sends SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The emulator exits when its stdin closes: when this process ends.
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		return "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", what, err)
	}
	s.cmd = cmd
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, marker); i >= 0 && !sent {
				found <- strings.TrimSpace(line[i+len(marker):])
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case addr, ok := <-found:
		if !ok {
			return "", fmt.Errorf("%s exited before listening:\n%s", what, stderr.String())
		}
		return addr, nil
	case <-timer.C:
		return "", fmt.Errorf("%s did not listen within %v:\n%s", what, startTimeout, stderr.String())
	}
}

// waitAnswers polls the emulator through the proxy until it answers HTTP.
func (s *server) waitAnswers() error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(s.proxy.URL + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s emulator does not answer at %s: %v", s.kind, s.proxy.URL, err)
		}
		<-tick.C
	}
}

func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// do sends a request to the emulator through the proxy.
func (s *server) do(t testing.TB, method, path string, body io.Reader, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, s.proxy.URL+path, body)
	if err != nil {
		t.Fatalf("blobtest: %v", err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("blobtest: %s %s: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func (s *server) target(bucket, storageURL string) Target {
	f := &Faults{}
	s.mu.Lock()
	s.faults[bucket] = f
	s.mu.Unlock()
	return Target{URL: storageURL, Env: append([]string(nil), s.env...), Bucket: bucket, Endpoint: s.proxy.URL, Faults: f}
}

// faultsFor returns the faults of the bucket a request path addresses.
func (s *server) faultsFor(path string) *Faults {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	var bucket string
	switch s.kind {
	case "s3":
		bucket = segs[0]
	case "azure": // /ACCOUNT/CONTAINER/BLOB
		if len(segs) > 1 {
			bucket = segs[1]
		}
	case "gcs": // /storage/v1/b/B/o/..., /upload/storage/v1/b/B/o, /download/storage/v1/b/B/o/..., /B/OBJECT
		for i := 0; i+1 < len(segs); i++ {
			if segs[i] == "b" && i > 0 && segs[i-1] == "v1" {
				bucket = segs[i+1]
				break
			}
		}
		if bucket == "" {
			bucket = segs[0]
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults[bucket]
}

// Faults makes a bucket's requests fail as the real service does in an outage or
// when it refuses access. The zero value injects nothing.
type Faults struct {
	mu        sync.Mutex
	remaining int // < 0: every request
	status    int
	requests  int
}

// Fail makes the next n requests for the bucket fail with HTTP status (503: the
// service is unavailable; 403: access denied), each with an error body in the
// service's own format; n < 0 fails every request until Fail(0, 0). It resets the
// request count.
func (f *Faults) Fail(n, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.remaining, f.status, f.requests = n, status, 0
}

// Requests returns how many requests for the bucket arrived since the last Fail.
func (f *Faults) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// take counts a request and reports whether it must fail.
func (f *Faults) take() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	switch {
	case f.remaining == 0:
		return false
	case f.remaining > 0:
		f.remaining--
	}
	return true
}

func (f *Faults) respond(w http.ResponseWriter, r *http.Request, kind string) {
	f.mu.Lock()
	status := f.status
	f.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	var code, msg string
	switch {
	case status == http.StatusForbidden && kind == "azure":
		code, msg = "AuthorizationFailure", "This request is not authorized to perform this operation. (injected by the test)"
	case status == http.StatusForbidden:
		code, msg = "AccessDenied", "Access Denied (injected by the test)"
	case kind == "azure":
		code, msg = "ServerBusy", "The server is currently unable to receive requests. Please retry your request. (injected by the test)"
	default:
		code, msg = "ServiceUnavailable", "The service is unavailable. Please retry. (injected by the test)"
	}
	var body bytes.Buffer
	switch kind {
	case "gcs":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(&body, `{"error":{"code":%d,"message":%q,"errors":[{"reason":%q,"message":%q}]}}`, status, msg, code, msg)
	default:
		w.Header().Set("Content-Type", "application/xml")
		if kind == "azure" {
			w.Header().Set("x-ms-error-code", code)
		}
		fmt.Fprintf(&body, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body.Bytes())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
