package auth_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
	"github.com/hestami/hestami/totp"
)

// facClock is the injected clock of the Factors tests.
type facClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *facClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *facClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// facFixture is Factors over a real PostgreSQL database.
type facFixture struct {
	pool   *pgxpool.Pool
	users  *postgres.AuthStore
	store  *postgres.MFAStore
	svc    *auth.Service
	clock  *facClock
	keys   map[string][]byte
	logs   *syncBuffer
	client auth.Client
}

// syncBuffer is a bytes.Buffer for a logger written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFacFixture(t *testing.T) *facFixture {
	t.Helper()
	pool, err := postgres.OpenPool(t.Context(), pgtest.Database(t)+"&pool_max_conns=24")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	fx := &facFixture{
		pool: pool, users: postgres.NewAuthStore(pool), store: postgres.NewMFAStore(pool),
		// Whole seconds, 10 s into a 30 s step.
		clock:  &facClock{t: time.Date(2031, 5, 6, 7, 8, 10, 0, time.UTC)},
		keys:   map[string][]byte{"k1": sealKey(t), "k2": sealKey(t)},
		logs:   &syncBuffer{},
		client: auth.Client{IP: "198.51.100.7", UserAgent: "factors-test"},
	}
	fx.svc = auth.NewService(fx.users, nil, auth.DefaultConfig(), fx.clock.now, slog.New(slog.NewTextHandler(fx.logs, nil)))
	return fx
}

// factors returns Factors sealing with primary, opening with the keys listed.
func (fx *facFixture) factors(t *testing.T, primary string, ring ...string) *auth.Factors {
	t.Helper()
	keys := map[string][]byte{}
	for _, id := range append(ring, primary) {
		keys[id] = fx.keys[id]
	}
	s, err := auth.NewSealer(keys, primary)
	if err != nil {
		t.Fatal(err)
	}
	return auth.NewFactors(auth.FactorsConfig{}, fx.store, s, totp.Authenticator{}, fx.svc.Audit, fx.clock.now, slog.New(slog.NewTextHandler(fx.logs, nil)))
}

func (fx *facFixture) user(t *testing.T, typ auth.UserType, email string, roles ...string) *auth.User {
	t.Helper()
	u := &auth.User{Type: typ, Email: email, EmailVerified: true, Name: email, Roles: roles}
	if err := fx.users.CreateUser(t.Context(), u, nil); err != nil {
		t.Fatal(err)
	}
	return u
}

// events returns u's audit events with action, oldest first.
func (fx *facFixture) events(t *testing.T, u *auth.User, action string) []*auth.AuditEvent {
	t.Helper()
	evs, err := fx.users.AuditEvents(t.Context(), auth.AuditFilter{UserID: u.ID, Action: action})
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	return evs
}

// summary is "outcome:detail" of each event.
func summary(evs []*auth.AuditEvent) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Outcome+":"+e.Detail)
	}
	return out
}

