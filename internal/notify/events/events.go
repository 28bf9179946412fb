// Package events is the notify service's intake of Folio's events: every book,
// author and order event a subscription may ask for becomes one pending delivery per
// subscription that asks for it.
package events

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"folio/internal/notify"
	"folio/internal/platform/broker"
	"folio/internal/platform/inbox"
	"folio/internal/platform/tracing"
)

// Consumer names the service's durable consumer and its inbox.
const Consumer = "notify"

// Deliveries is where the intake records deliveries (sqlstore.Store).
type Deliveries interface {
	// AddDeliveries records, in tx, one pending delivery of the event, body as
	// received, to each subscription that asks for its type, due at now, with
	// traceContext for its attempts to continue, and returns how many it added.
	AddDeliveries(ctx context.Context, tx *sql.Tx, eventID, eventType string, body []byte, traceContext map[string]string, now time.Time) (int, error)
}

// NewIntake returns the consumer of the events subscriptions may ask for: it adds
// deliveries to store, due at now(), and calls wake (notify.Service.Wake) once
// some have committed, so that they go out at once. Subscribers get the event's
// body as received, byte for byte, signed.
func NewIntake(store Deliveries, now func() time.Time, wake func()) inbox.Consumer {
	// The events whose deliveries are being committed: only those wake the
	// worker, whose claim would find nothing after the others.
	var added sync.Map
	return inbox.Consumer{
		Name:  Consumer,
		Types: notify.EventTypes,
		// The durable consumer filters on wildcards, as the broker permissions
		// (natsconn) have them: order.* takes the order's state changes and none of
		// its commands (order.stock.reserve…); other types are skipped.
		Subjects: []string{"book.>", "author.>", "order.*"},
		// Many events at once, sharing commits on SQLite (sqldb.DB.InTx): each only
		// inserts rows, the sending is the worker's.
		Concurrency: 32,
		Apply: func(ctx context.Context, tx *sql.Tx, env broker.Envelope) error {
			if !notify.SignableEventID(env.ID) {
				return fmt.Errorf("event id %q cannot be a webhook-id", env.ID)
			}
			// The webhooks go out later, from the worker: they continue the trace
			// of the span handling the event (the consumer's) through the rows.
			tc := map[string]string{}
			tracing.Inject(ctx, tc)
			n, err := store.AddDeliveries(ctx, tx, env.ID, env.Type, env.Body, tc, now())
			if err == nil && n > 0 {
				added.Store(env.ID, true)
			}
			return err
		},
		Committed: func(_ context.Context, env broker.Envelope) {
			if _, ok := added.LoadAndDelete(env.ID); ok {
				wake()
			}
		},
	}
}
