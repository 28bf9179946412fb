package e2e

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"folio/internal/platform/polltest"
)

// Test cards of the payment service (docs/orders.md).
const (
	cardApproved     = "4242424242424242"
	cardDeclined     = "4000000000000002"
	cardNoFunds      = "4000000000009995"
	cardSlow         = "4000000000000119"
	cardCaptureFails = "4000000000000341"
)

// finalStates are the order states the saga ends in.
var finalStates = []string{"confirmed", "rejected", "payment_failed", "cancelled"}

// orderSaga bounds how long a test waits for an order to reach a final state: far
// above what a saga takes (well under a second on a quiet machine), below the step
// timeouts' compensations of the fault tests, which set their own bounds.
const orderSaga = 3 * time.Minute

// shop is folio up with books to order, the tokens of its demo editor and admin,
// and what the test ordered, for the invariants at its end.
type shop struct {
	t             *testing.T
	u             *upSystem
	g             string // the gateway's URL
	editor, admin string
	author        string

	mu      sync.Mutex
	initial map[string]int  // book id → the stock the editor set
	deleted map[string]bool // books the test deleted
	placed  []placedOrder
}

// placedOrder is an order the test placed, and whose token reads it.
type placedOrder struct {
	id, token string
}

func startShop(t *testing.T, opts upOptions) *shop {
	t.Helper()
	u := startFolioUpWith(t, opts)
	s := &shop{t: t, u: u, g: u.URL("gateway"), initial: map[string]int{}, deleted: map[string]bool{}}
	s.editor = u.login(u.editorEmail, u.editorPassword)
	s.admin = u.login(u.adminEmail, u.adminPassword)
	r := call(t, "POST", s.g+"/authors", map[string]any{"name": "Shop Author"}, "Authorization", "Bearer "+s.editor)
	expect(t, r, http.StatusCreated)
	s.author = r.json(t)["id"].(string)
	return s
}

// book creates a book with copies in stock at price cents (EUR), through the
// gateway as the editor.
func (s *shop) book(t *testing.T, title string, copies int, price int64) string {
	t.Helper()
	r := call(t, "POST", s.g+"/books", map[string]any{"title": title, "author_id": s.author, "genre": "fiction"},
		"Authorization", "Bearer "+s.editor)
	expect(t, r, http.StatusCreated)
	id := r.json(t)["id"].(string)
	r = call(t, "PUT", s.g+"/inventory/"+id, map[string]any{"quantity": copies, "price": map[string]any{"amount": price, "currency": "EUR"}},
		"Authorization", "Bearer "+s.editor)
	if r.status != http.StatusOK && r.status != http.StatusCreated {
		t.Fatalf("PUT /inventory/%s: %d %s", id, r.status, r.body)
	}
	s.mu.Lock()
	s.initial[id] = copies
	s.mu.Unlock()
	return id
}

// customer registers a new user and returns their token.
func (s *shop) customer(t *testing.T) string {
	t.Helper()
	email := fmt.Sprintf("buyer-%d@folio.test", time.Now().UnixNano())
	r := call(t, "POST", s.g+"/auth/register", map[string]any{"email": email, "password": "correct-horse-battery"})
	expect(t, r, http.StatusCreated)
	return s.u.login(email, "correct-horse-battery")
}

type line struct {
	book     string
	quantity int
}

