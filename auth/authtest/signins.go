package authtest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
)

// RunSignInHistory runs the auth.SignInHistory contract against the histories
// newHistory returns: each subtest calls it once and expects an empty history of
// its own, and a function that creates a user in it (sign-ins belong to known
// users) and returns the user's id. Subtests run in parallel; times are whole
// microseconds and come back Equal.
func RunSignInHistory(t *testing.T, newHistory func(t *testing.T) (h auth.SignInHistory, newUser func(t *testing.T) string)) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, h auth.SignInHistory, newUser func(t *testing.T) string)
	}{
		{"RecordAndRead", testSignInRecordAndRead},
		{"NewestFirst", testSignInNewestFirst},
		{"Filter", testSignInFilter},
		{"DefaultLimit", testSignInDefaultLimit},
		{"UnknownUser", testSignInUnknownUser},
		{"DeleteBefore", testSignInDeleteBefore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, newUser := newHistory(t)
			tc.fn(t, h, newUser)
		})
	}
}

func record(t *testing.T, h auth.SignInHistory, s *auth.SignIn) *auth.SignIn {
	t.Helper()
	if err := h.RecordSignIn(t.Context(), s); err != nil {
		t.Fatalf("RecordSignIn(%+v): %v", s, err)
	}
	if s.ID == 0 {
		t.Fatalf("RecordSignIn did not assign an ID")
	}
	return s
}

func signIns(t *testing.T, h auth.SignInHistory, userID string, f auth.SignInFilter) []*auth.SignIn {
	t.Helper()
	got, err := h.SignIns(t.Context(), userID, f)
	if err != nil {
		t.Fatalf("SignIns(%s, %+v): %v", userID, f, err)
	}
	return got
}

func sameSignIn(t *testing.T, got, want *auth.SignIn) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || !got.Time.Equal(want.Time) || got.IP != want.IP ||
		got.Location != want.Location || got.DeviceID != want.DeviceID || got.Outcome != want.Outcome {
		t.Fatalf("sign-in\n got %+v\nwant %+v", got, want)
	}
}

