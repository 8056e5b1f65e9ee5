// Package smtp delivers email through an SMTP submission server, always encrypted:
// STARTTLS (port 587) or implicit TLS (port 465), with AUTH PLAIN or LOGIN when
// credentials are configured. Sender mails alert notifications to the operators
// (an alert.Sender); Mailer mails people (codes, notices: an auth.Mailer).
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
	*transport
	name   string
	from   *mail.Address
	to     []*mail.Address
	prefix string
	now    func() time.Time
	domain string // for Message-IDs
}

// transport is one SMTP server and how to reach it: the address, the encryption
// and the credentials. Sender (alerts) and Mailer (mail to people) share it.
type transport struct {
	addr     string
	host     string
	security Security
	username string
	password string
	tls      *tls.Config
	hello    string
	timeout  time.Duration
	// section is the configuration section that errors point at
	// ("notifications.email").
	section string
}

var _ alert.Sender = (*Sender)(nil)

// New checks cfg, reads its CA file, and returns its Sender. It reports every
// problem at once.
func New(cfg Config) (*Sender, error) {
	t, from, errs := newTransport(cfg, "notifications.email")
	if len(cfg.To) == 0 {
		errs = append(errs, errors.New("to: want at least one recipient"))
	}
	var to []*mail.Address
	for _, a := range cfg.To {
		addr, err := mail.ParseAddress(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("to %q: %w", a, err))
			continue
		}
		to = append(to, addr)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("email: %w", errors.Join(errs...))
	}
	s := &Sender{
		transport: t,
		name:      cfg.Name,
		from:      from,
		to:        to,
		prefix:    cmp.Or(cfg.SubjectPrefix, "[hestami]"),
		now:       cfg.Now,
		domain:    domainOf(from),
	}
	if s.now == nil {
		s.now = time.Now
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

// newTransport checks the server part of cfg (everything but the recipients)
// and returns the transport and the parsed sender, or every problem found.
func newTransport(cfg Config, section string) (*transport, *mail.Address, []error) {
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
		return nil, nil, errs
	}
	return &transport{
		addr:     net.JoinHostPort(cfg.Host, strconv.Itoa(port)),
		host:     cfg.Host,
		security: cfg.Security,
		username: cfg.Username,
		password: cfg.Password,
		tls: &tls.Config{
			ServerName: cmp.Or(cfg.ServerName, cfg.Host),
			RootCAs:    roots,
			MinVersion: tls.VersionTLS12,
		},
		hello:   hello,
		timeout: cmp.Or(cfg.Timeout, DefaultTimeout),
		section: section,
	}, from, nil
}

// domainOf is the domain of the sender's address, for Message-IDs.
func domainOf(from *mail.Address) string {
	if at := strings.LastIndexByte(from.Address, '@'); at >= 0 && at < len(from.Address)-1 {
		return from.Address[at+1:]
	}
	return "hestami.invalid"
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
	to := make([]string, 0, len(s.to))
	for _, a := range s.to {
		to = append(to, a.Address)
	}
	if err := s.deliver(ctx, s.from.Address, to, msg); err != nil {
		var re *RecipientError
		if errors.As(err, &re) {
			return fmt.Errorf("notify %s: %w; check %s.to", s.name, err, s.section)
		}
		return fmt.Errorf("notify %s: %w", s.name, err)
	}
	return nil
}

// deliver runs one SMTP transaction, from from to every address of to, bounded
// by the timeout and by ctx. A refused recipient is a *RecipientError.
func (s *transport) deliver(ctx context.Context, from string, to []string, msg []byte) (err error) {
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
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("sender %s refused by %s: %w; check %s.from", from, s.addr, err, s.section)
	}
	for _, a := range to {
		if err := c.Rcpt(a); err != nil {
			return &RecipientError{Address: a, Server: s.addr, Err: err}
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
func (s *transport) auth(c *netsmtp.Client) error {
	ok, params := c.Extension("AUTH")
	if !ok {
		return fmt.Errorf("%s offers no AUTH after TLS, but a username is configured: "+
			"remove %s.username, or check host and port", s.addr, s.section)
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
		return fmt.Errorf("authenticate as %s at %s: %w; check %s.username and password_file", s.username, s.addr, err, s.section)
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

// compose builds the alert's message.
func (s *Sender) compose(n alert.Notification) ([]byte, error) {
	now := s.now()
	var to []string
	for _, a := range s.to {
		to = append(to, a.String())
	}
	id, err := messageID(now, s.domain)
	if err != nil {
		return nil, err
	}
	h := [][2]string{
		{"Date", now.Format(time.RFC1123Z)},
		{"From", s.from.String()},
		{"To", strings.Join(to, ", ")},
		{"Subject", mime.QEncoding.Encode("utf-8", truncate(s.prefix+" "+n.Title(), 200))},
		{"Message-ID", id},
	}
	// Every message about one occurrence of a problem refers to the same (unsent)
	// parent, so mail clients thread firing, repeats and resolved together.
	if n.State != alert.Event {
		sum := sha256.Sum256([]byte(n.Key))
		h = append(h, [2]string{"References", fmt.Sprintf("<alert-%s-%d@%s>", hex.EncodeToString(sum[:8]), n.FirstSeen.Unix(), s.domain)})
	}
	h = append(h,
		[2]string{"X-Hestami-Alert", mime.QEncoding.Encode("utf-8", oneLine(n.Key))},
		[2]string{"X-Hestami-State", string(n.State)},
		[2]string{"X-Hestami-Severity", string(n.Severity)},
	)
	return textMessage(h, n.Text())
}

// textMessage builds an RFC 5322 message with headers h and a text/plain UTF-8
// body in quoted-printable, so it passes any 7-bit relay. It is marked
// Auto-Submitted (RFC 3834), so vacation responders stay quiet.
func textMessage(h [][2]string, text string) ([]byte, error) {
	var b bytes.Buffer
	h = append(h,
		[2]string{"MIME-Version", "1.0"},
		[2]string{"Content-Type", "text/plain; charset=utf-8"},
		[2]string{"Content-Transfer-Encoding", "quoted-printable"},
		[2]string{"Auto-Submitted", "auto-generated"},
	)
	for _, kv := range h {
		b.WriteString(kv[0])
		b.WriteString(": ")
		b.WriteString(kv[1])
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(text)); err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	if !strings.HasSuffix(text, "\n") {
		b.WriteString("\r\n")
	}
	return b.Bytes(), nil
}

// messageID returns a new, unique Message-ID in domain.
func messageID(now time.Time, domain string) (string, error) {
	var r [12]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("message id: %w", err)
	}
	return fmt.Sprintf("<%d.%s@%s>", now.Unix(), hex.EncodeToString(r[:]), domain), nil
}

// RecipientError is a recipient the server refused (RCPT TO); Err wraps the
// server's *textproto.Error (550 for an unknown mailbox).
type RecipientError struct {
	Address string
	Server  string
	Err     error
}

func (e *RecipientError) Error() string {
	return fmt.Sprintf("recipient %s refused by %s: %v", e.Address, e.Server, e.Err)
}

func (e *RecipientError) Unwrap() error { return e.Err }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
