package postgres_test

import (
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/auth/authtest"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

func TestPasskeyStore(t *testing.T) {
	t.Parallel()
	authtest.RunPasskeyCeremonyStore(t, func(t *testing.T) (auth.PasskeyCeremonyStore, string) {
		pool := openPool(t, pgtest.Database(t)+"&pool_max_conns=16")
		if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
			t.Fatal(err)
		}
		u := &auth.User{Type: auth.TypeStaff, Email: "passkeys@example.com", Name: "Pat Keys"}
		if err := postgres.NewAuthStore(pool).CreateUser(t.Context(), u, nil); err != nil {
			t.Fatal(err)
		}
		return postgres.NewPasskeyStore(pool), u.ID
	})
}
