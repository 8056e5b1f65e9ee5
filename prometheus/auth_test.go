package prometheus

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAuthMetrics(t *testing.T) {
	t.Parallel()
	m := NewAuthMetrics()
	for _, c := range []struct {
		status int
		d      time.Duration
	}{{200, 3 * time.Millisecond}, {204, time.Millisecond}, {303, time.Millisecond}, {403, 2 * time.Second}, {503, time.Millisecond}, {0, 0}} {
		m.ObserveRequest("GET /account", c.status, c.d)
	}
	m.ObserveSignIn("google", "signup")
	m.ObserveSignIn("google", "unauthorized")
	m.ObserveSignIn("google", "unauthorized")

	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	out := string(body)
	for _, want := range []string{
		`hestami_auth_http_requests_total{code="2xx",route="GET /account"} 2`,
		`hestami_auth_http_requests_total{code="3xx",route="GET /account"} 1`,
		`hestami_auth_http_requests_total{code="4xx",route="GET /account"} 1`,
		`hestami_auth_http_requests_total{code="5xx",route="GET /account"} 1`,
		`hestami_auth_http_requests_total{code="other",route="GET /account"} 1`,
		`hestami_auth_http_request_duration_seconds_bucket{route="GET /account",le="0.005"} 5`,
		`hestami_auth_http_request_duration_seconds_count{route="GET /account"} 6`,
		`hestami_auth_signins_total{outcome="signup",provider="google"} 1`,
		`hestami_auth_signins_total{outcome="unauthorized",provider="google"} 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}
