// Package smtp delivers alert notifications by email through an SMTP submission
// server, always encrypted: STARTTLS (port 587) or implicit TLS (port 465), with AUTH
// PLAIN or LOGIN when credentials are configured.
//
// It is built on the standard library's net/smtp rather than github.com/wneessen/go-mail,
// on purpose: we send one kind of mail (a short text/plain UTF-8 message), which
// net/smtp plus mime, mime/quotedprintable and net/mail cover in a few lines, and
// net/smtp gives us STARTTLS, implicit TLS (NewClient over a tls.Conn) and PLAIN; LOGIN
// is a 20-line smtp.Auth below. net/smtp is frozen to new features but kept secure, and
// its PlainAuth refuses to send a password over an unencrypted connection. go-mail
// would add a dependency (and its releases track new Go versions closely) for
// attachments, DKIM, templates and connection pools that alerts never use.
package smtp

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	netsmtp "net/smtp"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hestami/hestami/alert"
)

// Security is how the connection to the server is encrypted.
type Security string

// Securities. There is deliberately no plaintext mode: alerts carry host names and
// paths, and credentials must never travel in the clear.
const (
	// StartTLS connects in plain text and upgrades with STARTTLS before anything else
	// (usually port 587). A server that does not offer STARTTLS is an error.
	StartTLS Security = "starttls"
	// TLS connects with TLS from the first byte (implicit TLS, usually port 465).
	TLS Security = "tls"
)

// DefaultTimeout bounds one delivery (connect to QUIT) when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Config configures one email destination.
type Config struct {
	// Name identifies the destination in logs and in the alert state; empty means
	// "email:<host>#<short hash of server, sender and recipients>".
	Name string
	// Host is the SMTP server's name; the certificate must be valid for it (or for
	// ServerName).
	Host string
	// Port defaults to 587 for StartTLS and 465 for TLS.
	Port int
	// Security defaults to StartTLS.
	Security Security
	// Username and Password, when Username is set, authenticate with AUTH PLAIN (or
	// LOGIN when the server offers only that), after TLS is up.
	Username string
	Password string
	// From is the sender: "hestami <alerts@example.com>" or a bare address.
	From string
	// To are the recipients (at least one).
	To []string
	// RootCAs, or the PEM file CAFile, are the only CAs trusted for the server's
	// certificate (a private CA); neither means the system's roots. Set at most one.
	RootCAs *x509.CertPool
	CAFile  string
	// ServerName is the name the certificate is checked against; empty means Host.
	ServerName string
	// HelloName is sent in EHLO; empty means this machine's host name.
	HelloName string
	// Timeout bounds one delivery; zero means DefaultTimeout.
	Timeout time.Duration
	// SubjectPrefix starts every subject; empty means "[hestami]".
	SubjectPrefix string
	// Now dates the messages; nil means time.Now.
	Now func() time.Time
}

// Sender mails notifications. It opens one connection per message (alerts are rare,
// and a pooled connection would only time out between them). It is safe for
// concurrent use.
type Sender struct {
	name     string
	addr     string
	host     string
	security Security
	username string
	password string
	from     *mail.Address
	to       []*mail.Address
	tls      *tls.Config
	hello    string
	timeout  time.Duration
	prefix   string
	now      func() time.Time
	domain   string // for Message-IDs
}

var _ alert.Sender = (*Sender)(nil)

