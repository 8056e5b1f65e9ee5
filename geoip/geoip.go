// Package geoip tells where IP addresses are from a MaxMind database file
// (GeoLite2 or GeoIP2, City or Country; github.com/oschwald/maxminddb-golang/v2),
// for the auth service's suspicious-activity checks (auth.GeoLocator) and its
// device list.
package geoip

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/hestami/hestami/auth"
)

// DB is an open MaxMind City or Country database, held in memory (GeoLite2-City
// is some 60 MB). Reload swaps in a new copy of the file (geoipupdate replaces it
// weekly) while lookups go on; it is safe for concurrent use.
type DB struct {
	path string

	mu      sync.RWMutex
	r       *maxminddb.Reader
	modTime time.Time
	size    int64
}

var _ auth.GeoLocator = (*DB)(nil)

// Open opens the database at path. It fails with a clear error when the file is
// missing, is not a MaxMind database, or holds neither cities nor countries (an
// ASN database, say).
func Open(path string) (*DB, error) {
	db := &DB{path: path}
	if err := db.Reload(); err != nil {
		return nil, err
	}
	return db, nil
}

// open reads path and checks it is a database Locate can use.
func open(path string) (*maxminddb.Reader, os.FileInfo, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("GeoIP database %s does not exist: download GeoLite2-City.mmdb (or GeoIP2-City, or a Country edition) from MaxMind, for example with geoipupdate, and point the configuration at it", path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("GeoIP database %s: %w", path, err)
	}
	// Read whole rather than mapped: a file overwritten in place (instead of
	// replaced, as geoipupdate does) cannot pull the data from under lookups.
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("GeoIP database %s: %w", path, err)
	}
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, nil, fmt.Errorf("GeoIP database %s is not a readable MaxMind DB file (is it the .mmdb, not the .tar.gz or the CSV?): %w", path, err)
	}
	t := r.Metadata.DatabaseType
	if !strings.Contains(t, "City") && !strings.Contains(t, "Country") && !strings.Contains(t, "Enterprise") {
		_ = r.Close()
		return nil, nil, fmt.Errorf("GeoIP database %s is a %q database: use a City or Country one (GeoLite2-City.mmdb)", path, t)
	}
	return r, fi, nil
}

// Reload opens the file again and swaps it in; on failure the database in use
// stays. Lookups in progress finish on the old copy.
func (db *DB) Reload() error {
	r, fi, err := open(db.path)
	if err != nil {
		return err
	}
	db.mu.Lock()
	old := db.r
	db.r, db.modTime, db.size = r, fi.ModTime(), fi.Size()
	db.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

// ReloadIfChanged reloads the file if its modification time or size changed
// since it was last loaded, and reports whether it did. Call it now and then
// (a minute is plenty) to pick up geoipupdate's new files.
func (db *DB) ReloadIfChanged() (bool, error) {
	fi, err := os.Stat(db.path)
	if err != nil {
		return false, fmt.Errorf("GeoIP database %s: %w", db.path, err)
	}
	db.mu.RLock()
	same := fi.ModTime().Equal(db.modTime) && fi.Size() == db.size
	db.mu.RUnlock()
	if same {
		return false, nil
	}
	return true, db.Reload()
}

// Type returns the database's type ("GeoLite2-City") and build time.
func (db *DB) Type() (string, time.Time) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.r.Metadata.DatabaseType, db.r.Metadata.BuildTime()
}

// Close releases the database; Locate must not be called after.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.r == nil {
		return nil
	}
	err := db.r.Close()
	db.r = nil
	return err
}

// record is the part of a City or Country record that Locate reads.
type record struct {
	City struct {
		Names map[string]string `maxminddb:"names"`
	} `maxminddb:"city"`
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	// RegisteredCountry stands in when the country is unknown (anycast,
	// some mobile networks).
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

// Locate returns where ip is: country (ISO code), English city name and
// position, whichever the database has. It returns false for addresses the
// database does not know (private and reserved ranges, unassigned space) and
// for the unspecified or invalid address. IPv4-mapped IPv6 addresses are looked
// up as IPv4.
func (db *DB) Locate(ip netip.Addr) (auth.Location, bool) {
	if !ip.IsValid() || ip.IsUnspecified() {
		return auth.Location{}, false
	}
	ip = ip.Unmap().WithZone("")
	var rec record
	db.mu.RLock()
	if db.r == nil {
		db.mu.RUnlock()
		return auth.Location{}, false
	}
	res := db.r.Lookup(ip)
	var err error
	found := res.Found()
	if found {
		err = res.Decode(&rec)
	}
	db.mu.RUnlock()
	if res.Err() != nil || err != nil || !found {
		return auth.Location{}, false
	}
	loc := auth.Location{Country: rec.Country.ISOCode, City: rec.City.Names["en"]}
	if loc.Country == "" {
		loc.Country = rec.RegisteredCountry.ISOCode
	}
	if rec.Location.Latitude != nil && rec.Location.Longitude != nil {
		loc.Lat, loc.Lon, loc.HasPosition = *rec.Location.Latitude, *rec.Location.Longitude, true
	}
	if loc.Country == "" && !loc.HasPosition {
		return auth.Location{}, false
	}
	return loc, true
}
