package postgres_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/auth/authtest"
	"github.com/hestami/hestami/pgtest"
	"github.com/hestami/hestami/postgres"
)

// devrecDB is a migrated database for the device and recovery stores, and a way
// to create users in it.
func devrecDB(t *testing.T) (*pgxpool.Pool, func(t *testing.T) string) {
	t.Helper()
	pool := openPool(t, pgtest.Database(t)+"&pool_max_conns=24")
	if _, err := postgres.MigrateUp(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	users := postgres.NewAuthStore(pool)
	var n atomic.Int64
	return pool, func(t *testing.T) string {
		t.Helper()
		u := &auth.User{Type: auth.TypeStaff, Email: fmt.Sprintf("user%d@example.com", n.Add(1)), EmailVerified: true}
		if err := users.CreateUser(t.Context(), u, nil); err != nil {
			t.Fatal(err)
		}
		return u.ID
	}
}

func TestDeviceStore(t *testing.T) {
	t.Parallel()
	authtest.RunDeviceStore(t, func(t *testing.T) authtest.DeviceHarness {
		pool, newUser := devrecDB(t)
		return authtest.DeviceHarness{Store: postgres.NewDeviceStore(pool), NewUser: newUser}
	})
}

func TestRecoveryStore(t *testing.T) {
	t.Parallel()
	authtest.RunRecoveryStore(t, func(t *testing.T) authtest.RecoveryHarness {
		pool, newUser := devrecDB(t)
		return authtest.RecoveryHarness{Store: postgres.NewRecoveryStore(pool), NewUser: newUser}
	})
}
