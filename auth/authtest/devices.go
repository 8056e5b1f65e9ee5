package authtest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// DeviceHarness is an auth.DeviceStore under test and a way to create users in
// its database (devices belong to users).
type DeviceHarness struct {
	Store auth.DeviceStore
	// NewUser creates a user and returns its id.
	NewUser func(t *testing.T) string
}

// RunDeviceStore runs the auth.DeviceStore contract against the stores
// newHarness returns: each subtest calls it once and expects an empty store of its
// own; subtests run in parallel. Times are whole seconds and come back Equal.
func RunDeviceStore(t *testing.T, newHarness func(t *testing.T) DeviceHarness) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, h DeviceHarness)
	}{
		{"SeeDeviceNew", testSeeDeviceNew},
		{"SeeDeviceAgain", testSeeDeviceAgain},
		{"SeeDeviceOtherUser", testSeeDeviceOtherUser},
		{"SeeDeviceConcurrent", testSeeDeviceConcurrent},
		{"SeeDeviceUnknownUser", testSeeDeviceUnknownUser},
		{"DeviceNotFound", testDeviceNotFound},
		{"Devices", testDevices},
		{"TrustDevice", testTrustDevice},
		{"RevokeDevice", testRevokeDevice},
		{"RevokeDevices", testRevokeDevices},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newHarness(t))
		})
	}
}

// someUUID is a well-formed id that names nothing.
const someUUID = "00000000-0000-4000-8000-000000000000"

func sighting(userID, token string, when time.Time, ip string) *auth.Device {
	return &auth.Device{
		UserID: userID, TokenHash: auth.HashToken(token), Name: "Firefox on Linux", Browser: "Firefox", OS: "Linux",
		FirstSeen: when, LastSeen: when, LastIP: ip, LastLocation: "Lisbon, PT",
	}
}

func see(t *testing.T, s auth.DeviceStore, d *auth.Device) (*auth.Device, bool) {
	t.Helper()
	isNew, err := s.SeeDevice(t.Context(), d)
	if err != nil {
		t.Fatalf("SeeDevice(%s): %v", d.TokenHash[:8], err)
	}
	return d, isNew
}

func sameDevice(t *testing.T, what string, got, want *auth.Device) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || got.TokenHash != want.TokenHash || got.Name != want.Name ||
		got.Browser != want.Browser || got.OS != want.OS || !got.FirstSeen.Equal(want.FirstSeen) || !got.LastSeen.Equal(want.LastSeen) ||
		got.LastIP != want.LastIP || got.LastLocation != want.LastLocation || got.TrustHash != want.TrustHash ||
		!got.TrustedUntil.Equal(want.TrustedUntil) || !got.RevokedAt.Equal(want.RevokedAt) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}

