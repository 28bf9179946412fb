// Package events applies the events the inventory service consumes: the order
// saga's stock commands, each answered with its reply (docs/orders.md), and the
// book service's deletes, which take a book off sale.
package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"

	"folio/internal/inventory"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/inbox"
)

// Durable consumers of the inventory service, and the names under which the inbox
// records the events they applied (natsconn's permission table names them too).
const (
	OrdersConsumer = "inventory-orders"
	BooksConsumer  = "inventory-books"
)

// EventBookDeleted is the book event the service consumes.
const EventBookDeleted = "book.deleted"

// Commands of one order are applied one at a time by the rows they lock, so
// several orders' commands at once only share commits (sqldb.DB.InTx on SQLite).
const ordersConcurrency = 32

// OrderLedger applies the stock commands of the order saga (sqlstore.Store).
type OrderLedger interface {
	// Apply applies c in tx, which also records the command as applied, and adds
	// its reply to the outbox in tx.
	Apply(ctx context.Context, tx *sql.Tx, c inventory.Command) (inventory.Outcome, error)
}

// Orders returns the consumer of the order.stock.* commands, which applies each
// once through store and answers it with its reply. Outcomes that changed
// something are counted in m (nil: not counted) once committed; wake, if not nil,
// is called then too (the outbox relay's Notify: the reply goes out at once).
func Orders(store OrderLedger, m inventory.Metrics, wake func()) inbox.Consumer {
	if m == nil {
		m = inventory.NoMetrics{}
	}
	// What each event's Apply came to, until its transaction committed: a result
	// is counted once, after the commit, and not for a transaction rolled back
	// (whose entry stays until the event's redelivery replaces and takes it).
	var results sync.Map // event id → result
	return inbox.Consumer{
		Name:        OrdersConsumer,
		Subjects:    []string{"order.stock.>"},
		Types:       []string{inventory.CommandReserve, inventory.CommandRelease, inventory.CommandCommit, inventory.CommandRestock},
		Concurrency: ordersConcurrency,
		Apply: func(ctx context.Context, tx *sql.Tx, env broker.Envelope) error {
			c, err := inventory.ParseCommand(env.Type, env.Data)
			if err != nil {
				return err
			}
			o, err := store.Apply(ctx, tx, c)
			if err != nil {
				return err
			}
			if o.Changed {
				results.Store(env.ID, o.Result())
			} else {
				results.Delete(env.ID)
			}
			return nil
		},
		Committed: func(_ context.Context, env broker.Envelope) {
			if r, ok := results.LoadAndDelete(env.ID); ok {
				m.Counted(r.(string))
			}
			if wake != nil {
				wake()
			}
		},
	}
}

// BookTombstones records the books the book service deleted (sqlstore.Store).
type BookTombstones interface {
	// MarkBookDeleted records in tx, which also records the event as applied,
	// that the book is gone for good.
	MarkBookDeleted(ctx context.Context, tx *sql.Tx, bookID string) error
}

// Books returns the consumer of book.deleted events, which takes each deleted book
// off sale in store, for good.
func Books(store BookTombstones) inbox.Consumer {
	return inbox.Consumer{
		Name:        BooksConsumer,
		Types:       []string{EventBookDeleted},
		Concurrency: 8,
		Apply: func(ctx context.Context, tx *sql.Tx, env broker.Envelope) error {
			var data struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(env.Data, &data); err != nil {
				return fmt.Errorf("malformed data: %w", err)
			}
			if !id.Valid(data.ID) {
				return fmt.Errorf("malformed data: book id %q is not an id", data.ID)
			}
			return store.MarkBookDeleted(ctx, tx, data.ID)
		},
	}
}
