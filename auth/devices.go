package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// DeviceCookie is the name of the cookie that holds a browser's device token: a
// long-lived random value (NewToken) the HTTP layer sets on first sight. Only its
// hash is stored.
const DeviceCookie = "hestami_device"

// Device is a browser (or other client) a user has signed in from, recognised by
// its device cookie.
type Device struct {
	ID     string // a UUID, assigned by the store
	UserID string
	// TokenHash is HashToken of the browser's device cookie; the cookie itself is
	// never stored.
	TokenHash string
	// Name is "Firefox on Windows"; Browser and OS are its parts (ParseUserAgent).
	Name    string
	Browser string
	OS      string
	// FirstSeen and LastSeen are the first and latest sign-ins (or checks) from
	// the device; LastIP and LastLocation ("Lisbon, PT", or "" without GeoIP)
	// are the latest client address and where it is.
	FirstSeen    time.Time
	LastSeen     time.Time
	LastIP       string
	LastLocation string
	// TrustedUntil is when "remember this device" ends (zero: not remembered).
	// TrustHash is HashToken of the signed trust token handed to the browser,
	// so a trust token works only while it is the device's current one.
	TrustedUntil time.Time
	TrustHash    string
	// RevokedAt is when the user (or staff) revoked the device; zero while it is
	// not. A revoked device is never trusted again; the same browser signing in
	// afterwards is a new device.
	RevokedAt time.Time
}

// Trusted reports whether the device is remembered at now (the stored side only:
// Devices.Trusted also checks the browser's signed trust token).
func (d *Device) Trusted(now time.Time) bool {
	return d.RevokedAt.IsZero() && d.TrustHash != "" && now.Before(d.TrustedUntil)
}

// DeviceStore keeps devices.
type DeviceStore interface {
	// SeeDevice records a sighting of d.UserID's device d.TokenHash: if the user
	// has a device (not revoked) with that token hash, its LastSeen, LastIP,
	// LastLocation, Name, Browser and OS are set from d; otherwise d is stored as
	// a new device (FirstSeen = LastSeen). Either way d is filled with the stored
	// record, and isNew says which happened: under concurrent calls for one
	// browser exactly one is new. ErrNotFound if there is no such user.
	SeeDevice(ctx context.Context, d *Device) (isNew bool, err error)
	// Device returns the user's device id, revoked or not; ErrNotFound if the
	// user has no such device.
	Device(ctx context.Context, userID, id string) (*Device, error)
	// DeviceByToken returns the user's device (not revoked) with the token hash;
	// ErrNotFound if none.
	DeviceByToken(ctx context.Context, userID, tokenHash string) (*Device, error)
	// Devices returns the user's devices that are not revoked, most recently
	// seen first.
	Devices(ctx context.Context, userID string) ([]*Device, error)
	// TrustDevice sets the user's device's TrustHash and TrustedUntil;
	// ErrNotFound if the user has no such device, or it is revoked.
	TrustDevice(ctx context.Context, userID, id, trustHash string, until time.Time) error
	// RevokeDevice marks the user's device revoked at at and drops its trust;
	// ErrNotFound if the user has no such device, or it is revoked already.
	RevokeDevice(ctx context.Context, userID, id string, at time.Time) error
	// RevokeDevices revokes every device of the user that is not revoked, and
	// returns how many it revoked.
	RevokeDevices(ctx context.Context, userID string, at time.Time) (int, error)
}

// DevicesConfig is how Devices behaves.
type DevicesConfig struct {
	// TrustKeys sign "remember this device" tokens (HMAC-SHA256), each at least
	// 32 bytes. The first signs; all verify, so a key can be rotated by putting
	// the new one first and dropping the old one once its tokens have expired
	// (after MaxDays). Replicas share them.
	TrustKeys [][]byte
	// RememberDays is how long "remember this device" lasts when the caller
	// asks for no particular number of days (default 30); MaxDays caps any
	// request (default 90).
	RememberDays int
	MaxDays      int
	// PublicURL is the service's origin, for links in emails
	// (https://auth.hestami.example).
	PublicURL string
	// Location names where an IP address is for people ("Lisbon, PT"), or ""
	// if unknown; nil: devices have no location. The wiring adapts the GeoIP
	// database to it.
	Location func(ip netip.Addr) string
}

// DefaultRememberDays is how long "remember this device" lasts by default.
const DefaultRememberDays = 30

// Devices recognises the browsers people sign in from, remembers the ones they
// trust (so they skip the second factor there for a while), lets them review and
// revoke them, and emails them about sign-ins from new ones.
type Devices struct {
	cfg    DevicesConfig
	store  DeviceStore
	mailer Mailer
	audit  func(context.Context, *AuditEvent) error
	now    func() time.Time
	log    *slog.Logger
}

