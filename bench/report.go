package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hestami/hestami/backup"
)

// result is one tool's row: a command measured --runs times.
type result struct {
	Operation   string    `json:"operation"`
	Tool        string    `json:"tool"`
	Hestami     bool      `json:"hestami"`
	RunsSeconds []float64 `json:"runs_seconds"`
	Seconds     float64   `json:"seconds"` // minimum over the runs
	SizeBytes   int64     `json:"size_bytes,omitempty"`
	PeakRSSKiB  int64     `json:"peak_rss_kib"`         // maximum over the runs
	PerSecond   float64   `json:"per_second,omitempty"` // backlog: segments/s; s3, encryption: MB/s of RawBytes; auth: requests/s
	RawBytes    int64     `json:"raw_bytes,omitempty"`  // s3, encryption: the backup's uncompressed size
	// Load rows (auth): Seconds is the p50 latency and PerSecond the throughput
	// of the run with the best throughput, whose latencies and request count these
	// are; RunsSeconds holds every run's p50, RunsPerSecond its throughput.
	RunsPerSecond []float64 `json:"runs_per_second,omitempty"`
	P50Millis     float64   `json:"p50_ms,omitempty"`
	P99Millis     float64   `json:"p99_ms,omitempty"`
	Requests      int64     `json:"requests,omitempty"`
	Note          string    `json:"note,omitempty"`
	Error         string    `json:"error,omitempty"`
}

// add records one run.
func (r *result) add(wall time.Duration, size, rssKiB int64) {
	s := wall.Seconds()
	r.RunsSeconds = append(r.RunsSeconds, s)
	if len(r.RunsSeconds) == 1 || s < r.Seconds {
		r.Seconds = s
	}
	r.SizeBytes = size
	r.PeakRSSKiB = max(r.PeakRSSKiB, rssKiB)
}

// fail marks the row failed: it is skipped in later runs.
func (r *result) fail(err error) {
	if r.Error == "" {
		r.Error = err.Error()
	}
}

func (r *result) failIf(err error) {
	if err != nil {
		r.fail(err)
	}
}

func (r *result) failed() bool { return r.Error != "" }

func (r *result) measured() bool { return !r.failed() && len(r.RunsSeconds) > 0 }

// hostInfo is what the numbers were measured on.
type hostInfo struct {
	CPUs       int    `json:"cpus"`
	Memory     string `json:"memory"`
	Go         string `json:"go"`
	PostgreSQL string `json:"postgresql"`
	PgBackRest string `json:"pgbackrest"`
	Zstd       string `json:"zstd"`
	Hestami    string `json:"hestami"`
	WorkFS     string `json:"work_filesystem"`
	// LoadBefore and LoadAfter are the 1-minute load averages before the setup and
	// after the last measurement: other work on the machine skews every number.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
}

// dataset describes the data the benchmark ran on.
type dataset struct {
	Scale             int    `json:"pgbench_scale"`
	DatabaseBytes     int64  `json:"database_bytes"`
	NoiseBytes        int64  `json:"incompressible_bytes"`
	ClusterBytes      int64  `json:"cluster_bytes"`
	Segment           string `json:"wal_segment"`
	SegmentBytes      int64  `json:"wal_segment_bytes"`
	SegmentZstd3Bytes int64  `json:"wal_segment_zstd3_bytes"`
}

type stepError struct {
	Step  string `json:"step"`
	Error string `json:"error"`
}

// target is one of the goals, checked against the results.
type target struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Status string `json:"status"` // MET, MISSED, NOT MEASURED or INFO (no target)
}

// report is everything one benchmark run found.
type report struct {
	Started    time.Time   `json:"started"`
	Runs       int         `json:"runs"`
	Host       hostInfo    `json:"host"`
	Dataset    dataset     `json:"dataset"`
	Results    []*result   `json:"results"`
	Targets    []target    `json:"targets"`
	StepErrors []stepError `json:"step_errors,omitempty"`
}

func newReport(o options) *report {
	return &report{Started: time.Now().UTC(), Runs: o.Runs}
}

// row returns the row for op and tool, adding it if new.
func (rep *report) row(op, tool string, hestami bool) *result {
	for _, r := range rep.Results {
		if r.Operation == op && r.Tool == tool {
			return r
		}
	}
	r := &result{Operation: op, Tool: tool, Hestami: hestami, RunsSeconds: []float64{}}
	rep.Results = append(rep.Results, r)
	return r
}

// find returns the first row of op whose tool starts with prefix.
func (rep *report) find(op, prefix string) *result {
	for _, r := range rep.Results {
		if r.Operation == op && strings.HasPrefix(r.Tool, prefix) {
			return r
		}
	}
	return nil
}

