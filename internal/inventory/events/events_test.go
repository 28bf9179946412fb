package events_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"folio/internal/inventory"
	"folio/internal/inventory/events"
	"folio/internal/inventory/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.DiscardHandler)

// counter is inventory.Metrics counting in memory.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) Counted(result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[result]++
}

func (c *counter) get(result string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[result]
}

// consumers are the inventory service's two consumers over a store, as the
// program runs them, and the clock its sweeper reads.
type consumers struct {
	db      *sqldb.DB
	store   *sqlstore.Store
	svc     *inventory.Service
	orders  broker.Handler
	books   broker.Handler
	metrics *counter
	now     time.Time
	seq     int64 // the last outbox event seen
}

func newConsumers(t testing.TB, db *sqldb.DB) *consumers {
	t.Helper()
	outboxtest.Migrate(t, db)
	store := sqlstore.New(outbox.NewWriter(db, nil))
	c := &consumers{db: db, store: store, metrics: &counter{n: map[string]int{}},
		now: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
	c.orders = events.Orders(store, c.metrics, nil).Handler(db, quiet)
	c.books = events.Books(store).Handler(db, quiet)
	c.svc = inventory.NewService(store, c.metrics, func() time.Time { return c.now })
	return c
}

func forEachEngine(t *testing.T, suite func(t *testing.T, c *consumers)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		suite(t, newConsumers(t, db))
	})
}

// message is the broker message of an event of typ with data.
func message(typ string, data any) broker.Message {
	raw, _ := json.Marshal(data)
	env := broker.Envelope{ID: id.New(), Type: typ, OccurredAt: time.Now().UTC(), Data: raw}
	body, _ := json.Marshal(env)
	return broker.Message{Subject: "folio." + typ, ID: env.ID, Body: body}
}

func (c *consumers) stock(t *testing.T, quantity int64) string {
	t.Helper()
	bookID := id.New()
	if err := c.store.Create(context.Background(), inventory.Item{BookID: bookID, Price: inventory.Money{Amount: 250, Currency: "EUR"},
		Quantity: quantity, Version: 1, UpdatedAt: c.now}); err != nil {
		t.Fatal(err)
	}
	return bookID
}

func (c *consumers) handle(t *testing.T, m broker.Message) {
	t.Helper()
	if err := c.orders(context.Background(), m); err != nil {
		t.Fatalf("handle %s: %v", m.Subject, err)
	}
}

// command sends a command of the order and returns its message.
func (c *consumers) command(t *testing.T, typ, orderID string, books ...string) broker.Message {
	t.Helper()
	data := map[string]any{"order_id": orderID}
	if typ == inventory.CommandReserve {
		var items []map[string]any
		for _, b := range books {
			items = append(items, map[string]any{"book_id": b, "quantity": 2})
		}
		data["items"], data["expires_at"] = items, c.now.Add(15*time.Minute)
	}
	m := message(typ, data)
	c.handle(t, m)
	return m
}

// replies returns the replies written since the last call, as "type data".
func (c *consumers) replies(t *testing.T) []string {
	t.Helper()
	var evs []outboxtest.Event
	evs, c.seq = outboxtest.Events(t, c.db, c.seq)
	var out []string
	for _, e := range evs {
		out = append(out, e.Envelope.Type+" "+string(e.Envelope.Data))
	}
	return out
}

// wantReplies fails t unless the replies since the last call are want, each
// "type" followed by a JSON fragment its data holds in full when given as {...}.
func (c *consumers) wantReplies(t *testing.T, want ...string) {
	t.Helper()
	got := c.replies(t)
	if len(got) != len(want) {
		t.Fatalf("replies %q, want %q", got, want)
	}
	for i := range got {
		typ, data, _ := cut(got[i])
		wtyp, wdata, _ := cut(want[i])
		if typ != wtyp || (wdata != "" && !outboxtest.SameJSON(t, []byte(data), []byte(wdata))) {
			t.Errorf("reply %d: %s, want %s", i, got[i], want[i])
		}
	}
}

