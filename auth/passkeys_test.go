package auth_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/webauthn"
	"github.com/hestami/hestami/webauthn/webauthntest"
)

const passkeyOrigin = "http://localhost:8443"

// passkeyClock is the injected clock of the passkey tests.
type passkeyClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *passkeyClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *passkeyClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// passkeyEnv is Passkeys over a real relying party and a fresh PostgreSQL
// database, with two users.
type passkeyEnv struct {
	pk         *auth.Passkeys
	store      *postgres.AuthStore
	factors    *postgres.MFAStore
	clock      *passkeyClock
	alice, bob *auth.User
}

var passkeyClient = auth.Client{IP: "203.0.113.7", UserAgent: "webauthntest"}

func newPasskeyEnv(t *testing.T) *passkeyEnv {
	t.Helper()
	pool, err := postgres.OpenPool(t.Context(), pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	e := &passkeyEnv{
		store: postgres.NewAuthStore(pool), factors: postgres.NewMFAStore(pool),
		clock: &passkeyClock{t: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := auth.NewService(e.store, nil, auth.DefaultConfig(), e.clock.Now, logger)
	rp, err := webauthn.New(webauthn.Config{PublicURL: passkeyOrigin})
	if err != nil {
		t.Fatal(err)
	}
	e.pk = auth.NewPasskeys(rp, e.factors, postgres.NewPasskeyStore(pool), svc.Audit, e.clock.Now, logger)
	for _, u := range []**auth.User{&e.alice, &e.bob} {
		*u = &auth.User{Type: auth.TypeStaff, Email: "user" + strings.ToLower(auth.NewToken()[:8]) + "@example.com", Name: "Test User"}
		if err := e.store.CreateUser(t.Context(), *u, nil); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// register adds a passkey held by a for u and returns its factor.
func (e *passkeyEnv) register(t *testing.T, a *webauthntest.Authenticator, u *auth.User, name string) *auth.Factor {
	t.Helper()
	opts, id, err := e.pk.BeginRegistration(t.Context(), u, name, passkeyClient)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	f, err := e.pk.FinishRegistration(t.Context(), u, id, resp, passkeyClient)
	if err != nil {
		t.Fatalf("FinishRegistration: %v", err)
	}
	return f
}

// begin starts an assertion for u and returns a's answer and the ceremony id.
func (e *passkeyEnv) begin(t *testing.T, a *webauthntest.Authenticator, u *auth.User) (resp []byte, ceremony string) {
	t.Helper()
	opts, id, err := e.pk.BeginAssertion(t.Context(), u, passkeyClient)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = a.Get(opts)
	if err != nil {
		t.Fatal(err)
	}
	return resp, id
}

// lastAudit returns u's newest audit event with action.
func (e *passkeyEnv) lastAudit(t *testing.T, u *auth.User, action string) *auth.AuditEvent {
	t.Helper()
	evs, err := e.store.AuditEvents(t.Context(), auth.AuditFilter{UserID: u.ID, Action: action, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		t.Fatalf("no %s event for the user", action)
	}
	return evs[0]
}

func wantPasskeyCode(t *testing.T, what string, err error, code auth.Code) {
	t.Helper()
	if got := auth.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

func passkeySignCount(t *testing.T, f *auth.Factor) uint32 {
	t.Helper()
	var c struct {
		Authenticator struct {
			SignCount uint32 `json:"signCount"`
		} `json:"authenticator"`
	}
	if err := json.Unmarshal(f.Data, &c); err != nil {
		t.Fatalf("factor data is not a credential: %v", err)
	}
	return c.Authenticator.SignCount
}

func TestPasskeyRegisterThenAssert(t *testing.T) {
	t.Parallel()
	e := newPasskeyEnv(t)
	ctx := t.Context()
	a := webauthntest.New(passkeyOrigin)
	f := e.register(t, a, e.alice, "  Work \t laptop ")
	if f.Method != auth.MethodWebAuthn || f.Label != "Work laptop" || !f.Confirmed || f.Data != nil || f.ID == "" {
		t.Errorf("registered factor: method %q label %q confirmed %t data %d bytes id %q", f.Method, f.Label, f.Confirmed, len(f.Data), f.ID)
	}
	ev := e.lastAudit(t, e.alice, "mfa.webauthn.enrol")
	if ev.Outcome != auth.OutcomeSuccess || ev.IP != passkeyClient.IP || !strings.Contains(ev.Detail, "Work laptop") {
		t.Errorf("enrol audit event: %+v", ev)
	}
	e.lastAudit(t, e.alice, "mfa.webauthn.enrol.begin")

	b := webauthntest.New(passkeyOrigin)
	second := e.register(t, b, e.alice, "")
	if second.Label != "Passkey" {
		t.Errorf("a passkey without a name is labelled %q, want Passkey", second.Label)
	}

	for i := 1; i <= 2; i++ {
		e.clock.Add(time.Minute)
		resp, id := e.begin(t, a, e.alice)
		if err := e.pk.FinishAssertion(ctx, e.alice, id, resp, passkeyClient); err != nil {
			t.Fatalf("assertion %d: %v", i, err)
		}
		stored, err := e.factors.Factor(ctx, e.alice.ID, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		if n := passkeySignCount(t, stored); n != uint32(i) {
			t.Errorf("after assertion %d the stored sign count is %d", i, n)
		}
		if !stored.LastUsedAt.Equal(e.clock.Now()) {
			t.Errorf("after assertion %d LastUsedAt = %v, want %v", i, stored.LastUsedAt, e.clock.Now())
		}
	}
	if ev := e.lastAudit(t, e.alice, "mfa.webauthn.verify"); ev.Outcome != auth.OutcomeSuccess || !strings.Contains(ev.Detail, f.ID) {
		t.Errorf("verify audit event: %+v", ev)
	}
	e.lastAudit(t, e.alice, "mfa.webauthn.verify.begin")

	// The second passkey works too, and only its own counter moves.
	resp, id := e.begin(t, b, e.alice)
	if err := e.pk.FinishAssertion(ctx, e.alice, id, resp, passkeyClient); err != nil {
		t.Fatalf("assertion with the second passkey: %v", err)
	}
	for _, c := range []struct {
		f    *auth.Factor
		want uint32
	}{{f, 2}, {second, 1}} {
		stored, err := e.factors.Factor(ctx, e.alice.ID, c.f.ID)
		if err != nil {
			t.Fatal(err)
		}
		if n := passkeySignCount(t, stored); n != c.want {
			t.Errorf("%s: sign count %d, want %d", c.f.Label, n, c.want)
		}
	}
}

func TestPasskeyCeremonyRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// run returns the error of a FinishAssertion that must fail, and the
		// audit detail it must record.
		run    func(t *testing.T, e *passkeyEnv, a *webauthntest.Authenticator) error
		code   auth.Code
		detail string
	}{
		{"replayed ceremony", func(t *testing.T, e *passkeyEnv, a *webauthntest.Authenticator) error {
			resp, id := e.begin(t, a, e.alice)
			if err := e.pk.FinishAssertion(t.Context(), e.alice, id, resp, passkeyClient); err != nil {
				t.Fatal(err)
			}
			return e.pk.FinishAssertion(t.Context(), e.alice, id, resp, passkeyClient)
		}, auth.CodeUnauthorized, "unknown or already used ceremony"},
		{"expired ceremony", func(t *testing.T, e *passkeyEnv, a *webauthntest.Authenticator) error {
			resp, id := e.begin(t, a, e.alice)
			e.clock.Add(auth.PasskeyCeremonyTimeout)
			return e.pk.FinishAssertion(t.Context(), e.alice, id, resp, passkeyClient)
		}, auth.CodeUnauthorized, "ceremony expired"},
		{"no ceremony id", func(t *testing.T, e *passkeyEnv, a *webauthntest.Authenticator) error {
			resp, _ := e.begin(t, a, e.alice)
			return e.pk.FinishAssertion(t.Context(), e.alice, "", resp, passkeyClient)
		}, auth.CodeUnauthorized, "no ceremony id"},
		{"another user's ceremony", func(t *testing.T, e *passkeyEnv, a *webauthntest.Authenticator) error {
			resp, id := e.begin(t, a, e.alice)
			return e.pk.FinishAssertion(t.Context(), e.bob, id, resp, passkeyClient)
		}, auth.CodeUnauthorized, "ceremony begun by another user"},
		{"registration ceremony used for an assertion", func(t *testing.T, e *passkeyEnv, a *webauthntest.Authenticator) error {
			_, id, err := e.pk.BeginRegistration(t.Context(), e.alice, "", passkeyClient)
			if err != nil {
				t.Fatal(err)
			}
			resp, _ := e.begin(t, a, e.alice)
			return e.pk.FinishAssertion(t.Context(), e.alice, id, resp, passkeyClient)
		}, auth.CodeUnauthorized, "ceremony begun as a registration"},
		{"wrong origin", func(t *testing.T, e *passkeyEnv, a *webauthntest.Authenticator) error {
			a.Origin = "https://hestami-login.example"
			resp, id := e.begin(t, a, e.alice)
			return e.pk.FinishAssertion(t.Context(), e.alice, id, resp, passkeyClient)
		}, auth.CodeUnauthorized, "Error validating origin"},
		{"another user's credential", func(t *testing.T, e *passkeyEnv, a *webauthntest.Authenticator) error {
			bobs := webauthntest.New(passkeyOrigin)
			e.register(t, bobs, e.bob, "Bob's key")
			opts, id, err := e.pk.BeginAssertion(t.Context(), e.alice, passkeyClient)
			if err != nil {
				t.Fatal(err)
			}
			var o struct {
				PublicKey struct {
					Challenge string `json:"challenge"`
				} `json:"publicKey"`
			}
			if err := json.Unmarshal(opts, &o); err != nil {
				t.Fatal(err)
			}
			resp, err := bobs.Sign(bobs.Credentials()[0], "localhost", o.PublicKey.Challenge, 1)
			if err != nil {
				t.Fatal(err)
			}
			return e.pk.FinishAssertion(t.Context(), e.alice, id, resp, passkeyClient)
		}, auth.CodeUnauthorized, "answer rejected"},
		{"counter going backwards", func(t *testing.T, e *passkeyEnv, a *webauthntest.Authenticator) error {
			for range 3 {
				resp, id := e.begin(t, a, e.alice)
				if err := e.pk.FinishAssertion(t.Context(), e.alice, id, resp, passkeyClient); err != nil {
					t.Fatal(err)
				}
			}
			a.Credentials()[0].Counter = 1
			resp, id := e.begin(t, a, e.alice)
			return e.pk.FinishAssertion(t.Context(), e.alice, id, resp, passkeyClient)
		}, auth.CodeUnauthorized, "signature counter went backwards (stored 3, got 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newPasskeyEnv(t)
			a := webauthntest.New(passkeyOrigin)
			e.register(t, a, e.alice, "Phone")
			err := tc.run(t, e, a)
			wantPasskeyCode(t, "FinishAssertion", err, tc.code)
			if msg := auth.ErrorMessage(err); !strings.Contains(msg, "passkey") {
				t.Errorf("message for the person %q does not say what failed", msg)
			}
			// The refusal is audited for the user who tried.
			u := e.alice
			if tc.name == "another user's ceremony" {
				u = e.bob
			}
			ev := e.lastAudit(t, u, "mfa.webauthn.verify")
			if ev.Outcome != auth.OutcomeFailure || !strings.Contains(ev.Detail, tc.detail) {
				t.Errorf("audit event %q %q, want failure with %q", ev.Outcome, ev.Detail, tc.detail)
			}
		})
	}
}

func TestPasskeyExpiryBoundary(t *testing.T) {
	t.Parallel()
	e := newPasskeyEnv(t)
	a := webauthntest.New(passkeyOrigin)
	e.register(t, a, e.alice, "Phone")
	resp, id := e.begin(t, a, e.alice)
	e.clock.Add(auth.PasskeyCeremonyTimeout - time.Second)
	if err := e.pk.FinishAssertion(t.Context(), e.alice, id, resp, passkeyClient); err != nil {
		t.Errorf("an assertion finished 4m59s after it began was refused: %v", err)
	}
	opts, rid, err := e.pk.BeginRegistration(t.Context(), e.alice, "Laptop", passkeyClient)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := webauthntest.New(passkeyOrigin).Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(auth.PasskeyCeremonyTimeout)
	_, err = e.pk.FinishRegistration(t.Context(), e.alice, rid, reg, passkeyClient)
	wantPasskeyCode(t, "FinishRegistration after five minutes", err, auth.CodeUnauthorized)
	if ev := e.lastAudit(t, e.alice, "mfa.webauthn.enrol"); ev.Outcome != auth.OutcomeFailure || ev.Detail != "ceremony expired" {
		t.Errorf("audit event %q %q", ev.Outcome, ev.Detail)
	}
}

func TestPasskeyCloneStaysFlagged(t *testing.T) {
	t.Parallel()
	e := newPasskeyEnv(t)
	a := webauthntest.New(passkeyOrigin)
	e.register(t, a, e.alice, "Phone")
	use := func() error {
		resp, id := e.begin(t, a, e.alice)
		return e.pk.FinishAssertion(t.Context(), e.alice, id, resp, passkeyClient)
	}
	for range 2 {
		if err := use(); err != nil {
			t.Fatal(err)
		}
	}
	a.Credentials()[0].Counter = 0 // the copy signs with 1, after 2
	wantPasskeyCode(t, "a copied key", use(), auth.CodeUnauthorized)
	a.Credentials()[0].Counter = 50 // and then jumps ahead
	wantPasskeyCode(t, "the flagged passkey later", use(), auth.CodeUnauthorized)
}

func TestPasskeyRegistrationRefusals(t *testing.T) {
	t.Parallel()
	e := newPasskeyEnv(t)
	ctx := t.Context()

	_, _, err := e.pk.BeginRegistration(ctx, e.alice, strings.Repeat("k", 65), passkeyClient)
	wantPasskeyCode(t, "a 65-character name", err, auth.CodeInvalid)
	_, _, err = e.pk.BeginRegistration(ctx, e.alice, "bad\x00name", passkeyClient)
	wantPasskeyCode(t, "a name with a control character", err, auth.CodeInvalid)

	_, _, err = e.pk.BeginAssertion(ctx, e.alice, passkeyClient)
	wantPasskeyCode(t, "BeginAssertion without a passkey", err, auth.CodeNotFound)

	// A registration answer from another site.
	opts, id, err := e.pk.BeginRegistration(ctx, e.alice, "Laptop", passkeyClient)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := webauthntest.New("https://evil.example").Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.pk.FinishRegistration(ctx, e.alice, id, resp, passkeyClient)
	wantPasskeyCode(t, "a registration from another origin", err, auth.CodeUnauthorized)

	// A registration answer replayed into a second ceremony.
	a := webauthntest.New(passkeyOrigin)
	opts, id, err = e.pk.BeginRegistration(ctx, e.alice, "Laptop", passkeyClient)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err = a.Create(opts); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pk.FinishRegistration(ctx, e.alice, id, resp, passkeyClient); err != nil {
		t.Fatal(err)
	}
	_, err = e.pk.FinishRegistration(ctx, e.alice, id, resp, passkeyClient)
	wantPasskeyCode(t, "the same registration again", err, auth.CodeUnauthorized)

	// Bob cannot finish a registration alice began.
	opts, id, err = e.pk.BeginRegistration(ctx, e.alice, "Laptop", passkeyClient)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err = webauthntest.New(passkeyOrigin).Create(opts); err != nil {
		t.Fatal(err)
	}
	_, err = e.pk.FinishRegistration(ctx, e.bob, id, resp, passkeyClient)
	wantPasskeyCode(t, "bob finishing alice's registration", err, auth.CodeUnauthorized)

	fs, err := e.factors.Factors(ctx, e.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 {
		t.Errorf("alice has %d factors after one good registration, want 1", len(fs))
	}
	if fs, _ := e.factors.Factors(ctx, e.bob.ID); len(fs) != 0 {
		t.Errorf("bob has %d factors, want none", len(fs))
	}
	var actions []string
	evs, err := e.store.AuditEvents(ctx, auth.AuditFilter{UserID: e.alice.ID, Action: "mfa.webauthn.enrol"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		actions = append(actions, ev.Outcome)
	}
	if want := []string{auth.OutcomeFailure, auth.OutcomeSuccess, auth.OutcomeFailure}; !slices.Equal(actions, want) {
		t.Errorf("alice's enrol outcomes, newest first: %v, want %v", actions, want)
	}
}

func TestPasskeyLimit(t *testing.T) {
	t.Parallel()
	e := newPasskeyEnv(t)
	for i := range auth.MaxPasskeys {
		if err := e.factors.CreateFactor(t.Context(), &auth.Factor{UserID: e.alice.ID, Method: auth.MethodWebAuthn, Label: "key", Data: []byte("{}"), Confirmed: true}); err != nil {
			t.Fatalf("factor %d: %v", i, err)
		}
	}
	_, _, err := e.pk.BeginRegistration(t.Context(), e.alice, "one more", passkeyClient)
	wantPasskeyCode(t, "BeginRegistration past MaxPasskeys", err, auth.CodeConflict)
}
