package backupapi

import (
	_ "embed"
	"net/http"
)

// openAPI describes every route under /api/v1; a test keeps it and the route table
// in step.
//
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI serves the OpenAPI 3.1 document (GET /api/openapi.json).
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPI)
}
