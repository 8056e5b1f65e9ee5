package oauthtest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauth"
)

// GitHubUser is the person who signs in at the GitHub fake.
type GitHubUser struct {
	ID        int64
	Login     string
	Name      string
	AvatarURL string
	// Emails is what GET /user/emails lists. For "no verified primary email",
	// leave the primary one unverified.
	Emails []GitHubEmail
	// Orgs maps organization logins to the membership's state, "active" or
	// "pending". For "not a member", leave the organization out.
	Orgs map[string]string
}

// GitHubEmail is one of a GitHub user's email addresses.
type GitHubEmail struct {
	Email    string
	Primary  bool
	Verified bool
}

// DefaultGitHubUser is the person who signs in at a GitHub fake unless told
// otherwise: a verified primary email, an active member of "hestami".
func DefaultGitHubUser() GitHubUser {
	return GitHubUser{
		ID: 5812345, Login: "analima", Name: "Ana Lima", AvatarURL: "https://avatars.example/u/5812345",
		Emails: []GitHubEmail{
			{Email: "ana@users.noreply.github.com", Verified: true},
			{Email: "ana.lima@example.com", Primary: true, Verified: true},
		},
		Orgs: map[string]string{"hestami": "active"},
	}
}

// GitHubOptions configure a GitHub fake.
type GitHubOptions struct {
	// ClientID and ClientSecret are the OAuth app's; defaults "test-client" and
	// "test-secret".
	ClientID, ClientSecret string
	// User is who signs in; zero: DefaultGitHubUser().
	User GitHubUser
	// Fault: FaultDenied and FaultTokenUnavailable apply.
	Fault Fault
}

// GitHub is a fake GitHub (an OAuth app's endpoints and the REST API it uses),
// laid out like GitHub Enterprise Server: the web flow under /login/oauth and
// the API under /api/v3.
type GitHub struct {
	srv        *httptest.Server
	opts       GitHubOptions
	mu         sync.Mutex
	user       GitHubUser
	fault      Fault
	codes      map[string]*githubGrant
	tokens     map[string]*githubGrant
	lastAuth   url.Values
	lastToken  url.Values
	lastHeader http.Header
}

type githubGrant struct {
	redirectURI, challenge string
	scopes                 []string
	user                   GitHubUser
	issued                 time.Time
}

// NewGitHub starts a fake GitHub; it stops when the test ends (or at Close).
func NewGitHub(t testing.TB, o GitHubOptions) *GitHub {
	t.Helper()
	if o.ClientID == "" {
		o.ClientID = "test-client"
	}
	if o.ClientSecret == "" {
		o.ClientSecret = "test-secret"
	}
	if o.User.ID == 0 {
		o.User = DefaultGitHubUser()
	}
	g := &GitHub{opts: o, user: o.User, fault: o.Fault, codes: map[string]*githubGrant{}, tokens: map[string]*githubGrant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", g.authorize)
	mux.HandleFunc("POST /login/oauth/access_token", g.accessToken)
	mux.HandleFunc("GET /api/v3/user", g.api(g.userAPI))
	mux.HandleFunc("GET /api/v3/user/emails", g.api(g.emailsAPI))
	mux.HandleFunc("GET /api/v3/user/memberships/orgs/{org}", g.api(g.membershipAPI))
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

// URL is the fake's base URL.
func (g *GitHub) URL() string { return g.srv.URL }

// APIURL is its API's base URL.
func (g *GitHub) APIURL() string { return g.srv.URL + "/api/v3" }

// Close stops the fake: GitHub is down.
func (g *GitHub) Close() { g.srv.Close() }

// SetUser makes u the person who signs in next.
func (g *GitHub) SetUser(u GitHubUser) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.user = u
}

// SetFault makes the fake misbehave as fault from now on.
func (g *GitHub) SetFault(f Fault) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fault = f
}

// LastAuthorization is the query of the last authorization request.
func (g *GitHub) LastAuthorization() url.Values {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastAuth
}

// LastTokenRequest is the form of the last token request, client_secret redacted.
func (g *GitHub) LastTokenRequest() url.Values {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastToken
}

// LastAPIHeader is the header of the last API request.
func (g *GitHub) LastAPIHeader() http.Header {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastHeader
}

// Config is an oauth.GitHubConfig for this fake, restricted to org if not empty.
func (g *GitHub) Config(redirectURL, org string) oauth.GitHubConfig {
	return oauth.GitHubConfig{
		ClientID: g.opts.ClientID, ClientSecret: g.opts.ClientSecret, RedirectURL: redirectURL, Organization: org,
		AuthURL: g.srv.URL + "/login/oauth/authorize", TokenURL: g.srv.URL + "/login/oauth/access_token", APIURL: g.APIURL(),
	}
}

