package inventory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"folio/internal/inventory"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
)

// memStore keeps items in memory; before its next Update it may let another
// writer move the item on, as a concurrent request or reserve would.
type memStore struct {
	items     map[string]inventory.Item
	deleted   map[string]bool
	interfere func(it *inventory.Item)
	due       []inventory.Reservation
}

func newMemStore() *memStore {
	return &memStore{items: map[string]inventory.Item{}, deleted: map[string]bool{}}
}

func (m *memStore) Get(_ context.Context, bookID string) (inventory.Item, error) {
	if m.deleted[bookID] {
		return inventory.Item{}, inventory.ErrDeleted
	}
	it, ok := m.items[bookID]
	if !ok {
		return inventory.Item{}, inventory.ErrNotFound
	}
	return it, nil
}

func (m *memStore) List(_ context.Context, page paging.Request) ([]inventory.Item, error) {
	var out []inventory.Item
	for _, it := range m.items {
		if it.BookID > page.After {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b inventory.Item) int { return strings.Compare(a.BookID, b.BookID) })
	return out[:min(len(out), page.Fetch())], nil
}

func (m *memStore) Create(_ context.Context, it inventory.Item) error {
	if _, ok := m.items[it.BookID]; ok || m.deleted[it.BookID] {
		return inventory.ErrStale
	}
	m.items[it.BookID] = it
	return nil
}

func (m *memStore) Update(_ context.Context, it inventory.Item) (inventory.Item, error) {
	cur := m.items[it.BookID]
	if m.interfere != nil {
		m.interfere(&cur)
		m.items[it.BookID] = cur
		m.interfere = nil
	}
	if cur.Version != it.Version-1 {
		return inventory.Item{}, inventory.ErrStale
	}
	if cur.Reserved > it.Quantity {
		return inventory.Item{}, inventory.BelowReserved(cur.Reserved)
	}
	it.Reserved, it.Available = cur.Reserved, it.Quantity-cur.Reserved
	m.items[it.BookID] = it
	return it, nil
}

func (m *memStore) ExpireDue(_ context.Context, now time.Time, limit int) ([]inventory.Reservation, error) {
	var freed []inventory.Reservation
	for len(m.due) > 0 && len(freed) < limit && !m.due[0].ExpiresAt.After(now) {
		freed, m.due = append(freed, m.due[0]), m.due[1:]
	}
	return freed, nil
}

type counter map[string]int

func (c counter) Counted(r string) { c[r]++ }

func input(amount int64, currency string, quantity int64) inventory.Input {
	return inventory.Input{Price: &inventory.PriceInput{Amount: &amount, Currency: &currency}, Quantity: &quantity}
}

// ifMatch is the precondition of an If-Match naming version.
func ifMatch(version int) inventory.Precondition {
	return inventory.Precondition{Named: true, Check: func(v int) error {
		if v != version {
			return fault.New(fault.PreconditionFailed, "stale")
		}
		return nil
	}}
}

func TestPutCreatesThenNeedsAVersion(t *testing.T) {
	ctx := context.Background()
	m := newMemStore()
	svc := inventory.NewService(m, nil, nil)
	bookID := id.New()
	it, created, err := svc.Put(ctx, bookID, input(1299, "EUR", 4), inventory.Precondition{})
	if err != nil || !created || it.Version != 1 || it.Available != 4 {
		t.Fatalf("create: got %+v, %v, %v", it, created, err)
	}
	if _, _, err := svc.Put(ctx, bookID, input(1299, "EUR", 5), inventory.Precondition{}); !errors.Is(err, inventory.ErrPreconditionRequired) {
		t.Errorf("change without If-Match: got %v, want ErrPreconditionRequired", err)
	}
	if _, _, err := svc.Put(ctx, bookID, input(1299, "EUR", 5), inventory.Precondition{Absent: true}); fault.KindOf(err) != fault.PreconditionFailed {
		t.Errorf("If-None-Match * on existing stock: got %v, want PreconditionFailed", err)
	}
	if _, _, err := svc.Put(ctx, bookID, input(1299, "EUR", 5), ifMatch(2)); fault.KindOf(err) != fault.PreconditionFailed {
		t.Errorf("stale If-Match: got %v, want PreconditionFailed", err)
	}
	if _, _, err := svc.Put(ctx, id.New(), input(1299, "EUR", 5), ifMatch(1)); fault.KindOf(err) != fault.PreconditionFailed {
		t.Errorf("If-Match on no stock: got %v, want PreconditionFailed", err)
	}
	it, created, err = svc.Put(ctx, bookID, input(999, "GBP", 5), ifMatch(1))
	if err != nil || created || it.Version != 2 || it.Price != (inventory.Money{Amount: 999, Currency: "GBP"}) {
		t.Errorf("change: got %+v, %v, %v", it, created, err)
	}
	if _, _, err := svc.Put(ctx, "nope", input(1, "EUR", 1), inventory.Precondition{}); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("not a book id: got %v, want ErrNotFound", err)
	}
	m.deleted[bookID] = true
	if _, _, err := svc.Put(ctx, bookID, input(1, "EUR", 1), ifMatch(2)); fault.KindOf(err) != fault.Conflict {
		t.Errorf("deleted book: got %v, want a Conflict", err)
	}
	if _, err := svc.Get(ctx, bookID); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("get of a deleted book: got %v, want ErrNotFound", err)
	}
}

