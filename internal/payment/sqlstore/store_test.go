package sqlstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"folio/internal/payment"
	"folio/internal/payment/sqlstore"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// ledger is a store over a database and the service whose rules it applies.
type ledger struct {
	db    *sqldb.DB
	store *sqlstore.Store
	svc   *payment.Service
	key   *secrets.Recipient
}

// forEachStore runs suite on a new store over each SQL engine.
func forEachStore(t *testing.T, suite func(t *testing.T, l *ledger)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		outboxtest.Migrate(t, db)
		key, err := secrets.LoadRecipient(secrets.GenerateRecipientKey())
		if err != nil {
			t.Fatal(err)
		}
		store := sqlstore.New(db)
		suite(t, &ledger{db: db, store: store, svc: payment.NewService(store, key, payment.Config{}), key: key})
	})
}

const approved = "4242424242424242"

// authorise is the authorise command of amount for orderID on the card number.
func (l *ledger) authorise(t testing.TB, orderID, number string, amount int64, currency string) payment.Command {
	t.Helper()
	sealed, err := secrets.SealTo(l.key.PublicKey(), []byte(`{"number":"`+number+`","expiry":"12/30","cvc":"123"}`))
	if err != nil {
		t.Fatal(err)
	}
	return payment.Command{Type: payment.CommandAuthorise, OrderID: orderID, Amount: payment.Money{Amount: amount, Currency: currency}, SealedCard: sealed}
}

// apply applies cmd in a transaction of its own, as the inbox does.
func (l *ledger) apply(t testing.TB, cmd payment.Command) payment.Reply {
	t.Helper()
	reply, err := l.tryApply(cmd)
	if err != nil {
		t.Fatalf("apply %s: %v", cmd.Type, err)
	}
	return reply
}

func (l *ledger) tryApply(cmd payment.Command) (payment.Reply, error) {
	var reply payment.Reply
	err := l.db.InTx(context.Background(), func(tx *sql.Tx) error {
		var err error
		reply, err = l.store.Apply(context.Background(), tx, cmd.OrderID, func(cur *payment.Payment) (payment.Outcome, error) {
			return l.svc.Decide(cur, cmd)
		})
		return err
	})
	return reply, err
}

func command(typ, orderID string) payment.Command {
	return payment.Command{Type: typ, OrderID: orderID}
}

func TestStoreKeepsThePaymentAndItsLedger(t *testing.T) {
	forEachStore(t, func(t *testing.T, l *ledger) {
		ctx := context.Background()
		orderID := id.New()
		reply := l.apply(t, l.authorise(t, orderID, approved, 1299, "EUR"))
		if reply.Type != payment.ReplyAuthorised {
			t.Fatalf("got reply %s, want %s", reply.Type, payment.ReplyAuthorised)
		}
		l.apply(t, command(payment.CommandCapture, orderID))
		p, err := l.store.Get(ctx, orderID)
		if err != nil {
			t.Fatal(err)
		}
		if p.OrderID != orderID || !id.Valid(p.ID) || p.State != payment.StateCaptured || p.Amount != (payment.Money{Amount: 1299, Currency: "EUR"}) ||
			p.Captured != 1299 || p.Refunded != 0 || p.Version != 2 || p.Card == nil || p.Card.Brand != "visa" || p.Card.Last4 != "4242" || !id.Valid(p.Card.Token) {
			t.Errorf("got %+v (card %+v)", p, p.Card)
		}
		if d := reply.Data.(payment.Authorised); d.PaymentID != p.ID {
			t.Errorf("the reply names payment %s, the store %s", d.PaymentID, p.ID)
		}
		var kinds []string
		for _, e := range p.Entries {
			kinds = append(kinds, fmt.Sprintf("%s %d", e.Kind, e.Amount))
			if e.At.IsZero() || e.At.Location().String() != "UTC" {
				t.Errorf("entry %+v: time not in UTC", e)
			}
		}
		if want := []string{"authorise 1299", "capture 1299"}; !reflect.DeepEqual(kinds, want) {
			t.Errorf("got ledger %v, want %v", kinds, want)
		}
		if !p.UpdatedAt.After(p.CreatedAt) && !p.UpdatedAt.Equal(p.CreatedAt) {
			t.Errorf("updated %v before created %v", p.UpdatedAt, p.CreatedAt)
		}
		if _, err := l.store.Get(ctx, id.New()); !errors.Is(err, payment.ErrNotFound) || fault.KindOf(err) != fault.NotFound {
			t.Errorf("an order with no payment: got %v, want ErrNotFound", err)
		}
	})
}

