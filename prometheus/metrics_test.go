package prometheus

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/hestami/hestami/backup"
)

func TestMetricNames(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range exported() {
		switch {
		case seen[m.name]:
			t.Errorf("%s defined twice", m.name)
		case !regexp.MustCompile(`^hestami_[a-z0-9_]+$`).MatchString(m.name):
			t.Errorf("%s: want hestami_ and lower case", m.name)
		case (m.kind == prom.CounterValue) != strings.HasSuffix(m.name, "_total"):
			t.Errorf("%s: counters, and only they, end in _total", m.name)
		case strings.Contains(m.name, "timestamp") && !strings.HasSuffix(m.name, "_timestamp_seconds"):
			t.Errorf("%s: a time is in _timestamp_seconds", m.name)
		case m.help == "" || !strings.HasSuffix(m.help, ".") && !strings.HasSuffix(m.help, ")"):
			t.Errorf("%s: help %q, want a sentence", m.name, m.help)
		}
		seen[m.name] = true
	}
	ch := make(chan *prom.Desc, len(allMetrics)+1)
	NewCollector(nil, Options{}).Describe(ch)
	close(ch)
	if n := len(ch); n != len(allMetrics) {
		t.Errorf("Describe sent %d descriptions for %d metrics", n, len(allMetrics))
	}
}

// TestMetricsDocumented keeps docs/monitoring.md in step with the collector.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/monitoring.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range exported() {
		if !strings.Contains(string(doc), "`"+m.name+"`") {
			t.Errorf("docs/monitoring.md does not document %s", m.name)
		}
	}
	known := map[string]bool{}
	for _, m := range exported() {
		known[m.name] = true
	}
	for _, name := range regexp.MustCompile("`(hestami_[a-z0-9_]+)`").FindAllStringSubmatch(string(doc), -1) {
		if !known[name[1]] {
			t.Errorf("docs/monitoring.md documents %s, which the collector does not export", name[1])
		}
	}
}

// TestGrafanaDashboard checks deploy/grafana/hestami-backup.json: valid JSON, a data
// source variable every panel and query uses, the panels operators rely on, and only
// metrics the collector exports (so the two cannot drift apart).
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana/hestami-backup.json")
	if err != nil {
		t.Fatal(err)
	}
	type datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	type panel struct {
		Type       string      `json:"type"`
		Title      string      `json:"title"`
		Datasource *datasource `json:"datasource"`
		Targets    []struct {
			Datasource *datasource `json:"datasource"`
			Expr       string      `json:"expr"`
			RefID      string      `json:"refId"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []panel `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Error("dashboard without title or uid")
	}
	dsVar := ""
	for _, v := range dash.Templating.List {
		if v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = "${" + v.Name + "}"
		}
	}
	if dsVar == "" {
		t.Fatal("no Prometheus data source variable in templating.list")
	}

	known := map[string]bool{}
	for _, m := range exported() {
		known[m.name] = true
	}
	metricRE := regexp.MustCompile(`\bhestami_[a-z0-9_]+\b`)
	titles := map[string]bool{}
	used := map[string]bool{}
	queries := 0
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			titles[p.Title] = true
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != dsVar {
				t.Errorf("panel %q: data source %+v, want uid %s", p.Title, p.Datasource, dsVar)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Targets {
				queries++
				if q.Datasource == nil || q.Datasource.UID != dsVar || q.RefID == "" {
					t.Errorf("panel %q query %q: data source %+v, refId %q", p.Title, q.Expr, q.Datasource, q.RefID)
				}
				names := metricRE.FindAllString(q.Expr, -1)
				if len(names) == 0 {
					t.Errorf("panel %q queries no hestami metric: %q", p.Title, q.Expr)
				}
				for _, n := range names {
					used[n] = true
					if !known[n] {
						t.Errorf("panel %q queries %s, which the collector does not export", p.Title, n)
					}
				}
			}
			for _, raw := range p.Panels {
				var sub panel
				if err := json.Unmarshal(raw, &sub); err != nil {
					t.Fatal(err)
				}
				walk([]panel{sub})
			}
		}
	}
	walk(dash.Panels)
	if queries < 10 {
		t.Errorf("only %d queries", queries)
	}
	for _, title := range []string{"Last backup age", "Backup sizes over time", "WAL archive lag", "Archive failures",
		"Drill RTO and RPO", "Storage used and free"} {
		if !titles[title] {
			t.Errorf("no panel %q", title)
		}
	}
	for _, name := range []string{"hestami_backup_last_success_timestamp_seconds", "hestami_backup_last_stored_size_bytes",
		"hestami_wal_archive_lag_seconds", "hestami_wal_archive_failures_total", "hestami_drill_last_rto_seconds",
		"hestami_drill_last_rpo_seconds", "hestami_storage_used_bytes", "hestami_storage_free_bytes"} {
		if !used[name] {
			t.Errorf("the dashboard does not chart %s", name)
		}
	}
}

type staticSource struct{}

func (staticSource) Overview(context.Context) (*backup.Overview, error) {
	return &backup.Overview{Time: time.Unix(1_800_000_000, 0)}, nil
}

func TestJobCollector(t *testing.T) {
	end := time.Unix(1_800_000_000, 500_000_000)
	jobs := []Job{
		{Name: "backup-physical", Next: end.Add(24 * time.Hour), LastEnd: end, LastDuration: 90 * time.Second, LastOutcome: "ok"},
		{Name: "prune", Running: true, LastEnd: end, LastDuration: time.Second, LastOutcome: "failed"},
		{Name: "drill-physical", Next: end.Add(time.Hour), LastOutcome: "skipped"},
		{Name: "verify"}, // never ran, not scheduled
	}
	// Registered beside the Collector, as the daemon does: no clash of descriptions.
	g := gather(t, NewRegistry(staticSource{}, Options{Collectors: []prom.Collector{NewJobCollector(func() []Job { return jobs })}}))
	g.want(t, "hestami_daemon_job_last_success", "job=backup-physical", 1, 0)
	g.want(t, "hestami_daemon_job_last_success", "job=prune", 0, 0)
	g.want(t, "hestami_daemon_job_running", "job=prune", 1, 0)
	g.want(t, "hestami_daemon_job_running", "job=verify", 0, 0)
	g.want(t, "hestami_daemon_job_last_duration_seconds", "job=backup-physical", 90, 0)
	g.want(t, "hestami_daemon_job_last_run_timestamp_seconds", "job=backup-physical", 1_800_000_000.5, 1e-6)
	g.want(t, "hestami_daemon_job_next_run_timestamp_seconds", "job=drill-physical", 1_800_003_600.5, 1e-6)
	for _, absent := range []string{"job=drill-physical", "job=verify"} {
		if _, ok := g["hestami_daemon_job_last_success"][absent]; ok {
			t.Errorf("hestami_daemon_job_last_success{%s} reported for a job that did not run here", absent)
		}
	}
	if _, ok := g["hestami_daemon_job_next_run_timestamp_seconds"]["job=verify"]; ok {
		t.Error("a next run reported for an unscheduled job")
	}
	g.want(t, "hestami_repository_up", "", 1, 0)
}
