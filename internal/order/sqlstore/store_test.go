package sqlstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"folio/internal/order"
	"folio/internal/order/sqlstore"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/paging"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var timing = order.DefaultTiming

// forEachStore runs suite on a new store over each SQL engine.
func forEachStore(t *testing.T, suite func(t *testing.T, db *sqldb.DB, s *sqlstore.Store)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		outboxtest.Migrate(t, db)
		suite(t, db, sqlstore.New(outbox.NewWriter(db, nil)))
	})
}

// placed returns a new pending order of user placed at now, as order.Service
// makes one, and its reserve command.
func placed(user string, now time.Time) (order.Order, []order.Command) {
	next, dl := now.Add(timing.RetryInterval), now.Add(timing.StepTimeout)
	o := order.Order{
		ID: id.New(), UserID: user, State: order.Pending,
		Items:     []order.Item{{BookID: id.New(), Quantity: 2}, {BookID: id.New(), Quantity: 1}},
		Card:      order.Card{Brand: "visa", Last4: "4242"},
		CreatedAt: now, UpdatedAt: now, Version: 1,
		Saga: order.Saga{Attempts: 1, StepStartedAt: now, NextAttemptAt: &next, StepDeadline: &dl,
			SealedCard: "x25519:sealed", ExpiresAt: now.Add(timing.Hold())},
	}
	return o, []order.Command{{Type: order.CommandReserve, Data: order.ReserveData{OrderID: o.ID, ExpiresAt: o.Saga.ExpiresAt,
		Items: []order.ReserveItem{{BookID: o.Items[0].BookID, Quantity: 2}, {BookID: o.Items[1].BookID, Quantity: 1}}}}}
}

func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func TestCreateGetRoundTripWithItsEvents(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		o, cmds := placed("u1", now())
		if err := s.Create(ctx, o, cmds); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, o) {
			t.Errorf("got  %+v\nwant %+v", got, o)
		}
		if _, err := s.Get(ctx, id.New()); !errors.Is(err, order.ErrNotFound) {
			t.Errorf("get of a missing order: %v", err)
		}
		events, _ := outboxtest.Events(t, db, 0)
		if len(events) != 2 || events[0].Envelope.Type != "order.pending" || events[1].Envelope.Type != "order.stock.reserve" {
			t.Fatalf("outbox %+v, want order.pending then order.stock.reserve", events)
		}
		shown, _ := json.Marshal(o)
		if !outboxtest.SameJSON(t, events[0].Envelope.Data, shown) {
			t.Errorf("order.pending data %s, want %s", events[0].Envelope.Data, shown)
		}
		want := `{"order_id":"` + o.ID + `","items":[{"book_id":"` + o.Items[0].BookID + `","quantity":2},{"book_id":"` +
			o.Items[1].BookID + `","quantity":1}],"expires_at":"` + o.Saga.ExpiresAt.Format(time.RFC3339Nano) + `"}`
		if !outboxtest.SameJSON(t, events[1].Envelope.Data, []byte(want)) {
			t.Errorf("reserve data %s, want %s", events[1].Envelope.Data, want)
		}
		for _, e := range events {
			if e.Aggregate != o.ID {
				t.Errorf("event %s of aggregate %s, want %s", e.Envelope.Type, e.Aggregate, o.ID)
			}
		}
	})
}

