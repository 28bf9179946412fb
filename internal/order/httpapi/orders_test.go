package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"folio/internal/order"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest/resttest"
)

func TestPlaceAnswersPendingAndSealsTheCard(t *testing.T) {
	s := newServer(t)
	rec := s.do("POST", "/orders", validBody)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("got %d %s, want 202", rec.Code, rec.Body)
	}
	o := resttest.Decode[order.Order](t, rec)
	if loc := rec.Header().Get("Location"); loc != "/orders/"+o.ID {
		t.Errorf("Location %q, want /orders/%s", loc, o.ID)
	}
	if o.State != order.Pending || o.UserID != "u1" || len(o.Items) != 2 || o.Card != (order.Card{Brand: "visa", Last4: "4242"}) || o.Total != nil {
		t.Errorf("placed %s", rec.Body)
	}
	for _, secret := range []string{"4242424242424242", "4242 4242 4242 4242", `"cvc"`, "sealed"} {
		if strings.Contains(rec.Body.String(), secret) {
			t.Errorf("the answer shows %q: %s", secret, rec.Body)
		}
	}
	// The card is kept only sealed, to the payment service's key.
	stored, err := s.store.Get(t.Context(), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s.payment.Open(stored.Saga.SealedCard)
	if err != nil {
		t.Fatalf("the payment service cannot open the sealed card: %v", err)
	}
	if want := `{"number":"4242424242424242","expiry":"12/99","cvc":"123"}`; string(plain) != want {
		t.Errorf("sealed %s, want %s", plain, want)
	}
	events, _ := outboxtest.Events(t, s.db, 0)
	if len(events) != 2 || events[0].Envelope.Type != "order.pending" || events[1].Envelope.Type != "order.stock.reserve" {
		t.Errorf("outbox: %+v", events)
	}
	for _, e := range events {
		if strings.Contains(string(e.Body), "x25519:") || strings.Contains(string(e.Body), "4242424242424242") {
			t.Errorf("event %s carries card data: %s", e.Envelope.Type, e.Body)
		}
	}
}

func TestPlaceRefusesBadOrders(t *testing.T) {
	s := newServer(t)
	book := id.New()
	item := func(bookID string, q string) string { return `{"book_id":"` + bookID + `","quantity":` + q + `}` }
	order := func(items, card string) string {
		return `{"items":[` + items + `],"payment":{"card":` + card + `}}`
	}
	good := `{"number":"4242424242424242","expiry":"12/99","cvc":"123"}`
	tests := []struct {
		name, body string
		status     int
		typ        string
		fields     []string
	}{
		{"no items", order("", good), 422, problem.TypeValidation, []string{"items"}},
		{"a book twice", order(item(book, "1")+","+item(book, "2"), good), 422, problem.TypeValidation, []string{"items[1].book_id"}},
		{"quantity 0", order(item(book, "0"), good), 422, problem.TypeValidation, []string{"items[0].quantity"}},
		{"quantity 101", order(item(book, "101"), good), 422, problem.TypeValidation, []string{"items[0].quantity"}},
		{"not a book id", order(item("nope", "1"), good), 422, problem.TypeValidation, []string{"items[0].book_id"}},
		{"bad card", order(item(book, "1"), `{"number":"4242424242424241","expiry":"01/20","cvc":"1"}`), 422, problem.TypeValidation,
			[]string{"payment.card.number", "payment.card.expiry", "payment.card.cvc"}},
		{"no payment", `{"items":[` + item(book, "1") + `]}`, 422, problem.TypeValidation, []string{"payment.card.number"}},
		{"unknown field", `{"items":[],"coupon":"FREE"}`, 400, problem.TypeMalformed, nil},
		{"quantity as text", order(item(book, `"2"`), good), 400, problem.TypeMalformed, nil},
		{"not JSON", `{`, 400, problem.TypeMalformed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resttest.WantProblem(t, s.do("POST", "/orders", tt.body), tt.status, tt.typ, tt.fields...)
		})
	}
	// A web page may make a browser post these without asking first (no CORS
	// preflight): they are refused, so no page places an order with a user's
	// credentials.
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		resttest.WantProblem(t, s.do("POST", "/orders", validBody, "Content-Type", ct), http.StatusUnsupportedMediaType, problem.TypeUnsupportedMedia)
	}
	if events, _ := outboxtest.Events(t, s.db, 0); len(events) != 0 {
		t.Errorf("refused orders wrote %d events", len(events))
	}
}

