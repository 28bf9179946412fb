// Package payment is the payment service's domain: payments of orders, their
// ledger, the card rules and the answers the service gives the order saga's
// payment commands (docs/orders.md).
package payment

import (
	"errors"
	"regexp"
	"time"

	"folio/internal/platform/fault"
)

// Money is an amount in the minor unit (cents) of a currency (ISO 4217).
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// check returns an error when m is not an amount of at least 0 in a currency.
func (m Money) check() error {
	if m.Amount < 0 {
		return errors.New("amount is negative")
	}
	if !currencyCode.MatchString(m.Currency) {
		return errors.New("currency is not three upper-case letters")
	}
	return nil
}

// State is where a payment stands.
type State string

// The states of a payment. A voided payment with no authorisation in its ledger
// is a tombstone: a void or refund came first, and a later authorise is declined.
const (
	StateAuthorised State = "authorised"
	StateCaptured   State = "captured"
	StateVoided     State = "voided"
	StateRefunded   State = "refunded"
	StateDeclined   State = "declined"
)

// Kinds of ledger entry.
const (
	EntryAuthorise = "authorise"
	EntryCapture   = "capture"
	EntryVoid      = "void" // an authorisation released, amount the one released
	EntryRefund    = "refund"
)

// Entry is one line of a payment's ledger: money authorised, captured, released
// or refunded. The sums of captures and refunds are computed from the ledger.
type Entry struct {
	Kind   string    `json:"kind"`
	Amount int64     `json:"amount"`
	At     time.Time `json:"at"`
}

// Decline reasons of payment.declined.
const (
	ReasonCardDeclined      = "card_declined"
	ReasonInsufficientFunds = "insufficient_funds"
	ReasonInvalidCard       = "invalid_card"
	ReasonVoided            = "voided"
)

// Reasons of payment.capture_failed.
const (
	ReasonCaptureDeclined = "capture_declined"
	ReasonNotAuthorised   = "not_authorised"
)

// Payment is the payment of one order. Captured and Refunded, in the minor unit
// of Amount's currency, are the sums of its ledger's captures and refunds.
type Payment struct {
	ID       string `json:"id"`
	OrderID  string `json:"order_id"`
	State    State  `json:"state"`
	Amount   Money  `json:"amount"`
	Captured int64  `json:"captured"`
	Refunded int64  `json:"refunded"`
	// Card is nil for a tombstone and for a card that could not be read.
	Card          *CardRef `json:"card,omitempty"`
	DeclineReason string   `json:"decline_reason,omitempty"`
	// CaptureRefused is set for the test card whose captures are refused.
	CaptureRefused bool      `json:"-"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	Version        int       `json:"version"`
	Entries        []Entry   `json:"entries"`
}

// Sums returns the sums of p's ledger entries of each kind.
func Sums(entries []Entry) map[string]int64 {
	sums := map[string]int64{}
	for _, e := range entries {
		sums[e.Kind] += e.Amount
	}
	return sums
}

// ErrNotFound is returned for an order no payment command has reached.
var ErrNotFound = fault.New(fault.NotFound, "no payment for this order")

// ErrStale is returned by a store whose payment changed since it was read.
var ErrStale = errors.New("payment changed concurrently")
