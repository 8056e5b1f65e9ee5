package authtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// RecoveryHarness is an auth.RecoveryStore under test and a way to create users
// in its database.
type RecoveryHarness struct {
	Store auth.RecoveryStore
	// NewUser creates a user and returns its id.
	NewUser func(t *testing.T) string
}

// RunRecoveryStore runs the auth.RecoveryStore contract against the stores
// newHarness returns: each subtest calls it once and expects an empty store of its
// own; subtests run in parallel.
func RunRecoveryStore(t *testing.T, newHarness func(t *testing.T) RecoveryHarness) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, h RecoveryHarness)
	}{
		{"CreateRecovery", testCreateRecovery},
		{"CreateRecoveryUnknownUser", testCreateRecoveryUnknownUser},
		{"OneOpenRecovery", testOneOpenRecovery},
		{"OneOpenRecoveryConcurrent", testOneOpenRecoveryConcurrent},
		{"RecoveryNotFound", testRecoveryNotFound},
		{"RecoveryByToken", testRecoveryByToken},
		{"Recoveries", testRecoveries},
		{"RecoveriesByStatus", testRecoveriesByStatus},
		{"AddRecoveryAttempt", testAddRecoveryAttempt},
		{"AddRecoveryAttemptConcurrent", testAddRecoveryAttemptConcurrent},
		{"UpdateRecovery", testUpdateRecovery},
		{"UpdateRecoveryConcurrent", testUpdateRecoveryConcurrent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newHarness(t))
		})
	}
}

func recoveryID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func newRecovery(userID string, created time.Time) *auth.RecoveryRequest {
	return &auth.RecoveryRequest{
		ID: recoveryID(), UserID: userID, Status: auth.RecoveryVerifying, Reason: "phone stolen",
		PrimaryEmail: "ann@example.com", SecondaryEmail: "ann@backup.example", PrimaryCodeHash: "hash-1", SecondaryCodeHash: "hash-2",
		CodesExpireAt: created.Add(15 * time.Minute), IP: "203.0.113.9", UserAgent: "Firefox", CreatedAt: created,
	}
}

func createRecovery(t *testing.T, s auth.RecoveryStore, r *auth.RecoveryRequest) *auth.RecoveryRequest {
	t.Helper()
	if err := s.CreateRecovery(t.Context(), r); err != nil {
		t.Fatalf("CreateRecovery: %v", err)
	}
	return r
}

func getRecovery(t *testing.T, s auth.RecoveryStore, id string) *auth.RecoveryRequest {
	t.Helper()
	r, err := s.Recovery(t.Context(), id)
	if err != nil {
		t.Fatalf("Recovery(%s): %v", id, err)
	}
	return r
}

// close moves r to a final status, so its user may open another.
func closeRecovery(t *testing.T, s auth.RecoveryStore, r *auth.RecoveryRequest, to auth.RecoveryStatus) {
	t.Helper()
	from := r.Status
	r.Status = to
	if err := s.UpdateRecovery(t.Context(), r, from); err != nil {
		t.Fatalf("UpdateRecovery(%s -> %s): %v", from, to, err)
	}
}

