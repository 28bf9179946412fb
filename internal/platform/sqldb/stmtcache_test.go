package sqldb_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"folio/internal/platform/sqldb"
)

// TestSQLiteKeptStatements runs the same statements in transaction after
// transaction, as a service's writes do, across what would break a statement kept
// carelessly: a failing run, a change of the table's schema, a script of several
// statements. Every run must see the table as it is, and the group commit metric
// counts each write.
func TestSQLiteKeptStatements(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "kept.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := prometheus.NewRegistry()
	if err := db.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	exec := func(query string, args ...any) error {
		return db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, query, args...)
			return err
		})
	}
	// A script: every statement in it runs.
	if err := exec(`CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE TABLE k2 (id INTEGER PRIMARY KEY);`); err != nil {
		t.Fatal(err)
	}
	const insert = `INSERT INTO k (id, v) VALUES ($1, $2)`
	for i := range 3 {
		if err := exec(insert, i, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if err := exec(insert, 1, "again"); err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Fatalf("a taken id: %v, want a unique violation", err)
	}
	if err := exec(insert, 3, "after the failure"); err != nil {
		t.Fatal(err)
	}
	if err := exec(`ALTER TABLE k ADD COLUMN w TEXT NOT NULL DEFAULT 'w'`); err != nil {
		t.Fatal(err)
	}
	if err := exec(insert, 4, "after the schema changed"); err != nil {
		t.Fatal(err)
	}
	if err := exec(`INSERT INTO k2 (id) VALUES ($1)`, 1); err != nil {
		t.Fatal(err)
	}
	var n int
	var w string
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(w) FROM k`).Scan(&n, &w); err != nil {
		t.Fatal(err)
	}
	if n != 5 || w != "w" {
		t.Fatalf("k has %d rows, least w %q; want 5, %q", n, w, "w")
	}
	// 9 writes, none at the same time as another: one group each.
	if got := testutil.CollectAndCount(reg, "folio_db_commit_group_writes"); got != 1 {
		t.Fatalf("%d folio_db_commit_group_writes series, want 1", got)
	}
	want := `
# HELP folio_db_commit_group_writes Writes (InTx calls) per transaction of SQLite's group commit, each of which syncs the disk once: the mean is the writes per sync.
# TYPE folio_db_commit_group_writes histogram
folio_db_commit_group_writes_bucket{le="1"} 9
folio_db_commit_group_writes_bucket{le="2"} 9
folio_db_commit_group_writes_bucket{le="4"} 9
folio_db_commit_group_writes_bucket{le="8"} 9
folio_db_commit_group_writes_bucket{le="16"} 9
folio_db_commit_group_writes_bucket{le="32"} 9
folio_db_commit_group_writes_bucket{le="64"} 9
folio_db_commit_group_writes_bucket{le="128"} 9
folio_db_commit_group_writes_sum 9
folio_db_commit_group_writes_count 9
`
	if err := testutil.CollectAndCompare(reg, strings.NewReader(want), "folio_db_commit_group_writes"); err != nil {
		t.Fatal(err)
	}
}
