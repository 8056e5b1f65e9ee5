package main

import (
	"testing"

	"github.com/hestami/hestami/pgtest"
)

// TestMain stops the shared PostgreSQL cluster (pgtest.Database) after the tests.
func TestMain(m *testing.M) { pgtest.Main(m) }
