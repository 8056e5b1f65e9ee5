package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseVmHWM(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    int64
		wantErr bool
	}{
		{name: "proc status", status: "Name:\thestami\nVmPeak:\t  812345 kB\nVmHWM:\t   23456 kB\nVmRSS:\t   20000 kB\n", want: 23456},
		{name: "no VmHWM (a kernel thread)", status: "Name:\tkthreadd\nState:\tS (sleeping)\n", wantErr: true},
		{name: "unexpected unit", status: "VmHWM:\t 23456 MB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVmHWM([]byte(tt.status))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseVmHWM = %d, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseVmHWM = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestBareHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(bareHandler())
	t.Cleanup(srv.Close)
	tests := []struct {
		name   string
		cookie *http.Cookie
		want   int
	}{
		{name: "session cookie", cookie: &http.Cookie{Name: sessionCookie, Value: "tok"}, want: http.StatusOK},
		{name: "no cookie", want: http.StatusUnauthorized},
		{name: "empty session cookie", cookie: &http.Cookie{Name: sessionCookie, Value: ""}, want: http.StatusUnauthorized},
		{name: "another cookie", cookie: &http.Cookie{Name: "other", Value: "tok"}, want: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+mePath, nil)
			if tt.cookie != nil {
				req.Header.Set("Cookie", tt.cookie.String())
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, body)
			}
			if tt.want != http.StatusOK {
				return
			}
			var me bareMe
			if err := json.Unmarshal(body, &me); err != nil || me.User.Email != benchEmail || len(me.Permissions) == 0 {
				t.Fatalf("body %s: %+v, %v; want the benchmark's user and permissions as JSON", body, me, err)
			}
		})
	}
}

// loadServer serves h on loopback and returns the load spec for it.
func loadServer(t *testing.T, h http.Handler, cookie string) loadSpec {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return loadSpec{URL: "http://localhost:" + port + mePath, Addr: srv.Listener.Addr().String(), Cookie: cookie,
		Conns: 8, Warmup: 50 * time.Millisecond, Window: 300 * time.Millisecond}
}

func TestRunLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("every request succeeds on one connection per client", func(t *testing.T) {
		t.Parallel()
		var hosts = make(chan string, 1)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case hosts <- r.Host:
			default:
			}
			bareHandler().ServeHTTP(w, r)
		})
		s := loadServer(t, h, "tok")
		l := runLoad(ctx, s)
		if err := l.err(); err != nil {
			t.Fatalf("err() = %v, want none", err)
		}
		if l.Requests == 0 || len(l.Latencies) != l.Requests {
			t.Fatalf("%d requests, %d latencies; want as many latencies as requests, and some", l.Requests, len(l.Latencies))
		}
		if l.Dials > int64(s.Conns) {
			t.Errorf("%d connections opened for %d clients: keep-alive did not hold", l.Dials, s.Conns)
		}
		if l.BodyBytes == 0 {
			t.Error("no body size recorded")
		}
		if got := <-hosts; !strings.HasPrefix(got, "localhost:") {
			t.Errorf("the server saw Host %q, want localhost:PORT (the public URL's host)", got)
		}
		if ps := l.perSecond(); ps != float64(l.Requests)/s.Window.Seconds() {
			t.Errorf("perSecond() = %v, want requests / window", ps)
		}
	})

	t.Run("a request without the session is a failure", func(t *testing.T) {
		t.Parallel()
		l := runLoad(ctx, loadServer(t, bareHandler(), ""))
		if l.Errors == 0 || l.err() == nil {
			t.Fatalf("errors %d, err() %v; want 401s counted as failures", l.Errors, l.err())
		}
		if !strings.Contains(l.err().Error(), "401") {
			t.Errorf("err() = %v, want it to name the status", l.err())
		}
	})

	t.Run("a redirect is a failure, not followed", func(t *testing.T) {
		t.Parallel()
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == mePath {
				http.Redirect(w, r, "/readyz", http.StatusFound)
				return
			}
			bareHandler().ServeHTTP(w, r)
		})
		l := runLoad(ctx, loadServer(t, h, "tok"))
		if l.Errors == 0 || l.Requests != 0 {
			t.Fatalf("errors %d, requests %d; want every redirected request a failure", l.Errors, l.Requests)
		}
	})

	t.Run("a dead server fails without spinning", func(t *testing.T) {
		t.Parallel()
		s := loadServer(t, bareHandler(), "tok")
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.Addr = ln.Addr().String()
		ln.Close()
		l := runLoad(ctx, s)
		if l.err() == nil {
			t.Fatal("err() = nil, want connection errors")
		}
		if l.Errors > s.Conns*maxWorkerErrors {
			t.Errorf("%d errors, want at most %d: clients stop after %d", l.Errors, s.Conns*maxWorkerErrors, maxWorkerErrors)
		}
	})
}

