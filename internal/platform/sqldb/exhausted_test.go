package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"folio/internal/platform/fault"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// sqliteFull returns a real SQLITE_FULL from the driver: one connection whose
// max_page_count is the database's size cannot take a row that needs a new page.
func sqliteFull(t *testing.T) (full, unique error) {
	t.Helper()
	ctx := context.Background()
	db := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "full.db"), migrations)
	if _, err := db.ExecContext(ctx, `INSERT INTO t (id, u, n) VALUES (1, 'a', 'x')`); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var pages int
	if err := conn.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	_, full = conn.ExecContext(ctx, `INSERT INTO t (id, u, n) VALUES (2, 'b', $1)`, strings.Repeat("x", 64<<10))
	_, unique = conn.ExecContext(ctx, `INSERT INTO t (id, u, n) VALUES (3, 'a', 'x')`)
	if full == nil || unique == nil {
		t.Fatalf("the statements did not fail: full %v, unique %v", full, unique)
	}
	return full, unique
}

// TestExhaustedStorageIsUnavailable: the errors of a database out of disk space,
// memory or connections are StorageUnavailable (503 with Retry-After) wherever they
// surface, wrapped or not, and nothing else is; the client-safe message never
// carries the driver's text.
func TestExhaustedStorageIsUnavailable(t *testing.T) {
	full, unique := sqliteFull(t)
	pg := func(code string) error {
		return &pgconn.PgError{Severity: "ERROR", Code: code, Message: "secret detail from the server " + code}
	}
	tests := []struct {
		name       string
		err        error
		want       fault.Kind
		retryAfter time.Duration
	}{
		{"sqlite full", full, fault.StorageUnavailable, sqldb.StorageFullRetryAfter},
		{"sqlite full wrapped", fmt.Errorf("create book: %w", fmt.Errorf("commit: %w", full)), fault.StorageUnavailable, sqldb.StorageFullRetryAfter},
		{"sqlite unique violation", unique, fault.Internal, 0},
		{"pg disk_full", pg("53100"), fault.StorageUnavailable, sqldb.StorageFullRetryAfter},
		{"pg out_of_memory", pg("53200"), fault.StorageUnavailable, 0},
		{"pg too_many_connections", fmt.Errorf("connect: %w", pg("53300")), fault.StorageUnavailable, 0},
		{"pg configuration_limit_exceeded", pg("53400"), fault.Internal, 0},
		{"pg unique violation", pg("23505"), fault.Internal, 0},
		{"pg query canceled", pg("57014"), fault.Internal, 0},
		{"only the words", errors.New("database or disk is full"), fault.Internal, 0},
		{"classified before", fault.Wrap(fault.Conflict, full, "taken"), fault.Conflict, 0},
		{"nil", nil, fault.Internal, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fault.KindOf(tt.err); got != tt.want {
				t.Fatalf("KindOf(%v) = %v, want %v", tt.err, got, tt.want)
			}
			if tt.want != fault.StorageUnavailable {
				return
			}
			fe := fault.Classify(tt.err)
			if fe.RetryAfter != tt.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", fe.RetryAfter, tt.retryAfter)
			}
			if !errors.Is(fe, tt.err) {
				t.Error("the driver's error is not the cause, for the logs")
			}
			if strings.Contains(fe.Message, "secret") || strings.Contains(fe.Message, "(13)") || !strings.Contains(fe.Message, "try again") {
				t.Errorf("message %q: want a client-safe one that says to try again", fe.Message)
			}
		})
	}
}

// TestPostgresOutOfConnections: a server refusing a new connection (here a role
// allowed none: the same SQLSTATE 53300 as a server at max_connections) is
// StorageUnavailable, at Open and when the pool connects for a query.
func TestPostgresOutOfConnections(t *testing.T) {
	admin := sqldbtest.OpenPostgres(t, migrations)
	ctx := context.Background()
	role := fmt.Sprintf("folio_noconn_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, `CREATE ROLE `+role+` LOGIN CONNECTION LIMIT 0`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.DB.ExecContext(context.Background(), `DROP ROLE IF EXISTS `+role); err != nil {
			t.Errorf("drop role: %v", err)
		}
	})
	u, err := url.Parse(os.Getenv("FOLIO_TEST_POSTGRES_URL"))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	if _, err := sqldb.Open(ctx, u.String()); fault.KindOf(err) != fault.StorageUnavailable {
		t.Errorf("Open: %v (kind %v), want StorageUnavailable", err, fault.KindOf(err))
	}
	pool, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var one int
	if err := pool.QueryRowContext(ctx, `SELECT 1`).Scan(&one); fault.KindOf(err) != fault.StorageUnavailable {
		t.Errorf("query: %v (kind %v), want StorageUnavailable", err, fault.KindOf(err))
	}
}

// TestSQLiteDiskFullAndFreed fills the disk under a SQLite database for real (a
// small tmpfs): writes from many goroutines, sharing commits and not, fail with
// StorageUnavailable and nothing else; once the space is freed every connection of
// the pool writes again, no transaction is left open, the file passes
// integrity_check and holds every row that was acknowledged.
func TestSQLiteDiskFullAndFreed(t *testing.T) {
	dir := sqldbtest.Tmpfs(t, 8<<20)
	db := sqldbtest.Open(t, "sqlite:"+filepath.Join(dir, "full.db"), migrations)
	ctx := context.Background()
	row := strings.Repeat("r", 500)

	var mu sync.Mutex
	var acked []int
	failures := map[fault.Kind]int{}
	write := func(id int, shared bool) {
		var err error
		if shared {
			err = db.InTx(ctx, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ($1, $2)`, id, row)
				return err
			})
		} else {
			_, err = db.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ($1, $2)`, id, row)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failures[fault.KindOf(err)]++
			if fault.KindOf(err) != fault.StorageUnavailable {
				t.Errorf("write %d: %v (kind %v), want StorageUnavailable", id, err, fault.KindOf(err))
			}
			return
		}
		acked = append(acked, id)
	}
	burst := func(from, n int) {
		var wg sync.WaitGroup
		for i := from; i < from+n; i++ {
			wg.Go(func() { write(i, i%3 != 0) })
		}
		wg.Wait()
	}

	burst(0, 500) // the WAL and the file grow before the disk fills
	filler := sqldbtest.Fill(t, dir)
	// The WAL reuses the space it has after a checkpoint, so some writes still
	// fit: write until they fail, but not for ever.
	for next := 500; failures[fault.StorageUnavailable] == 0; next += 500 {
		if next > 100_000 {
			t.Fatalf("%d writes on a full disk and none failed", next)
		}
		burst(next, 500)
	}
	burst(1_000_000, 300) // all on a full disk
	t.Logf("on a full disk: %v failures by kind, %d rows acknowledged", failures, len(acked))

	var one int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE id = $1`, acked[0]).Scan(&one); err != nil || one != 1 {
		t.Fatalf("a read on a full disk: %v, count %d", err, one)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	before := len(acked)
	failed := failures[fault.StorageUnavailable]
	burst(2_000_000, 300) // more at once than the pool has connections: each is used
	if len(acked) != before+300 || failures[fault.StorageUnavailable] != failed {
		t.Fatalf("after the space came back: %d of 300 writes acknowledged", len(acked)-before)
	}

	var check string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
	var rows int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(acked) {
		t.Fatalf("%d rows stored, %d acknowledged", rows, len(acked))
	}
	for _, id := range acked {
		if err := db.QueryRowContext(ctx, `SELECT 1 FROM t WHERE id = $1`, id).Scan(&one); err != nil {
			t.Fatalf("acknowledged row %d: %v", id, err)
		}
	}
}
