// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on a
// free loopback port for tests: STARTTLS or implicit TLS with a certificate of
// a test CA made once per test binary, AUTH PLAIN and LOGIN, and the messages
// it accepted, decoded as a mail client would.
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// CA is a self-signed certificate for 127.0.0.1 and localhost that the server
// presents and clients are told to trust (Pool, or the PEM file).
type CA struct {
	Cert tls.Certificate
	Pool *x509.CertPool
	PEM  []byte
}

var newCA = sync.OnceValues(func() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "hestami test SMTP"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(parsed)
	return &CA{
		Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: parsed},
		Pool: pool,
		PEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
})

// TestCA returns the test binary's CA.
func TestCA(t testing.TB) *CA {
	t.Helper()
	c, err := newCA()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Options shape a server.
type Options struct {
	// ImplicitTLS speaks TLS from the first byte; otherwise STARTTLS is
	// offered, unless NoTLS.
	ImplicitTLS bool
	NoTLS       bool
	// Mechs are the AUTH mechanisms offered; nil means PLAIN and LOGIN.
	Mechs []string
	// Users are the accounts AUTH accepts (name → password); when there are
	// any, MAIL needs AUTH first.
	Users map[string]string
	// RejectRcpt is a recipient refused with 550.
	RejectRcpt string
}

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	TLS  bool   // it came over TLS
	Mech string // the AUTH mechanism used, "" if none
	User string
}

// Server is a real SMTP server on a free loopback port, closed when the test
// ends.
type Server struct {
	// Addr is where it listens; Host is "127.0.0.1" and Port its port.
	Addr *net.TCPAddr
	Host string
	Port int

	opts  Options
	ca    *CA
	mu    sync.Mutex
	down  bool
	msgs  []Message
	auths int
}

// Start starts a server.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Mechs == nil {
		opts.Mechs = []string{sasl.Plain, sasl.Login}
	}
	srv := &Server{opts: opts, ca: TestCA(t)}
	s := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		return &session{srv: srv, conn: c}, nil
	}))
	s.Domain = "localhost"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.ErrorLog = log.New(io.Discard, "", 0)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{srv.ca.Cert}}
	if !opts.NoTLS {
		s.TLSConfig = tlsCfg
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Addr = l.Addr().(*net.TCPAddr)
	srv.Host, srv.Port = "127.0.0.1", srv.Addr.Port
	if opts.ImplicitTLS {
		l = tls.NewListener(l, tlsCfg)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return srv
}

// RootCAs is the pool to trust the server's certificate with.
func (s *Server) RootCAs() *x509.CertPool { return s.ca.Pool }

// SetDown makes the server answer MAIL with 451 (try again later) while down.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Messages returns the messages accepted so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Last returns the newest message, failing the test if there is none.
func (s *Server) Last(t testing.TB) Message {
	t.Helper()
	ms := s.Messages()
	if len(ms) == 0 {
		t.Fatal("smtptest: no message was accepted")
	}
	return ms[len(ms)-1]
}

// AuthAttempts counts AUTH commands, successful or not.
func (s *Server) AuthAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths
}

type session struct {
	srv  *Server
	conn *gosmtp.Conn
	mech string
	user string
	cur  Message
}

var _ gosmtp.AuthSession = (*session)(nil)

func (s *session) AuthMechanisms() []string { return s.srv.opts.Mechs }

func (s *session) Auth(mech string) (sasl.Server, error) {
	s.srv.mu.Lock()
	s.srv.auths++
	s.srv.mu.Unlock()
	check := func(user, pass string) error {
		if want, ok := s.srv.opts.Users[user]; !ok || want != pass {
			return gosmtp.ErrAuthFailed
		}
		s.mech, s.user = mech, user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, gosmtp.ErrAuthUnknownMechanism
}

func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if len(s.srv.opts.Users) > 0 && s.user == "" {
		return gosmtp.ErrAuthRequired
	}
	s.srv.mu.Lock()
	down := s.srv.down
	s.srv.mu.Unlock()
	if down {
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.cur = Message{From: from, TLS: isTLS, Mech: s.mech, User: s.user}
	return nil
}

func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if to == s.srv.opts.RejectRcpt {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = b
	s.srv.mu.Lock()
	s.srv.msgs = append(s.srv.msgs, s.cur)
	s.srv.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.cur = Message{} }
func (s *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN, which go-sasl no longer provides.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if response != nil { // initial response: the username
			l.user, l.step = string(response), 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(response)
		return []byte("Password:"), false, nil
	case 3:
		return nil, true, l.check(l.user, string(response))
	}
	return nil, false, errors.New("unexpected AUTH LOGIN response")
}

// Parsed is a received message decoded as a mail client would: the Subject's
// encoded words decoded, the body's quoted-printable undone, line ends "\n".
type Parsed struct {
	Header  mail.Header
	Subject string
	Body    string
}

// Parse decodes m's data, failing the test if it is not a message.
func (m Message) Parse(t testing.TB) Parsed {
	t.Helper()
	return Parse(t, m.Data)
}

// Parse decodes a message, failing the test if it is not one.
func Parse(t testing.TB, data []byte) Parsed {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("received message does not parse: %v\n%s", err, data)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("Subject %q: %v", m.Header.Get("Subject"), err)
	}
	var body io.Reader = m.Body
	if m.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
		body = quotedprintable.NewReader(m.Body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return Parsed{Header: m.Header, Subject: subject, Body: strings.ReplaceAll(string(b), "\r\n", "\n")}
}
