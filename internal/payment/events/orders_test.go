package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"folio/internal/payment"
	"folio/internal/payment/events"
	"folio/internal/payment/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/polltest"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.DiscardHandler)

// consumer is the payment commands' consumer over a store, as the program runs it.
type consumer struct {
	db      *sqldb.DB
	store   *sqlstore.Store
	key     *secrets.Recipient
	metrics *events.Metrics
	reg     *prometheus.Registry
	handle  broker.Handler
	seq     int64 // the outbox's last reply read
}

func newConsumer(t testing.TB, db *sqldb.DB, slowDelay time.Duration) *consumer {
	t.Helper()
	outboxtest.Migrate(t, db)
	key, err := secrets.LoadRecipient(secrets.GenerateRecipientKey())
	if err != nil {
		t.Fatal(err)
	}
	store := sqlstore.New(db)
	svc := payment.NewService(store, key, payment.Config{SlowDelay: slowDelay})
	reg := prometheus.NewRegistry()
	m := events.NewMetrics(reg)
	return &consumer{db: db, store: store, key: key, metrics: m, reg: reg,
		handle: events.Handler(events.Orders(svc, store, nil), svc, m, db, quiet)}
}

func openSQLite(t testing.TB) *sqldb.DB {
	return sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "payment.db"), sqlstore.Migrations)
}

// message is the command of typ for the order, as the order service sends it;
// an authorise is of 1299 EUR on the card number.
func (c *consumer) message(t testing.TB, typ, orderID, number string) broker.Message {
	t.Helper()
	data := map[string]any{"order_id": orderID}
	if typ == payment.CommandAuthorise {
		sealed, err := secrets.SealTo(c.key.PublicKey(), []byte(`{"number":"`+number+`","expiry":"12/30","cvc":"123"}`))
		if err != nil {
			t.Fatal(err)
		}
		data["amount"], data["sealed_card"] = map[string]any{"amount": 1299, "currency": "EUR"}, sealed
	}
	raw, _ := json.Marshal(data)
	return envelopeMessage(broker.Envelope{ID: id.New(), Type: typ, OccurredAt: time.Now().UTC(), Data: raw})
}

func envelopeMessage(env broker.Envelope) broker.Message {
	body, _ := json.Marshal(env)
	return broker.Message{Subject: "folio." + env.Type, ID: env.ID, Body: body}
}

// replies returns the replies written since the last call, each as its type and
// reason or amount.
func (c *consumer) replies(t testing.TB) []string {
	t.Helper()
	evs, seq := outboxtest.Events(t, c.db, c.seq)
	c.seq = seq
	var out []string
	for _, e := range evs {
		var d struct {
			OrderID  string         `json:"order_id"`
			Reason   string         `json:"reason"`
			Amount   *payment.Money `json:"amount"`
			Refunded *payment.Money `json:"refunded"`
		}
		if err := json.Unmarshal(e.Envelope.Data, &d); err != nil {
			t.Fatal(err)
		}
		s := strings.TrimPrefix(e.Envelope.Type, "payment.")
		switch {
		case d.Reason != "":
			s += " " + d.Reason
		case d.Refunded != nil:
			s += " " + itoa(d.Refunded.Amount) + " " + d.Refunded.Currency
		case d.Amount != nil:
			s += " " + itoa(d.Amount.Amount) + " " + d.Amount.Currency
		}
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

const (
	approved  = "4242424242424242"
	slowCard  = "4000000000000119"
	noCapture = "4000000000000341"
)

// TestDuplicateAndReorderedCommands sends commands as a re-sending order service
// and a redelivering broker do: duplicated, and out of order. Each is answered,
// with the same reply when it came before, and money moves once.
func TestDuplicateAndReorderedCommands(t *testing.T) {
	const (
		authorise = payment.CommandAuthorise
		capture   = payment.CommandCapture
		void      = payment.CommandVoid
		refund    = payment.CommandRefund
	)
	tests := []struct {
		name     string
		commands []string
		card     string
		replies  []string
		captured int64
		refunded int64
	}{
		{"in order", []string{authorise, capture}, approved, []string{"authorised 1299 EUR", "captured 1299 EUR"}, 1299, 0},
		{"authorise twice", []string{authorise, authorise}, approved, []string{"authorised 1299 EUR", "authorised 1299 EUR"}, 0, 0},
		{"capture twice", []string{authorise, capture, capture}, approved, []string{"authorised 1299 EUR", "captured 1299 EUR", "captured 1299 EUR"}, 1299, 0},
		{"refund twice", []string{authorise, capture, refund, refund}, approved, []string{"authorised 1299 EUR", "captured 1299 EUR", "refunded 1299 EUR", "refunded 1299 EUR"}, 1299, 1299},
		{"void twice after a capture", []string{authorise, capture, void, void}, approved, []string{"authorised 1299 EUR", "captured 1299 EUR", "voided 1299 EUR", "voided 1299 EUR"}, 1299, 1299},
		{"void before authorise", []string{void, authorise, capture}, approved, []string{"voided 0", "declined voided", "capture_failed not_authorised"}, 0, 0},
		{"refund before authorise", []string{refund, authorise, refund}, approved, []string{"refunded 0", "declined voided", "refunded 0"}, 0, 0},
		{"capture before authorise", []string{capture, authorise, capture}, approved, []string{"capture_failed not_authorised", "authorised 1299 EUR", "captured 1299 EUR"}, 1299, 0},
		{"capture refused, twice, then voided", []string{authorise, capture, capture, void, authorise}, noCapture, []string{"authorised 1299 EUR", "capture_failed capture_declined", "capture_failed capture_declined", "voided 0 EUR", "authorised 1299 EUR"}, 0, 0},
		{"refund of an authorisation", []string{authorise, refund, capture}, approved, []string{"authorised 1299 EUR", "refunded 0 EUR", "capture_failed not_authorised"}, 0, 0},
	}
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		c := newConsumer(t, db, time.Hour)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c.replies(t)
				orderID := id.New()
				for i, typ := range tt.commands {
					if err := c.handle(context.Background(), c.message(t, typ, orderID, tt.card)); err != nil {
						t.Fatalf("command %d (%s): %v", i, typ, err)
					}
				}
				if got := c.replies(t); !reflect.DeepEqual(got, tt.replies) {
					t.Errorf("got replies %q, want %q", got, tt.replies)
				}
				p, err := c.store.Get(context.Background(), orderID)
				if err != nil {
					t.Fatal(err)
				}
				if p.Captured != tt.captured || p.Refunded != tt.refunded {
					t.Errorf("got captured %d, refunded %d; want %d, %d", p.Captured, p.Refunded, tt.captured, tt.refunded)
				}
			})
		}
	})
}

