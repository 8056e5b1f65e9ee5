package prometheus

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hestami/hestami/backup"
	"github.com/hestami/hestami/file"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/zstd"
)

// hestami runs the hestami binary on a's repository and returns its stdout.
func hestami(t *testing.T, a *pgtest.Archiving, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.Bin, append([]string{"--config", a.Config}, args...)...)
	cmd.Env = append(os.Environ(), a.StorageEnv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hestami %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// listRow is the part of `hestami backup list --json` the test compares with.
type listRow struct {
	ID         string      `json:"id"`
	Type       backup.Type `json:"type"`
	Status     string      `json:"status"`
	StopTime   *time.Time  `json:"stop_time"`
	Duration   float64     `json:"duration_seconds"`
	Size       int64       `json:"size"`
	StoredSize int64       `json:"stored_size"`
}

// gathered is one scrape: metric name -> label signature ("type=physical") -> value.
type gathered map[string]map[string]float64

func gather(t *testing.T, g prom.Gatherer) gathered {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := gathered{}
	for _, mf := range mfs {
		byLabels := map[string]float64{}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			byLabels[strings.Join(ls, ",")] = value(mf.GetType(), m)
		}
		out[mf.GetName()] = byLabels
	}
	return out
}

func value(kind dto.MetricType, m *dto.Metric) float64 {
	switch kind {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	return math.NaN()
}

// want checks one metric's value (within tolerance).
func (g gathered) want(t *testing.T, name, labels string, want, tolerance float64) {
	t.Helper()
	v, ok := g[name][labels]
	if !ok {
		t.Errorf("%s{%s} missing (have %v)", name, labels, g[name])
		return
	}
	if math.Abs(v-want) > tolerance {
		t.Errorf("%s{%s} = %v, want %v", name, labels, v, want)
	}
}

func (g gathered) absent(t *testing.T, name string) {
	t.Helper()
	if len(g[name]) > 0 {
		t.Errorf("%s = %v, want it absent", name, g[name])
	}
}

func unixOf(tm time.Time) float64 { return float64(tm.UnixNano()) / 1e9 }

// waitArchivedStat polls pg_stat_archiver until it reports seg archived.
func waitArchivedStat(t *testing.T, c *postgres.Cluster, seg string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var last *string
		pgtest.QueryRow(t, c, "postgres", "SELECT last_archived_wal FROM pg_stat_archiver").Scan(&last)
		if last != nil && *last >= seg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not archived within a minute (last %v)", seg, last)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestCollectorRealRepository takes real backups of a real cluster with the hestami
// binary and checks what a scrape reports against what hestami backup list, the
// repository's files and PostgreSQL say.
func TestCollectorRealRepository(t *testing.T) {
	t.Parallel()
	a := pgtest.NewArchiving(t, nil)
	c := a.Cluster
	pgtest.Exec(t, c, "postgres", "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	hestami(t, a, "backup", "push", "--type", "logical")
	pgtest.Exec(t, c, "postgres", "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(20001, 60000) g")
	hestami(t, a, "backup", "push", "--type", "logical")
	hestami(t, a, "backup", "push", "--type", "physical")
	hestami(t, a, "backup", "verify", "latest")
	var rows []listRow
	if err := json.Unmarshal([]byte(hestami(t, a, "backup", "list", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	latest := map[backup.Type]listRow{}
	for _, r := range rows {
		latest[r.Type] = r // oldest first: the last one wins
	}
	if len(rows) != 3 || latest[backup.Physical].Status != backup.StatusComplete {
		t.Fatalf("backup list = %+v, want 2 logical and 1 physical complete", rows)
	}
	// A few more segments, then wait until PostgreSQL counts the last one archived.
	var seg string
	for range 3 {
		pgtest.Exec(t, c, "postgres", "INSERT INTO items SELECT g, 'x' FROM generate_series(1, 1000) g")
		pgtest.QueryRow(t, c, "postgres", "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg)
	}
	waitArchivedStat(t, c, seg)

	st, err := file.New(a.Repo)
	if err != nil {
		t.Fatal(err)
	}
	repo := &backup.Repository{Storage: st, Codec: zstd.Codec{Level: 1}}
	drillTime := time.Now().Add(-time.Minute).UTC()
	if err := repo.RecordDrill(t.Context(), backup.DrillRecord{Time: drillTime, BackupID: latest[backup.Physical].ID, Type: backup.Physical,
		OK: true, RTOSeconds: 12.5, RPOSeconds: 3.25}); err != nil {
		t.Fatal(err)
	}
	// TTL < 0: every scrape reads afresh, so the test sees each change it makes.
	src := &backup.OverviewReader{Repo: repo, Archiver: &postgres.Archiver{ConnString: c.ConnString("postgres")}, TTL: -1}
	reg := NewRegistry(src, Options{})
	g := gather(t, reg)

	for _, typ := range []backup.Type{backup.Physical, backup.Logical} {
		r, l := latest[typ], "type="+string(typ)
		g.want(t, "hestami_backup_last_success_timestamp_seconds", l, unixOf(*r.StopTime), 1e-3)
		g.want(t, "hestami_backup_last_duration_seconds", l, r.Duration, 1e-3)
		g.want(t, "hestami_backup_last_size_bytes", l, float64(r.Size), 0)
		g.want(t, "hestami_backup_last_stored_size_bytes", l, float64(r.StoredSize), 0)
	}
	g.want(t, "hestami_backups", "status=complete,type=logical", 2, 0)
	g.want(t, "hestami_backups", "status=complete,type=physical", 1, 0)
	g.want(t, "hestami_backups", "status=incomplete,type=physical", 0, 0)
	g.want(t, "hestami_verification_last_success", "type=physical", 1, 0)
	if v := g["hestami_verification_last_timestamp_seconds"]["type=physical"]; math.Abs(v-unixOf(time.Now())) > 600 {
		t.Errorf("last verification at %v, want within minutes of now", v)
	}
	if _, ok := g["hestami_verification_last_success"]["type=logical"]; ok {
		t.Error("a verification reported for logical backups, none of which was verified")
	}
	g.want(t, "hestami_drill_last_rto_seconds", "type=physical", 12.5, 0)
	g.want(t, "hestami_drill_last_rpo_seconds", "type=physical", 3.25, 0)
	g.want(t, "hestami_drill_last_success", "type=physical", 1, 0)
	g.want(t, "hestami_drill_last_timestamp_seconds", "type=physical", unixOf(drillTime), 1e-3)

	// WAL: PostgreSQL's view, and the repository's.
	var archived, failed int64
	pgtest.QueryRow(t, c, "postgres", "SELECT archived_count, failed_count FROM pg_stat_archiver").Scan(&archived, &failed)
	g.want(t, "hestami_postgres_up", "", 1, 0)
	g.want(t, "hestami_wal_archived_total", "", float64(archived), 0)
	g.want(t, "hestami_wal_archive_failures_total", "", float64(failed), 0)
	g.want(t, "hestami_wal_archive_lag_segments", "", 0, 0) // the last switch is archived
	if lag := g["hestami_wal_archive_lag_seconds"][""]; lag < 0 || lag > 120 {
		t.Errorf("archive lag %v s, want the seconds since the last switch", lag)
	}
	segDir := filepath.Join(a.Repo, "wal", "00000001")
	segs, err := os.ReadDir(segDir)
	if err != nil {
		t.Fatal(err)
	}
	var segNames []string
	var walBytes int64
	for _, e := range segs {
		fi, _ := e.Info()
		walBytes += fi.Size()
		if f, err := backup.ParseWALName(strings.TrimSuffix(e.Name(), ".zst")); err == nil && f.Kind == backup.WALSegment {
			segNames = append(segNames, e.Name())
		}
	}
	g.want(t, "hestami_wal_segments", "timeline=1", float64(len(segNames)), 0)
	g.want(t, "hestami_wal_missing_segments", "timeline=1", 0, 0)
	g.want(t, "hestami_wal_stored_bytes", "timeline=1", float64(walBytes), 0)

	// Storage: every file of the repository directory, and the volume's free space.
	var used, objects float64
	filepath.WalkDir(a.Repo, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			used += float64(fi.Size())
			objects++
		}
		return nil
	})
	g.want(t, "hestami_storage_used_bytes", "storage=repository", used, 0)
	g.want(t, "hestami_storage_objects", "storage=repository", objects, 0)
	if free := g["hestami_storage_free_bytes"]["storage=repository"]; free <= 0 {
		t.Errorf("free space %v, want the volume's", free)
	}
	g.want(t, "hestami_repository_up", "", 1, 0)

	t.Run("gap", func(t *testing.T) {
		sort.Strings(segNames)
		if len(segNames) < 3 {
			t.Fatalf("only %d segments archived", len(segNames))
		}
		if err := os.Remove(filepath.Join(segDir, segNames[len(segNames)/2])); err != nil {
			t.Fatal(err)
		}
		g := gather(t, reg)
		g.want(t, "hestami_wal_missing_segments", "timeline=1", 1, 0)
		g.want(t, "hestami_wal_segments", "timeline=1", float64(len(segNames)-1), 0)
	})

	t.Run("http", func(t *testing.T) {
		srv := httptest.NewServer(Handler(src, Options{}))
		defer srv.Close()
		res, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, want := range []string{`hestami_backups{status="complete",type="logical"} 2`, "# TYPE hestami_wal_archive_failures_total counter", "go_goroutines"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	})

	t.Run("database down", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		g := gather(t, reg)
		g.want(t, "hestami_postgres_up", "", 0, 0)
		g.absent(t, "hestami_wal_archive_lag_seconds")
		g.absent(t, "hestami_wal_archive_failures_total")
		// The repository's side is still reported.
		g.want(t, "hestami_repository_up", "", 1, 0)
		g.want(t, "hestami_backups", "status=complete,type=logical", 2, 0)
	})
}