// New checks cfg, reads its CA file, and returns its Sender. It reports every
// problem at once.
func New(cfg Config) (*Sender, error) {
	var errs []error
	if cfg.Security == "" {
		cfg.Security = StartTLS
	}
	port := cfg.Port
	switch cfg.Security {
	case StartTLS:
		port = cmp.Or(port, 587)
	case TLS:
		port = cmp.Or(port, 465)
	default:
		errs = append(errs, fmt.Errorf("tls %q: want starttls or tls", cfg.Security))
	}
	if cfg.Host == "" || strings.ContainsAny(cfg.Host, " \r\n/") {
		errs = append(errs, fmt.Errorf("host %q: want the SMTP server's name", cfg.Host))
	}
	if port < 1 || port > 65535 {
		errs = append(errs, fmt.Errorf("port %d: want 1 to 65535", port))
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		errs = append(errs, fmt.Errorf("from %q: %w", cfg.From, err))
	}
	if len(cfg.To) == 0 {
		errs = append(errs, errors.New("to: want at least one recipient"))
	}
	var to []*mail.Address
	for _, t := range cfg.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("to %q: %w", t, err))
			continue
		}
		to = append(to, a)
	}
	if cfg.Password != "" && cfg.Username == "" {
		errs = append(errs, errors.New("password is set without a username"))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s: want a positive duration", cfg.Timeout))
	}
	roots := cfg.RootCAs
	if cfg.CAFile != "" {
		if roots != nil {
			errs = append(errs, errors.New("ca_file and RootCAs are both set: set one"))
		}
		roots, err = loadCAFile(cfg.CAFile)
		if err != nil {
			errs = append(errs, err)
		}
	}
	hello := cfg.HelloName
	if hello == "" {
		hello, _ = os.Hostname()
		if hello == "" || strings.ContainsAny(hello, " \r\n") {
			hello = "localhost"
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("email: %w", errors.Join(errs...))
	}
	s := &Sender{
		name:     cfg.Name,
		addr:     net.JoinHostPort(cfg.Host, strconv.Itoa(port)),
		host:     cfg.Host,
		security: cfg.Security,
		username: cfg.Username,
		password: cfg.Password,
		from:     from,
		to:       to,
		tls: &tls.Config{
			ServerName: cmp.Or(cfg.ServerName, cfg.Host),
			RootCAs:    roots,
			MinVersion: tls.VersionTLS12,
		},
		hello:   hello,
		timeout: cmp.Or(cfg.Timeout, DefaultTimeout),
		prefix:  cmp.Or(cfg.SubjectPrefix, "[hestami]"),
		now:     cfg.Now,
		domain:  "hestami.invalid",
	}
	if s.now == nil {
		s.now = time.Now
	}
	if at := strings.LastIndexByte(from.Address, '@'); at >= 0 && at < len(from.Address)-1 {
		s.domain = from.Address[at+1:]
	}
	if s.name == "" {
		h := sha256.New()
		fmt.Fprintln(h, s.addr, from.Address)
		for _, a := range to {
			fmt.Fprintln(h, a.Address)
		}
		s.name = fmt.Sprintf("email:%s#%s", cfg.Host, hex.EncodeToString(h.Sum(nil)[:4]))
	}
	return s, nil
}

func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Name returns the configured name, or one made from the server and a hash.
func (s *Sender) Name() string { return s.name }

// Send mails n to every recipient. It returns nil only once the server accepted the
// message for all of them; a refusal wraps the server's *textproto.Error (Code 550
// for an unknown recipient, 535 for bad credentials...).
func (s *Sender) Send(ctx context.Context, n alert.Notification) error {
	msg, err := s.compose(n)
	if err != nil {
		return fmt.Errorf("notify %s: %w", s.name, err)
	}
	if err := s.deliver(ctx, msg); err != nil {
		return fmt.Errorf("notify %s: %w", s.name, err)
	}
	return nil
}

