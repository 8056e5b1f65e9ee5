package auth_test

import (
	"testing"

	"github.com/hestami/hestami/pgtest"
)

// TestMain runs package auth's tests with pgtest's shared PostgreSQL cluster, so
// the MFA components are tested against the real store (pgtest.Database). It is
// the one TestMain of the auth test binary: tests of package auth and auth_test
// both run under it.
func TestMain(m *testing.M) { pgtest.Main(m) }
