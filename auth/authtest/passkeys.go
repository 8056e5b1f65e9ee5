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

// RunPasskeyCeremonyStore runs the auth.PasskeyCeremonyStore contract against the
// stores newStore returns, with the id of a user that exists in each (ceremonies
// belong to users). Each subtest calls newStore once and expects a store of its
// own, empty; subtests run in parallel. Times are whole microseconds.
func RunPasskeyCeremonyStore(t *testing.T, newStore func(t *testing.T) (s auth.PasskeyCeremonyStore, userID string)) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s auth.PasskeyCeremonyStore, userID string)
	}{
		{"PutTake", testPutTakeCeremony},
		{"TakeOnce", testTakeCeremonyOnce},
		{"TakeConcurrent", testTakeCeremonyConcurrent},
		{"UnknownUser", testCeremonyUnknownUser},
		{"DeleteExpired", testDeleteExpiredCeremonies},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, userID := newStore(t)
			tc.fn(t, s, userID)
		})
	}
}

var ceremonyEpoch = time.Date(2026, 12, 5, 9, 30, 0, 123456000, time.UTC)

func newCeremony(userID, kind string, expires time.Time) *auth.PasskeyCeremony {
	return &auth.PasskeyCeremony{
		ID: auth.HashToken(auth.NewToken()), UserID: userID, Kind: kind, Name: "Work laptop",
		Session: []byte(`{"challenge":"c2Vzc2lvbg","user_id":"dXNlcg"}`), CreatedAt: expires.Add(-auth.PasskeyCeremonyTimeout), ExpiresAt: expires,
	}
}

func testPutTakeCeremony(t *testing.T, s auth.PasskeyCeremonyStore, userID string) {
	ctx := t.Context()
	for _, kind := range []string{auth.CeremonyRegistration, auth.CeremonyAssertion} {
		want := newCeremony(userID, kind, ceremonyEpoch)
		if kind == auth.CeremonyAssertion {
			want.Name = ""
		}
		if err := s.PutPasskeyCeremony(ctx, want); err != nil {
			t.Fatalf("PutPasskeyCeremony(%s): %v", kind, err)
		}
		got, err := s.TakePasskeyCeremony(ctx, want.ID)
		if err != nil {
			t.Fatalf("TakePasskeyCeremony(%s): %v", kind, err)
		}
		if err := sameCeremony(got, want); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
	c := newCeremony(userID, auth.CeremonyRegistration, ceremonyEpoch)
	if err := s.PutPasskeyCeremony(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPasskeyCeremony(ctx, c); !errors.Is(err, auth.ErrConflict) {
		t.Errorf("PutPasskeyCeremony with a taken id = %v, want ErrConflict", err)
	}
}

func sameCeremony(got, want *auth.PasskeyCeremony) error {
	switch {
	case got.ID != want.ID, got.UserID != want.UserID, got.Kind != want.Kind, got.Name != want.Name:
		return fmt.Errorf("got %q %q %q %q, want %q %q %q %q", got.ID, got.UserID, got.Kind, got.Name, want.ID, want.UserID, want.Kind, want.Name)
	case !bytes.Equal(got.Session, want.Session):
		return fmt.Errorf("session %q, want %q", got.Session, want.Session)
	case !got.CreatedAt.Equal(want.CreatedAt), !got.ExpiresAt.Equal(want.ExpiresAt):
		return fmt.Errorf("created %v expires %v, want %v %v", got.CreatedAt, got.ExpiresAt, want.CreatedAt, want.ExpiresAt)
	}
	return nil
}

func testTakeCeremonyOnce(t *testing.T, s auth.PasskeyCeremonyStore, userID string) {
	ctx := t.Context()
	if _, err := s.TakePasskeyCeremony(ctx, auth.HashToken("never issued")); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("TakePasskeyCeremony of an unknown id = %v, want ErrNotFound", err)
	}
	a, b := newCeremony(userID, auth.CeremonyAssertion, ceremonyEpoch), newCeremony(userID, auth.CeremonyAssertion, ceremonyEpoch)
	for _, c := range []*auth.PasskeyCeremony{a, b} {
		if err := s.PutPasskeyCeremony(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.TakePasskeyCeremony(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakePasskeyCeremony(ctx, a.ID); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("TakePasskeyCeremony a second time = %v, want ErrNotFound", err)
	}
	if got, err := s.TakePasskeyCeremony(ctx, b.ID); err != nil || got.ID != b.ID {
		t.Errorf("taking one ceremony took another: TakePasskeyCeremony(b) = %v, %v", got, err)
	}
}

func testTakeCeremonyConcurrent(t *testing.T, s auth.PasskeyCeremonyStore, userID string) {
	ctx := t.Context()
	c := newCeremony(userID, auth.CeremonyAssertion, ceremonyEpoch)
	if err := s.PutPasskeyCeremony(ctx, c); err != nil {
		t.Fatal(err)
	}
	const n = 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, errs := 0, []error{}
	for range n {
		wg.Go(func() {
			_, err := s.TakePasskeyCeremony(ctx, c.ID)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, auth.ErrNotFound):
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if won != 1 || len(errs) > 0 {
		t.Errorf("%d concurrent takes: %d got the ceremony (want 1), errors %v", n, won, errs)
	}
}

func testCeremonyUnknownUser(t *testing.T, s auth.PasskeyCeremonyStore, _ string) {
	c := newCeremony("6f1e9b1c-0000-4000-8000-000000000000", auth.CeremonyRegistration, ceremonyEpoch)
	if err := s.PutPasskeyCeremony(t.Context(), c); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("PutPasskeyCeremony for a user that does not exist = %v, want ErrNotFound", err)
	}
}

func testDeleteExpiredCeremonies(t *testing.T, s auth.PasskeyCeremonyStore, userID string) {
	ctx := t.Context()
	before := ceremonyEpoch
	old := newCeremony(userID, auth.CeremonyRegistration, before.Add(-time.Microsecond))
	edge := newCeremony(userID, auth.CeremonyAssertion, before)
	live := newCeremony(userID, auth.CeremonyAssertion, before.Add(time.Minute))
	for _, c := range []*auth.PasskeyCeremony{old, edge, live} {
		if err := s.PutPasskeyCeremony(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.DeleteExpiredPasskeyCeremonies(ctx, before); err != nil || n != 1 {
		t.Fatalf("DeleteExpiredPasskeyCeremonies = %d, %v; want 1 (the one that expired before)", n, err)
	}
	if _, err := s.TakePasskeyCeremony(ctx, old.ID); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("the expired ceremony is still there: %v", err)
	}
	for _, c := range []*auth.PasskeyCeremony{edge, live} {
		if _, err := s.TakePasskeyCeremony(ctx, c.ID); err != nil {
			t.Errorf("a ceremony not expired before %v was deleted: %v", before, err)
		}
	}
	if n, err := s.DeleteExpiredPasskeyCeremonies(ctx, before); err != nil || n != 0 {
		t.Errorf("DeleteExpiredPasskeyCeremonies again = %d, %v; want 0", n, err)
	}
}
