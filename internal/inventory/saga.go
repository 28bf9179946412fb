package inventory

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"folio/internal/platform/id"
)

// Types of the order saga's commands the service applies (docs/orders.md).
const (
	CommandReserve = "order.stock.reserve"
	CommandRelease = "order.stock.release"
	CommandCommit  = "order.stock.commit"
	CommandRestock = "order.stock.restock"
)

// Types of the replies the service sends, one per command applied.
const (
	EventReserved     = "inventory.reserved"
	EventRejected     = "inventory.rejected"
	EventReleased     = "inventory.released"
	EventCommitted    = "inventory.committed"
	EventCommitFailed = "inventory.commit_failed"
	EventRestocked    = "inventory.restocked"
)

// Command is one command of the order saga, checked.
type Command struct {
	Type    string
	OrderID string
	// Items and ExpiresAt are a reserve's: the lines by book id, one per book.
	Items     []Line
	ExpiresAt time.Time
}

// ParseCommand reads the data of a command of type typ. The lines of a reserve
// come back one per book (quantities of a book named twice added up) in book id
// order, the order in which a reserve takes the rows, so that two reserves never
// wait for each other's rows crosswise. Errors: data that is not a valid command.
func ParseCommand(typ string, data []byte) (Command, error) {
	var in struct {
		OrderID   string    `json:"order_id"`
		Items     []Line    `json:"items"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return Command{}, fmt.Errorf("malformed %s: %w", typ, err)
	}
	if !id.Valid(in.OrderID) {
		return Command{}, fmt.Errorf("malformed %s: order id %q is not an id", typ, in.OrderID)
	}
	c := Command{Type: typ, OrderID: in.OrderID}
	switch typ {
	case CommandRelease, CommandCommit, CommandRestock:
		return c, nil
	case CommandReserve:
	default:
		return Command{}, fmt.Errorf("%q is not a stock command", typ)
	}
	if len(in.Items) == 0 || len(in.Items) > MaxOrderLines {
		return Command{}, fmt.Errorf("malformed %s: %d items, want 1 to %d", typ, len(in.Items), MaxOrderLines)
	}
	if in.ExpiresAt.IsZero() {
		return Command{}, fmt.Errorf("malformed %s: expires_at is required", typ)
	}
	byBook := map[string]int64{}
	for _, l := range in.Items {
		if !id.Valid(l.BookID) {
			return Command{}, fmt.Errorf("malformed %s: book id %q is not an id", typ, l.BookID)
		}
		if l.Quantity < 1 || l.Quantity > MaxQuantity {
			return Command{}, fmt.Errorf("malformed %s: quantity %d of %s is not from 1 to %d", typ, l.Quantity, l.BookID, MaxQuantity)
		}
		byBook[l.BookID] += l.Quantity
	}
	for b, q := range byBook {
		if q > MaxQuantity {
			return Command{}, fmt.Errorf("malformed %s: quantity %d of %s is over %d", typ, q, b, MaxQuantity)
		}
		c.Items = append(c.Items, Line{BookID: b, Quantity: q})
	}
	slices.SortFunc(c.Items, func(a, b Line) int { return cmp.Compare(a.BookID, b.BookID) })
	c.ExpiresAt = in.ExpiresAt.UTC()
	return c, nil
}

// Reply is an event the service answers a command with.
type Reply struct {
	Type string
	Data any
}

// Outcome is what applying a command came to: the reply, and whether the command
// changed anything (false for one applied before, answered again).
type Outcome struct {
	Reply   Reply
	Changed bool
}

// Result is the label of the outcome for metrics: the reply type without its
// "inventory." ("reserved", "commit_failed").
func (o Outcome) Result() string { return o.Reply.Type[len("inventory."):] }

type orderData struct {
	OrderID string `json:"order_id"`
}

type reasonData struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

type rejectedData struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
	BookID  string `json:"book_id,omitempty"`
}

type reservedData struct {
	OrderID   string       `json:"order_id"`
	Items     []PricedLine `json:"items"`
	Total     Money        `json:"total"`
	ExpiresAt time.Time    `json:"expires_at"`
}

// ReservedReply is the answer to a reserve that holds every line of r.
func ReservedReply(r Reservation) Reply {
	return Reply{EventReserved, reservedData{OrderID: r.OrderID, Items: r.Items, Total: r.Total, ExpiresAt: r.ExpiresAt}}
}

// RejectedReply is the answer to a reserve that holds nothing; bookID is the book
// that is the reason, "" when no one book is.
func RejectedReply(orderID, reason, bookID string) Reply {
	return Reply{EventRejected, rejectedData{OrderID: orderID, Reason: reason, BookID: bookID}}
}

// ReleasedReply is the answer to a release, and what the sweeper sends for an
// expired reservation (reason ReasonExpired).
func ReleasedReply(orderID, reason string) Reply {
	return Reply{EventReleased, reasonData{OrderID: orderID, Reason: reason}}
}

// CommittedReply is the answer to a commit that made the sale.
func CommittedReply(orderID string) Reply { return Reply{EventCommitted, orderData{orderID}} }

// CommitFailedReply is the answer to a commit that could not make the sale.
func CommitFailedReply(orderID, reason string) Reply {
	return Reply{EventCommitFailed, reasonData{OrderID: orderID, Reason: reason}}
}

// RestockedReply is the answer to a restock.
func RestockedReply(orderID string) Reply { return Reply{EventRestocked, orderData{orderID}} }

// Priced returns the lines with their prices (prices[i] is lines[i]'s) and their
// total, or the reason ReasonMixedCurrencies when the prices are not all in one
// currency.
func Priced(lines []Line, prices []Money) ([]PricedLine, Money, string) {
	out := make([]PricedLine, len(lines))
	var total Money
	for i, l := range lines {
		p := prices[i]
		if i == 0 {
			total.Currency = p.Currency
		} else if p.Currency != total.Currency {
			return nil, Money{}, ReasonMixedCurrencies
		}
		out[i] = PricedLine{BookID: l.BookID, Quantity: l.Quantity, UnitPrice: p}
		total.Amount += p.Amount * l.Quantity
	}
	return out, total, ""
}
