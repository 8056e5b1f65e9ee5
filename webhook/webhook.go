// Package webhook delivers alert notifications over HTTPS: as a generic JSON document
// (optionally signed with HMAC-SHA256), or as a Slack-compatible incoming-webhook
// message that Slack and Mattermost both accept. It uses only net/http.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hestami/hestami/alert"
)

// Kind is the payload format a webhook receives.
type Kind string

// Kinds of webhooks.
const (
	// JSON posts a Payload: the notification's fields, for programs.
	JSON Kind = "json"
	// Slack posts a SlackMessage, for Slack and Mattermost incoming webhooks.
	Slack Kind = "slack"
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the request body, keyed
// with Config.Secret.
const SignatureHeader = "X-Hestami-Signature"

// DefaultTimeout bounds one delivery when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// maxErrorBody is how much of a refusing receiver's body an error shows.
const maxErrorBody = 256

// Config configures one webhook.
type Config struct {
	// Name identifies the webhook in logs and in the alert state; empty means
	// "webhook:<host>#<hash>" (or "slack:..."), the hash a short SHA-256 of the URL, so
	// two webhooks on one host get two names and no secret from the URL shows.
	Name string
	// URL receives the POST. It must be https:// unless AllowHTTP is set. Slack
	// webhook URLs are secrets: they never appear in names or errors.
	URL string
	// Kind is the payload format; empty means JSON.
	Kind Kind
	// Secret, when set, signs JSON payloads (SignatureHeader). Slack webhooks cannot
	// be signed.
	Secret []byte
	// Timeout bounds one delivery; zero means DefaultTimeout.
	Timeout time.Duration
	// AllowHTTP permits plain http:// URLs: the payload and the signature then travel
	// unencrypted. Meant for a receiver on loopback or a trusted network.
	AllowHTTP bool
	// RootCAs, when set, are the only CAs trusted for the receiver's certificate (a
	// private CA); nil means the system's roots. Ignored when Client is set.
	RootCAs *x509.CertPool
	// Client sends the requests; nil means a client of this package's own. Redirects
	// are never followed, whatever the client says: a POST must not turn into a GET or
	// leave https.
	Client *http.Client
}

// Sender posts notifications to one webhook. It is safe for concurrent use.
type Sender struct {
	name     string
	url      string
	redacted string // scheme and host, for errors
	kind     Kind
	secret   []byte
	timeout  time.Duration
	client   *http.Client
}

var _ alert.Sender = (*Sender)(nil)

// New checks cfg and returns its Sender.
func New(cfg Config) (*Sender, error) {
	if cfg.Kind == "" {
		cfg.Kind = JSON
	}
	if cfg.Kind != JSON && cfg.Kind != Slack {
		return nil, fmt.Errorf("webhook: kind %q: want json or slack", cfg.Kind)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("webhook: url is not an absolute URL (https://host/path)")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && cfg.AllowHTTP:
	case u.Scheme == "http":
		return nil, fmt.Errorf("webhook %s://%s: plain http would send notifications unencrypted; use an https URL, or allow_http for a receiver on a trusted network", u.Scheme, u.Host)
	default:
		return nil, fmt.Errorf("webhook %s://%s: scheme %q: want https", u.Scheme, u.Host, u.Scheme)
	}
	if cfg.Kind == Slack && len(cfg.Secret) > 0 {
		return nil, fmt.Errorf("webhook %s://%s: slack webhooks cannot be signed; remove the secret, or use kind json", u.Scheme, u.Host)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("webhook %s://%s: timeout %s: want a positive duration", u.Scheme, u.Host, cfg.Timeout)
	}
	s := &Sender{
		name:     cfg.Name,
		url:      cfg.URL,
		redacted: u.Scheme + "://" + u.Host,
		kind:     cfg.Kind,
		secret:   bytes.Clone(cfg.Secret),
		timeout:  cfg.Timeout,
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.name == "" {
		prefix := "webhook"
		if cfg.Kind == Slack {
			prefix = "slack"
		}
		sum := sha256.Sum256([]byte(cfg.URL))
		s.name = fmt.Sprintf("%s:%s#%s", prefix, u.Host, hex.EncodeToString(sum[:4]))
	}
	var c http.Client
	if cfg.Client != nil {
		c = *cfg.Client
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.RootCAs != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		}
		c.Transport = t
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = &c
	return s, nil
}

// Name returns the configured name, or one made from the kind, the host and a hash.
func (s *Sender) Name() string { return s.name }

// Send posts n and returns nil only for a 2xx answer. Any other status is a
// *StatusError.
func (s *Sender) Send(ctx context.Context, n alert.Notification) error {
	var body []byte
	var err error
	if s.kind == Slack {
		body, err = json.Marshal(NewSlackMessage(n))
	} else {
		body, err = json.Marshal(NewPayload(n))
	}
	if err != nil {
		return fmt.Errorf("notify %s: encode %s: %w", s.name, n.Key, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify %s: %w", s.name, s.redact(err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "hestami")
	if len(s.secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(s.secret, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("notify %s: %w", s.name, s.redact(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
		return fmt.Errorf("notify %s: post to %s: %w", s.name, s.redacted, &StatusError{Code: resp.StatusCode, Body: clean(snippet)})
	}
	// Drain a little so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

// redact takes the URL, which may hold a token, out of net/http's errors.
func (s *Sender) redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = s.redacted
	}
	return err
}

// Sign returns the SignatureHeader value for body: "sha256=" and the hex HMAC-SHA256
// of body keyed with secret. A receiver computes the same over the raw body it got
// and compares in constant time (hmac.Equal).
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// StatusError is a receiver's refusal: a status other than 2xx.
type StatusError struct {
	Code int
	// Body is the start of the response body, on one line.
	Body string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("HTTP %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// clean makes a response snippet safe for one log line.
func clean(b []byte) string {
	truncated := len(b) > maxErrorBody
	if truncated {
		b = b[:maxErrorBody]
	}
	// A rune cut in two at the end is invalid UTF-8, and dropped here.
	s := strings.ToValidUTF8(string(b), "")
	s = strings.Join(strings.Fields(s), " ")
	if truncated {
		s += " …"
	}
	return s
}

// PayloadSchema names the version of Payload's shape; it changes only if a field
// changes meaning or goes away.
const PayloadSchema = "hestami.notification.v1"

// Payload is the JSON document a JSON webhook receives.
type Payload struct {
	Schema string `json:"schema"`
	// Key identifies the problem: messages about one occurrence share it.
	Key string `json:"key"`
	// State is firing, repeat, resolved or event.
	State    alert.State    `json:"state"`
	Severity alert.Severity `json:"severity"`
	// Title is a ready-made headline ("CRITICAL: ..."); Summary is the alert's own.
	Title   string            `json:"title"`
	Summary string            `json:"summary"`
	Details string            `json:"details"`
	Labels  map[string]string `json:"labels"`
	// Time is when the problem was last observed (for an event: when it happened).
	Time      time.Time `json:"time"`
	FirstSeen time.Time `json:"first_seen"`
	// ResolvedAt is set only when State is resolved.
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	// Count is how many times the problem was observed since FirstSeen.
	Count int `json:"count"`
}

// NewPayload returns n as a Payload, times in UTC.
func NewPayload(n alert.Notification) Payload {
	p := Payload{
		Schema:    PayloadSchema,
		Key:       n.Key,
		State:     n.State,
		Severity:  n.Severity,
		Title:     n.Title(),
		Summary:   n.Summary,
		Details:   n.Details,
		Labels:    n.Labels,
		Time:      n.Time.UTC(),
		FirstSeen: n.FirstSeen.UTC(),
		Count:     n.Count,
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	if n.State == alert.Resolved && !n.ResolvedAt.IsZero() {
		t := n.ResolvedAt.UTC()
		p.ResolvedAt = &t
	}
	return p
}
