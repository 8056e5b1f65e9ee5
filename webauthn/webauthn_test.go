package webauthn_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/webauthn"
	"github.com/hestami/hestami/webauthn/webauthntest"
)

const publicURL = "http://localhost:8443"

func newRP(t testing.TB) *webauthn.RelyingParty {
	t.Helper()
	rp, err := webauthn.New(webauthn.Config{PublicURL: publicURL})
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

var (
	alice = &auth.User{ID: "0b6f3c1e-8a43-4c5e-9a51-6f1d2a7c9e01", Email: "alice@example.com", Name: "Alice"}
	bob   = &auth.User{ID: "5d2e9f70-1c3b-4f8a-b6d4-2e7a9c0f1b32", Email: "bob@example.com"}
)

// register runs a registration ceremony for u with a and returns the stored
// credential.
func register(t *testing.T, rp *webauthn.RelyingParty, a *webauthntest.Authenticator, u *auth.User, existing [][]byte) []byte {
	t.Helper()
	opts, session, err := rp.BeginRegistration(u, existing)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := rp.FinishRegistration(u, existing, session, resp)
	if err != nil {
		t.Fatalf("FinishRegistration: %v", err)
	}
	return cred
}

func TestNewRefusesBadPublicURLs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, url string }{
		{"empty", ""},
		{"ip address", "http://127.0.0.1:8080"},
		{"path", "https://auth.example.com/auth"},
		{"scheme", "ftp://auth.example.com"},
		{"query", "https://auth.example.com?x=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := webauthn.New(webauthn.Config{PublicURL: tc.url}); err == nil {
				t.Errorf("New(%q) accepted it", tc.url)
			}
		})
	}
	rp, err := webauthn.New(webauthn.Config{PublicURL: "https://Auth.Hestami.example/"})
	if err != nil {
		t.Fatal(err)
	}
	if rp.RPID() != "auth.hestami.example" || rp.Origin() != "https://auth.hestami.example" {
		t.Errorf("RPID, Origin = %q, %q", rp.RPID(), rp.Origin())
	}
}

