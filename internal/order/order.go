// Package order is the domain of the order service: the Order resource, the rules
// of placing one, the saga that carries it through the inventory and payment
// services (docs/orders.md), and the interfaces of what it needs (Store, Metrics).
// It knows nothing of HTTP, SQL or the broker.
package order

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
)

// State is where an order is in its saga.
type State string

// The states of docs/orders.md.
const (
	Pending       State = "pending"
	Reserved      State = "reserved"
	Authorised    State = "authorised"
	Paid          State = "paid"
	Confirmed     State = "confirmed"
	Voiding       State = "voiding"
	Refunding     State = "refunding"
	Restocking    State = "restocking"
	Releasing     State = "releasing"
	Rejected      State = "rejected"
	PaymentFailed State = "payment_failed"
	Cancelled     State = "cancelled"
)

// States lists every state, forward path first.
var States = []State{Pending, Reserved, Authorised, Paid, Confirmed, Voiding, Refunding, Restocking, Releasing, Rejected, PaymentFailed, Cancelled}

// Final reports whether the saga of an order in s has ended (confirmed is final
// too, though its owner may cancel it).
func (s State) Final() bool {
	return s == Confirmed || s == Rejected || s == PaymentFailed || s == Cancelled
}

// Forward reports whether s waits on a forward step, which times out.
func (s State) Forward() bool {
	return s == Pending || s == Reserved || s == Authorised || s == Paid
}

// Compensating reports whether s waits on a compensation, which never times out.
func (s State) Compensating() bool {
	return s == Voiding || s == Refunding || s == Restocking || s == Releasing
}

// Event is the type of the event every change into s writes: order.<state>.
func (s State) Event() string { return "order." + string(s) }

// Money is an amount in a currency's minor unit.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Item is one line of an order; UnitPrice is known once the stock is reserved.
type Item struct {
	BookID    string `json:"book_id"`
	Quantity  int    `json:"quantity"`
	UnitPrice *Money `json:"unit_price"`
}

// Card is what the order shows of the card it is paid with.
type Card struct {
	Brand string `json:"brand"`
	Last4 string `json:"last4"`
}

