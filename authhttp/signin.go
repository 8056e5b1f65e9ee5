package authhttp

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/hestami/hestami/auth"
)

// providerView is a sign-in method as the pages show it.
type providerView struct{ Name, DisplayName string }

func providerViews(ps []auth.Provider) []providerView {
	out := make([]providerView, 0, len(ps))
	for _, p := range ps {
		out = append(out, providerView{p.Name(), p.DisplayName()})
	}
	return out
}

// signinURL is the sign-in page asking for an account of type t (none: sign in
// only), returning to returnTo.
func signinURL(t auth.UserType, returnTo string) string {
	v := url.Values{}
	if t != "" {
		v.Set("type", string(t))
	}
	if returnTo != "" {
		v.Set("return_to", returnTo)
	}
	if len(v) == 0 {
		return "/signin"
	}
	return "/signin?" + v.Encode()
}

// signinPage is the data of templates/signin.html.
type signinPage struct {
	Heading    string
	Verb       string // on the buttons: "Sign in with Google"
	Providers  []providerView
	ReturnTo   string
	Type       auth.UserType // owner or provider: creating an account
	SignedInAs string
	SignInURL  string
	OwnerURL   string
	VendorURL  string
}

// The messages the sign-in page shows for ?error= and ?done=. Only these: the page
// never echoes text from its URL, which anybody can write.
var (
	signinErrors = map[string]string{
		"session_ended": "Your session ended. Sign in again to continue.",
		"reauth":        "The application asks you to sign in again before it continues.",
	}
	signinNotices = map[string]string{
		"signed_out": "You are signed out.",
	}
)

// signupType is the account type a sign-up may ask for: owners and providers
// create their own accounts; staff accounts are created by an administrator.
func signupType(v string) auth.UserType {
	switch t := auth.UserType(v); t {
	case auth.TypeOwner, auth.TypeProvider:
		return t
	}
	return ""
}

// safeReturnTo is raw if it is a place a sign-in may return to, else fallback.
func (s *Server) safeReturnTo(raw, fallback string) string {
	return auth.SafeReturnTo(raw, s.origins, fallback)
}

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	returnTo := s.safeReturnTo(q.Get("return_to"), "")
	t := signupType(q.Get("type"))
	d := &signinPage{Heading: "Sign in to Hestami", Verb: "Sign in", ReturnTo: returnTo, Type: t}
	d.SignInURL, d.OwnerURL, d.VendorURL = signinURL("", returnTo), signinURL(auth.TypeOwner, returnTo), signinURL(auth.TypeProvider, returnTo)
	if t != "" {
		d.Heading, d.Verb = "Create your "+t.Label()+" account", "Continue"
		d.Providers = providerViews(s.svc.ProvidersFor(t))
	} else {
		d.Providers = providerViews(s.svc.Providers())
	}
	if _, u, ok := s.optionalSession(r); ok {
		d.SignedInAs = u.Email
		if d.SignedInAs == "" {
			d.SignedInAs = u.Name
		}
	}
	p := s.newPage(r, d.Heading, d)
	p.CSRF = s.preSessionToken(s.csrfCookie(w, r))
	p.Error = signinErrors[q.Get("error")]
	if q.Has("error") && p.Error == "" {
		p.Error = "The sign-in did not complete. Try again."
	}
	p.Notice = signinNotices[q.Get("done")]
	s.render(w, r, http.StatusOK, "signin", p)
}

// signinStart sends the browser to the provider (POST /signin/{provider}).
func (s *Server) signinStart(w http.ResponseWriter, r *http.Request) {
	if !s.checkPreSessionToken(w, r) {
		s.fail(w, r, errBadFormToken)
		return
	}
	returnTo := s.safeReturnTo(r.PostFormValue("return_to"), "/account")
	t := signupType(r.PostFormValue("type"))
	s.beginLogin(w, r, auth.BeginRequest{Provider: r.PathValue("provider"), Intent: auth.IntentSignIn, ReturnTo: returnTo, UserType: t})
}

// beginLogin starts a sign-in or link and redirects to the provider.
func (s *Server) beginLogin(w http.ResponseWriter, r *http.Request, br auth.BeginRequest) {
	br.Binding = cookieValue(r, LoginCookie)
	b, err := s.svc.BeginLogin(r.Context(), br)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.setCookie(w, LoginCookie, b.Binding, s.now().Add(s.loginTimeout()))
	http.Redirect(w, r, b.RedirectURL, http.StatusSeeOther)
}

