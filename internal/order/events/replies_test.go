package events_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"folio/internal/order"
	"folio/internal/order/events"
	"folio/internal/order/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.DiscardHandler)

// transitions records the metrics the consumer tells of.
type transitions struct {
	mu   sync.Mutex
	seen []string
}

func (m *transitions) Transition(from, to order.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen = append(m.seen, string(from)+">"+string(to))
}
func (m *transitions) Compensation(string)                    {}
func (m *transitions) StepAnswered(order.Step, time.Duration) {}
func (m *transitions) Stuck(int)                              {}
func (m *transitions) list() []string                         { m.mu.Lock(); defer m.mu.Unlock(); return slices.Clone(m.seen) }
func sealedAs(p []byte) (string, error)                       { return "x25519:" + string(p[:4]), nil }
func reply(typ, orderID string, data map[string]any) broker.Message {
	if data == nil {
		data = map[string]any{}
	}
	data["order_id"] = orderID
	raw, _ := json.Marshal(data)
	eventID := id.New()
	body, _ := json.Marshal(broker.Envelope{ID: eventID, Type: typ, OccurredAt: time.Now().UTC(), Data: raw})
	return broker.Message{Subject: "folio." + typ, ID: eventID, Body: body}
}

// consumer is the replies consumer over a real store, as the program runs it.
type consumer struct {
	db      *sqldb.DB
	store   *sqlstore.Store
	svc     *order.Service
	metrics *transitions
	handle  broker.Handler
	wakes   atomic.Int64 // calls of the relay's Notify
}