func code(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.Code(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantCode(t *testing.T, what string, err error, want auth.Code) {
	t.Helper()
	if want == "" && err != nil || want != "" && auth.ErrorCode(err) != want {
		t.Fatalf("%s: err = %v (code %q), want code %q", what, err, auth.ErrorCode(err), want)
	}
}

// enrol sets up an authenticator app for u and returns its secret, at the
// clock's time, and moves the clock to the next step.
func (fx *facFixture) enrol(t *testing.T, f *auth.Factors, u *auth.User) (string, *auth.TOTPEnrolment) {
	t.Helper()
	e, err := f.BeginTOTP(t.Context(), u, fx.client)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ConfirmTOTP(t.Context(), u, e.FactorID, code(t, e.Secret, fx.clock.now()), fx.client); err != nil {
		t.Fatal(err)
	}
	fx.clock.add(30 * time.Second)
	return e.Secret, e
}

func TestFactorsTOTPSetupAndVerify(t *testing.T) {
	t.Parallel()
	fx := newFacFixture(t)
	f := fx.factors(t, "k1")
	ann := fx.user(t, auth.TypeStaff, "ann@hestami.example")
	ctx := t.Context()

	e, err := f.BeginTOTP(ctx, ann, fx.client)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.URL, "otpauth://totp/Hestami:ann@hestami.example?") || !strings.Contains(e.URL, "secret="+e.Secret) || !strings.Contains(e.URL, "issuer=Hestami") {
		t.Errorf("URL %s: want otpauth://totp/Hestami:ann@hestami.example with the secret and issuer", e.URL)
	}
	stored, err := fx.store.Factor(ctx, ann.ID, e.FactorID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Confirmed || stored.Method != auth.MethodTOTP || bytes.Contains(stored.Data, []byte(e.Secret)) || len(stored.Data) < 40 {
		t.Errorf("stored factor: confirmed %t, method %s, %d bytes of data; want unconfirmed otp with the secret sealed", stored.Confirmed, stored.Method, len(stored.Data))
	}
	if got, _ := f.List(ctx, ann); len(got) != 0 {
		t.Errorf("List shows %d factors before the setup is confirmed, want none", len(got))
	}
	now := fx.clock.now()
	wantCode(t, "VerifyTOTP before confirming", f.VerifyTOTP(ctx, ann, code(t, e.Secret, now), fx.client), auth.CodeNotFound)
	wantCode(t, "ConfirmTOTP with a wrong code", f.ConfirmTOTP(ctx, ann, e.FactorID, code(t, e.Secret, now.Add(-time.Hour)), fx.client), auth.CodeUnauthorized)
	wantCode(t, "ConfirmTOTP with letters", f.ConfirmTOTP(ctx, ann, e.FactorID, "12345x", fx.client), auth.CodeInvalid)
	wantCode(t, "ConfirmTOTP of another user's setup", f.ConfirmTOTP(ctx, fx.user(t, auth.TypeOwner, "bob@example.com"), e.FactorID, code(t, e.Secret, now), fx.client), auth.CodeNotFound)
	first := code(t, e.Secret, now)
	wantCode(t, "ConfirmTOTP", f.ConfirmTOTP(ctx, ann, e.FactorID, first[:3]+" "+first[3:], fx.client), "")
	wantCode(t, "ConfirmTOTP again", f.ConfirmTOTP(ctx, ann, e.FactorID, first, fx.client), auth.CodeConflict)

	list, err := f.List(ctx, ann)
	if err != nil || len(list) != 1 || list[0].ID != e.FactorID || !list[0].Confirmed || list[0].Data != nil || list[0].Label != "Authenticator app" {
		t.Fatalf("List = %+v, %v; want the confirmed app without its data", list, err)
	}
	if m, err := f.Methods(ctx, ann); err != nil || fmt.Sprint(m) != "[otp]" {
		t.Errorf("Methods = %v, %v; want [otp]", m, err)
	}

	// The code that confirmed the app does not sign in: it was used.
	wantCode(t, "VerifyTOTP with the confirming code", f.VerifyTOTP(ctx, ann, first, fx.client), auth.CodeUnauthorized)
	fx.clock.add(30 * time.Second)
	next := code(t, e.Secret, fx.clock.now())
	wantCode(t, "VerifyTOTP", f.VerifyTOTP(ctx, ann, next, fx.client), "")
	err = f.VerifyTOTP(ctx, ann, next, fx.client)
	wantCode(t, "VerifyTOTP replayed", err, auth.CodeUnauthorized)
	wrong := f.VerifyTOTP(ctx, ann, code(t, e.Secret, fx.clock.now().Add(time.Hour)), fx.client)
	if auth.ErrorMessage(err) != auth.ErrorMessage(wrong) {
		t.Errorf("a replayed code is told apart from a wrong one:\n%q\n%q", auth.ErrorMessage(err), auth.ErrorMessage(wrong))
	}
	if fac, _ := fx.store.Factor(ctx, ann.ID, e.FactorID); !fac.LastUsedAt.Equal(fx.clock.now()) || fac.LastStep != totp.Step(fx.clock.now()) {
		t.Errorf("factor last used %v at step %d; want %v, step %d", fac.LastUsedAt, fac.LastStep, fx.clock.now(), totp.Step(fx.clock.now()))
	}

	if got, want := summary(fx.events(t, ann, "mfa.totp.confirm")), []string{
		"failure:wrong code", "failure:malformed code", "success:factor " + e.FactorID,
	}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("confirm audit = %q, want %q", got, want)
	}
	if got, want := summary(fx.events(t, ann, "mfa.totp.verify")), []string{
		"failure:no authenticator app", "failure:replayed code", "success:factor " + e.FactorID, "failure:replayed code", "failure:wrong code",
	}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("verify audit = %q, want %q", got, want)
	}
	for _, ev := range fx.events(t, ann, "") {
		if ev.IP != fx.client.IP || ev.UserAgent != fx.client.UserAgent || ev.ActorID != ann.ID {
			t.Errorf("audit event %s: actor %s, IP %q, UA %q; want ann, the client's", ev.Action, ev.ActorID, ev.IP, ev.UserAgent)
		}
	}
	if l := fx.logs.String(); strings.Contains(l, e.Secret) || strings.Contains(l, next) || strings.Contains(l, first) {
		t.Errorf("the log shows a secret or a code:\n%s", l)
	}
}

