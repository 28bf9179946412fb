package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"folio/internal/inventory"
	"folio/internal/inventory/sqlstore"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/paging"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// forEachStore runs suite on a new store over each SQL engine.
func forEachStore(t *testing.T, suite func(t *testing.T, db *sqldb.DB, s *sqlstore.Store)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		outboxtest.Migrate(t, db)
		suite(t, db, sqlstore.New(outbox.NewWriter(db, nil)))
	})
}

var eur = func(amount int64) inventory.Money { return inventory.Money{Amount: amount, Currency: "EUR"} }

// stock creates the stock of a new book and returns its id.
func stock(t *testing.T, s *sqlstore.Store, price inventory.Money, quantity int64) string {
	t.Helper()
	bookID := id.New()
	it := inventory.Item{BookID: bookID, Price: price, Quantity: quantity, Version: 1, UpdatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	if err := s.Create(context.Background(), it); err != nil {
		t.Fatalf("create stock: %v", err)
	}
	return bookID
}

// apply applies one command as the consumer does, in a transaction of its own.
func apply(db *sqldb.DB, s *sqlstore.Store, c inventory.Command) (inventory.Outcome, error) {
	var o inventory.Outcome
	err := db.InTx(context.Background(), func(tx *sql.Tx) error {
		var err error
		o, err = s.Apply(context.Background(), tx, c)
		return err
	})
	return o, err
}

func mustApply(t *testing.T, db *sqldb.DB, s *sqlstore.Store, c inventory.Command) inventory.Outcome {
	t.Helper()
	o, err := apply(db, s, c)
	if err != nil {
		t.Fatalf("apply %s: %v", c.Type, err)
	}
	return o
}

func reserve(orderID string, expires time.Time, lines ...inventory.Line) inventory.Command {
	return inventory.Command{Type: inventory.CommandReserve, OrderID: orderID, Items: lines, ExpiresAt: expires}
}

func line(bookID string, q int64) inventory.Line { return inventory.Line{BookID: bookID, Quantity: q} }

// counts returns the quantity and reserved copies of the book.
func counts(t *testing.T, s *sqlstore.Store, bookID string) (quantity, reserved int64) {
	t.Helper()
	it, err := s.Get(context.Background(), bookID)
	if err != nil {
		t.Fatalf("get %s: %v", bookID, err)
	}
	if it.Available != it.Quantity-it.Reserved {
		t.Errorf("available %d, want quantity %d - reserved %d", it.Available, it.Quantity, it.Reserved)
	}
	return it.Quantity, it.Reserved
}

func TestStockCreateGetUpdate(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		bookID := stock(t, s, eur(1299), 5)
		it, err := s.Get(ctx, bookID)
		if err != nil {
			t.Fatal(err)
		}
		if it.Price != eur(1299) || it.Quantity != 5 || it.Reserved != 0 || it.Available != 5 || it.Version != 1 {
			t.Errorf("got %+v, want EUR 1299, 5 on hand, none reserved, version 1", it)
		}
		if err := s.Create(ctx, it); !errors.Is(err, inventory.ErrStale) {
			t.Errorf("create again: got %v, want ErrStale", err)
		}
		next := inventory.Item{BookID: bookID, Price: inventory.Money{Amount: 900, Currency: "USD"}, Quantity: 7, Version: 2, UpdatedAt: time.Now().UTC()}
		got, err := s.Update(ctx, next)
		if err != nil || got.Quantity != 7 || got.Price.Currency != "USD" || got.Version != 2 || got.Available != 7 {
			t.Fatalf("update: got %+v, %v", got, err)
		}
		if _, err := s.Update(ctx, next); !errors.Is(err, inventory.ErrStale) {
			t.Errorf("update at an old version: got %v, want ErrStale", err)
		}
		mustApply(t, db, s, reserve(id.New(), time.Now().Add(time.Hour), line(bookID, 4)))
		below := next
		below.Quantity, below.Version = 3, 3
		if _, err := s.Update(ctx, below); fault.KindOf(err) != fault.Conflict {
			t.Errorf("quantity below the reserved copies: got %v, want a Conflict", err)
		}
		below.Quantity = 4
		if got, err := s.Update(ctx, below); err != nil || got.Reserved != 4 || got.Available != 0 {
			t.Errorf("quantity equal to the reserved copies: got %+v, %v; want 4 reserved, none available", got, err)
		}
		missing := below
		missing.BookID = id.New()
		if _, err := s.Update(ctx, missing); !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("update of no stock: got %v, want ErrNotFound", err)
		}
		if _, err := s.Get(ctx, id.New()); !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("get of no stock: got %v, want ErrNotFound", err)
		}
	})
}

