package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"

	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// replicaMigrations are a service's migrations as replicas starting together run
// them. On PostgreSQL the first two sleep, so that the others arrive while they run
// (that only widens the window; nothing waits on time): the first for longer than
// goose's one-second retry of its version table's creation, which on a new database
// would otherwise hold the others back until the first had finished.
var replicaMigrations = fstest.MapFS{
	"migrations/postgres/00001_a.sql": {Data: []byte(`-- +goose Up
SELECT pg_sleep(1.5);
CREATE TABLE a (id INTEGER PRIMARY KEY);
`)},
	"migrations/postgres/00002_b.sql": {Data: []byte(`-- +goose Up
SELECT pg_sleep(0.2);
CREATE TABLE b (id INTEGER PRIMARY KEY);
`)},
	"migrations/postgres/00003_c.sql": {Data: []byte(`-- +goose Up
CREATE TABLE c (id INTEGER PRIMARY KEY);
INSERT INTO c (id) VALUES (1);
`)},
	"migrations/sqlite/00001_a.sql": {Data: []byte(`-- +goose Up
CREATE TABLE a (id INTEGER PRIMARY KEY);
`)},
	"migrations/sqlite/00002_b.sql": {Data: []byte(`-- +goose Up
CREATE TABLE b (id INTEGER PRIMARY KEY);
`)},
	"migrations/sqlite/00003_c.sql": {Data: []byte(`-- +goose Up
CREATE TABLE c (id INTEGER PRIMARY KEY);
INSERT INTO c (id) VALUES (1);
`)},
}

// ownMigrations stand for a platform package's tables (the outbox's, the inbox's),
// migrated under a version table and advisory lock of their own.
var ownMigrations = fstest.MapFS{
	"migrations/postgres/00001_own.sql": {Data: []byte(`-- +goose Up
SELECT pg_sleep(0.1);
CREATE TABLE own (id INTEGER PRIMARY KEY);
`)},
	"migrations/sqlite/00001_own.sql": {Data: []byte(`-- +goose Up
CREATE TABLE own (id INTEGER PRIMARY KEY);
`)},
}

const (
	ownVersionTable = "folio_test_own_version"
	ownLockID       = 0x666f6c696f7465 // "foliote"
)

// engines makes a new database on each engine Folio runs on, as a DSN.
var engines = []struct {
	name  string
	fresh func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "replicas.db") }},
	{"postgres", func(t *testing.T) string { return sqldbtest.PostgresDatabase(t) }},
}

// Three replicas of a service start at once, each with its own pool, and migrate
// one database together: a new one, or one an earlier version of the service
// migrated to its first migration (an upgrade). Each must succeed, and each
// migration must be applied, and recorded, once. Without a lock they race: two
// apply the same migration, and one fails on the table it creates, or on the
// version table.
func TestMigrateReplicasAtOnce(t *testing.T) {
	const replicas, rounds = 3, 3
	first := fstest.MapFS{}
	for name, f := range replicaMigrations {
		if filepath.Base(name) == "00001_a.sql" {
			first[name] = f
		}
	}
	for _, e := range engines {
		for _, upgrade := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/upgrade=%v", e.name, upgrade), func(t *testing.T) {
				for round := range rounds {
					dbs := openReplicas(t, e.fresh(t), replicas)
					if upgrade {
						if err := dbs[0].Migrate(t.Context(), first); err != nil {
							t.Fatal(err)
						}
					}
					atOnce(t, round, dbs, func(ctx context.Context, db *sqldb.DB) error {
						return db.Migrate(ctx, replicaMigrations)
					})
					checkApplied(t, dbs[0], "goose_db_version", replicaMigrations)
				}
			})
		}
	}
}

// The same with the platform's own migrations beside the service's, as a service
// starts: each replica runs Migrate then MigrateOwn, and they interleave.
func TestMigrateAndMigrateOwnReplicasAtOnce(t *testing.T) {
	const replicas, rounds = 3, 2
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			for round := range rounds {
				dbs := openReplicas(t, e.fresh(t), replicas)
				atOnce(t, round, dbs, func(ctx context.Context, db *sqldb.DB) error {
					if err := db.Migrate(ctx, replicaMigrations); err != nil {
						return err
					}
					return db.MigrateOwn(ctx, ownMigrations, ownVersionTable, ownLockID)
				})
				checkApplied(t, dbs[0], "goose_db_version", replicaMigrations)
				checkApplied(t, dbs[0], ownVersionTable, ownMigrations)
			}
		})
	}
}

// openReplicas opens n pools on the database at dsn, as n processes would.
func openReplicas(t *testing.T, dsn string, n int) []*sqldb.DB {
	t.Helper()
	var dbs []*sqldb.DB
	for range n {
		db, err := sqldb.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	return dbs
}

// atOnce runs migrate on each of dbs from a goroutine of its own, all released
// together, and fails the test with every error they returned.
func atOnce(t *testing.T, round int, dbs []*sqldb.DB, migrate func(context.Context, *sqldb.DB) error) {
	t.Helper()
	start := make(chan struct{})
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() {
			<-start
			if err := migrate(t.Context(), db); err != nil {
				errs[i] = fmt.Errorf("replica %d: %w", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
}

// checkApplied checks that versionTable records each migration of fsys once, and
// that the migrations ran once (c holds the one row its migration inserts).
func checkApplied(t *testing.T, db *sqldb.DB, versionTable string, fsys fs.FS) {
	t.Helper()
	files, err := fs.Glob(fsys, "migrations/"+string(db.Dialect)+"/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.DB.QueryContext(t.Context(), `SELECT version_id, COUNT(*) FROM `+versionTable+` GROUP BY version_id ORDER BY version_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[int64]int{}
	for rows.Next() {
		var v int64
		var n int
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		got[v] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// Version 0 is goose's own, the table's creation.
	if len(got) != len(files)+1 {
		t.Errorf("%s holds versions %v, want 0 to %d", versionTable, got, len(files))
	}
	for v := range int64(len(files) + 1) {
		if got[v] != 1 {
			t.Errorf("%s holds version %d %d times, want once", versionTable, v, got[v])
		}
	}
	if versionTable == "goose_db_version" {
		var n int
		if err := db.DB.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM c`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("c holds %d rows, want the one its migration inserts", n)
		}
	}
}