// TestAdvanceIsGuardedByVersion: a change written once moves the order on, with
// its events; the same change again, or another made from the same version, is
// stale and writes nothing.
func TestAdvanceIsGuardedByVersion(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		at := now()
		o, cmds := placed("u1", at)
		if err := s.Create(ctx, o, cmds); err != nil {
			t.Fatal(err)
		}
		_, seq := outboxtest.Events(t, db, 0)
		eur := func(n int64) *order.Money { return &order.Money{Amount: n, Currency: "EUR"} }
		ch, ok := timing.OnReply(o, order.Reply{Type: order.ReplyReserved, OrderID: o.ID, Total: eur(3000),
			Items: []order.Item{{BookID: o.Items[0].BookID, Quantity: 2, UnitPrice: eur(1000)}, {BookID: o.Items[1].BookID, Quantity: 1, UnitPrice: eur(1000)}}},
			at.Add(time.Second))
		if !ok {
			t.Fatal("reserved is stale")
		}
		if err := s.Advance(ctx, ch); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, ch.Order) {
			t.Errorf("after reserved:\n got  %+v\n want %+v", got, ch.Order)
		}
		events, seq := outboxtest.Events(t, db, seq)
		if len(events) != 2 || events[0].Envelope.Type != "order.reserved" || events[1].Envelope.Type != "order.payment.authorise" {
			t.Fatalf("events %+v", events)
		}
		want := `{"order_id":"` + o.ID + `","amount":{"amount":3000,"currency":"EUR"},"sealed_card":"x25519:sealed"}`
		if !outboxtest.SameJSON(t, events[1].Envelope.Data, []byte(want)) {
			t.Errorf("authorise data %s, want %s", events[1].Envelope.Data, want)
		}
		if err := s.Advance(ctx, ch); !errors.Is(err, order.ErrStale) {
			t.Errorf("the same change again: %v, want ErrStale", err)
		}
		timer, _ := timing.OnTimer(o, *o.Saga.NextAttemptAt)
		if err := s.Advance(ctx, timer); !errors.Is(err, order.ErrStale) {
			t.Errorf("the timer's change from the old version: %v, want ErrStale", err)
		}
		ghost := ch
		ghost.Order.ID = id.New()
		if err := s.Advance(ctx, ghost); !errors.Is(err, order.ErrNotFound) {
			t.Errorf("change of a missing order: %v, want ErrNotFound", err)
		}
		if events, _ := outboxtest.Events(t, db, seq); len(events) != 0 {
			t.Errorf("refused changes wrote events %+v", events)
		}
		// A re-send changes no state: the command only, no state event.
		resend, ok := timing.OnTimer(got, *got.Saga.NextAttemptAt)
		if !ok {
			t.Fatal("no re-send")
		}
		if err := s.Advance(ctx, resend); err != nil {
			t.Fatal(err)
		}
		if events, _ := outboxtest.Events(t, db, seq); len(events) != 1 || events[0].Envelope.Type != "order.payment.authorise" {
			t.Errorf("re-send wrote %+v, want the authorise alone", events)
		}
	})
}

// TestConcurrentAdvancesCommitOnce: writers that read the same version race; one
// commits, the others are stale, and one command is sent.
func TestConcurrentAdvancesCommitOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		o, cmds := placed("u1", now())
		if err := s.Create(ctx, o, cmds); err != nil {
			t.Fatal(err)
		}
		_, seq := outboxtest.Events(t, db, 0)
		ch, _ := timing.OnTimer(o, *o.Saga.NextAttemptAt)
		const writers = 8
		errs := make(chan error, writers)
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() { errs <- s.Advance(ctx, ch) })
		}
		wg.Wait()
		close(errs)
		won := 0
		for err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, order.ErrStale):
				t.Errorf("unexpected error %v", err)
			}
		}
		if events, _ := outboxtest.Events(t, db, seq); won != 1 || len(events) != 1 {
			t.Errorf("%d writers won, %d events; want 1 and 1", won, len(events))
		}
	})
}

