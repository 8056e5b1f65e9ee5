package alert_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hestami/hestami/alert"
	"github.com/hestami/hestami/alert/alerttest"
)

func TestNotificationTitle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state alert.State
		want  string
	}{
		{alert.Firing, "CRITICAL: Archivage bloqué — WAL archiving stalled on db1"},
		{alert.Repeat, "CRITICAL (still firing): Archivage bloqué — WAL archiving stalled on db1"},
		{alert.Resolved, "RESOLVED (critical): Archivage bloqué — WAL archiving stalled on db1"},
		{alert.Event, "INFO: Sauvegarde réussie — physical backup done"},
	}
	for _, tt := range tests {
		if got := alerttest.Sample(tt.state).Title(); got != tt.want {
			t.Errorf("%s: Title() = %q, want %q", tt.state, got, tt.want)
		}
	}
	n := alerttest.Sample(alert.Firing)
	n.Summary = "two\r\nlines"
	if got := n.Title(); got != "CRITICAL: two lines" {
		t.Errorf("Title() of a multi-line summary = %q, want one line", got)
	}
}

func TestNotificationText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state alert.State
		want  string
	}{
		{alert.Firing, `CRITICAL: Archivage bloqué — WAL archiving stalled on db1

5 segments are waiting; the oldest since 05:06 UTC. Check hestami wal status.

State:      firing
Severity:   critical
Alert:      archiving-stalled
Since:      2025-03-04T05:06:07Z (1h30m0s ago)
Last seen:  2025-03-04T06:36:07Z
Seen:       7 times
Labels:     cluster=main, instance=db1
`},
		{alert.Resolved, `RESOLVED (critical): Archivage bloqué — WAL archiving stalled on db1

5 segments are waiting; the oldest since 05:06 UTC. Check hestami wal status.

State:      resolved
Severity:   critical
Alert:      archiving-stalled
Since:      2025-03-04T05:06:07Z
Resolved:   2025-03-04T07:06:07Z (lasted 2h0m0s)
Seen:       7 times
Labels:     cluster=main, instance=db1
`},
		{alert.Event, `INFO: Sauvegarde réussie — physical backup done

Backup 20250304T050607Z: 1.2 GiB in 3m4s.

State:      event
Severity:   info
Alert:      backup-succeeded:physical
Time:       2025-03-04T06:36:07Z
Labels:     cluster=main, instance=db1
`},
	}
	for _, tt := range tests {
		if got := alerttest.Sample(tt.state).Text(); got != tt.want {
			t.Errorf("%s: Text() =\n%s\nwant\n%s", tt.state, got, tt.want)
		}
	}
}

func TestParseSeverity(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]alert.Severity{"info": alert.Info, " Warning ": alert.Warning, "CRITICAL": alert.Critical} {
		if got, err := alert.ParseSeverity(in); err != nil || got != want {
			t.Errorf("ParseSeverity(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := alert.ParseSeverity("page"); err == nil {
		t.Error("ParseSeverity(page) = nil error")
	}
}

func TestFileStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := &alert.FileStore{Path: filepath.Join(dir, "notifications.json")}
	ctx := t.Context()
	if b, err := s.Load(ctx); err != nil || b != nil {
		t.Fatalf("Load before any Save = %q, %v; want nil, nil", b, err)
	}
	for _, blob := range []string{`{"version":1}`, `{"version":1,"alerts":{}}`} {
		if err := s.Save(ctx, []byte(blob)); err != nil {
			t.Fatal(err)
		}
		if b, err := s.Load(ctx); err != nil || string(b) != blob {
			t.Fatalf("Load = %q, %v; want %q", b, err, blob)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d files after saves, want only the state file (no temporary left)", len(entries))
	}
	missing := &alert.FileStore{Path: filepath.Join(dir, "no", "such", "dir", "state.json")}
	if err := missing.Save(ctx, []byte("{}")); err == nil || !strings.Contains(err.Error(), "save alert state") {
		t.Errorf("Save into a missing directory = %v, want a save alert state error", err)
	}
}

func TestFileStoreAcrossManagers(t *testing.T) {
	t.Parallel()
	store := &alert.FileStore{Path: filepath.Join(t.TempDir(), "state.json")}
	clk := newClock()
	rec := alerttest.NewRecorder("rec")
	m := newManager(t, clk, store, nil, rec)
	must(t, m.Fire(t.Context(), problem("archiving-stalled", alert.Critical)))
	rec.Take()
	m = newManager(t, clk, store, nil, rec)
	must(t, m.Fire(t.Context(), problem("archiving-stalled", alert.Critical)))
	if got := rec.Take(); len(got) != 0 {
		t.Fatalf("after a restart on the same state file got %q, want nothing", brief(got))
	}
	must(t, m.Resolve(t.Context(), "archiving-stalled"))
	if got := brief(rec.Take()); len(got) != 1 || !strings.HasPrefix(got[0], "resolved") {
		t.Fatalf("got %q, want resolved", got)
	}
}
