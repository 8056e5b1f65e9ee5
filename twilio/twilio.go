// Package twilio sends text messages through Twilio's Programmable Messaging
// REST API (POST /2010-04-01/Accounts/{AccountSid}/Messages.json): the
// auth.SMSSender for SMS codes in production.
//
// It speaks the API with net/http rather than Twilio's Go SDK: one form POST
// with basic auth and a JSON answer is all we need, and the SDK would bring
// every Twilio product's generated client along.
package twilio

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
)

// DefaultBaseURL is Twilio's API.
const DefaultBaseURL = "https://api.twilio.com"

// DefaultTimeout bounds one request when Config.Timeout is zero.
const DefaultTimeout = 15 * time.Second

// Config configures a Sender.
type Config struct {
	// AccountSID ("AC" and 32 hex digits) and AuthToken authenticate (HTTP
	// basic auth). The token is a secret: it is never logged or shown in
	// errors.
	AccountSID string
	AuthToken  string
	// From is the sender: a Twilio number in E.164 form or an alphanumeric
	// sender id. Set either From or MessagingServiceSID ("MG...": Twilio picks
	// the sender from the service's pool).
	From                string
	MessagingServiceSID string
	// BaseURL is the API's origin; empty means DefaultBaseURL. It must be
	// https, except on a loopback host (a test double).
	BaseURL string
	// HTTPClient makes the requests; nil means a client that refuses
	// redirects.
	HTTPClient *http.Client
	// Timeout bounds one request; zero means DefaultTimeout.
	Timeout time.Duration
}

// Sender sends text messages with one Twilio account. It is safe for
// concurrent use.
type Sender struct {
	endpoint string
	sid      string
	token    string
	from     string
	service  string
	client   *http.Client
	timeout  time.Duration
}

var _ auth.SMSSender = (*Sender)(nil)

