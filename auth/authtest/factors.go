package authtest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// RunFactorStore runs the auth.FactorStore contract against the stores newStore
// returns, with the auth.UserStore its users are created in (factors and codes
// belong to users). Each subtest calls newStore once and expects stores of its
// own, empty; subtests run in parallel. The concurrency tests (a TOTP step or a
// backup code used by 20 requests at once) need the store to serve 20
// concurrent calls.
func RunFactorStore(t *testing.T, newStore func(t *testing.T) (auth.FactorStore, auth.UserStore)) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s auth.FactorStore, users auth.UserStore)
	}{
		{"CreateFactor", testCreateFactor},
		{"CreateFactorUnknownUser", testCreateFactorUnknownUser},
		{"FactorNotFound", testFactorNotFound},
		{"Factors", testFactors},
		{"ConfirmFactor", testConfirmFactor},
		{"UpdateFactorData", testUpdateFactorData},
		{"UseTOTPStep", testUseTOTPStep},
		{"UseTOTPStepConcurrent", testUseTOTPStepConcurrent},
		{"TouchFactor", testTouchFactor},
		{"DeleteFactor", testDeleteFactor},
		{"DeleteFactors", testDeleteFactors},
		{"BackupCodes", testBackupCodes},
		{"UseBackupCodeConcurrent", testUseBackupCodeConcurrent},
		{"ReplaceBackupCodesConcurrent", testReplaceBackupCodesConcurrent},
		{"ReplaceBackupCodesUnknownUser", testReplaceBackupCodesUnknownUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, users := newStore(t)
			tc.fn(t, s, users)
		})
	}
}

// RunMFASettingsStore runs the auth.MFASettingsStore contract against the stores
// newStore returns, with the auth.UserStore its users are created in.
func RunMFASettingsStore(t *testing.T, newStore func(t *testing.T) (auth.MFASettingsStore, auth.UserStore)) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s auth.MFASettingsStore, users auth.UserStore)
	}{
		{"Defaults", testMFASettingsDefaults},
		{"SaveAndUpdate", testMFASettingsSave},
		{"UnknownUser", testMFASettingsUnknownUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, users := newStore(t)
			tc.fn(t, s, users)
		})
	}
}

// unknownUserID is a well-formed id no store assigned.
const unknownUserID = "00000000-0000-4000-8000-000000000000"