func TestAdvanceIn(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		o, cmds := placed("u1", now())
		if err := s.Create(ctx, o, cmds); err != nil {
			t.Fatal(err)
		}
		decide := func(r order.Reply) func(order.Order) (order.Change, bool) {
			return func(cur order.Order) (order.Change, bool) { return timing.OnReply(cur, r, now()) }
		}
		var got order.Change
		var ok bool
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			got, ok, err = s.AdvanceIn(ctx, tx, o.ID, decide(order.Reply{Type: order.ReplyRejected, OrderID: o.ID, Reason: "out_of_stock"}))
			return err
		})
		if err != nil || !ok || got.Order.State != order.Rejected {
			t.Fatalf("AdvanceIn: %v, %v, %s", err, ok, got.Order.State)
		}
		for _, tc := range []struct{ name, id string }{{"stale", o.ID}, {"unknown order", id.New()}} {
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				_, ok, err = s.AdvanceIn(ctx, tx, tc.id, decide(order.Reply{Type: order.ReplyRejected, OrderID: tc.id}))
				return err
			})
			if err != nil || ok {
				t.Errorf("%s: %v, %v; want no change, no error", tc.name, err, ok)
			}
		}
		cur, _ := s.Get(ctx, o.ID)
		if cur.State != order.Rejected || *cur.Reason != "out_of_stock" || cur.Saga.SealedCard != "" || cur.Saga.NextAttemptAt != nil {
			t.Errorf("stored %+v", cur)
		}
	})
}

func TestListPagesTheUsersOrders(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		var mine []string
		for i := range 5 {
			o, cmds := placed("u1", now())
			if err := s.Create(ctx, o, cmds); err != nil {
				t.Fatal(err)
			}
			mine = append(mine, o.ID)
			if i%2 == 0 {
				other, cmds := placed("u2", now())
				if err := s.Create(ctx, other, cmds); err != nil {
					t.Fatal(err)
				}
			}
		}
		var got []string
		page := paging.Request{Limit: 2}
		for {
			orders, err := s.List(ctx, "u1", page)
			if err != nil {
				t.Fatal(err)
			}
			p := paging.Of(page, orders, func(o order.Order) string { return o.ID })
			for _, o := range p.Items {
				if len(o.Items) != 2 {
					t.Errorf("order %s listed with %d items", o.ID, len(o.Items))
				}
				got = append(got, o.ID)
			}
			if p.Next == "" {
				break
			}
			page.After = p.Next
		}
		slices.Sort(mine)
		if !slices.Equal(got, mine) {
			t.Errorf("listed %q, want %q", got, mine)
		}
		if orders, err := s.List(ctx, "nobody", paging.Request{Limit: 20}); err != nil || len(orders) != 0 {
			t.Errorf("list of a user without orders: %v, %d", err, len(orders))
		}
	})
}

func TestDueAndStuck(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		base := now()
		var ids []string
		for i := range 3 {
			// Placed 3, 2 and 1 s apart, so due in that order.
			o, cmds := placed("u1", base.Add(time.Duration(-3+i)*time.Second))
			if err := s.Create(ctx, o, cmds); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, o.ID)
		}
		due := func(at time.Time, limit int) []string {
			orders, err := s.Due(ctx, at, limit)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, o := range orders {
				out = append(out, o.ID)
			}
			return out
		}
		if got := due(base, 10); len(got) != 0 {
			t.Errorf("due before any retry: %q", got)
		}
		if got := due(base.Add(timing.RetryInterval-2*time.Second), 10); !slices.Equal(got, ids[:2]) {
			t.Errorf("due: %q, want the first two", got)
		}
		if got := due(base.Add(time.Hour), 1); !slices.Equal(got, ids[:1]) {
			t.Errorf("due with limit 1: %q, want the most overdue", got)
		}
		// Past the deadline the first one compensates: stuck once its release
		// waits longer than the step timeout.
		o, _ := s.Get(ctx, ids[0])
		ch, _ := timing.OnTimer(o, *o.Saga.StepDeadline)
		if err := s.Advance(ctx, ch); err != nil {
			t.Fatal(err)
		}
		started := ch.Order.Saga.StepStartedAt
		for _, tc := range []struct {
			since time.Time
			want  int
		}{{started, 0}, {started.Add(time.Microsecond), 1}} {
			if n, err := s.Stuck(ctx, tc.since); err != nil || n != tc.want {
				t.Errorf("Stuck(%s): %d, %v; want %d", tc.since, n, err, tc.want)
			}
		}
	})
}