func ids(ss []*auth.SignIn) []int64 {
	var out []int64
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func testSignInRecordAndRead(t *testing.T, h auth.SignInHistory, newUser func(t *testing.T) string) {
	u := newUser(t)
	city := record(t, h, &auth.SignIn{UserID: u, Time: at(0), IP: "2001:db8::1",
		Location: auth.Location{Country: "PT", City: "Lisbon", Lat: 38.7223, Lon: -9.1393, HasPosition: true},
		DeviceID: "dev-1", Outcome: auth.OutcomeSuccess})
	// A position at 0,0 is a position (it is not "none").
	zero := record(t, h, &auth.SignIn{UserID: u, Time: at(time.Minute), IP: "192.0.2.7",
		Location: auth.Location{Country: "GH", HasPosition: true}, Outcome: auth.OutcomeFailure})
	none := record(t, h, &auth.SignIn{UserID: u, Time: at(2 * time.Minute), IP: "198.51.100.1",
		Location: auth.Location{Country: "FR"}, Outcome: auth.OutcomeSuccess})
	got := signIns(t, h, u, auth.SignInFilter{})
	if len(got) != 3 {
		t.Fatalf("%d sign-ins, want 3", len(got))
	}
	sameSignIn(t, got[0], none)
	sameSignIn(t, got[1], zero)
	sameSignIn(t, got[2], city)
	if city.ID == zero.ID || zero.ID == none.ID {
		t.Fatalf("IDs not distinct: %d %d %d", city.ID, zero.ID, none.ID)
	}
	if err := h.RecordSignIn(t.Context(), &auth.SignIn{UserID: u, Time: at(0), Outcome: "maybe"}); err == nil {
		t.Fatal("RecordSignIn with outcome \"maybe\" succeeded")
	}
}

func testSignInNewestFirst(t *testing.T, h auth.SignInHistory, newUser func(t *testing.T) string) {
	u := newUser(t)
	b := record(t, h, &auth.SignIn{UserID: u, Time: at(2 * time.Hour), Outcome: auth.OutcomeSuccess})
	a := record(t, h, &auth.SignIn{UserID: u, Time: at(time.Hour), Outcome: auth.OutcomeSuccess})
	c := record(t, h, &auth.SignIn{UserID: u, Time: at(3 * time.Hour), Outcome: auth.OutcomeFailure})
	// Two at the same instant: the later recorded first.
	d1 := record(t, h, &auth.SignIn{UserID: u, Time: at(3 * time.Hour), Outcome: auth.OutcomeFailure})
	want := []int64{d1.ID, c.ID, b.ID, a.ID}
	if got := ids(signIns(t, h, u, auth.SignInFilter{})); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func testSignInFilter(t *testing.T, h auth.SignInHistory, newUser func(t *testing.T) string) {
	u, other := newUser(t), newUser(t)
	var all []*auth.SignIn
	for i := range 6 {
		outcome := auth.OutcomeSuccess
		if i%2 == 1 {
			outcome = auth.OutcomeFailure
		}
		all = append(all, record(t, h, &auth.SignIn{UserID: u, Time: at(time.Duration(i) * time.Minute), Outcome: outcome}))
	}
	record(t, h, &auth.SignIn{UserID: other, Time: at(10 * time.Minute), Outcome: auth.OutcomeSuccess})
	record(t, h, &auth.SignIn{UserID: other, Time: at(10 * time.Minute), Outcome: auth.OutcomeFailure})
	for _, tc := range []struct {
		name string
		f    auth.SignInFilter
		want []*auth.SignIn
	}{
		{"all", auth.SignInFilter{}, []*auth.SignIn{all[5], all[4], all[3], all[2], all[1], all[0]}},
		{"since is inclusive", auth.SignInFilter{Since: at(3 * time.Minute)}, []*auth.SignIn{all[5], all[4], all[3]}},
		{"successes", auth.SignInFilter{Outcome: auth.OutcomeSuccess}, []*auth.SignIn{all[4], all[2], all[0]}},
		{"failures since", auth.SignInFilter{Outcome: auth.OutcomeFailure, Since: at(2 * time.Minute)}, []*auth.SignIn{all[5], all[3]}},
		{"limit keeps the newest", auth.SignInFilter{Limit: 2}, []*auth.SignIn{all[5], all[4]}},
		{"everything filtered", auth.SignInFilter{Limit: 1, Outcome: auth.OutcomeSuccess, Since: at(time.Minute)}, []*auth.SignIn{all[4]}},
		{"nothing since", auth.SignInFilter{Since: at(time.Hour)}, nil},
	} {
		got := signIns(t, h, u, tc.f)
		if fmt.Sprint(ids(got)) != fmt.Sprint(ids(tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, ids(got), ids(tc.want))
		}
	}
}

func testSignInDefaultLimit(t *testing.T, h auth.SignInHistory, newUser func(t *testing.T) string) {
	u := newUser(t)
	for i := range 105 {
		record(t, h, &auth.SignIn{UserID: u, Time: at(time.Duration(i) * time.Second), Outcome: auth.OutcomeFailure})
	}
	got := signIns(t, h, u, auth.SignInFilter{})
	if len(got) != 100 || !got[0].Time.Equal(at(104*time.Second)) {
		t.Fatalf("%d sign-ins from %v, want the newest 100", len(got), got[0].Time)
	}
	if got := signIns(t, h, u, auth.SignInFilter{Limit: 500}); len(got) != 105 {
		t.Fatalf("limit 500: %d sign-ins, want 105", len(got))
	}
}

func testSignInUnknownUser(t *testing.T, h auth.SignInHistory, newUser func(t *testing.T) string) {
	for _, id := range []string{"00000000-0000-4000-8000-000000000000", "not-a-user", ""} {
		err := h.RecordSignIn(t.Context(), &auth.SignIn{UserID: id, Time: at(0), Outcome: auth.OutcomeFailure})
		if !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("RecordSignIn for user %q: %v, want ErrNotFound", id, err)
		}
		if got := signIns(t, h, id, auth.SignInFilter{}); len(got) != 0 {
			t.Errorf("SignIns of user %q: %d", id, len(got))
		}
	}
}

func testSignInDeleteBefore(t *testing.T, h auth.SignInHistory, newUser func(t *testing.T) string) {
	u, other := newUser(t), newUser(t)
	for i := range 5 {
		record(t, h, &auth.SignIn{UserID: u, Time: at(time.Duration(i) * time.Hour), Outcome: auth.OutcomeSuccess})
		record(t, h, &auth.SignIn{UserID: other, Time: at(time.Duration(i) * time.Hour), Outcome: auth.OutcomeFailure})
	}
	n, err := h.DeleteSignInsBefore(t.Context(), at(2*time.Hour))
	if err != nil || n != 4 {
		t.Fatalf("DeleteSignInsBefore = %d, %v; want 4 (the ones before, not the one at the instant)", n, err)
	}
	for _, id := range []string{u, other} {
		got := signIns(t, h, id, auth.SignInFilter{})
		if len(got) != 3 || !got[2].Time.Equal(at(2*time.Hour)) {
			t.Fatalf("after pruning: %d sign-ins, oldest %v", len(got), got[len(got)-1].Time)
		}
	}
	if n, err := h.DeleteSignInsBefore(t.Context(), at(2*time.Hour)); err != nil || n != 0 {
		t.Fatalf("pruning again = %d, %v; want 0", n, err)
	}
}
