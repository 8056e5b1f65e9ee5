package geoip_test

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/geoip"
)

// network is one range of a generated database and what it says.
type network struct {
	cidr       string
	country    string // country.iso_code
	registered string // registered_country.iso_code
	city       string // city.names.en
	lat, lon   float64
	position   bool
}

// writeDB writes a MaxMind DB of type dbType holding nets to path, the way
// MaxMind's GeoIP2 City and Country databases lay their records out.
func writeDB(t *testing.T, path, dbType string, nets []network) {
	t.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 28, IncludeReservedNetworks: true,
		Languages: []string{"en"}, Description: map[string]string{"en": "hestami geoip test database"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		_, ipnet, err := net.ParseCIDR(n.cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{}
		if n.country != "" {
			rec["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(n.country), "names": mmdbtype.Map{"en": mmdbtype.String(n.country + " land")}}
		}
		if n.registered != "" {
			rec["registered_country"] = mmdbtype.Map{"iso_code": mmdbtype.String(n.registered)}
		}
		if n.city != "" {
			rec["city"] = mmdbtype.Map{"geoname_id": mmdbtype.Uint32(1), "names": mmdbtype.Map{"en": mmdbtype.String(n.city), "pt-BR": mmdbtype.String("x")}}
		}
		if n.position {
			rec["location"] = mmdbtype.Map{"latitude": mmdbtype.Float64(n.lat), "longitude": mmdbtype.Float64(n.lon), "accuracy_radius": mmdbtype.Uint16(20)}
		}
		if err := w.Insert(ipnet, rec); err != nil {
			t.Fatalf("insert %s: %v", n.cidr, err)
		}
	}
	// Written beside the target and renamed over it, as geoipupdate does.
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

var cityNets = []network{
	{cidr: "192.0.2.0/24", country: "PT", city: "Lisbon", lat: 38.7223, lon: -9.1393, position: true},
	{cidr: "198.51.100.0/24", country: "FR", city: "Paris", lat: 48.8566, lon: 2.3522, position: true},
	{cidr: "203.0.113.0/25", country: "AU", city: "Sydney", lat: -33.8688, lon: 151.2093, position: true},
	{cidr: "203.0.113.128/25", country: "JP"},
	{cidr: "2001:db8:1::/48", country: "US", city: "New York", lat: 40.7128, lon: -74.006, position: true},
	{cidr: "2001:db8:2::/48", registered: "DE", lat: 51.0, lon: 9.0, position: true},
	{cidr: "2001:db8:3::/48", registered: "NL", country: "BE", position: false},
	{cidr: "100.64.0.0/24"}, // a record that says nothing useful
}

func TestLocate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "GeoLite2-City.mmdb")
	writeDB(t, path, "GeoLite2-City", cityNets)
	db, err := geoip.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if typ, built := db.Type(); typ != "GeoLite2-City" || built.IsZero() {
		t.Errorf("Type() = %q, %v", typ, built)
	}
	lisbon := auth.Location{Country: "PT", City: "Lisbon", Lat: 38.7223, Lon: -9.1393, HasPosition: true}
	for _, tc := range []struct {
		ip   string
		want auth.Location
		ok   bool
	}{
		{"192.0.2.1", lisbon, true},
		{"192.0.2.255", lisbon, true},
		{"::ffff:192.0.2.77", lisbon, true},
		{"198.51.100.42", auth.Location{Country: "FR", City: "Paris", Lat: 48.8566, Lon: 2.3522, HasPosition: true}, true},
		{"203.0.113.5", auth.Location{Country: "AU", City: "Sydney", Lat: -33.8688, Lon: 151.2093, HasPosition: true}, true},
		{"203.0.113.200", auth.Location{Country: "JP"}, true},
		{"2001:db8:1:42::1", auth.Location{Country: "US", City: "New York", Lat: 40.7128, Lon: -74.006, HasPosition: true}, true},
		{"2001:db8:2::99", auth.Location{Country: "DE", Lat: 51, Lon: 9, HasPosition: true}, true},
		{"2001:db8:3::1", auth.Location{Country: "BE"}, true},
		{"fe80::1%eth0", auth.Location{}, false},
		{"100.64.0.9", auth.Location{}, false},
		{"192.0.3.1", auth.Location{}, false},
		{"10.1.2.3", auth.Location{}, false},
		{"2001:db8:4::1", auth.Location{}, false},
		{"0.0.0.0", auth.Location{}, false},
		{"::", auth.Location{}, false},
	} {
		got, ok := db.Locate(netip.MustParseAddr(tc.ip))
		if ok != tc.ok || got != tc.want {
			t.Errorf("Locate(%s) = %+v, %v; want %+v, %v", tc.ip, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := db.Locate(netip.Addr{}); ok {
		t.Error("Locate(invalid address) ok")
	}
	// The adapter the device list uses.
	if got := auth.LocationName(db)(netip.MustParseAddr("::ffff:192.0.2.1")); got != "Lisbon, PT" {
		t.Errorf("LocationName = %q", got)
	}
}

func TestCountryDatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "GeoLite2-Country.mmdb")
	writeDB(t, path, "GeoLite2-Country", []network{{cidr: "192.0.2.0/24", country: "PT"}, {cidr: "2001:db8::/32", country: "ES"}})
	db, err := geoip.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for ip, want := range map[string]string{"192.0.2.9": "PT", "2001:db8:ff::1": "ES"} {
		got, ok := db.Locate(netip.MustParseAddr(ip))
		if !ok || got != (auth.Location{Country: want}) {
			t.Errorf("Locate(%s) = %+v, %v; want only the country %s", ip, got, ok, want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "GeoLite2-City.mmdb")
	junk := filepath.Join(dir, "junk.mmdb")
	if err := os.WriteFile(junk, []byte("this is a tarball, honest"), 0o644); err != nil {
		t.Fatal(err)
	}
	asn := filepath.Join(dir, "GeoLite2-ASN.mmdb")
	writeDB(t, asn, "GeoLite2-ASN", []network{{cidr: "192.0.2.0/24", country: "PT"}})
	for _, tc := range []struct {
		path string
		want []string
	}{
		{missing, []string{missing, "does not exist", "geoipupdate"}},
		{junk, []string{junk, "not a readable MaxMind DB file"}},
		{asn, []string{asn, `"GeoLite2-ASN" database`, "City or Country"}},
		{dir, []string{dir}},
	} {
		db, err := geoip.Open(tc.path)
		if err == nil {
			db.Close()
			t.Errorf("Open(%s) succeeded", tc.path)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Open(%s): %q does not say %q", tc.path, err, w)
			}
		}
	}
}

// TestReload checks a new file is picked up while lookups go on, and a broken one
// is refused with the old database kept.
func TestReload(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "GeoLite2-City.mmdb")
	writeDB(t, path, "GeoLite2-City", cityNets)
	db, err := geoip.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if changed, err := db.ReloadIfChanged(); changed || err != nil {
		t.Fatalf("ReloadIfChanged of an unchanged file = %v, %v", changed, err)
	}
	country := func(ip string) string {
		loc, _ := db.Locate(netip.MustParseAddr(ip))
		return loc.Country
	}

	// Lookups run all along, from several goroutines.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c := country("192.0.2.1"); c != "PT" && c != "ES" {
					t.Errorf("during reload: country %q", c)
					return
				}
			}
		})
	}
	moved := append([]network{{cidr: "192.0.2.0/24", country: "ES", city: "Madrid", lat: 40.4168, lon: -3.7038, position: true}}, cityNets[1:]...)
	moved = append(moved, network{cidr: "192.0.3.0/24", country: "IT"})
	writeDB(t, path, "GeoLite2-City", moved)
	changed, err := db.ReloadIfChanged()
	if !changed || err != nil {
		t.Fatalf("ReloadIfChanged after a new file = %v, %v", changed, err)
	}
	for range 20 {
		if err := db.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if c := country("192.0.2.1"); c != "ES" {
		t.Fatalf("after reload: %q, want ES", c)
	}
	if c := country("192.0.3.1"); c != "IT" {
		t.Fatalf("a range only the new file has: %q", c)
	}

	// A broken file does not replace a working database.
	if err := os.WriteFile(path, []byte("truncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := db.ReloadIfChanged(); !changed || err == nil {
		t.Fatalf("ReloadIfChanged of a broken file = %v, %v; want an error", changed, err)
	}
	if c := country("192.0.2.1"); c != "ES" {
		t.Fatalf("after a failed reload: %q, want the old database's ES", c)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := db.Reload(); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Reload of a removed file: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := db.Locate(netip.MustParseAddr("192.0.2.1")); ok {
		t.Fatal("Locate after Close found something")
	}
}
