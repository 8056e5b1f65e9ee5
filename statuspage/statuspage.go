// Package statuspage serves the backup daemon's status page: one server-rendered HTML
// page (no scripts, no external assets) showing the latest backups of each type, the
// WAL archive with its gaps, verifications, restore drills, storage use and a chart of
// backup sizes over time, for an operator's browser at 3 a.m.
package statuspage

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hestami/hestami/backup"
)

// Source gives the page the state to show; *backup.OverviewReader is one.
type Source interface {
	// Overview returns the current state; it fails only when ctx ends first.
	Overview(ctx context.Context) (*backup.Overview, error)
}

var _ Source = (*backup.OverviewReader)(nil)

// Options configure the page.
type Options struct {
	// Title heads the page (default "Hestami backups").
	Title string
	// BackupsPerType is how many of the newest backups of each type are listed
	// (default 10); the chart shows every complete one.
	BackupsPerType int
	// StaleAfter flags a type whose newest complete backup finished longer ago
	// (default 26 h: a daily backup that is late).
	StaleAfter time.Duration
	// Timeout bounds reading the state for one request (default 20 s).
	Timeout time.Duration
	// Logger reports failures to render; nil: discarded.
	Logger *slog.Logger
	// Jobs, when set, gives the daemon's scheduled jobs, shown in a table of their
	// own; a job whose last run failed is listed under "Needs attention".
	Jobs func() []Job
}

// Job is one of the daemon's scheduled jobs as the page shows it.
type Job struct {
	Name    string
	Running bool
	// Next is when it is next due (zero: not scheduled).
	Next time.Time
	// LastEnd is when its last run ended (zero: never ran), LastDuration how long
	// it took, LastOutcome how it went ("ok", "failed", "skipped": another daemon
	// ran it) and LastError why it failed.
	LastEnd      time.Time
	LastDuration time.Duration
	LastOutcome  string
	LastError    string
}

//go:embed templates/status.html
var templates embed.FS

var pageTemplate = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"bytes": backup.FormatBytes,
}).ParseFS(templates, "templates/status.html"))

type handler struct {
	src  Source
	opts Options
}

