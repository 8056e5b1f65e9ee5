package devidp

import (
	"crypto/rand"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
)

// authRequest is a validated authorization request whose sign-in page is shown.
type authRequest struct {
	redirectURI string
	state       string
	nonce       string
	challenge   string // PKCE S256 code_challenge
	scope       string
	expires     time.Time
}

// grant is an authorization code and what it was issued for.
type grant struct {
	authRequest
	subject  string
	authTime time.Time
	// used is set by the first redemption; accessToken is what it issued, revoked
	// if the code is replayed.
	used        bool
	accessToken string
}

// authorize serves the authorization endpoint: GET (or POST, as OpenID Connect
// allows) with an authorization request shows the sign-in page; POST from that
// page (a "request" field) is the person's choice.
func (p *IdP) authorize(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		p.begin(w, r, r.URL.Query())
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			p.errorPage(w, http.StatusBadRequest, "The sign-in form could not be read", "Go back to the application and start signing in again.")
			return
		}
		if r.PostForm.Has("request") {
			p.choose(w, r)
			return
		}
		p.begin(w, r, r.PostForm)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// begin validates an authorization request and shows the sign-in page. Until the
// client and redirect URI are known to be right, errors are shown here: sending
// them to an unregistered redirect URI would make this an open redirector.
func (p *IdP) begin(w http.ResponseWriter, r *http.Request, q url.Values) {
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	if clientID != p.clientID {
		p.log.Warn("development sign-in refused: unknown client", "client_id", clientID)
		p.errorPage(w, http.StatusBadRequest, "Unknown application",
			"The client_id "+quote(clientID)+" is not registered here; the registered one is "+quote(p.clientID)+". Check the auth service's configuration for the development identity provider.")
		return
	}
	if !slices.Contains(p.redirectURIs, redirectURI) {
		p.log.Warn("development sign-in refused: unregistered redirect URI", "redirect_uri", redirectURI)
		p.errorPage(w, http.StatusBadRequest, "Unregistered redirect URI",
			"The redirect_uri "+quote(redirectURI)+" is not registered for this application. Registered: "+strings.Join(p.redirectURIs, ", ")+". Check the auth service's public URL.")
		return
	}
	state := q.Get("state")
	fail := func(code, description string) {
		p.log.Warn("development sign-in refused", "error", code, "detail", description)
		redirect(w, r, redirectURI, http.StatusFound, url.Values{"error": {code}, "error_description": {description}, "state": {state}})
	}
	scope := q.Get("scope")
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
	case !slices.Contains(strings.Fields(scope), "openid"):
		fail("invalid_scope", "scope must include openid")
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256")
	case !validChallenge(q.Get("code_challenge")):
		fail("invalid_request", "code_challenge must be the 43-character base64url SHA-256 of the code verifier")
	case slices.Contains(strings.Fields(q.Get("prompt")), "none"):
		fail("login_required", "the development identity provider always asks whom to sign in as")
	default:
		id := rand.Text()
		now := p.now()
		p.mu.Lock()
		p.sweepLocked(now)
		p.requests[id] = &authRequest{
			redirectURI: redirectURI, state: state, nonce: q.Get("nonce"),
			challenge: q.Get("code_challenge"), scope: scope, expires: now.Add(requestTTL),
		}
		p.mu.Unlock()
		p.signInPage(w, id)
	}
}

// choose handles the sign-in page's form: the person picked a user, or cancelled.
// Either way the request is used up.
func (p *IdP) choose(w http.ResponseWriter, r *http.Request) {
	now := p.now()
	cancel := r.PostForm.Has("cancel")
	u, known := p.user(r.PostForm.Get("user"))
	if !cancel && !known {
		p.errorPage(w, http.StatusBadRequest, "Unknown test user", "Choose one of the test users on the sign-in page.")
		return
	}
	id := r.PostForm.Get("request")
	p.mu.Lock()
	p.sweepLocked(now)
	req := p.requests[id]
	delete(p.requests, id)
	p.mu.Unlock()
	if req == nil {
		p.errorPage(w, http.StatusBadRequest, "This sign-in page has expired",
			"It was used already or is older than "+requestTTL.String()+". Go back to the application and start signing in again.")
		return
	}
	if cancel {
		p.log.Info("development sign-in cancelled")
		redirect(w, r, req.redirectURI, http.StatusSeeOther, url.Values{
			"error": {"access_denied"}, "error_description": {"the sign-in was cancelled"}, "state": {req.state}})
		return
	}
	code := rand.Text()
	g := &grant{authRequest: *req, subject: u.Subject, authTime: now}
	g.expires = now.Add(codeTTL)
	p.mu.Lock()
	p.codes[code] = g
	p.mu.Unlock()
	p.log.Info("development sign-in", "email", u.Email, "subject", u.Subject, "type", u.Type)
	redirect(w, r, req.redirectURI, http.StatusSeeOther, url.Values{"code": {code}, "state": {req.state}})
}

// redirect sends the browser to target (a registered redirect URI) with params
// added to its query; empty params are left out.
func redirect(w http.ResponseWriter, r *http.Request, target string, status int, params url.Values) {
	u, err := url.Parse(target) // checked in New
	if err != nil {
		http.Error(w, "bad redirect URI", http.StatusInternalServerError)
		return
	}
	q := u.Query()
	for k, v := range params {
		if len(v) > 0 && v[0] != "" {
			q.Set(k, v[0])
		}
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), status)
}

// validChallenge reports whether c looks like an S256 code challenge: 32 bytes
// in unpadded base64url.
func validChallenge(c string) bool {
	return len(c) == 43 && strings.Trim(c, base64URLChars) == ""
}

// validVerifier reports whether v is a PKCE code verifier (RFC 7636 section 4.1).
func validVerifier(v string) bool {
	return len(v) >= 43 && len(v) <= 128 && strings.Trim(v, base64URLChars+".~") == ""
}

const base64URLChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func quote(s string) string { return "\u201c" + s + "\u201d" }

// groupLabel is the heading of a type's users on the sign-in page.
func groupLabel(t auth.UserType) string {
	switch t {
	case auth.TypeStaff:
		return "Staff"
	case auth.TypeOwner:
		return "Property owners"
	case auth.TypeProvider:
		return "Service providers"
	}
	return t.Label()
}