func TestFactorsTOTPSkew(t *testing.T) {
	t.Parallel()
	fx := newFacFixture(t)
	f := fx.factors(t, "k1")
	ann := fx.user(t, auth.TypeStaff, "ann@hestami.example")
	secret, _ := fx.enrol(t, f, ann)
	fx.clock.add(10 * time.Minute)
	now := fx.clock.now()
	// In order of their steps: a code accepted at one step refuses codes of
	// earlier steps, which the order below never asks for.
	for _, tc := range []struct {
		name  string
		shift time.Duration
		want  auth.Code
	}{
		{"two steps behind", -60 * time.Second, auth.CodeUnauthorized},
		{"two steps ahead", 60 * time.Second, auth.CodeUnauthorized},
		{"one step behind (phone slow)", -30 * time.Second, ""},
		{"current step", 0, ""},
		{"one step ahead (phone fast)", 30 * time.Second, ""},
		{"current step again, after a later one", 0, auth.CodeUnauthorized},
	} {
		wantCode(t, tc.name, f.VerifyTOTP(t.Context(), ann, code(t, secret, now.Add(tc.shift)), fx.client), tc.want)
	}
}

func TestFactorsTOTPConcurrentVerify(t *testing.T) {
	t.Parallel()
	fx := newFacFixture(t)
	f := fx.factors(t, "k1")
	ann := fx.user(t, auth.TypeStaff, "ann@hestami.example")
	secret, _ := fx.enrol(t, f, ann)
	c := code(t, secret, fx.clock.now())
	var wg sync.WaitGroup
	results := make(chan error, 20)
	start := make(chan struct{})
	for range 20 {
		wg.Go(func() {
			<-start
			results <- f.VerifyTOTP(t.Context(), ann, c, fx.client)
		})
	}
	close(start)
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch auth.ErrorCode(err) {
		case "":
			ok++
		case auth.CodeUnauthorized:
		default:
			t.Errorf("VerifyTOTP: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of 20 concurrent uses of one code succeeded, want exactly 1", ok)
	}
}

