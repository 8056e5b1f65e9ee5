package main

import (
	"errors"
	"testing"
	"time"
)

func TestPrevSegment(t *testing.T) {
	const seg16M = 16 << 20
	tests := []struct {
		name, in, want string
		segSize        uint64
		wantErr        bool
	}{
		{name: "within a log file", in: "00000001000000000000000A", want: "000000010000000000000009", segSize: seg16M},
		{name: "across a log file boundary", in: "000000020000000300000000", want: "0000000200000002000000FF", segSize: seg16M},
		{name: "64 MiB segments", in: "000000010000000100000000", want: "00000001000000000000003F", segSize: 64 << 20},
		{name: "first segment has none before", in: "000000010000000000000000", segSize: seg16M, wantErr: true},
		{name: "history file", in: "00000002.history", segSize: seg16M, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := prevSegment(tt.in, tt.segSize)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("prevSegment(%q) = %q, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("prevSegment(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestSegName(t *testing.T) {
	if got := segName(1, 256, 16<<20); got != "000000010000000100000000" {
		t.Fatalf("segName(1, 256, 16 MiB) = %q, want the first segment of log file 1", got)
	}
	if got := segName(3, 0x2FF, 16<<20); got != "0000000300000002000000FF" {
		t.Fatalf("segName(3, 0x2FF, 16 MiB) = %q", got)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var ds []time.Duration
		for _, n := range ns {
			ds = append(ds, time.Duration(n)*time.Millisecond)
		}
		return ds
	}
	twenty := ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
	tests := []struct {
		name string
		in   []time.Duration
		p    int
		want time.Duration
	}{
		{"p50 of 20 is the 10th smallest", twenty, 50, 10 * time.Millisecond},
		{"p95 of 20 is the 19th smallest", twenty, 95, 19 * time.Millisecond},
		{"p95 of one", ms(7), 95, 7 * time.Millisecond},
		{"empty", nil, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Fatalf("percentile(p%d) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	rep := newReport(options{Runs: 1})
	h := rep.row(opPhysical, "hestami backup push --type physical", true)
	h.add(6*time.Second, 100, 30<<10)
	rep.row(opPhysical, "pg_basebackup -Ft", false).add(5*time.Second, 100, 10<<10)
	rep.row(opPhysical, "pgbackrest backup", false).add(8*time.Second, 100, 10<<10)
	rep.row(opRestore, "hestami restore", true).fail(errNotImplemented)
	rep.row(opRestore, "pgbackrest restore", false).add(time.Second, 100, 10<<10)
	bl := rep.row(opBacklog, "hestami wal push", true)
	bl.add(2*time.Second, 100, 70<<10)
	bl.PerSecond = 50
	rep.evaluate()

	want := map[string]string{
		"physical backup ≤ 0.6× pgBackRest":                  "MISSED", // 0.75×
		"physical backup ≤ 1.25× pg_basebackup server-zstd":  "MET",    // 1.2×
		"restore ≤ 1× pgBackRest restore":                    "NOT MEASURED",
		"logical backup ≤ 1.05× pg_dump -Fc -Z0 | zstd":      "NOT MEASURED",
		"wal backlog ≥ 40 segments/s":                        "MET",
		"peak RSS of every hestami command ≤ 64 MiB":         "MISSED", // 70 MiB
		"wal push p50 ≤ 1.5× cp && sync":                     "NOT MEASURED",
		"encrypted backup ≤ 1.10× encryption + signing off":  "NOT MEASURED",
		"encrypted restore ≤ 1.10× encryption + signing off": "NOT MEASURED",
		"s3 backup: S3 emulator / file repository":           "NOT MEASURED",
		"s3 restore: S3 emulator / file repository":          "NOT MEASURED",
		"session validation throughput ≥ 0.5× bare net/http": "NOT MEASURED",
	}
	if len(rep.Targets) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(rep.Targets), len(want), rep.Targets)
	}
	for _, tg := range rep.Targets {
		if tg.Status != want[tg.Name] {
			t.Errorf("%s: %s (%s), want %s", tg.Name, tg.Status, tg.Value, want[tg.Name])
		}
	}
	if rep.failures() != 1 {
		t.Errorf("failures() = %d, want 1 (the failed restore)", rep.failures())
	}
}

var errNotImplemented = errors.New("not implemented yet")
