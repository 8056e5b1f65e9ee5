package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, url string
		ok        bool
	}{
		{"healthy", srv.URL + "/healthz", true},
		{"503", srv.URL + "/readyz", false},
		{"nothing listening", "http://127.0.0.1:1/healthz", false},
		{"not http", "ftp://127.0.0.1/", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			getenv := func(string) (string, bool) { return "", false }
			err := NewProgram(strings.NewReader(""), &bytes.Buffer{}, &stderr, getenv).Run(t.Context(), []string{"healthcheck", tc.url})
			if (err == nil) != tc.ok {
				t.Errorf("healthcheck %s: err = %v, want ok %t", tc.url, err, tc.ok)
			}
		})
	}
}
