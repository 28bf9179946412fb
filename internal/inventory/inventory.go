// Package inventory is the inventory service's domain: the stock and price of each
// book, the reservations the order saga makes of it (docs/orders.md), their rules,
// the Service that applies them and the interfaces of what it needs (Store). It
// knows nothing of HTTP, SQL or the broker: sqlstore, httpapi and events sit beside
// it and depend on it, never the reverse.
package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"folio/internal/platform/fault"
)

// Money is an amount in the minor unit of its currency (cents): {"amount": 1299,
// "currency": "EUR"}.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Limits of the writable fields.
const (
	MaxPrice    = 1_000_000_000
	MaxQuantity = 1_000_000
	// MaxOrderLines bounds the books of one reserve, which keeps a total within
	// int64 (MaxOrderLines × MaxPrice × MaxQuantity) and a reserve's transaction short.
	MaxOrderLines = 100
)

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// Item is the stock of one book: its price, the copies on hand and those held by
// reservations. Version counts the editors' changes only: a reservation moves
// Reserved and Available, not Version, so that an editor's If-Match is not
// overtaken by the orders.
type Item struct {
	BookID    string    `json:"book_id"`
	Price     Money     `json:"price"`
	Quantity  int64     `json:"quantity"`
	Reserved  int64     `json:"reserved"`
	Available int64     `json:"available"`
	Version   int       `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Input is an item as an editor writes it (PUT). The read-only fields are accepted
// so that a client can send back what it read, and ignored.
type Input struct {
	Price    *PriceInput `json:"price"`
	Quantity *int64      `json:"quantity"`

	BookID    json.RawMessage `json:"book_id,omitempty"`
	Reserved  json.RawMessage `json:"reserved,omitempty"`
	Available json.RawMessage `json:"available,omitempty"`
	Version   json.RawMessage `json:"version,omitempty"`
	UpdatedAt json.RawMessage `json:"updated_at,omitempty"`
}

// PriceInput is a price as an editor writes it; nil is a field left out.
type PriceInput struct {
	Amount   *int64  `json:"amount"`
	Currency *string `json:"currency"`
}

// validate checks in against every rule and returns the price and quantity, or an
// Invalid error naming each broken field.
func (in Input) validate() (Money, int64, error) {
	var errs fault.Fields
	var price Money
	switch {
	case in.Price == nil:
		errs.Add("price", "is required")
	default:
		if in.Price.Amount == nil {
			errs.Add("price.amount", "is required")
		} else if a := *in.Price.Amount; a < 0 || a > MaxPrice {
			errs.Add("price.amount", fmt.Sprintf("must be from 0 to %d (minor units)", MaxPrice))
		} else {
			price.Amount = a
		}
		if in.Price.Currency == nil {
			errs.Add("price.currency", "is required")
		} else if c := *in.Price.Currency; !currencyCode.MatchString(c) {
			errs.Add("price.currency", "must be three upper-case letters (ISO 4217)")
		} else {
			price.Currency = c
		}
	}
	var quantity int64
	if in.Quantity == nil {
		errs.Add("quantity", "is required")
	} else if q := *in.Quantity; q < 0 || q > MaxQuantity {
		errs.Add("quantity", fmt.Sprintf("must be from 0 to %d", MaxQuantity))
	} else {
		quantity = q
	}
	return price, quantity, errs.Err()
}

// Reservation states. A reservation row is also the record that a command of its
// order was applied: re-applying one answers the same reply again.
const (
	StateReserved  = "reserved"  // the copies are held until ExpiresAt
	StateRejected  = "rejected"  // the reserve failed; nothing is held
	StateReleased  = "released"  // freed by a release, or a tombstone written by one
	StateExpired   = "expired"   // freed by the sweeper at ExpiresAt
	StateCommitted = "committed" // sold: the copies left the stock
	StateRestocked = "restocked" // the sale was cancelled: the copies are back
)

// Reasons of the replies (docs/orders.md).
const (
	ReasonOutOfStock      = "out_of_stock"
	ReasonNotForSale      = "not_for_sale"
	ReasonMixedCurrencies = "mixed_currencies"
	ReasonReleased        = "released"
	ReasonExpired         = "expired"
	ReasonUnknownOrder    = "unknown_order"
)

// Line is one book of an order and how many copies of it.
type Line struct {
	BookID   string `json:"book_id"`
	Quantity int64  `json:"quantity"`
}

// PricedLine is a reserved line with the unit price it was reserved at.
type PricedLine struct {
	BookID    string `json:"book_id"`
	Quantity  int64  `json:"quantity"`
	UnitPrice Money  `json:"unit_price"`
}

// Reservation is what the service holds for one order.
type Reservation struct {
	OrderID   string
	State     string
	Items     []PricedLine // empty for a rejected reserve and a tombstone
	Total     Money
	ExpiresAt time.Time
	// Reason and BookID say why a reserve was rejected.
	Reason string
	BookID string
	// CommitFailure is the reason a commit of the expired reservation failed:
	// every later commit answers the same, so that a sale the order has given up
	// on is never made after all.
	CommitFailure string
}

// ErrNotFound is the answer for a book with no stock, or one that was deleted.
var ErrNotFound = fault.New(fault.NotFound, "this book has no stock")

// ErrDeleted is the store's answer for a book the book service deleted: it is not
// for sale and its stock cannot be set.
var ErrDeleted = fault.New(fault.Conflict, "the book was deleted; its stock cannot be set")

// ErrStale is returned by Store writes when the item changed since it was read.
var ErrStale = errors.New("stock changed concurrently")

// ErrPreconditionRequired is the answer to a change of an existing item that
// names no version (no If-Match): 428.
var ErrPreconditionRequired = errors.New("a change of existing stock needs If-Match")

// BelowReserved is the error of a quantity that would fall below the copies held.
func BelowReserved(reserved int64) error {
	return &fault.Error{Kind: fault.Conflict,
		Message: fmt.Sprintf("the quantity would fall below the %d copies reserved", reserved),
		Fields:  []fault.FieldError{{Field: "quantity", Message: fmt.Sprintf("must be at least %d, the copies reserved", reserved)}}}
}
