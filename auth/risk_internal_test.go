package auth

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	lisbon   = Location{Country: "PT", City: "Lisbon", Lat: 38.7223, Lon: -9.1393, HasPosition: true}
	porto    = Location{Country: "PT", City: "Porto", Lat: 41.1579, Lon: -8.6291, HasPosition: true}
	sintra   = Location{Country: "PT", City: "Sintra", Lat: 38.8029, Lon: -9.3817, HasPosition: true}
	paris    = Location{Country: "FR", City: "Paris", Lat: 48.8566, Lon: 2.3522, HasPosition: true}
	badajoz  = Location{Country: "ES", City: "Badajoz", Lat: 38.8794, Lon: -6.9707, HasPosition: true}
	sydney   = Location{Country: "AU", City: "Sydney", Lat: -33.8688, Lon: 151.2093, HasPosition: true}
	franceCC = Location{Country: "FR"} // a country database: no position
)

func TestDistanceKm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		a, b Location
		want float64 // km, within 0.5%
	}{
		{"Lisbon to Paris", lisbon, paris, 1453},
		{"Lisbon to Porto", lisbon, porto, 274},
		{"Paris to Sydney", paris, sydney, 16960},
		{"same place", lisbon, lisbon, 0},
		{"antipodes", Location{Lat: 0, Lon: 0}, Location{Lat: 0, Lon: 180}, math.Pi * earthRadiusKm},
		{"across the date line", Location{Lat: 0, Lon: 179.5}, Location{Lat: 0, Lon: -179.5}, 111.2},
	} {
		got := DistanceKm(tc.a, tc.b)
		if math.Abs(got-tc.want) > 0.005*tc.want+0.001 {
			t.Errorf("%s: %.1f km, want %.1f", tc.name, got, tc.want)
		}
		if back := DistanceKm(tc.b, tc.a); math.Abs(back-got) > 1e-6 {
			t.Errorf("%s: not symmetric: %.3f and %.3f", tc.name, got, back)
		}
	}
}

// travelTime is how long going from a to b takes at kmh.
func travelTime(a, b Location, kmh float64) time.Duration {
	return time.Duration(DistanceKm(a, b) / kmh * float64(time.Hour))
}

