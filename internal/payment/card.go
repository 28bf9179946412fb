package payment

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Card is a card as the order service sealed it: opened only to be checked and
// charged, never stored or logged.
type Card struct {
	Number string `json:"number"`
	Expiry string `json:"expiry"`
	CVC    string `json:"cvc"`
}

// String hides the card's number and cvc from any log or error that prints it.
func (c Card) String() string { return "card ending " + last4(c.Number) }

// GoString hides them from %#v as well.
func (c Card) GoString() string { return c.String() }

// LogValue hides them from structured logs, which would otherwise print every
// field.
func (c Card) LogValue() slog.Value { return slog.StringValue(c.String()) }

// CardRef is what the service keeps of a card: its brand, last four digits and a
// token of its own (a random id that names the card to nobody else).
type CardRef struct {
	Brand string `json:"brand"`
	Last4 string `json:"last4"`
	Token string `json:"token"`
}

// Brands a card number may have.
const (
	BrandVisa       = "visa"
	BrandMastercard = "mastercard"
	BrandAmex       = "amex"
	BrandOther      = "card"
)

// Behaviour is what the payment network does with a card: the test cards of
// docs/orders.md decide it, any other valid card is approved.
type Behaviour int

// The behaviours of the test cards.
const (
	Approve       Behaviour = iota
	DeclineCard             // declined: card_declined
	DeclineFunds            // declined: insufficient_funds
	ApproveSlowly           // approved after FOLIO_PAYMENT_SLOW_DELAY
	RefuseCapture           // authorised, but every capture is refused: capture_declined
)

// testCards is the test-card table of docs/orders.md.
var testCards = map[string]Behaviour{
	"4242424242424242": Approve,
	"5555555555554444": Approve,
	"4000000000000002": DeclineCard,
	"4000000000009995": DeclineFunds,
	"4000000000000119": ApproveSlowly,
	"4000000000000341": RefuseCapture,
}

// Behaviour is what the network does with c (Approve for any card not in the
// test-card table).
func (c Card) Behaviour() Behaviour { return testCards[c.Number] }

// ParseCard reads an opened card and checks it at now: 12 to 19 digits passing
// the Luhn check, an expiry MM/YY not past, a cvc of 3 or 4 digits. Errors name
// the rule broken, never the number.
func ParseCard(plain []byte, now time.Time) (Card, error) {
	var c Card
	if err := json.Unmarshal(plain, &c); err != nil {
		return Card{}, fmt.Errorf("card: not a card document")
	}
	return c, c.check(now)
}

func (c Card) check(now time.Time) error {
	if n := len(c.Number); n < 12 || n > 19 || !digits(c.Number) {
		return fmt.Errorf("card: the number is not 12 to 19 digits")
	}
	if !luhn(c.Number) {
		return fmt.Errorf("card: the number fails the Luhn check")
	}
	if n := len(c.CVC); n < 3 || n > 4 || !digits(c.CVC) {
		return fmt.Errorf("card: the cvc is not 3 or 4 digits")
	}
	month, year, ok := strings.Cut(c.Expiry, "/")
	if !ok || len(month) != 2 || len(year) != 2 || !digits(month) || !digits(year) {
		return fmt.Errorf("card: the expiry is not MM/YY")
	}
	m, _ := strconv.Atoi(month)
	y, _ := strconv.Atoi(year)
	if m < 1 || m > 12 {
		return fmt.Errorf("card: the expiry's month is not 01 to 12")
	}
	// A card is valid to the end of its expiry month.
	end := time.Date(2000+y, time.Month(m)+1, 1, 0, 0, 0, 0, time.UTC)
	if !now.Before(end) {
		return fmt.Errorf("card: expired")
	}
	return nil
}

// Brand is the card's brand, from its number's leading digits.
func (c Card) Brand() string {
	n := c.Number
	switch {
	case strings.HasPrefix(n, "4"):
		return BrandVisa
	case strings.HasPrefix(n, "34"), strings.HasPrefix(n, "37"):
		return BrandAmex
	}
	if len(n) >= 4 {
		p2, _ := strconv.Atoi(n[:2])
		p4, _ := strconv.Atoi(n[:4])
		if (p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720) {
			return BrandMastercard
		}
	}
	return BrandOther
}

// Ref is what the service keeps of c, with a new token.
func (c Card) Ref(token string) CardRef {
	return CardRef{Brand: c.Brand(), Last4: last4(c.Number), Token: token}
}

func last4(number string) string {
	if len(number) < 4 {
		return ""
	}
	return number[len(number)-4:]
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// luhn reports whether the digits pass the Luhn check.
func luhn(number string) bool {
	sum := 0
	double := false
	for i := len(number) - 1; i >= 0; i-- {
		d := int(number[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
