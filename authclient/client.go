package authclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hestami/hestami/auth"
)

// DefaultCacheTTL is how long Client remembers what a token stands for.
const DefaultCacheTTL = 5 * time.Second

// maxCached bounds the tokens Client remembers at once.
const maxCached = 4096

// Config configures a Client.
type Config struct {
	// URL is the auth service's public URL (auth.public_url), such as
	// https://auth.hestami.example: https, or http on localhost or a loopback
	// address (development and tests).
	URL string
	// HTTPClient makes the calls (nil: one with a 10 second timeout).
	HTTPClient *http.Client
	// CacheTTL is how long a token's principal is served from memory before
	// the auth service is asked again (0: DefaultCacheTTL; negative: never
	// cached). A signed-out session, a revoked token or a changed role is seen
	// at most this late.
	CacheTTL time.Duration
	// Now is the clock of the cache (nil: time.Now).
	Now func() time.Time
}

// Client asks the auth service who a token stands for. It is safe for
// concurrent use.
type Client struct {
	base *url.URL
	http *http.Client
	ttl  time.Duration
	now  func() time.Time

	mu    sync.Mutex
	cache map[string]cached // by auth.HashToken of the token
}

type cached struct {
	p       *Principal
	expires time.Time
}

// New returns a Client, or an error saying what is wrong with cfg.
func New(cfg Config) (*Client, error) {
	base, err := checkURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("auth client: auth service URL: %w", err)
	}
	c := &Client{base: base, http: cfg.HTTPClient, ttl: cfg.CacheTTL, now: cfg.Now, cache: map[string]cached{}}
	if c.http == nil {
		c.http = &http.Client{Timeout: 10 * time.Second}
	}
	if c.ttl == 0 {
		c.ttl = DefaultCacheTTL
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// checkURL accepts an absolute https URL, or http on a loopback host, without
// a query, fragment or user; it returns it without a trailing slash.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	switch {
	case raw == "":
		return nil, errors.New("empty; want the service's public URL, e.g. https://auth.hestami.example")
	case err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%q: want an absolute URL without query or fragment, e.g. https://auth.hestami.example", raw)
	case u.Scheme == "https", u.Scheme == "http" && isLoopback(u.Hostname()):
		return u, nil
	}
	return nil, fmt.Errorf("%q: must be https (http only on localhost or a loopback address)", raw)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// URL returns the auth service's URL, without a trailing slash.
func (c *Client) URL() string { return c.base.String() }

// Issuer returns the auth service's OpenID Connect issuer: URL + "/oidc".
func (c *Client) Issuer() string { return c.URL() + "/oidc" }

// StepUpURL returns the auth service's page that verifies a fresh second
// factor and then sends the browser to returnTo (an absolute URL on an origin
// the auth service lists in auth.return_origins; otherwise the person lands
// on their account page). A session's second factor is carried by tokens
// issued after it: the person signs in to the application again afterwards.
func (c *Client) StepUpURL(returnTo string) string {
	q := url.Values{"purpose": {"step-up"}}
	if returnTo != "" {
		q.Set("return_to", returnTo)
	}
	return c.URL() + "/mfa/challenge?" + q.Encode()
}

// meJSON is the part of GET /api/v1/me a Principal needs.
type meJSON struct {
	MFA *struct {
		Action          string   `json:"action"`
		AcceptedMethods []string `json:"accepted_methods"`
		Reason          string   `json:"reason"`
		Location        string   `json:"location"`
	} `json:"mfa"`
	Permissions []string `json:"permissions"`
	Session     struct {
		ID       string     `json:"id"`
		AuthTime time.Time  `json:"auth_time"`
		MFAAt    *time.Time `json:"mfa_at"`
		Methods  []string   `json:"methods"`
	} `json:"session"`
	User struct {
		ID    string `json:"id"`
		Type  string `json:"type"`
		Email string `json:"email"`
		Name  string `json:"name"`
	} `json:"user"`
}

// errorJSON is the auth service's error answer.
type errorJSON struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	MFA *struct {
		Action          string   `json:"action"`
		AcceptedMethods []string `json:"accepted_methods"`
		Reason          string   `json:"reason"`
		Location        string   `json:"location"`
	} `json:"mfa"`
}