// Order is the resource the service owns, as GET /orders/{id} shows it and as its
// events carry it. Saga is the service's own bookkeeping, never shown.
type Order struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	State     State     `json:"state"`
	Items     []Item    `json:"items"`
	Total     *Money    `json:"total"`
	Card      Card      `json:"card"`
	Reason    *string   `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Version   int       `json:"version"`

	Saga Saga `json:"-"`
}

// Saga is where an order's saga stands: the step it waits on is its state's
// (StepOf), sent Attempts times since StepStartedAt.
type Saga struct {
	// Attempts counts the sends of the current step's command.
	Attempts int
	// StepStartedAt is when the current step's command was first sent.
	StepStartedAt time.Time
	// NextAttemptAt is when the timer next looks at the order: to send the
	// command again or, past StepDeadline, to compensate. Nil once nothing is
	// awaited.
	NextAttemptAt *time.Time
	// StepDeadline is when a forward step gives up; nil for compensations.
	StepDeadline *time.Time
	// Then lists the compensation states still to go through after the current
	// one, and Outcome is the final state they lead to ("" on the forward path).
	Then    []State
	Outcome State
	// SealedCard is the card sealed to the payment service, kept until the
	// authorisation is answered, then erased ("").
	SealedCard string
	// ExpiresAt is when the inventory frees the reservation on its own.
	ExpiresAt time.Time
}

// Step names the command a state waits on the answer to.
type Step string

// The saga's steps: forward ones, then compensations.
const (
	StepReserve   Step = "reserve"
	StepAuthorise Step = "authorise"
	StepCapture   Step = "capture"
	StepCommit    Step = "commit"
	StepVoid      Step = "void"
	StepRefund    Step = "refund"
	StepRestock   Step = "restock"
	StepRelease   Step = "release"
)

// StepOf returns the step an order in s waits on, "" when it waits on none.
func StepOf(s State) Step {
	return stateSteps[s]
}

var stateSteps = map[State]Step{
	Pending: StepReserve, Reserved: StepAuthorise, Authorised: StepCapture, Paid: StepCommit,
	Voiding: StepVoid, Refunding: StepRefund, Restocking: StepRestock, Releasing: StepRelease,
}

// Types of the commands the saga sends (docs/orders.md, Commands).
const (
	CommandReserve   = "order.stock.reserve"
	CommandRelease   = "order.stock.release"
	CommandCommit    = "order.stock.commit"
	CommandRestock   = "order.stock.restock"
	CommandAuthorise = "order.payment.authorise"
	CommandCapture   = "order.payment.capture"
	CommandVoid      = "order.payment.void"
	CommandRefund    = "order.payment.refund"
)

var stepCommands = map[Step]string{
	StepReserve: CommandReserve, StepAuthorise: CommandAuthorise, StepCapture: CommandCapture, StepCommit: CommandCommit,
	StepVoid: CommandVoid, StepRefund: CommandRefund, StepRestock: CommandRestock, StepRelease: CommandRelease,
}

// Command is a message the saga sends to the inventory or payment service,
// through the outbox in the transaction of the change that decided it.
type Command struct {
	Type string
	Data any
}

// OrderRef is the data of the commands that need only the order's id.
type OrderRef struct {
	OrderID string `json:"order_id"`
}

// ReserveData is the data of order.stock.reserve.
type ReserveData struct {
	OrderID   string        `json:"order_id"`
	Items     []ReserveItem `json:"items"`
	ExpiresAt time.Time     `json:"expires_at"`
}

// ReserveItem is one line of a reservation.
type ReserveItem struct {
	BookID   string `json:"book_id"`
	Quantity int    `json:"quantity"`
}

// AuthoriseData is the data of order.payment.authorise.
type AuthoriseData struct {
	OrderID    string `json:"order_id"`
	Amount     Money  `json:"amount"`
	SealedCard string `json:"sealed_card"`
}

// command is the command of the step o's state waits on.
func command(o Order) (Command, bool) {
	step := StepOf(o.State)
	if step == "" {
		return Command{}, false
	}
	c := Command{Type: stepCommands[step], Data: OrderRef{OrderID: o.ID}}
	switch step {
	case StepReserve:
		d := ReserveData{OrderID: o.ID, ExpiresAt: o.Saga.ExpiresAt}
		for _, it := range o.Items {
			d.Items = append(d.Items, ReserveItem{BookID: it.BookID, Quantity: it.Quantity})
		}
		c.Data = d
	case StepAuthorise:
		var amount Money
		if o.Total != nil {
			amount = *o.Total
		}
		c.Data = AuthoriseData{OrderID: o.ID, Amount: amount, SealedCard: o.Saga.SealedCard}
	}
	return c, true
}

// Store keeps orders (package sqlstore). Writes return ErrStale when the order's
// version moved on since it was read, and change nothing then.
type Store interface {
	// Create stores o, its order.pending event and cmds in one transaction, with
	// the answer of an idempotent request (idempotency.Save).
	Create(ctx context.Context, o Order, cmds []Command) error
	// Get returns the order with id. Errors: ErrNotFound.
	Get(ctx context.Context, id string) (Order, error)
	// List returns up to page.Fetch() orders of the user after page.After, by id.
	List(ctx context.Context, userID string, page paging.Request) ([]Order, error)
	// Advance writes ch.Order if the stored one is still at ch.FromVersion, with
	// its state's event when the state changed and ch.Commands, in one
	// transaction. Errors: ErrNotFound, ErrStale.
	Advance(ctx context.Context, ch Change) error
	// Due returns up to limit orders whose NextAttemptAt is not after now, the
	// most overdue first.
	Due(ctx context.Context, now time.Time, limit int) ([]Order, error)
	// Stuck counts the orders waiting on a compensation first sent before since.
	Stuck(ctx context.Context, since time.Time) (int, error)
}

// ErrStale is returned by Store writes when the order changed since it was read.
var ErrStale = errors.New("order changed concurrently")

// ErrNotFound is what the service and its store answer for an order that does not
// exist, or that the caller may not see.
var ErrNotFound = fault.New(fault.NotFound, "no order has this id")

// Limits of an order.
const (
	MaxItems    = 20
	MaxQuantity = 100
)

// Input is an order as a client places it.
type Input struct {
	Items []ItemInput
	Card  CardInput
}

// ItemInput is one line of an order as a client writes it.
type ItemInput struct {
	BookID   string
	Quantity int
}

// CardInput is a card as a client gives it; it is checked, sealed and dropped.
type CardInput struct {
	Number string
	Expiry string
	CVC    string
}

// validate checks in against every rule at now and returns its items and card
// digits, or an Invalid error naming each broken field.
func (in Input) validate(now time.Time) ([]Item, string, error) {
	var errs fault.Fields
	switch n := len(in.Items); {
	case n == 0:
		errs.Add("items", "must list at least one book")
	case n > MaxItems:
		errs.Add("items", fmt.Sprintf("must list at most %d books", MaxItems))
	}
	seen := map[string]bool{}
	items := make([]Item, 0, len(in.Items))
	for i, it := range in.Items {
		field := "items[" + strconv.Itoa(i) + "]"
		bookID := strings.TrimSpace(it.BookID)
		switch {
		case bookID == "":
			errs.Add(field+".book_id", "is required")
		case !id.Valid(bookID):
			errs.Add(field+".book_id", "must be a book id")
		case seen[bookID]:
			errs.Add(field+".book_id", "is listed twice; give its quantity once")
		}
		seen[bookID] = true
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			errs.Add(field+".quantity", fmt.Sprintf("must be from 1 to %d", MaxQuantity))
		}
		items = append(items, Item{BookID: bookID, Quantity: it.Quantity})
	}
	digits := checkCard(in.Card, now, &errs)
	return items, digits, errs.Err()
}

// checkCard checks c (docs/orders.md: Luhn, 12 to 19 digits, an expiry not past,
// a 3 or 4 digit cvc), adding what is wrong to errs, and returns its digits.
func checkCard(c CardInput, now time.Time, errs *fault.Fields) string {
	const prefix = "payment.card."
	digits := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, c.Number)
	switch {
	case digits == "":
		errs.Add(prefix+"number", "is required")
	case !allDigits(digits) || len(digits) < 12 || len(digits) > 19:
		errs.Add(prefix+"number", "must be 12 to 19 digits")
	case !luhn(digits):
		errs.Add(prefix+"number", "is not a valid card number")
	}
	if msg := checkExpiry(c.Expiry, now); msg != "" {
		errs.Add(prefix+"expiry", msg)
	}
	if n := len(c.CVC); n < 3 || n > 4 || !allDigits(c.CVC) {
		errs.Add(prefix+"cvc", "must be 3 or 4 digits")
	}
	return digits
}

// checkExpiry returns what is wrong with an MM/YY expiry at now, "" when nothing
// is: a card is good until the end of its month.
func checkExpiry(e string, now time.Time) string {
	mm, yy, ok := strings.Cut(e, "/")
	if !ok || len(mm) != 2 || len(yy) != 2 || !allDigits(mm) || !allDigits(yy) {
		return "must be MM/YY"
	}
	month, _ := strconv.Atoi(mm)
	year, _ := strconv.Atoi(yy)
	if month < 1 || month > 12 {
		return "must be MM/YY"
	}
	end := time.Date(2000+year, time.Month(month)+1, 1, 0, 0, 0, 0, time.UTC)
	if !now.Before(end) {
		return "is past"
	}
	return ""
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// luhn reports whether the digits pass the Luhn check.
func luhn(digits string) bool {
	sum, double := 0, false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
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

// brand names the card network of a card number by its leading digits, as the
// payment service names it: visa, mastercard, amex, or card for any other.
func brand(digits string) string {
	two, _ := strconv.Atoi(digits[:2])
	four, _ := strconv.Atoi(digits[:4])
	switch {
	case digits[0] == '4':
		return "visa"
	case two == 34 || two == 37:
		return "amex"
	case (two >= 51 && two <= 55) || (four >= 2221 && four <= 2720):
		return "mastercard"
	default:
		return "card"
	}
}
