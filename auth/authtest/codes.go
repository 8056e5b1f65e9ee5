package authtest

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// CodeStores are what RunCodeStore tests: the auth.CodeStore, and the stores
// of the users and factors its codes belong to.
type CodeStores struct {
	Codes   auth.CodeStore
	Users   auth.UserStore
	Factors auth.FactorStore
}

// RunCodeStore runs the auth.CodeStore contract against the stores newStores
// returns. Each subtest calls newStores once and expects stores of its own,
// empty; subtests run in parallel. The concurrency tests need the store to
// serve 20 concurrent calls.
func RunCodeStore(t *testing.T, newStores func(t *testing.T) CodeStores) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s CodeStores)
	}{
		{"PutAndRead", testPutCode},
		{"CodeNotFound", testCodeNotFound},
		{"PutCodeUnknownUser", testPutCodeUnknownUser},
		{"NewCodeReplacesOld", testPutCodeReplaces},
		{"OneCodePerPurposeAndMethod", testCodeKeys},
		{"AttemptCode", testAttemptCode},
		{"AttemptCodeConcurrent", testAttemptCodeConcurrent},
		{"UseCode", testUseCode},
		{"UseCodeConcurrent", testUseCodeConcurrent},
		{"FactorRemovalRemovesCodes", testCodeFactorCascade},
		{"DeleteExpiredCodes", testDeleteExpiredCodes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStores(t))
		})
	}
}

func newOneTimeCode(userID, purpose, method, factorID, dest string, created time.Time, ttl time.Duration) *auth.OneTimeCode {
	return &auth.OneTimeCode{
		UserID: userID, Purpose: purpose, Method: method, FactorID: factorID, Destination: dest,
		Salt: []byte("salt:" + dest + purpose), Hash: []byte("hash:" + dest + purpose + created.String()),
		CreatedAt: created, ExpiresAt: created.Add(ttl),
	}
}

func putCode(t *testing.T, s auth.CodeStore, c *auth.OneTimeCode) *auth.OneTimeCode {
	t.Helper()
	if err := s.PutCode(t.Context(), c); err != nil {
		t.Fatalf("PutCode(%s %s): %v", c.Purpose, c.Method, err)
	}
	if c.ID == "" {
		t.Fatalf("PutCode(%s %s) assigned no ID", c.Purpose, c.Method)
	}
	return c
}

func getCode(t *testing.T, s auth.CodeStore, userID, purpose, method string) *auth.OneTimeCode {
	t.Helper()
	c, err := s.Code(t.Context(), userID, purpose, method)
	if err != nil {
		t.Fatalf("Code(%s %s): %v", purpose, method, err)
	}
	return c
}

func sameCode(t *testing.T, what string, got, want *auth.OneTimeCode) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || got.Purpose != want.Purpose || got.Method != want.Method ||
		got.FactorID != want.FactorID || got.Destination != want.Destination || !bytes.Equal(got.Salt, want.Salt) ||
		!bytes.Equal(got.Hash, want.Hash) || got.Attempts != want.Attempts || !got.CreatedAt.Equal(want.CreatedAt) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.UsedAt.Equal(want.UsedAt) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, *got, *want)
	}
}

func testPutCode(t *testing.T, s CodeStores) {
	u := mfaUser(t, s.Users, "ann")
	e := putCode(t, s.Codes, newOneTimeCode(u.ID, auth.CodePurposeEnrol, auth.MethodEmail, "", "ann@elsewhere.example", at(0), 10*time.Minute))
	sameCode(t, "email code read back", getCode(t, s.Codes, u.ID, auth.CodePurposeEnrol, auth.MethodEmail), e)

	f := addFactor(t, s.Factors, u.ID, auth.MethodSMS, "+1 ••• ••• 2671", []byte("+14155552671"), at(0))
	m := putCode(t, s.Codes, newOneTimeCode(u.ID, auth.CodePurposeChallenge, auth.MethodSMS, f.ID, "+14155552671", at(time.Minute), 5*time.Minute))
	sameCode(t, "SMS code read back", getCode(t, s.Codes, u.ID, auth.CodePurposeChallenge, auth.MethodSMS), m)
	if m.ID == e.ID {
		t.Errorf("two codes got one ID %s", m.ID)
	}
}