func TestFactorsBeginTOTPReplacesAbandonedSetup(t *testing.T) {
	t.Parallel()
	fx := newFacFixture(t)
	f := fx.factors(t, "k1")
	ann := fx.user(t, auth.TypeStaff, "ann@hestami.example")
	first, err := f.BeginTOTP(t.Context(), ann, fx.client)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.BeginTOTP(t.Context(), ann, fx.client)
	if err != nil {
		t.Fatal(err)
	}
	if first.Secret == second.Secret || first.FactorID == second.FactorID {
		t.Fatal("a second setup reused the first one's secret or factor")
	}
	wantCode(t, "ConfirmTOTP of the abandoned setup", f.ConfirmTOTP(t.Context(), ann, first.FactorID, code(t, first.Secret, fx.clock.now()), fx.client), auth.CodeNotFound)
	wantCode(t, "ConfirmTOTP of the new setup", f.ConfirmTOTP(t.Context(), ann, second.FactorID, code(t, second.Secret, fx.clock.now()), fx.client), "")
	all, _ := fx.store.Factors(t.Context(), ann.ID)
	if len(all) != 1 {
		t.Errorf("%d factors stored, want 1", len(all))
	}
	// A confirmed app stays when another setup begins.
	if _, err := f.BeginTOTP(t.Context(), ann, fx.client); err != nil {
		t.Fatal(err)
	}
	if list, _ := f.List(t.Context(), ann); len(list) != 1 || list[0].ID != second.FactorID {
		t.Errorf("after another BeginTOTP, List = %v; want the confirmed app", list)
	}
}

func TestFactorsSecretBoundToItsRow(t *testing.T) {
	t.Parallel()
	fx := newFacFixture(t)
	f := fx.factors(t, "k1")
	ann, bob := fx.user(t, auth.TypeStaff, "ann@hestami.example"), fx.user(t, auth.TypeStaff, "bob@hestami.example")
	annSecret, annE := fx.enrol(t, f, ann)
	_, bobE := fx.enrol(t, f, bob)
	annFactor, err := fx.store.Factor(t.Context(), ann.ID, annE.FactorID)
	if err != nil {
		t.Fatal(err)
	}
	// Someone with write access to the database copies ann's sealed secret
	// (whose codes they know) over bob's.
	if err := fx.store.UpdateFactorData(t.Context(), bob.ID, bobE.FactorID, annFactor.Data); err != nil {
		t.Fatal(err)
	}
	err = f.VerifyTOTP(t.Context(), bob, code(t, annSecret, fx.clock.now()), fx.client)
	if err == nil || !errors.Is(err, auth.ErrSealBroken) || auth.ErrorCode(err) != auth.CodeInternal {
		t.Errorf("VerifyTOTP with another row's secret: %v; want an internal error wrapping ErrSealBroken", err)
	}
	if !strings.Contains(fx.logs.String(), "cannot open a totp secret") {
		t.Error("the failure to open a secret is not logged")
	}
	if got := summary(fx.events(t, bob, "mfa.totp.verify")); fmt.Sprint(got) != "[failure:secret cannot be opened]" {
		t.Errorf("bob's verify audit = %q", got)
	}
}

func TestFactorsKeyRotation(t *testing.T) {
	t.Parallel()
	fx := newFacFixture(t)
	old := fx.factors(t, "k1")
	ann, bob := fx.user(t, auth.TypeStaff, "ann@hestami.example"), fx.user(t, auth.TypeStaff, "bob@hestami.example")
	annSecret, annE := fx.enrol(t, old, ann)
	bobSecret, _ := fx.enrol(t, old, bob)

	// k2 becomes the primary; k1 stays in the ring until secrets are resealed.
	rotated := fx.factors(t, "k2", "k1")
	wantCode(t, "VerifyTOTP under the old key", rotated.VerifyTOTP(t.Context(), ann, code(t, annSecret, fx.clock.now()), fx.client), "")
	fac, _ := fx.store.Factor(t.Context(), ann.ID, annE.FactorID)
	if !bytes.HasPrefix(fac.Data, []byte("\x01\x02k2")) {
		t.Errorf("ann's secret was not resealed under k2 on a successful verification: envelope starts %q", fac.Data[:4])
	}
	if n, err := rotated.Reseal(t.Context(), bob); err != nil || n != 1 {
		t.Errorf("Reseal(bob) = %d, %v; want 1", n, err)
	}
	if n, err := rotated.Reseal(t.Context(), bob); err != nil || n != 0 {
		t.Errorf("Reseal(bob) again = %d, %v; want 0", n, err)
	}

	// Without k1, both still work.
	onlyNew := fx.factors(t, "k2")
	fx.clock.add(30 * time.Second)
	wantCode(t, "ann without k1", onlyNew.VerifyTOTP(t.Context(), ann, code(t, annSecret, fx.clock.now()), fx.client), "")
	wantCode(t, "bob without k1", onlyNew.VerifyTOTP(t.Context(), bob, code(t, bobSecret, fx.clock.now()), fx.client), "")

	// A secret under a key removed too early fails loudly, not as a wrong code.
	cat := fx.user(t, auth.TypeStaff, "cat@hestami.example")
	catSecret, _ := fx.enrol(t, old, cat)
	err := onlyNew.VerifyTOTP(t.Context(), cat, code(t, catSecret, fx.clock.now()), fx.client)
	if !errors.Is(err, auth.ErrSealUnknownKey) || auth.ErrorCode(err) != auth.CodeInternal {
		t.Errorf("VerifyTOTP under a removed key: %v; want an internal error wrapping ErrSealUnknownKey", err)
	}
}

