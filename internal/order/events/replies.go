// Package events applies the replies of the inventory and payment services to the
// orders whose saga waits on them (docs/orders.md), each reply once.
package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"folio/internal/order"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/inbox"
)

// RepliesConsumer is the durable consumer through which the order service hears
// the replies, and the inbox consumer name under which it records those applied.
const RepliesConsumer = "order-replies"

// repliesConcurrency: replies of different orders do not touch each other, and on
// SQLite those that arrive together share one commit.
const repliesConcurrency = 32

// ReplyStore moves an order along in the transaction of a reply's inbox record
// (sqlstore.Store).
type ReplyStore interface {
	// AdvanceIn reads the order with id in tx, and writes the change decide
	// makes of it, if any, returning it. Errors: order.ErrStale when another
	// writer changed the order meanwhile.
	AdvanceIn(ctx context.Context, tx *sql.Tx, id string, decide func(order.Order) (order.Change, bool)) (order.Change, bool, error)
}

// Saga decides what a reply does to an order, and hears of each change once it
// has committed (order.Service).
type Saga interface {
	OnReply(o order.Order, r order.Reply) (order.Change, bool)
	Observe(ch order.Change)
}

// Replies returns the consumer of the replies. Each is applied once however often
// it is delivered; one its order's state does not wait on (a duplicate, a late or
// reordered answer, a reply to an order of no one's) is recorded as applied and
// changes nothing. A reply that lost a race with another writer of its order
// (order.ErrStale) fails and is applied again by the broker's redelivery. wake,
// the relay's Notify (may be nil), is called once a change has committed, so
// that the next command goes out at once rather than at the relay's next poll.
func Replies(store ReplyStore, saga Saga, wake func(), log *slog.Logger) inbox.Consumer {
	// The changes applied but not yet committed, by event id: their metrics are
	// told only once they commit.
	var applied sync.Map
	return inbox.Consumer{
		Name:        RepliesConsumer,
		Types:       order.ReplyTypes,
		Subjects:    []string{"inventory.>", "payment.>"},
		Concurrency: repliesConcurrency,
		Apply: func(ctx context.Context, tx *sql.Tx, env broker.Envelope) error {
			r, err := parseReply(env)
			if err != nil {
				return err
			}
			ch, ok, err := store.AdvanceIn(ctx, tx, r.OrderID, func(o order.Order) (order.Change, bool) { return saga.OnReply(o, r) })
			if err != nil {
				applied.Delete(env.ID)
				return fmt.Errorf("order %s: %w", r.OrderID, err)
			}
			if !ok {
				applied.Delete(env.ID)
				log.DebugContext(ctx, "stale reply", "type", env.Type, "order", r.OrderID, "event_id", env.ID)
				return nil
			}
			applied.Store(env.ID, ch)
			return nil
		},
		Committed: func(_ context.Context, env broker.Envelope) {
			if ch, ok := applied.LoadAndDelete(env.ID); ok {
				if wake != nil {
					wake()
				}
				saga.Observe(ch.(order.Change))
			}
		},
	}
}

// replyData is the data of every reply, as far as the saga reads it.
type replyData struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
	Items   []struct {
		BookID    string       `json:"book_id"`
		Quantity  int          `json:"quantity"`
		UnitPrice *order.Money `json:"unit_price"`
	} `json:"items"`
	Total *order.Money `json:"total"`
}

// parseReply reads the reply env carries. Errors: data that is not a reply of its
// type.
func parseReply(env broker.Envelope) (order.Reply, error) {
	var d replyData
	if err := json.Unmarshal(env.Data, &d); err != nil {
		return order.Reply{}, fmt.Errorf("malformed data: %w", err)
	}
	if !id.Valid(d.OrderID) {
		return order.Reply{}, fmt.Errorf("malformed data: order id %q is not an id", d.OrderID)
	}
	r := order.Reply{Type: env.Type, OrderID: d.OrderID, Reason: d.Reason}
	if env.Type == order.ReplyReserved {
		if d.Total == nil || d.Total.Amount < 0 || len(d.Total.Currency) != 3 {
			return order.Reply{}, fmt.Errorf("malformed data: %s without a total", env.Type)
		}
		r.Total = d.Total
		for _, it := range d.Items {
			r.Items = append(r.Items, order.Item{BookID: it.BookID, Quantity: it.Quantity, UnitPrice: it.UnitPrice})
		}
	}
	return r, nil
}