func newConsumer(t *testing.T, db *sqldb.DB) *consumer {
	t.Helper()
	outboxtest.Migrate(t, db)
	c := &consumer{db: db, store: sqlstore.New(outbox.NewWriter(db, nil)), metrics: &transitions{}}
	svc, err := order.NewService(c.store, order.Config{Timing: order.DefaultTiming, Seal: sealedAs, Metrics: c.metrics}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	c.svc = svc
	c.handle = events.Replies(c.store, svc, func() { c.wakes.Add(1) }, quiet).Handler(db, quiet)
	return c
}

func (c *consumer) place(t *testing.T) order.Order {
	t.Helper()
	o, err := c.svc.Place(context.Background(), "u1", order.Input{
		Items: []order.ItemInput{{BookID: id.New(), Quantity: 2}},
		Card:  order.CardInput{Number: "4242424242424242", Expiry: "12/99", CVC: "123"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (c *consumer) deliver(t *testing.T, m broker.Message) {
	t.Helper()
	if err := c.handle(context.Background(), m); err != nil {
		t.Fatalf("deliver %s: %v", m.Subject, err)
	}
}

func (c *consumer) state(t *testing.T, orderID string) order.Order {
	t.Helper()
	o, err := c.store.Get(context.Background(), orderID)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// eventTypes lists the types of the outbox's events after seq.
func eventTypes(t *testing.T, db *sqldb.DB, seq int64) ([]string, int64) {
	evs, seq := outboxtest.Events(t, db, seq)
	var out []string
	for _, e := range evs {
		out = append(out, e.Envelope.Type)
	}
	return out, seq
}

func reserved(o order.Order) broker.Message {
	return reply(order.ReplyReserved, o.ID, map[string]any{
		"items":      []map[string]any{{"book_id": o.Items[0].BookID, "quantity": 2, "unit_price": map[string]any{"amount": 1299, "currency": "EUR"}}},
		"total":      map[string]any{"amount": 2598, "currency": "EUR"},
		"expires_at": o.Saga.ExpiresAt,
	})
}

// TestRepliesCarryAnOrderToConfirmed: each reply moves the order once, writes its
// state's event and the next command; a redelivered reply (the same event) and a
// reply answered again (a new event, as after a re-sent command) change nothing.
func TestRepliesCarryAnOrderToConfirmed(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		c := newConsumer(t, db)
		o := c.place(t)
		_, seq := eventTypes(t, db, 0)
		steps := []struct {
			m     broker.Message
			again broker.Message // the same reply sent again as a new event
			state order.State
			sent  []string
		}{
			{reserved(o), reserved(o), order.Reserved, []string{"order.reserved", "order.payment.authorise"}},
			{reply(order.ReplyAuthorised, o.ID, map[string]any{"payment_id": id.New()}), reply(order.ReplyAuthorised, o.ID, nil), order.Authorised, []string{"order.authorised", "order.payment.capture"}},
			{reply(order.ReplyCaptured, o.ID, nil), reply(order.ReplyCaptured, o.ID, nil), order.Paid, []string{"order.paid", "order.stock.commit"}},
			{reply(order.ReplyCommitted, o.ID, nil), reply(order.ReplyCommitted, o.ID, nil), order.Confirmed, []string{"order.confirmed"}},
		}
		for _, st := range steps {
			c.deliver(t, st.m)
			c.deliver(t, st.m)
			c.deliver(t, st.again)
			var got []string
			got, seq = eventTypes(t, db, seq)
			if !slices.Equal(got, st.sent) {
				t.Errorf("%s: wrote %q, want %q", st.state, got, st.sent)
			}
			if cur := c.state(t, o.ID); cur.State != st.state {
				t.Fatalf("state %s, want %s", cur.State, st.state)
			}
		}
		cur := c.state(t, o.ID)
		if cur.Total == nil || cur.Total.Amount != 2598 || cur.Items[0].UnitPrice == nil || cur.Items[0].UnitPrice.Amount != 1299 {
			t.Errorf("prices not recorded: %+v", cur)
		}
		if cur.Saga.SealedCard != "" || cur.Saga.NextAttemptAt != nil {
			t.Errorf("a confirmed order keeps saga state %+v", cur.Saga)
		}
		want := []string{"pending>reserved", "reserved>authorised", "authorised>paid", "paid>confirmed"}
		if got := c.metrics.list(); !slices.Equal(got, want) {
			t.Errorf("metrics heard %q, want %q (once each, after commit)", got, want)
		}
		if n := c.wakes.Load(); n != 4 {
			t.Errorf("the relay was woken %d times, want 4 (once per change)", n)
		}
	})
}

// TestReorderedAndStaleRepliesChangeNothing: replies that come before the one the
// order waits on, after it moved on, or for an order nobody placed, are recorded
// and change nothing; a compensation's replies finish it.
func TestReorderedAndStaleRepliesChangeNothing(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		c := newConsumer(t, db)
		o := c.place(t)
		_, seq := eventTypes(t, db, 0)
		for _, m := range []broker.Message{
			reply(order.ReplyCaptured, o.ID, nil), // before its turn
			reply(order.ReplyAuthorised, o.ID, nil),
			reply(order.ReplyReleased, o.ID, map[string]any{"reason": "expired"}),
			reply(order.ReplyVoided, o.ID, map[string]any{"refunded": 0}),
			reply(order.ReplyRejected, id.New(), map[string]any{"reason": "out_of_stock"}), // nobody's order
		} {
			c.deliver(t, m)
		}
		if got, _ := eventTypes(t, db, seq); len(got) != 0 || c.state(t, o.ID).State != order.Pending {
			t.Fatalf("stale replies wrote %q; state %s", got, c.state(t, o.ID).State)
		}
		c.deliver(t, reserved(o))
		c.deliver(t, reply(order.ReplyDeclined, o.ID, map[string]any{"reason": "card_declined"}))
		c.deliver(t, reply(order.ReplyAuthorised, o.ID, nil)) // a late answer to a re-sent authorise
		c.deliver(t, reply(order.ReplyReleased, o.ID, map[string]any{"reason": "released"}))
		c.deliver(t, reply(order.ReplyReleased, o.ID, map[string]any{"reason": "released"}))
		cur := c.state(t, o.ID)
		if cur.State != order.PaymentFailed || cur.Reason == nil || *cur.Reason != "card_declined" {
			t.Errorf("ended %s (%v), want payment_failed (card_declined)", cur.State, cur.Reason)
		}
		got, _ := eventTypes(t, db, seq)
		want := []string{"order.reserved", "order.payment.authorise", "order.releasing", "order.stock.release", "order.payment_failed"}
		if !slices.Equal(got, want) {
			t.Errorf("wrote %q, want %q", got, want)
		}
	})
}

// TestMalformedRepliesAreRefused: a reply whose data cannot be read goes to the
// broker's retries (and dead letters), and changes nothing.
func TestMalformedRepliesAreRefused(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		c := newConsumer(t, db)
		o := c.place(t)
		for name, m := range map[string]broker.Message{
			"no order id":           reply(order.ReplyCommitted, "", nil),
			"reserved, no total":    reply(order.ReplyReserved, o.ID, nil),
			"bad currency":          reply(order.ReplyReserved, o.ID, map[string]any{"total": map[string]any{"amount": 1, "currency": "E"}}),
			"data of another shape": {Subject: "folio.x", ID: "x", Body: []byte(`{"id":"e1","type":"inventory.reserved","data":[1]}`)},
		} {
			if err := c.handle(context.Background(), m); err == nil {
				t.Errorf("%s: nil error", name)
			}
		}
		if cur := c.state(t, o.ID); cur.State != order.Pending || cur.Version != 1 {
			t.Errorf("after malformed replies: %s v%d", cur.State, cur.Version)
		}
	})
}

// TestConcurrentDuplicatesApplyOnce delivers the same replies many times at once,
// as a broker with several deliveries in flight may.
func TestConcurrentDuplicatesApplyOnce(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		c := newConsumer(t, db)
		const orders = 6
		var placed []order.Order
		for range orders {
			placed = append(placed, c.place(t))
		}
		_, seq := eventTypes(t, db, 0)
		var wg sync.WaitGroup
		for _, o := range placed {
			same := reserved(o)
			for range 4 {
				for _, m := range []broker.Message{same, reserved(o)} {
					wg.Go(func() {
						// A lost race (ErrStale) is redelivered by the broker: do so.
						var err error
						for range 100 {
							if err = c.handle(context.Background(), m); err == nil {
								return
							}
						}
						t.Errorf("delivered 100 times, still %v", err)
					})
				}
			}
		}
		wg.Wait()
		got, _ := eventTypes(t, db, seq)
		if len(got) != 2*orders {
			t.Errorf("wrote %d events, want %d (reserved and authorise, once per order): %q", len(got), 2*orders, got)
		}
		for _, o := range placed {
			if cur := c.state(t, o.ID); cur.State != order.Reserved || cur.Version != 2 {
				t.Errorf("order %s: %s v%d, want reserved v2", o.ID, cur.State, cur.Version)
			}
		}
	})
}
