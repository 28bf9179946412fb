package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"folio/internal/payment"
	"folio/internal/platform/authn/authntest"
)

// TestRoutesNeedAnAdmin calls the service directly, as anyone who reaches its port
// could: no token or a token the auth service did not sign 401, a reader or
// editor 403, an admin 200.
func TestRoutesNeedAnAdmin(t *testing.T) {
	s := newServer(t)
	path := "/payments/" + s.pay(t, "4242424242424242")
	for _, who := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", 401},
		{"not a token", "Bearer not-a-token", 401},
		{"a forged admin", authntest.Bearer(authntest.New(t).Token("x", "admin")), 401},
		{"a reader", authntest.Bearer(s.iss.Token("r", "reader")), 403},
		{"an editor", authntest.Bearer(s.iss.Token("e", "editor")), 403},
		{"an admin", authntest.Bearer(s.iss.Token("a", "admin")), 200},
	} {
		rec := s.do(http.MethodGet, path, "Authorization", who.auth)
		if rec.Code != who.want {
			t.Errorf("%s: got %d, want %d", who.name, rec.Code, who.want)
		}
		if ct := rec.Header().Get("Content-Type"); who.want >= 400 && ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q, want problem+json", who.name, ct)
		}
		if who.want >= 400 && strings.Contains(rec.Body.String(), "4242") {
			t.Errorf("%s: the refusal shows the payment: %s", who.name, rec.Body)
		}
	}
}

// TestPaymentShowsItsLedgerAndNoCardNumber: an admin sees the payment, its sums
// and ledger, the card's brand and last four digits, and never the number or cvc.
func TestPaymentShowsItsLedgerAndNoCardNumber(t *testing.T) {
	s := newServer(t)
	orderID := s.pay(t, "5555555555554444", payment.CommandCapture, payment.CommandVoid)
	rec := s.do(http.MethodGet, "/payments/"+orderID)
	if rec.Code != http.StatusOK {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	if strings.Contains(body, "555555555555") || strings.Contains(body, `"123"`) || strings.Contains(body, "cvc") || strings.Contains(body, "number") {
		t.Errorf("the payment shows the card: %s", body)
	}
	var p payment.Payment
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range p.Entries {
		kinds = append(kinds, e.Kind)
	}
	if p.OrderID != orderID || p.State != payment.StateVoided || p.Captured != 1299 || p.Refunded != 1299 ||
		p.Card == nil || p.Card.Brand != "mastercard" || p.Card.Last4 != "4444" || strings.Join(kinds, ",") != "authorise,capture,refund" {
		t.Errorf("got %s", body)
	}
	if etag := rec.Header().Get("ETag"); etag != `"3"` {
		t.Errorf("ETag %q, want \"3\"", etag)
	}
}
