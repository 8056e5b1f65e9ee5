package auth

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// The suspicious-activity signals a RiskAssessment can carry.
const (
	// SignalNewDevice: the browser is not one the user signed in with before.
	SignalNewDevice = "new_device"
	// SignalNewCountry: the sign-in comes from a country none of the user's
	// recent successful sign-ins came from.
	SignalNewCountry = "new_country"
	// SignalImpossibleTravel: nobody gets from the last successful sign-in's
	// place to this one's that fast.
	SignalImpossibleTravel = "impossible_travel"
	// SignalFailureBurst: many failed attempts on the account in a short time.
	SignalFailureBurst = "failure_burst"
)

// Location is where an IP address is, as far as the GeoIP database knows.
type Location struct {
	// Country is the ISO 3166-1 alpha-2 code ("PT"); empty if unknown.
	Country string
	// City is the city's English name; empty if unknown (or a country-only
	// database).
	City string
	// Lat and Lon are the position in degrees, valid when HasPosition is set.
	Lat, Lon    float64
	HasPosition bool
}

// String is the location for people: "Lisbon, PT", "PT", or "".
func (l Location) String() string {
	switch {
	case l.City != "" && l.Country != "":
		return l.City + ", " + l.Country
	case l.City != "":
		return l.City
	}
	return l.Country
}

// GeoLocator tells where IP addresses are. Package geoip implements it with a
// MaxMind GeoLite2/GeoIP2 database file.
type GeoLocator interface {
	// Locate returns where ip is, and false if the database does not know (a
	// private or reserved address, an unknown range).
	Locate(ip netip.Addr) (Location, bool)
}

// LocationName adapts g to a function naming where an address is for people
// ("Lisbon, PT"; "" when unknown or g is nil), the form DevicesConfig.Location
// takes.
func LocationName(g GeoLocator) func(netip.Addr) string {
	return func(ip netip.Addr) string {
		if g == nil {
			return ""
		}
		loc, ok := g.Locate(ip.Unmap())
		if !ok {
			return ""
		}
		return loc.String()
	}
}

// SignIn is one attempt to sign in (or to pass the second factor) of a known
// user, as the suspicious-activity checks remember it.
type SignIn struct {
	ID     int64 // assigned by the store
	UserID string
	Time   time.Time
	IP     string
	// Location is where IP was at the time (zero if unknown).
	Location Location
	// DeviceID is the device record of the browser (see Devices), or empty.
	DeviceID string
	// Outcome is OutcomeSuccess or OutcomeFailure.
	Outcome string
}

// SignInFilter selects a user's sign-ins.
type SignInFilter struct {
	// Since: only sign-ins at or after it (zero: all).
	Since time.Time
	// Outcome: only those with it (empty: both).
	Outcome string
	// Limit: at most this many, newest first (0: 100).
	Limit int
}

// SignInHistory keeps sign-ins for the suspicious-activity checks. Package
// postgres implements it.
type SignInHistory interface {
	// RecordSignIn stores s, assigning s.ID. s.UserID must name a user
	// (ErrNotFound otherwise).
	RecordSignIn(ctx context.Context, s *SignIn) error
	// SignIns returns the user's sign-ins matching f, newest first; none is
	// not an error.
	SignIns(ctx context.Context, userID string, f SignInFilter) ([]*SignIn, error)
	// DeleteSignInsBefore removes every sign-in older than before (retention)
	// and returns how many it removed.
	DeleteSignInsBefore(ctx context.Context, before time.Time) (int, error)
}

// RiskConfig tunes the suspicious-activity checks.
type RiskConfig struct {
	// MaxSpeedKmh is the fastest a person travels between two sign-ins
	// (default 900, a passenger jet).
	MaxSpeedKmh float64
	// MinTravelKm: shorter distances never count as impossible travel (GeoIP
	// positions are rough; mobile networks route through far cities). Default 300.
	MinTravelKm float64
	// BurstFailures failed attempts within BurstWindow are a burst (default 10
	// in 10 minutes).
	BurstFailures int
	BurstWindow   time.Duration
	// Lookback is how far back successful sign-ins make a country familiar, and
	// how long the history is kept (default 90 days).
	Lookback time.Duration
	// HistoryLimit caps the successful sign-ins read per assessment (default 200).
	HistoryLimit int
}

// DefaultRiskConfig returns the defaults.
func DefaultRiskConfig() RiskConfig {
	return RiskConfig{MaxSpeedKmh: 900, MinTravelKm: 300, BurstFailures: 10, BurstWindow: 10 * time.Minute,
		Lookback: 90 * 24 * time.Hour, HistoryLimit: 200}
}

