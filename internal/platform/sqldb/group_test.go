package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestInTxConcurrently runs many writes at once, as a service under load does (on
// SQLite they share commits): each successful one is kept, each failing one
// (a constraint violation, or its own error after writing) leaves nothing, and a
// panic reaches its own caller.
func TestInTxConcurrently(t *testing.T) {
	sqldbtest.ForEach(t, migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		errMine := errors.New("mine")
		const writers = 200
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				errs[i] = db.InTx(ctx, func(tx *sql.Tx) error {
					u := fmt.Sprint("u", i)
					if i%7 == 0 {
						u = "taken" // all but the first to get there violate the unique key
					}
					if _, err := tx.ExecContext(ctx, `INSERT INTO t (id, u, n) VALUES ($1, $2, 'x')`, i, u); err != nil {
						return err
					}
					if i%5 == 0 {
						return errMine
					}
					return nil
				})
			})
		}
		wg.Wait()

		takenBy := 0
		for i, err := range errs {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE id = $1`, i).Scan(&n); err != nil {
				t.Fatal(err)
			}
			switch {
			case i%5 == 0:
				if !errors.Is(err, errMine) && !sqldb.IsUniqueViolation(err) || n != 0 {
					t.Errorf("writer %d: err %v, %d rows; want its own error and no row", i, err, n)
				}
			case i%7 == 0 && err == nil:
				takenBy++
				if n != 1 {
					t.Errorf("writer %d: succeeded but wrote %d rows", i, n)
				}
			case i%7 == 0:
				if !sqldb.IsUniqueViolation(err) || n != 0 {
					t.Errorf("writer %d: err %v, %d rows; want a unique violation and no row", i, err, n)
				}
			default:
				if err != nil || n != 1 {
					t.Errorf("writer %d: err %v, %d rows; want its row", i, err, n)
				}
			}
		}
		if takenBy != 1 {
			t.Errorf("%d writers took the unique value, want 1", takenBy)
		}

		// A panic inside fn is raised in the caller, and the write is undone.
		func() {
			defer func() {
				if v := recover(); v != "boom" {
					t.Errorf("recovered %v, want boom", v)
				}
			}()
			_ = db.InTx(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO t (id, u, n) VALUES (9999, 'p', 'x')`); err != nil {
					return err
				}
				panic("boom")
			})
		}()
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE id = 9999`).Scan(&n); err != nil || n != 0 {
			t.Errorf("after a panic: %d rows (%v), want 0", n, err)
		}
	})
}
