package authhttp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
)

// staff creates an invited staff account with roles and signs it in (claiming
// it by its verified email) in a new browser.
func (e *env) staff(t *testing.T, roles ...string) (*browser, *auth.User) {
	t.Helper()
	email := strings.ToLower(randomID()) + "@hestami.example"
	u, err := e.svc.CreateUser(t.Context(), nil, auth.NewUser{Type: auth.TypeStaff, Email: email, Name: "Staff " + email, Roles: roles}, auth.Client{})
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.mustSignIn(profile("alpha", randomID(), email), "")
	if got := b.mustMe(); got != u.ID {
		t.Fatalf("staff sign-in is user %s, want the invited %s", got, u.ID)
	}
	return b, u
}

// owner signs up a property owner in a new browser.
func (e *env) owner(t *testing.T) (*browser, string) {
	t.Helper()
	b := e.browser()
	b.mustSignIn(profile("beta", randomID(), strings.ToLower(randomID())+"@example.com"), auth.TypeOwner)
	return b, b.mustMe()
}

func TestAPIPermissions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ownerB, ownerID := e.owner(t)
	support, _ := e.staff(t, "staff:support")
	admin, _ := e.staff(t, "staff:admin")
	anon := e.browser()

	type call struct{ method, path, body string }
	calls := []struct {
		call
		anon, owner, support, admin int
	}{
		{call{"GET", "/api/v1/users", ""}, 401, 403, 200, 200},
		{call{"GET", "/api/v1/users/" + ownerID, ""}, 401, 403, 200, 200},
		{call{"GET", "/api/v1/audit", ""}, 401, 403, 200, 200},
		{call{"PUT", "/api/v1/users/" + ownerID + "/roles", `{"roles":["owner"]}`}, 401, 403, 403, 200},
		{call{"PUT", "/api/v1/users/" + ownerID + "/disabled", `{"disabled":false}`}, 401, 403, 403, 200},
		{call{"POST", "/api/v1/users", `{"type":"owner","email":"invited-%s@example.com"}`}, 401, 403, 403, 201},
		{call{"GET", "/api/v1/me", ""}, 401, 200, 200, 200},
		{call{"GET", "/api/v1/roles", ""}, 401, 200, 200, 200},
		{call{"GET", "/api/v1/providers", ""}, 200, 200, 200, 200},
		// Last: it ends the owner's sessions.
		{call{"DELETE", "/api/v1/users/" + ownerID + "/sessions", ""}, 401, 403, 200, 200},
	}
	for _, c := range calls {
		for _, who := range []struct {
			name string
			b    *browser
			want int
		}{{"anonymous", anon, c.anon}, {"owner", ownerB, c.owner}, {"support", support, c.support}, {"admin", admin, c.admin}} {
			body := c.body
			if strings.Contains(body, "%s") {
				body = fmt.Sprintf(body, strings.ToLower(randomID()))
			}
			p := who.b.api(c.method, c.path, body)
			if p.StatusCode != who.want {
				t.Errorf("%s %s as %s: %d, want %d: %s", c.method, c.path, who.name, p.StatusCode, who.want, p.body)
				continue
			}
			if p.StatusCode >= 400 {
				var e struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal([]byte(p.body), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
					t.Errorf("%s %s as %s: error body %q is not {error:{code,message}}", c.method, c.path, who.name, p.body)
				}
				if wantCode := map[int]string{401: "unauthorized", 403: "forbidden"}[p.StatusCode]; e.Error.Code != wantCode {
					t.Errorf("%s %s as %s: code %q, want %q", c.method, c.path, who.name, e.Error.Code, wantCode)
				}
			}
		}
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	admin, _ := e.staff(t, "staff:admin")
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown user", "GET", "/api/v1/users/00000000-0000-0000-0000-000000000000", "", 404, "not_found"},
		{"malformed id", "GET", "/api/v1/users/1%27%20or%201=1", "", 404, "not_found"},
		{"bad limit", "GET", "/api/v1/users?limit=100000", "", 400, "invalid"},
		{"bad type", "GET", "/api/v1/users?type=robot", "", 400, "invalid"},
		{"bad since", "GET", "/api/v1/audit?since=yesterday", "", 400, "invalid"},
		{"bad user filter", "GET", "/api/v1/audit?user=x", "", 400, "invalid"},
		{"unknown field", "POST", "/api/v1/users", `{"type":"owner","email":"a@example.com","admin":true}`, 400, "invalid"},
		{"not json", "POST", "/api/v1/users", `type=owner`, 400, "invalid"},
		{"bad email", "POST", "/api/v1/users", `{"type":"owner","email":"nope"}`, 400, "invalid"},
		{"role for another type", "POST", "/api/v1/users", `{"type":"owner","email":"b@example.com","roles":["staff:admin"]}`, 400, "invalid"},
		{"roles missing", "PUT", "/api/v1/users/00000000-0000-0000-0000-000000000000/roles", `{}`, 400, "invalid"},
		{"no such session", "DELETE", "/api/v1/me/sessions/nope", "", 404, "not_found"},
		{"unknown route", "GET", "/api/v1/nothing", "", 404, "not_found"},
		{"wrong method", "PATCH", "/api/v1/me", "", 405, "method_not_allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := admin.api(c.method, c.path, c.body)
			if c.name == "not json" {
				req, _ := http.NewRequest(c.method, admin.url(c.path), strings.NewReader(c.body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				p = admin.do(req)
			}
			var out struct {
				Error struct{ Code, Message string }
			}
			_ = json.Unmarshal([]byte(p.body), &out)
			if p.StatusCode != c.status || out.Error.Code != c.code || out.Error.Message == "" {
				t.Errorf("%d %s, want %d with code %s", p.StatusCode, p.body, c.status, c.code)
			}
			if ct := p.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestRoleChangeIsAuditedAndVisible(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	admin, adminUser := e.staff(t, "staff:admin")

	p := admin.api("POST", "/api/v1/users", `{"type":"staff","email":"new.staff@hestami.example","name":"New","roles":["staff:support"]}`)
	if p.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", p.StatusCode, p.body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(p.body), &created)

	p = admin.api("PUT", "/api/v1/users/"+created.ID+"/roles", `{"roles":["staff:ops","staff:support"]}`)
	if p.StatusCode != http.StatusOK || !strings.Contains(p.body, `"roles":["staff:ops","staff:support"]`) {
		t.Fatalf("set roles: %d %s", p.StatusCode, p.body)
	}

	p = admin.api("GET", "/api/v1/audit?action=role.change&user="+created.ID, "")
	var audit struct {
		Events []struct {
			Action, Outcome, Detail string
			ActorID                 string `json:"actor_id"`
			SubjectID               string `json:"subject_id"`
		}
	}
	if err := json.Unmarshal([]byte(p.body), &audit); err != nil || p.StatusCode != 200 {
		t.Fatalf("audit: %d %s", p.StatusCode, p.body)
	}
	if len(audit.Events) != 1 {
		t.Fatalf("%d role.change events for the user, want 1: %s", len(audit.Events), p.body)
	}
	ev := audit.Events[0]
	if ev.ActorID != adminUser.ID || ev.SubjectID != created.ID || ev.Outcome != "success" || !strings.Contains(ev.Detail, "staff:ops") {
		t.Errorf("role.change event %+v; want actor %s, subject %s, the new roles in the detail", ev, adminUser.ID, created.ID)
	}
}

func TestOwnRoleChangeRotatesTheSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	admin, u := e.staff(t, "staff:admin")
	old := admin.cookie(authhttp.SessionCookie)

	p := admin.api("PUT", "/api/v1/users/"+u.ID+"/roles", `{"roles":["staff:admin","staff:ops"]}`)
	if p.StatusCode != http.StatusOK {
		t.Fatalf("set own roles: %d %s", p.StatusCode, p.body)
	}
	now := admin.cookie(authhttp.SessionCookie)
	if now == "" || now == old {
		t.Fatalf("session cookie not replaced after changing own roles")
	}
	admin.mustMe()
	stale := e.browser()
	stale.setCookie(authhttp.SessionCookie, old)
	if _, status := stale.me(); status != http.StatusUnauthorized {
		t.Errorf("the session from before the role change still works: %d", status)
	}

	// Removing staff:admin from oneself is refused.
	p = admin.api("PUT", "/api/v1/users/"+u.ID+"/roles", `{"roles":["staff:ops"]}`)
	if p.StatusCode != http.StatusForbidden {
		t.Errorf("removing own staff:admin: %d %s", p.StatusCode, p.body)
	}
}

func TestAdminPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	admin, _ := e.staff(t, "staff:admin")
	ownerB, ownerID := e.owner(t)
	target, err := e.svc.CreateUser(t.Context(), nil, auth.NewUser{Type: auth.TypeStaff, Email: "target@hestami.example", Roles: []string{"staff:support"}}, auth.Client{})
	if err != nil {
		t.Fatal(err)
	}

	if p := ownerB.get("/admin/users"); p.StatusCode != http.StatusForbidden || !strings.Contains(text(p.body), "users:read") {
		t.Errorf("owner on /admin/users: %d\n%s", p.StatusCode, text(p.body))
	}

	p := admin.get("/admin/users?" + url.Values{"q": {"target@"}}.Encode())
	if p.StatusCode != 200 || !strings.Contains(p.body, "/admin/users/"+target.ID) || strings.Contains(p.body, "/admin/users/"+ownerID) {
		t.Fatalf("search: %d\n%s", p.StatusCode, text(p.body))
	}

	page := admin.get("/admin/users/" + target.ID)
	if page.StatusCode != 200 {
		t.Fatalf("user page: %d\n%s", page.StatusCode, text(page.body))
	}
	form := formFields(t, page.body, "/admin/users/"+target.ID+"/roles")
	if got := form["roles"]; !slices.Equal(got, []string{"staff:support"}) {
		t.Errorf("roles form checks %v, want [staff:support]", got)
	}
	form["roles"] = []string{"staff:ops"}
	p = admin.post("/admin/users/"+target.ID+"/roles", form)
	if p.StatusCode != 200 || !strings.Contains(text(p.body), "Roles saved") {
		t.Fatalf("save roles: %d\n%s", p.StatusCode, text(p.body))
	}
	if u, _ := e.store.User(t.Context(), target.ID); !slices.Equal(u.Roles, []string{"staff:ops"}) {
		t.Errorf("roles after saving: %v", u.Roles)
	}

	// A role the account type cannot have is refused on the page.
	form["roles"] = []string{"owner"}
	if p := admin.post("/admin/users/"+target.ID+"/roles", form); p.StatusCode != http.StatusBadRequest || !strings.Contains(text(p.body), "cannot be given") {
		t.Errorf("invalid role: %d\n%s", p.StatusCode, text(p.body))
	}

	// Disabling the owner ends their sessions.
	p = admin.submit(admin.get("/admin/users/"+ownerID), "/admin/users/"+ownerID+"/disabled", nil)
	if p.StatusCode != 200 || !strings.Contains(text(p.body), "The account is disabled") {
		t.Fatalf("disable: %d\n%s", p.StatusCode, text(p.body))
	}
	if _, status := ownerB.me(); status != http.StatusUnauthorized {
		t.Errorf("disabled owner's session: %d, want 401", status)
	}

	p = admin.get("/admin/audit?action=role.change")
	if p.StatusCode != 200 || !strings.Contains(p.body, target.ID) {
		t.Errorf("audit page does not list the role change:\n%s", text(p.body))
	}
}