func (c RiskConfig) withDefaults() RiskConfig {
	d := DefaultRiskConfig()
	if c.MaxSpeedKmh <= 0 {
		c.MaxSpeedKmh = d.MaxSpeedKmh
	}
	if c.MinTravelKm <= 0 {
		c.MinTravelKm = d.MinTravelKm
	}
	if c.BurstFailures <= 0 {
		c.BurstFailures = d.BurstFailures
	}
	if c.BurstWindow <= 0 {
		c.BurstWindow = d.BurstWindow
	}
	if c.Lookback <= 0 {
		c.Lookback = d.Lookback
	}
	if c.HistoryLimit <= 0 {
		c.HistoryLimit = d.HistoryLimit
	}
	return c
}

// RiskAssessment is what the suspicious-activity checks found about a sign-in.
type RiskAssessment struct {
	// Signals are the signals raised (Signal* constants), in a fixed order.
	Signals []string
	// RequireMFA: raise the required assurance — ask for a second factor even
	// where the policy would not (a remembered device, an optional user who
	// has a factor).
	RequireMFA bool
	// Notify: tell the user by email (what happened, from where, and what to do
	// if it was not them). A new-device notice (Devices.NotifyNewDevice) is
	// that email when SignalNewDevice is the only signal.
	Notify bool
	// Reasons say why, for people ("a new country (FR)").
	Reasons []string
	// Location is where the sign-in comes from, when Located.
	Location Location
	Located  bool
}

// Has reports whether a raised signal.
func (a *RiskAssessment) Has(signal string) bool { return slices.Contains(a.Signals, signal) }

// MFARisk is a as the MFA policy (EvaluateMFA) reads it.
func (a *RiskAssessment) MFARisk() MFARisk {
	if a == nil {
		return MFARisk{}
	}
	return MFARisk{RequireMFA: a.RequireMFA, Reasons: a.Reasons}
}

// SignInAttempt is a sign-in to assess or record.
type SignInAttempt struct {
	User   *User
	Client Client
	// DeviceID is the browser's device record (Devices.Recognise), or empty.
	DeviceID string
	// KnownDevice: the user signed in from this browser before (the device
	// record is not new).
	KnownDevice bool
}

// Risk detects suspicious sign-ins: a new device, a new country, impossible
// travel and bursts of failures. The caller assesses a sign-in once the user is
// known (Assess), acts on the assessment (challenge, email), and records the
// outcome (Record).
type Risk struct {
	history SignInHistory
	geo     GeoLocator
	cfg     RiskConfig
	audit   func(context.Context, *AuditEvent) error
	now     func() time.Time
	log     *slog.Logger
}

// NewRisk returns a Risk over history. geo may be nil (no GeoIP database: no
// country or travel signals); zero fields of cfg take DefaultRiskConfig's values.
// audit is (*Service).Audit.
func NewRisk(history SignInHistory, geo GeoLocator, cfg RiskConfig, audit func(context.Context, *AuditEvent) error, now func() time.Time, logger *slog.Logger) *Risk {
	return &Risk{history: history, geo: geo, cfg: cfg.withDefaults(), audit: audit, now: now, log: logger}
}

// Locate returns where ip (an address in text form) is, if the GeoIP database
// knows.
func (r *Risk) Locate(ip string) (Location, bool) {
	if r.geo == nil {
		return Location{}, false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return Location{}, false
	}
	return r.geo.Locate(a.Unmap())
}

// Assess evaluates a sign-in of a.User against their history. When it raises
// signals it audits "signin.risk" with them (and the places involved, never
// secrets) and logs them. A failure to read the history is returned (wrapped):
// callers should then require the second factor, as for a risky sign-in.
func (r *Risk) Assess(ctx context.Context, a SignInAttempt) (*RiskAssessment, error) {
	now := r.now()
	successes, err := r.history.SignIns(ctx, a.User.ID, SignInFilter{Since: now.Add(-r.cfg.Lookback), Outcome: OutcomeSuccess, Limit: r.cfg.HistoryLimit})
	if err != nil {
		return nil, fmt.Errorf("assess sign-in: read history: %w", err)
	}
	failures, err := r.history.SignIns(ctx, a.User.ID, SignInFilter{Since: now.Add(-r.cfg.BurstWindow), Outcome: OutcomeFailure, Limit: r.cfg.BurstFailures})
	if err != nil {
		return nil, fmt.Errorf("assess sign-in: read failures: %w", err)
	}
	cur := SignIn{UserID: a.User.ID, Time: now, IP: a.Client.IP, DeviceID: a.DeviceID}
	loc, located := r.Locate(a.Client.IP)
	cur.Location = loc
	res, details := assessSignIn(r.cfg, cur, located, a.KnownDevice, successes, failures)
	if len(res.Signals) > 0 {
		r.log.Warn("suspicious sign-in", "user", a.User.ID, "ip", a.Client.IP, "signals", strings.Join(res.Signals, ","), "detail", details)
		ev := &AuditEvent{Action: "signin.risk", Outcome: OutcomeSuccess, ActorID: a.User.ID, IP: a.Client.IP,
			UserAgent: a.Client.UserAgent, Detail: strings.Join(res.Signals, ",") + ": " + details}
		if err := r.audit(ctx, ev); err != nil {
			return nil, fmt.Errorf("assess sign-in: %w", err)
		}
	}
	return &res, nil
}

