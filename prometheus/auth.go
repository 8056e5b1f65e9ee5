package prometheus

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hestami/hestami/authhttp"
)

// AuthMetrics are the auth service's metrics: its HTTP requests and its sign-ins.
// It implements authhttp.Metrics; serve it with Handler.
type AuthMetrics struct {
	reg      *prom.Registry
	requests *prom.CounterVec
	duration *prom.HistogramVec
	signIns  *prom.CounterVec
}

var _ authhttp.Metrics = (*AuthMetrics)(nil)

// NewAuthMetrics returns the auth service's metrics in a registry of their own,
// beside the Go runtime's and the process's collectors.
func NewAuthMetrics() *AuthMetrics {
	m := &AuthMetrics{
		reg: prom.NewRegistry(),
		requests: prom.NewCounterVec(prom.CounterOpts{
			Name: "hestami_auth_http_requests_total",
			Help: "HTTP requests the auth service answered, by route pattern (\"GET /account\"; \"unmatched\" for unknown paths) and status class (2xx, 3xx, 4xx, 5xx).",
		}, []string{"route", "code"}),
		duration: prom.NewHistogramVec(prom.HistogramOpts{
			Name:    "hestami_auth_http_request_duration_seconds",
			Help:    "How long the auth service took to answer, by route pattern.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		signIns: prom.NewCounterVec(prom.CounterOpts{
			Name: "hestami_auth_signins_total",
			Help: "Completed provider callbacks by provider and outcome: success, signup, link, link_required, or the error code (unauthorized: a forged, replayed or expired state; forbidden; unavailable: the provider failed...).",
		}, []string{"provider", "outcome"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.signIns,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveRequest counts one answered request.
func (m *AuthMetrics) ObserveRequest(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, statusClass(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// ObserveSignIn counts one completed provider callback.
func (m *AuthMetrics) ObserveSignIn(provider, outcome string) {
	m.signIns.WithLabelValues(provider, outcome).Inc()
}

// Registry returns the registry holding the metrics, to add collectors to it.
func (m *AuthMetrics) Registry() *prom.Registry { return m.reg }

// Handler serves the metrics in Prometheus's exposition formats; mount it at
// /metrics (authhttp.Options.MetricsHandler). logger reports failed scrapes; nil
// discards them.
func (m *AuthMetrics) Handler(logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// statusClass is "2xx" for 200..299 and so on: a label with few values.
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return fmt.Sprintf("%dxx", status/100)
}