// NewDevices returns Devices. audit records security events (pass
// (*Service).Audit); now is the clock. It fails if a trust key is missing or
// shorter than 32 bytes.
func NewDevices(cfg DevicesConfig, store DeviceStore, mailer Mailer, audit func(context.Context, *AuditEvent) error, now func() time.Time, logger *slog.Logger) (*Devices, error) {
	if len(cfg.TrustKeys) == 0 {
		return nil, errors.New("devices: no trust key: configure one of at least 32 random bytes to sign \"remember this device\" tokens")
	}
	for i, k := range cfg.TrustKeys {
		if len(k) < 32 {
			return nil, fmt.Errorf("devices: trust key %d has %d bytes: want at least 32 random bytes", i+1, len(k))
		}
	}
	if cfg.RememberDays <= 0 {
		cfg.RememberDays = DefaultRememberDays
	}
	if cfg.MaxDays <= 0 {
		cfg.MaxDays = max(90, cfg.RememberDays)
	}
	if cfg.RememberDays > cfg.MaxDays {
		return nil, fmt.Errorf("devices: remember days %d is more than the maximum %d", cfg.RememberDays, cfg.MaxDays)
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &Devices{cfg: cfg, store: store, mailer: mailer, audit: audit, now: now, log: logger}, nil
}

// RememberDays is how many days "remember this device" lasts by default (for the
// checkbox's label).
func (d *Devices) RememberDays() int { return d.cfg.RememberDays }

// minDeviceToken is the shortest device cookie accepted: NewToken makes 43
// characters; anything much shorter was not made by us.
const minDeviceToken = 32

// Recognise records that u signs in (or is checked) from the browser whose device
// cookie is token, seen from client c: on the first sight of that browser for u it
// creates the device (isNew true, audited as "device.new"), otherwise it updates
// the device's last seen time, IP, location and name. token must be the browser's
// hestami_device cookie; when the browser has none (or one shorter than 32
// characters), the caller makes one with NewToken, sets the cookie and passes it.
// A revoked device is never recognised again: the same browser becomes a new
// device. Whether to email the user about a new device is the caller's call
// (NotifyNewDevice).
func (d *Devices) Recognise(ctx context.Context, u *User, token string, c Client) (*Device, bool, error) {
	if len(token) < minDeviceToken {
		return nil, false, errors.New("recognise device: device token missing or too short (make one with auth.NewToken)")
	}
	now := d.now()
	browser, os := ParseUserAgent(c.UserAgent)
	dev := &Device{
		UserID: u.ID, TokenHash: HashToken(token), Name: browser + " on " + os, Browser: browser, OS: os,
		FirstSeen: now, LastSeen: now, LastIP: c.IP, LastLocation: d.locate(c.IP),
	}
	isNew, err := d.store.SeeDevice(ctx, dev)
	if err != nil {
		return nil, false, fmt.Errorf("recognise device: %w", err)
	}
	if isNew {
		ev := &AuditEvent{Action: "device.new", ActorID: u.ID, IP: c.IP, UserAgent: c.UserAgent, Detail: deviceDetail(dev)}
		if err := d.audit(ctx, ev); err != nil {
			return nil, false, err
		}
	}
	return dev, isNew, nil
}

// locate is where ip is, or "".
func (d *Devices) locate(ip string) string {
	if d.cfg.Location == nil {
		return ""
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	return d.cfg.Location(a.Unmap())
}

// deviceDetail describes a device for the audit log.
func deviceDetail(dev *Device) string {
	s := dev.Name + " " + dev.ID
	if dev.LastLocation != "" {
		s += " at " + dev.LastLocation
	}
	return s
}

// Remember trusts u's device deviceID for days days (0: the configured default;
// more than the configured maximum is cut to it) and returns the trust token to
// store in the browser (a cookie next to the device cookie, expiring at until).
// The token is signed (HMAC-SHA256 over the device id, the user id and the
// expiry) and only its hash is stored, so neither a forged cookie nor a row copied
// in the database makes a device trusted; remembering again replaces the
// previous token. Audited as "device.remember". CodeNotFound if u has no such
// device, or it was revoked.
func (d *Devices) Remember(ctx context.Context, u *User, deviceID string, days int, c Client) (token string, until time.Time, err error) {
	if days <= 0 {
		days = d.cfg.RememberDays
	}
	days = min(days, d.cfg.MaxDays)
	now := d.now()
	// Whole seconds: the token carries Unix seconds, the store keeps the same.
	until = now.Add(time.Duration(days) * 24 * time.Hour).Truncate(time.Second)
	token = d.signTrust(deviceID, u.ID, until)
	err = d.store.TrustDevice(ctx, u.ID, deviceID, HashToken(token), until)
	if errors.Is(err, ErrNotFound) {
		return "", time.Time{}, Errorf(CodeNotFound, "This device is not known for your account (it may have been revoked). Sign in again to remember it.")
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("remember device: %w", err)
	}
	ev := &AuditEvent{Action: "device.remember", ActorID: u.ID, IP: c.IP, UserAgent: c.UserAgent,
		Detail: fmt.Sprintf("device %s for %d days", deviceID, days)}
	if err := d.audit(ctx, ev); err != nil {
		return "", time.Time{}, err
	}
	return token, until, nil
}

// Trust tokens are "t1." + base64url(payload) + "." + base64url(HMAC-SHA256(key,
// "hestami device trust v1\x00" + payload)); payload is the device id, a zero
// byte, the user id, a zero byte and the expiry in Unix seconds (8 bytes, big
// endian).
const trustPrefix = "t1."

func trustPayload(deviceID, userID string, until time.Time) []byte {
	p := make([]byte, 0, len(deviceID)+len(userID)+10)
	p = append(p, deviceID...)
	p = append(p, 0)
	p = append(p, userID...)
	p = append(p, 0)
	return binary.BigEndian.AppendUint64(p, uint64(until.Unix()))
}

func trustMAC(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("hestami device trust v1\x00"))
	m.Write(payload)
	return m.Sum(nil)
}

func (d *Devices) signTrust(deviceID, userID string, until time.Time) string {
	p := trustPayload(deviceID, userID, until)
	return trustPrefix + base64.RawURLEncoding.EncodeToString(p) + "." + base64.RawURLEncoding.EncodeToString(trustMAC(d.cfg.TrustKeys[0], p))
}

// trustClaims is what a verified trust token says.
type trustClaims struct {
	deviceID, userID string
	until            time.Time
}

// parseTrust verifies a trust token's signature with any trust key and returns
// what it says; false if it is malformed or not signed by us.
func (d *Devices) parseTrust(token string) (trustClaims, bool) {
	rest, ok := strings.CutPrefix(token, trustPrefix)
	if !ok || len(token) > 512 {
		return trustClaims{}, false
	}
	enc, encMAC, ok := strings.Cut(rest, ".")
	if !ok {
		return trustClaims{}, false
	}
	p, err1 := base64.RawURLEncoding.DecodeString(enc)
	mac, err2 := base64.RawURLEncoding.DecodeString(encMAC)
	if err1 != nil || err2 != nil {
		return trustClaims{}, false
	}
	valid := false
	for _, k := range d.cfg.TrustKeys {
		if hmac.Equal(mac, trustMAC(k, p)) {
			valid = true
		}
	}
	if !valid {
		return trustClaims{}, false
	}
	parts := strings.SplitN(string(p[:max(0, len(p)-8)]), "\x00", 3)
	if len(p) < 10 || len(parts) != 3 || parts[2] != "" {
		return trustClaims{}, false
	}
	until := time.Unix(int64(binary.BigEndian.Uint64(p[len(p)-8:])), 0)
	return trustClaims{deviceID: parts[0], userID: parts[1], until: until}, true
}

// Trusted reports whether the browser with device cookie token and trust cookie
// trustToken is a device u remembered, now: the trust token must be signed by us,
// name this user and this browser's device, not have expired, be the device's
// current trust token, and the device must not be revoked. A trust token that is
// present but refused is audited ("device.trust", failure, with why), since it
// may be forged or copied from another browser. Errors of the store count as not
// trusted (and are logged): the person is asked for a second factor.
func (d *Devices) Trusted(ctx context.Context, u *User, token, trustToken string, c Client) bool {
	if trustToken == "" || len(token) < minDeviceToken || u == nil {
		return false
	}
	why := d.untrusted(ctx, u, token, trustToken)
	if why == "" {
		return true
	}
	_ = d.audit(ctx, &AuditEvent{Action: "device.trust", Outcome: OutcomeFailure, ActorID: u.ID, IP: c.IP, UserAgent: c.UserAgent, Detail: why})
	return false
}

// untrusted returns why the trust token does not make the device trusted, or "".
func (d *Devices) untrusted(ctx context.Context, u *User, token, trustToken string) string {
	claims, ok := d.parseTrust(trustToken)
	if !ok {
		return "trust token not signed by this service"
	}
	now := d.now()
	if claims.userID != u.ID {
		return "trust token of another user"
	}
	if !now.Before(claims.until) {
		return "trust token expired"
	}
	dev, err := d.store.DeviceByToken(ctx, u.ID, HashToken(token))
	if errors.Is(err, ErrNotFound) {
		return "unknown or revoked device"
	}
	if err != nil {
		d.log.Error("check trusted device", "user", u.ID, "err", err)
		return "device lookup failed"
	}
	if dev.ID != claims.deviceID {
		return "trust token of another device"
	}
	if dev.TrustHash == "" || subtle.ConstantTimeCompare([]byte(dev.TrustHash), []byte(HashToken(trustToken))) != 1 {
		return "trust token replaced or revoked"
	}
	if !dev.Trusted(now) {
		return "device trust expired"
	}
	return ""
}

// List returns u's devices (not revoked), most recently seen first.
func (d *Devices) List(ctx context.Context, u *User) ([]*Device, error) {
	devs, err := d.store.Devices(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return devs, nil
}

// Revoke revokes one of u's devices: it is no longer remembered (the next
// sign-in there asks for a second factor again) and disappears from the list.
// Signing out the device's sessions is the caller's business. Audited as
// "device.revoke". CodeNotFound if u has no such device (or it is revoked
// already).
func (d *Devices) Revoke(ctx context.Context, u *User, deviceID string, c Client) error {
	err := d.store.RevokeDevice(ctx, u.ID, deviceID, d.now())
	if errors.Is(err, ErrNotFound) {
		return Errorf(CodeNotFound, "There is no such device on your account (it may have been revoked already).")
	}
	if err != nil {
		return fmt.Errorf("revoke device: %w", err)
	}
	return d.audit(ctx, &AuditEvent{Action: "device.revoke", ActorID: u.ID, IP: c.IP, UserAgent: c.UserAgent, Detail: "device " + deviceID})
}

// RevokeAll revokes every device of u (including the current one) and returns
// how many. Audited as "device.revoke".
func (d *Devices) RevokeAll(ctx context.Context, u *User, c Client) (int, error) {
	n, err := d.store.RevokeDevices(ctx, u.ID, d.now())
	if err != nil {
		return 0, fmt.Errorf("revoke devices: %w", err)
	}
	return n, d.audit(ctx, &AuditEvent{Action: "device.revoke", ActorID: u.ID, IP: c.IP, UserAgent: c.UserAgent, Detail: fmt.Sprintf("all devices (%d)", n)})
}

// NotifyNewDevice emails u (at the primary email) that their account was signed
// in to from dev: browser, OS, IP address, location, time, and what to do if it
// was not them. The caller decides when (Recognise said isNew, and it is not the
// account's very first sign-in). Audited as "device.notify"; an error means the
// mail server did not take the mail.
func (d *Devices) NotifyNewDevice(ctx context.Context, u *User, dev *Device) error {
	if u.Email == "" {
		return errors.New("notify new device: the account has no email")
	}
	where := dev.LastLocation
	if where == "" {
		where = "unknown"
	}
	greeting := "Hello,"
	if u.Name != "" {
		greeting = "Hello " + u.Name + ","
	}
	text := fmt.Sprintf(`%s

Your Hestami account was just signed in to from a device it had not seen before:

  Browser:   %s
  System:    %s
  IP address: %s
  Location:  %s
  Time:      %s

If this was you, there is nothing to do.

If it was not you, someone else can sign in to your account at your sign-in
provider (Google, Microsoft, LinkedIn or GitHub):
  1. Change that account's password and turn on its two-step verification.
  2. Go to %s/account/security, revoke this device and sign out every other session.
  3. Tell support by replying to this email.
`, greeting, dev.Browser, dev.OS, dev.LastIP, where, dev.LastSeen.UTC().Format("Mon 2 Jan 2006 15:04 MST"), d.cfg.PublicURL)
	m := Mail{To: u.Email, Subject: "New sign-in to your Hestami account: " + dev.Name, Text: text}
	if err := d.mailer.SendMail(ctx, m); err != nil {
		_ = d.audit(ctx, &AuditEvent{Action: "device.notify", Outcome: OutcomeFailure, ActorID: u.ID, IP: dev.LastIP, Detail: "mail not sent: device " + dev.ID})
		return fmt.Errorf("notify new device: %w", err)
	}
	return d.audit(ctx, &AuditEvent{Action: "device.notify", ActorID: u.ID, IP: dev.LastIP, Detail: "new device email: " + deviceDetail(dev)})
}
