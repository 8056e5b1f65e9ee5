package auth_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// staticGeo locates addresses from a table: the GeoIP database itself is tested
// in package geoip.
type staticGeo map[string]auth.Location

func (g staticGeo) Locate(ip netip.Addr) (auth.Location, bool) {
	loc, ok := g[ip.String()]
	return loc, ok
}

// TestRisk runs the suspicious-activity checks over the real sign-in history in
// PostgreSQL, with an injected clock.
func TestRisk(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, err := postgres.OpenPool(ctx, pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := postgres.MigrateUp(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewAuthStore(pool)
	u := &auth.User{Type: auth.TypeOwner, Email: "rita@example.com", Roles: []string{"owner"}}
	if err := store.CreateUser(ctx, u, nil); err != nil {
		t.Fatal(err)
	}
	geo := staticGeo{
		"192.0.2.10":    {Country: "PT", City: "Lisbon", Lat: 38.7223, Lon: -9.1393, HasPosition: true},
		"198.51.100.20": {Country: "FR", City: "Paris", Lat: 48.8566, Lon: 2.3522, HasPosition: true},
	}
	clock := newProtClock()
	r := auth.NewRisk(postgres.NewSignInStore(pool), geo, auth.RiskConfig{}, store.AppendAudit, clock.Now, protLog())
	lisbon := auth.SignInAttempt{User: u, Client: auth.Client{IP: "192.0.2.10", UserAgent: "Firefox"}, DeviceID: "laptop"}
	paris := auth.SignInAttempt{User: u, Client: auth.Client{IP: "::ffff:198.51.100.20", UserAgent: "Chrome"}, DeviceID: "phone"}
	assess := func(a auth.SignInAttempt, known bool, want ...string) *auth.RiskAssessment {
		t.Helper()
		a.KnownDevice = known
		got, err := r.Assess(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Signals, want) {
			t.Fatalf("signals %v, want %v", got.Signals, want)
		}
		return got
	}
	rec := func(a auth.SignInAttempt, outcome string) {
		t.Helper()
		if err := r.Record(ctx, a, outcome); err != nil {
			t.Fatal(err)
		}
	}

	// The first sign-in ever has nothing to compare with.
	first := assess(lisbon, false)
	if !first.Located || first.Location.City != "Lisbon" || first.RequireMFA || first.Notify {
		t.Fatalf("first sign-in: %+v", first)
	}
	rec(lisbon, auth.OutcomeSuccess)
	clock.Add(time.Hour)
	assess(lisbon, true)
	rec(lisbon, auth.OutcomeSuccess)

	// An hour later from Paris, on a new phone: 1450 km in an hour.
	clock.Add(time.Hour)
	got := assess(paris, false, auth.SignalNewDevice, auth.SignalNewCountry, auth.SignalImpossibleTravel)
	if !got.RequireMFA || !got.Notify || got.Location.Country != "FR" {
		t.Fatalf("Paris: %+v", got)
	}
	if mr := got.MFARisk(); !mr.RequireMFA || len(mr.Reasons) != 3 {
		t.Fatalf("MFARisk %+v", mr)
	}
	evs, err := store.AuditEvents(ctx, auth.AuditFilter{UserID: u.ID, Action: "signin.risk"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("%d signin.risk events, %v", len(evs), err)
	}
	if ev := evs[0]; ev.IP != "::ffff:198.51.100.20" || !strings.HasPrefix(ev.Detail, "new_device,new_country,impossible_travel: ") ||
		!strings.Contains(ev.Detail, "Lisbon, PT to Paris, FR") {
		t.Fatalf("audit event %+v", ev)
	}

	// Ten failures in ten minutes are a burst; they fade after the window.
	for range 10 {
		rec(paris, auth.OutcomeFailure)
		clock.Add(30 * time.Second)
	}
	assess(lisbon, true, auth.SignalFailureBurst)
	clock.Add(6 * time.Minute)
	assess(lisbon, true)

	// Once Paris signed in successfully (and enough time passed), it is familiar.
	rec(paris, auth.OutcomeSuccess)
	clock.Add(3 * time.Hour)
	assess(paris, true)
	assess(lisbon, true)

	// Travel is measured from the last success: back to Lisbon within the hour.
	rec(paris, auth.OutcomeSuccess)
	clock.Add(30 * time.Minute)
	assess(lisbon, true, auth.SignalImpossibleTravel)

	if err := r.Record(ctx, lisbon, "maybe"); err == nil {
		t.Fatal("Record with outcome maybe succeeded")
	}

	// Without GeoIP there are no country or travel signals.
	noGeo := auth.NewRisk(postgres.NewSignInStore(pool), nil, auth.RiskConfig{}, store.AppendAudit, clock.Now, protLog())
	if got, err := noGeo.Assess(ctx, paris); err != nil || len(got.Signals) != 1 || got.Signals[0] != auth.SignalNewDevice || got.Located {
		t.Fatalf("without GeoIP: %+v, %v", got, err)
	}

	// History older than the lookback is pruned, and then every device is
	// "first" again.
	clock.Add(91 * 24 * time.Hour)
	n, err := r.Prune(ctx)
	if err != nil || n != 14 {
		t.Fatalf("Prune = %d, %v; want all 14 sign-ins", n, err)
	}
	assess(paris, false)
}
