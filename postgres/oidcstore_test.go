package postgres_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/oidcprovider"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// oidcFixture is a migrated database with a user and a session for grants to
// stand on.
type oidcFixture struct {
	store *postgres.OIDCStore
	users *postgres.AuthStore
	user  *auth.User
	sess  *auth.Session
	now   time.Time
}

func newOIDCFixture(t *testing.T) *oidcFixture {
	t.Helper()
	pool := openPool(t, pgtest.Database(t)+"&pool_max_conns=20")
	if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	f := &oidcFixture{store: postgres.NewOIDCStore(pool), users: postgres.NewAuthStore(pool), now: time.Now().UTC().Truncate(time.Microsecond)}
	f.user = &auth.User{Type: auth.TypeOwner, Email: "olivia@example.com", Name: "Olivia", Roles: []string{"owner"}}
	if err := f.users.CreateUser(t.Context(), f.user, nil); err != nil {
		t.Fatal(err)
	}
	f.sess = &auth.Session{ID: auth.HashToken(auth.NewToken()), UserID: f.user.ID, CreatedAt: f.now, LastSeenAt: f.now,
		ExpiresAt: f.now.Add(24 * time.Hour), IdleTimeout: time.Hour, Methods: []string{"google"}, AuthTime: f.now}
	if err := f.users.CreateSession(t.Context(), f.sess); err != nil {
		t.Fatal(err)
	}
	return f
}

// completedRequest stores a request, completes it and gives it a code.
func (f *oidcFixture) completedRequest(t *testing.T, codeHash string) *oidcprovider.AuthRequest {
	t.Helper()
	ctx := t.Context()
	maxAge := int64(300)
	r := &oidcprovider.AuthRequest{ID: auth.NewToken(), ClientID: "frontend", RedirectURI: "https://app.example/cb",
		Scopes: []string{"openid", "email"}, State: "st", Nonce: "no", ResponseType: "code", CodeChallenge: "ch",
		CodeChallengeMethod: "S256", Prompt: []string{"login"}, MaxAge: &maxAge, Binding: "b", CreatedAt: f.now, ExpiresAt: f.now.Add(10 * time.Minute)}
	if err := f.store.CreateAuthRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.UserID, r.SessionID, r.AuthTime, r.AMR, r.CompletedAt, r.Completion = f.user.ID, f.sess.ID, f.now, []string{"google"}, f.now, "c"
	if err := f.store.CompleteAuthRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SaveAuthCode(ctx, r.ID, codeHash, f.now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *oidcFixture) grant(r *oidcprovider.AuthRequest) *oidcprovider.Grant {
	return &oidcprovider.Grant{ID: r.ID, ClientID: r.ClientID, UserID: r.UserID, SessionID: r.SessionID, Scopes: r.Scopes,
		AuthTime: r.AuthTime, AMR: r.AMR, CreatedAt: f.now, ExpiresAt: f.sess.ExpiresAt}
}

func (f *oidcFixture) token(grantID string, ttl time.Duration) *oidcprovider.Token {
	return &oidcprovider.Token{ID: auth.NewToken(), GrantID: grantID, Scopes: []string{"openid"}, CreatedAt: f.now, ExpiresAt: f.now.Add(ttl)}
}

func wantStoreErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: %v, want %v", what, err, target)
	}
}

func TestOIDCStoreAuthRequests(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t)
	ctx := t.Context()
	r := f.completedRequest(t, "code-1")

	got, err := f.store.AuthRequestByCode(ctx, "code-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != r.ID || got.UserID != f.user.ID || got.SessionID != f.sess.ID || !slices.Equal(got.Scopes, r.Scopes) ||
		*got.MaxAge != 300 || !slices.Equal(got.Prompt, []string{"login"}) || got.CodeHash != "code-1" ||
		!got.CodeExpiresAt.Equal(f.now.Add(time.Minute)) || !got.CodeUsedAt.IsZero() || !got.AuthTime.Equal(f.now) || got.Completion != "c" {
		t.Fatalf("AuthRequestByCode = %+v", got)
	}
	_, err = f.store.AuthRequestByCode(ctx, "code-2")
	wantStoreErr(t, "unknown code", err, auth.ErrNotFound)
	_, err = f.store.AuthRequest(ctx, "nope")
	wantStoreErr(t, "unknown request", err, auth.ErrNotFound)

	// Completed once, a code once.
	wantStoreErr(t, "second completion", f.store.CompleteAuthRequest(ctx, r), auth.ErrNotFound)
	wantStoreErr(t, "second code", f.store.SaveAuthCode(ctx, r.ID, "code-2", f.now.Add(time.Minute)), auth.ErrConflict)

	pending := &oidcprovider.AuthRequest{ID: auth.NewToken(), ClientID: "frontend", RedirectURI: "https://app.example/cb",
		Scopes: []string{"openid"}, ResponseType: "code", CodeChallenge: "ch", CodeChallengeMethod: "S256", Binding: "b",
		CreatedAt: f.now, ExpiresAt: f.now.Add(10 * time.Minute)}
	if err := f.store.CreateAuthRequest(ctx, pending); err != nil {
		t.Fatal(err)
	}
	got, err = f.store.AuthRequest(ctx, pending.ID)
	if err != nil || got.MaxAge != nil || !got.CompletedAt.IsZero() || got.UserID != "" || got.CodeHash != "" {
		t.Fatalf("pending request = %+v, %v", got, err)
	}
	wantStoreErr(t, "code before completion", f.store.SaveAuthCode(ctx, pending.ID, "code-3", f.now), auth.ErrNotFound)
	late := *pending
	late.UserID, late.SessionID, late.CompletedAt = f.user.ID, f.sess.ID, pending.ExpiresAt
	wantStoreErr(t, "completion when expired", f.store.CompleteAuthRequest(ctx, &late), auth.ErrNotFound)
	refused := *pending
	refused.CompletedAt, refused.Completion = f.now, "x"
	if err := f.store.CompleteAuthRequest(ctx, &refused); err != nil {
		t.Fatalf("completion for nobody (Fail): %v", err)
	}
}