var backupCodeForm = regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{2}$`)

func TestFactorsBackupCodes(t *testing.T) {
	t.Parallel()
	fx := newFacFixture(t)
	f := fx.factors(t, "k1")
	ann, bob := fx.user(t, auth.TypeOwner, "ann@example.com"), fx.user(t, auth.TypeOwner, "bob@example.com")
	ctx := t.Context()

	codes, err := f.GenerateBackupCodes(ctx, ann, fx.client)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if !backupCodeForm.MatchString(c) {
			t.Errorf("backup code %q is not of the form xxxx-xxxx-xx in lower-case Crockford base32", c)
		}
		seen[c] = true
	}
	if len(codes) != 10 || len(seen) != 10 {
		t.Fatalf("%d codes, %d distinct; want 10 distinct", len(codes), len(seen))
	}
	if n, _ := f.BackupCodesLeft(ctx, ann); n != 10 {
		t.Errorf("BackupCodesLeft = %d, want 10", n)
	}
	rows, err := fx.pool.Query(ctx, `SELECT hash FROM mfa_backup_codes WHERE user_id = $1`, ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		for _, c := range codes {
			norm, _ := auth.NormalizeBackupCode(c)
			if strings.Contains(h, norm) || len(h) != 64 {
				t.Errorf("stored %q is not a SHA-256 hash of a code", h)
			}
		}
	}
	rows.Close()

	// As people type them: upper case, spaces, no dashes.
	typed := strings.ToUpper(strings.ReplaceAll(codes[3], "-", " "))
	if left, err := f.VerifyBackupCode(ctx, ann, typed, fx.client); err != nil || left != 9 {
		t.Fatalf("VerifyBackupCode(%q) = %d, %v; want 9 left", typed, left, err)
	}
	_, err = f.VerifyBackupCode(ctx, ann, codes[3], fx.client)
	wantCode(t, "a used code", err, auth.CodeUnauthorized)
	_, err = f.VerifyBackupCode(ctx, bob, codes[4], fx.client)
	wantCode(t, "ann's code for bob", err, auth.CodeUnauthorized)
	_, err = f.VerifyBackupCode(ctx, ann, "not a code", fx.client)
	wantCode(t, "malformed", err, auth.CodeInvalid)

	fresh, err := f.GenerateBackupCodes(ctx, ann, fx.client)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.VerifyBackupCode(ctx, ann, codes[5], fx.client)
	wantCode(t, "a code of the old set after regenerating", err, auth.CodeUnauthorized)
	if left, err := f.VerifyBackupCode(ctx, ann, fresh[0], fx.client); err != nil || left != 9 {
		t.Errorf("a code of the new set: %d left, %v; want 9", left, err)
	}
	if got, want := summary(fx.events(t, ann, "mfa.backup.generate")), []string{
		"success:10 codes", "success:10 codes; 9 unused codes of the old set invalidated",
	}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("generate audit = %q, want %q", got, want)
	}
	if got, want := summary(fx.events(t, ann, "mfa.backup.verify")), []string{
		"success:9 codes left", "failure:wrong or used code; 9 left", "failure:malformed code",
		"failure:wrong or used code; 10 left", "success:9 codes left",
	}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("verify audit = %q, want %q", got, want)
	}
	all := fx.logs.String()
	for _, ev := range fx.events(t, ann, "") {
		all += ev.Detail
	}
	for _, c := range append(codes, fresh...) {
		norm, _ := auth.NormalizeBackupCode(c)
		if strings.Contains(all, c) || strings.Contains(all, norm) {
			t.Errorf("backup code %s appears in the log or the audit trail", c)
		}
	}
}

func TestFactorsBackupCodeConcurrent(t *testing.T) {
	t.Parallel()
	fx := newFacFixture(t)
	f := fx.factors(t, "k1")
	ann := fx.user(t, auth.TypeOwner, "ann@example.com")
	codes, err := f.GenerateBackupCodes(t.Context(), ann, fx.client)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make(chan error, 20)
	start := make(chan struct{})
	for range 20 {
		wg.Go(func() {
			<-start
			_, err := f.VerifyBackupCode(t.Context(), ann, codes[0], fx.client)
			results <- err
		})
	}
	close(start)
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch auth.ErrorCode(err) {
		case "":
			ok++
		case auth.CodeUnauthorized:
		default:
			t.Errorf("VerifyBackupCode: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of 20 concurrent uses of one backup code succeeded, want exactly 1", ok)
	}
	if n, _ := f.BackupCodesLeft(t.Context(), ann); n != 9 {
		t.Errorf("BackupCodesLeft = %d, want 9", n)
	}
}

func TestNormalizeBackupCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"formatted", "7kq2-m9xd-4t", "7kq2m9xd4t", true},
		{"upper case with spaces", " 7KQ2 M9XD 4T ", "7kq2m9xd4t", true},
		{"o, i and l read as digits", "oil0-abcd-ef", "0110abcdef", true},
		{"u is not in the alphabet", "ukq2-m9xd-4t", "", false},
		{"too short", "7kq2-m9xd-4", "", false},
		{"too long", "7kq2-m9xd-4tt", "", false},
		{"punctuation", "7kq2.m9xd.4t", "", false},
		{"non-ASCII", "7kq2-m9xd-4ţ", "", false},
		{"empty", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := auth.NormalizeBackupCode(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("NormalizeBackupCode(%q) = %q, %t; want %q, %t", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
	if auth.HashBackupCode("user-a", "7kq2m9xd4t") == auth.HashBackupCode("user-b", "7kq2m9xd4t") {
		t.Error("one code hashes the same for two users")
	}
}

func FuzzNormalizeBackupCode(f *testing.F) {
	f.Add("7kq2-m9xd-4t")
	f.Add("OIL0 ABCD EF")
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := auth.NormalizeBackupCode(in)
		if !ok {
			return
		}
		if len(got) != auth.BackupCodeLength || strings.Trim(got, "0123456789abcdefghjkmnpqrstvwxyz") != "" {
			t.Errorf("NormalizeBackupCode(%q) = %q", in, got)
		}
		if again, ok := auth.NormalizeBackupCode(auth.FormatBackupCode(got)); !ok || again != got {
			t.Errorf("formatted %q reads back as %q, %t", got, again, ok)
		}
	})
}

func TestFactorsRemove(t *testing.T) {
	t.Parallel()
	fx := newFacFixture(t)
	f := fx.factors(t, "k1")
	ann, bob := fx.user(t, auth.TypeStaff, "ann@hestami.example"), fx.user(t, auth.TypeStaff, "bob@hestami.example")
	_, e := fx.enrol(t, f, ann)
	wantCode(t, "Remove of another user's factor", f.Remove(t.Context(), bob, e.FactorID, fx.client), auth.CodeNotFound)
	wantCode(t, "Remove", f.Remove(t.Context(), ann, e.FactorID, fx.client), "")
	wantCode(t, "Remove again", f.Remove(t.Context(), ann, e.FactorID, fx.client), auth.CodeNotFound)
	if list, _ := f.List(t.Context(), ann); len(list) != 0 {
		t.Errorf("List after Remove = %v", list)
	}
	if got := summary(fx.events(t, ann, "mfa.factor.remove")); fmt.Sprint(got) != fmt.Sprint([]string{"success:otp factor " + e.FactorID + " (Authenticator app)"}) {
		t.Errorf("remove audit = %q", got)
	}
}

func TestFactorsReset(t *testing.T) {
	t.Parallel()
	fx := newFacFixture(t)
	f := fx.factors(t, "k1")
	admin := fx.user(t, auth.TypeStaff, "admin@hestami.example", "staff:admin")
	support := fx.user(t, auth.TypeStaff, "support@hestami.example", "staff:support")
	ops := fx.user(t, auth.TypeStaff, "ops@hestami.example", "staff:ops")
	owner := fx.user(t, auth.TypeOwner, "owner@example.com", "owner")
	for _, u := range []*auth.User{admin, owner} {
		fx.enrol(t, f, u)
		if _, err := f.GenerateBackupCodes(t.Context(), u, fx.client); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		actor  *auth.User
		target string
		reason string
		want   auth.Code
	}{
		{"signed out", nil, owner.ID, "lost phone", auth.CodeUnauthorized},
		{"without mfa:reset", ops, owner.ID, "lost phone", auth.CodeForbidden},
		{"the owner themselves", owner, owner.ID, "lost phone", auth.CodeForbidden},
		{"an administrator's own account", admin, admin.ID, "lost phone", auth.CodeForbidden},
		{"no reason", support, owner.ID, "  ", auth.CodeInvalid},
	} {
		wantCode(t, tc.name, f.Reset(t.Context(), tc.actor, tc.target, tc.reason, fx.client), tc.want)
	}
	for _, u := range []*auth.User{admin, owner} {
		if list, _ := f.List(t.Context(), u); len(list) != 1 {
			t.Fatalf("a refused reset removed %s's factors", u.Email)
		}
	}
	wantCode(t, "support resets the owner", f.Reset(t.Context(), support, owner.ID, "lost phone,\nverified by video call", fx.client), "")
	if list, _ := f.List(t.Context(), owner); len(list) != 0 {
		t.Errorf("after a reset the owner has factors %v", list)
	}
	if n, _ := f.BackupCodesLeft(t.Context(), owner); n != 0 {
		t.Errorf("after a reset the owner has %d backup codes", n)
	}
	if list, _ := f.List(t.Context(), admin); len(list) != 1 {
		t.Error("resetting the owner touched the administrator's factors")
	}
	evs := fx.events(t, owner, "mfa.reset")
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s by %s: %s", e.Outcome, e.ActorID, e.Detail))
	}
	want := []string{
		"failure by " + ops.ID + ": no mfa:reset permission",
		"failure by " + owner.ID + ": own account",
		"success by " + support.ID + ": 1 factors and the backup codes removed; reason: lost phone, verified by video call",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reset audit of the owner =\n%q\nwant\n%q", got, want)
	}
	if got := summary(fx.events(t, ops, "mfa.reset")); fmt.Sprint(got) != "[failure:no mfa:reset permission]" {
		t.Errorf("ops's refused reset audit = %q", got)
	}

	// The recovery flow's reset, after an approved request was redeemed.
	fx.enrol(t, f, owner)
	if err := f.RecoveryReset(t.Context(), owner.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := f.List(t.Context(), owner); len(list) != 0 {
		t.Errorf("after RecoveryReset the owner has factors %v", list)
	}
	if evs := fx.events(t, owner, "mfa.reset"); len(evs) != 4 || evs[3].Detail != "recovery: 1 factors and the backup codes removed" || evs[3].ActorID != owner.ID {
		t.Errorf("recovery reset audit = %q", summary(evs))
	}
}
