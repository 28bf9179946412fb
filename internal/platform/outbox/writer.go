package outbox

import (
	"context"
	"database/sql"
	"fmt"

	"folio/internal/platform/sqldb"
)

// Writer runs a store's write transactions, in which it adds the events of the
// changes, and wakes the relay once each has committed, so that the events go out
// at once rather than at the relay's next poll.
type Writer struct {
	db     *sqldb.DB
	notify func()
}

// NewWriter returns the writer of db, which must be migrated (Migrate). notify,
// the relay's Notify, may be nil: the relay then finds the events when it polls.
func NewWriter(db *sqldb.DB, notify func()) *Writer {
	return &Writer{db: db, notify: notify}
}

// DB is the database written to.
func (w *Writer) DB() *sqldb.DB { return w.db }

// Write runs fn in a transaction (sqldb.DB.InTx) and, once it committed, wakes
// the relay.
func (w *Writer) Write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := w.db.InTx(ctx, fn); err != nil {
		return err
	}
	if w.notify != nil {
		w.notify()
	}
	return nil
}

// AddEvent adds the event of typ about the resource with id to tx; data is the
// resource after the change, or {"id"} after a delete.
func AddEvent(ctx context.Context, tx *sql.Tx, typ, id string, data any) error {
	if _, err := Add(ctx, tx, Event{Type: typ, Aggregate: id, Data: data}); err != nil {
		return fmt.Errorf("add %s event for %s: %w", typ, id, err)
	}
	return nil
}
