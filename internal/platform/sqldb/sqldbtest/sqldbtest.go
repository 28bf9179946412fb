// Package sqldbtest runs a store test suite against every database engine Folio
// supports: SQLite always, PostgreSQL when FOLIO_TEST_POSTGRES_URL is set.
package sqldbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"folio/internal/platform/sqldb"
)

// RequireIntegration reports whether FOLIO_REQUIRE_INTEGRATION asks that tests which
// need an external service fail instead of skipping when it is not configured.
func RequireIntegration() bool { return os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" }

// ForEach runs suite once per engine, each time on a new, migrated, empty database
// that is removed when the test ends.
func ForEach(t *testing.T, migrations fs.FS, suite func(t *testing.T, db *sqldb.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		suite(t, Open(t, "sqlite:"+filepath.Join(t.TempDir(), "test.db"), migrations))
	})
	t.Run("postgres", func(t *testing.T) {
		suite(t, OpenPostgres(t, migrations))
	})
}

// OpenPostgres creates a database with a unique name on the server named by
// FOLIO_TEST_POSTGRES_URL, migrates it and drops it at cleanup. Without the URL it
// skips, or fails when FOLIO_REQUIRE_INTEGRATION=1.
func OpenPostgres(t testing.TB, migrations fs.FS) *sqldb.DB {
	t.Helper()
	return Open(t, PostgresDatabase(t), migrations)
}

// PostgresDatabase creates an empty database with a unique name on the server named
// by FOLIO_TEST_POSTGRES_URL and returns its URL; the database is dropped at
// cleanup, after the cleanups registered later (those closing its users), and with
// FORCE, should a connection be left. Without the URL it skips, or fails when
// FOLIO_REQUIRE_INTEGRATION=1.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	base := os.Getenv("FOLIO_TEST_POSTGRES_URL")
	if base == "" {
		if RequireIntegration() {
			t.Fatal("FOLIO_TEST_POSTGRES_URL is not set and FOLIO_REQUIRE_INTEGRATION=1")
		}
		t.Skip("PostgreSQL tests skipped: set FOLIO_TEST_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run them")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("FOLIO_TEST_POSTGRES_URL: %v", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "folio_test_" + hex.EncodeToString(b)

	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// Open opens and migrates the database at dsn, closing it at cleanup.
func Open(t testing.TB, dsn string, migrations fs.FS) *sqldb.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, migrations); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}