// hestamiRow returns the hestami row of op.
func (rep *report) hestamiRow(op string) *result {
	for _, r := range rep.Results {
		if r.Operation == op && r.Hestami {
			return r
		}
	}
	return nil
}

// failures counts failed rows and steps.
func (rep *report) failures() int {
	n := len(rep.StepErrors)
	for _, r := range rep.Results {
		if r.failed() {
			n++
		}
	}
	return n
}

// evaluate checks the results against the targets.
func (rep *report) evaluate() {
	rep.Targets = rep.Targets[:0]
	ratio := func(name, op, otherPrefix string, limit float64) {
		t := target{Name: name, Status: "NOT MEASURED"}
		h, o := rep.hestamiRow(op), rep.find(op, otherPrefix)
		switch {
		case h == nil || o == nil:
			t.Value = "step not run"
		case !h.measured():
			t.Value = "hestami failed"
		case !o.measured():
			t.Value = o.Tool + " failed"
		case o.Seconds == 0:
			t.Value = "no time"
		default:
			r := h.Seconds / o.Seconds
			t.Value = fmt.Sprintf("%.2f× (%s vs %s)", r, fmtDur(h.Seconds), fmtDur(o.Seconds))
			t.Status = metOr(r <= limit)
		}
		rep.Targets = append(rep.Targets, t)
	}
	ratio("physical backup ≤ 0.6× pgBackRest", opPhysical, "pgbackrest", 0.6)
	ratio("physical backup ≤ 1.25× pg_basebackup server-zstd", opPhysical, "pg_basebackup", 1.25)
	ratio("restore ≤ 1× pgBackRest restore", opRestore, "pgbackrest", 1.0)
	ratio("logical backup ≤ 1.05× pg_dump -Fc -Z0 | zstd", opLogical, "pg_dump -Fc -Z0", 1.05)
	ratio("wal push p50 ≤ 1.5× cp && sync", opPushP50, "cp", 1.5)
	ratio("encrypted backup ≤ 1.10× encryption + signing off", opEncBackup, "hestami backup push, encryption + signing off", 1.10)
	ratio("encrypted restore ≤ 1.10× encryption + signing off", opEncRestore, "hestami restore, encryption + signing off", 1.10)
	// No target for S3 against a file repository: the ratio is printed as INFO.
	for _, op := range []string{opS3Backup, opS3Restore} {
		t := target{Name: op + ": S3 emulator / file repository", Status: "NOT MEASURED", Value: "step not run"}
		h, o := rep.hestamiRow(op), (*result)(nil)
		for _, r := range rep.Results {
			if r.Operation == op && !r.Hestami {
				o = r
			}
		}
		switch {
		case h == nil || o == nil:
		case !h.measured() || !o.measured() || o.Seconds == 0:
			t.Value = "a measurement failed"
		default:
			t.Status = "INFO"
			t.Value = fmt.Sprintf("%.2f× (%s vs %s; %.1f vs %.1f MB/s)", h.Seconds/o.Seconds, fmtDur(h.Seconds), fmtDur(o.Seconds), h.PerSecond, o.PerSecond)
		}
		rep.Targets = append(rep.Targets, t)
	}

	t := target{Name: "wal backlog ≥ 40 segments/s", Status: "NOT MEASURED", Value: "step not run"}
	if h := rep.hestamiRow(opBacklog); h != nil {
		if h.measured() {
			t.Value = fmt.Sprintf("%.1f segments/s", h.PerSecond)
			t.Status = metOr(h.PerSecond >= 40)
		} else {
			t.Value = "hestami failed"
		}
	}
	rep.Targets = append(rep.Targets, t)

	t = target{Name: "session validation throughput ≥ 0.5× bare net/http", Status: "NOT MEASURED", Value: "step not run"}
	if h, o := rep.hestamiRow(opSession), rep.find(opSession, "bare net/http"); h != nil && o != nil {
		switch {
		case !h.measured():
			t.Value = "hestami failed"
		case !o.measured():
			t.Value = o.Tool + " failed"
		case o.PerSecond == 0:
			t.Value = "no requests"
		default:
			r := h.PerSecond / o.PerSecond
			t.Value = fmt.Sprintf("%.2f× (%.0f vs %.0f req/s; p99 %.2f ms vs %.2f ms)", r, h.PerSecond, o.PerSecond, h.P99Millis, o.P99Millis)
			t.Status = metOr(r >= 0.5)
		}
	}
	rep.Targets = append(rep.Targets, t)

	t = target{Name: "peak RSS of every hestami command ≤ 64 MiB", Status: "NOT MEASURED", Value: "no hestami command measured"}
	var worst *result
	failed := 0
	for _, r := range rep.Results {
		if !r.Hestami {
			continue
		}
		if !r.measured() {
			failed++
			continue
		}
		if worst == nil || r.PeakRSSKiB > worst.PeakRSSKiB {
			worst = r
		}
	}
	if worst != nil {
		t.Value = fmt.Sprintf("max %s (%s)", humanKiB(worst.PeakRSSKiB), worst.Operation)
		if failed > 0 {
			t.Value += fmt.Sprintf("; %d hestami row(s) not measured", failed)
		}
		t.Status = metOr(worst.PeakRSSKiB <= 64<<10)
	}
	rep.Targets = append(rep.Targets, t)
}

