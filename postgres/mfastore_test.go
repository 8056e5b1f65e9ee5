package postgres_test

import (
	"testing"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/auth/authtest"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// mfaStores opens an MFAStore and an AuthStore (for its users) on one fresh,
// migrated database.
func mfaStores(t *testing.T) (*postgres.MFAStore, *postgres.AuthStore) {
	t.Helper()
	pool := openPool(t, pgtest.Database(t)+"&pool_max_conns=24")
	if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	return postgres.NewMFAStore(pool), postgres.NewAuthStore(pool)
}

func TestMFAStoreFactors(t *testing.T) {
	t.Parallel()
	authtest.RunFactorStore(t, func(t *testing.T) (auth.FactorStore, auth.UserStore) { return mfaStores(t) })
}

func TestMFAStoreSettings(t *testing.T) {
	t.Parallel()
	authtest.RunMFASettingsStore(t, func(t *testing.T) (auth.MFASettingsStore, auth.UserStore) { return mfaStores(t) })
}