// Provider is an oauth.GitHub for this fake, restricted to org if not empty.
func (g *GitHub) Provider(t testing.TB, redirectURL, org string) auth.Provider {
	t.Helper()
	p, err := oauth.NewGitHub(g.Config(redirectURL, org))
	if err != nil {
		t.Fatalf("oauthtest: github provider for the fake: %v", err)
	}
	return p
}

func (g *GitHub) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	g.mu.Lock()
	g.lastAuth = q
	user, fault := g.user, g.fault
	g.mu.Unlock()
	redirectURI := q.Get("redirect_uri")
	if q.Get("client_id") != g.opts.ClientID || redirectURI == "" {
		http.Error(w, "unknown client or missing redirect_uri", http.StatusBadRequest)
		return
	}
	back := func(params url.Values) {
		params.Set("state", q.Get("state"))
		redirect(w, r, redirectURI, params)
	}
	switch {
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		back(url.Values{"error": {"invalid_request"}, "error_description": {"a PKCE S256 code_challenge is required"}})
		return
	case fault == FaultDenied:
		back(url.Values{"error": {"access_denied"}, "error_description": {"The user has denied your application access."}})
		return
	}
	code := randomToken()
	g.mu.Lock()
	g.codes[code] = &githubGrant{redirectURI: redirectURI, challenge: q.Get("code_challenge"), scopes: splitScopes(q.Get("scope")), user: user, issued: time.Now()}
	g.mu.Unlock()
	back(url.Values{"code": {code}})
}

// accessToken answers like GitHub: JSON when asked for it, a form otherwise, and
// errors with status 200 and an error field.
func (g *GitHub) accessToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	g.mu.Lock()
	g.lastToken = redactForm(f)
	fault := g.fault
	gr := g.codes[f.Get("code")]
	delete(g.codes, f.Get("code"))
	g.mu.Unlock()
	answer := func(v url.Values) {
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			m := map[string]string{}
			for k := range v {
				m[k] = v.Get(k)
			}
			writeJSON(w, http.StatusOK, m)
			return
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		_, _ = w.Write([]byte(v.Encode()))
	}
	fail := func(code, description string) {
		answer(url.Values{"error": {code}, "error_description": {description}})
	}
	switch {
	case fault == FaultTokenUnavailable:
		http.Error(w, "unicorn", http.StatusServiceUnavailable)
	case f.Get("client_id") != g.opts.ClientID || f.Get("client_secret") != g.opts.ClientSecret:
		fail("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
	case gr == nil || time.Since(gr.issued) > 10*time.Minute:
		fail("bad_verification_code", "The code passed is incorrect or expired.")
	case f.Has("redirect_uri") && f.Get("redirect_uri") != gr.redirectURI:
		fail("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
	case s256(f.Get("code_verifier")) != gr.challenge:
		fail("bad_verification_code", "The code_verifier does not match the code_challenge.")
	default:
		at := "gho_" + randomToken()
		g.mu.Lock()
		g.tokens[at] = gr
		g.mu.Unlock()
		answer(url.Values{"access_token": {at}, "token_type": {"bearer"}, "scope": {strings.Join(gr.scopes, ",")}})
	}
}

// api authenticates an API request and hands its grant to h.
func (g *GitHub) api(h func(http.ResponseWriter, *http.Request, *githubGrant)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.lastHeader = r.Header.Clone()
		gr := g.tokens[bearer(r)]
		g.mu.Unlock()
		if gr == nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials"})
			return
		}
		h(w, r, gr)
	}
}

func (g *GitHub) userAPI(w http.ResponseWriter, r *http.Request, gr *githubGrant) {
	u := gr.user
	var name any
	if u.Name != "" {
		name = u.Name
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": u.ID, "login": u.Login, "name": name, "avatar_url": u.AvatarURL, "type": "User"})
}

func (g *GitHub) emailsAPI(w http.ResponseWriter, r *http.Request, gr *githubGrant) {
	if !slices.Contains(gr.scopes, "user:email") && !slices.Contains(gr.scopes, "user") {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
		return
	}
	out := []map[string]any{}
	for _, e := range gr.user.Emails {
		out = append(out, map[string]any{"email": e.Email, "primary": e.Primary, "verified": e.Verified, "visibility": nil})
	}
	writeJSON(w, http.StatusOK, out)
}

func (g *GitHub) membershipAPI(w http.ResponseWriter, r *http.Request, gr *githubGrant) {
	if !slices.Contains(gr.scopes, "read:org") {
		writeJSON(w, http.StatusForbidden, map[string]string{"message": "You need at least read:org scope or user scope to list your organization memberships."})
		return
	}
	org := r.PathValue("org")
	state, ok := gr.user.Orgs[org]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"state": state, "role": "member", "organization": map[string]string{"login": org}})
}
