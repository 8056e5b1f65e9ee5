// Package openapitest checks OpenAPI documents in the tests of the services that
// serve one (authhttp, backupapi).
package openapitest

import (
	"strings"
	"testing"
)

// CheckRefs fails t for every $ref in doc (a decoded OpenAPI document) that does
// not resolve to something in it.
func CheckRefs(t testing.TB, doc map[string]any) {
	t.Helper()
	var check func(v any)
	check = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					ref, _ := x.(string)
					var cur any = doc
					for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
						m, _ := cur.(map[string]any)
						cur = m[part]
					}
					if cur == nil {
						t.Errorf("$ref %s does not resolve", ref)
					}
					continue
				}
				check(x)
			}
		case []any:
			for _, x := range v {
				check(x)
			}
		}
	}
	check(doc)
}
