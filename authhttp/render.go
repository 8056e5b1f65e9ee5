package authhttp

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hestami/hestami/auth"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// parsePages parses every page with the layout it shares.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2 Jan 2006 15:04 UTC")
		},
		"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"join": strings.Join,
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", n, err)
		}
		pages[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	return pages, nil
}

func assetHandler() http.Handler {
	sub, _ := fs.Sub(assetFS, "assets")
	files := http.StripPrefix("/assets/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// page is what the layout needs, plus the page's own Data.
type page struct {
	Title    string
	User     *auth.User // signed-in user, for the navigation
	CSRF     string     // the form token
	Dev      bool
	CanAdmin bool
	CanAudit bool
	// MFA is on (the security page exists); CanRecovery: the user decides on
	// recovery requests.
	MFA         bool
	CanRecovery bool
	Error       string // shown in role="alert"
	Notice      string // shown in role="status"
	Data        any
}

func (s *Server) newPage(r *http.Request, title string, data any) *page {
	p := &page{Title: title, Dev: s.dev, Data: data}
	if sess, u := current(r); sess != nil {
		p.User, p.CSRF = u, s.sessionToken(sess)
		p.CanAdmin, p.CanAudit = u.Can(auth.PermUsersRead), u.Can(auth.PermAuditRead)
		p.MFA = s.mfa != nil
		p.CanRecovery = p.MFA && s.mfa.Recovery != nil && u.Can(auth.PermMFAReset)
		if st := currentMFA(r); st != nil && st.decision.Action.Gates() {
			// Until the second factor, the other pages only send back here.
			p.CanAdmin, p.CanAudit, p.CanRecovery, p.MFA = false, false, false, false
		}
	}
	return p
}

// render writes the page with status. The page is rendered whole first, so a
// template error becomes a clean 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	var buf bytes.Buffer
	t := s.pages[name]
	if t == nil {
		s.log.Error("render page: no such template", "page", name)
		http.Error(w, "Something went wrong on our side.", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("render page", "page", name, "path", r.URL.Path, "err", err)
		http.Error(w, "Something went wrong on our side.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// link is a way onward from an error page.
type link struct{ Href, Text string }

// errorPage is the data of templates/error.html.
type errorPage struct {
	Heading      string
	Message      string
	LinkRequired *auth.LinkRequiredError
	Links        []link
}

// fail answers a request with err: a JSON error under /api/, an error page
// otherwise. It logs every failure; internal details go only to the log.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.failPage(w, r, err, "", nil)
}

// failPage is fail with the page's heading and links chosen by the caller.
func (s *Server) failPage(w http.ResponseWriter, r *http.Request, err error, heading string, links []link) {
	status := errorStatus(err)
	s.logFailure(r, status, err)
	setRetryAfter(w, err)
	if isAPI(r.URL.Path) || wantsJSON(r) {
		writeJSONError(w, status, err)
		return
	}
	var lr *auth.LinkRequiredError
	d := &errorPage{Heading: heading, Message: auth.ErrorMessage(err), Links: links}
	if errors.As(err, &lr) {
		d.Heading, d.Message, d.LinkRequired = "You already have a Hestami account", "", lr
	}
	if d.Heading == "" {
		d.Heading = headings[status]
		if d.Heading == "" {
			d.Heading = "That did not work"
		}
	}
	if d.Links == nil {
		if _, u := current(r); u != nil {
			d.Links = []link{{"/account", "Go to your account"}}
		} else {
			d.Links = []link{{"/signin", "Sign in"}}
		}
	}
	s.render(w, r, status, "error", s.newPage(r, d.Heading, d))
}

// setRetryAfter tells a client refused by a rate limit or a lockout when to
// come back.
func setRetryAfter(w http.ResponseWriter, err error) {
	if d, ok := auth.RetryAfter(err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int((d+time.Second-1)/time.Second))))
	}
}

// wantsJSON reports whether a page request asks for JSON only (the passkey
// script's calls to a begin endpoint).
func wantsJSON(r *http.Request) bool {
	return r.Header.Get("Accept") == "application/json"
}

var headings = map[int]string{
	http.StatusBadRequest:          "That did not work",
	http.StatusUnauthorized:        "Please sign in",
	http.StatusForbidden:           "Not allowed",
	http.StatusNotFound:            "Not found",
	http.StatusMethodNotAllowed:    "Not allowed",
	http.StatusConflict:            "That did not work",
	http.StatusTooManyRequests:     "Too many attempts",
	http.StatusServiceUnavailable:  "Temporarily unavailable",
	http.StatusInternalServerError: "Something went wrong",
}

func (s *Server) logFailure(r *http.Request, status int, err error) {
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "code", auth.ErrorCode(err), "ip", s.clientIP(r), "err", err}
	if _, u := current(r); u != nil {
		attrs = append(attrs, "user", u.ID)
	}
	if status >= 500 {
		s.log.Error("request failed", attrs...)
	} else {
		s.log.Info("request refused", attrs...)
	}
}

// apiError is the body of every API error.
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSONError(w http.ResponseWriter, status int, err error) {
	code, msg := string(auth.ErrorCode(err)), auth.ErrorMessage(err)
	var lr *auth.LinkRequiredError
	if errors.As(err, &lr) {
		code, msg = string(auth.CodeConflict), linkRequiredMessage(lr)
	}
	writeJSON(w, status, apiError{apiErrorBody{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"Something went wrong on our side."}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// linkRequiredMessage explains a LinkRequiredError to the person.
func linkRequiredMessage(lr *auth.LinkRequiredError) string {
	return fmt.Sprintf("An account with %s exists already. Sign in with %s, then link %s from your account page.",
		lr.Email, strings.Join(lr.Providers, " or "), lr.Provider)
}

// failOnPage shows an action's error on the page the action was sent from:
// render draws that page, titled title, with the error and its status.
// Server errors, and errors with a status in elsewhere, go to s.fail instead.
// Pages whose actions can be rate limited call setRetryAfter first.
func (s *Server) failOnPage(w http.ResponseWriter, r *http.Request, err error, title string, render func(http.ResponseWriter, *http.Request, int, *page), elsewhere ...int) {
	status := errorStatus(err)
	if status >= 500 || slices.Contains(elsewhere, status) {
		s.fail(w, r, err)
		return
	}
	s.logFailure(r, status, err)
	p := s.newPage(r, title, nil)
	p.Error = auth.ErrorMessage(err)
	render(w, r, status, p)
}