func TestAssessSignIn(t *testing.T) {
	t.Parallel()
	now := time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC)
	cfg := DefaultRiskConfig()
	ok := func(loc Location, ago time.Duration) *SignIn {
		return &SignIn{Time: now.Add(-ago), Location: loc, Outcome: OutcomeSuccess}
	}
	fails := func(n int) []*SignIn {
		var out []*SignIn
		for i := range n {
			out = append(out, &SignIn{Time: now.Add(-time.Duration(i) * time.Second), Outcome: OutcomeFailure})
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		loc         Location
		located     bool
		known       bool
		successes   []*SignIn // newest first
		failures    []*SignIn
		want        []string
		wantReasons []string
	}{
		{name: "first sign-in ever raises nothing", loc: paris, located: true},
		{name: "first sign-in with failures before it", loc: paris, located: true, failures: fails(10), want: []string{SignalFailureBurst}},
		{name: "known device, same city", loc: lisbon, located: true, known: true, successes: []*SignIn{ok(lisbon, time.Hour)}},
		{name: "new device", loc: lisbon, located: true, successes: []*SignIn{ok(lisbon, time.Hour)}, want: []string{SignalNewDevice},
			wantReasons: []string{"a new device"}},
		{name: "new country", loc: paris, located: true, known: true, successes: []*SignIn{ok(lisbon, 48*time.Hour), ok(porto, 72*time.Hour)},
			want: []string{SignalNewCountry}, wantReasons: []string{"a new country (FR)"}},
		{name: "country seen before, further back", loc: paris, located: true, known: true, successes: []*SignIn{ok(lisbon, 48*time.Hour), ok(paris, 30*24*time.Hour)}},
		{name: "history without countries: nothing to compare", loc: paris, located: true, known: true, successes: []*SignIn{ok(Location{}, time.Hour)}},
		{name: "not located: no country or travel signals", loc: Location{}, located: false, known: true, successes: []*SignIn{ok(sydney, time.Minute)}},
		{name: "country database: new country, no travel check", loc: franceCC, located: true, known: true, successes: []*SignIn{ok(lisbon, time.Minute)},
			want: []string{SignalNewCountry}},
		{name: "impossible travel: Lisbon to Paris in 30 minutes", loc: paris, located: true, known: true,
			successes: []*SignIn{ok(lisbon, 30*time.Minute), ok(paris, 10*24*time.Hour)}, want: []string{SignalImpossibleTravel},
			wantReasons: []string{"1453 km from your last sign-in (Lisbon, PT) in 30 minutes"}},
		{name: "possible travel: Lisbon to Paris in 2 hours", loc: paris, located: true, known: true,
			successes: []*SignIn{ok(lisbon, 2*time.Hour), ok(paris, 10*24*time.Hour)}},
		{name: "just over 900 km/h", loc: paris, located: true, known: true,
			successes: []*SignIn{ok(lisbon, travelTime(lisbon, paris, 901)), ok(paris, 10*24*time.Hour)}, want: []string{SignalImpossibleTravel}},
		{name: "just under 900 km/h", loc: paris, located: true, known: true,
			successes: []*SignIn{ok(lisbon, travelTime(lisbon, paris, 899)), ok(paris, 10*24*time.Hour)}},
		{name: "a short hop is never impossible travel", loc: sintra, located: true, known: true, successes: []*SignIn{ok(lisbon, 0)}},
		{name: "Lisbon to Porto at once is under the minimum distance", loc: porto, located: true, known: true, successes: []*SignIn{ok(lisbon, time.Second)}},
		{name: "Lisbon to Badajoz (190 km) at once: a new country, but under the minimum distance", loc: badajoz, located: true, known: true, successes: []*SignIn{ok(lisbon, time.Minute)},
			want: []string{SignalNewCountry}},
		{name: "travel is measured from the last positioned sign-in", loc: sydney, located: true, known: true,
			successes: []*SignIn{ok(Location{Country: "AU"}, time.Minute), ok(lisbon, 3*time.Hour)},
			want:      []string{SignalImpossibleTravel}},
		{name: "same instant, far away", loc: sydney, located: true, known: true, successes: []*SignIn{ok(Location{Country: "AU", Lat: paris.Lat, Lon: paris.Lon, HasPosition: true}, 0)},
			want: []string{SignalImpossibleTravel}},
		{name: "nine failures are not a burst", loc: lisbon, located: true, known: true, successes: []*SignIn{ok(lisbon, time.Hour)}, failures: fails(9)},
		{name: "ten failures are a burst", loc: lisbon, located: true, known: true, successes: []*SignIn{ok(lisbon, time.Hour)}, failures: fails(10),
			want: []string{SignalFailureBurst}, wantReasons: []string{"many failed attempts on your account"}},
		{name: "everything at once", loc: sydney, located: true, successes: []*SignIn{ok(lisbon, time.Hour)}, failures: fails(12),
			want: []string{SignalNewDevice, SignalNewCountry, SignalImpossibleTravel, SignalFailureBurst}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := SignIn{Time: now, Location: tc.loc}
			got, detail := assessSignIn(cfg, cur, tc.located, tc.known, tc.successes, tc.failures)
			if !slices.Equal(got.Signals, tc.want) {
				t.Fatalf("signals %v, want %v (detail %q)", got.Signals, tc.want, detail)
			}
			raised := len(tc.want) > 0
			if got.RequireMFA != raised || got.Notify != raised {
				t.Errorf("RequireMFA %v, Notify %v; want both %v", got.RequireMFA, got.Notify, raised)
			}
			if len(got.Reasons) != len(got.Signals) {
				t.Errorf("reasons %q for signals %v", got.Reasons, got.Signals)
			}
			if tc.wantReasons != nil && !slices.Equal(got.Reasons, tc.wantReasons) {
				t.Errorf("reasons %q, want %q", got.Reasons, tc.wantReasons)
			}
			if raised == (detail == "") {
				t.Errorf("detail %q for signals %v", detail, got.Signals)
			}
			if got.Located != tc.located || got.Location != tc.loc {
				t.Errorf("location %+v located %v, want %+v %v", got.Location, got.Located, tc.loc, tc.located)
			}
			if mr := got.MFARisk(); mr.RequireMFA != raised || !slices.Equal(mr.Reasons, got.Reasons) {
				t.Errorf("MFARisk %+v", mr)
			}
		})
	}
}

func TestAssessSignInConfig(t *testing.T) {
	t.Parallel()
	now := time.Date(2031, 6, 1, 12, 0, 0, 0, time.UTC)
	cfg := RiskConfig{MaxSpeedKmh: 100, MinTravelKm: 50, BurstFailures: 3}.withDefaults()
	if cfg.BurstWindow != 10*time.Minute || cfg.Lookback != 90*24*time.Hour || cfg.HistoryLimit != 200 {
		t.Fatalf("defaults not filled in: %+v", cfg)
	}
	last := []*SignIn{{Time: now.Add(-time.Hour), Location: lisbon, Outcome: OutcomeSuccess}}
	got, detail := assessSignIn(cfg, SignIn{Time: now, Location: porto}, true, true, last, make([]*SignIn, 3))
	if want := []string{SignalImpossibleTravel, SignalFailureBurst}; !slices.Equal(got.Signals, want) {
		t.Fatalf("signals %v, want %v", got.Signals, want)
	}
	if !strings.Contains(detail, "274 km in 1h0m0s (Lisbon, PT to Porto, PT)") || !strings.Contains(detail, "3 failures in 10m0s") {
		t.Errorf("detail %q", detail)
	}
}

func TestLocationString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		loc  Location
		want string
	}{
		{lisbon, "Lisbon, PT"}, {franceCC, "FR"}, {Location{City: "Atlantis"}, "Atlantis"}, {Location{}, ""},
	} {
		if got := tc.loc.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.loc, got, tc.want)
		}
	}
}
