package payment

import (
	"fmt"
	"strings"
	"time"

	"folio/internal/platform/id"
)

// Types of the commands the order service sends the payment service.
const (
	CommandAuthorise = "order.payment.authorise"
	CommandCapture   = "order.payment.capture"
	CommandVoid      = "order.payment.void"
	CommandRefund    = "order.payment.refund"
)

// Commands lists the command types, in the saga's order.
var Commands = []string{CommandAuthorise, CommandCapture, CommandVoid, CommandRefund}

// Types of the replies.
const (
	ReplyAuthorised    = "payment.authorised"
	ReplyDeclined      = "payment.declined"
	ReplyCaptured      = "payment.captured"
	ReplyCaptureFailed = "payment.capture_failed"
	ReplyVoided        = "payment.voided"
	ReplyRefunded      = "payment.refunded"
)

// Command is one payment command of the order saga. Amount and SealedCard are
// those of an authorise only.
type Command struct {
	Type       string
	OrderID    string
	Amount     Money
	SealedCard string
}

// Operation names the command for metrics and logs: authorise, capture, void or
// refund.
func (c Command) Operation() string { return strings.TrimPrefix(c.Type, "order.payment.") }

// Check returns an error saying what makes c unreadable: an unknown type, an
// order id that is not an id, an authorise without a valid amount or a card.
func (c Command) Check() error {
	switch c.Type {
	case CommandAuthorise:
		if err := c.Amount.check(); err != nil {
			return fmt.Errorf("%s: %w", c.Type, err)
		}
		if c.SealedCard == "" {
			return fmt.Errorf("%s: sealed_card is missing", c.Type)
		}
	case CommandCapture, CommandVoid, CommandRefund:
	default:
		return fmt.Errorf("%q is not a payment command", c.Type)
	}
	if !id.Valid(c.OrderID) {
		return fmt.Errorf("%s: order_id %q is not an id", c.Type, c.OrderID)
	}
	return nil
}

// Reply is the answer to a command, sent as an event of Type with Data.
type Reply struct {
	Type string
	Data any
}

// Result names the reply for metrics: its type without "payment.".
func (r Reply) Result() string { return strings.TrimPrefix(r.Type, "payment.") }

// CardSummary is the card as a reply shows it.
type CardSummary struct {
	Brand string `json:"brand"`
	Last4 string `json:"last4"`
}

// Authorised is the data of payment.authorised.
type Authorised struct {
	OrderID   string      `json:"order_id"`
	PaymentID string      `json:"payment_id"`
	Amount    Money       `json:"amount"`
	Card      CardSummary `json:"card"`
}

// Failed is the data of payment.declined and payment.capture_failed.
type Failed struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// Captured is the data of payment.captured.
type Captured struct {
	OrderID string `json:"order_id"`
	Amount  Money  `json:"amount"`
}

// Voided is the data of payment.voided: Refunded is what was refunded of a
// capture, 0 when nothing was captured.
type Voided struct {
	OrderID  string `json:"order_id"`
	Refunded Money  `json:"refunded"`
}

// Refunded is the data of payment.refunded: Amount is 0 when an authorisation was
// voided instead.
type Refunded struct {
	OrderID string `json:"order_id"`
	Amount  Money  `json:"amount"`
}

// Outcome is what applying a command does: the payment to store (nil when it is
// unchanged; Version 1 when new), the ledger entries to add, and the reply.
type Outcome struct {
	Payment *Payment
	Entries []Entry
	Reply   Reply
}

// money is amount in p's currency.
func (p *Payment) money(amount int64) Money {
	return Money{Amount: amount, Currency: p.Amount.Currency}
}

// next returns a copy of p in state, one version on, changed at now, with the
// entries added to its ledger.
func (p *Payment) next(state State, now time.Time, entries ...Entry) *Payment {
	n := *p
	n.State, n.UpdatedAt, n.Version = state, now, p.Version+1
	n.Entries = append(append([]Entry(nil), p.Entries...), entries...)
	sums := Sums(n.Entries)
	n.Captured, n.Refunded = sums[EntryCapture], sums[EntryRefund]
	return &n
}
