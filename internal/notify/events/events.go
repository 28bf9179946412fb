// Package events is the notify service's intake of Folio's events: every book and
// author event a subscription may ask for becomes one pending delivery per
// subscription that asks for it.
package events

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"folio/internal/notify"
	"folio/internal/platform/broker"
	"folio/internal/platform/inbox"
	"folio/internal/platform/sqldb"
)

// Consumer names the service's durable consumer and its inbox.
const Consumer = "notify"

// Deliveries is where the intake records deliveries (sqlstore.Store).
type Deliveries interface {
	// AddDeliveries records, in tx, one pending delivery of the event, body as
	// received, to each subscription that asks for its type, due at now, and
	// returns how many it added.
	AddDeliveries(ctx context.Context, tx *sql.Tx, eventID, eventType string, body []byte, now time.Time) (int, error)
}

// Intake is the consumer of the events subscriptions may ask for. It is an
// inbox.Consumer, with two things the inbox's shell does not give: the event's
// body as received (subscribers get it byte for byte, signed), and a call to wake
// once deliveries have committed, so that they go out at once.
type Intake struct {
	consumer inbox.Consumer
	wake     func()
}

// NewIntake returns the intake adding deliveries to store, due at now(), and
// calling wake (notify.Service.Wake) once some were added.
func NewIntake(store Deliveries, now func() time.Time, wake func()) *Intake {
	return &Intake{wake: wake, consumer: inbox.Consumer{
		Name:  Consumer,
		Types: notify.EventTypes,
		// Many events at once, sharing commits on SQLite (sqldb.DB.InTx): each only
		// inserts rows, the sending is the worker's.
		Concurrency: 32,
		Apply: func(ctx context.Context, tx *sql.Tx, env broker.Envelope) error {
			if !notify.SignableEventID(env.ID) {
				return fmt.Errorf("event id %q cannot be a webhook-id", env.ID)
			}
			m, ok := ctx.Value(messageKey{}).(*message)
			if !ok {
				return errors.New("the event's body is missing: apply events through Intake.Handler")
			}
			n, err := store.AddDeliveries(ctx, tx, env.ID, env.Type, m.body, now())
			if n > 0 {
				m.added.Store(true)
			}
			return err
		},
	}}
}

// message is what Handler hands Apply beside the envelope, through the context:
// the inbox's shell passes nothing else.
type message struct {
	body  []byte
	added atomic.Bool // set by Apply, which may run on another goroutine (a shared commit)
}

type messageKey struct{}

// Subscription is the broker subscription through which the service receives
// every book and author event published under prefix ("folio"). Its durable
// consumer has always filtered on the two wildcards, as the broker permissions
// (natsconn) have it; events of other types are skipped by the handler.
func (in *Intake) Subscription(prefix string) broker.Subscription {
	s := in.consumer.Subscription(prefix)
	s.Subjects = []string{prefix + ".book.>", prefix + ".author.>"}
	return s
}

// Handler returns the broker handler that records the deliveries of each event
// in db, once however often it is delivered (the inbox). A body that is not an
// event envelope, or an event id that cannot be signed, is an error, which has the
// broker retry and then dead-letter it.
func (in *Intake) Handler(db *sqldb.DB, log *slog.Logger) broker.Handler {
	h := in.consumer.Handler(db, log)
	return func(ctx context.Context, bm broker.Message) error {
		m := &message{body: bm.Body}
		if err := h(context.WithValue(ctx, messageKey{}, m), bm); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		if m.added.Load() {
			in.wake()
		}
		return nil
	}
}
