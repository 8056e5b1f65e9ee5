// Package redistest starts real Redis servers (redis-server, from the Debian
// package of that name: `make test` installs it) for tests: on a free loopback
// port, with no persistence, stopped when the test ends.
package redistest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout is how long a server may take to accept connections.
const startTimeout = 15 * time.Second

// Options say how to start a server.
type Options struct {
	// Password, if set, is required of clients (requirepass).
	Password string
	// TLS serves TLS only, with a certificate for localhost and 127.0.0.1
	// signed by a CA made for the test (Server.RootCAs).
	TLS bool
}

// Server is a running redis-server.
type Server struct {
	// URL is how to reach it: redis://127.0.0.1:PORT/0, or
	// rediss://localhost:PORT/0 with TLS; with the password if there is one.
	URL string
	// Addr is host:port.
	Addr string
	// RootCAs trusts the server's certificate (TLS only).
	RootCAs *x509.CertPool
}

// New starts a redis-server for the test and returns its URL
// (redis://127.0.0.1:PORT/0). The test fails, never skips, if redis-server is
// missing.
func New(t testing.TB) string {
	t.Helper()
	return Start(t, Options{}).URL
}

// Start starts a redis-server for the test with o.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (%v): run `make test` (scripts/install-deps.sh installs the Debian package redis-server), or apt-get install redis-server", err)
	}
	dir := t.TempDir()
	s := &Server{}
	var tlsArgs []string
	if o.TLS {
		if tlsArgs, s.RootCAs, err = makeCerts(dir); err != nil {
			t.Fatalf("redistest: certificates: %v", err)
		}
	}
	// A free port can be taken by someone else before the server binds it:
	// try a few.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		args := []string{"--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--logfile", "", "--loglevel", "notice", "--databases", "2"}
		if o.TLS {
			args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port))
			args = append(args, tlsArgs...)
		} else {
			args = append(args, "--port", strconv.Itoa(port))
		}
		if o.Password != "" {
			args = append(args, "--requirepass", o.Password)
		}
		cmd, err := start(bin, args)
		if err != nil {
			if attempt < 5 && strings.Contains(err.Error(), "in use") {
				continue
			}
			t.Fatalf("redistest: %v", err)
		}
		t.Cleanup(func() { stop(t, cmd) })
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		u := url.URL{Scheme: "redis", Host: s.Addr, Path: "/0"}
		if o.TLS {
			u.Scheme, u.Host = "rediss", net.JoinHostPort("localhost", strconv.Itoa(port))
		}
		if o.Password != "" {
			u.User = url.UserPassword("", o.Password)
		}
		s.URL = u.String()
		return s
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects the server's log for error messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) add(line string) {
	l.mu.Lock()
	l.b.WriteString(line + "\n")
	l.mu.Unlock()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs redis-server with args and waits until it accepts connections.
func start(bin string, args []string) (*exec.Cmd, error) {
	cmd := exec.Command(bin, args...)
	// Ends with the test process even if that is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	var log lockedBuffer
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			log.add(line)
			if !sent && strings.Contains(line, "Ready to accept connections") {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case ok := <-ready:
		if ok {
			return cmd, nil
		}
		_ = cmd.Wait()
		msg := log.String()
		if strings.Contains(msg, "Address already in use") {
			return nil, fmt.Errorf("redis-server %s: port in use:\n%s", strings.Join(args, " "), msg)
		}
		return nil, fmt.Errorf("redis-server exited before accepting connections:\n%s", msg)
	case <-timer.C:
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("redis-server did not accept connections within %s:\n%s", startTimeout, log.String())
	}
}

// stop ends the server: SIGTERM, then SIGKILL if it lingers.
func stop(t testing.TB, cmd *exec.Cmd) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Logf("redistest: redis-server (pid %d) ignored SIGTERM for 10s and was killed", cmd.Process.Pid)
	}
}

// makeCerts writes a CA and a server certificate for localhost and 127.0.0.1
// into dir and returns redis-server's TLS arguments and a pool trusting the CA.
func makeCerts(dir string) ([]string, *x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redistest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	files := map[string]*pem.Block{
		"ca.crt":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.crt": {Type: "CERTIFICATE", Bytes: der},
		"server.key": {Type: "PRIVATE KEY", Bytes: keyDER},
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(b), 0o600); err != nil {
			return nil, nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return []string{"--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-key-file", filepath.Join(dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.crt"), "--tls-auth-clients", "no"}, pool, nil
}
