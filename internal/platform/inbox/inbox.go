// Package inbox makes event consumers idempotent: a consumer applies each event id
// once, in the same transaction as the change the event causes, however often the
// broker delivers it.
package inbox

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"folio/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// versionTable keeps the inbox's migrations apart from the service's own, so that
// both can be applied to one database without knowing of each other.
const versionTable = "folio_inbox_version"

// migrateLockID is the PostgreSQL advisory lock that keeps instances starting
// together from migrating at the same time; it differs from goose's default so as
// not to wait on the service's own migrations.
const migrateLockID int64 = 0x666f6c696f696e // "folioin"

// Migrate creates the inbox table if the database does not have it yet.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	if err := db.MigrateOwn(ctx, migrations, versionTable, migrateLockID); err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	return nil
}

// Apply runs fn in one transaction together with recording that consumer applied
// eventID. If it already had, Apply returns applied=false without calling fn. If fn
// fails nothing is recorded and its error is returned, so that the broker's
// redelivery can apply the event again. fn must do all its work through tx.
//
// Deliveries applied at the same time share commits on SQLite (sqldb.DB.InTx), so
// a consumer should take several at once.
func Apply(ctx context.Context, db *sqldb.DB, consumer, eventID string, fn func(tx *sql.Tx) error) (applied bool, err error) {
	if consumer == "" || eventID == "" {
		return false, errors.New("inbox apply: consumer and event id are required")
	}
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		// The inbox row goes in first: a second delivery of the same event, running
		// at the same time, then waits on the key (PostgreSQL) or runs after this one
		// in the same or a later transaction (SQLite), and finds the row, unless
		// this one rolled back, in which case it applies the event itself.
		res, err := tx.ExecContext(ctx, `INSERT INTO inbox (consumer, event_id, applied_at) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, consumer, eventID, time.Now().UnixNano())
		if sqldb.IsUniqueViolation(err) {
			return errApplied
		}
		if err != nil {
			return fmt.Errorf("inbox apply: record %s: %w", eventID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("inbox apply: record %s: %w", eventID, err)
		} else if n == 0 {
			return errApplied
		}
		return fn(tx)
	})
	if errors.Is(err, errApplied) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// errApplied rolls back the transaction of an event applied before.
var errApplied = errors.New("event applied before")

// Purge deletes the records of events applied more than olderThan ago and returns
// how many it deleted. olderThan must be longer than the broker may still redeliver
// or duplicate an event (days, not minutes), or a late copy would be applied again.
func Purge(ctx context.Context, db *sqldb.DB, olderThan time.Duration) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM inbox WHERE applied_at < $1`, time.Now().Add(-olderThan).UnixNano())
	if err != nil {
		return 0, fmt.Errorf("inbox purge: %w", err)
	}
	return res.RowsAffected()
}
