package postgres_test

import (
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/auth/authtest"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// migratedPool opens a pool on a fresh database with every migration applied; the
// pool is large enough for the suite's 32 concurrent callbacks to race for real.
func migratedPool(t *testing.T) *postgres.AuthStore {
	t.Helper()
	pool := openPool(t, pgtest.Database(t)+"&pool_max_conns=40")
	if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	return postgres.NewAuthStore(pool)
}

func TestAuthStore(t *testing.T) {
	t.Parallel()
	authtest.RunStore(t, func(t *testing.T) auth.Store { return migratedPool(t) })
}
