package backupapi_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hestami/hestami/openapitest"
)

// openAPIDoc fetches and parses the served OpenAPI document.
func openAPIDoc(t *testing.T, h *harness) map[string]any {
	t.Helper()
	r := h.call("", "GET", "/api/openapi.json", "")
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/openapi.json: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.Body), &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// TestOpenAPIMatchesRoutes: every /api/v1 route is documented, and every
// documented operation is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	doc := openAPIDoc(t, h)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi %v, want 3.1.0", doc["openapi"])
	}
	var registered, documented []string
	for _, p := range h.api.Patterns() {
		if method, path, _ := strings.Cut(p, " "); strings.HasPrefix(path, "/api/v1/") {
			registered = append(registered, method+" "+path)
		}
	}
	for path, item := range doc["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(registered)
	slices.Sort(documented)
	if !slices.Equal(registered, documented) {
		t.Errorf("routes and openapi.json differ:\nroutes:     %v\ndocumented: %v", registered, documented)
	}
	if len(registered) < 13 {
		t.Errorf("only %d /api/v1 routes: %v", len(registered), registered)
	}
}

// TestOpenAPIIsComplete: each operation has a unique id, its path parameters,
// success and error answers, a body where it takes one and the permission it
// needs; the security schemes are declared; every $ref resolves.
func TestOpenAPIIsComplete(t *testing.T) {
	t.Parallel()
	doc := openAPIDoc(t, newHarness(t))
	comps, _ := doc["components"].(map[string]any)
	schemes, _ := comps["securitySchemes"].(map[string]any)
	if b, _ := schemes["bearer"].(map[string]any); b["type"] != "http" || b["scheme"] != "bearer" {
		t.Errorf("security scheme bearer = %v", b)
	}
	if c, _ := schemes["cookie"].(map[string]any); c["type"] != "apiKey" || c["in"] != "cookie" || c["name"] == "" {
		t.Errorf("security scheme cookie = %v", c)
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
			resp, _ := op["responses"].(map[string]any)
			if resp["401"] == nil || len(resp) < 3 {
				t.Errorf("%s: responses %v; want success, 401 and 403", name, resp)
			}
			if desc, _ := op["description"].(string); !strings.Contains(desc, "Needs: backup:") {
				t.Errorf("%s: the description does not say which permission it needs", name)
			}
			declared := map[string]bool{}
			params, _ := op["parameters"].([]any)
			for _, p := range params {
				if p := p.(map[string]any); p["in"] == "path" {
					declared[p["name"].(string)] = true
				}
			}
			for _, m := range wildcard.FindAllStringSubmatch(path, -1) {
				if !declared[m[1]] {
					t.Errorf("%s: path parameter %s is not declared", name, m[1])
				}
			}
			if method == "post" && op["requestBody"] == nil {
				t.Errorf("%s: no requestBody", name)
			}
		}
	}
	openapitest.CheckRefs(t, doc)
}
