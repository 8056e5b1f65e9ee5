package authclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Require is middleware that lets through only requests signed in (Current)
// with permission perm (empty: any signed-in person), putting the Principal
// in the request's context (PrincipalFrom). Others are answered by Refuse.
func (l *Login) Require(perm string) func(http.Handler) http.Handler {
	return l.RequireMFA(perm, 0)
}

// RequireMFA is Require that also wants a second factor verified in the
// session at most maxAge ago (step-up; 0: none wanted). Without one the
// request is refused with an *MFARequiredError whose Location is the auth
// service's step-up page.
func (l *Login) RequireMFA(perm string, maxAge time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := l.Current(w, r)
			if err == nil {
				err = l.Check(r, p, perm, maxAge)
			}
			if err != nil {
				l.Refuse(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

// Check returns why p may not do what needs perm (empty: nothing) and a
// second factor at most maxAge old (0: none): a *PermissionError or an
// *MFARequiredError; nil if p may. r decides where the step-up sends the
// person back to.
func (l *Login) Check(r *http.Request, p *Principal, perm string, maxAge time.Duration) error {
	if perm != "" && !p.Can(perm) {
		return &PermissionError{Permission: perm}
	}
	if maxAge > 0 && !p.MFAWithin(maxAge, l.now()) {
		loc := l.client.StepUpURL("")
		if _, api := bearerToken(r); !api {
			loc = l.StepUpURL(l.backTo(r))
		}
		return &MFARequiredError{Code: "mfa_required", Action: "step_up", MaxAge: maxAge, Location: loc,
			Reason: fmt.Sprintf("This needs a second factor verified in the last %s. Verify one at the sign-in service, then try again.", humanDuration(maxAge))}
	}
	return nil
}

// backTo is where a browser returns to after signing in or a step-up: the
// page itself for a GET, the page the form was on (a same-origin Referer)
// otherwise.
func (l *Login) backTo(r *http.Request) string {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return r.URL.RequestURI()
	}
	if ref, err := url.Parse(r.Referer()); err == nil && ref.Host == r.Host && ref.Path != "" {
		return ref.RequestURI()
	}
	return "/"
}

func humanDuration(d time.Duration) string {
	switch {
	case d%time.Minute == 0 && d >= time.Minute:
		if d == time.Minute {
			return "minute"
		}
		return fmt.Sprintf("%d minutes", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%d seconds", d/time.Second)
	}
	return d.String()
}

// errorBody is the JSON answer of a refused request, in the auth service's
// shape: {"error": {"code", "message"}}, plus "mfa" when a second factor is
// needed and "location" where the person can put it right.
type errorBody struct {
	Error struct {
		Code     string `json:"code"`
		Message  string `json:"message"`
		Location string `json:"location,omitempty"`
	} `json:"error"`
	MFA *mfaBody `json:"mfa,omitempty"`
}

type mfaBody struct {
	Action          string   `json:"action"`
	AcceptedMethods []string `json:"accepted_methods"`
	Reason          string   `json:"reason,omitempty"`
	Location        string   `json:"location,omitempty"`
	MaxAgeSeconds   int64    `json:"max_age_seconds,omitempty"`
}

// Refuse answers a request that authentication or authorization refused with
// err, as Require does. Browsers (a request without Authorization that accepts
// HTML) are sent to sign in, or to the step-up, when they asked for a page;
// otherwise they get a short page saying what to do. API clients get JSON:
// 401 (with WWW-Authenticate), 403 (code forbidden, or mfa_required with an
// "mfa" object), 503 when the auth service cannot be asked (code
// unavailable), 500 otherwise.
func (l *Login) Refuse(w http.ResponseWriter, r *http.Request, err error) {
	_, api := bearerToken(r)
	browser := !api && strings.Contains(r.Header.Get("Accept"), "text/html")
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	var body errorBody
	var status int
	var mfa *MFARequiredError
	var perm *PermissionError
	var ae *Error
	heading, link, linkText := "", "", ""
	switch {
	case errors.As(err, &mfa):
		status, heading = http.StatusForbidden, "A second factor is needed"
		body.Error.Code, body.Error.Message, body.Error.Location = mfa.Code, mfa.Reason, mfa.Location
		if body.Error.Message == "" {
			body.Error.Message = "Verify a second factor at the sign-in service, then try again."
		}
		methods := mfa.AcceptedMethods
		if methods == nil {
			methods = []string{}
		}
		body.MFA = &mfaBody{Action: mfa.Action, AcceptedMethods: methods, Reason: mfa.Reason, Location: mfa.Location, MaxAgeSeconds: int64(mfa.MaxAge / time.Second)}
		link, linkText = mfa.Location, "Verify a second factor"
		if browser && get && mfa.Location != "" {
			http.Redirect(w, r, mfa.Location, http.StatusSeeOther)
			return
		}
	case errors.Is(err, ErrUnauthenticated):
		status, heading = http.StatusUnauthorized, "You are not signed in"
		body.Error.Code = "unauthorized"
		body.Error.Message = "You are not signed in, or your sign-in ended. Sign in, then try again."
		if api {
			body.Error.Message = "The access token is not valid (expired, revoked, or its sign-in ended). Get a new one from the Hestami sign-in service."
			w.Header().Set("WWW-Authenticate", `Bearer realm="hestami", error="invalid_token"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hestami"`)
			body.Error.Location = l.LoginURL(l.backTo(r))
			link, linkText = body.Error.Location, "Sign in"
		}
		if browser && get {
			http.Redirect(w, r, l.LoginURL(l.backTo(r)), http.StatusSeeOther)
			return
		}
	case errors.As(err, &perm):
		status, heading = http.StatusForbidden, "You may not do this"
		body.Error.Code, body.Error.Message = "forbidden", fmt.Sprintf("This needs the %s permission, which your account does not have. Ask an administrator if you need it.", perm.Permission)
	case errors.Is(err, ErrUnavailable):
		l.log.Error("the auth service cannot be asked; refusing", "path", r.URL.Path, "err", err)
		status, heading = http.StatusServiceUnavailable, "Signing in is not possible right now"
		body.Error.Code, body.Error.Message = "unavailable", unavailableMessage(l.client.URL())
		w.Header().Set("Retry-After", "30")
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		status, heading = http.StatusForbidden, "You may not do this"
		body.Error.Code, body.Error.Message = "forbidden", ae.Message
		if body.Error.Message == "" {
			body.Error.Message = "The sign-in service refused your session."
		}
	default:
		l.log.Error("authentication failed", "path", r.URL.Path, "err", err)
		status, heading = http.StatusInternalServerError, "That did not work"
		body.Error.Code, body.Error.Message = "internal", "Something went wrong on our side. Try again; if it keeps happening, see the service's log."
	}
	if browser {
		l.page(w, status, heading, body.Error.Message, link, linkText)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func unavailableMessage(authURL string) string {
	return "The Hestami sign-in service (" + authURL + ") cannot be reached, so nobody can be signed in. Try again in a minute; if it keeps happening, check that hestami auth serve is running and reachable from this service."
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Heading}} · {{.Service}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1b1b1b}h1{font-size:1.4rem}a{color:#0b57d0}</style>
</head><body><main>
<p>{{.Service}}</p>
<h1>{{.Heading}}</h1>
<p>{{.Message}}</p>
{{if .Link}}<p><a href="{{.Link}}">{{.LinkText}}</a></p>{{end}}
</main></body></html>
`))

// page writes a short HTML page: what happened, and the one link that helps.
func (l *Login) page(w http.ResponseWriter, status int, heading, message, link, linkText string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, map[string]string{"Service": l.name, "Heading": heading, "Message": message, "Link": link, "LinkText": linkText})
}