// Record stores the outcome (OutcomeSuccess or OutcomeFailure) of a sign-in or
// second-factor attempt of a.User, located by GeoIP, for later assessments.
func (r *Risk) Record(ctx context.Context, a SignInAttempt, outcome string) error {
	if outcome != OutcomeSuccess && outcome != OutcomeFailure {
		return fmt.Errorf("record sign-in: outcome %q is neither success nor failure", outcome)
	}
	s := &SignIn{UserID: a.User.ID, Time: r.now(), IP: a.Client.IP, DeviceID: a.DeviceID, Outcome: outcome}
	s.Location, _ = r.Locate(a.Client.IP)
	if err := r.history.RecordSignIn(ctx, s); err != nil {
		return fmt.Errorf("record sign-in of %s: %w", a.User.ID, err)
	}
	return nil
}

// Prune removes sign-ins older than the lookback and returns how many.
func (r *Risk) Prune(ctx context.Context) (int, error) {
	n, err := r.history.DeleteSignInsBefore(ctx, r.now().Add(-r.cfg.Lookback))
	if err != nil {
		return 0, fmt.Errorf("prune sign-in history: %w", err)
	}
	return n, nil
}

// assessSignIn is the checks, pure: cur is the sign-in (located says whether
// cur.Location is known), successes the user's recent successful sign-ins and
// failures their failures within the burst window, both newest first. It returns
// the assessment and a secret-free detail for the audit log.
func assessSignIn(cfg RiskConfig, cur SignIn, located, knownDevice bool, successes, failures []*SignIn) (RiskAssessment, string) {
	res := RiskAssessment{Location: cur.Location, Located: located}
	var details []string
	raise := func(signal, reason, detail string) {
		res.Signals = append(res.Signals, signal)
		res.Reasons = append(res.Reasons, reason)
		details = append(details, detail)
	}
	// A first sign-in has nothing to be new against: no device or country
	// signal (every first sign-in would raise them).
	if len(successes) > 0 && !knownDevice {
		raise(SignalNewDevice, "a new device", "new device")
	}
	if len(successes) > 0 && located && cur.Location.Country != "" {
		var seen []string
		for _, s := range successes {
			if c := s.Location.Country; c != "" && !slices.Contains(seen, c) {
				seen = append(seen, c)
			}
		}
		if len(seen) > 0 && !slices.Contains(seen, cur.Location.Country) {
			raise(SignalNewCountry, "a new country ("+cur.Location.Country+")",
				fmt.Sprintf("country %s, before %s", cur.Location.Country, strings.Join(seen, " ")))
		}
	}
	if located && cur.Location.HasPosition {
		if last := lastPositioned(successes); last != nil {
			km := DistanceKm(last.Location, cur.Location)
			dt := cur.Time.Sub(last.Time)
			if km >= cfg.MinTravelKm && (dt <= 0 || km/dt.Hours() > cfg.MaxSpeedKmh) {
				raise(SignalImpossibleTravel, fmt.Sprintf("%.0f km from your last sign-in (%s) in %s", km, placeName(last.Location), roughDuration(dt)),
					fmt.Sprintf("%.0f km in %s (%s to %s)", km, dt.Round(time.Second), placeName(last.Location), placeName(cur.Location)))
			}
		}
	}
	if n := len(failures); n >= cfg.BurstFailures {
		raise(SignalFailureBurst, "many failed attempts on your account",
			fmt.Sprintf("%d failures in %s", n, cfg.BurstWindow))
	}
	res.RequireMFA = len(res.Signals) > 0
	res.Notify = len(res.Signals) > 0
	return res, strings.Join(details, "; ")
}

// lastPositioned returns the newest sign-in of ss with a position.
func lastPositioned(ss []*SignIn) *SignIn {
	for _, s := range ss {
		if s.Location.HasPosition {
			return s
		}
	}
	return nil
}

func placeName(l Location) string {
	if s := l.String(); s != "" {
		return s
	}
	return fmt.Sprintf("%.2f,%.2f", l.Lat, l.Lon)
}

func roughDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "under a minute"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	}
	return fmt.Sprintf("%.1f hours", d.Hours())
}

// earthRadiusKm is the mean radius of the Earth (IUGG).
const earthRadiusKm = 6371.0088

// DistanceKm is the great-circle distance between a and b's positions, in
// kilometres (the haversine formula).
func DistanceKm(a, b Location) float64 {
	rad := math.Pi / 180
	lat1, lat2 := a.Lat*rad, b.Lat*rad
	dLat, dLon := (b.Lat-a.Lat)*rad, (b.Lon-a.Lon)*rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1)*math.Cos(lat2)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthRadiusKm * math.Asin(math.Min(1, math.Sqrt(h)))
}