func metOr(ok bool) string {
	if ok {
		return "MET"
	}
	return "MISSED"
}

// print writes the human-readable report.
func (rep *report) print(w io.Writer) {
	rep.evaluate()
	h, d := rep.Host, rep.Dataset
	fmt.Fprintf(w, "\nhestami benchmark, %s\n", rep.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "  host:    %d CPUs, %s memory, work dir on %s\n", h.CPUs, h.Memory, h.WorkFS)
	fmt.Fprintf(w, "  tools:   %s; %s; %s; hestami %s\n", h.PostgreSQL, h.PgBackRest, h.Zstd, h.Hestami)
	fmt.Fprintf(w, "  data:    pgbench scale %d: database %s of which %s incompressible; cluster %s\n",
		d.Scale, humanBytes(d.DatabaseBytes), humanBytes(d.NoiseBytes), humanBytes(d.ClusterBytes))
	if d.Segment != "" {
		fmt.Fprintf(w, "  wal:     segment %s, %s (zstd -3: %s)\n", d.Segment, humanBytes(d.SegmentBytes), humanBytes(d.SegmentZstd3Bytes))
	}
	fmt.Fprintf(w, "  load:    1-minute load average %.1f before, %.1f after", h.LoadBefore, h.LoadAfter)
	if h.CPUs > 0 && max(h.LoadBefore, h.LoadAfter) > float64(h.CPUs)/2 {
		fmt.Fprintf(w, " — busy for %d CPUs: other work skews these numbers", h.CPUs)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  runs:    %d; wall time is the minimum, peak RSS the maximum over the runs\n\n", rep.Runs)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OPERATION\tTOOL\tWALL (MIN)\tSIZE\tPEAK RSS\tHESTAMI/THIS TIME\tHESTAMI/THIS SIZE\tNOTE")
	var failed []*result
	for _, r := range rep.Results {
		wall, size, rss, rt, rs := "FAILED", "-", "-", "", ""
		if r.measured() {
			wall = fmtDur(r.Seconds)
			size = humanBytes(r.SizeBytes)
			rss = humanKiB(r.PeakRSSKiB)
			if hr := rep.hestamiRow(r.Operation); !r.Hestami && hr != nil && hr.measured() {
				if r.Seconds > 0 {
					rt = fmt.Sprintf("%.2f×", hr.Seconds/r.Seconds)
				}
				if r.SizeBytes > 0 && hr.SizeBytes > 0 {
					rs = fmt.Sprintf("%.2f×", float64(hr.SizeBytes)/float64(r.SizeBytes))
				}
			}
		} else if !r.failed() {
			wall = "not run"
		} else {
			failed = append(failed, r)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Operation, r.Tool, wall, size, rss, rt, rs, r.Note)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nTargets (informational):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, t := range rep.Targets {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", t.Status, t.Name, t.Value)
	}
	tw.Flush()

	if len(failed) > 0 || len(rep.StepErrors) > 0 {
		fmt.Fprintln(w, "\nFailed measurements:")
		for _, r := range failed {
			fmt.Fprintf(w, "  %s / %s:\n%s\n", r.Operation, r.Tool, indent(indent(r.Error)))
		}
		for _, s := range rep.StepErrors {
			fmt.Fprintf(w, "  step %s stopped early:\n%s\n", s.Step, indent(indent(s.Error)))
		}
	}
}

// writeJSON writes the report to path.
func (rep *report) writeJSON(path string) error {
	rep.evaluate()
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// fmtDur renders seconds as ms below a second.
func fmtDur(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.1f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}

func humanBytes(n int64) string { return backup.FormatBytes(n) }

func humanKiB(kib int64) string { return humanBytes(kib * 1024) }
