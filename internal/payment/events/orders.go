// Package events receives the order saga's payment commands from the broker and
// applies each once, answering with the payment service's reply (docs/orders.md).
package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/payment"
	"folio/internal/platform/broker"
	"folio/internal/platform/inbox"
	"folio/internal/platform/sqldb"
)

// OrdersConsumer is the durable consumer through which the payment service takes
// the order service's payment commands, and the inbox consumer name under which
// it records the commands applied.
const OrdersConsumer = "payment-orders"

// ordersConcurrency lets commands of other orders go on while the slow test card's
// authorisation waits, and lets commands that arrive together share a commit on
// SQLite.
const ordersConcurrency = 16

// Ledger applies a command to an order's payment in the inbox's transaction
// (sqlstore.Store).
type Ledger interface {
	// Apply gives decide the order's payment (nil when none), stores the outcome
	// with its ledger entries and reply in tx, and returns the reply.
	Apply(ctx context.Context, tx *sql.Tx, orderID string, decide func(cur *payment.Payment) (payment.Outcome, error)) (payment.Reply, error)
}

// Orders returns the consumer of the payment commands (order.payment.>): each
// command applies svc's rules to the order's payment in ledger, once per event,
// and every command of an order more than once is answered with the same reply.
// wake, if not nil, is called once a reply has committed (the relay's Notify),
// so that it goes out at once.
func Orders(svc *payment.Service, ledger Ledger, wake func()) inbox.Consumer {
	return inbox.Consumer{
		Name:        OrdersConsumer,
		Types:       payment.Commands,
		Subjects:    []string{"order.payment.>"},
		Concurrency: ordersConcurrency,
		Apply: func(ctx context.Context, tx *sql.Tx, env broker.Envelope) error {
			cmd, err := Command(env)
			if err != nil {
				return err
			}
			reply, err := ledger.Apply(ctx, tx, cmd.OrderID, func(cur *payment.Payment) (payment.Outcome, error) {
				return svc.Decide(cur, cmd)
			})
			if err != nil {
				return err
			}
			if r, ok := ctx.Value(replyKey{}).(*payment.Reply); ok {
				*r = reply
			}
			return nil
		},
		Committed: func(context.Context, broker.Envelope) {
			if wake != nil {
				wake()
			}
		},
	}
}

// replyKey carries, from Handler to the consumer's Apply, where to leave the
// reply for the metrics.
type replyKey struct{}

// Handler returns the broker handler of orders (Orders) over db: an authorise of
// the slow test card first waits the service's slow delay, outside any
// transaction, so that the commands sharing a commit with it on SQLite do not
// wait too; then the command is applied as orders applies it, and counted in m
// (which may be nil).
//
// While one authorise of an order waits out the slow delay, other copies of it
// (the broker redelivers it once its ack wait passes, the order service re-sends
// it) are acknowledged at once without being applied: the one waiting answers
// for them, and they would otherwise each hold a slot for the whole delay, until
// no slot was left for other orders' commands. Should the process stop before it
// answers, the order service sends the command again.
func Handler(orders inbox.Consumer, svc *payment.Service, m *Metrics, db *sqldb.DB, log *slog.Logger) broker.Handler {
	apply := orders.Handler(db, log)
	var waiting sync.Map // order id → struct{}: its slow authorise is waiting here
	count := func(cmd payment.Command, result string) {
		if m != nil {
			m.operations.WithLabelValues(cmd.Operation(), result).Inc()
		}
	}
	return func(ctx context.Context, msg broker.Message) error {
		env, err := broker.ParseEnvelope(msg.Body)
		if err != nil {
			return apply(ctx, msg) // which refuses it in its own words
		}
		cmd, cmdErr := Command(env)
		if cmdErr == nil {
			slow, err := svc.SlowAuthorisation(ctx, cmd)
			if err != nil {
				return fmt.Errorf("%s of order %s: %w", env.Type, cmd.OrderID, err)
			}
			if slow {
				if _, busy := waiting.LoadOrStore(cmd.OrderID, struct{}{}); busy {
					log.DebugContext(ctx, "authorise already waiting", "consumer", orders.Name, "order_id", cmd.OrderID, "event_id", env.ID)
					count(cmd, "duplicate")
					return nil
				}
				defer waiting.Delete(cmd.OrderID)
				if err := svc.WaitSlowDelay(ctx); err != nil {
					return fmt.Errorf("%s of order %s: %w", env.Type, cmd.OrderID, err)
				}
			}
		}
		// A command that cannot be read is refused by apply, in its own words; a
		// type that is not a command is skipped there.
		var reply payment.Reply
		if err := apply(context.WithValue(ctx, replyKey{}, &reply), msg); err != nil {
			return err
		}
		if cmdErr == nil {
			result := reply.Result()
			if reply.Type == "" {
				result = "duplicate" // the event was applied before
			}
			count(cmd, result)
		}
		return nil
	}
}

// Command reads the payment command an event carries. Errors: a type that is not
// a payment command, data that cannot be read or breaks Command.Check.
func Command(env broker.Envelope) (payment.Command, error) {
	var data struct {
		OrderID    string        `json:"order_id"`
		Amount     payment.Money `json:"amount"`
		SealedCard string        `json:"sealed_card"`
	}
	if err := json.Unmarshal(env.Data, &data); err != nil {
		return payment.Command{}, fmt.Errorf("malformed data: %w", err)
	}
	cmd := payment.Command{Type: env.Type, OrderID: data.OrderID}
	if env.Type == payment.CommandAuthorise {
		cmd.Amount, cmd.SealedCard = data.Amount, data.SealedCard
	}
	if err := cmd.Check(); err != nil {
		return payment.Command{}, fmt.Errorf("malformed data: %w", err)
	}
	return cmd, nil
}

// Metrics counts the commands applied.
type Metrics struct {
	operations *prometheus.CounterVec
}

// NewMetrics returns the metrics, registered with reg unless it is nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{operations: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "folio_payment_operations_total",
		Help: "Payment commands applied, by operation (authorise, capture, void, refund) and result: the reply sent (authorised, declined, captured, capture_failed, voided, refunded), or duplicate for a command event applied before or already waiting out the slow test card.",
	}, []string{"operation", "result"})}
	if reg != nil {
		reg.MustRegister(m.operations)
	}
	return m
}
