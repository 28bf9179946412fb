package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// CheckVersioned tells why a versioned write, an UPDATE or DELETE of the row of
// table with id "WHERE id = $1 AND version = $2", changed no row: notFound when
// there is no such row, stale when its version moved on; nil when res says it
// changed exactly one. table is the caller's constant, never a client's text.
func CheckVersioned(ctx context.Context, tx *sql.Tx, res sql.Result, table, id string, notFound, stale error) error {
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM `+table+` WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound
	}
	if err != nil {
		return fmt.Errorf("check %s %s: %w", table, id, err)
	}
	return stale
}