// TestOIDCStoreCodeRedeemedOnce: of concurrent redemptions of one code, exactly
// one stores its grant and tokens; the others store nothing.
func TestOIDCStoreCodeRedeemedOnce(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t)
	r := f.completedRequest(t, "code-1")
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	access := make([]*oidcprovider.Token, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			access[i] = f.token(r.ID, time.Minute)
			errs[i] = f.store.IssueTokens(t.Context(), &oidcprovider.Issue{Code: r.ID, Grant: f.grant(r), Access: access[i],
				Refresh: f.token(r.ID, time.Hour), Now: f.now})
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		_, lookErr := f.store.AccessToken(t.Context(), access[i].ID)
		switch {
		case err == nil:
			won++
			if lookErr != nil {
				t.Fatalf("winner's access token: %v", lookErr)
			}
		case errors.Is(err, auth.ErrConflict):
			wantStoreErr(t, "loser's access token", lookErr, auth.ErrNotFound)
		default:
			t.Fatalf("redemption %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d redemptions won, want 1", won)
	}
	got, err := f.store.AuthRequestByCode(t.Context(), "code-1")
	if err != nil || !got.CodeUsedAt.Equal(f.now) {
		t.Fatalf("after redemption: %+v, %v", got, err)
	}
	g, err := f.store.Grant(t.Context(), r.ID)
	if err != nil || g.UserID != f.user.ID || g.SessionID != f.sess.ID || !g.RevokedAt.IsZero() || !g.ExpiresAt.Equal(f.sess.ExpiresAt) ||
		!slices.Equal(g.AMR, []string{"google"}) {
		t.Fatalf("grant = %+v, %v", g, err)
	}
}

// TestOIDCStoreRefreshRotation: a refresh token rotates once, even when raced.
func TestOIDCStoreRefreshRotation(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t)
	ctx := t.Context()
	r := f.completedRequest(t, "code-1")
	rt := f.token(r.ID, time.Hour)
	if err := f.store.IssueTokens(ctx, &oidcprovider.Issue{Code: r.ID, Grant: f.grant(r), Access: f.token(r.ID, time.Minute), Refresh: rt, Now: f.now}); err != nil {
		t.Fatal(err)
	}
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	next := make([]*oidcprovider.Token, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next[i] = f.token(r.ID, time.Hour)
			errs[i] = f.store.IssueTokens(ctx, &oidcprovider.Issue{Rotate: rt.ID, Access: f.token(r.ID, time.Minute), Refresh: next[i], Now: f.now.Add(time.Second)})
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		_, lookErr := f.store.RefreshToken(ctx, next[i].ID)
		if err == nil {
			if won >= 0 {
				t.Fatal("two rotations of one refresh token won")
			}
			won = i
			continue
		}
		wantStoreErr(t, "losing rotation", err, auth.ErrConflict)
		wantStoreErr(t, "losing rotation's refresh token", lookErr, auth.ErrNotFound)
	}
	if won < 0 {
		t.Fatal("no rotation won")
	}
	old, err := f.store.RefreshToken(ctx, rt.ID)
	if err != nil || !old.UsedAt.Equal(f.now.Add(time.Second)) || !old.RevokedAt.IsZero() {
		t.Fatalf("rotated token = %+v, %v", old, err)
	}

	// Revoking the grant revokes its tokens; a revoked token does not rotate.
	if err := f.store.RevokeGrant(ctx, r.ID, f.now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	cur, err := f.store.RefreshToken(ctx, next[won].ID)
	if err != nil || cur.RevokedAt.IsZero() {
		t.Fatalf("refresh token of a revoked grant = %+v, %v", cur, err)
	}
	err = f.store.IssueTokens(ctx, &oidcprovider.Issue{Rotate: cur.ID, Access: f.token(r.ID, time.Minute), Refresh: f.token(r.ID, time.Hour), Now: f.now})
	wantStoreErr(t, "rotating a revoked token", err, auth.ErrConflict)
	wantStoreErr(t, "revoking an unknown grant", f.store.RevokeGrant(ctx, "nope", f.now), auth.ErrNotFound)
}