func sameRecovery(t *testing.T, what string, got, want *auth.RecoveryRequest) {
	t.Helper()
	g, w := *got, *want
	if !g.CodesExpireAt.Equal(w.CodesExpireAt) || !g.CreatedAt.Equal(w.CreatedAt) || !g.VerifiedAt.Equal(w.VerifiedAt) ||
		!g.DecidedAt.Equal(w.DecidedAt) || !g.TokenExpiresAt.Equal(w.TokenExpiresAt) || !g.RedeemedAt.Equal(w.RedeemedAt) {
		t.Errorf("%s: times differ:\n got %+v\nwant %+v", what, g, w)
	}
	for _, p := range []*auth.RecoveryRequest{&g, &w} {
		p.CodesExpireAt, p.CreatedAt, p.VerifiedAt, p.DecidedAt, p.TokenExpiresAt, p.RedeemedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	}
	if g != w {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func recoveryIDs(rs []*auth.RecoveryRequest) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func testCreateRecovery(t *testing.T, h RecoveryHarness) {
	uid := h.NewUser(t)
	r := createRecovery(t, h.Store, newRecovery(uid, at(0)))
	sameRecovery(t, "Recovery after CreateRecovery", getRecovery(t, h.Store, r.ID), r)

	// Every field survives a full update.
	want := *r
	want.Status, want.VerifiedAt, want.TicketID, want.DecidedBy, want.DecidedAt, want.DecisionNote =
		auth.RecoveryApproved, at(time.Minute), "T-1234", someUUID, at(2*time.Minute), "called the number on file"
	want.TokenHash, want.TokenExpiresAt = "token-hash", at(17*time.Minute)
	if err := h.Store.UpdateRecovery(t.Context(), &want, auth.RecoveryVerifying); err != nil {
		t.Fatal(err)
	}
	sameRecovery(t, "Recovery after UpdateRecovery", getRecovery(t, h.Store, r.ID), &want)
	want.Status, want.RedeemedAt = auth.RecoveryRedeemed, at(20*time.Minute)
	if err := h.Store.UpdateRecovery(t.Context(), &want, auth.RecoveryApproved); err != nil {
		t.Fatal(err)
	}
	sameRecovery(t, "Recovery after redeeming", getRecovery(t, h.Store, r.ID), &want)
	// The codes and who filed it never change.
	changed := want
	changed.PrimaryCodeHash, changed.Reason, changed.Attempts, changed.UserID = "other", "other", 9, someUUID
	if err := h.Store.UpdateRecovery(t.Context(), &changed, auth.RecoveryRedeemed); err != nil {
		t.Fatal(err)
	}
	sameRecovery(t, "UpdateRecovery must not change codes, reason, attempts or user", getRecovery(t, h.Store, r.ID), &want)
}

func testCreateRecoveryUnknownUser(t *testing.T, h RecoveryHarness) {
	for _, uid := range []string{someUUID, "not-a-uuid"} {
		err := h.Store.CreateRecovery(t.Context(), newRecovery(uid, at(0)))
		wantErr(t, fmt.Sprintf("CreateRecovery for user %q", uid), err, auth.ErrNotFound)
	}
}

func testOneOpenRecovery(t *testing.T, h RecoveryHarness) {
	uid, other := h.NewUser(t), h.NewUser(t)
	for _, open := range []auth.RecoveryStatus{auth.RecoveryVerifying, auth.RecoveryAwaitingApproval, auth.RecoveryApproved} {
		r := newRecovery(uid, at(0))
		r.Status = open
		createRecovery(t, h.Store, r)
		err := h.Store.CreateRecovery(t.Context(), newRecovery(uid, at(time.Minute)))
		wantErr(t, "a second open request while one is "+string(open), err, auth.ErrConflict)
		o := createRecovery(t, h.Store, newRecovery(other, at(time.Minute))) // another user's is fine
		closeRecovery(t, h.Store, r, auth.RecoveryCancelled)
		closeRecovery(t, h.Store, o, auth.RecoveryExpired)
	}
	// Final requests do not count.
	createRecovery(t, h.Store, newRecovery(uid, at(time.Hour)))
}

func testOneOpenRecoveryConcurrent(t *testing.T, h RecoveryHarness) {
	uid := h.NewUser(t)
	const n = 12
	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		created, conflict int
		other             []error
		start             = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			err := h.Store.CreateRecovery(t.Context(), newRecovery(uid, at(0)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case errors.Is(err, auth.ErrConflict):
				conflict++
			default:
				other = append(other, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if created != 1 || conflict != n-1 || len(other) > 0 {
		t.Fatalf("%d concurrent CreateRecovery for one user: %d created, %d conflicts, errors %v; want exactly one open request",
			n, created, conflict, errors.Join(other...))
	}
}

func testRecoveryNotFound(t *testing.T, h RecoveryHarness) {
	for _, id := range []string{someUUID, "not-a-uuid", ""} {
		_, err := h.Store.Recovery(t.Context(), id)
		wantErr(t, fmt.Sprintf("Recovery(%q)", id), err, auth.ErrNotFound)
	}
	for _, hash := range []string{"", "unknown"} {
		_, err := h.Store.RecoveryByToken(t.Context(), hash)
		wantErr(t, fmt.Sprintf("RecoveryByToken(%q)", hash), err, auth.ErrNotFound)
	}
	r := newRecovery(someUUID, at(0))
	wantErr(t, "UpdateRecovery of an unknown request", h.Store.UpdateRecovery(t.Context(), r, auth.RecoveryVerifying), auth.ErrNotFound)
	_, err := h.Store.AddRecoveryAttempt(t.Context(), someUUID)
	wantErr(t, "AddRecoveryAttempt of an unknown request", err, auth.ErrNotFound)
	if rs, err := h.Store.Recoveries(t.Context(), "not-a-uuid", 10); err != nil || len(rs) != 0 {
		t.Errorf("Recoveries(malformed user) = %v, %v; want none", rs, err)
	}
}

func testRecoveryByToken(t *testing.T, h RecoveryHarness) {
	uid := h.NewUser(t)
	r := createRecovery(t, h.Store, newRecovery(uid, at(0)))
	// Requests without a link are not found by an empty hash.
	if _, err := h.Store.RecoveryByToken(t.Context(), ""); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("RecoveryByToken(\"\") with a request without link = %v, want ErrNotFound", err)
	}
	r.Status, r.TokenHash, r.TokenExpiresAt = auth.RecoveryApproved, auth.HashToken("link-token"), at(15*time.Minute)
	if err := h.Store.UpdateRecovery(t.Context(), r, auth.RecoveryVerifying); err != nil {
		t.Fatal(err)
	}
	got, err := h.Store.RecoveryByToken(t.Context(), auth.HashToken("link-token"))
	if err != nil {
		t.Fatal(err)
	}
	sameRecovery(t, "RecoveryByToken", got, r)
}

func testRecoveries(t *testing.T, h RecoveryHarness) {
	uid, other := h.NewUser(t), h.NewUser(t)
	var ids []string
	for i := range 3 {
		r := createRecovery(t, h.Store, newRecovery(uid, at(time.Duration(i)*time.Hour)))
		closeRecovery(t, h.Store, r, auth.RecoveryCancelled)
		ids = append(ids, r.ID)
	}
	createRecovery(t, h.Store, newRecovery(other, at(5*time.Hour)))
	slices.Reverse(ids)
	rs, err := h.Store.Recoveries(t.Context(), uid, 10)
	if err != nil || !slices.Equal(recoveryIDs(rs), ids) {
		t.Fatalf("Recoveries = %v, %v; want %v (newest first, only this user's)", recoveryIDs(rs), err, ids)
	}
	if rs, err := h.Store.Recoveries(t.Context(), uid, 2); err != nil || !slices.Equal(recoveryIDs(rs), ids[:2]) {
		t.Fatalf("Recoveries(limit 2) = %v, %v; want %v", recoveryIDs(rs), err, ids[:2])
	}
}

func testRecoveriesByStatus(t *testing.T, h RecoveryHarness) {
	var awaiting []string
	for i := range 3 {
		r := createRecovery(t, h.Store, newRecovery(h.NewUser(t), at(time.Duration(3-i)*time.Hour)))
		r.Status = auth.RecoveryAwaitingApproval
		if err := h.Store.UpdateRecovery(t.Context(), r, auth.RecoveryVerifying); err != nil {
			t.Fatal(err)
		}
		awaiting = append(awaiting, r.ID)
	}
	createRecovery(t, h.Store, newRecovery(h.NewUser(t), at(0))) // still verifying
	slices.Reverse(awaiting)
	rs, err := h.Store.RecoveriesByStatus(t.Context(), auth.RecoveryAwaitingApproval, 10)
	if err != nil || !slices.Equal(recoveryIDs(rs), awaiting) {
		t.Fatalf("RecoveriesByStatus(awaiting) = %v, %v; want %v (oldest first)", recoveryIDs(rs), err, awaiting)
	}
	if rs, err := h.Store.RecoveriesByStatus(t.Context(), auth.RecoveryAwaitingApproval, 1); err != nil || !slices.Equal(recoveryIDs(rs), awaiting[:1]) {
		t.Fatalf("RecoveriesByStatus(limit 1) = %v, %v; want %v", recoveryIDs(rs), err, awaiting[:1])
	}
	if rs, err := h.Store.RecoveriesByStatus(t.Context(), auth.RecoveryDenied, 10); err != nil || len(rs) != 0 {
		t.Fatalf("RecoveriesByStatus(denied) = %v, %v; want none", recoveryIDs(rs), err)
	}
}

func testAddRecoveryAttempt(t *testing.T, h RecoveryHarness) {
	r := createRecovery(t, h.Store, newRecovery(h.NewUser(t), at(0)))
	for want := 1; want <= 3; want++ {
		n, err := h.Store.AddRecoveryAttempt(t.Context(), r.ID)
		if err != nil || n != want {
			t.Fatalf("AddRecoveryAttempt #%d = %d, %v", want, n, err)
		}
	}
	if got := getRecovery(t, h.Store, r.ID); got.Attempts != 3 {
		t.Errorf("Attempts = %d, want 3", got.Attempts)
	}
	closeRecovery(t, h.Store, r, auth.RecoveryAwaitingApproval)
	_, err := h.Store.AddRecoveryAttempt(t.Context(), r.ID)
	wantErr(t, "AddRecoveryAttempt once the request left verification", err, auth.ErrNotFound)
}

func testAddRecoveryAttemptConcurrent(t *testing.T, h RecoveryHarness) {
	r := createRecovery(t, h.Store, newRecovery(h.NewUser(t), at(0)))
	const n = 20
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts []int
		errs   []error
		start  = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			c, err := h.Store.AddRecoveryAttempt(t.Context(), r.ID)
			mu.Lock()
			defer mu.Unlock()
			counts, errs = append(counts, c), append(errs, err)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	slices.Sort(counts)
	for i, c := range counts {
		if c != i+1 {
			t.Fatalf("%d concurrent AddRecoveryAttempt returned %v; want each count 1..%d once (no lost updates)", n, counts, n)
		}
	}
}

func testUpdateRecovery(t *testing.T, h RecoveryHarness) {
	r := createRecovery(t, h.Store, newRecovery(h.NewUser(t), at(0)))
	next := *r
	next.Status = auth.RecoveryAwaitingApproval
	err := h.Store.UpdateRecovery(t.Context(), &next, auth.RecoveryApproved)
	wantErr(t, "UpdateRecovery from the wrong status", err, auth.ErrConflict)
	if got := getRecovery(t, h.Store, r.ID); got.Status != auth.RecoveryVerifying {
		t.Errorf("a refused UpdateRecovery changed the status to %s", got.Status)
	}
	if err := h.Store.UpdateRecovery(t.Context(), &next, auth.RecoveryVerifying); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "UpdateRecovery from a status the request left", h.Store.UpdateRecovery(t.Context(), &next, auth.RecoveryVerifying), auth.ErrConflict)
}

func testUpdateRecoveryConcurrent(t *testing.T, h RecoveryHarness) {
	r := createRecovery(t, h.Store, newRecovery(h.NewUser(t), at(0)))
	r.Status = auth.RecoveryAwaitingApproval
	if err := h.Store.UpdateRecovery(t.Context(), r, auth.RecoveryVerifying); err != nil {
		t.Fatal(err)
	}
	const n = 10
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		won, lost int
		winner    string
		other     []error
		start     = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			next := *r
			next.Status, next.DecidedBy, next.DecidedAt = auth.RecoveryApproved, fmt.Sprintf("approver-%d", i), at(time.Minute)
			if i%2 == 1 {
				next.Status = auth.RecoveryDenied
			}
			err := h.Store.UpdateRecovery(t.Context(), &next, auth.RecoveryAwaitingApproval)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
				winner = next.DecidedBy
			case errors.Is(err, auth.ErrConflict):
				lost++
			default:
				other = append(other, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if won != 1 || lost != n-1 || len(other) > 0 {
		t.Fatalf("%d concurrent decisions: %d won, %d conflicts, errors %v; want exactly one", n, won, lost, errors.Join(other...))
	}
	if got := getRecovery(t, h.Store, r.ID); got.DecidedBy != winner {
		t.Errorf("stored decision by %q, the winner was %q", got.DecidedBy, winner)
	}
}