// NewHandler returns the status page. It answers GET and HEAD for "/" only (mount
// it at "/" and route /metrics, /healthz... beside it), 404 for other paths.
func NewHandler(src Source, opts Options) http.Handler {
	if opts.Title == "" {
		opts.Title = "Hestami backups"
	}
	if opts.BackupsPerType <= 0 {
		opts.BackupsPerType = 10
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = 26 * time.Hour
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 20 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &handler{src: src, opts: opts}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	o, err := h.src.Overview(ctx)
	if err != nil {
		h.opts.Logger.Warn("status page: could not read the backup state", "err", err)
		http.Error(w, "the backup state could not be read in time; try again", http.StatusServiceUnavailable)
		return
	}
	var buf bytes.Buffer
	pg := buildPage(o, h.opts)
	if h.opts.Jobs != nil {
		addJobs(&pg, h.opts.Jobs(), o.Time)
	}
	if err := pageTemplate.Execute(&buf, pg); err != nil {
		h.opts.Logger.Error("status page: render", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(buf.Bytes())
}

// The page's view model: everything formatted, so the template only lays it out.

type page struct {
	Title     string
	Generated stamp
	Storage   string
	Problems  []string
	Types     []typeView
	Chart     template.HTML
	WAL       walView
	Drills    []drillView
	DrillErr  string
	Usage     []usageView
	HasJobs   bool
	Jobs      []jobView
}

type jobView struct {
	Name     string
	State    string // "running", "idle"
	Next     stamp
	LastEnd  stamp
	Duration string
	Outcome  string
	Failed   bool
	Error    string
}

// stamp is a time shown to people, with its machine-readable form.
type stamp struct {
	Text     string // "2026-12-04 03:00:12 UTC", or "" for none
	ISO      string
	Relative string // "3 h ago"
}

type typeView struct {
	Name         string
	Anchor       string
	Latest       *backupView
	Stale        bool
	Counts       map[string]int
	Rows         []backupView
	Shown, Total int
	Verification *verificationView
}

type backupView struct {
	ID         string
	Status     string
	Problem    bool // not complete
	Started    stamp
	Finished   stamp
	Duration   string
	Size       string
	Stored     string
	Verified   string // "passed 2026-…", "FAILED …", "never"
	VerifiedOK bool
	Error      string
}

type verificationView struct {
	Backup string
	Time   stamp
	Method string
	OK     bool
	Error  string
}

type walView struct {
	Archiver     *archiverView
	ArchiverErr  string
	RepoErr      string
	Timelines    []timelineView
	LastStored   stamp
	GapsTotal    int
	HasTimelines bool
}

type archiverView struct {
	Archived     int64
	LastArchived string
	LastTime     stamp
	Failed       int64
	LastFailed   string
	FailedTime   stamp
	Current      string
	LagSegments  int64
	LagSeconds   string
	// Failing: the last attempt failed (a failure after the last success).
	Failing bool
}

type timelineView struct {
	Timeline   uint32
	Segments   int
	First      string
	Last       string
	LastStored stamp
	History    bool
	Stored     string
	Gaps       []backup.Gap
	Missing    uint64
}

type drillView struct {
	Time    stamp
	Backup  string
	Type    string
	OK      bool
	RTO     string
	RPO     string
	Details string
}

type usageView struct {
	Name    string
	URL     string
	Used    string
	Objects int
	Free    string
	Percent string // used of used+free, "" when free is unknown
	Error   string
}

var types = []struct {
	t      backup.Type
	color  string
	marker string
}{
	{backup.Physical, "#1f5fbf", "circle"},
	{backup.Logical, "#a34700", "square"},
}

func buildPage(o *backup.Overview, opts Options) page {
	now := o.Time
	st := func(t time.Time) stamp { return makeStamp(t, now) }
	p := page{Title: opts.Title, Generated: st(o.Time), Storage: o.Storage}
	if o.RepositoryError != "" {
		p.Problems = append(p.Problems, "The repository could not be read: "+o.RepositoryError)
	}

	var chart []series
	for _, tt := range types {
		t := tt.t
		tv := typeView{Name: string(t), Anchor: "backups-" + string(t), Counts: o.Counts(t)}
		var all []backup.BackupSummary
		for _, b := range o.Backups {
			if b.Type == t {
				all = append(all, b)
			}
		}
		tv.Total = len(all)
		// Newest first, the newest BackupsPerType.
		for i := len(all) - 1; i >= 0 && len(tv.Rows) < opts.BackupsPerType; i-- {
			tv.Rows = append(tv.Rows, backupRow(all[i], st))
		}
		tv.Shown = len(tv.Rows)
		if b := o.LatestComplete(t); b != nil {
			v := backupRow(*b, st)
			tv.Latest = &v
			if now.Sub(b.StopTime) > opts.StaleAfter {
				tv.Stale = true
				p.Problems = append(p.Problems, fmt.Sprintf("The newest complete %s backup (%s) finished %s: older than %s.", t, b.ID, relative(b.StopTime, now), hours(opts.StaleAfter)))
			}
		} else if o.RepositoryError == "" {
			p.Problems = append(p.Problems, fmt.Sprintf("There is no complete %s backup.", t))
		}
		if n := tv.Counts[backup.StatusUnreadable]; n > 0 {
			p.Problems = append(p.Problems, fmt.Sprintf("%d %s backup(s) cannot be read; see the table below.", n, t))
		}
		if v, of := o.LastVerification(t); v != nil {
			tv.Verification = &verificationView{Backup: of.ID, Time: st(v.Time), Method: v.Method, OK: v.OK, Error: v.Error}
			if !v.OK {
				p.Problems = append(p.Problems, fmt.Sprintf("The last verification of a %s backup (%s) failed: %s", t, of.ID, v.Error))
			}
		}
		p.Types = append(p.Types, tv)

		s := series{Name: string(t), Color: tt.color, Marker: tt.marker}
		for _, b := range o.CompleteOf(t) {
			s.Points = append(s.Points, point{ID: b.ID, Time: b.StartTime, Bytes: b.StoredSize})
		}
		chart = append(chart, s)
	}
	p.Chart = sizeChart(chart)

	// WAL.
	w := walView{ArchiverErr: o.ArchiverError, RepoErr: o.WALError, LastStored: st(o.LastArchived()), HasTimelines: len(o.Timelines) > 0}
	if a := o.Archiver; a != nil {
		av := &archiverView{Archived: a.ArchivedCount, LastArchived: a.LastArchivedWAL, Failed: a.FailedCount, LastFailed: a.LastFailedWAL,
			Current: a.CurrentWAL, LagSegments: a.LagSegments, LagSeconds: seconds(a.LagSeconds)}
		if a.LastArchivedTime != nil {
			av.LastTime = st(*a.LastArchivedTime)
		}
		if a.LastFailedTime != nil {
			av.FailedTime = st(*a.LastFailedTime)
			av.Failing = a.LastArchivedTime == nil || a.LastFailedTime.After(*a.LastArchivedTime)
		}
		if av.Failing {
			p.Problems = append(p.Problems, fmt.Sprintf("PostgreSQL's last attempt to archive WAL (%s) failed; see the PostgreSQL log for hestami's message.", a.LastFailedWAL))
		}
		w.Archiver = av
	} else if o.ArchiverError != "" {
		p.Problems = append(p.Problems, "PostgreSQL's archiver statistics are unavailable: "+o.ArchiverError)
	}
	for _, tl := range o.Timelines {
		v := timelineView{Timeline: tl.Timeline, Segments: tl.Segments, First: tl.First, Last: tl.Last, LastStored: st(tl.LastTime),
			History: tl.History, Stored: backup.FormatBytes(tl.StoredSize), Gaps: tl.Gaps}
		for _, g := range tl.Gaps {
			v.Missing += g.Missing
			w.GapsTotal++
		}
		if len(tl.Gaps) > 0 {
			p.Problems = append(p.Problems, fmt.Sprintf("Timeline %d has %d gap(s) in its archived WAL (%d segments missing): point-in-time recovery cannot cross them.", tl.Timeline, len(tl.Gaps), v.Missing))
		}
		w.Timelines = append(w.Timelines, v)
	}
	if o.WALError != "" {
		p.Problems = append(p.Problems, "The WAL archive could not be read: "+o.WALError)
	}
	p.WAL = w

	// Drills, newest first.
	p.DrillErr = o.DrillError
	for i := len(o.Drills) - 1; i >= 0; i-- {
		d := o.Drills[i]
		details := strings.Join(d.Checks, "; ")
		if d.Error != "" {
			details = d.Error
		}
		p.Drills = append(p.Drills, drillView{Time: st(d.Time), Backup: d.BackupID, Type: string(d.Type), OK: d.OK,
			RTO: seconds(d.RTOSeconds), RPO: seconds(d.RPOSeconds), Details: details})
	}
	if d := o.LastDrill(""); d != nil && !d.OK {
		p.Problems = append(p.Problems, fmt.Sprintf("The last restore drill (of %s) failed: %s", d.BackupID, d.Error))
	}

	for _, u := range o.Usage {
		v := usageView{Name: u.Name, URL: u.URL, Used: backup.FormatBytes(u.Used), Objects: u.Objects, Free: "unknown", Error: u.Error}
		if u.Free != nil {
			v.Free = backup.FormatBytes(int64(*u.Free))
			if total := float64(u.Used) + float64(*u.Free); total > 0 {
				pct := 100 * float64(u.Used) / total
				v.Percent = fmt.Sprintf("%.0f %%", pct)
				if pct > 0 && pct < 1 {
					v.Percent = "< 1 %"
				}
			}
		}
		p.Usage = append(p.Usage, v)
	}
	return p
}

func addJobs(p *page, jobs []Job, now time.Time) {
	p.HasJobs = true
	for _, j := range jobs {
		v := jobView{Name: j.Name, State: "idle", Next: makeStamp(j.Next, now), LastEnd: makeStamp(j.LastEnd, now),
			Duration: "—", Outcome: j.LastOutcome, Failed: j.LastOutcome == "failed", Error: j.LastError}
		if j.Running {
			v.State = "running"
		}
		if !j.LastEnd.IsZero() {
			v.Duration = duration(j.LastDuration)
		}
		if v.Outcome == "" {
			v.Outcome = "never ran"
		}
		if v.Failed {
			p.Problems = append(p.Problems, fmt.Sprintf("The daemon's job %s failed %s: %s", j.Name, relative(j.LastEnd, now), j.LastError))
		}
		p.Jobs = append(p.Jobs, v)
	}
}

func backupRow(b backup.BackupSummary, st func(time.Time) stamp) backupView {
	v := backupView{ID: b.ID, Status: b.Status, Problem: b.Status != backup.StatusComplete, Started: st(b.StartTime),
		Stored: backup.FormatBytes(b.StoredSize), Size: "—", Duration: "—", Verified: "never", Error: b.Error}
	if !b.StopTime.IsZero() {
		v.Finished = st(b.StopTime)
		v.Duration = duration(b.Duration())
	}
	if b.Status == backup.StatusComplete {
		v.Size = backup.FormatBytes(b.Size)
	}
	if vr := b.Verification; vr != nil {
		v.VerifiedOK = vr.OK
		if vr.OK {
			v.Verified = "passed (" + vr.Method + ")"
		} else {
			v.Verified = "FAILED (" + vr.Method + ")"
		}
	}
	return v
}

func makeStamp(t, now time.Time) stamp {
	if t.IsZero() {
		return stamp{}
	}
	return stamp{Text: t.UTC().Format("2006-01-02 15:04:05 UTC"), ISO: t.UTC().Format(time.RFC3339), Relative: relative(t, now)}
}

// relative says how long ago t was, roughly ("5 min ago", "3 h ago", "2 days ago").
func relative(t, now time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d.Hours()))
	default:
		s = fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

func seconds(s float64) string { return duration(time.Duration(s * float64(time.Second))) }

func hours(d time.Duration) string { return strconv.FormatFloat(d.Hours(), 'f', -1, 64) + " h" }
