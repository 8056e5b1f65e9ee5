package auth

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParseTrust feeds trust cookies (untrusted input) to the parser: it never
// panics, accepts nothing it did not sign, and reads back what it signed.
func FuzzParseTrust(f *testing.F) {
	d, err := NewDevices(DevicesConfig{TrustKeys: [][]byte{[]byte("fuzzing key, at least 32 bytes long")}}, nil, nil,
		func(context.Context, *AuditEvent) error { return nil }, time.Now, slog.Default())
	if err != nil {
		f.Fatal(err)
	}
	until := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	good := d.signTrust("5d1c3a52-59a1-4f36-9a3c-1c2b3d4e5f60", "0f9e8d7c-6b5a-4321-8fed-cba987654321", until)
	for _, s := range []string{good, "", "t1.", "t1..", "t1.AAAA.BBBB", good[:len(good)-1], strings.Replace(good, "t1.", "t2.", 1), good + "." + good} {
		f.Add(s, "dev", "user")
	}
	f.Fuzz(func(t *testing.T, token, deviceID, userID string) {
		if c, ok := d.parseTrust(token); ok && token != good {
			t.Fatalf("parseTrust accepted a token it did not sign: %q -> %+v", token, c)
		}
		if strings.ContainsRune(deviceID, 0) || strings.ContainsRune(userID, 0) || !utf8.ValidString(deviceID+userID) {
			return
		}
		signed := d.signTrust(deviceID, userID, until)
		c, ok := d.parseTrust(signed)
		if len(signed) > 512 {
			if ok {
				t.Fatalf("parseTrust accepted a token over 512 bytes")
			}
			return
		}
		if !ok || c.deviceID != deviceID || c.userID != userID || !c.until.Equal(until) {
			t.Fatalf("round trip of (%q, %q): %+v, %v", deviceID, userID, c, ok)
		}
	})
}

// FuzzParseUserAgent checks that any header gives a browser and a system from
// the known lists, never a piece of the header itself.
func FuzzParseUserAgent(f *testing.F) {
	for _, s := range []string{"", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "curl/8", "\x00\xff"} {
		f.Add(s)
	}
	browsers := "Edge Opera Samsung Internet Firefox Chrome Chromium Internet Explorer Safari Unknown browser"
	systems := "iOS iPadOS Windows Android ChromeOS macOS Linux Unknown OS"
	f.Fuzz(func(t *testing.T, ua string) {
		b, o := ParseUserAgent(ua)
		if b == "" || o == "" || !strings.Contains(browsers, b) || !strings.Contains(systems, o) {
			t.Fatalf("ParseUserAgent(%q) = %q, %q", ua, b, o)
		}
	})
}