func mfaUser(t *testing.T, users auth.UserStore, name string) *auth.User {
	t.Helper()
	u := &auth.User{Type: auth.TypeStaff, Email: name + "@hestami.example", EmailVerified: true, Name: name}
	if err := users.CreateUser(t.Context(), u, nil); err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

func addFactor(t *testing.T, s auth.FactorStore, userID, method, label string, data []byte, created time.Time) *auth.Factor {
	t.Helper()
	f := &auth.Factor{UserID: userID, Method: method, Label: label, Data: data, CreatedAt: created}
	if err := s.CreateFactor(t.Context(), f); err != nil {
		t.Fatalf("CreateFactor(%s %s): %v", method, label, err)
	}
	if f.ID == "" {
		t.Fatalf("CreateFactor(%s %s) assigned no ID", method, label)
	}
	return f
}

func getFactor(t *testing.T, s auth.FactorStore, userID, id string) *auth.Factor {
	t.Helper()
	f, err := s.Factor(t.Context(), userID, id)
	if err != nil {
		t.Fatalf("Factor(%s): %v", id, err)
	}
	return f
}

func sameFactor(t *testing.T, what string, got, want *auth.Factor) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || got.Method != want.Method || got.Label != want.Label ||
		!bytes.Equal(got.Data, want.Data) || got.Confirmed != want.Confirmed || !got.CreatedAt.Equal(want.CreatedAt) ||
		!got.LastUsedAt.Equal(want.LastUsedAt) || got.LastStep != want.LastStep {
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}

func factorIDs(fs []*auth.Factor) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

func testCreateFactor(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	u := mfaUser(t, users, "ann")
	f := addFactor(t, s, u.ID, auth.MethodTOTP, "Authenticator app", []byte{1, 2, 3, 0, 255}, at(0))
	if !f.CreatedAt.Equal(at(0)) {
		t.Errorf("CreatedAt = %v, want the one given, %v", f.CreatedAt, at(0))
	}
	want := &auth.Factor{ID: f.ID, UserID: u.ID, Method: auth.MethodTOTP, Label: "Authenticator app", Data: []byte{1, 2, 3, 0, 255}, CreatedAt: at(0)}
	sameFactor(t, "read back", getFactor(t, s, u.ID, f.ID), want)

	before := time.Now().Add(-time.Hour)
	g := &auth.Factor{UserID: u.ID, Method: auth.MethodSMS, Label: "+1 ••• ••• 1234", Data: []byte("+15555551234")}
	if err := s.CreateFactor(t.Context(), g); err != nil {
		t.Fatal(err)
	}
	if g.ID == "" || g.ID == f.ID || g.CreatedAt.Before(before) {
		t.Errorf("CreateFactor without CreatedAt should assign a new ID and the time now; got %+v", *g)
	}
	h := &auth.Factor{UserID: u.ID, Method: auth.MethodTOTP, Label: "pending", Data: []byte{}}
	if err := s.CreateFactor(t.Context(), h); err != nil {
		t.Fatalf("CreateFactor with empty Data: %v", err)
	}
	if got := getFactor(t, s, u.ID, h.ID); len(got.Data) != 0 {
		t.Errorf("empty Data read back as %v", got.Data)
	}
}

func testCreateFactorUnknownUser(t *testing.T, s auth.FactorStore, _ auth.UserStore) {
	for _, id := range []string{unknownUserID, "not-a-uuid", ""} {
		err := s.CreateFactor(t.Context(), &auth.Factor{UserID: id, Method: auth.MethodTOTP, Data: []byte{1}})
		wantErr(t, fmt.Sprintf("CreateFactor for user %q", id), err, auth.ErrNotFound)
	}
}

func testFactorNotFound(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann, bob := mfaUser(t, users, "ann"), mfaUser(t, users, "bob")
	f := addFactor(t, s, ann.ID, auth.MethodTOTP, "app", []byte{1}, at(0))
	for _, tc := range []struct{ name, user, id string }{
		{"another user's factor", bob.ID, f.ID},
		{"unknown id", ann.ID, unknownUserID},
		{"malformed id", ann.ID, "nope"},
		{"malformed user", "nope", f.ID},
	} {
		_, err := s.Factor(t.Context(), tc.user, tc.id)
		wantErr(t, tc.name, err, auth.ErrNotFound)
	}
}

func testFactors(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann, bob, cat := mfaUser(t, users, "ann"), mfaUser(t, users, "bob"), mfaUser(t, users, "cat")
	second := addFactor(t, s, ann.ID, auth.MethodSMS, "second", []byte("+15555550002"), at(2*time.Minute))
	first := addFactor(t, s, ann.ID, auth.MethodTOTP, "first", []byte{1}, at(time.Minute))
	bobs := addFactor(t, s, bob.ID, auth.MethodWebAuthn, "key", []byte(`{}`), at(0))
	third := addFactor(t, s, ann.ID, auth.MethodEmail, "third", []byte("a@example.com"), at(3*time.Minute))

	got, err := s.Factors(t.Context(), ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{first.ID, second.ID, third.ID}; fmt.Sprint(factorIDs(got)) != fmt.Sprint(want) {
		t.Errorf("Factors(ann) = %v, want oldest first %v", factorIDs(got), want)
	}
	if len(got) == 3 {
		sameFactor(t, "Factors(ann)[1]", got[1], &auth.Factor{ID: second.ID, UserID: ann.ID, Method: auth.MethodSMS, Label: "second",
			Data: []byte("+15555550002"), CreatedAt: at(2 * time.Minute)})
	}
	if got, err := s.Factors(t.Context(), bob.ID); err != nil || fmt.Sprint(factorIDs(got)) != fmt.Sprint([]string{bobs.ID}) {
		t.Errorf("Factors(bob) = %v, %v; want only bob's", factorIDs(got), err)
	}
	for _, id := range []string{cat.ID, unknownUserID, "nope"} {
		if got, err := s.Factors(t.Context(), id); err != nil || len(got) != 0 {
			t.Errorf("Factors(%s) = %v, %v; want none", id, factorIDs(got), err)
		}
	}
}

func testConfirmFactor(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann, bob := mfaUser(t, users, "ann"), mfaUser(t, users, "bob")
	f := addFactor(t, s, ann.ID, auth.MethodTOTP, "app", []byte{1}, at(0))
	wantErr(t, "ConfirmFactor of another user's factor", s.ConfirmFactor(t.Context(), bob.ID, f.ID, at(time.Minute)), auth.ErrNotFound)
	if getFactor(t, s, ann.ID, f.ID).Confirmed {
		t.Fatal("another user confirmed ann's factor")
	}
	if err := s.ConfirmFactor(t.Context(), ann.ID, f.ID, at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := getFactor(t, s, ann.ID, f.ID)
	if !got.Confirmed || !got.LastUsedAt.Equal(at(time.Minute)) {
		t.Errorf("after ConfirmFactor: Confirmed %t, LastUsedAt %v; want true, %v", got.Confirmed, got.LastUsedAt, at(time.Minute))
	}
	wantErr(t, "ConfirmFactor of an unknown factor", s.ConfirmFactor(t.Context(), ann.ID, unknownUserID, at(0)), auth.ErrNotFound)
}

func testUpdateFactorData(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann, bob := mfaUser(t, users, "ann"), mfaUser(t, users, "bob")
	f := addFactor(t, s, ann.ID, auth.MethodTOTP, "app", []byte("old"), at(0))
	wantErr(t, "UpdateFactorData of another user's factor", s.UpdateFactorData(t.Context(), bob.ID, f.ID, []byte("bob's")), auth.ErrNotFound)
	if err := s.UpdateFactorData(t.Context(), ann.ID, f.ID, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got := getFactor(t, s, ann.ID, f.ID); string(got.Data) != "new" {
		t.Errorf("Data = %q, want %q", got.Data, "new")
	}
	wantErr(t, "UpdateFactorData of an unknown factor", s.UpdateFactorData(t.Context(), ann.ID, unknownUserID, []byte("x")), auth.ErrNotFound)
}

func testUseTOTPStep(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann, bob := mfaUser(t, users, "ann"), mfaUser(t, users, "bob")
	f := addFactor(t, s, ann.ID, auth.MethodTOTP, "app", []byte{1}, at(0))
	for i, tc := range []struct {
		step int64
		want bool
	}{
		{100, true},   // first use
		{100, false},  // the same code again: a replay
		{99, false},   // an older code
		{101, true},   // the next one
		{101, false},  // replayed
		{5000, true},  // much later
		{4999, false}, // the code before it, too late
	} {
		got, err := s.UseTOTPStep(t.Context(), ann.ID, f.ID, tc.step, at(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatalf("UseTOTPStep(%d): %v", tc.step, err)
		}
		if got != tc.want {
			t.Errorf("use %d: UseTOTPStep(%d) = %t, want %t", i, tc.step, got, tc.want)
		}
	}
	got := getFactor(t, s, ann.ID, f.ID)
	if got.LastStep != 5000 || !got.LastUsedAt.Equal(at(5*time.Minute)) {
		t.Errorf("LastStep %d, LastUsedAt %v; want 5000 and the time of the last accepted use, %v", got.LastStep, got.LastUsedAt, at(5*time.Minute))
	}
	_, err := s.UseTOTPStep(t.Context(), bob.ID, f.ID, 6000, at(time.Hour))
	wantErr(t, "UseTOTPStep of another user's factor", err, auth.ErrNotFound)
	_, err = s.UseTOTPStep(t.Context(), ann.ID, unknownUserID, 6000, at(time.Hour))
	wantErr(t, "UseTOTPStep of an unknown factor", err, auth.ErrNotFound)
	if got := getFactor(t, s, ann.ID, f.ID); got.LastStep != 5000 {
		t.Errorf("LastStep = %d after refused uses, want 5000", got.LastStep)
	}
}

// concurrently runs fn n times at once and counts the true answers.
func concurrently(t *testing.T, n int, fn func() (bool, error)) int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	var errs []error
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := fn()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				wins++
			}
		}()
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return wins
}

func testUseTOTPStepConcurrent(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann := mfaUser(t, users, "ann")
	f := addFactor(t, s, ann.ID, auth.MethodTOTP, "app", []byte{1}, at(0))
	for round := range 3 {
		step := int64(1000 + round)
		wins := concurrently(t, 20, func() (bool, error) {
			return s.UseTOTPStep(t.Context(), ann.ID, f.ID, step, at(time.Minute))
		})
		if wins != 1 {
			t.Errorf("round %d: %d of 20 concurrent uses of step %d succeeded, want exactly 1", round, wins, step)
		}
	}
}

func testTouchFactor(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann, bob := mfaUser(t, users, "ann"), mfaUser(t, users, "bob")
	f := addFactor(t, s, ann.ID, auth.MethodSMS, "phone", []byte("+15555550001"), at(0))
	if err := s.TouchFactor(t.Context(), ann.ID, f.ID, at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := getFactor(t, s, ann.ID, f.ID); !got.LastUsedAt.Equal(at(time.Hour)) {
		t.Errorf("LastUsedAt = %v, want %v", got.LastUsedAt, at(time.Hour))
	}
	wantErr(t, "TouchFactor of another user's factor", s.TouchFactor(t.Context(), bob.ID, f.ID, at(2*time.Hour)), auth.ErrNotFound)
	if got := getFactor(t, s, ann.ID, f.ID); !got.LastUsedAt.Equal(at(time.Hour)) {
		t.Errorf("another user touched ann's factor: LastUsedAt = %v", got.LastUsedAt)
	}
}

func testDeleteFactor(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann, bob := mfaUser(t, users, "ann"), mfaUser(t, users, "bob")
	f := addFactor(t, s, ann.ID, auth.MethodTOTP, "app", []byte{1}, at(0))
	keep := addFactor(t, s, ann.ID, auth.MethodTOTP, "other app", []byte{2}, at(time.Minute))
	wantErr(t, "DeleteFactor of another user's factor", s.DeleteFactor(t.Context(), bob.ID, f.ID), auth.ErrNotFound)
	getFactor(t, s, ann.ID, f.ID)
	if err := s.DeleteFactor(t.Context(), ann.ID, f.ID); err != nil {
		t.Fatal(err)
	}
	_, err := s.Factor(t.Context(), ann.ID, f.ID)
	wantErr(t, "Factor after DeleteFactor", err, auth.ErrNotFound)
	wantErr(t, "DeleteFactor twice", s.DeleteFactor(t.Context(), ann.ID, f.ID), auth.ErrNotFound)
	getFactor(t, s, ann.ID, keep.ID)
}

func testDeleteFactors(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann, bob := mfaUser(t, users, "ann"), mfaUser(t, users, "bob")
	addFactor(t, s, ann.ID, auth.MethodTOTP, "app", []byte{1}, at(0))
	addFactor(t, s, ann.ID, auth.MethodSMS, "phone", []byte("+15555550001"), at(time.Minute))
	bobs := addFactor(t, s, bob.ID, auth.MethodTOTP, "app", []byte{1}, at(0))
	for _, u := range []*auth.User{ann, bob} {
		if err := s.ReplaceBackupCodes(t.Context(), u.ID, []string{u.ID + "-h1", u.ID + "-h2"}, at(0)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteFactors(t.Context(), ann.ID)
	if err != nil || n != 2 {
		t.Fatalf("DeleteFactors(ann) = %d, %v; want 2", n, err)
	}
	if got, _ := s.Factors(t.Context(), ann.ID); len(got) != 0 {
		t.Errorf("ann still has factors %v", factorIDs(got))
	}
	if left, _ := s.BackupCodesLeft(t.Context(), ann.ID); left != 0 {
		t.Errorf("ann still has %d backup codes", left)
	}
	if ok, _ := s.UseBackupCode(t.Context(), ann.ID, ann.ID+"-h1", at(time.Hour)); ok {
		t.Error("a backup code of ann works after DeleteFactors")
	}
	getFactor(t, s, bob.ID, bobs.ID)
	if left, _ := s.BackupCodesLeft(t.Context(), bob.ID); left != 2 {
		t.Errorf("bob has %d backup codes after ann's reset, want 2", left)
	}
	if n, err := s.DeleteFactors(t.Context(), ann.ID); err != nil || n != 0 {
		t.Errorf("DeleteFactors(ann) again = %d, %v; want 0, nil", n, err)
	}
}

func hashes(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

func codesLeft(t *testing.T, s auth.FactorStore, userID string) int {
	t.Helper()
	n, err := s.BackupCodesLeft(t.Context(), userID)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func useCode(t *testing.T, s auth.FactorStore, userID, hash string) bool {
	t.Helper()
	ok, err := s.UseBackupCode(t.Context(), userID, hash, at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func testBackupCodes(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann, bob := mfaUser(t, users, "ann"), mfaUser(t, users, "bob")
	if n := codesLeft(t, s, ann.ID); n != 0 {
		t.Fatalf("a new user has %d backup codes", n)
	}
	old := hashes("old", 10)
	if err := s.ReplaceBackupCodes(t.Context(), ann.ID, old, at(0)); err != nil {
		t.Fatal(err)
	}
	if n := codesLeft(t, s, ann.ID); n != 10 {
		t.Fatalf("BackupCodesLeft = %d, want 10", n)
	}
	if !useCode(t, s, ann.ID, old[3]) {
		t.Fatal("UseBackupCode of an unused code = false")
	}
	if useCode(t, s, ann.ID, old[3]) {
		t.Error("a backup code worked twice")
	}
	if useCode(t, s, ann.ID, "unknown") {
		t.Error("an unknown hash worked")
	}
	if useCode(t, s, bob.ID, old[4]) {
		t.Error("ann's backup code worked for bob")
	}
	if n := codesLeft(t, s, ann.ID); n != 9 {
		t.Errorf("BackupCodesLeft = %d after one use, want 9", n)
	}
	if err := s.ReplaceBackupCodes(t.Context(), ann.ID, hashes("new", 10), at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := codesLeft(t, s, ann.ID); n != 10 {
		t.Errorf("BackupCodesLeft = %d after regenerating, want 10", n)
	}
	if useCode(t, s, ann.ID, old[5]) {
		t.Error("a code of the old set worked after regenerating")
	}
	if !useCode(t, s, ann.ID, "new05") {
		t.Error("a code of the new set did not work")
	}
	if n := codesLeft(t, s, bob.ID); n != 0 {
		t.Errorf("bob has %d backup codes, want 0", n)
	}
}

func testUseBackupCodeConcurrent(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann := mfaUser(t, users, "ann")
	hs := hashes("c", 3)
	if err := s.ReplaceBackupCodes(t.Context(), ann.ID, hs, at(0)); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		wins := concurrently(t, 20, func() (bool, error) { return s.UseBackupCode(t.Context(), ann.ID, h, at(time.Minute)) })
		if wins != 1 {
			t.Errorf("%d of 20 concurrent uses of one backup code succeeded, want exactly 1", wins)
		}
	}
	if n := codesLeft(t, s, ann.ID); n != 0 {
		t.Errorf("BackupCodesLeft = %d, want 0", n)
	}
}

func testReplaceBackupCodesConcurrent(t *testing.T, s auth.FactorStore, users auth.UserStore) {
	ann := mfaUser(t, users, "ann")
	for round := range 3 {
		sets := [][]string{hashes(fmt.Sprintf("r%da", round), 10), hashes(fmt.Sprintf("r%db", round), 10)}
		var i int
		var mu sync.Mutex
		concurrently(t, 2, func() (bool, error) {
			mu.Lock()
			set := sets[i]
			i++
			mu.Unlock()
			return true, s.ReplaceBackupCodes(t.Context(), ann.ID, set, at(time.Minute))
		})
		if n := codesLeft(t, s, ann.ID); n != 10 {
			t.Errorf("round %d: %d codes left after two concurrent replacements, want 10 (one whole set)", round, n)
		}
		a, b := useCode(t, s, ann.ID, sets[0][0]), useCode(t, s, ann.ID, sets[1][0])
		if a == b {
			t.Errorf("round %d: first code of set a works: %t, of set b: %t; want exactly one set", round, a, b)
		}
	}
}

func testReplaceBackupCodesUnknownUser(t *testing.T, s auth.FactorStore, _ auth.UserStore) {
	for _, id := range []string{unknownUserID, "nope"} {
		wantErr(t, "ReplaceBackupCodes of user "+id, s.ReplaceBackupCodes(t.Context(), id, hashes("x", 2), at(0)), auth.ErrNotFound)
	}
}

func testMFASettingsDefaults(t *testing.T, s auth.MFASettingsStore, users auth.UserStore) {
	ann := mfaUser(t, users, "ann")
	got, err := s.MFASettings(t.Context(), ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != ann.ID || !got.Deadline.IsZero() || got.Required || len(got.ServiceTypes) != 0 || got.SecondaryEmail != "" || got.SecondaryEmailVerified {
		t.Errorf("settings of a user with none stored = %+v, want zero with UserID %s", *got, ann.ID)
	}
}

func sameSettings(t *testing.T, what string, got, want *auth.MFASettings) {
	t.Helper()
	if got.UserID != want.UserID || !got.Deadline.Equal(want.Deadline) || got.Required != want.Required ||
		fmt.Sprint(got.ServiceTypes) != fmt.Sprint(want.ServiceTypes) || got.SecondaryEmail != want.SecondaryEmail ||
		got.SecondaryEmailVerified != want.SecondaryEmailVerified {
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}

func testMFASettingsSave(t *testing.T, s auth.MFASettingsStore, users auth.UserStore) {
	ann, bob := mfaUser(t, users, "ann"), mfaUser(t, users, "bob")
	want := &auth.MFASettings{UserID: ann.ID, Deadline: at(24 * time.Hour), Required: true, ServiceTypes: []string{"electrical", "gas"},
		SecondaryEmail: "ann.backup@example.com", SecondaryEmailVerified: false}
	if err := s.SaveMFASettings(t.Context(), want); err != nil {
		t.Fatal(err)
	}
	got, err := s.MFASettings(t.Context(), ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameSettings(t, "saved", got, want)

	upd := &auth.MFASettings{UserID: ann.ID, SecondaryEmail: "ann.backup@example.com", SecondaryEmailVerified: true}
	if err := s.SaveMFASettings(t.Context(), upd); err != nil {
		t.Fatal(err)
	}
	got, err = s.MFASettings(t.Context(), ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameSettings(t, "updated (deadline cleared, no service types)", got, upd)
	if got, err := s.MFASettings(t.Context(), bob.ID); err != nil || got.SecondaryEmail != "" || got.Required {
		t.Errorf("bob's settings = %+v, %v; want zero", got, err)
	}
}

func testMFASettingsUnknownUser(t *testing.T, s auth.MFASettingsStore, _ auth.UserStore) {
	for _, id := range []string{unknownUserID, "nope"} {
		wantErr(t, "SaveMFASettings of user "+id, s.SaveMFASettings(t.Context(), &auth.MFASettings{UserID: id, Required: true}), auth.ErrNotFound)
		got, err := s.MFASettings(t.Context(), id)
		if err != nil || got.UserID != id || got.Required {
			t.Errorf("MFASettings(%s) = %+v, %v; want zero settings", id, got, err)
		}
	}
}
