package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"testing/fstest"

	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var migrations = fstest.MapFS{
	"migrations/sqlite/00001_t.sql": {Data: []byte(`-- +goose Up
CREATE TABLE t (id INTEGER PRIMARY KEY, u TEXT UNIQUE, n TEXT NOT NULL);
`)},
	"migrations/sqlite/00002_u.sql": {Data: []byte(`-- +goose Up
CREATE TABLE u (id INTEGER PRIMARY KEY);
`)},
	"migrations/postgres/00001_t.sql": {Data: []byte(`-- +goose Up
CREATE TABLE t (id INTEGER PRIMARY KEY, u TEXT UNIQUE, n TEXT NOT NULL);
`)},
	"migrations/postgres/00002_u.sql": {Data: []byte(`-- +goose Up
CREATE TABLE u (id INTEGER PRIMARY KEY);
`)},
}

func TestIsUniqueViolation(t *testing.T) {
	sqldbtest.ForEach(t, migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `INSERT INTO t (id, u, n) VALUES (1, 'a', 'x')`); err != nil {
			t.Fatal(err)
		}
		exec := func(q string) error {
			_, err := db.ExecContext(ctx, q)
			return err
		}
		tests := []struct {
			name string
			err  error
			want bool
		}{
			{"unique column", exec(`INSERT INTO t (id, u, n) VALUES (2, 'a', 'x')`), true},
			{"primary key", exec(`INSERT INTO t (id, u, n) VALUES (1, 'b', 'x')`), true},
			{"wrapped", fmt.Errorf("create: %w", exec(`INSERT INTO t (id, u, n) VALUES (3, 'a', 'x')`)), true},
			{"not null", exec(`INSERT INTO t (id, u) VALUES (4, 'c')`), false},
			{"syntax", exec(`INSERT INTO`), false},
			{"no table", exec(`SELECT * FROM nope`), false},
			{"no rows", db.QueryRowContext(ctx, `SELECT n FROM t WHERE id = 99`).Scan(new(string)), false},
			{"nil", nil, false},
			{"other", errors.New("duplicate key value violates unique constraint"), false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.name != "nil" && tt.err == nil {
					t.Fatal("the statement did not fail")
				}
				if got := sqldb.IsUniqueViolation(tt.err); got != tt.want {
					t.Errorf("IsUniqueViolation(%v): got %v, want %v", tt.err, got, tt.want)
				}
			})
		}
	})
}

func TestInTx(t *testing.T) {
	sqldbtest.ForEach(t, migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		failure := errors.New("stop")
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO u (id) VALUES (1)`); err != nil {
				return err
			}
			return failure
		})
		if !errors.Is(err, failure) {
			t.Errorf("got %v, want the function's error", err)
		}
		if err := db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO u (id) VALUES (2)`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var ids []int
		rows, err := db.QueryContext(ctx, `SELECT id FROM u ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if len(ids) != 1 || ids[0] != 2 {
			t.Errorf("got rows %v, want only the committed one [2]", ids)
		}
	})
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, dsn := range []string{
		"sqlite:" + filepath.Join(dir, "a", "b", "test.db"), // directories are made
		"sqlite://" + filepath.Join(dir, "other.db"),
		filepath.Join(dir, "plain.db"),
	} {
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Errorf("%s: %v", dsn, err)
			continue
		}
		if db.Dialect != sqldb.SQLite {
			t.Errorf("%s: got dialect %s, want sqlite", dsn, db.Dialect)
		}
		// Migrating twice is a no-op the second time.
		for i := range 2 {
			if err := db.Migrate(ctx, migrations); err != nil {
				t.Errorf("%s: migrate #%d: %v", dsn, i+1, err)
			}
		}
		db.Close()
	}
	if _, err := sqldb.Open(ctx, "sqlite:"); err == nil {
		t.Error("empty path: got nil, want an error")
	}
}