// TestPutMeetsConcurrentWriters: an editor's change that another editor's overtook
// is tried again against it (and then checked by its If-Match); a reserve that
// held copies meanwhile makes a quantity below them a Conflict.
func TestPutMeetsConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	m := newMemStore()
	svc := inventory.NewService(m, nil, nil)
	bookID := id.New()
	if _, _, err := svc.Put(ctx, bookID, input(100, "EUR", 10), inventory.Precondition{}); err != nil {
		t.Fatal(err)
	}
	m.interfere = func(it *inventory.Item) { it.Version++ }
	if _, _, err := svc.Put(ctx, bookID, input(100, "EUR", 9), ifMatch(1)); fault.KindOf(err) != fault.PreconditionFailed {
		t.Errorf("overtaken by another editor: got %v, want PreconditionFailed on the retry", err)
	}
	m.interfere = func(it *inventory.Item) { it.Reserved = 8 }
	if _, _, err := svc.Put(ctx, bookID, input(100, "EUR", 5), ifMatch(2)); fault.KindOf(err) != fault.Conflict {
		t.Errorf("copies held meanwhile: got %v, want a Conflict", err)
	}
	if _, _, err := svc.Put(ctx, bookID, input(100, "EUR", 7), ifMatch(2)); fault.KindOf(err) != fault.Conflict {
		t.Errorf("below the copies held: got %v, want a Conflict", err)
	}
}