func testCodeNotFound(t *testing.T, s CodeStores) {
	u := mfaUser(t, s.Users, "ann")
	for _, id := range []string{u.ID, unknownUserID, "not-a-uuid", ""} {
		if _, err := s.Codes.Code(t.Context(), id, auth.CodePurposeChallenge, auth.MethodEmail); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("Code(%q) without a code = %v, want ErrNotFound", id, err)
		}
	}
	for _, id := range []string{unknownUserID, "not-a-uuid", ""} {
		if n, ok, err := s.Codes.AttemptCode(t.Context(), id, 5); ok || err != nil || n != 0 {
			t.Errorf("AttemptCode(%q) = %d, %v, %v; want 0, false, nil", id, n, ok, err)
		}
		if ok, err := s.Codes.UseCode(t.Context(), id, at(0)); ok || err != nil {
			t.Errorf("UseCode(%q) = %v, %v; want false, nil", id, ok, err)
		}
	}
}

func testPutCodeUnknownUser(t *testing.T, s CodeStores) {
	for _, id := range []string{unknownUserID, "not-a-uuid"} {
		err := s.Codes.PutCode(t.Context(), newOneTimeCode(id, auth.CodePurposeEnrol, auth.MethodEmail, "", "x@example.com", at(0), time.Minute))
		if !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("PutCode for user %q = %v, want ErrNotFound", id, err)
		}
	}
	u := mfaUser(t, s.Users, "ann")
	err := s.Codes.PutCode(t.Context(), newOneTimeCode(u.ID, auth.CodePurposeEnrol, auth.MethodSMS, unknownUserID, "+14155552671", at(0), time.Minute))
	if !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("PutCode for an unknown factor = %v, want ErrNotFound", err)
	}
}

func testPutCodeReplaces(t *testing.T, s CodeStores) {
	u := mfaUser(t, s.Users, "ann")
	old := putCode(t, s.Codes, newOneTimeCode(u.ID, auth.CodePurposeChallenge, auth.MethodEmail, "", "a@x.example", at(0), 10*time.Minute))
	if _, ok, err := s.Codes.AttemptCode(t.Context(), old.ID, 5); !ok || err != nil {
		t.Fatalf("AttemptCode(old) = %v, %v", ok, err)
	}
	if ok, err := s.Codes.UseCode(t.Context(), old.ID, at(time.Minute)); !ok || err != nil {
		t.Fatalf("UseCode(old) = %v, %v", ok, err)
	}
	next := putCode(t, s.Codes, newOneTimeCode(u.ID, auth.CodePurposeChallenge, auth.MethodEmail, "", "b@x.example", at(2*time.Minute), 10*time.Minute))
	if next.ID == old.ID {
		t.Fatalf("the new code kept the old code's ID %s", old.ID)
	}
	got := getCode(t, s.Codes, u.ID, auth.CodePurposeChallenge, auth.MethodEmail)
	sameCode(t, "after a new code", got, next)
	if got.Attempts != 0 || !got.UsedAt.IsZero() {
		t.Errorf("the new code inherited attempts %d, used %v", got.Attempts, got.UsedAt)
	}
	// The old code's id touches nothing any more.
	if _, ok, _ := s.Codes.AttemptCode(t.Context(), old.ID, 5); ok {
		t.Error("AttemptCode(old id) counted an attempt after the code was replaced")
	}
	if ok, _ := s.Codes.UseCode(t.Context(), old.ID, at(3*time.Minute)); ok {
		t.Error("UseCode(old id) succeeded after the code was replaced")
	}
	sameCode(t, "after touching the old id", getCode(t, s.Codes, u.ID, auth.CodePurposeChallenge, auth.MethodEmail), next)
}

