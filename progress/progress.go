// Package progress shows the progress of long operations: a live line on a terminal
// (bytes, rate, ETA), structured log lines every few seconds otherwise.
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/hestami/hestami/backup"
)

// Reporter is a backup.Progress.
type Reporter struct {
	mu       sync.Mutex
	out      io.Writer // terminal, or nil to log
	log      *slog.Logger
	now      func() time.Time
	every    time.Duration
	phase    string
	total    int64
	done     int64
	start    time.Time
	last     time.Time
	lastLine int
}

var _ backup.Progress = (*Reporter)(nil)

// New returns a Reporter drawing on terminal when it is non-nil, else logging to log.
func New(terminal io.Writer, log *slog.Logger) *Reporter {
	every := 10 * time.Second
	if terminal != nil {
		every = 200 * time.Millisecond
	}
	return &Reporter{out: terminal, log: log, now: time.Now, every: every}
}

// Start implements backup.Progress.
func (r *Reporter) Start(phase string, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phase, r.total, r.done = phase, total, 0
	r.start = r.now()
	r.last = r.start
}

// Add implements backup.Progress.
func (r *Reporter) Add(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done += n
	if now := r.now(); now.Sub(r.last) >= r.every {
		r.last = now
		r.report(now, false)
	}
}

// Done implements backup.Progress.
func (r *Reporter) Done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.report(r.now(), true)
	if r.out != nil {
		fmt.Fprintln(r.out)
		r.lastLine = 0
	}
}

func (r *Reporter) report(now time.Time, final bool) {
	elapsed := now.Sub(r.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(r.done) / elapsed
	}
	eta := ""
	if r.total > 0 && rate > 0 && r.done < r.total && !final {
		eta = (time.Duration(float64(r.total-r.done)/rate) * time.Second).Round(time.Second).String()
	}
	if r.out == nil {
		if r.log != nil {
			r.log.Info("progress", "phase", r.phase, "bytes", r.done, "total", r.total, "bytes_per_second", int64(rate), "eta", eta, "final", final)
		}
		return
	}
	line := fmt.Sprintf("%s: %s", r.phase, Bytes(r.done))
	if r.total > 0 {
		pct := float64(r.done) * 100 / float64(r.total)
		if pct > 100 {
			pct = 100
		}
		line += fmt.Sprintf(" of ~%s (%.0f%%)", Bytes(r.total), pct)
	}
	line += fmt.Sprintf(", %s/s", Bytes(int64(rate)))
	if eta != "" {
		line += ", ETA " + eta
	}
	if final {
		line += fmt.Sprintf(", done in %.1fs", elapsed)
	}
	pad := r.lastLine - len(line)
	if pad < 0 {
		pad = 0
	}
	fmt.Fprintf(r.out, "\r%s%*s", line, pad, "")
	r.lastLine = len(line)
}

// Bytes formats a byte count for people (1.5 GiB).
func Bytes(n int64) string { return backup.FormatBytes(n) }