func TestOIDCStoreRevocations(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t)
	ctx := t.Context()
	issue := func(code, client string) (*oidcprovider.Grant, *oidcprovider.Token) {
		r := f.completedRequest(t, code)
		g := f.grant(r)
		g.ClientID = client
		at := f.token(r.ID, time.Minute)
		if err := f.store.IssueTokens(ctx, &oidcprovider.Issue{Code: r.ID, Grant: g, Access: at, Refresh: f.token(r.ID, time.Hour), Now: f.now}); err != nil {
			t.Fatal(err)
		}
		return g, at
	}
	g1, at1 := issue("c1", "frontend")
	g2, _ := issue("c2", "frontend")
	g3, at3 := issue("c3", "other")

	if err := f.store.RevokeAccessToken(ctx, at3.ID, f.now); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.store.AccessToken(ctx, at3.ID); got.RevokedAt.IsZero() {
		t.Fatal("access token not revoked")
	}
	wantStoreErr(t, "revoking an unknown access token", f.store.RevokeAccessToken(ctx, "nope", f.now), auth.ErrNotFound)

	revoked, err := f.store.RevokeGrants(ctx, f.user.ID, "frontend", f.now)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, g := range revoked {
		ids = append(ids, g.ID)
	}
	slices.Sort(ids)
	want := []string{g1.ID, g2.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("RevokeGrants revoked %v, want %v", ids, want)
	}
	if got, _ := f.store.AccessToken(ctx, at1.ID); got.RevokedAt.IsZero() {
		t.Fatal("access token of a revoked grant not revoked")
	}
	if got, _ := f.store.Grant(ctx, g3.ID); !got.RevokedAt.IsZero() {
		t.Fatal("the other client's grant was revoked")
	}
	if again, err := f.store.RevokeGrants(ctx, f.user.ID, "frontend", f.now); err != nil || len(again) != 0 {
		t.Fatalf("second RevokeGrants: %v, %v", again, err)
	}
}

func TestOIDCStoreSigningKeyOnce(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t)
	const n = 8
	var wg sync.WaitGroup
	got := make([]*oidcprovider.StoredKey, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := &oidcprovider.StoredKey{ID: auth.NewToken(), Algorithm: "RS256", PrivateKey: []byte{byte(i)}, CreatedAt: f.now}
			got[i], errs[i] = f.store.EnsureSigningKey(t.Context(), k)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i].ID != got[0].ID {
			t.Fatalf("replicas got different keys: %s and %s", got[0].ID, got[i].ID)
		}
	}
	keys, err := f.store.SigningKeys(t.Context())
	if err != nil || len(keys) != 1 || keys[0].ID != got[0].ID || len(keys[0].PrivateKey) != 1 {
		t.Fatalf("SigningKeys = %+v, %v", keys, err)
	}
}

func TestOIDCStoreDeleteExpired(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t)
	ctx := t.Context()
	r := f.completedRequest(t, "c1")
	short := f.token(r.ID, time.Minute)
	long := f.token(r.ID, time.Hour)
	if err := f.store.IssueTokens(ctx, &oidcprovider.Issue{Code: r.ID, Grant: f.grant(r), Access: short, Refresh: long, Now: f.now}); err != nil {
		t.Fatal(err)
	}
	n, err := f.store.DeleteExpired(ctx, f.now.Add(30*time.Minute))
	if err != nil || n != 2 { // the request (and its code) and the access token
		t.Fatalf("DeleteExpired = %d, %v; want 2", n, err)
	}
	_, err = f.store.AccessToken(ctx, short.ID)
	wantStoreErr(t, "expired access token", err, auth.ErrNotFound)
	if _, err := f.store.RefreshToken(ctx, long.ID); err != nil {
		t.Fatalf("live refresh token: %v", err)
	}
	// The grant ends with its session, and takes its tokens along.
	if _, err := f.store.DeleteExpired(ctx, f.sess.ExpiresAt.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = f.store.Grant(ctx, r.ID)
	wantStoreErr(t, "expired grant", err, auth.ErrNotFound)
	_, err = f.store.RefreshToken(ctx, long.ID)
	wantStoreErr(t, "token of an expired grant", err, auth.ErrNotFound)
}
