package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
)

// HelpdeskConfig configures the helpdesk that account recovery requests open
// tickets in.
type HelpdeskConfig struct {
	// URL receives a POST per ticket. It must be https://, except on loopback
	// (a helpdesk bridge on the same host, tests).
	URL string
	// Token is sent as "Authorization: Bearer <token>"; empty sends none. It
	// never appears in errors or logs.
	Token string
	// IDField names the ticket id in the helpdesk's JSON answer; dots reach
	// into objects ("ticket.id" for {"ticket": {"id": 42}}). Default "id". The
	// id may be a string or a number.
	IDField string
	// Timeout bounds one request; zero means DefaultTimeout.
	Timeout time.Duration
	// RootCAs, when set, are the only CAs trusted for the helpdesk's certificate;
	// nil means the system's roots. Ignored when Client is set.
	RootCAs *x509.CertPool
	// Client sends the requests; nil means one of this package's own. Redirects
	// are never followed.
	Client *http.Client
}

// Helpdesk opens support tickets through a helpdesk's HTTP API: it POSTs
// HelpdeskTicket as JSON and reads the new ticket's id from the answer. It is
// safe for concurrent use.
type Helpdesk struct {
	url      string
	redacted string // scheme and host, for errors
	token    string
	idPath   []string
	timeout  time.Duration
	client   *http.Client
}

var _ auth.Helpdesk = (*Helpdesk)(nil)

// HelpdeskTicket is the JSON body a helpdesk receives.
type HelpdeskTicket struct {
	Subject        string `json:"subject"`
	Body           string `json:"body"`
	RequesterEmail string `json:"requester_email"`
	// ExternalID is the recovery request's id, so the helpdesk (or a person)
	// can find the request from the ticket.
	ExternalID string `json:"external_id"`
}

// maxHelpdeskAnswer bounds the helpdesk's answer read.
const maxHelpdeskAnswer = 1 << 20

// NewHelpdesk checks cfg and returns its Helpdesk.
func NewHelpdesk(cfg HelpdeskConfig) (*Helpdesk, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, errors.New("helpdesk: url is not an absolute URL (https://helpdesk.example/api/tickets)")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return nil, fmt.Errorf("helpdesk %s://%s: plain http would send tickets and the token unencrypted; use an https URL (http is allowed only on loopback)", u.Scheme, u.Host)
	default:
		return nil, fmt.Errorf("helpdesk %s://%s: scheme %q: want https", u.Scheme, u.Host, u.Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("helpdesk %s://%s: put the credentials in the token, not in the URL", u.Scheme, u.Host)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("helpdesk %s://%s: timeout %s: want a positive duration", u.Scheme, u.Host, cfg.Timeout)
	}
	if strings.ContainsAny(cfg.Token, "\r\n") {
		return nil, fmt.Errorf("helpdesk %s://%s: the token has a line break (a stray newline from its file?)", u.Scheme, u.Host)
	}
	field := cfg.IDField
	if field == "" {
		field = "id"
	}
	path := strings.Split(field, ".")
	for _, p := range path {
		if p == "" {
			return nil, fmt.Errorf("helpdesk %s://%s: id field %q: want a name, or names joined by dots (ticket.id)", u.Scheme, u.Host, field)
		}
	}
	h := &Helpdesk{
		url: cfg.URL, redacted: u.Scheme + "://" + u.Host, token: cfg.Token, idPath: path,
		timeout: cfg.Timeout,
	}
	if h.timeout == 0 {
		h.timeout = DefaultTimeout
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
	h.client = &c
	return h, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CreateTicket opens t and returns the helpdesk's ticket id. It fails on any
// answer but a 2xx with a JSON object holding the id field (a *StatusError for a
// refusal; 401 and 403 say to check the token).
func (h *Helpdesk) CreateTicket(ctx context.Context, t auth.Ticket) (string, error) {
	body, err := json.Marshal(HelpdeskTicket{Subject: t.Subject, Body: t.Body, RequesterEmail: t.RequesterEmail, ExternalID: t.RequestID})
	if err != nil {
		return "", fmt.Errorf("create helpdesk ticket: encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("create helpdesk ticket at %s: %w", h.redacted, h.redact(err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "hestami")
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("create helpdesk ticket at %s: %w", h.redacted, h.redact(err))
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxHelpdeskAnswer+1))
	if err != nil {
		return "", fmt.Errorf("create helpdesk ticket at %s: read the answer: %w", h.redacted, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &StatusError{Code: resp.StatusCode, Body: clean(answer)}
		hint := ""
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			hint = " (check the helpdesk token and its permission to create tickets)"
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			hint = " (check the helpdesk URL)"
		}
		return "", fmt.Errorf("create helpdesk ticket at %s%s: %w", h.redacted, hint, se)
	}
	if len(answer) > maxHelpdeskAnswer {
		return "", fmt.Errorf("create helpdesk ticket at %s: the answer is over %d bytes", h.redacted, maxHelpdeskAnswer)
	}
	id, err := h.ticketID(answer)
	if err != nil {
		return "", fmt.Errorf("create helpdesk ticket at %s: HTTP %d, but %w", h.redacted, resp.StatusCode, err)
	}
	return id, nil
}

// ticketID finds the id field in a JSON answer.
func (h *Helpdesk) ticketID(answer []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(answer))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("the answer is not JSON: %q", clean(answer))
	}
	for i, name := range h.idPath {
		obj, ok := v.(map[string]any)
		if !ok {
			return "", fmt.Errorf("the answer has no %q field (%s is not an object): set the id field to the name the helpdesk uses", strings.Join(h.idPath, "."), strings.Join(append([]string{"answer"}, h.idPath[:i]...), "."))
		}
		if v, ok = obj[name]; !ok {
			return "", fmt.Errorf("the answer has no %q field: set the id field to the name the helpdesk uses; answer: %s", strings.Join(h.idPath, "."), clean(answer))
		}
	}
	switch id := v.(type) {
	case string:
		if id != "" {
			return id, nil
		}
	case json.Number:
		if _, err := strconv.ParseFloat(id.String(), 64); err == nil {
			return id.String(), nil
		}
	}
	return "", fmt.Errorf("the answer's %q field is %v, not a ticket id (a non-empty string or a number)", strings.Join(h.idPath, "."), v)
}

// redact takes the URL (its path or query may hold a key) out of net/http's
// errors.
func (h *Helpdesk) redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = h.redacted
	}
	return err
}
