package authhttp_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authhttp"
	"github.com/hestami/hestami/openapitest"
)

// newBareServer is a Server without a database, for what needs only its routes.
func newBareServer(t *testing.T) *authhttp.Server {
	t.Helper()
	svc := auth.NewService(nil, nil, auth.DefaultConfig(), time.Now, slog.New(slog.DiscardHandler))
	s, err := authhttp.New(authhttp.Options{Service: svc, PublicURL: "https://auth.hestami.example", CSRFKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openAPIDoc(t *testing.T, s *authhttp.Server) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/openapi.json", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /api/openapi.json: %d", rec.Code)
	}
	body, _ := io.ReadAll(rec.Body)
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// TestOpenAPIMatchesRoutes: every /api/v1 route is documented, and every
// documented operation is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	s := newBareServer(t)
	doc := openAPIDoc(t, s)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi %v, want 3.1.0", doc["openapi"])
	}
	var registered, documented []string
	for _, p := range s.Patterns() {
		if method, path, _ := strings.Cut(p, " "); strings.HasPrefix(path, "/api/v1/") {
			registered = append(registered, method+" "+path)
		}
	}
	paths, _ := doc["paths"].(map[string]any)
	for path, item := range paths {
		for method := range item.(map[string]any) {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(registered)
	slices.Sort(documented)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("openapi.json documents %s, which is not a route", d)
		}
	}
	if len(registered) < 16 {
		t.Errorf("only %d /api/v1 routes found: %v", len(registered), registered)
	}
}

// TestOpenAPIIsComplete: each operation has an id, path parameters for its
// {wildcards}, responses, and refs that resolve; the cookie scheme is declared.
func TestOpenAPIIsComplete(t *testing.T) {
	t.Parallel()
	doc := openAPIDoc(t, newBareServer(t))
	comps, _ := doc["components"].(map[string]any)
	schemes, _ := comps["securitySchemes"].(map[string]any)
	session, _ := schemes["session"].(map[string]any)
	if session["type"] != "apiKey" || session["in"] != "cookie" || session["name"] != authhttp.SessionCookie {
		t.Errorf("security scheme session = %v, want an apiKey in the cookie %s", session, authhttp.SessionCookie)
	}
	ids := map[string]bool{}
	wildcard := regexp.MustCompile(`\{([^}]+)\}`)
	for path, item := range doc["paths"].(map[string]any) {
		for method, o := range item.(map[string]any) {
			op := o.(map[string]any)
			name := strings.ToUpper(method) + " " + path
			id, _ := op["operationId"].(string)
			if id == "" || ids[id] {
				t.Errorf("%s: operationId %q missing or repeated", name, id)
			}
			ids[id] = true
			if r, _ := op["responses"].(map[string]any); len(r) < 2 {
				t.Errorf("%s: responses %v; want success and errors", name, r)
			}
			declared := map[string]bool{}
			params, _ := op["parameters"].([]any)
			for _, p := range params {
				p := p.(map[string]any)
				if p["in"] == "path" {
					declared[p["name"].(string)] = true
				}
			}
			for _, m := range wildcard.FindAllStringSubmatch(path, -1) {
				if !declared[m[1]] {
					t.Errorf("%s: path parameter %s is not declared", name, m[1])
				}
			}
			if (method == "post" || method == "put") && op["requestBody"] == nil && path != "/api/v1/signout" {
				t.Errorf("%s: no requestBody", name)
			}
		}
	}
	openapitest.CheckRefs(t, doc)
}
