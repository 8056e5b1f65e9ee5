package openapitest

import "testing"

type rec struct {
	testing.TB
	failed bool
}

func (r *rec) Helper()               {}
func (r *rec) Errorf(string, ...any) { r.failed = true }

func TestCheckRefs(t *testing.T) {
	doc := map[string]any{
		"components": map[string]any{"schemas": map[string]any{"User": map[string]any{}}},
		"paths":      map[string]any{"/a": map[string]any{"get": map[string]any{"$ref": "#/components/schemas/User"}}},
	}
	r := &rec{TB: t}
	CheckRefs(r, doc)
	if r.failed {
		t.Fatal("a resolving $ref was reported")
	}
	doc["paths"].(map[string]any)["/b"] = []any{map[string]any{"$ref": "#/components/schemas/Missing"}}
	CheckRefs(r, doc)
	if !r.failed {
		t.Fatal("a dangling $ref inside a list was not reported")
	}
}