// New checks cfg and returns its Sender, reporting every problem at once.
func New(cfg Config) (*Sender, error) {
	var errs []error
	if !sid(cfg.AccountSID, "AC") {
		errs = append(errs, fmt.Errorf("account SID %q: want AC followed by 32 hex digits, from the Twilio console", cfg.AccountSID))
	}
	if cfg.AuthToken == "" {
		errs = append(errs, errors.New("auth token: missing"))
	}
	switch {
	case cfg.From == "" && cfg.MessagingServiceSID == "":
		errs = append(errs, errors.New("from: set a sender number (E.164, like +14155552671) or a messaging service SID"))
	case cfg.From != "" && cfg.MessagingServiceSID != "":
		errs = append(errs, errors.New("from and messaging service SID are both set: set one"))
	case cfg.MessagingServiceSID != "" && !sid(cfg.MessagingServiceSID, "MG"):
		errs = append(errs, fmt.Errorf("messaging service SID %q: want MG followed by 32 hex digits", cfg.MessagingServiceSID))
	}
	base := strings.TrimRight(cmp.Or(cfg.BaseURL, DefaultBaseURL), "/")
	if err := checkBaseURL(base); err != nil {
		errs = append(errs, err)
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s: want a positive duration", cfg.Timeout))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("twilio: %w", errors.Join(errs...))
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Sender{
		endpoint: base + "/2010-04-01/Accounts/" + cfg.AccountSID + "/Messages.json",
		sid:      cfg.AccountSID,
		token:    cfg.AuthToken,
		from:     cfg.From,
		service:  cfg.MessagingServiceSID,
		client:   client,
		timeout:  cmp.Or(cfg.Timeout, DefaultTimeout),
	}, nil
}

// sid reports whether s is a Twilio SID with prefix: two letters and 32 hex
// digits.
func sid(s, prefix string) bool {
	if len(s) != 34 || !strings.HasPrefix(s, prefix) {
		return false
	}
	return strings.Trim(strings.ToLower(s[2:]), "0123456789abcdef") == ""
}

// checkBaseURL refuses anything but an https origin (with an optional path),
// or http on a loopback host: the auth token travels in every request.
func checkBaseURL(base string) error {
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("base URL %q: %w", base, err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("base URL %q: want an origin like %s", base, DefaultBaseURL)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if h := u.Hostname(); h == "localhost" || net.ParseIP(h) != nil && net.ParseIP(h).IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("base URL %q: want https (the auth token must not travel in the clear; plain http only to a loopback test server)", base)
}

// Message is a message Twilio accepted.
type Message struct {
	SID    string `json:"sid"`    // "SM..."
	Status string `json:"status"` // "queued", "accepted"...
}

// Error is Twilio's answer to a request it refused
// (https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions),
// or a failure before there was one (Code 0).
type Error struct {
	// Status is the HTTP status (0 if there was no answer).
	Status int
	// Code is Twilio's error code (21211, 20003...; 0 if none).
	Code     int
	Message  string
	MoreInfo string
}

// hints say what to do about the error codes an operator can fix.
var hints = map[int]string{
	20003: "authentication failed: check the Twilio account SID and auth token",
	20404: "the account or resource was not found: check the account SID",
	20429: "Twilio is rate-limiting the account: fewer messages, or ask Twilio for more throughput",
	21211: "the To number is not a valid phone number",
	21212: "the From number is not valid: use a Twilio number in E.164 form, or a messaging service SID",
	21408: "the account may not send SMS to this country: enable it under Messaging > Settings > Geo permissions in the Twilio console",
	21606: "the From number cannot send this SMS: use an SMS-capable Twilio number",
	21608: "the account is a trial account and the To number is not verified: verify it in the Twilio console or upgrade the account",
	21610: "the recipient replied STOP: they must reply START before they receive messages again",
	21612: "Twilio cannot route a message between the From and To numbers",
	21614: "the To number is not a mobile number",
	21703: "the messaging service has no sender numbers: add some in the Twilio console",
	21704: "the messaging service has no sender for this To number: add one in the Twilio console",
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("twilio")
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, ", error %d", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if h, ok := hints[e.Code]; ok {
		b.WriteString(" (" + h + ")")
	} else if e.Status == http.StatusUnauthorized {
		b.WriteString(" (check the Twilio account SID and auth token)")
	} else if e.Status >= 500 || e.Status == http.StatusTooManyRequests {
		b.WriteString(" (Twilio is failing or overloaded: try again later, and see status.twilio.com)")
	}
	if e.MoreInfo != "" {
		b.WriteString("; see " + e.MoreInfo)
	}
	return b.String()
}

// Send asks Twilio to text body to to (E.164) and returns the accepted message.
// A refusal is an *Error.
func (s *Sender) Send(ctx context.Context, to, body string) (*Message, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	form := url.Values{"To": {to}, "Body": {body}}
	if s.service != "" {
		form.Set("MessagingServiceSid", s.service)
	} else {
		form.Set("From", s.from)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("twilio: %w", err)
	}
	req.SetBasicAuth(s.sid, s.token)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "hestami")
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error names the URL, which holds the account SID but never the
		// token (basic auth travels in a header).
		return nil, fmt.Errorf("twilio: send message: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("twilio: read answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		e := &Error{Status: resp.StatusCode}
		var body struct {
			Code     int    `json:"code"`
			Message  string `json:"message"`
			MoreInfo string `json:"more_info"`
		}
		if json.Unmarshal(raw, &body) == nil && (body.Code != 0 || body.Message != "") {
			e.Code, e.Message, e.MoreInfo = body.Code, body.Message, body.MoreInfo
		} else {
			e.Message = snippet(raw)
		}
		return nil, e
	}
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil || m.SID == "" {
		return nil, fmt.Errorf("twilio: HTTP %d with an answer that is not a message (%q): check the base URL", resp.StatusCode, snippet(raw))
	}
	return &m, nil
}

// snippet is the start of a non-JSON answer, on one line, for the logs.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// SendSMS implements auth.SMSSender. Its errors are *auth.Error wrapping the
// cause: CodeInvalid with a message for the person when the number cannot
// receive the message (not a mobile number, opted out with STOP, a country we
// cannot send to), CodeUnavailable otherwise (the cause, logged, says what the
// operator should fix).
func (s *Sender) SendSMS(ctx context.Context, m auth.SMS) error {
	_, err := s.Send(ctx, m.To, m.Body)
	if err == nil {
		return nil
	}
	var te *Error
	if errors.As(err, &te) {
		switch te.Code {
		case 21211, 21614:
			return auth.Errorf(auth.CodeInvalid, "That number cannot receive text messages. Enter a mobile number, or use another method.").WithCause(err)
		case 21610:
			return auth.Errorf(auth.CodeInvalid, "That number has turned off our text messages (it replied STOP). Reply START to one of our messages, or use another method.").WithCause(err)
		case 21408, 21612:
			return auth.Errorf(auth.CodeInvalid, "We cannot send text messages to numbers in that country. Use another method.").WithCause(err)
		}
	}
	return auth.Errorf(auth.CodeUnavailable, "We could not send the text message. Try again in a few minutes, or use another method.").WithCause(err)
}