// deliver runs one SMTP transaction, bounded by the timeout and by ctx.
func (s *Sender) deliver(ctx context.Context, msg []byte) (err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", s.addr, err)
	}
	defer conn.Close()
	// When ctx ends (the timeout, or the caller's cancel) whatever read or write is in
	// progress fails at once; ctx.Err() is set by then, so the error says why.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
	}()

	if s.security == TLS {
		tc := tls.Client(conn, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS with %s: %w", s.addr, err)
		}
		conn = tc
	}
	c, err := netsmtp.NewClient(conn, s.host)
	if err != nil {
		return fmt.Errorf("greeting from %s: %w", s.addr, err)
	}
	defer c.Close()
	if err := c.Hello(s.hello); err != nil {
		return fmt.Errorf("EHLO to %s: %w", s.addr, err)
	}
	if s.security == StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("%s does not offer STARTTLS, and hestami never mails in the clear: "+
				"enable STARTTLS on the server, or use tls: tls (implicit TLS, usually port 465)", s.addr)
		}
		if err := c.StartTLS(s.tls); err != nil {
			return fmt.Errorf("STARTTLS with %s: %w", s.addr, err)
		}
	}
	if s.username != "" {
		if err := s.auth(c); err != nil {
			return err
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return fmt.Errorf("sender %s refused by %s: %w", s.from.Address, s.addr, err)
	}
	for _, a := range s.to {
		if err := c.Rcpt(a.Address); err != nil {
			return fmt.Errorf("recipient %s refused by %s: %w; check notifications.email.to", a.Address, s.addr, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA refused by %s: %w", s.addr, err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("send message to %s: %w", s.addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("message refused by %s: %w", s.addr, err)
	}
	// The message is accepted; a failed QUIT changes nothing.
	c.Quit()
	return nil
}

// auth authenticates with PLAIN, or LOGIN when the server offers only that.
func (s *Sender) auth(c *netsmtp.Client) error {
	ok, params := c.Extension("AUTH")
	if !ok {
		return fmt.Errorf("%s offers no AUTH after TLS, but a username is configured: "+
			"remove notifications.email.username, or check host and port", s.addr)
	}
	mechs := strings.Fields(strings.ToUpper(params))
	var a netsmtp.Auth
	switch {
	case slices.Contains(mechs, "PLAIN"):
		a = netsmtp.PlainAuth("", s.username, s.password, s.host)
	case slices.Contains(mechs, "LOGIN"):
		a = &loginAuth{username: s.username, password: s.password}
	default:
		return fmt.Errorf("%s offers AUTH %s; hestami speaks PLAIN and LOGIN", s.addr, params)
	}
	if err := c.Auth(a); err != nil {
		return fmt.Errorf("authenticate as %s at %s: %w; check notifications.email.username and password_file", s.username, s.addr, err)
	}
	return nil
}

// loginAuth is the LOGIN mechanism (a de facto standard, never an RFC): the server asks
// for the username, then the password, each base64-encoded by net/smtp.
type loginAuth struct {
	username, password string
	step               int
}

func (a *loginAuth) Start(server *netsmtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errors.New("refusing AUTH LOGIN over an unencrypted connection")
	}
	a.step = 0
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	switch a.step {
	case 1:
		return []byte(a.username), nil
	case 2:
		return []byte(a.password), nil
	}
	return nil, fmt.Errorf("unexpected AUTH LOGIN challenge %q", fromServer)
}

// compose builds the RFC 5322 message: a text/plain UTF-8 body in quoted-printable,
// so it passes any 7-bit relay.
func (s *Sender) compose(n alert.Notification) ([]byte, error) {
	var b bytes.Buffer
	header := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteString("\r\n")
	}
	now := s.now()
	header("Date", now.Format(time.RFC1123Z))
	header("From", s.from.String())
	var to []string
	for _, a := range s.to {
		to = append(to, a.String())
	}
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", truncate(s.prefix+" "+n.Title(), 200)))
	id, err := s.messageID(now)
	if err != nil {
		return nil, err
	}
	header("Message-ID", id)
	// Every message about one occurrence of a problem refers to the same (unsent)
	// parent, so mail clients thread firing, repeats and resolved together.
	if n.State != alert.Event {
		sum := sha256.Sum256([]byte(n.Key))
		header("References", fmt.Sprintf("<alert-%s-%d@%s>", hex.EncodeToString(sum[:8]), n.FirstSeen.Unix(), s.domain))
	}
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated") // RFC 3834: no vacation replies
	header("X-Hestami-Alert", mime.QEncoding.Encode("utf-8", oneLine(n.Key)))
	header("X-Hestami-State", string(n.State))
	header("X-Hestami-Severity", string(n.Severity))
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(n.Text())); err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	b.WriteString("\r\n")
	return b.Bytes(), nil
}

func (s *Sender) messageID(now time.Time) (string, error) {
	var r [12]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("message id: %w", err)
	}
	return fmt.Sprintf("<%d.%s@%s>", now.Unix(), hex.EncodeToString(r[:]), s.domain), nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