// TestPlaceIsIdempotent: the same Idempotency-Key and body place one order, and
// repeat its answer; another user's same key is theirs.
func TestPlaceIsIdempotent(t *testing.T) {
	s := newServer(t)
	first := s.do("POST", "/orders", validBody, idempotency.Header, "k1")
	again := s.do("POST", "/orders", validBody, idempotency.Header, "k1")
	if first.Code != 202 || again.Code != 202 || first.Body.String() != again.Body.String() ||
		first.Header().Get("Location") != again.Header().Get("Location") {
		t.Fatalf("first %d %s\nagain %d %s", first.Code, first.Body, again.Code, again.Body)
	}
	if rec := s.do("POST", "/orders", strings.Replace(validBody, `"quantity":2`, `"quantity":3`, 1), idempotency.Header, "k1"); rec.Code != 422 {
		t.Errorf("the key with another body: got %d, want 422", rec.Code)
	}
	other := s.as("u2", nil, "POST", "/orders", validBody, idempotency.Header, "k1")
	if other.Code != 202 || other.Body.String() == first.Body.String() {
		t.Errorf("another user's key: %d %s", other.Code, other.Body)
	}
	list := resttest.Decode[struct{ Items []order.Order }](t, s.do("GET", "/orders", ""))
	if len(list.Items) != 1 {
		t.Errorf("u1 has %d orders, want 1", len(list.Items))
	}
	events, _ := outboxtest.Events(t, s.db, 0)
	reserves := 0
	for _, e := range events {
		if e.Envelope.Type == order.CommandReserve {
			reserves++
		}
	}
	if reserves != 2 {
		t.Errorf("%d reserves sent, want 2 (one per placed order)", reserves)
	}
}

func TestListIsTheCallersOwn(t *testing.T) {
	s := newServer(t)
	var mine []string
	for range 3 {
		mine = append(mine, s.place(t, "u1").ID)
		s.place(t, "u2")
	}
	type page struct {
		Items      []order.Order `json:"items"`
		NextCursor *string       `json:"next_cursor"`
	}
	var got []string
	target := "/orders?limit=2"
	for {
		p := resttest.Decode[page](t, s.do("GET", target, ""))
		for _, o := range p.Items {
			got = append(got, o.ID)
		}
		if p.NextCursor == nil {
			break
		}
		target = "/orders?limit=2&cursor=" + *p.NextCursor
	}
	if strings.Join(got, ",") != strings.Join(mine, ",") {
		t.Errorf("listed %q, want %q", got, mine)
	}
	resttest.WantProblem(t, s.do("GET", "/orders?limit=0", ""), 400, problem.TypeMalformed)
	resttest.WantProblem(t, s.do("GET", "/orders?cursor=nope", ""), 400, problem.TypeMalformed)
}

func TestCancel(t *testing.T) {
	s := newServer(t)
	o := s.place(t, "u1")
	path := "/orders/" + o.ID + "/cancel"
	resttest.WantProblem(t, s.do("POST", path, ""), 409, problem.TypeConflict)
	s.confirm(t, o.ID)
	resttest.WantProblem(t, s.as("u2", nil, "POST", path, ""), 404, problem.TypeNotFound)
	resttest.WantProblem(t, s.as("admin-1", []string{"admin"}, "POST", path, ""), 404, problem.TypeNotFound)
	rec := s.do("POST", path, "")
	if rec.Code != http.StatusAccepted {
		t.Fatalf("owner's cancel: got %d %s", rec.Code, rec.Body)
	}
	if got := resttest.Decode[order.Order](t, rec); got.State != order.Refunding || got.Reason == nil || *got.Reason != "cancelled_by_owner" {
		t.Errorf("cancelled: %s", rec.Body)
	}
	resttest.WantProblem(t, s.do("POST", path, ""), 409, problem.TypeConflict)
	resttest.WantProblem(t, s.do("POST", "/orders/"+id.New()+"/cancel", ""), 404, problem.TypeNotFound)
}

// TestAccess: every route needs a valid token; another user's order is not found;
// an admin may read any order but lists only their own.
func TestAccess(t *testing.T) {
	s := newServer(t)
	o := s.place(t, "u1")
	forged := s.iss.Impostor().Token("u1", "admin")
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/orders", ""},
		{"POST", "/orders", validBody},
		{"GET", "/orders/" + o.ID, ""},
		{"POST", "/orders/" + o.ID + "/cancel", ""},
	} {
		resttest.WantProblem(t, resttest.Do(s.h, tc.method, tc.path, tc.body), 401, problem.TypeUnauthorized)
		resttest.WantProblem(t, resttest.Do(s.h, tc.method, tc.path, tc.body, "Authorization", "Bearer "+forged), 401, problem.TypeUnauthorized)
	}
	resttest.WantProblem(t, s.as("u2", []string{"editor"}, "GET", "/orders/"+o.ID, ""), 404, problem.TypeNotFound)
	resttest.WantProblem(t, s.do("GET", "/orders/nope", ""), 404, problem.TypeNotFound)
	if rec := s.as("admin-1", []string{"admin"}, "GET", "/orders/"+o.ID, ""); rec.Code != 200 {
		t.Errorf("admin's read: got %d", rec.Code)
	}
	got := resttest.Decode[order.Order](t, s.do("GET", "/orders/"+o.ID, ""))
	if got.ID != o.ID {
		t.Errorf("owner's read: %+v", got)
	}
	list := resttest.Decode[struct{ Items []json.RawMessage }](t, s.as("admin-1", []string{"admin"}, "GET", "/orders", ""))
	if len(list.Items) != 0 {
		t.Errorf("the admin lists %d orders, want only their own (none)", len(list.Items))
	}
	if events, _ := outboxtest.Events(t, s.db, 0); len(events) != 2 {
		t.Errorf("refused requests wrote events: %d in the outbox, want the 2 of the one order", len(events))
	}
}
