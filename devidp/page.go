package devidp

import (
	"bytes"
	"html/template"
	"net/http"
	"strconv"

	"github.com/hestami/hestami/auth"
)

// page is what the one template renders: the sign-in page, or an error.
type page struct {
	Title string
	// Sign-in page.
	Action  string
	Request string
	Groups  []userGroup
	// Error page.
	Error, Hint string
}

type userGroup struct {
	Label string
	Users []pageUser
}

type pageUser struct {
	User
	ID string // HTML id of the description
}

// pageCSP allows the page its inline style and nothing else; forms post to the
// page's own origin (form-action is not set, since browsers apply it to the
// redirect back to the application too).
const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}} · Hestami development sign-in</title>
<style>
body { font: 1rem/1.5 system-ui, sans-serif; margin: 0; color: #1a1a1a; background: #fff; }
.banner { margin: 0; padding: .75rem 1rem; background: #fff3bf; border-bottom: 3px solid #8a5a00; color: #1a1a1a; }
main { max-width: 42rem; margin: 0 auto; padding: 1rem; }
fieldset { border: 1px solid #6b6b6b; border-radius: .25rem; margin: 0 0 1rem; padding: .5rem 1rem 1rem; }
legend { font-weight: 600; padding: 0 .25rem; }
ul { list-style: none; margin: 0; padding: 0; }
li { margin: .5rem 0; }
button { font: inherit; padding: .5rem .75rem; border: 1px solid #0b3d91; border-radius: .25rem; background: #0b3d91; color: #fff; cursor: pointer; }
button.cancel { background: #fff; color: #0b3d91; }
button:focus-visible { outline: 3px solid #1a1a1a; outline-offset: 2px; }
.description { display: block; color: #404040; }
</style>
</head>
<body>
<p class="banner" role="note"><strong>Warning: development only.</strong> This identity provider signs anyone in as any test user without a password. It runs only under <code>hestami dev</code> and must never be reachable from other machines.</p>
<main>
<h1>Development sign-in — not for production</h1>
{{- if .Error}}
<h2>{{.Error}}</h2>
<p>{{.Hint}}</p>
{{- else}}
<p>Choose the test user to sign in as. Each has a verified email and the account type and roles shown.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="request" value="{{.Request}}">
{{- range .Groups}}
<fieldset>
<legend>{{.Label}}</legend>
<ul>
{{- range .Users}}
<li><button type="submit" name="user" value="{{.Subject}}" aria-describedby="{{.ID}}">Sign in as {{.Name}} ({{.Email}})</button>
<span class="description" id="{{.ID}}">{{.Description}}</span></li>
{{- end}}
</ul>
</fieldset>
{{- end}}
<p><button type="submit" name="cancel" value="1" class="cancel">Cancel and go back to the application</button></p>
</form>
{{- end}}
</main>
</body>
</html>
`))

// signInPage shows the test users, grouped by account type, for request id.
func (p *IdP) signInPage(w http.ResponseWriter, id string) {
	pg := page{Title: "Choose a test user", Action: p.path + "/authorize", Request: id}
	n := 0
	for _, t := range auth.UserTypes {
		g := userGroup{Label: groupLabel(t)}
		for _, u := range p.users {
			if auth.UserType(u.Type) == t {
				n++
				g.Users = append(g.Users, pageUser{User: u, ID: "user-" + strconv.Itoa(n)})
			}
		}
		if len(g.Users) > 0 {
			pg.Groups = append(pg.Groups, g)
		}
	}
	p.render(w, http.StatusOK, pg)
}

// errorPage shows a refused request in the browser, where it cannot be sent back
// to the application.
func (p *IdP) errorPage(w http.ResponseWriter, status int, title, hint string) {
	p.render(w, status, page{Title: title, Error: title, Hint: hint})
}

func (p *IdP) render(w http.ResponseWriter, status int, pg page) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, pg); err != nil {
		p.log.Error("development identity provider: render page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