func cut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func (c *consumers) counts(t *testing.T, bookID string) (quantity, reserved int64) {
	t.Helper()
	it, err := c.store.Get(context.Background(), bookID)
	if err != nil {
		t.Fatal(err)
	}
	return it.Quantity, it.Reserved
}

func (c *consumers) wantCounts(t *testing.T, bookID string, quantity, reserved int64) {
	t.Helper()
	if q, r := c.counts(t, bookID); q != quantity || r != reserved {
		t.Errorf("book has %d on hand, %d reserved; want %d, %d", q, r, quantity, reserved)
	}
}

func TestDuplicateCommandsReserveOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, c *consumers) {
		bookID := c.stock(t, 10)
		orderID := id.New()
		m := c.command(t, inventory.CommandReserve, orderID, bookID)
		c.handle(t, m)                                          // the same delivery again: the inbox drops it
		c.command(t, inventory.CommandReserve, orderID, bookID) // re-sent: answered again
		c.wantCounts(t, bookID, 10, 2)
		reserved := `{"order_id":"` + orderID + `","items":[{"book_id":"` + bookID + `","quantity":2,"unit_price":{"amount":250,"currency":"EUR"}}],` +
			`"total":{"amount":500,"currency":"EUR"},"expires_at":"2030-01-01T12:15:00Z"}`
		c.wantReplies(t, "inventory.reserved "+reserved, "inventory.reserved "+reserved)
		if n := c.metrics.get("reserved"); n != 1 {
			t.Errorf("counted %d reserved, want 1", n)
		}

		// Commands of one order delivered at once are applied one after the other.
		concurrent := id.New()
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				m := message(inventory.CommandReserve, map[string]any{"order_id": concurrent,
					"items": []map[string]any{{"book_id": bookID, "quantity": 2}}, "expires_at": c.now.Add(time.Hour)})
				if err := c.orders(context.Background(), m); err != nil {
					t.Errorf("concurrent reserve: %v", err)
				}
			})
		}
		wg.Wait()
		c.wantCounts(t, bookID, 10, 4)
		if got := c.replies(t); len(got) != 8 {
			t.Errorf("%d replies to 8 deliveries, want 8", len(got))
		}
	})
}

func TestReleaseBeforeReserveLeavesATombstone(t *testing.T) {
	forEachEngine(t, func(t *testing.T, c *consumers) {
		bookID := c.stock(t, 10)
		orderID := id.New()
		c.command(t, inventory.CommandRelease, orderID)
		c.command(t, inventory.CommandReserve, orderID, bookID)
		c.command(t, inventory.CommandRelease, orderID)
		c.wantCounts(t, bookID, 10, 0)
		c.wantReplies(t,
			`inventory.released {"order_id":"`+orderID+`","reason":"released"}`,
			`inventory.rejected {"order_id":"`+orderID+`","reason":"released"}`,
			`inventory.released {"order_id":"`+orderID+`","reason":"released"}`)

		// A release frees what a reserve held, once.
		held := id.New()
		c.command(t, inventory.CommandReserve, held, bookID)
		c.command(t, inventory.CommandRelease, held)
		c.command(t, inventory.CommandRelease, held)
		c.command(t, inventory.CommandReserve, held, bookID)
		c.command(t, inventory.CommandCommit, held)
		c.wantCounts(t, bookID, 10, 0)
		c.wantReplies(t, "inventory.reserved", "inventory.released", "inventory.released",
			`inventory.rejected {"order_id":"`+held+`","reason":"released"}`,
			`inventory.commit_failed {"order_id":"`+held+`","reason":"released"}`)
		if n := c.metrics.get("released"); n != 2 {
			t.Errorf("counted %d released, want 2 (the tombstone and the release)", n)
		}
	})
}

func TestCommitSellsOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, c *consumers) {
		a, b := c.stock(t, 10), c.stock(t, 3)
		orderID := id.New()
		c.command(t, inventory.CommandReserve, orderID, a, b)
		c.command(t, inventory.CommandCommit, orderID)
		c.command(t, inventory.CommandCommit, orderID)
		c.wantCounts(t, a, 8, 0)
		c.wantCounts(t, b, 1, 0)
		c.wantReplies(t, "inventory.reserved", `inventory.committed {"order_id":"`+orderID+`"}`, "inventory.committed")
		unknown := id.New()
		c.command(t, inventory.CommandCommit, unknown)
		c.wantReplies(t, `inventory.commit_failed {"order_id":"`+unknown+`","reason":"unknown_order"}`)
	})
}

// TestCommitAfterExpiry: a reservation past its expiry is freed by the sweep (with
// a fixed clock); its commit takes the copies again when they are there, else
// fails, and fails again when they are back: the order has given up on it.
func TestCommitAfterExpiry(t *testing.T) {
	forEachEngine(t, func(t *testing.T, c *consumers) {
		bookID := c.stock(t, 3)
		lucky, unlucky, rival := id.New(), id.New(), id.New()
		c.command(t, inventory.CommandReserve, lucky, bookID)
		c.now = c.now.Add(15 * time.Minute) // the expiry itself: due
		if n, err := c.svc.Sweep(context.Background()); err != nil || n != 1 {
			t.Fatalf("sweep: freed %d, %v; want 1", n, err)
		}
		c.wantCounts(t, bookID, 3, 0)
		c.command(t, inventory.CommandRelease, lucky) // a late release: answered, changes nothing
		c.command(t, inventory.CommandCommit, lucky)
		c.wantCounts(t, bookID, 1, 0)
		c.wantReplies(t, "inventory.reserved",
			`inventory.released {"order_id":"`+lucky+`","reason":"expired"}`,
			`inventory.released {"order_id":"`+lucky+`","reason":"expired"}`,
			`inventory.committed {"order_id":"`+lucky+`"}`)

		c.now = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
		c.command(t, inventory.CommandReserve, unlucky, bookID) // 2 copies: the last 1 is short
		c.wantReplies(t, `inventory.rejected {"order_id":"`+unlucky+`","reason":"out_of_stock","book_id":"`+bookID+`"}`)

		// Restock the sale, reserve again, let it expire, and take the copies meanwhile.
		c.command(t, inventory.CommandRestock, lucky)
		c.wantCounts(t, bookID, 3, 0)
		order := id.New()
		c.command(t, inventory.CommandReserve, order, bookID)
		c.now = c.now.Add(time.Hour)
		if n, err := c.svc.Sweep(context.Background()); err != nil || n != 1 {
			t.Fatalf("sweep: freed %d, %v; want 1", n, err)
		}
		c.command(t, inventory.CommandReserve, rival, bookID)
		c.command(t, inventory.CommandCommit, order)
		c.wantCounts(t, bookID, 3, 2)
		c.command(t, inventory.CommandRelease, rival)
		c.command(t, inventory.CommandCommit, order)
		c.wantCounts(t, bookID, 3, 0)
		c.wantReplies(t, "inventory.restocked", "inventory.reserved", "inventory.released", "inventory.reserved",
			`inventory.commit_failed {"order_id":"`+order+`","reason":"expired"}`, "inventory.released",
			`inventory.commit_failed {"order_id":"`+order+`","reason":"expired"}`)
		if n := c.metrics.get("expired"); n != 2 {
			t.Errorf("counted %d expired, want 2", n)
		}
		if n := c.metrics.get("commit_failed"); n != 1 {
			t.Errorf("counted %d commit_failed, want 1", n)
		}
	})
}

