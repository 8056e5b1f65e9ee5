package oauthtest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oauthtest"
)

// TestBrowserFlow: a client with a cookie jar that follows redirects goes from a
// sign-in start through the fake back to the callback, as a browser would, with
// no UI in between: the way end-to-end tests drive the service.
func TestBrowserFlow(t *testing.T) {
	t.Parallel()
	fake := oauthtest.NewOIDC(t, oauthtest.Options{Flavor: oauthtest.Google})
	gh := oauthtest.NewGitHub(t, oauthtest.GitHubOptions{})
	var mu sync.Mutex
	var provider auth.Provider
	var got *auth.Profile
	pending := map[string]auth.AuthCodeRequest{}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
		req := auth.AuthCodeRequest{State: auth.NewToken(), Nonce: auth.NewToken(), Verifier: auth.NewToken()}
		mu.Lock()
		pending[req.State] = req
		p := provider
		mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "binding", Value: req.State, Path: "/"})
		http.Redirect(w, r, p.AuthCodeURL(req), http.StatusFound)
	})
	mux.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		c, err := r.Cookie("binding")
		mu.Lock()
		req, ok := pending[q.Get("state")]
		delete(pending, q.Get("state"))
		p := provider
		mu.Unlock()
		if err != nil || !ok || c.Value != req.State {
			http.Error(w, "bad state", http.StatusBadRequest)
			return
		}
		prof, err := p.Exchange(r.Context(), q.Get("code"), req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got = prof
		mu.Unlock()
		w.Write([]byte("signed in"))
	})
	for _, tc := range []struct {
		name string
		p    auth.Provider
		want string
	}{
		{"google", fake.Provider(t, srv.URL+"/callback"), fake.User().Email},
		{"github", gh.Provider(t, srv.URL+"/callback", "hestami"), "ana.lima@example.com"},
	} {
		mu.Lock()
		provider, got = tc.p, nil
		mu.Unlock()
		jar, _ := cookiejar.New(nil)
		resp, err := (&http.Client{Jar: jar}).Get(srv.URL + "/start")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		mu.Lock()
		prof := got
		mu.Unlock()
		if resp.StatusCode != http.StatusOK || prof == nil || prof.Email != tc.want {
			t.Errorf("%s: %s, profile %+v; want signed in as %s", tc.name, resp.Status, prof, tc.want)
		}
	}
}

// TestTokenEndpointChecks: the fake's token endpoint refuses what a real one
// refuses.
func TestTokenEndpointChecks(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	fake := oauthtest.NewOIDC(t, oauthtest.Options{Now: clock})
	var doc struct {
		Issuer   string `json:"issuer"`
		TokenURL string `json:"token_endpoint"`
		AuthURL  string `json:"authorization_endpoint"`
	}
	resp, err := http.Get(fake.URL() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || doc.Issuer != fake.URL() {
		t.Fatalf("discovery: %+v, %v", doc, err)
	}
	const redirect = "http://localhost:1/callback"
	verifier := auth.NewToken()
	code := func() string {
		u := doc.AuthURL + "?" + url.Values{
			"response_type": {"code"}, "client_id": {fake.ClientID()}, "redirect_uri": {redirect}, "scope": {"openid email"},
			"state": {"s"}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"},
		}.Encode()
		return oauthtest.Code(t, u)
	}
	redeem := func(form url.Values) (int, string) {
		resp, err := http.PostForm(doc.TokenURL, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	good := func(c string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {c}, "redirect_uri": {redirect}, "code_verifier": {verifier},
			"client_id": {fake.ClientID()}, "client_secret": {fake.ClientSecret()}}
	}
	cases := []struct {
		name      string
		edit      func(url.Values)
		before    func()
		wantError string
	}{
		{"good", func(url.Values) {}, nil, ""},
		{"wrong secret", func(f url.Values) { f.Set("client_secret", "nope") }, nil, "invalid_client"},
		{"other redirect_uri", func(f url.Values) { f.Set("redirect_uri", "http://localhost:1/other") }, nil, "invalid_grant"},
		{"wrong verifier", func(f url.Values) { f.Set("code_verifier", auth.NewToken()) }, nil, "invalid_grant"},
		{"no verifier", func(f url.Values) { f.Del("code_verifier") }, nil, "invalid_grant"},
		{"code too old", func(url.Values) {}, func() { mu.Lock(); now = now.Add(time.Hour); mu.Unlock() }, "invalid_grant"},
	}
	for _, tc := range cases {
		c := code()
		if tc.before != nil {
			tc.before()
		}
		f := good(c)
		tc.edit(f)
		status, e := redeem(f)
		if e != tc.wantError || (tc.wantError == "") != (status == http.StatusOK) {
			t.Errorf("%s: %d %q, want error %q", tc.name, status, e, tc.wantError)
		}
		if tc.wantError == "" {
			if _, e := redeem(good(c)); e != "invalid_grant" {
				t.Errorf("%s: code redeemed twice (second answer %q)", tc.name, e)
			}
		}
	}
	if _, e := redeem(good("never-issued")); !strings.Contains(e, "invalid_grant") {
		t.Errorf("unknown code: %q, want invalid_grant", e)
	}
}

func challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