func TestDeletedBooksAreOffSale(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		stocked := stock(t, s, eur(100), 5)
		unstocked := id.New()
		for _, b := range []string{stocked, unstocked, stocked} { // twice: a redelivery changes nothing
			if err := db.InTx(ctx, func(tx *sql.Tx) error { return s.MarkBookDeleted(ctx, tx, b) }); err != nil {
				t.Fatal(err)
			}
		}
		for _, b := range []string{stocked, unstocked} {
			if _, err := s.Get(ctx, b); !errors.Is(err, inventory.ErrDeleted) {
				t.Errorf("get of a deleted book: got %v, want ErrDeleted", err)
			}
			it := inventory.Item{BookID: b, Price: eur(1), Quantity: 1, Version: 1, UpdatedAt: time.Now().UTC()}
			if err := s.Create(ctx, it); !errors.Is(err, inventory.ErrStale) {
				t.Errorf("create of a deleted book: got %v, want ErrStale (the tombstone is there)", err)
			}
			it.Version = 2
			if _, err := s.Update(ctx, it); !errors.Is(err, inventory.ErrDeleted) {
				t.Errorf("update of a deleted book: got %v, want ErrDeleted", err)
			}
			o := mustApply(t, db, s, reserve(id.New(), time.Now().Add(time.Hour), line(b, 1)))
			wantReply(t, o, inventory.EventRejected, `"reason":"not_for_sale"`, `"book_id":"`+b+`"`)
		}
		items, err := s.List(ctx, paging.Request{Limit: 10})
		if err != nil || len(items) != 0 {
			t.Errorf("list: got %d items, %v; want none", len(items), err)
		}
	})
}

func TestStockList(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		var want []string
		for range 5 {
			want = append(want, stock(t, s, eur(1), 1))
		}
		var got []string
		page := paging.Request{Limit: 2}
		for {
			items, err := s.List(ctx, page)
			if err != nil {
				t.Fatal(err)
			}
			p := paging.Of(page, items, func(it inventory.Item) string { return it.BookID })
			for _, it := range p.Items {
				got = append(got, it.BookID)
			}
			if p.Next == "" {
				break
			}
			page.After = p.Next
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("pages gave %v, want %v", got, want)
		}
	})
}

func TestReserveAllOrNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		plenty := stock(t, s, eur(500), 5)
		scarce := stock(t, s, eur(700), 1)
		dollars := stock(t, s, inventory.Money{Amount: 300, Currency: "USD"}, 5)
		expires := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
		for _, tc := range []struct {
			name   string
			lines  []inventory.Line
			reason string
			book   string
		}{
			{"one line short", []inventory.Line{line(plenty, 2), line(scarce, 2)}, inventory.ReasonOutOfStock, scarce},
			{"a book with no stock", []inventory.Line{line(plenty, 2), line(id.New(), 1)}, inventory.ReasonNotForSale, ""},
			{"two currencies", []inventory.Line{line(plenty, 1), line(dollars, 1)}, inventory.ReasonMixedCurrencies, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, err := inventory.ParseCommand(inventory.CommandReserve, commandData(t, id.New(), expires, tc.lines...))
				if err != nil {
					t.Fatal(err)
				}
				o := mustApply(t, db, s, c)
				wantReply(t, o, inventory.EventRejected, `"reason":"`+tc.reason+`"`)
				if tc.book != "" {
					wantReply(t, o, inventory.EventRejected, `"book_id":"`+tc.book+`"`)
				}
				for _, b := range []string{plenty, scarce, dollars} {
					if _, reserved := counts(t, s, b); reserved != 0 {
						t.Errorf("book %s: %d reserved after a rejected reserve, want 0", b, reserved)
					}
				}
				// The rejection is the order's record: applied again, the same answer.
				if again := mustApply(t, db, s, c); again.Changed || fmt.Sprint(again.Reply) != fmt.Sprint(o.Reply) {
					t.Errorf("again: got %+v, want %+v unchanged", again, o)
				}
			})
		}
		c := reserve(id.New(), expires, line(plenty, 2), line(scarce, 1))
		o := mustApply(t, db, s, c)
		wantReply(t, o, inventory.EventReserved, `"total":{"amount":1700,"currency":"EUR"}`,
			`{"book_id":"`+scarce+`","quantity":1,"unit_price":{"amount":700,"currency":"EUR"}}`)
		if _, reserved := counts(t, s, plenty); reserved != 2 {
			t.Errorf("plenty: %d reserved, want 2", reserved)
		}
	})
}