func (s *Server) loginTimeout() time.Duration {
	if d := s.svc.Config().LoginTimeout; d > 0 {
		return d
	}
	return 10 * time.Minute
}

// callback finishes a sign-in or link (GET /auth/{provider}/callback).
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	provider := r.PathValue("provider")
	req := auth.CompleteRequest{
		Provider: provider, State: q.Get("state"), Code: q.Get("code"),
		ProviderError: q.Get("error"), ProviderErrorDescription: q.Get("error_description"),
		Binding: cookieValue(r, LoginCookie), Client: s.client(r),
	}
	if sess, _, ok := s.optionalSession(r); ok {
		req.Session = sess
	}
	res, err := s.svc.CompleteLogin(r.Context(), req)
	s.metrics.ObserveSignIn(s.providerLabel(provider), signinOutcome(res, err))
	if err != nil {
		heading, links := "Sign-in did not work", []link{}
		if res != nil && res.Intent == auth.IntentLink {
			heading = "Linking did not work"
			links = append(links, link{"/account", "Back to your account"})
		} else {
			returnTo := ""
			if res != nil && res.ReturnTo != "/account" {
				returnTo = res.ReturnTo
			}
			links = append(links, link{signinURL("", returnTo), "Sign in again, or with another method"})
			if auth.ErrorCode(err) == auth.CodeNotFound {
				links = append(links,
					link{signinURL(auth.TypeOwner, returnTo), "Create a property owner account"},
					link{signinURL(auth.TypeProvider, returnTo), "Create a service provider account"})
			}
		}
		s.failPage(w, r, err, heading, links)
		return
	}
	if res.Intent == auth.IntentLink {
		s.log.Info("account linked", "user", res.User.ID, "provider", res.Provider)
		http.Redirect(w, r, "/account?done=linked", http.StatusSeeOther)
		return
	}
	s.setSession(w, res.Token, res.Session)
	s.log.Info("signed in", "user", res.User.ID, "provider", res.Provider, "created", res.Created, "claimed", res.Claimed, "ip", req.Client.IP)
	http.Redirect(w, r, s.safeReturnTo(res.ReturnTo, "/account"), http.StatusSeeOther)
}

// providerLabel keeps the metrics' provider label to the configured providers
// (the path segment is whatever the request says).
func (s *Server) providerLabel(name string) string {
	for _, p := range s.svc.Providers() {
		if p.Name() == name {
			return name
		}
	}
	return "unknown"
}

func signinOutcome(res *auth.LoginResult, err error) string {
	var lr *auth.LinkRequiredError
	switch {
	case errors.As(err, &lr):
		return "link_required"
	case err != nil:
		return string(auth.ErrorCode(err))
	case res.Intent == auth.IntentLink:
		return "link"
	case res.Created:
		return "signup"
	}
	return "success"
}

// signout ends the browser's session (POST /signout).
func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	sess, _ := current(r)
	if err := s.svc.SignOut(r.Context(), sess, s.client(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	s.clearCookie(w, SessionCookie)
	http.Redirect(w, r, "/signin?done=signed_out", http.StatusSeeOther)
}

// oidcLogin finishes an OpenID Connect authorization request once the browser is
// signed in (GET /oidc-login?id=REQUEST).
func (s *Server) oidcLogin(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if s.oidc == nil {
		s.fail(w, r, auth.Errorf(auth.CodeNotFound, "This service does not sign in other applications."))
		return
	}
	if id == "" {
		s.fail(w, r, auth.Errorf(auth.CodeInvalid, "The sign-in link is missing its request id. Go back to the application and sign in from there again."))
		return
	}
	back := "/oidc-login?" + url.Values{"id": {id}}.Encode()
	sess, u, ok := s.optionalSession(r)
	if !ok {
		http.Redirect(w, r, "/signin?"+url.Values{"return_to": {back}}.Encode(), http.StatusSeeOther)
		return
	}
	next, err := s.oidc.Complete(r.Context(), id, sess, u)
	if auth.ErrorCode(err) == auth.CodeUnauthorized {
		// The application wants a more recent sign-in (prompt=login, max_age):
		// signing in again makes a session that satisfies it.
		http.Redirect(w, r, "/signin?"+url.Values{"return_to": {back}, "error": {"reauth"}}.Encode(), http.StatusSeeOther)
		return
	}
	if err != nil {
		s.failPage(w, r, err, "Signing in to the application did not work", []link{{"/account", "Go to your account"}})
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}
