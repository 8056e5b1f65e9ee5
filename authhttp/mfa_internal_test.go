package authhttp

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// TestMFAClasses: which routes a session that owes a second factor, or must set
// one up, or is blocked, can reach.
func TestMFAClasses(t *testing.T) {
	t.Parallel()
	svc := auth.NewService(nil, nil, auth.DefaultConfig(), time.Now, slog.New(slog.DiscardHandler))
	s, err := New(Options{Service: svc, PublicURL: "https://auth.hestami.example", CSRFKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	challenge := auth.MFADecision{Action: auth.MFAChallenge}
	setupRequired := auth.MFADecision{Action: auth.MFASetupRequired}
	blocked := auth.MFADecision{Action: auth.MFABlocked}
	tests := []struct {
		pattern                           string
		challenge, setupRequired, blocked bool
	}{
		{"POST /signout", true, true, true},
		{"POST /api/v1/signout", true, true, true},
		{"GET /api/v1/me", true, true, true},
		{"GET /api/v1/me/assurance", true, true, true},
		{"GET /mfa/setup", true, true, true},
		{"GET /mfa/challenge", true, true, false},
		{"POST /mfa/challenge", true, true, false},
		{"POST /api/v1/mfa/challenge/verify", true, true, false},
		{"POST /mfa/challenge/passkey/finish", true, true, false},
		{"GET /mfa/recovery", true, true, false},
		{"GET /mfa/recover", true, true, false},
		{"POST /api/v1/me/recovery/redeem", true, true, false},
		{"POST /mfa/setup/totp", false, true, false},
		{"POST /mfa/setup/totp/confirm", false, true, false},
		{"GET /mfa/setup/totp/qr", false, true, false},
		{"POST /api/v1/me/factors/totp", false, true, false},
		{"POST /mfa/backup-codes/download", false, true, false},
		{"GET /account", false, false, false},
		{"GET /account/security", false, false, false},
		{"POST /account/security/backup-codes", false, false, false},
		{"GET /api/v1/me/sessions", false, false, false},
		{"GET /api/v1/me/devices", false, false, false},
		{"GET /admin/recovery", false, false, false},
		{"POST /api/v1/recovery-requests/{id}/approve", false, false, false},
		{"GET /oidc-login", false, false, false},
	}
	registered := map[string]bool{}
	for _, p := range s.Patterns() {
		registered[p] = true
	}
	for _, tt := range tests {
		if !registered[tt.pattern] {
			t.Errorf("%s is not a route", tt.pattern)
		}
		c := mfaClassOf(tt.pattern)
		for _, x := range []struct {
			d    auth.MFADecision
			want bool
		}{{challenge, tt.challenge}, {setupRequired, tt.setupRequired}, {blocked, tt.blocked}} {
			if got := c.allows(x.d); got != x.want {
				t.Errorf("%s in state %s: allowed %t, want %t", tt.pattern, x.d.Action, got, x.want)
			}
		}
		for _, a := range []auth.MFAAction{auth.MFAAllow, auth.MFAPrompt, auth.MFASetup} {
			if !c.allows(auth.MFADecision{Action: a}) {
				t.Errorf("%s refused in state %s", tt.pattern, a)
			}
		}
	}
	// Nothing an administrator does is open to a session without its factor.
	for p := range registered {
		if (strings.Contains(p, "/admin/") || strings.Contains(p, "/users") || strings.Contains(p, "recovery-requests")) && mfaClassOf(p) != mfaFull {
			t.Errorf("%s is reachable before the second factor", p)
		}
	}
}

func TestMFACache(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := &mfaCache{ttl: 2 * time.Second, users: map[string]mfaFacts{}}
	c.put("u", mfaFacts{methods: []string{auth.MethodTOTP}, at: now})
	if f, ok := c.get("u", now.Add(time.Second)); !ok || f.methods[0] != auth.MethodTOTP {
		t.Fatal("a fresh entry was not found")
	}
	if _, ok := c.get("u", now.Add(2*time.Second)); ok {
		t.Error("an entry outlived its TTL")
	}
	if _, ok := c.get("u", now.Add(-time.Second)); ok {
		t.Error("an entry from the future (a clock step back) was used")
	}
	c.forget("u")
	if _, ok := c.get("u", now); ok {
		t.Error("a forgotten entry was found")
	}
	off := &mfaCache{ttl: -1, users: map[string]mfaFacts{}}
	off.put("u", mfaFacts{at: now})
	if _, ok := off.get("u", now); ok {
		t.Error("a disabled cache kept an entry")
	}
	for i := range maxMFACache + 1 {
		c.put(string(rune(i)), mfaFacts{at: now})
	}
	if len(c.users) > maxMFACache {
		t.Errorf("the cache holds %d entries, over its bound", len(c.users))
	}
}

func TestTimeLeft(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		-time.Second:                    "no time left",
		30 * time.Second:                "1 minute left",
		40*time.Minute + 20*time.Second: "40 minutes left",
		24*time.Hour - time.Millisecond: "24 hours left",
		23*time.Hour + 20*time.Minute:   "23 hours left",
		48*time.Hour - 3*time.Minute:    "48 hours left",
		5*24*time.Hour + 2*time.Hour:    "5 days left",
	} {
		if got := timeLeft(d); got != want {
			t.Errorf("timeLeft(%s) = %q, want %q", d, got, want)
		}
	}
}