// TestAnEventIsAppliedOnce: the broker's redelivery of one event is applied once
// and not answered again (the inbox absorbs it); it is counted as a duplicate.
func TestAnEventIsAppliedOnce(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		c := newConsumer(t, db, time.Hour)
		orderID := id.New()
		auth := c.message(t, payment.CommandAuthorise, orderID, approved)
		capture := c.message(t, payment.CommandCapture, orderID, "")
		for _, m := range []broker.Message{auth, auth, capture, capture} {
			if err := c.handle(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := c.replies(t), []string{"authorised 1299 EUR", "captured 1299 EUR"}; !reflect.DeepEqual(got, want) {
			t.Errorf("got replies %q, want %q", got, want)
		}
		for _, tc := range []struct {
			operation, result string
			want              float64
		}{
			{"authorise", "authorised", 1}, {"authorise", "duplicate", 1}, {"capture", "captured", 1}, {"capture", "duplicate", 1},
		} {
			if got := testutil.ToFloat64(metric(t, c, tc.operation, tc.result)); got != tc.want {
				t.Errorf("folio_payment_operations_total{operation=%q,result=%q} = %v, want %v", tc.operation, tc.result, got, tc.want)
			}
		}
	})
}

// metric is the counter of the operation's result.
func metric(t testing.TB, c *consumer, operation, result string) prometheus.Collector {
	t.Helper()
	return events.OperationsCounter(c.metrics, operation, result)
}