func deviceIDs(ds []*auth.Device) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func testSeeDeviceNew(t *testing.T, h DeviceHarness) {
	uid := h.NewUser(t)
	want := *sighting(uid, "browser-one", at(0), "203.0.113.9")
	d, isNew := see(t, h.Store, sighting(uid, "browser-one", at(0), "203.0.113.9"))
	if !isNew || d.ID == "" {
		t.Fatalf("first sight: isNew = %v, ID %q; want a new device with an id", isNew, d.ID)
	}
	want.ID = d.ID
	sameDevice(t, "SeeDevice's record of a new device", d, &want)
	got, err := h.Store.Device(t.Context(), uid, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameDevice(t, "Device after SeeDevice", got, &want)
	got, err = h.Store.DeviceByToken(t.Context(), uid, auth.HashToken("browser-one"))
	if err != nil {
		t.Fatal(err)
	}
	sameDevice(t, "DeviceByToken after SeeDevice", got, &want)
}

func testSeeDeviceAgain(t *testing.T, h DeviceHarness) {
	uid := h.NewUser(t)
	first, _ := see(t, h.Store, sighting(uid, "browser-one", at(0), "203.0.113.9"))
	again := sighting(uid, "browser-one", at(time.Hour), "198.51.100.7")
	again.Name, again.Browser, again.LastLocation = "Chrome on Linux", "Chrome", "Porto, PT"
	d, isNew := see(t, h.Store, again)
	if isNew || d.ID != first.ID {
		t.Fatalf("second sight: isNew = %v, id %s; want the same device %s, not new", isNew, d.ID, first.ID)
	}
	want := *first
	want.LastSeen, want.LastIP, want.LastLocation, want.Name, want.Browser = at(time.Hour), "198.51.100.7", "Porto, PT", "Chrome on Linux", "Chrome"
	sameDevice(t, "device seen again", d, &want)
	// A sighting with an older clock (another replica) does not move LastSeen back.
	late := sighting(uid, "browser-one", at(time.Minute), "198.51.100.7")
	late.Name, late.Browser, late.LastLocation = want.Name, want.Browser, want.LastLocation
	d, _ = see(t, h.Store, late)
	sameDevice(t, "device seen with an older time", d, &want)
}

func testSeeDeviceOtherUser(t *testing.T, h DeviceHarness) {
	ann, bo := h.NewUser(t), h.NewUser(t)
	a, _ := see(t, h.Store, sighting(ann, "shared-browser", at(0), "203.0.113.9"))
	b, isNew := see(t, h.Store, sighting(bo, "shared-browser", at(time.Minute), "203.0.113.9"))
	if !isNew || b.ID == a.ID || b.UserID != bo {
		t.Fatalf("the same browser for another user: isNew %v, id %s (first user's %s); want a device of the second user", isNew, b.ID, a.ID)
	}
	if _, err := h.Store.Device(t.Context(), bo, a.ID); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("Device(other user's device) = %v, want ErrNotFound", err)
	}
}

func testSeeDeviceConcurrent(t *testing.T, h DeviceHarness) {
	uid := h.NewUser(t)
	const n = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		news  int
		ids   []string
		errs  []error
		start = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			d := sighting(uid, "racing-browser", at(time.Duration(i)*time.Second), "203.0.113.9")
			isNew, err := h.Store.SeeDevice(t.Context(), d)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if isNew {
				news++
			}
			ids = append(ids, d.ID)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent SeeDevice: %v", err)
	}
	slices.Sort(ids)
	if news != 1 || len(slices.Compact(ids)) != 1 {
		t.Fatalf("%d concurrent first sightings of one browser: %d new, device ids %v; want exactly one new device", n, news, slices.Compact(ids))
	}
	ds, err := h.Store.Devices(t.Context(), uid)
	if err != nil || len(ds) != 1 || !ds[0].LastSeen.Equal(at((n-1)*time.Second)) {
		t.Fatalf("Devices after the race = %v, %v; want one device last seen at the latest sighting", ds, err)
	}
}

func testSeeDeviceUnknownUser(t *testing.T, h DeviceHarness) {
	for _, uid := range []string{someUUID, "not-a-uuid"} {
		_, err := h.Store.SeeDevice(t.Context(), sighting(uid, "browser", at(0), ""))
		wantErr(t, fmt.Sprintf("SeeDevice for user %q", uid), err, auth.ErrNotFound)
	}
}

func testDeviceNotFound(t *testing.T, h DeviceHarness) {
	uid := h.NewUser(t)
	for _, id := range []string{someUUID, "not-a-uuid", ""} {
		_, err := h.Store.Device(t.Context(), uid, id)
		wantErr(t, fmt.Sprintf("Device(%q)", id), err, auth.ErrNotFound)
	}
	_, err := h.Store.DeviceByToken(t.Context(), uid, auth.HashToken("never seen"))
	wantErr(t, "DeviceByToken(unknown)", err, auth.ErrNotFound)
	_, err = h.Store.DeviceByToken(t.Context(), "not-a-uuid", auth.HashToken("never seen"))
	wantErr(t, "DeviceByToken(malformed user)", err, auth.ErrNotFound)
	if ds, err := h.Store.Devices(t.Context(), uid); err != nil || len(ds) != 0 {
		t.Errorf("Devices of a user without any = %v, %v; want none", ds, err)
	}
}