func TestRestockIsIdempotent(t *testing.T) {
	forEachEngine(t, func(t *testing.T, c *consumers) {
		bookID := c.stock(t, 5)
		orderID := id.New()
		c.command(t, inventory.CommandReserve, orderID, bookID)
		c.command(t, inventory.CommandCommit, orderID)
		c.wantCounts(t, bookID, 3, 0)
		m := c.command(t, inventory.CommandRestock, orderID)
		c.handle(t, m)
		c.command(t, inventory.CommandRestock, orderID)
		c.wantCounts(t, bookID, 5, 0)
		c.wantReplies(t, "inventory.reserved", "inventory.committed",
			`inventory.restocked {"order_id":"`+orderID+`"}`, `inventory.restocked {"order_id":"`+orderID+`"}`)
		if n := c.metrics.get("restocked"); n != 1 {
			t.Errorf("counted %d restocked, want 1", n)
		}

		// A release of a sale whose commit came too late for the order puts it back.
		late := id.New()
		c.command(t, inventory.CommandReserve, late, bookID)
		c.command(t, inventory.CommandCommit, late)
		c.command(t, inventory.CommandRelease, late)
		c.command(t, inventory.CommandRestock, late)
		c.wantCounts(t, bookID, 5, 0)
	})
}

func TestDeletedBooksAreNotForSale(t *testing.T) {
	forEachEngine(t, func(t *testing.T, c *consumers) {
		bookID := c.stock(t, 5)
		held := id.New()
		c.command(t, inventory.CommandReserve, held, bookID)
		del := message(events.EventBookDeleted, map[string]string{"id": bookID})
		for range 2 {
			if err := c.books(context.Background(), del); err != nil {
				t.Fatal(err)
			}
		}
		orderID := id.New()
		c.command(t, inventory.CommandReserve, orderID, bookID)
		c.command(t, inventory.CommandCommit, held) // a sale agreed before the delete stands
		c.wantReplies(t, "inventory.reserved",
			`inventory.rejected {"order_id":"`+orderID+`","reason":"not_for_sale","book_id":"`+bookID+`"}`, "inventory.committed")
		if _, err := c.svc.Get(context.Background(), bookID); err != inventory.ErrNotFound {
			t.Errorf("get of a deleted book: got %v, want ErrNotFound", err)
		}
		bad := message(events.EventBookDeleted, map[string]string{"id": "7"})
		if err := c.books(context.Background(), bad); err == nil {
			t.Error("a book.deleted with no book id: got nil, want an error for the broker's retries")
		}
	})
}

func TestMalformedCommandsAreRefused(t *testing.T) {
	c := newConsumers(t, sqldbtest.Open(t, "sqlite:"+t.TempDir()+"/inventory.db", sqlstore.Migrations))
	bookID := id.New()
	for name, data := range map[string]any{
		"no order id":       map[string]any{"items": []any{map[string]any{"book_id": bookID, "quantity": 1}}, "expires_at": c.now},
		"no items":          map[string]any{"order_id": id.New(), "items": []any{}, "expires_at": c.now},
		"zero quantity":     map[string]any{"order_id": id.New(), "items": []any{map[string]any{"book_id": bookID, "quantity": 0}}, "expires_at": c.now},
		"book not an id":    map[string]any{"order_id": id.New(), "items": []any{map[string]any{"book_id": "x", "quantity": 1}}, "expires_at": c.now},
		"no expiry":         map[string]any{"order_id": id.New(), "items": []any{map[string]any{"book_id": bookID, "quantity": 1}}},
		"data not a object": "x",
	} {
		if err := c.orders(context.Background(), message(inventory.CommandReserve, data)); err == nil {
			t.Errorf("%s: got nil, want an error for the broker's retries", name)
		}
	}
	if got := c.replies(t); len(got) != 0 {
		t.Errorf("replies to malformed commands: %q", got)
	}
}

func TestSubscriptions(t *testing.T) {
	orders := events.Orders(nil, nil, nil).Subscription("folio")
	if orders.Name != "inventory-orders" || !reflect.DeepEqual(orders.Subjects, []string{"folio.order.stock.>"}) {
		t.Errorf("orders: got %+v, want inventory-orders on folio.order.stock.>", orders)
	}
	books := events.Books(nil).Subscription("folio")
	if books.Name != "inventory-books" || !reflect.DeepEqual(books.Subjects, []string{"folio.book.deleted"}) {
		t.Errorf("books: got %+v, want inventory-books on folio.book.deleted", books)
	}
}
