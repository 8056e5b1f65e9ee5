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
	if err := s.limitSignIn(r, ""); err != nil {
		s.fail(w, r, err)
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
	next := s.safeReturnTo(res.ReturnTo, "/account")
	if s.mfa != nil {
		var err error
		if next, err = s.mfaAfterSignIn(w, r, res, next); err != nil {
			s.failPage(w, r, err, "Sign-in did not work", []link{{signinURL("", ""), "Sign in again"}})
			return
		}
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// mfaAfterSignIn runs the MFA side of a completed sign-in: the IP rules (a
// refused address ends the new session), the device and its new-device email,
// the suspicious-activity checks (which ask for the second factor even on a
// remembered device, and email the user), and the policy, which decides where
// the browser goes next: returnTo, the challenge or the setup wizard.
func (s *Server) mfaAfterSignIn(w http.ResponseWriter, r *http.Request, res *auth.LoginResult, returnTo string) (string, error) {
	ctx := r.Context()
	u, sess := res.User, res.Session
	c := s.client(r)
	err := s.checkIP(r, u)
	if err == nil {
		err = s.limitSignIn(r, u.ID)
	}
	if err != nil {
		if serr := s.svc.SignOut(ctx, sess, c); serr != nil {
			s.log.Error("end the session of a refused address", "user", u.ID, "err", serr)
		}
		s.clearCookie(w, SessionCookie)
		return "", err
	}
	attempt := auth.SignInAttempt{User: u, Client: c}
	var dev *auth.Device
	trustedBefore := false
	if s.mfa.Devices != nil {
		trustedBefore = s.trustedDevice(r, u)
		var isNew bool
		var err error
		dev, isNew, err = s.mfa.Devices.Recognise(ctx, u, s.deviceToken(w, r), c)
		if err != nil {
			s.log.Error("recognise device", "user", u.ID, "err", err)
		} else {
			attempt.DeviceID, attempt.KnownDevice = dev.ID, !isNew
			if isNew && !res.Created && !res.Claimed && (s.mfa.Risk == nil) {
				s.notifyNewDevice(ctx, u, dev)
			}
		}
	}
	var risk *auth.RiskAssessment
	if s.mfa.Risk != nil {
		var err error
		risk, err = s.mfa.Risk.Assess(ctx, attempt)
		if err != nil {
			// Without the history, act as for a risky sign-in.
			s.log.Error("assess sign-in", "user", u.ID, "err", err)
			risk = &auth.RiskAssessment{RequireMFA: true, Reasons: []string{"the sign-in could not be checked"}}
		}
		if risk.Notify && !res.Created && !res.Claimed {
			s.notifyRisk(ctx, u, dev, risk, c)
		}
		if risk.RequireMFA && trustedBefore && dev != nil {
			// The remembered device no longer skips the second factor: the
			// trust is dropped on the server, so no later request relies on it.
			if err := s.mfa.Devices.Revoke(ctx, u, dev.ID, c); err != nil {
				s.log.Error("drop the trust of a device after a risky sign-in", "user", u.ID, "err", err)
			}
			s.clearCookie(w, TrustCookie)
			r.AddCookie(&http.Cookie{Name: TrustCookie, Value: ""})
		}
	}
	next, st, err := s.afterSignInURL(r, sess, u, risk.MFARisk(), returnTo)
	if err != nil {
		return "", err
	}
	if st.decision.Action != auth.MFAChallenge && st.decision.Action != auth.MFABlocked && s.mfa.Risk != nil {
		// The sign-in is complete; a challenged one is recorded when it passes.
		if err := s.mfa.Risk.Record(ctx, attempt, auth.OutcomeSuccess); err != nil {
			s.log.Error("record sign-in", "user", u.ID, "err", err)
		}
	}
	return next, nil
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
	if s.mfa != nil {
		if err := s.checkIP(r, u); err != nil {
			s.fail(w, r, err)
			return
		}
		st, err := s.mfaCheck(r, sess, u, auth.PurposeSignIn, auth.MFARisk{})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if st.decision.Action.Gates() {
			http.Redirect(w, r, mfaNeedOut(st.decision, back).Location, http.StatusSeeOther)
			return
		}
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