func testCodeKeys(t *testing.T, s CodeStores) {
	ann, bob := mfaUser(t, s.Users, "ann"), mfaUser(t, s.Users, "bob")
	f := addFactor(t, s.Factors, ann.ID, auth.MethodSMS, "+1 ••• ••• 2671", []byte("+14155552671"), at(0))
	codes := []*auth.OneTimeCode{
		newOneTimeCode(ann.ID, auth.CodePurposeEnrol, auth.MethodEmail, "", "ann2@x.example", at(0), time.Minute),
		newOneTimeCode(ann.ID, auth.CodePurposeChallenge, auth.MethodEmail, "", "ann2@x.example", at(time.Second), time.Minute),
		newOneTimeCode(ann.ID, auth.CodePurposeEnrol, auth.MethodSMS, f.ID, "+14155552671", at(2*time.Second), time.Minute),
		newOneTimeCode(ann.ID, auth.CodePurposeChallenge, auth.MethodSMS, f.ID, "+14155552671", at(3*time.Second), time.Minute),
		newOneTimeCode(bob.ID, auth.CodePurposeChallenge, auth.MethodEmail, "", "bob2@x.example", at(4*time.Second), time.Minute),
	}
	for _, c := range codes {
		putCode(t, s.Codes, c)
	}
	for _, c := range codes {
		sameCode(t, c.UserID+" "+c.Purpose+" "+c.Method, getCode(t, s.Codes, c.UserID, c.Purpose, c.Method), c)
	}
}

func testAttemptCode(t *testing.T, s CodeStores) {
	u := mfaUser(t, s.Users, "ann")
	c := putCode(t, s.Codes, newOneTimeCode(u.ID, auth.CodePurposeChallenge, auth.MethodEmail, "", "a@x.example", at(0), time.Minute))
	for want := 1; want <= 3; want++ {
		n, ok, err := s.Codes.AttemptCode(t.Context(), c.ID, 3)
		if err != nil || !ok || n != want {
			t.Fatalf("attempt %d: AttemptCode = %d, %v, %v", want, n, ok, err)
		}
	}
	if n, ok, err := s.Codes.AttemptCode(t.Context(), c.ID, 3); ok || err != nil {
		t.Fatalf("attempt past max: AttemptCode = %d, %v, %v; want false", n, ok, err)
	}
	if got := getCode(t, s.Codes, u.ID, auth.CodePurposeChallenge, auth.MethodEmail); got.Attempts != 3 {
		t.Errorf("Attempts = %d after max 3 and one refused, want 3", got.Attempts)
	}
	// A larger max (a configuration change) lets it count on.
	if n, ok, err := s.Codes.AttemptCode(t.Context(), c.ID, 5); !ok || err != nil || n != 4 {
		t.Errorf("AttemptCode with max 5 = %d, %v, %v; want 4, true", n, ok, err)
	}
}