// TestReserveNeverOversells has many orders reserve the last copies of one book at
// once, one or two books an order: exactly the copies there are are reserved.
func TestReserveNeverOversells(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		const copies, orders = 10, 60
		contested := stock(t, s, eur(100), copies)
		other := stock(t, s, eur(100), orders)
		var reserved, rejected int
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make(chan error, orders)
		for i := range orders {
			wg.Go(func() {
				lines := []inventory.Line{line(contested, 1)}
				if i%2 == 1 {
					lines = append(lines, line(other, 1))
				}
				c, err := inventory.ParseCommand(inventory.CommandReserve, commandData(t, id.New(), time.Now().Add(time.Hour), lines...))
				if err != nil {
					errs <- err
					return
				}
				o, err := apply(db, s, c)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				defer mu.Unlock()
				switch o.Reply.Type {
				case inventory.EventReserved:
					reserved++
				case inventory.EventRejected:
					rejected++
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		quantity, held := counts(t, s, contested)
		if reserved != copies || rejected != orders-copies || held != copies || quantity != copies {
			t.Errorf("%d reserved and %d rejected, %d of %d copies held; want %d, %d, %d of %d",
				reserved, rejected, held, quantity, copies, orders-copies, copies, copies)
		}
		// The other book is held only by the orders that got the contested one.
		var withOther int64
		_, withOther = counts(t, s, other)
		if withOther > copies || withOther < 0 {
			t.Errorf("the other book: %d held, want at most %d", withOther, copies)
		}
	})
}

// TestExpireDue frees, with a fixed clock, the reservations past their expiry,
// each once however many sweepers run at once, and sends one inventory.released
// with reason expired for each.
func TestExpireDue(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		bookID := stock(t, s, eur(100), 20)
		now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
		var due []string
		for i := range 8 {
			orderID := id.New()
			expires := now.Add(-time.Minute)
			if i%2 == 1 {
				expires = now.Add(time.Minute)
			} else {
				due = append(due, orderID)
			}
			mustApply(t, db, s, reserve(orderID, expires, line(bookID, 2)))
		}
		_, seq := outboxtest.Events(t, db, 0)

		var wg sync.WaitGroup
		freed := make(chan string, 100)
		for range 4 {
			wg.Go(func() {
				rs, err := s.ExpireDue(ctx, now, 100)
				if err != nil {
					t.Errorf("expire: %v", err)
				}
				for _, r := range rs {
					freed <- r.OrderID
				}
			})
		}
		wg.Wait()
		close(freed)
		seen := map[string]int{}
		for o := range freed {
			seen[o]++
		}
		if len(seen) != len(due) {
			t.Errorf("freed %d reservations, want %d", len(seen), len(due))
		}
		for o, n := range seen {
			if n != 1 {
				t.Errorf("order %s freed %d times, want once", o, n)
			}
		}
		if _, reserved := counts(t, s, bookID); reserved != 8 {
			t.Errorf("%d reserved after the sweep, want 8 (the 4 not due)", reserved)
		}
		events, _ := outboxtest.Events(t, db, seq)
		if len(events) != len(due) {
			t.Fatalf("%d events, want %d", len(events), len(due))
		}
		for _, e := range events {
			if e.Envelope.Type != inventory.EventReleased || !outboxtest.SameJSON(t, e.Envelope.Data, []byte(`{"order_id":"`+e.Aggregate+`","reason":"expired"}`)) {
				t.Errorf("event %s %s, want inventory.released reason expired", e.Envelope.Type, e.Envelope.Data)
			}
		}
		if rs, err := s.ExpireDue(ctx, now, 100); err != nil || len(rs) != 0 {
			t.Errorf("second sweep: freed %d, %v; want none", len(rs), err)
		}
		r, err := s.Reservation(ctx, due[0])
		if err != nil || r.State != inventory.StateExpired {
			t.Errorf("reservation after the sweep: %+v, %v; want expired", r, err)
		}
	})
}

// TestSalesTakeAVersion: a sale and a restock change the quantity on hand, so
// they take a version as an editor's change does; an editor who sets the quantity
// from a read older than a sale gets ErrStale (412), rather than undoing it. A
// reservation changes no version.
func TestSalesTakeAVersion(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		bookID := stock(t, s, eur(1000), 5)
		read, err := s.Get(ctx, bookID)
		if err != nil {
			t.Fatal(err)
		}
		orderID := id.New()
		mustApply(t, db, s, reserve(orderID, time.Now().Add(time.Hour), line(bookID, 2)))
		if it, _ := s.Get(ctx, bookID); it.Version != read.Version {
			t.Errorf("version %d after a reservation, want %d", it.Version, read.Version)
		}
		mustApply(t, db, s, inventory.Command{Type: inventory.CommandCommit, OrderID: orderID})
		sold, err := s.Get(ctx, bookID)
		if err != nil || sold.Version != read.Version+1 || sold.Quantity != 3 {
			t.Fatalf("after the sale: %+v, %v; want version %d and 3 on hand", sold, err, read.Version+1)
		}
		stale := read
		stale.Quantity, stale.Version, stale.UpdatedAt = 10, read.Version+1, time.Now().UTC().Truncate(time.Microsecond)
		if _, err := s.Update(ctx, stale); !errors.Is(err, inventory.ErrStale) {
			t.Errorf("an editor's update from before the sale: got %v, want ErrStale", err)
		}
		mustApply(t, db, s, inventory.Command{Type: inventory.CommandRestock, OrderID: orderID})
		if back, _ := s.Get(ctx, bookID); back.Version != read.Version+2 || back.Quantity != 5 {
			t.Errorf("after the restock: %+v; want version %d and 5 on hand", back, read.Version+2)
		}
	})
}
