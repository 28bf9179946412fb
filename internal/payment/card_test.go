package payment_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"folio/internal/payment"
)

var cardNow = time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)

func cardJSON(number, expiry, cvc string) []byte {
	return []byte(fmt.Sprintf(`{"number":%q,"expiry":%q,"cvc":%q}`, number, expiry, cvc))
}

func TestParseCardChecksTheRules(t *testing.T) {
	for _, tt := range []struct {
		name  string
		plain []byte
		ok    bool
	}{
		{"visa", cardJSON("4242424242424242", "12/30", "123"), true},
		{"12 digits", cardJSON("123456789007", "12/30", "123"), true},
		{"19 digits", cardJSON("4000000000000000006", "12/30", "1234"), true},
		{"this month", cardJSON("4242424242424242", "12/26", "123"), true},
		{"last month", cardJSON("4242424242424242", "11/26", "123"), false},
		{"11 digits", cardJSON("12345678903", "12/30", "123"), false},
		{"20 digits", cardJSON("12345678901234567897", "12/30", "123"), false},
		{"Luhn fails", cardJSON("4242424242424241", "12/30", "123"), false},
		{"spaces", cardJSON("4242 4242 4242 4242", "12/30", "123"), false},
		{"letters", cardJSON("42424242424242a2", "12/30", "123"), false},
		{"month 13", cardJSON("4242424242424242", "13/30", "123"), false},
		{"month 00", cardJSON("4242424242424242", "00/30", "123"), false},
		{"four-digit year", cardJSON("4242424242424242", "12/2030", "123"), false},
		{"no slash", cardJSON("4242424242424242", "1230", "123"), false},
		{"cvc of 2", cardJSON("4242424242424242", "12/30", "12"), false},
		{"cvc of 5", cardJSON("4242424242424242", "12/30", "12345"), false},
		{"cvc of letters", cardJSON("4242424242424242", "12/30", "abc"), false},
		{"not JSON", []byte("4242424242424242"), false},
		{"empty", []byte(`{}`), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := payment.ParseCard(tt.plain, cardNow)
			if (err == nil) != tt.ok {
				t.Fatalf("got error %v, want ok=%v", err, tt.ok)
			}
			if err != nil && (strings.Contains(err.Error(), "4242") || strings.Contains(err.Error(), "123")) {
				t.Errorf("the error %q shows the card", err)
			}
		})
	}
}

func TestCardBrandLast4AndBehaviour(t *testing.T) {
	for _, tt := range []struct {
		number, brand string
		behaviour     payment.Behaviour
	}{
		{"4242424242424242", payment.BrandVisa, payment.Approve},
		{"5555555555554444", payment.BrandMastercard, payment.Approve},
		{"2223003122003222", payment.BrandMastercard, payment.Approve},
		{"378282246310005", payment.BrandAmex, payment.Approve},
		{"6011111111111117", payment.BrandOther, payment.Approve},
		{"4000000000000002", payment.BrandVisa, payment.DeclineCard},
		{"4000000000009995", payment.BrandVisa, payment.DeclineFunds},
		{"4000000000000119", payment.BrandVisa, payment.ApproveSlowly},
		{"4000000000000341", payment.BrandVisa, payment.RefuseCapture},
	} {
		c, err := payment.ParseCard(cardJSON(tt.number, "01/31", "987"), cardNow)
		if err != nil {
			t.Errorf("%s: %v", tt.number, err)
			continue
		}
		ref := c.Ref("tok")
		if ref.Brand != tt.brand || ref.Last4 != tt.number[len(tt.number)-4:] || c.Behaviour() != tt.behaviour {
			t.Errorf("%s: got %+v, behaviour %d; want brand %s, behaviour %d", tt.number, ref, c.Behaviour(), tt.brand, tt.behaviour)
		}
		var logged bytes.Buffer
		// Without its time, whose digits may hold the cvc's (…:08.589874289Z).
		noTime := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}}
		slog.New(slog.NewJSONHandler(&logged, noTime)).Info("card", "card", c)
		if s := fmt.Sprintf("%v %+v %#v %s", c, c, c, logged.String()); strings.Contains(s, tt.number) || strings.Contains(s, "987") {
			t.Errorf("printing or logging the card shows it: %s", s)
		}
	}
}

// FuzzParseCard: no document makes ParseCard panic, and what it refuses is never
// named in its error.
//
//	go test -run '^$' -fuzz FuzzParseCard ./internal/payment/
func FuzzParseCard(f *testing.F) {
	f.Add([]byte(`{"number":"4242424242424242","expiry":"12/30","cvc":"123"}`))
	f.Add([]byte(`{"number":"4242424242424241","expiry":"12/30","cvc":"123"}`))
	f.Add([]byte(`{"number":"","expiry":"/","cvc":""}`))
	f.Add([]byte(`{"number":"١٢٣٤٥٦٧٨٩٠١٢","expiry":"12/30","cvc":"123"}`))
	f.Fuzz(func(t *testing.T, plain []byte) {
		c, err := payment.ParseCard(plain, cardNow)
		if err == nil {
			if ref := c.Ref("tok"); len(ref.Last4) != 4 || ref.Brand == "" {
				t.Errorf("accepted card %q gives %+v", plain, ref)
			}
			return
		}
		if len(c.Number) >= 6 && strings.Contains(err.Error(), c.Number) {
			t.Errorf("error %q names the number", err)
		}
	})
}