func testAttemptCodeConcurrent(t *testing.T, s CodeStores) {
	u := mfaUser(t, s.Users, "ann")
	c := putCode(t, s.Codes, newOneTimeCode(u.ID, auth.CodePurposeChallenge, auth.MethodSMS, "", "+14155552671", at(0), time.Minute))
	const callers, max = 20, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	var counted []int
	start := make(chan struct{})
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			n, ok, err := s.Codes.AttemptCode(t.Context(), c.ID, max)
			if err != nil {
				t.Errorf("AttemptCode: %v", err)
				return
			}
			if ok {
				mu.Lock()
				counted = append(counted, n)
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	slices.Sort(counted)
	if !slices.Equal(counted, []int{1, 2, 3, 4, 5}) {
		t.Errorf("%d concurrent attempts with max %d counted %v, want exactly 1 to 5", callers, max, counted)
	}
}

func testUseCode(t *testing.T, s CodeStores) {
	u := mfaUser(t, s.Users, "ann")
	c := putCode(t, s.Codes, newOneTimeCode(u.ID, auth.CodePurposeEnrol, auth.MethodEmail, "", "a@x.example", at(0), time.Minute))
	if ok, err := s.Codes.UseCode(t.Context(), c.ID, at(30*time.Second)); !ok || err != nil {
		t.Fatalf("UseCode = %v, %v", ok, err)
	}
	if ok, err := s.Codes.UseCode(t.Context(), c.ID, at(40*time.Second)); ok || err != nil {
		t.Fatalf("second UseCode = %v, %v; want false: a code works once", ok, err)
	}
	got := getCode(t, s.Codes, u.ID, auth.CodePurposeEnrol, auth.MethodEmail)
	if !got.UsedAt.Equal(at(30 * time.Second)) {
		t.Errorf("UsedAt = %v, want the first use's %v", got.UsedAt, at(30*time.Second))
	}
	if _, ok, _ := s.Codes.AttemptCode(t.Context(), c.ID, 5); ok {
		t.Error("AttemptCode counted an attempt at a used code")
	}
}

func testUseCodeConcurrent(t *testing.T, s CodeStores) {
	u := mfaUser(t, s.Users, "ann")
	c := putCode(t, s.Codes, newOneTimeCode(u.ID, auth.CodePurposeChallenge, auth.MethodEmail, "", "a@x.example", at(0), time.Minute))
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	start := make(chan struct{})
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := s.Codes.UseCode(t.Context(), c.ID, at(time.Second))
			if err != nil {
				t.Errorf("UseCode: %v", err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins != 1 {
		t.Errorf("20 concurrent uses of one code: %d succeeded, want exactly 1", wins)
	}
}

func testCodeFactorCascade(t *testing.T, s CodeStores) {
	u := mfaUser(t, s.Users, "ann")
	f := addFactor(t, s.Factors, u.ID, auth.MethodSMS, "+1 ••• ••• 2671", []byte("+14155552671"), at(0))
	putCode(t, s.Codes, newOneTimeCode(u.ID, auth.CodePurposeEnrol, auth.MethodSMS, f.ID, "+14155552671", at(0), time.Minute))
	email := putCode(t, s.Codes, newOneTimeCode(u.ID, auth.CodePurposeEnrol, auth.MethodEmail, "", "a@x.example", at(0), time.Minute))
	if err := s.Factors.DeleteFactor(t.Context(), u.ID, f.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Codes.Code(t.Context(), u.ID, auth.CodePurposeEnrol, auth.MethodSMS); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("the removed number's code: Code = %v, want ErrNotFound", err)
	}
	sameCode(t, "another code of the user", getCode(t, s.Codes, u.ID, auth.CodePurposeEnrol, auth.MethodEmail), email)
}

func testDeleteExpiredCodes(t *testing.T, s CodeStores) {
	ann, bob := mfaUser(t, s.Users, "ann"), mfaUser(t, s.Users, "bob")
	putCode(t, s.Codes, newOneTimeCode(ann.ID, auth.CodePurposeChallenge, auth.MethodEmail, "", "a@x.example", at(0), time.Minute))
	putCode(t, s.Codes, newOneTimeCode(ann.ID, auth.CodePurposeEnrol, auth.MethodEmail, "", "a@x.example", at(0), 5*time.Minute))
	live := putCode(t, s.Codes, newOneTimeCode(bob.ID, auth.CodePurposeChallenge, auth.MethodEmail, "", "b@x.example", at(0), 10*time.Minute))
	n, err := s.Codes.DeleteExpiredCodes(t.Context(), at(5*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("DeleteExpiredCodes(+5m) = %d, %v; want 1 (the one that expired at +1m; +5m is not before +5m)", n, err)
	}
	if _, err := s.Codes.Code(t.Context(), ann.ID, auth.CodePurposeChallenge, auth.MethodEmail); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("expired code still there: %v", err)
	}
	getCode(t, s.Codes, ann.ID, auth.CodePurposeEnrol, auth.MethodEmail)
	sameCode(t, "live code", getCode(t, s.Codes, bob.ID, auth.CodePurposeChallenge, auth.MethodEmail), live)
}
