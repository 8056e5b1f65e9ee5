package main

import (
	"fmt"
	"net/http"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/authclient"
	"github.com/hestami/hestami/daemon"
)

// The monitoring hooks of `hestami backup daemon`: the status page, for signed-in
// staff only, and the Prometheus /metrics handler, open like /healthz and /readyz.

// mountMonitoring mounts the status page and /metrics on the daemon's listener,
// beside /healthz and /readyz (which daemon.Daemon.Mount has added). What they show
// is available from: d.Status() (every job: next due time, last run, outcome, error),
// d.Ready(), d.Alerts().Active() (the alerts firing now), and a backup.OverviewReader
// over the repository (backups, WAL, drills, storage use).
//
// The status page shows only to staff signed in through login with backup:read
// (browsers are sent to sign in); without login (daemon.auth not configured) it
// is off. It has no actions of its own: what changes anything is the API, behind
// the same sign-in and its own checks. /metrics stays open, for Prometheus: keep
// the daemon's listener on an internal network (docs/daemon.md).
func (p *Program) mountMonitoring(mux *http.ServeMux, d *daemon.Daemon, login *authclient.Login) {
	h, err := p.daemonMonitoring(d.Status)
	if err != nil {
		p.logger.Error("status page and /metrics unavailable; the daemon runs without them", "err", err)
		return
	}
	mux.Handle("GET /metrics", h)
	if login == nil {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "The status page shows only to signed-in staff, and this daemon has no sign-in: daemon.auth.url is not configured (see docs/daemon.md).\n"+
				"/healthz, /readyz and /metrics answer.")
		})
		return
	}
	staff := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pr := authclient.PrincipalFrom(r.Context()); pr == nil || pr.Type != string(auth.TypeStaff) {
			login.Refuse(w, r, &authclient.Error{Status: http.StatusForbidden, Code: "forbidden", Message: "The backup status page is for staff only."})
			return
		}
		h.ServeHTTP(w, r)
	})
	mux.Handle("/", login.Require(string(auth.PermBackupRead))(staff))
}

// daemonJobObserver returns the function the daemon calls after every job with its
// status (for job counters and durations in /metrics); nil: none.
func (p *Program) daemonJobObserver() func(daemon.JobStatus) { return nil }