// TestNoCardNumberIsStored reads back every table the service writes, its replies
// included: the number and cvc are nowhere.
func TestNoCardNumberIsStored(t *testing.T) {
	forEachStore(t, func(t *testing.T, l *ledger) {
		for _, number := range []string{approved, "4000000000000002", "4000000000000341"} {
			l.apply(t, l.authorise(t, id.New(), number, 100, "EUR"))
		}
		for _, table := range []string{"payments", "payment_entries", "outbox"} {
			rows, err := l.db.QueryContext(context.Background(), `SELECT * FROM `+table)
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				text := fmt.Sprint(vals...)
				for _, v := range vals {
					if b, ok := v.([]byte); ok {
						text += string(b)
					}
				}
				if strings.Contains(text, "424242424242") || strings.Contains(text, "000000000000") || strings.Contains(text, `"123"`) {
					t.Errorf("%s holds a card: %s", table, text)
				}
			}
			rows.Close()
		}
	})
}

// TestDuplicateCommandsNeverCaptureOrRefundTwice sends every command again and
// again, in and out of order: the ledger has one capture and one refund, and
// each duplicate is answered with the reply the first one had.
func TestDuplicateCommandsNeverCaptureOrRefundTwice(t *testing.T) {
	forEachStore(t, func(t *testing.T, l *ledger) {
		orderID := id.New()
		auth := l.authorise(t, orderID, approved, 2500, "USD")
		_, seq := outboxtest.Events(t, l.db, 0)
		firsts := map[string]string{}
		for _, cmd := range []payment.Command{
			auth, auth, command(payment.CommandCapture, orderID), auth, command(payment.CommandCapture, orderID),
			command(payment.CommandRefund, orderID), command(payment.CommandCapture, orderID), command(payment.CommandRefund, orderID),
			command(payment.CommandVoid, orderID), command(payment.CommandRefund, orderID), command(payment.CommandVoid, orderID),
		} {
			reply := l.apply(t, cmd)
			events, last := outboxtest.Events(t, l.db, seq)
			seq = last
			if len(events) != 1 || events[0].Envelope.Type != reply.Type || events[0].Aggregate != orderID {
				t.Fatalf("%s: got outbox events %+v, want the reply %s", cmd.Type, events, reply.Type)
			}
			body := string(events[0].Envelope.Data)
			if first, ok := firsts[cmd.Type]; ok && first != body {
				t.Errorf("%s again: got reply %s, want %s as the first time", cmd.Type, body, first)
			} else if !ok {
				firsts[cmd.Type] = body
			}
		}
		if want := `{"order_id":"` + orderID + `","amount":{"amount":2500,"currency":"USD"}}`; !outboxtest.SameJSON(t, []byte(firsts[payment.CommandRefund]), []byte(want)) {
			t.Errorf("refund reply %s, want %s", firsts[payment.CommandRefund], want)
		}
		p, err := l.store.Get(context.Background(), orderID)
		if err != nil {
			t.Fatal(err)
		}
		if p.State != payment.StateRefunded || p.Captured != 2500 || p.Refunded != 2500 || len(p.Entries) != 3 {
			t.Errorf("got %s, captured %d, refunded %d, ledger %+v; want refunded, 2500 each, 3 entries", p.State, p.Captured, p.Refunded, p.Entries)
		}
		totals, err := l.store.Totals(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got, want := totals["USD"], (sqlstore.Totals{Authorised: 2500, Captured: 2500, Refunded: 2500}); got != want {
			t.Errorf("got totals %+v, want %+v", got, want)
		}
	})
}

// TestConcurrentDuplicatesApplyOnce applies the same commands of one order from
// many goroutines at once, as redeliveries and re-sent commands arrive: one
// payment, one capture, one refund.
func TestConcurrentDuplicatesApplyOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, l *ledger) {
		orderID := id.New()
		auth := l.authorise(t, orderID, approved, 700, "EUR")
		for _, cmd := range []payment.Command{auth, command(payment.CommandCapture, orderID), command(payment.CommandRefund, orderID)} {
			var wg sync.WaitGroup
			replies := make([]string, 8)
			errs := make([]error, len(replies))
			for i := range replies {
				wg.Go(func() {
					r, err := l.tryApply(cmd)
					b, _ := json.Marshal(r.Data)
					replies[i], errs[i] = r.Type+string(b), err
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("%s %d: %v", cmd.Type, i, err)
				} else if replies[i] != replies[0] {
					t.Errorf("%s %d: got %s, want %s as the others", cmd.Type, i, replies[i], replies[0])
				}
			}
		}
		totals, err := l.store.Totals(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got, want := totals["EUR"], (sqlstore.Totals{Authorised: 700, Captured: 700, Refunded: 700}); got != want {
			t.Errorf("got totals %+v, want %+v", got, want)
		}
	})
}