// TestMalformedCommandsAreRefused: a command that cannot be read is an error, so
// that the broker retries it and then moves it to the dead letters instead of
// dropping it unseen, and it writes nothing.
func TestMalformedCommandsAreRefused(t *testing.T) {
	c := newConsumer(t, openSQLite(t), time.Hour)
	orderID := id.New()
	for _, tt := range []struct{ name, typ, data string }{
		{"data not an object", payment.CommandCapture, `"x"`},
		{"no order id", payment.CommandCapture, `{}`},
		{"order id not an id", payment.CommandVoid, `{"order_id":"7"}`},
		{"authorise without an amount", payment.CommandAuthorise, `{"order_id":"` + orderID + `","sealed_card":"x"}`},
		{"authorise of a negative amount", payment.CommandAuthorise, `{"order_id":"` + orderID + `","amount":{"amount":-1,"currency":"EUR"},"sealed_card":"x"}`},
		{"authorise without a card", payment.CommandAuthorise, `{"order_id":"` + orderID + `","amount":{"amount":1,"currency":"EUR"}}`},
		{"amount a string", payment.CommandAuthorise, `{"order_id":"` + orderID + `","amount":{"amount":"1","currency":"EUR"},"sealed_card":"x"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := envelopeMessage(broker.Envelope{ID: id.New(), Type: tt.typ, Data: json.RawMessage(tt.data)})
			if err := c.handle(context.Background(), m); err == nil {
				t.Error("got nil, want an error so that the broker retries and dead-letters it")
			}
		})
	}
	if err := c.handle(context.Background(), broker.Message{Subject: "folio.order.payment.capture", ID: "m", Body: []byte(`{"id":`)}); err == nil {
		t.Error("not JSON: got nil, want an error")
	}
	if got := c.replies(t); len(got) != 0 {
		t.Errorf("got replies %q, want none", got)
	}
	if _, err := c.store.Get(context.Background(), orderID); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("got %v, want no payment", err)
	}
}

// TestOtherEventTypesAreLeftAlone: an event under order.payment.> that is not a
// command is acknowledged, not failed, and answered with nothing.
func TestOtherEventTypesAreLeftAlone(t *testing.T) {
	c := newConsumer(t, openSQLite(t), time.Hour)
	m := envelopeMessage(broker.Envelope{ID: id.New(), Type: "order.payment.inspect", Data: json.RawMessage(`{"order_id":"` + id.New() + `"}`)})
	if err := c.handle(context.Background(), m); err != nil {
		t.Errorf("got %v, want nil", err)
	}
	if got := c.replies(t); len(got) != 0 {
		t.Errorf("got replies %q, want none", got)
	}
}

// TestTheSlowCardHoldsNoOtherCommand authorises the slow test card with a delay
// longer than the test: while it waits, commands of other orders are applied and
// answered (on SQLite too, where a wait inside the shared transaction would hold
// them), and other copies of its authorise (redelivered, re-sent) are
// acknowledged at once instead of each holding a slot; when its context ends it
// gives up, having written nothing. With a short delay it is approved.
func TestTheSlowCardHoldsNoOtherCommand(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		c := newConsumer(t, db, time.Hour)
		slowOrder, other := id.New(), id.New()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		slowMsg := c.message(t, payment.CommandAuthorise, slowOrder, slowCard)
		done := make(chan error, 2)
		for range 2 { // the command, and the broker's redelivery of it
			go func() { done <- c.handle(ctx, slowMsg) }()
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("the copy of the slow authorise: got %v, want it acknowledged", err)
			}
		case <-time.After(polltest.Deadline):
			t.Fatal("neither copy of the slow authorise was acknowledged while the other waits")
		}
		// The order service's re-sent command is acknowledged at once as well.
		if err := c.handle(context.Background(), c.message(t, payment.CommandAuthorise, slowOrder, slowCard)); err != nil {
			t.Fatalf("the re-sent slow authorise: %v", err)
		}
		for _, typ := range []string{payment.CommandAuthorise, payment.CommandCapture} {
			if err := c.handle(context.Background(), c.message(t, typ, other, approved)); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := c.replies(t), []string{"authorised 1299 EUR", "captured 1299 EUR"}; !reflect.DeepEqual(got, want) {
			t.Errorf("while the slow card waits: got replies %q, want %q", got, want)
		}
		select {
		case err := <-done:
			t.Fatalf("the slow card was answered within the test (%v), want it to wait an hour", err)
		default:
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("the slow card's context ended: got %v, want context.Canceled", err)
		}
		if _, err := c.store.Get(context.Background(), slowOrder); !errors.Is(err, payment.ErrNotFound) {
			t.Errorf("the slow card given up: got %v, want no payment", err)
		}
		if got := testutil.ToFloat64(metric(t, c, "authorise", "duplicate")); got != 2 {
			t.Errorf("got %v duplicate authorises counted, want 2", got)
		}

		quick := newConsumer(t, db, time.Millisecond)
		quick.seq = c.seq
		if err := quick.handle(context.Background(), quick.message(t, payment.CommandAuthorise, slowOrder, slowCard)); err != nil {
			t.Fatal(err)
		}
		if got, want := quick.replies(t), []string{"authorised 1299 EUR"}; !reflect.DeepEqual(got, want) {
			t.Errorf("got replies %q, want %q", got, want)
		}
	})
}

// TestOrdersSubscription checks the consumer the program subscribes with.
func TestOrdersSubscription(t *testing.T) {
	s := events.Orders(nil, nil, nil).Subscription("folio")
	if s.Name != "payment-orders" || !reflect.DeepEqual(s.Subjects, []string{"folio.order.payment.>"}) || s.Concurrency < 2 {
		t.Errorf("got %+v, want payment-orders on folio.order.payment.>, several at a time", s)
	}
	if got := events.Orders(nil, nil, nil).Types; !reflect.DeepEqual(got, payment.Commands) {
		t.Errorf("got types %v, want %v", got, payment.Commands)
	}
}