func testDevices(t *testing.T, h DeviceHarness) {
	uid, other := h.NewUser(t), h.NewUser(t)
	a, _ := see(t, h.Store, sighting(uid, "a", at(0), "203.0.113.1"))
	b, _ := see(t, h.Store, sighting(uid, "b", at(2*time.Hour), "203.0.113.2"))
	c, _ := see(t, h.Store, sighting(uid, "c", at(time.Hour), "203.0.113.3"))
	see(t, h.Store, sighting(other, "a", at(3*time.Hour), "203.0.113.4"))
	ds, err := h.Store.Devices(t.Context(), uid)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := deviceIDs(ds), []string{b.ID, c.ID, a.ID}; !slices.Equal(got, want) {
		t.Fatalf("Devices = %v, want %v (most recently seen first, only this user's)", got, want)
	}
	// Seeing a again puts it first.
	see(t, h.Store, sighting(uid, "a", at(4*time.Hour), "203.0.113.1"))
	ds, _ = h.Store.Devices(t.Context(), uid)
	if got, want := deviceIDs(ds), []string{a.ID, b.ID, c.ID}; !slices.Equal(got, want) {
		t.Fatalf("Devices after a new sighting of a = %v, want %v", got, want)
	}
}

func testTrustDevice(t *testing.T, h DeviceHarness) {
	uid, other := h.NewUser(t), h.NewUser(t)
	d, _ := see(t, h.Store, sighting(uid, "a", at(0), "203.0.113.1"))
	until := at(30 * 24 * time.Hour)
	if err := h.Store.TrustDevice(t.Context(), uid, d.ID, "trust-hash-1", until); err != nil {
		t.Fatal(err)
	}
	got, err := h.Store.DeviceByToken(t.Context(), uid, d.TokenHash)
	if err != nil {
		t.Fatal(err)
	}
	want := *d
	want.TrustHash, want.TrustedUntil = "trust-hash-1", until
	sameDevice(t, "device after TrustDevice", got, &want)
	// Remembering again replaces the token.
	if err := h.Store.TrustDevice(t.Context(), uid, d.ID, "trust-hash-2", until.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ = h.Store.Device(t.Context(), uid, d.ID)
	if got.TrustHash != "trust-hash-2" || !got.TrustedUntil.Equal(until.Add(time.Hour)) {
		t.Errorf("after a second TrustDevice: trust %q until %v; want trust-hash-2 until %v", got.TrustHash, got.TrustedUntil, until.Add(time.Hour))
	}
	// Seeing the device keeps its trust.
	see(t, h.Store, sighting(uid, "a", at(time.Hour), "203.0.113.1"))
	if got, _ = h.Store.Device(t.Context(), uid, d.ID); got.TrustHash != "trust-hash-2" {
		t.Errorf("SeeDevice dropped the device's trust: %q", got.TrustHash)
	}
	wantErr(t, "TrustDevice of another user's device", h.Store.TrustDevice(t.Context(), other, d.ID, "x", until), auth.ErrNotFound)
	wantErr(t, "TrustDevice of an unknown device", h.Store.TrustDevice(t.Context(), uid, someUUID, "x", until), auth.ErrNotFound)
	if err := h.Store.RevokeDevice(t.Context(), uid, d.ID, at(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "TrustDevice of a revoked device", h.Store.TrustDevice(t.Context(), uid, d.ID, "x", until), auth.ErrNotFound)
	if got, _ = h.Store.Device(t.Context(), uid, d.ID); got.TrustHash != "" {
		t.Errorf("a revoked device kept trust %q", got.TrustHash)
	}
}

func testRevokeDevice(t *testing.T, h DeviceHarness) {
	uid, other := h.NewUser(t), h.NewUser(t)
	d, _ := see(t, h.Store, sighting(uid, "a", at(0), "203.0.113.1"))
	keep, _ := see(t, h.Store, sighting(uid, "b", at(0), "203.0.113.2"))
	if err := h.Store.TrustDevice(t.Context(), uid, d.ID, "trust", at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "RevokeDevice by another user", h.Store.RevokeDevice(t.Context(), other, d.ID, at(time.Minute)), auth.ErrNotFound)
	if err := h.Store.RevokeDevice(t.Context(), uid, d.ID, at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "RevokeDevice twice", h.Store.RevokeDevice(t.Context(), uid, d.ID, at(2*time.Minute)), auth.ErrNotFound)
	wantErr(t, "RevokeDevice of an unknown device", h.Store.RevokeDevice(t.Context(), uid, someUUID, at(2*time.Minute)), auth.ErrNotFound)
	got, err := h.Store.Device(t.Context(), uid, d.ID)
	if err != nil {
		t.Fatalf("Device(revoked): %v; a revoked device stays as history", err)
	}
	want := *d
	want.RevokedAt = at(time.Minute)
	sameDevice(t, "revoked device", got, &want)
	_, err = h.Store.DeviceByToken(t.Context(), uid, d.TokenHash)
	wantErr(t, "DeviceByToken of a revoked device", err, auth.ErrNotFound)
	if ds, _ := h.Store.Devices(t.Context(), uid); !slices.Equal(deviceIDs(ds), []string{keep.ID}) {
		t.Errorf("Devices after revoking one = %v, want only %s", deviceIDs(ds), keep.ID)
	}
	// The same browser signing in again is a new device.
	again, isNew := see(t, h.Store, sighting(uid, "a", at(time.Hour), "203.0.113.1"))
	if !isNew || again.ID == d.ID || again.TrustHash != "" || !again.FirstSeen.Equal(at(time.Hour)) {
		t.Errorf("the revoked browser seen again: isNew %v, id %s (revoked %s), trust %q, first seen %v; want a new, untrusted device",
			isNew, again.ID, d.ID, again.TrustHash, again.FirstSeen)
	}
}

func testRevokeDevices(t *testing.T, h DeviceHarness) {
	uid, other := h.NewUser(t), h.NewUser(t)
	for _, tok := range []string{"a", "b", "c"} {
		see(t, h.Store, sighting(uid, tok, at(0), "203.0.113.1"))
	}
	o, _ := see(t, h.Store, sighting(other, "a", at(0), "203.0.113.1"))
	first, _ := h.Store.Devices(t.Context(), uid)
	if err := h.Store.RevokeDevice(t.Context(), uid, first[0].ID, at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	n, err := h.Store.RevokeDevices(t.Context(), uid, at(time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("RevokeDevices = %d, %v; want 2 (one was revoked already)", n, err)
	}
	if ds, _ := h.Store.Devices(t.Context(), uid); len(ds) != 0 {
		t.Errorf("Devices after RevokeDevices = %v, want none", deviceIDs(ds))
	}
	if got, _ := h.Store.Device(t.Context(), uid, first[0].ID); !got.RevokedAt.Equal(at(time.Minute)) {
		t.Errorf("RevokeDevices changed the revocation time of a revoked device to %v", got.RevokedAt)
	}
	if ds, _ := h.Store.Devices(t.Context(), other); !slices.Equal(deviceIDs(ds), []string{o.ID}) {
		t.Errorf("RevokeDevices touched another user's devices: %v", deviceIDs(ds))
	}
	if n, err := h.Store.RevokeDevices(t.Context(), uid, at(2*time.Hour)); err != nil || n != 0 {
		t.Errorf("RevokeDevices again = %d, %v; want 0", n, err)
	}
}
