package postgres_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/auth/authtest"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

func TestSignInStore(t *testing.T) {
	t.Parallel()
	authtest.RunSignInHistory(t, func(t *testing.T) (auth.SignInHistory, func(t *testing.T) string) {
		pool := openPool(t, pgtest.Database(t))
		if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
			t.Fatal(err)
		}
		users := postgres.NewAuthStore(pool)
		var n atomic.Int64
		return postgres.NewSignInStore(pool), func(t *testing.T) string {
			t.Helper()
			u := &auth.User{Type: auth.TypeOwner, Email: fmt.Sprintf("user%d@example.com", n.Add(1)), Roles: []string{"owner"}}
			if err := users.CreateUser(t.Context(), u, nil); err != nil {
				t.Fatal(err)
			}
			return u.ID
		}
	})
}
