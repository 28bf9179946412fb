package payment_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"folio/internal/payment"
	"folio/internal/platform/id"
	"folio/internal/platform/secrets"
)

// memoryStore is the in-memory stand-in of the store the rules read through.
type memoryStore map[string]payment.Payment

func (m memoryStore) Get(_ context.Context, orderID string) (payment.Payment, error) {
	p, ok := m[orderID]
	if !ok {
		return payment.Payment{}, payment.ErrNotFound
	}
	return p, nil
}

// rules is a service with a key of its own and a clock that moves a second per
// call, so that every change has a later time than the one before.
type rules struct {
	svc   *payment.Service
	store memoryStore
	key   *secrets.Recipient
}

func newRules(t testing.TB, slow time.Duration) *rules {
	t.Helper()
	key, err := secrets.LoadRecipient(secrets.GenerateRecipientKey())
	if err != nil {
		t.Fatal(err)
	}
	store := memoryStore{}
	svc := payment.NewService(store, key, payment.Config{SlowDelay: slow})
	now := cardNow
	svc.SetClock(func() time.Time { now = now.Add(time.Second); return now })
	return &rules{svc: svc, store: store, key: key}
}

// seal seals the card with number to the service, as the order service does.
func (r *rules) seal(t testing.TB, number string) string {
	t.Helper()
	s, err := secrets.SealTo(r.key.PublicKey(), cardJSON(number, "12/30", "123"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// summary is a reply in a few words: its result, then its reason or amount.
func summary(r payment.Reply) string {
	switch d := r.Data.(type) {
	case payment.Authorised:
		return fmt.Sprintf("%s %d %s %s/%s", r.Result(), d.Amount.Amount, d.Amount.Currency, d.Card.Brand, d.Card.Last4)
	case payment.Failed:
		return r.Result() + " " + d.Reason
	case payment.Captured:
		return fmt.Sprintf("%s %d %s", r.Result(), d.Amount.Amount, d.Amount.Currency)
	case payment.Voided:
		return fmt.Sprintf("%s %d %s", r.Result(), d.Refunded.Amount, d.Refunded.Currency)
	case payment.Refunded:
		return fmt.Sprintf("%s %d %s", r.Result(), d.Amount.Amount, d.Amount.Currency)
	}
	return fmt.Sprintf("unknown reply %s %#v", r.Type, r.Data)
}

const (
	approved    = "4242424242424242"
	mastercard  = "5555555555554444"
	declined    = "4000000000000002"
	noFunds     = "4000000000009995"
	slow        = "4000000000000119"
	noCapture   = "4000000000000341"
	otherValid  = "6011111111111117"
	invalidLuhn = "4242424242424241"
	notSealed   = "not sealed"
)

// TestCommandsFollowTheRules applies sequences of commands to one order's payment
// and checks every reply, the payment's state and its ledger's sums: each command
// is idempotent by order, replies again as it did, and a void or refund before any
// authorise leaves a tombstone.
func TestCommandsFollowTheRules(t *testing.T) {
	type step struct{ cmd, card, want string }
	var (
		authorise = func(card, want string) step { return step{payment.CommandAuthorise, card, want} }
		capture   = func(want string) step { return step{payment.CommandCapture, "", want} }
		void      = func(want string) step { return step{payment.CommandVoid, "", want} }
		refund    = func(want string) step { return step{payment.CommandRefund, "", want} }
	)
	const (
		authorisedVisa = "authorised 1299 EUR visa/4242"
		captured       = "captured 1299 EUR"
	)
	tests := []struct {
		name               string
		steps              []step
		state              payment.State
		captured, refunded int64
		entries            []string
	}{
		{"approved", []step{authorise(approved, authorisedVisa)}, payment.StateAuthorised, 0, 0, []string{"authorise"}},
		{"mastercard", []step{authorise(mastercard, "authorised 1299 EUR mastercard/4444")}, payment.StateAuthorised, 0, 0, []string{"authorise"}},
		{"any other valid card", []step{authorise(otherValid, "authorised 1299 EUR card/1117")}, payment.StateAuthorised, 0, 0, []string{"authorise"}},
		{"slow card approved", []step{authorise(slow, "authorised 1299 EUR visa/0119")}, payment.StateAuthorised, 0, 0, []string{"authorise"}},
		{"card declined", []step{authorise(declined, "declined card_declined")}, payment.StateDeclined, 0, 0, nil},
		{"insufficient funds", []step{authorise(noFunds, "declined insufficient_funds")}, payment.StateDeclined, 0, 0, nil},
		{"invalid card", []step{authorise(invalidLuhn, "declined invalid_card")}, payment.StateDeclined, 0, 0, nil},
		{"card not sealed to the service", []step{authorise(notSealed, "declined invalid_card")}, payment.StateDeclined, 0, 0, nil},
		{"authorise twice", []step{authorise(approved, authorisedVisa), authorise(declined, authorisedVisa)}, payment.StateAuthorised, 0, 0, []string{"authorise"}},
		{"declined twice", []step{authorise(declined, "declined card_declined"), authorise(approved, "declined card_declined")}, payment.StateDeclined, 0, 0, nil},
		{"captured", []step{authorise(approved, authorisedVisa), capture(captured)}, payment.StateCaptured, 1299, 0, []string{"authorise", "capture"}},
		{"capture twice", []step{authorise(approved, authorisedVisa), capture(captured), capture(captured)}, payment.StateCaptured, 1299, 0, []string{"authorise", "capture"}},
		{"capture refused", []step{authorise(noCapture, "authorised 1299 EUR visa/0341"), capture("capture_failed capture_declined"), capture("capture_failed capture_declined")}, payment.StateAuthorised, 0, 0, []string{"authorise"}},
		{"capture refused, then voided", []step{authorise(noCapture, "authorised 1299 EUR visa/0341"), capture("capture_failed capture_declined"), void("voided 0 EUR")}, payment.StateVoided, 0, 0, []string{"authorise", "void"}},
		{"capture of nothing", []step{capture("capture_failed not_authorised")}, "", 0, 0, nil},
		{"capture of a declined payment", []step{authorise(declined, "declined card_declined"), capture("capture_failed not_authorised")}, payment.StateDeclined, 0, 0, nil},
		{"capture after a void", []step{authorise(approved, authorisedVisa), void("voided 0 EUR"), capture("capture_failed not_authorised")}, payment.StateVoided, 0, 0, []string{"authorise", "void"}},
		{"void", []step{authorise(approved, authorisedVisa), void("voided 0 EUR")}, payment.StateVoided, 0, 0, []string{"authorise", "void"}},
		{"void twice", []step{authorise(approved, authorisedVisa), void("voided 0 EUR"), void("voided 0 EUR")}, payment.StateVoided, 0, 0, []string{"authorise", "void"}},
		{"void of a capture refunds", []step{authorise(approved, authorisedVisa), capture(captured), void("voided 1299 EUR"), void("voided 1299 EUR")}, payment.StateVoided, 1299, 1299, []string{"authorise", "capture", "refund"}},
		{"void of a declined payment", []step{authorise(declined, "declined card_declined"), void("voided 0 EUR"), authorise(approved, "declined card_declined")}, payment.StateDeclined, 0, 0, nil},
		{"void before authorise", []step{void("voided 0 "), authorise(approved, "declined voided"), authorise(approved, "declined voided")}, payment.StateVoided, 0, 0, nil},
		{"void before capture", []step{void("voided 0 "), capture("capture_failed not_authorised")}, payment.StateVoided, 0, 0, nil},
		{"authorise again after a void", []step{authorise(approved, authorisedVisa), void("voided 0 EUR"), authorise(approved, authorisedVisa)}, payment.StateVoided, 0, 0, []string{"authorise", "void"}},
		{"refund", []step{authorise(approved, authorisedVisa), capture(captured), refund("refunded 1299 EUR")}, payment.StateRefunded, 1299, 1299, []string{"authorise", "capture", "refund"}},
		{"refund twice", []step{authorise(approved, authorisedVisa), capture(captured), refund("refunded 1299 EUR"), refund("refunded 1299 EUR")}, payment.StateRefunded, 1299, 1299, []string{"authorise", "capture", "refund"}},
		{"refund, then void", []step{authorise(approved, authorisedVisa), capture(captured), refund("refunded 1299 EUR"), void("voided 1299 EUR")}, payment.StateRefunded, 1299, 1299, []string{"authorise", "capture", "refund"}},
		{"void, then refund", []step{authorise(approved, authorisedVisa), capture(captured), void("voided 1299 EUR"), refund("refunded 1299 EUR")}, payment.StateVoided, 1299, 1299, []string{"authorise", "capture", "refund"}},
		{"capture after a refund", []step{authorise(approved, authorisedVisa), capture(captured), refund("refunded 1299 EUR"), capture(captured)}, payment.StateRefunded, 1299, 1299, []string{"authorise", "capture", "refund"}},
		{"refund of an authorisation voids it", []step{authorise(approved, authorisedVisa), refund("refunded 0 EUR"), refund("refunded 0 EUR")}, payment.StateVoided, 0, 0, []string{"authorise", "void"}},
		{"refund before authorise", []step{refund("refunded 0 "), authorise(approved, "declined voided")}, payment.StateVoided, 0, 0, nil},
		{"refund of a declined payment", []step{authorise(noFunds, "declined insufficient_funds"), refund("refunded 0 EUR")}, payment.StateDeclined, 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRules(t, 0)
			orderID := id.New()
			var cur *payment.Payment
			for i, st := range tt.steps {
				cmd := payment.Command{Type: st.cmd, OrderID: orderID}
				if st.cmd == payment.CommandAuthorise {
					cmd.Amount, cmd.SealedCard = payment.Money{Amount: 1299, Currency: "EUR"}, notSealed
					if st.card != notSealed {
						cmd.SealedCard = r.seal(t, st.card)
					}
				}
				out, err := r.svc.Decide(cur, cmd)
				if err != nil {
					t.Fatalf("step %d (%s): %v", i, st.cmd, err)
				}
				if got := summary(out.Reply); got != st.want {
					t.Errorf("step %d (%s): got reply %q, want %q", i, st.cmd, got, st.want)
				}
				if out.Payment == nil {
					if len(out.Entries) > 0 {
						t.Errorf("step %d: entries %v without a change of the payment", i, out.Entries)
					}
					continue
				}
				wantVersion := 1
				if cur != nil {
					wantVersion = cur.Version + 1
					if !reflect.DeepEqual(out.Payment.Entries, append(append([]payment.Entry(nil), cur.Entries...), out.Entries...)) {
						t.Errorf("step %d: the payment's ledger %v is not the last one %v and the new entries %v", i, out.Payment.Entries, cur.Entries, out.Entries)
					}
				}
				if out.Payment.Version != wantVersion {
					t.Errorf("step %d: version %d, want %d", i, out.Payment.Version, wantVersion)
				}
				cur = out.Payment
			}
			if cur == nil {
				if tt.state != "" {
					t.Fatalf("no payment, want one %s", tt.state)
				}
				return
			}
			var kinds []string
			for _, e := range cur.Entries {
				kinds = append(kinds, e.Kind)
			}
			sums := payment.Sums(cur.Entries)
			if cur.State != tt.state || cur.Captured != tt.captured || cur.Refunded != tt.refunded ||
				sums[payment.EntryCapture] != tt.captured || sums[payment.EntryRefund] != tt.refunded || !reflect.DeepEqual(kinds, tt.entries) {
				t.Errorf("got %s, captured %d, refunded %d, ledger %v; want %s, %d, %d, %v",
					cur.State, cur.Captured, cur.Refunded, kinds, tt.state, tt.captured, tt.refunded, tt.entries)
			}
		})
	}
}

// TestAPaymentKeepsNoCardNumber: what is kept of a card is its brand, last four
// digits and a token of the service's own.
func TestAPaymentKeepsNoCardNumber(t *testing.T) {
	r := newRules(t, 0)
	out, err := r.svc.Decide(nil, payment.Command{Type: payment.CommandAuthorise, OrderID: id.New(),
		Amount: payment.Money{Amount: 500, Currency: "USD"}, SealedCard: r.seal(t, approved)})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Payment.Card
	if c == nil || c.Brand != "visa" || c.Last4 != "4242" || !id.Valid(c.Token) {
		t.Errorf("got card %+v, want visa 4242 with a token", c)
	}
	if s := fmt.Sprintf("%+v %+v", *out.Payment, out.Reply); strings.Contains(s, approved) || strings.Contains(s, `"123"`) {
		t.Errorf("the payment or its reply holds the card: %s", s)
	}
}

// TestMalformedCommandsAreErrors: a command that cannot be read is an error (the
// broker retries, then dead-letters it), never a reply.
func TestMalformedCommandsAreErrors(t *testing.T) {
	r := newRules(t, 0)
	good := payment.Command{Type: payment.CommandAuthorise, OrderID: id.New(), Amount: payment.Money{Amount: 1, Currency: "EUR"}, SealedCard: "x"}
	for name, change := range map[string]func(*payment.Command){
		"unknown type":        func(c *payment.Command) { c.Type = "order.payment.steal" },
		"order id not an id":  func(c *payment.Command) { c.OrderID = "7" },
		"negative amount":     func(c *payment.Command) { c.Amount.Amount = -1 },
		"lower-case currency": func(c *payment.Command) { c.Amount.Currency = "eur" },
		"no card":             func(c *payment.Command) { c.SealedCard = "" },
	} {
		cmd := good
		change(&cmd)
		if _, err := r.svc.Decide(nil, cmd); err == nil {
			t.Errorf("%s: got nil, want an error", name)
		}
	}
	other := &payment.Payment{OrderID: id.New(), State: payment.StateAuthorised}
	if _, err := r.svc.Decide(other, payment.Command{Type: payment.CommandCapture, OrderID: id.New()}); err == nil {
		t.Error("the payment of another order: got nil, want an error")
	}
}

// TestSlowAuthorisation: only the slow card's first authorise is slow, and its
// wait ends with its context.
func TestSlowAuthorisation(t *testing.T) {
	r := newRules(t, time.Hour)
	orderID := id.New()
	cmd := payment.Command{Type: payment.CommandAuthorise, OrderID: orderID, Amount: payment.Money{Amount: 1, Currency: "EUR"}, SealedCard: r.seal(t, approved)}
	slowly := func(cmd payment.Command) bool {
		t.Helper()
		slow, err := r.svc.SlowAuthorisation(context.Background(), cmd)
		if err != nil {
			t.Fatal(err)
		}
		return slow
	}
	if slowly(cmd) {
		t.Error("an ordinary card: got slow, want not")
	}
	if slowly(payment.Command{Type: payment.CommandCapture, OrderID: orderID}) {
		t.Error("a capture: got slow, want not")
	}
	cmd.SealedCard = r.seal(t, slow)
	if !slowly(cmd) {
		t.Error("the slow card: got not slow, want slow")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.svc.WaitSlowDelay(ctx); err != context.Canceled {
		t.Errorf("the slow delay with its context ended: got %v, want context.Canceled", err)
	}
	r.store[orderID] = payment.Payment{OrderID: orderID, State: payment.StateAuthorised}
	if slowly(cmd) {
		t.Error("the slow card answered before: got slow, want the answer at once")
	}
	if newRules(t, 0).svc.WaitSlowDelay(context.Background()) != nil || slowlyWithout(t, cmd) {
		t.Error("no slow delay: got slow")
	}
}

// slowlyWithout reports whether cmd is slow for a service with no slow delay.
func slowlyWithout(t *testing.T, cmd payment.Command) bool {
	r := newRules(t, 0)
	cmd.SealedCard = r.seal(t, slow)
	ok, err := r.svc.SlowAuthorisation(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestACardSealedToAnotherKeyIsSaidSo: with the order service given another
// public key than the payment service's (copied wrong, or the key rotated on one
// side only), every order would be declined as an invalid card and nobody told
// why; the decline stays (the card cannot be read), and the log says what to mend,
// naming both keys, while a card merely altered is declined without that line.
func TestACardSealedToAnotherKeyIsSaidSo(t *testing.T) {
	var logged bytes.Buffer
	key, _ := secrets.LoadRecipient(secrets.GenerateRecipientKey())
	other, _ := secrets.LoadRecipient(secrets.GenerateRecipientKey())
	svc := payment.NewService(memoryStore{}, key, payment.Config{Log: slog.New(slog.NewJSONHandler(&logged, nil))})
	svc.SetClock(func() time.Time { return cardNow })

	authorise := func(sealed string) string {
		out, err := svc.Decide(nil, payment.Command{Type: payment.CommandAuthorise, OrderID: id.New(),
			Amount: payment.Money{Amount: 500, Currency: "EUR"}, SealedCard: sealed})
		if err != nil {
			t.Fatal(err)
		}
		return summary(out.Reply)
	}
	toOther, err := secrets.SealTo(other.PublicKey(), cardJSON(approved, "12/30", "123"))
	if err != nil {
		t.Fatal(err)
	}
	if got := authorise(toOther); got != "declined invalid_card" {
		t.Errorf("a card sealed to another key: %s, want declined invalid_card", got)
	}
	line := logged.String()
	for _, want := range []string{`"level":"ERROR"`, "FOLIO_PAYMENT_CARD_PUBLIC_KEY", other.KeyID(), key.KeyID()} {
		if !strings.Contains(line, want) {
			t.Errorf("the log does not say %q: %s", want, line)
		}
	}
	if strings.Contains(line, approved) {
		t.Errorf("the log holds the card number: %s", line)
	}

	logged.Reset()
	toKey, err := secrets.SealTo(key.PublicKey(), cardJSON(approved, "12/30", "123"))
	if err != nil {
		t.Fatal(err)
	}
	if got := authorise(toKey[:len(toKey)-4] + "AAAA"); got != "declined invalid_card" {
		t.Errorf("an altered card: %s, want declined invalid_card", got)
	}
	if logged.Len() > 0 {
		t.Errorf("an altered card was logged as sealed to another key: %s", logged.String())
	}
}