// place posts an order of lines paid with card, as token, and returns its id.
func (s *shop) place(t *testing.T, token, card string, lines ...line) string {
	t.Helper()
	id, err := s.tryPlace(token, card, lines...)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// tryPlace is place for a goroutine other than the test's.
func (s *shop) tryPlace(token, card string, lines ...line) (string, error) {
	var items []map[string]any
	for _, l := range lines {
		items = append(items, map[string]any{"book_id": l.book, "quantity": l.quantity})
	}
	body, _ := json.Marshal(map[string]any{"items": items,
		"payment": map[string]any{"card": map[string]any{"number": card, "expiry": "12/39", "cvc": "123"}}})
	req, _ := http.NewRequest("POST", s.g+"/orders", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var o struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST /orders: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || o.ID == "" || o.State != "pending" {
		return "", fmt.Errorf("POST /orders: answer %+v, %v; want an id and state pending", o, err)
	}
	s.mu.Lock()
	s.placed = append(s.placed, placedOrder{id: o.ID, token: token})
	s.mu.Unlock()
	return o.ID, nil
}

// order is GET /orders/{id} as token.
func (s *shop) order(t *testing.T, token, id string) map[string]any {
	t.Helper()
	r := call(t, "GET", s.g+"/orders/"+id, nil, "Authorization", "Bearer "+token)
	expect(t, r, http.StatusOK)
	return r.json(t)
}

// final waits until the order is in a final state and returns it.
func (s *shop) final(t *testing.T, token, id string, within time.Duration) map[string]any {
	t.Helper()
	var o map[string]any
	polltest.UntilWithin(t, within, "order "+id+" reaches a final state", func() error {
		r := call(t, "GET", s.g+"/orders/"+id, nil, "Authorization", "Bearer "+token)
		if r.status != http.StatusOK {
			return fmt.Errorf("GET: %d %s", r.status, r.body)
		}
		o = r.json(t)
		if state, _ := o["state"].(string); !slices.Contains(finalStates, state) {
			return fmt.Errorf("state %s", state)
		}
		return nil
	})
	return o
}

// stock is the inventory service's stock of a book.
type stock struct{ quantity, reserved, available int }

func (s *shop) stock(t *testing.T, book string) stock {
	t.Helper()
	r := call(t, "GET", s.g+"/inventory/"+book, nil)
	expect(t, r, http.StatusOK)
	m := r.json(t)
	return stock{quantity: int(m["quantity"].(float64)), reserved: int(m["reserved"].(float64)), available: int(m["available"].(float64))}
}

// payment is the payment service's record of an order's payment (it is internal:
// read at its own port, as an admin), or nil when it has none.
func (s *shop) payment(t *testing.T, orderID string) map[string]any {
	t.Helper()
	r := call(t, "GET", s.u.URL("payment")+"/payments/"+orderID, nil, "Authorization", "Bearer "+s.admin)
	if r.status == http.StatusNotFound {
		return nil
	}
	expect(t, r, http.StatusOK)
	return r.json(t)
}

func amount(m map[string]any, field string) int64 {
	switch v := m[field].(type) {
	case float64:
		return int64(v)
	case map[string]any:
		return int64(v["amount"].(float64))
	}
	return 0
}

// checkInvariants waits until every order the test placed is final, then checks
// across the three services: each book's stock plus the quantities of its
// confirmed orders is the stock the editor set, nothing stays reserved, and the
// captures less the refunds are the totals of the confirmed orders, with no
// payment left authorised or captured for an order that failed.
func (s *shop) checkInvariants(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	placed := slices.Clone(s.placed)
	initial, deleted := maps.Clone(s.initial), maps.Clone(s.deleted)
	s.mu.Unlock()
	sold := map[string]int{}
	var confirmedTotals, paid int64
	for _, p := range placed {
		o := s.final(t, p.token, p.id, orderSaga)
		state := o["state"].(string)
		pay := s.payment(t, p.id)
		if state == "confirmed" {
			confirmedTotals += amount(o, "total")
			for _, it := range o["items"].([]any) {
				item := it.(map[string]any)
				sold[item["book_id"].(string)] += int(item["quantity"].(float64))
			}
			if pay == nil || pay["state"] != "captured" {
				t.Errorf("order %s is confirmed, its payment %v", p.id, pay)
			}
		} else if pay != nil && (pay["state"] == "authorised" || pay["state"] == "captured") {
			t.Errorf("order %s is %s, its payment %v", p.id, state, pay)
		}
		if pay != nil {
			paid += amount(pay, "captured") - amount(pay, "refunded")
		}
	}
	for book, set := range initial {
		if deleted[book] {
			continue // not shown by GET /inventory; checkLedgers reads its row
		}
		st := s.stock(t, book)
		if st.quantity+sold[book] != set || st.reserved != 0 || st.available != st.quantity {
			t.Errorf("book %s: stock %+v and %d sold, want stock + sold = %d and nothing reserved", book, st, sold[book], set)
		}
	}
	if paid != confirmedTotals {
		t.Errorf("captures - refunds = %d, want the confirmed orders' totals %d", paid, confirmedTotals)
	}
	s.checkLedgers(t)
}

// TestOrders runs the order saga through the gateway on folio up: a confirmed
// order, a declined card, stock too short, a cancel after payment, and 50 orders
// at once for 10 copies, with the invariants across the three services checked at
// the end.
func TestOrders(t *testing.T) {
	// Parallel with the other order tests: most of their time is spent waiting.
	t.Parallel()
	s := startShop(t, upOptions{})
	buyer := s.customer(t)

	t.Run("confirmed", func(t *testing.T) {
		book := s.book(t, "Confirmed", 5, 1250)
		id := s.place(t, buyer, cardApproved, line{book, 2})
		o := s.final(t, buyer, id, orderSaga)
		if o["state"] != "confirmed" || amount(o, "total") != 2500 {
			t.Fatalf("order %v, want confirmed with total 2500", o)
		}
		if st := s.stock(t, book); st.quantity != 3 || st.reserved != 0 {
			t.Errorf("stock %+v, want 3 on hand and none reserved", st)
		}
		if p := s.payment(t, id); p == nil || p["state"] != "captured" || amount(p, "captured") != 2500 {
			t.Errorf("payment %v, want 2500 captured", p)
		}
	})

	for _, c := range []struct{ card, reason string }{{cardDeclined, "card_declined"}, {cardNoFunds, "insufficient_funds"}, {cardCaptureFails, "capture_declined"}} {
		t.Run("payment fails: "+c.reason, func(t *testing.T) {
			book := s.book(t, "Declined "+c.reason, 4, 800)
			id := s.place(t, buyer, c.card, line{book, 1})
			o := s.final(t, buyer, id, orderSaga)
			if o["state"] != "payment_failed" || o["reason"] != c.reason {
				t.Fatalf("order %v, want payment_failed for %s", o, c.reason)
			}
			if st := s.stock(t, book); st.quantity != 4 || st.reserved != 0 {
				t.Errorf("stock %+v, want the reservation released: 4 on hand, none reserved", st)
			}
			if p := s.payment(t, id); p != nil && amount(p, "captured") != amount(p, "refunded") {
				t.Errorf("payment %v: money kept for a failed order", p)
			}
		})
	}

	t.Run("out of stock", func(t *testing.T) {
		book := s.book(t, "Scarce", 1, 900)
		id := s.place(t, buyer, cardApproved, line{book, 2})
		o := s.final(t, buyer, id, orderSaga)
		if o["state"] != "rejected" || o["reason"] != "out_of_stock" {
			t.Fatalf("order %v, want rejected out_of_stock", o)
		}
		if p := s.payment(t, id); p != nil {
			t.Errorf("payment %v for a rejected order, want none", p)
		}
	})

	t.Run("a deleted book is not for sale", func(t *testing.T) {
		book := s.book(t, "Withdrawn", 3, 900)
		expect(t, call(t, "DELETE", s.g+"/books/"+book, nil, "Authorization", "Bearer "+s.editor), http.StatusNoContent)
		// The inventory service learns of it from the book.deleted event.
		polltest.Until(t, "the inventory service hears of the delete", func() error {
			if r := call(t, "GET", s.g+"/inventory/"+book, nil); r.status != http.StatusNotFound {
				return fmt.Errorf("GET /inventory/%s: %d", book, r.status)
			}
			return nil
		})
		id := s.place(t, buyer, cardApproved, line{book, 1})
		if o := s.final(t, buyer, id, orderSaga); o["state"] != "rejected" || o["reason"] != "not_for_sale" {
			t.Fatalf("order %v, want rejected not_for_sale", o)
		}
		s.mu.Lock()
		s.deleted[book] = true // GET /inventory no longer shows it; its database row still counts
		s.mu.Unlock()
	})

	t.Run("cancel after payment", func(t *testing.T) {
		book := s.book(t, "Regretted", 3, 1500)
		id := s.place(t, buyer, cardApproved, line{book, 1})
		if o := s.final(t, buyer, id, orderSaga); o["state"] != "confirmed" {
			t.Fatalf("order %v, want confirmed", o)
		}
		r := call(t, "POST", s.g+"/orders/"+id+"/cancel", nil, "Authorization", "Bearer "+buyer)
		expect(t, r, http.StatusAccepted)
		o := s.final(t, buyer, id, orderSaga)
		if o["state"] != "cancelled" {
			t.Fatalf("order %v, want cancelled", o)
		}
		if p := s.payment(t, id); p == nil || amount(p, "refunded") != 1500 {
			t.Errorf("payment %v, want 1500 refunded", p)
		}
		if st := s.stock(t, book); st.quantity != 3 {
			t.Errorf("stock %+v, want the 3 copies back", st)
		}
		// Cancelled is final: a second cancel is refused.
		expect(t, call(t, "POST", s.g+"/orders/"+id+"/cancel", nil, "Authorization", "Bearer "+buyer), http.StatusConflict)
	})

	t.Run("orders are their owner's", func(t *testing.T) {
		book := s.book(t, "Private", 2, 700)
		id := s.place(t, buyer, cardApproved, line{book, 1})
		other := s.customer(t)
		expect(t, call(t, "GET", s.g+"/orders/"+id, nil, "Authorization", "Bearer "+other), http.StatusNotFound)
		expect(t, call(t, "POST", s.g+"/orders/"+id+"/cancel", nil, "Authorization", "Bearer "+other), http.StatusNotFound)
		expect(t, call(t, "GET", s.g+"/orders/"+id, nil), http.StatusUnauthorized)
		r := call(t, "GET", s.g+"/orders", nil, "Authorization", "Bearer "+other)
		expect(t, r, http.StatusOK)
		if items := r.json(t)["items"].([]any); len(items) != 0 {
			t.Errorf("another user lists %d orders, want none", len(items))
		}
	})

	t.Run("no card number at rest", func(t *testing.T) { testNoCardAtRest(t, s, buyer) })

	t.Run("slow card", func(t *testing.T) {
		book := s.book(t, "Slow", 2, 600)
		id := s.place(t, buyer, cardSlow, line{book, 1})
		if o := s.final(t, buyer, id, orderSaga); o["state"] != "confirmed" {
			t.Fatalf("order %v, want confirmed once the slow answer came", o)
		}
	})

	t.Run("duplicate and reordered deliveries", func(t *testing.T) { testDuplicatesAndReordering(t, s, buyer) })

	t.Run("50 orders for 10 copies", func(t *testing.T) {
		book := s.book(t, "Bestseller", 10, 1000)
		buyers := make([]string, 5)
		for i := range buyers {
			buyers[i] = s.customer(t)
		}
		ids := make([]string, 50)
		errs := make([]error, 50)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Go(func() { ids[i], errs[i] = s.tryPlace(buyers[i%5], cardApproved, line{book, 1}) })
		}
		wg.Wait()
		states := map[string]int{}
		for i, id := range ids {
			if errs[i] != nil {
				t.Fatalf("order %d: %v", i, errs[i])
			}
			states[s.final(t, buyers[i%5], id, orderSaga)["state"].(string)]++
		}
		if states["confirmed"] != 10 || states["rejected"] != 40 {
			t.Errorf("states %v, want 10 confirmed and 40 rejected", states)
		}
		if st := s.stock(t, book); st.quantity != 0 || st.reserved != 0 {
			t.Errorf("stock %+v, want 0 on hand and none reserved", st)
		}
		captured := 0
		for _, id := range ids {
			if p := s.payment(t, id); p != nil && amount(p, "captured") > 0 {
				captured++
			}
		}
		if captured != 10 {
			t.Errorf("%d payments captured, want 10", captured)
		}
	})

	s.checkInvariants(t)
}

// checkLedgers checks the invariants on the three databases themselves (the SQLite
// files in folio up's data directory, read while the services run), over every
// order and payment folio up has seen, once every order the test placed is final:
// captures less refunds in payment's ledger are the totals of order's confirmed
// orders; every book's stock in inventory plus its confirmed quantities is what
// the editor set, with nothing reserved; no payment is left authorised or captured
// for an order that is not confirmed.
func (s *shop) checkLedgers(t *testing.T) {
	t.Helper()
	open := func(name string) *sql.DB {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(s.u.dataDir, name)+"?mode=ro&_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	orders, payments, inventory := open("order.db"), open("payment.db"), open("inventory.db")
	scalar := func(db *sql.DB, query string) int64 {
		t.Helper()
		var n sql.NullInt64
		if err := db.QueryRow(query).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n.Int64
	}
	confirmed := scalar(orders, `SELECT SUM(total_amount) FROM orders WHERE state = 'confirmed'`)
	captured := scalar(payments, `SELECT SUM(amount) FROM payment_entries WHERE kind = 'capture'`)
	refunded := scalar(payments, `SELECT SUM(amount) FROM payment_entries WHERE kind = 'refund'`)
	t.Logf("ledgers: %d captured - %d refunded = %d confirmed", captured, refunded, confirmed)
	if captured-refunded != confirmed || confirmed == 0 {
		t.Errorf("payment.db: captured %d - refunded %d = %d; order.db: confirmed totals %d; want equal and not 0",
			captured, refunded, captured-refunded, confirmed)
	}
	if n := scalar(orders, `SELECT COUNT(*) FROM orders WHERE state NOT IN ('confirmed', 'rejected', 'payment_failed', 'cancelled')`); n != 0 {
		t.Errorf("order.db: %d orders not in a final state", n)
	}

	sold := map[string]int{}
	rows, err := orders.Query(`SELECT i.book_id, SUM(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id
		WHERE o.state = 'confirmed' GROUP BY i.book_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var book string
		var n int
		if err := rows.Scan(&book, &n); err != nil {
			t.Fatal(err)
		}
		sold[book] = n
	}
	rows.Close()
	rows, err = inventory.Query(`SELECT book_id, quantity, reserved FROM stock`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var book string
		var quantity, reserved int
		if err := rows.Scan(&book, &quantity, &reserved); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		initial, ok := s.initial[book]
		s.mu.Unlock()
		if !ok || quantity+sold[book] != initial || reserved != 0 {
			t.Errorf("inventory.db: book %s has %d, %d reserved, and %d sold; want stock + sold = %d (set by the test: %t), none reserved",
				book, quantity, reserved, sold[book], initial, ok)
		}
	}
	rows.Close()
	if n := scalar(inventory, `SELECT COUNT(*) FROM reservations WHERE state = 'reserved'`); n != 0 {
		t.Errorf("inventory.db: %d reservations still held", n)
	}

	final := map[string]string{}
	rows, err = orders.Query(`SELECT id, state FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, state string
		if err := rows.Scan(&id, &state); err != nil {
			t.Fatal(err)
		}
		final[id] = state
	}
	rows.Close()
	rows, err = payments.Query(`SELECT order_id, state FROM payments WHERE state IN ('authorised', 'captured')`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, state string
		if err := rows.Scan(&id, &state); err != nil {
			t.Fatal(err)
		}
		if final[id] != "confirmed" {
			t.Errorf("payment.db: the payment of order %s is %s, the order %q", id, state, final[id])
		}
	}
	rows.Close()
}

// testNoCardAtRest places an order with an Idempotency-Key and a card number used
// nowhere else, then looks for the number in every file of the order and payment
// services' databases, in clear and in the idempotency key's request digest: a
// plain SHA-256 of a request whose only unknown is a card number can be reversed
// by trying every number.
func testNoCardAtRest(t *testing.T, s *shop, buyer string) {
	const card = "5105105105105100" // a valid Mastercard test number no other test uses
	book := s.book(t, "At rest", 2, 300)
	body := fmt.Sprintf(`{"items":[{"book_id":%q,"quantity":1}],"payment":{"card":{"number":%q,"expiry":"12/39","cvc":"123"}}}`, book, card)
	r := call(t, "POST", s.g+"/orders", body, "Authorization", "Bearer "+buyer, "Idempotency-Key", "at-rest")
	expect(t, r, http.StatusAccepted)
	id := r.json(t)["id"].(string)
	s.mu.Lock()
	s.placed = append(s.placed, placedOrder{id: id, token: buyer})
	s.mu.Unlock()
	if o := s.final(t, buyer, id, orderSaga); o["state"] != "confirmed" {
		t.Fatalf("order %v, want confirmed", o)
	}
	if p := s.payment(t, id); p == nil || p["card"].(map[string]any)["last4"] != "5100" {
		t.Errorf("payment %v, want the card's last four digits kept", p)
	}
	for _, name := range []string{"order.db", "order.db-wal", "payment.db", "payment.db-wal"} {
		b, err := os.ReadFile(filepath.Join(s.u.dataDir, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(card)) {
			t.Errorf("%s holds the card number in clear", name)
		}
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.u.dataDir, "order.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var digest string
	if err := db.QueryRow(`SELECT request_hash FROM idempotency_keys WHERE idem_key = 'at-rest'`).Scan(&digest); err != nil {
		t.Fatalf("the idempotency key's record: %v", err)
	}
	plain := sha256.Sum256([]byte("POST /orders\n" + body))
	if digest == hex.EncodeToString(plain[:]) {
		t.Error("the idempotency key keeps a plain SHA-256 of the request: the card number can be found by trying every one")
	}
}