// TestTotalsSumTheLedger checks the sums over many payments in two currencies:
// captures less refunds are what the paid orders hold.
func TestTotalsSumTheLedger(t *testing.T) {
	forEachStore(t, func(t *testing.T, l *ledger) {
		type order struct {
			amount   int64
			currency string
			card     string
			then     []string
		}
		capture, refund, void := payment.CommandCapture, payment.CommandRefund, payment.CommandVoid
		orders := []order{
			{1000, "EUR", approved, []string{capture}},
			{250, "EUR", approved, []string{capture, refund}},
			{300, "EUR", approved, []string{void}},
			{400, "EUR", approved, []string{capture, void}},
			{500, "EUR", "4000000000000002", []string{capture, void}},
			{600, "EUR", "4000000000000341", []string{capture, void}},
			{700, "EUR", approved, []string{refund}},
			{9900, "GBP", approved, []string{capture, capture}},
			{0, "GBP", approved, []string{capture}},
		}
		for _, o := range orders {
			orderID := id.New()
			l.apply(t, l.authorise(t, orderID, o.card, o.amount, o.currency))
			for _, typ := range o.then {
				l.apply(t, command(typ, orderID))
			}
		}
		l.apply(t, command(void, id.New())) // a tombstone moves no money
		totals, err := l.store.Totals(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]sqlstore.Totals{
			"EUR": {Authorised: 1000 + 250 + 300 + 400 + 600 + 700, Captured: 1000 + 250 + 400, Voided: 300 + 600 + 700, Refunded: 250 + 400},
			"GBP": {Authorised: 9900, Captured: 9900},
		}
		if !reflect.DeepEqual(totals, want) {
			t.Errorf("got totals %+v, want %+v", totals, want)
		}
	})
}

// TestARefusedCommandWritesNothing: a command decide refuses leaves no payment,
// no entry and no reply.
func TestARefusedCommandWritesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, l *ledger) {
		orderID := id.New()
		bad := l.authorise(t, orderID, approved, 100, "eur")
		if _, err := l.tryApply(bad); err == nil {
			t.Fatal("got nil, want an error")
		}
		if _, err := l.store.Get(context.Background(), orderID); !errors.Is(err, payment.ErrNotFound) {
			t.Errorf("got %v, want no payment", err)
		}
		if events, _ := outboxtest.Events(t, l.db, 0); len(events) != 0 {
			t.Errorf("got %d replies, want none", len(events))
		}
	})
}
