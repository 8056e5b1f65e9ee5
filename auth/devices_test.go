package auth_test

import (
	"bytes"
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/smtp"
	"github.com/hestami/hestami/smtp/smtptest"
)

// drClock is the injected clock of the Devices and Recovery tests.
type drClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *drClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *drClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// drFixture is a migrated PostgreSQL database, the auth service (for the audit
// log), a real SMTP server and a mailer sending to it.
type drFixture struct {
	pool   *pgxpool.Pool
	users  *postgres.AuthStore
	svc    *auth.Service
	clock  *drClock
	smtp   *smtptest.Server
	mailer *smtp.Mailer
	logs   *bytes.Buffer
	logMu  sync.Mutex
	n      atomic.Int64
}

func newDRFixture(t *testing.T) *drFixture {
	t.Helper()
	pool, err := postgres.OpenPool(t.Context(), pgtest.Database(t)+"&pool_max_conns=24")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	fx := &drFixture{pool: pool, users: postgres.NewAuthStore(pool), logs: &bytes.Buffer{},
		clock: &drClock{t: time.Date(2031, 3, 4, 10, 0, 0, 0, time.UTC)}}
	fx.svc = auth.NewService(fx.users, nil, auth.DefaultConfig(), fx.clock.now, fx.logger())
	fx.smtp = smtptest.Start(t, smtptest.Options{Users: map[string]string{"hestami": "mail-password"}})
	fx.mailer, err = smtp.NewMailer(smtp.Config{
		Host: fx.smtp.Host, Port: fx.smtp.Port, Security: smtp.StartTLS, Username: "hestami", Password: "mail-password",
		From: "Hestami <no-reply@hestami.example>", RootCAs: fx.smtp.RootCAs(), Timeout: 10 * time.Second,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *drFixture) Write(p []byte) (int, error) {
	fx.logMu.Lock()
	defer fx.logMu.Unlock()
	return fx.logs.Write(p)
}

func (fx *drFixture) logged() string {
	fx.logMu.Lock()
	defer fx.logMu.Unlock()
	return fx.logs.String()
}

func (fx *drFixture) logger() *slog.Logger { return slog.New(slog.NewTextHandler(fx, nil)) }

func (fx *drFixture) user(t *testing.T, typ auth.UserType, roles ...string) *auth.User {
	t.Helper()
	n := fx.n.Add(1)
	u := &auth.User{Type: typ, Email: fmt.Sprintf("person%d@example.com", n), EmailVerified: true, Name: fmt.Sprintf("Person %d", n), Roles: roles}
	if err := fx.users.CreateUser(t.Context(), u, nil); err != nil {
		t.Fatal(err)
	}
	return u
}

// audit returns the user's audit events with action (all: ""), oldest first.
func (fx *drFixture) audit(t *testing.T, userID, action string) []*auth.AuditEvent {
	t.Helper()
	evs, err := fx.users.AuditEvents(t.Context(), auth.AuditFilter{UserID: userID, Action: action, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// In the order they were written (the tests move the clock back at times).
	slices.SortFunc(evs, func(a, b *auth.AuditEvent) int { return cmp.Compare(a.ID, b.ID) })
	return evs
}

// wantAudit checks that the user's last event with action has outcome and a
// detail containing detail.
func (fx *drFixture) wantAudit(t *testing.T, userID, action, outcome, detail string) {
	t.Helper()
	evs := fx.audit(t, userID, action)
	if len(evs) == 0 {
		t.Errorf("no %s event in the audit log", action)
		return
	}
	e := evs[len(evs)-1]
	if e.Outcome != outcome || !strings.Contains(e.Detail, detail) {
		t.Errorf("last %s event: %s %q; want %s with %q", action, e.Outcome, e.Detail, outcome, detail)
	}
}

var drTrustKey = []byte("0123456789abcdef0123456789abcdef-device-trust")

func (fx *drFixture) devices(t *testing.T, cfg auth.DevicesConfig) *auth.Devices {
	t.Helper()
	if cfg.TrustKeys == nil {
		cfg.TrustKeys = [][]byte{drTrustKey}
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "https://auth.hestami.example"
	}
	d, err := auth.NewDevices(cfg, postgres.NewDeviceStore(fx.pool), fx.mailer, fx.svc.Audit, fx.clock.now, fx.logger())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const (
	firefoxWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
	safariIPhone   = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)

// lisbon places 203.0.113.0/24 in Lisbon and nothing else anywhere.
func lisbon(ip netip.Addr) string {
	if netip.MustParsePrefix("203.0.113.0/24").Contains(ip) {
		return "Lisbon, PT"
	}
	return ""
}

func TestDevicesRecognise(t *testing.T) {
	t.Parallel()
	fx := newDRFixture(t)
	devs := fx.devices(t, auth.DevicesConfig{Location: lisbon})
	u, other := fx.user(t, auth.TypeOwner), fx.user(t, auth.TypeOwner)
	browser := auth.NewToken()
	c := auth.Client{IP: "203.0.113.9", UserAgent: firefoxWindows}

	d, isNew, err := devs.Recognise(t.Context(), u, browser, c)
	if err != nil || !isNew {
		t.Fatalf("first sign-in from a browser: Recognise = %v, isNew %v; want a new device", err, isNew)
	}
	if d.Name != "Firefox on Windows" || d.Browser != "Firefox" || d.OS != "Windows" || d.LastIP != c.IP ||
		d.LastLocation != "Lisbon, PT" || !d.FirstSeen.Equal(fx.clock.now()) || d.TokenHash != auth.HashToken(browser) {
		t.Errorf("new device = %+v", *d)
	}
	fx.wantAudit(t, u.ID, "device.new", auth.OutcomeSuccess, "Firefox on Windows")

	fx.clock.add(2 * time.Hour)
	again, isNew, err := devs.Recognise(t.Context(), u, browser, auth.Client{IP: "198.51.100.4", UserAgent: firefoxWindows})
	if err != nil || isNew || again.ID != d.ID {
		t.Fatalf("second sign-in from the browser: Recognise = %v, isNew %v, id %s; want device %s again", err, isNew, again.ID, d.ID)
	}
	if !again.LastSeen.Equal(fx.clock.now()) || !again.FirstSeen.Equal(d.FirstSeen) || again.LastIP != "198.51.100.4" || again.LastLocation != "" {
		t.Errorf("device seen again = %+v; want last seen now from the new IP (no location known), first seen kept", *again)
	}
	if n := len(fx.audit(t, u.ID, "device.new")); n != 1 {
		t.Errorf("%d device.new events, want 1 (the second sight is not new)", n)
	}

	// The same browser is a new device for another account.
	if _, isNew, err := devs.Recognise(t.Context(), other, browser, c); err != nil || !isNew {
		t.Errorf("another account in the same browser: Recognise = %v, isNew %v; want new", err, isNew)
	}
	// An IPv4-mapped IPv6 address is located as IPv4.
	if d, _, err := devs.Recognise(t.Context(), u, auth.NewToken(), auth.Client{IP: "::ffff:203.0.113.7", UserAgent: safariIPhone}); err != nil || d.LastLocation != "Lisbon, PT" || d.Name != "Safari on iOS" {
		t.Errorf("Recognise from ::ffff:203.0.113.7 = %+v, %v; want Safari on iOS in Lisbon", d, err)
	}
	for _, bad := range []string{"", "short"} {
		if _, _, err := devs.Recognise(t.Context(), u, bad, c); err == nil {
			t.Errorf("Recognise with device token %q succeeded; want an error (the caller makes one with NewToken)", bad)
		}
	}
	list, err := devs.List(t.Context(), u)
	if err != nil || len(list) != 2 || list[0].Name != "Safari on iOS" {
		t.Errorf("List = %v, %v; want the two devices, latest first", list, err)
	}
}

func TestDevicesRemember(t *testing.T) {
	t.Parallel()
	fx := newDRFixture(t)
	devs := fx.devices(t, auth.DevicesConfig{RememberDays: 30, MaxDays: 60})
	u := fx.user(t, auth.TypeStaff)
	c := auth.Client{IP: "203.0.113.9", UserAgent: firefoxWindows}
	browser := auth.NewToken()
	d, _, err := devs.Recognise(t.Context(), u, browser, c)
	if err != nil {
		t.Fatal(err)
	}
	if devs.Trusted(t.Context(), u, browser, "", c) {
		t.Fatal("a device nobody remembered is trusted")
	}
	trust, until, err := devs.Remember(t.Context(), u, d.ID, 0, c)
	if err != nil {
		t.Fatal(err)
	}
	if want := fx.clock.now().Add(30 * 24 * time.Hour); !until.Equal(want) {
		t.Errorf("Remember(0 days) until %v, want the default 30 days: %v", until, want)
	}
	fx.wantAudit(t, u.ID, "device.remember", auth.OutcomeSuccess, "30 days")
	if strings.Contains(fx.logged(), trust) {
		t.Error("the trust token is in the log")
	}
	for _, e := range fx.audit(t, u.ID, "") {
		if strings.Contains(e.Detail, trust) || strings.Contains(e.Detail, browser) {
			t.Errorf("audit event %s holds a token: %q", e.Action, e.Detail)
		}
	}
	var stored string
	if err := fx.pool.QueryRow(t.Context(), `SELECT trust_hash || token_hash FROM devices WHERE id = $1`, d.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, trust) || strings.Contains(stored, browser) {
		t.Error("the database holds a token itself, not its hash")
	}

	for _, step := range []struct {
		after time.Duration
		want  bool
	}{
		{0, true},
		{29 * 24 * time.Hour, true},
		{24*time.Hour - time.Second, true}, // the last second of day 30
		{time.Second, false},               // exactly 30 days
	} {
		fx.clock.add(step.after)
		if got := devs.Trusted(t.Context(), u, browser, trust, c); got != step.want {
			t.Errorf("at %v: Trusted = %v, want %v", fx.clock.now(), got, step.want)
		}
	}
	fx.wantAudit(t, u.ID, "device.trust", auth.OutcomeFailure, "expired")

	// Remembering again gives a new token; the old one stops working. More
	// days than the maximum are cut to it.
	old := trust
	trust, until, err = devs.Remember(t.Context(), u, d.ID, 365, c)
	if err != nil {
		t.Fatal(err)
	}
	if want := fx.clock.now().Add(60 * 24 * time.Hour); !until.Equal(want) {
		t.Errorf("Remember(365 days) with a 60-day maximum: until %v, want %v", until, want)
	}
	if !devs.Trusted(t.Context(), u, browser, trust, c) {
		t.Error("the device is not trusted after remembering it again")
	}
	fx.clock.add(-24 * time.Hour) // the old token would be in date, but is replaced
	if devs.Trusted(t.Context(), u, browser, old, c) {
		t.Error("a replaced trust token still works")
	}
	fx.wantAudit(t, u.ID, "device.trust", auth.OutcomeFailure, "replaced")
	if _, _, err := devs.Remember(t.Context(), u, "00000000-0000-4000-8000-000000000000", 1, c); auth.ErrorCode(err) != auth.CodeNotFound {
		t.Errorf("Remember(unknown device) = %v, want CodeNotFound", err)
	}
	if devs.RememberDays() != 30 {
		t.Errorf("RememberDays = %d, want 30", devs.RememberDays())
	}
}

func TestDevicesTrustRefused(t *testing.T) {
	t.Parallel()
	fx := newDRFixture(t)
	devs := fx.devices(t, auth.DevicesConfig{})
	ann, bo := fx.user(t, auth.TypeOwner), fx.user(t, auth.TypeOwner)
	c := auth.Client{IP: "203.0.113.9", UserAgent: firefoxWindows}
	annBrowser, annPhone, boBrowser := auth.NewToken(), auth.NewToken(), auth.NewToken()
	annDev, _, _ := devs.Recognise(t.Context(), ann, annBrowser, c)
	phoneDev, _, _ := devs.Recognise(t.Context(), ann, annPhone, c)
	boDev, _, _ := devs.Recognise(t.Context(), bo, boBrowser, c)
	annTrust, _, err := devs.Remember(t.Context(), ann, annDev.ID, 30, c)
	if err != nil {
		t.Fatal(err)
	}
	boTrust, _, err := devs.Remember(t.Context(), bo, boDev.ID, 30, c)
	if err != nil {
		t.Fatal(err)
	}
	other := fx.devices(t, auth.DevicesConfig{TrustKeys: [][]byte{[]byte("another service's key, 32 bytes or more")}})
	forged, _, err := other.Remember(t.Context(), ann, phoneDev.ID, 30, c) // signed with another key
	if err != nil {
		t.Fatal(err)
	}
	// Change one character in the middle of the signature.
	i := len(annTrust) - 10
	tampered := annTrust[:i] + map[bool]string{true: "A", false: "B"}[annTrust[i] != 'A'] + annTrust[i+1:]

	for _, tc := range []struct {
		name          string
		u             *auth.User
		device, trust string
		why           string
	}{
		{"another key", ann, annPhone, forged, "not signed"},
		{"tampered signature", ann, annBrowser, tampered, "not signed"},
		{"garbage", ann, annBrowser, "t1.garbage", "not signed"},
		{"another user's token", ann, annBrowser, boTrust, "another user"},
		{"copied to another browser of the user", ann, annPhone, annTrust, "another device"},
		{"another user's browser with the user's token", bo, boBrowser, annTrust, "another user"},
		{"unknown browser", ann, auth.NewToken(), annTrust, "unknown or revoked device"},
	} {
		if devs.Trusted(t.Context(), tc.u, tc.device, tc.trust, c) {
			t.Errorf("%s: Trusted = true, want false", tc.name)
			continue
		}
		fx.wantAudit(t, tc.u.ID, "device.trust", auth.OutcomeFailure, tc.why)
	}
	if !devs.Trusted(t.Context(), ann, annBrowser, annTrust, c) {
		t.Fatal("the genuine trust token is refused")
	}

	// A database row copied from the trusted device to the phone (trust hash
	// and expiry) does not make the phone trusted: the token names its device.
	if _, err := fx.pool.Exec(t.Context(), `UPDATE devices SET trust_hash = s.trust_hash, trusted_until = s.trusted_until
		FROM devices s WHERE s.id = $1 AND devices.id = $2`, annDev.ID, phoneDev.ID); err != nil {
		t.Fatal(err)
	}
	if devs.Trusted(t.Context(), ann, annPhone, annTrust, c) {
		t.Error("a trust row copied to another device made it trusted")
	}
	// Nor does pushing the expiry far out in the database outlive the signed one.
	if _, err := fx.pool.Exec(t.Context(), `UPDATE devices SET trusted_until = now() + interval '100 years' WHERE id = $1`, annDev.ID); err != nil {
		t.Fatal(err)
	}
	fx.clock.add(31 * 24 * time.Hour)
	if devs.Trusted(t.Context(), ann, annBrowser, annTrust, c) {
		t.Error("a trust token works past its signed expiry because the database says so")
	}

	// Rotation: a new key first, the old one still verifies.
	fx.clock.add(-31 * 24 * time.Hour)
	rotated := fx.devices(t, auth.DevicesConfig{TrustKeys: [][]byte{[]byte("the new trust key, 32 bytes or more!"), drTrustKey}})
	if !rotated.Trusted(t.Context(), ann, annBrowser, annTrust, c) {
		t.Error("after a key rotation, a token signed with the old key (still listed) is refused")
	}
	dropped := fx.devices(t, auth.DevicesConfig{TrustKeys: [][]byte{[]byte("the new trust key, 32 bytes or more!")}})
	if dropped.Trusted(t.Context(), ann, annBrowser, annTrust, c) {
		t.Error("a token signed with a dropped key is still accepted")
	}
}

func TestDevicesRevoke(t *testing.T) {
	t.Parallel()
	fx := newDRFixture(t)
	devs := fx.devices(t, auth.DevicesConfig{})
	u, other := fx.user(t, auth.TypeOwner), fx.user(t, auth.TypeOwner)
	c := auth.Client{IP: "203.0.113.9", UserAgent: firefoxWindows}
	browsers := []string{auth.NewToken(), auth.NewToken(), auth.NewToken()}
	var trusts []string
	var ids []string
	for _, b := range browsers {
		d, _, err := devs.Recognise(t.Context(), u, b, c)
		if err != nil {
			t.Fatal(err)
		}
		tr, _, err := devs.Remember(t.Context(), u, d.ID, 0, c)
		if err != nil {
			t.Fatal(err)
		}
		ids, trusts = append(ids, d.ID), append(trusts, tr)
	}
	if err := devs.Revoke(t.Context(), other, ids[0], c); auth.ErrorCode(err) != auth.CodeNotFound {
		t.Errorf("another user revoking the device: %v, want CodeNotFound", err)
	}
	if err := devs.Revoke(t.Context(), u, ids[0], c); err != nil {
		t.Fatal(err)
	}
	fx.wantAudit(t, u.ID, "device.revoke", auth.OutcomeSuccess, ids[0])
	if devs.Trusted(t.Context(), u, browsers[0], trusts[0], c) {
		t.Error("a revoked device is still trusted")
	}
	if !devs.Trusted(t.Context(), u, browsers[1], trusts[1], c) {
		t.Error("revoking one device untrusted another")
	}
	if err := devs.Revoke(t.Context(), u, ids[0], c); auth.ErrorCode(err) != auth.CodeNotFound {
		t.Errorf("revoking twice: %v, want CodeNotFound", err)
	}
	// The revoked browser signing in again is a new device, untrusted.
	d, isNew, err := devs.Recognise(t.Context(), u, browsers[0], c)
	if err != nil || !isNew || d.ID == ids[0] || devs.Trusted(t.Context(), u, browsers[0], trusts[0], c) {
		t.Errorf("the revoked browser again: %v, isNew %v, same id %v; want a new, untrusted device", err, isNew, d.ID == ids[0])
	}
	n, err := devs.RevokeAll(t.Context(), u, c)
	if err != nil || n != 3 {
		t.Fatalf("RevokeAll = %d, %v; want 3", n, err)
	}
	fx.wantAudit(t, u.ID, "device.revoke", auth.OutcomeSuccess, "all devices (3)")
	for i := range browsers {
		if devs.Trusted(t.Context(), u, browsers[i], trusts[i], c) {
			t.Errorf("device %d is trusted after RevokeAll", i)
		}
	}
	if list, err := devs.List(t.Context(), u); err != nil || len(list) != 0 {
		t.Errorf("List after RevokeAll = %v, %v; want none", list, err)
	}
}

func TestDevicesNotifyNewDevice(t *testing.T) {
	t.Parallel()
	fx := newDRFixture(t)
	devs := fx.devices(t, auth.DevicesConfig{Location: lisbon})
	u := fx.user(t, auth.TypeOwner)
	d, _, err := devs.Recognise(t.Context(), u, auth.NewToken(), auth.Client{IP: "203.0.113.9", UserAgent: safariIPhone})
	if err != nil {
		t.Fatal(err)
	}
	if err := devs.NotifyNewDevice(t.Context(), u, d); err != nil {
		t.Fatal(err)
	}
	m := fx.smtp.Last(t)
	if len(m.To) != 1 || m.To[0] != u.Email {
		t.Fatalf("mail to %v, want %s", m.To, u.Email)
	}
	p := m.Parse(t)
	if !strings.Contains(p.Subject, "New sign-in") || !strings.Contains(p.Subject, "Safari on iOS") {
		t.Errorf("Subject = %q", p.Subject)
	}
	for _, want := range []string{"Safari", "iOS", "203.0.113.9", "Lisbon, PT", "Tue 4 Mar 2031 10:00 UTC",
		"If it was not you", "https://auth.hestami.example/account/security", "revoke this device"} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("new-device email does not say %q:\n%s", want, p.Body)
		}
	}
	fx.wantAudit(t, u.ID, "device.notify", auth.OutcomeSuccess, "Safari on iOS")

	fx.smtp.SetDown(true)
	if err := devs.NotifyNewDevice(t.Context(), u, d); err == nil {
		t.Error("NotifyNewDevice with the mail server down = nil, want an error")
	}
	fx.wantAudit(t, u.ID, "device.notify", auth.OutcomeFailure, "mail not sent")
}

func TestNewDevicesRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  auth.DevicesConfig
		want string
	}{
		{"no key", auth.DevicesConfig{}, "no trust key"},
		{"short key", auth.DevicesConfig{TrustKeys: [][]byte{[]byte("short")}}, "at least 32"},
		{"short second key", auth.DevicesConfig{TrustKeys: [][]byte{drTrustKey, []byte("short")}}, "trust key 2"},
		{"default over maximum", auth.DevicesConfig{TrustKeys: [][]byte{drTrustKey}, RememberDays: 30, MaxDays: 7}, "maximum"},
	} {
		if _, err := auth.NewDevices(tc.cfg, nil, nil, nil, time.Now, slog.Default()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewDevices = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