func TestAddLoadKeepsTheBestThroughputRun(t *testing.T) {
	lat := func(n int, d time.Duration) []time.Duration {
		ds := make([]time.Duration, n)
		for i := range ds {
			ds[i] = d
		}
		return ds
	}
	r := &result{}
	r.addLoad(loadResult{Window: time.Second, Requests: 100, Latencies: lat(100, 4*time.Millisecond), BodyBytes: 150})
	r.addLoad(loadResult{Window: time.Second, Requests: 300, Latencies: lat(300, 2*time.Millisecond), BodyBytes: 160})
	r.addLoad(loadResult{Window: time.Second, Requests: 200, Latencies: lat(200, 3*time.Millisecond), BodyBytes: 170})
	if r.PerSecond != 300 || r.P50Millis != 2 || r.P99Millis != 2 || r.Requests != 300 || r.SizeBytes != 160 || r.Seconds != 0.002 {
		t.Fatalf("row %+v; want the second run's numbers (300 req/s, 2 ms)", r)
	}
	if len(r.RunsSeconds) != 3 || len(r.RunsPerSecond) != 3 || r.RunsPerSecond[2] != 200 {
		t.Fatalf("runs %v / %v; want all three runs listed", r.RunsSeconds, r.RunsPerSecond)
	}
	if !r.measured() {
		t.Fatal("measured() = false after three runs")
	}
}

func TestSessionTarget(t *testing.T) {
	const name = "session validation throughput ≥ 0.5× bare net/http"
	row := func(rep *report, hestami bool, perSecond float64, err error) {
		tool := "bare net/http handler"
		if hestami {
			tool = "hestami auth serve GET /api/v1/me"
		}
		r := rep.row(opSession, tool, hestami)
		if err != nil {
			r.fail(err)
			return
		}
		r.addLoad(loadResult{Window: time.Second, Requests: int(perSecond), Latencies: []time.Duration{time.Millisecond}})
		r.PerSecond = perSecond
	}
	tests := []struct {
		name        string
		hestami     float64
		bare        float64
		hestamiErr  error
		notRun      bool
		wantStatus  string
		wantInValue string
	}{
		{name: "half the bare throughput", hestami: 5000, bare: 10000, wantStatus: "MET", wantInValue: "0.50× (5000 vs 10000 req/s"},
		{name: "below half", hestami: 4000, bare: 10000, wantStatus: "MISSED", wantInValue: "0.40×"},
		{name: "hestami failed", hestamiErr: errNotImplemented, bare: 10000, wantStatus: "NOT MEASURED", wantInValue: "hestami failed"},
		{name: "step not run", notRun: true, wantStatus: "NOT MEASURED", wantInValue: "step not run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := newReport(options{Runs: 1})
			if !tt.notRun {
				row(rep, true, tt.hestami, tt.hestamiErr)
				row(rep, false, tt.bare, nil)
			}
			rep.evaluate()
			for _, tg := range rep.Targets {
				if tg.Name != name {
					continue
				}
				if tg.Status != tt.wantStatus || !strings.Contains(tg.Value, tt.wantInValue) {
					t.Fatalf("%s: %s, want %s with %q", tg.Status, tg.Value, tt.wantStatus, tt.wantInValue)
				}
				return
			}
			t.Fatalf("no target %q in %+v", name, rep.Targets)
		})
	}
}