func TestPutRules(t *testing.T) {
	svc := inventory.NewService(newMemStore(), nil, nil)
	amount, currency, quantity := int64(1), "EUR", int64(1)
	for _, tc := range []struct {
		name   string
		in     inventory.Input
		fields []string
	}{
		{"nothing", inventory.Input{}, []string{"price", "quantity"}},
		{"empty price", inventory.Input{Price: &inventory.PriceInput{}, Quantity: &quantity}, []string{"price.amount", "price.currency"}},
		{"negative price", input(-1, "EUR", 1), []string{"price.amount"}},
		{"price too high", input(inventory.MaxPrice+1, "EUR", 1), []string{"price.amount"}},
		{"currency lower case", input(1, "eur", 1), []string{"price.currency"}},
		{"currency digits", input(1, "E1R", 1), []string{"price.currency"}},
		{"negative quantity", input(1, "EUR", -1), []string{"quantity"}},
		{"quantity too high", input(1, "EUR", inventory.MaxQuantity+1), []string{"quantity"}},
		{"no quantity", inventory.Input{Price: &inventory.PriceInput{Amount: &amount, Currency: &currency}}, []string{"quantity"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := svc.Put(context.Background(), id.New(), tc.in, inventory.Precondition{})
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.Invalid {
				t.Fatalf("got %v, want Invalid", err)
			}
			var got []string
			for _, f := range fe.Fields {
				got = append(got, f.Field)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.fields) {
				t.Errorf("fields %v, want %v", got, tc.fields)
			}
		})
	}
	for _, ok := range []inventory.Input{input(0, "EUR", 0), input(inventory.MaxPrice, "JPY", inventory.MaxQuantity)} {
		if _, _, err := svc.Put(context.Background(), id.New(), ok, inventory.Precondition{}); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

func TestParseCommand(t *testing.T) {
	a, b, orderID := id.New(), id.New(), id.New()
	if a > b {
		a, b = b, a
	}
	expires := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	data := func(v map[string]any) []byte { raw, _ := json.Marshal(v); return raw }
	c, err := inventory.ParseCommand(inventory.CommandReserve, data(map[string]any{"order_id": orderID, "expires_at": expires,
		"items": []map[string]any{{"book_id": b, "quantity": 1}, {"book_id": a, "quantity": 2}, {"book_id": b, "quantity": 3}}}))
	if err != nil {
		t.Fatal(err)
	}
	want := []inventory.Line{{BookID: a, Quantity: 2}, {BookID: b, Quantity: 4}}
	if c.OrderID != orderID || !c.ExpiresAt.Equal(expires) || !slices.Equal(c.Items, want) {
		t.Errorf("got %+v, want lines %v by book id, a book named twice added up", c, want)
	}
	if c, err := inventory.ParseCommand(inventory.CommandCommit, data(map[string]any{"order_id": orderID})); err != nil || c.OrderID != orderID {
		t.Errorf("commit: got %+v, %v", c, err)
	}
	many := make([]map[string]any, inventory.MaxOrderLines+1)
	for i := range many {
		many[i] = map[string]any{"book_id": id.New(), "quantity": 1}
	}
	for name, raw := range map[string][]byte{
		"release without order":  data(map[string]any{}),
		"order not an id":        data(map[string]any{"order_id": "7"}),
		"too many lines":         data(map[string]any{"order_id": orderID, "expires_at": expires, "items": many}),
		"sum over the maximum":   data(map[string]any{"order_id": orderID, "expires_at": expires, "items": []map[string]any{{"book_id": a, "quantity": inventory.MaxQuantity}, {"book_id": a, "quantity": 1}}}),
		"negative quantity":      data(map[string]any{"order_id": orderID, "expires_at": expires, "items": []map[string]any{{"book_id": a, "quantity": -1}}}),
		"fractional quantity":    []byte(`{"order_id":"` + orderID + `","expires_at":"2030-01-01T00:00:00Z","items":[{"book_id":"` + a + `","quantity":1.5}]}`),
		"expiry not a timestamp": []byte(`{"order_id":"` + orderID + `","expires_at":"soon","items":[{"book_id":"` + a + `","quantity":1}]}`),
	} {
		typ := inventory.CommandReserve
		if strings.HasPrefix(name, "release") || strings.HasPrefix(name, "order") {
			typ = inventory.CommandRelease
		}
		if _, err := inventory.ParseCommand(typ, raw); err == nil {
			t.Errorf("%s: got nil, want an error", name)
		}
	}
	if _, err := inventory.ParseCommand("order.payment.capture", data(map[string]any{"order_id": orderID})); err == nil {
		t.Error("a payment command: got nil, want an error")
	}
}

func TestPriced(t *testing.T) {
	lines := []inventory.Line{{BookID: "a", Quantity: 2}, {BookID: "b", Quantity: 3}}
	priced, total, reason := inventory.Priced(lines, []inventory.Money{{Amount: 250, Currency: "EUR"}, {Amount: 100, Currency: "EUR"}})
	if reason != "" || total != (inventory.Money{Amount: 800, Currency: "EUR"}) || priced[1].UnitPrice.Amount != 100 {
		t.Errorf("got %+v, total %+v, %q; want 800 EUR", priced, total, reason)
	}
	if _, _, reason := inventory.Priced(lines, []inventory.Money{{Amount: 250, Currency: "EUR"}, {Amount: 100, Currency: "USD"}}); reason != inventory.ReasonMixedCurrencies {
		t.Errorf("two currencies: got %q, want %s", reason, inventory.ReasonMixedCurrencies)
	}
}

// TestSweepCountsEachExpiry: with a fixed clock, the sweep frees what is due in
// batches until none is left, and counts each.
func TestSweepCountsEachExpiry(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	m := newMemStore()
	for i := range 250 {
		m.due = append(m.due, inventory.Reservation{OrderID: id.New(), ExpiresAt: now.Add(time.Duration(i-200) * time.Second)})
	}
	c := counter{}
	svc := inventory.NewService(m, c, func() time.Time { return now })
	n, err := svc.Sweep(context.Background())
	if err != nil || n != 201 || c["expired"] != 201 || len(m.due) != 49 {
		t.Errorf("swept %d (%v), counted %d, %d left; want 201, 201, 49", n, err, c["expired"], len(m.due))
	}
}
