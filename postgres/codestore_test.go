package postgres_test

import (
	"testing"

	"github.com/hestami/hestami/auth/authtest"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

func TestCodeStore(t *testing.T) {
	t.Parallel()
	authtest.RunCodeStore(t, func(t *testing.T) authtest.CodeStores {
		pool := openPool(t, pgtest.Database(t)+"&pool_max_conns=24")
		if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
			t.Fatal(err)
		}
		return authtest.CodeStores{Codes: postgres.NewCodeStore(pool), Users: postgres.NewAuthStore(pool), Factors: postgres.NewMFAStore(pool)}
	})
}