// gates reports whether an MFA action of the auth service stops the person
// (the session owes a challenge, must set up a factor, or is blocked).
func gates(action string) bool {
	return action == "challenge" || action == "setup_required" || action == "blocked"
}

// Principal returns who the access token (the bare token, without "Bearer ")
// stands for, asking the auth service unless it answered for the same token
// less than CacheTTL ago. Errors: ErrUnauthenticated (an empty, invalid,
// expired or revoked token, or its session ended), *MFARequiredError (the
// session still owes the auth service's MFA policy a second factor), an
// *Error matching ErrForbidden for other refusals, and ErrUnavailable when the
// auth service cannot be asked.
func (c *Client) Principal(ctx context.Context, bearer string) (*Principal, error) {
	if bearer == "" {
		return nil, fmt.Errorf("no access token: %w", ErrUnauthenticated)
	}
	key := auth.HashToken(bearer)
	now := c.now()
	if c.ttl > 0 {
		c.mu.Lock()
		e, ok := c.cache[key]
		c.mu.Unlock()
		if ok && now.Before(e.expires) {
			return e.p.clone(), nil
		}
	}
	p, err := c.fetch(ctx, bearer)
	if err != nil {
		c.Forget(bearer)
		return nil, err
	}
	if c.ttl > 0 {
		c.mu.Lock()
		if len(c.cache) >= maxCached {
			for k, e := range c.cache {
				if !now.Before(e.expires) {
					delete(c.cache, k)
				}
			}
			if len(c.cache) >= maxCached {
				clear(c.cache)
			}
		}
		c.cache[key] = cached{p: p.clone(), expires: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return p, nil
}

// Forget drops what the cache remembers of the token (after signing out).
func (c *Client) Forget(bearer string) {
	c.mu.Lock()
	delete(c.cache, auth.HashToken(bearer))
	c.mu.Unlock()
}

// fetch asks GET /api/v1/me with the token.
func (c *Client) fetch(ctx context.Context, bearer string) (*Principal, error) {
	u := c.URL() + "/api/v1/me"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("ask the auth service: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ask the auth service: %w", ctx.Err())
		}
		return nil, unavailable(u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, unavailable(u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.refusal(resp.StatusCode, body)
	}
	var me meJSON
	if err := json.Unmarshal(body, &me); err != nil || me.User.ID == "" || me.Session.ID == "" {
		return nil, unavailable(u, fmt.Errorf("an answer that is not the signed-in user (%d bytes): is %s the auth service?", len(body), c.URL()))
	}
	if me.MFA != nil && gates(me.MFA.Action) {
		code := "mfa_required"
		if me.MFA.Action == "blocked" {
			code = "mfa_blocked"
		}
		return nil, &MFARequiredError{Code: code, Action: me.MFA.Action, AcceptedMethods: me.MFA.AcceptedMethods,
			Reason: me.MFA.Reason, Location: c.absolute(me.MFA.Location)}
	}
	p := &Principal{UserID: me.User.ID, Email: me.User.Email, Name: me.User.Name, Type: me.User.Type,
		Permissions: me.Permissions, Methods: me.Session.Methods, AuthTime: me.Session.AuthTime, SessionID: me.Session.ID}
	if me.Session.MFAAt != nil {
		p.MFAAt = *me.Session.MFAAt
	}
	return p, nil
}

// refusal turns an error answer into an error.
func (c *Client) refusal(status int, body []byte) error {
	var e errorJSON
	_ = json.Unmarshal(body, &e)
	if status == http.StatusForbidden && e.MFA != nil && (e.Error.Code == "mfa_required" || e.Error.Code == "mfa_blocked") {
		return &MFARequiredError{Code: e.Error.Code, Action: e.MFA.Action, AcceptedMethods: e.MFA.AcceptedMethods,
			Reason: e.MFA.Reason, Location: c.absolute(e.MFA.Location)}
	}
	if e.Error.Code == "" {
		e.Error.Code = http.StatusText(status)
	}
	return &Error{Status: status, Code: e.Error.Code, Message: e.Error.Message}
}

// absolute resolves a path of the auth service ("/mfa/challenge") against its
// URL.
func (c *Client) absolute(loc string) string {
	if loc == "" {
		return ""
	}
	u, err := c.base.Parse(loc)
	if err != nil || u.Host != c.base.Host {
		return c.URL() + "/"
	}
	return u.String()
}