func TestRegistrationOptions(t *testing.T) {
	t.Parallel()
	rp := newRP(t)
	a := webauthntest.New(publicURL)
	first := register(t, rp, a, alice, nil)
	opts, _, err := rp.BeginRegistration(alice, [][]byte{first})
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		PublicKey struct {
			RP struct {
				ID, Name string
			} `json:"rp"`
			User struct {
				ID, Name, DisplayName string
			} `json:"user"`
			Attestation string `json:"attestation"`
			Selection   struct {
				ResidentKey      string `json:"residentKey"`
				UserVerification string `json:"userVerification"`
			} `json:"authenticatorSelection"`
			Exclude []struct{ ID string } `json:"excludeCredentials"`
			Timeout int                   `json:"timeout"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(opts, &o); err != nil {
		t.Fatal(err)
	}
	pk := o.PublicKey
	checks := []struct {
		what      string
		got, want any
	}{
		{"rp.id", pk.RP.ID, "localhost"},
		{"rp.name", pk.RP.Name, "Hestami"},
		{"user.name", pk.User.Name, alice.Email},
		{"user.displayName", pk.User.DisplayName, alice.Name},
		{"attestation", pk.Attestation, "none"},
		{"residentKey", pk.Selection.ResidentKey, "preferred"},
		{"userVerification", pk.Selection.UserVerification, "preferred"},
		{"excluded", len(pk.Exclude), 1},
		{"timeout", pk.Timeout, 300000},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	// The browser refuses to register the same authenticator twice.
	if _, err := a.Create(opts); !errors.Is(err, webauthntest.ErrExcluded) {
		t.Errorf("Create with the registered credential excluded: %v, want ErrExcluded", err)
	}
}

func TestRegisterThenAssert(t *testing.T) {
	t.Parallel()
	rp := newRP(t)
	a := webauthntest.New(publicURL)
	creds := [][]byte{register(t, rp, a, alice, nil)}
	other := webauthntest.New(publicURL)
	creds = append(creds, register(t, rp, other, alice, creds))
	for i, auth := range []*webauthntest.Authenticator{a, other} {
		opts, session, err := rp.BeginLogin(alice, creds)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := auth.Get(opts)
		if err != nil {
			t.Fatal(err)
		}
		res, err := rp.FinishLogin(alice, creds, session, resp)
		if err != nil {
			t.Fatalf("FinishLogin with authenticator %d: %v", i, err)
		}
		if res.Index != i || res.CloneWarning || res.Count != 1 {
			t.Errorf("authenticator %d: index %d, clone warning %t, count %d; want %d, false, 1", i, res.Index, res.CloneWarning, res.Count, i)
		}
		creds[i] = res.Data
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	rp := newRP(t)
	for _, tc := range []struct {
		name string
		// mutate changes the authenticator (or the response) before the
		// assertion.
		assert func(t *testing.T, a *webauthntest.Authenticator, opts []byte) []byte
	}{
		{"wrong origin", func(t *testing.T, a *webauthntest.Authenticator, opts []byte) []byte {
			a.Origin = "http://localhost.evil.example:8443"
			return get(t, a, opts)
		}},
		{"other site's RP ID", func(t *testing.T, a *webauthntest.Authenticator, opts []byte) []byte {
			a.RPID = "evil.example"
			return get(t, a, opts)
		}},
		{"other challenge", func(t *testing.T, a *webauthntest.Authenticator, opts []byte) []byte {
			c := a.Credentials()[0]
			b, err := a.Sign(c, "localhost", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", c.Counter+1)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"tampered signature", func(t *testing.T, a *webauthntest.Authenticator, opts []byte) []byte {
			var m map[string]any
			if err := json.Unmarshal(get(t, a, opts), &m); err != nil {
				t.Fatal(err)
			}
			r := m["response"].(map[string]any)
			sig := []byte(r["signature"].(string))
			sig[len(sig)/2] ^= 1
			r["signature"] = string(sig)
			b, _ := json.Marshal(m)
			return b
		}},
		{"garbage", func(t *testing.T, a *webauthntest.Authenticator, opts []byte) []byte {
			return []byte(`{"id":"x"}`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := webauthntest.New(publicURL)
			creds := [][]byte{register(t, rp, a, alice, nil)}
			opts, session, err := rp.BeginLogin(alice, creds)
			if err != nil {
				t.Fatal(err)
			}
			resp := tc.assert(t, a, opts)
			if _, err := rp.FinishLogin(alice, creds, session, resp); !errors.Is(err, auth.ErrWebAuthnRejected) {
				t.Errorf("FinishLogin = %v, want ErrWebAuthnRejected", err)
			}
		})
	}
}

// challenge returns the options' challenge (base64url).
func challenge(t *testing.T, opts []byte) string {
	t.Helper()
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(opts, &o); err != nil || o.PublicKey.Challenge == "" {
		t.Fatalf("options without a challenge: %v %s", err, opts)
	}
	return o.PublicKey.Challenge
}

// withClientData returns resp with its clientDataJSON replaced.
func withClientData(t *testing.T, resp []byte, typ, challenge, origin string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(resp, &m); err != nil {
		t.Fatal(err)
	}
	cd, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": origin, "crossOrigin": false})
	m["response"].(map[string]any)["clientDataJSON"] = base64.RawURLEncoding.EncodeToString(cd)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func get(t *testing.T, a *webauthntest.Authenticator, opts []byte) []byte {
	t.Helper()
	b, err := a.Get(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegistrationRefusals(t *testing.T) {
	t.Parallel()
	rp := newRP(t)
	a := webauthntest.New(publicURL)
	existing := [][]byte{register(t, rp, a, alice, nil)}

	t.Run("wrong origin", func(t *testing.T) {
		evil := webauthntest.New("https://hestami.evil.example")
		opts, session, err := rp.BeginRegistration(alice, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := evil.Create(opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.FinishRegistration(alice, nil, session, resp); !errors.Is(err, auth.ErrWebAuthnRejected) || !strings.Contains(err.Error(), "origin") {
			t.Errorf("FinishRegistration from another origin = %v, want ErrWebAuthnRejected about the origin", err)
		}
	})
	t.Run("session of another user", func(t *testing.T) {
		opts, session, err := rp.BeginRegistration(bob, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := webauthntest.New(publicURL).Create(opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rp.FinishRegistration(alice, nil, session, resp); !errors.Is(err, auth.ErrWebAuthnRejected) {
			t.Errorf("FinishRegistration of bob's session as alice = %v, want ErrWebAuthnRejected", err)
		}
	})
	t.Run("registered already", func(t *testing.T) {
		// A client that ignores excludeCredentials sends a credential the user
		// has already. With attestation "none" nothing signs the client data at
		// registration, so it can answer a new challenge with an old
		// attestation object.
		opts, session, err := rp.BeginRegistration(alice, nil)
		if err != nil {
			t.Fatal(err)
		}
		first, err := webauthntest.New(publicURL).Create(opts)
		if err != nil {
			t.Fatal(err)
		}
		cred, err := rp.FinishRegistration(alice, nil, session, first)
		if err != nil {
			t.Fatal(err)
		}
		opts, session, err = rp.BeginRegistration(alice, nil)
		if err != nil {
			t.Fatal(err)
		}
		again := withClientData(t, first, "webauthn.create", challenge(t, opts), publicURL)
		if _, err := rp.FinishRegistration(alice, append(existing, cred), session, again); !errors.Is(err, auth.ErrConflict) {
			t.Errorf("FinishRegistration of a registered credential = %v, want ErrConflict", err)
		}
		// The same answer for a user who does not have it is fine: the check
		// is the duplicate, not the forged client data.
		if _, err := rp.FinishRegistration(alice, existing, session, again); err != nil {
			t.Errorf("FinishRegistration of the re-sent credential without the duplicate: %v", err)
		}
	})
}

func TestAssertionWithAnotherUsersCredential(t *testing.T) {
	t.Parallel()
	rp := newRP(t)
	aliceKey, bobKey := webauthntest.New(publicURL), webauthntest.New(publicURL)
	aliceCreds := [][]byte{register(t, rp, aliceKey, alice, nil)}
	register(t, rp, bobKey, bob, nil)

	opts, session, err := rp.BeginLogin(alice, aliceCreds)
	if err != nil {
		t.Fatal(err)
	}
	// Bob's authenticator holds none of alice's credentials; sign with bob's
	// credential over alice's challenge anyway.
	if _, err := bobKey.Get(opts); !errors.Is(err, webauthntest.ErrNoCredential) {
		t.Fatalf("bob's authenticator answered alice's options: %v", err)
	}
	resp, err := bobKey.Sign(bobKey.Credentials()[0], "localhost", challenge(t, opts), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.FinishLogin(alice, aliceCreds, session, resp); !errors.Is(err, auth.ErrWebAuthnRejected) {
		t.Errorf("FinishLogin with bob's credential for alice = %v, want ErrWebAuthnRejected", err)
	}
}

func TestCounterGoingBackwardsIsFlagged(t *testing.T) {
	t.Parallel()
	rp := newRP(t)
	a := webauthntest.New(publicURL)
	creds := [][]byte{register(t, rp, a, alice, nil)}
	login := func() *auth.WebAuthnAssertion {
		t.Helper()
		opts, session, err := rp.BeginLogin(alice, creds)
		if err != nil {
			t.Fatal(err)
		}
		res, err := rp.FinishLogin(alice, creds, session, get(t, a, opts))
		if err != nil {
			t.Fatal(err)
		}
		creds[0] = res.Data
		return res
	}
	for i := 1; i <= 3; i++ {
		if res := login(); res.CloneWarning || res.Count != uint32(i) || res.StoredCount != uint32(i-1) {
			t.Fatalf("use %d: clone warning %t, count %d, stored %d", i, res.CloneWarning, res.Count, res.StoredCount)
		}
	}
	a.Credentials()[0].Counter = 1 // a copy of the key, taken after its first use
	if res := login(); !res.CloneWarning || res.Count != 2 || res.StoredCount != 3 {
		t.Fatalf("counter 2 after 3: clone warning %t, count %d, stored %d; want true, 2, 3", res.CloneWarning, res.Count, res.StoredCount)
	}
	a.Credentials()[0].Counter = 100
	if res := login(); !res.CloneWarning {
		t.Error("the clone warning went away once the counter went up again; it must stay until the passkey is replaced")
	}
}
