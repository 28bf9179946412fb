package order

import (
	"slices"
	"time"

	"folio/internal/platform/fault"
)

// Types of the replies the saga waits on (docs/orders.md, Replies).
const (
	ReplyReserved      = "inventory.reserved"
	ReplyRejected      = "inventory.rejected"
	ReplyReleased      = "inventory.released"
	ReplyCommitted     = "inventory.committed"
	ReplyCommitFailed  = "inventory.commit_failed"
	ReplyRestocked     = "inventory.restocked"
	ReplyAuthorised    = "payment.authorised"
	ReplyDeclined      = "payment.declined"
	ReplyCaptured      = "payment.captured"
	ReplyCaptureFailed = "payment.capture_failed"
	ReplyVoided        = "payment.voided"
	ReplyRefunded      = "payment.refunded"
)

// What else a row of the table may be on: not replies, but the timer's and the
// owner's doing.
const (
	OnTimeout = "timeout" // the step's deadline passed
	OnCancel  = "cancel"  // the owner cancelled a confirmed order
)

// Reasons the saga records of its own, and ReasonFromReply, a row's Reason
// that records the reply's.
const (
	ReasonFromReply   = "-"
	ReasonInvTimeout  = "inventory_timeout"
	ReasonPayTimeout  = "payment_timeout"
	ReasonStockGone   = "stock_unavailable"
	ReasonOwnerCancel = "cancelled_by_owner"
)

const (
	// nextOfCompensation is a row's To that means the next state of the
	// compensation: the first of the order's Then, else its Outcome.
	nextOfCompensation = State("")
	// reasonUnknownReply is the reason of a failing reply that gave none.
	reasonUnknownReply = "unknown"
	// compensationByOwner labels a compensation the owner's cancel started.
	compensationByOwner = "cancel"
)

// ReplyTypes lists the replies the order service consumes.
var ReplyTypes = []string{
	ReplyReserved, ReplyRejected, ReplyReleased, ReplyCommitted, ReplyCommitFailed, ReplyRestocked,
	ReplyAuthorised, ReplyDeclined, ReplyCaptured, ReplyCaptureFailed, ReplyVoided, ReplyRefunded,
}

// Reply is an answer of the inventory or payment service, as far as the saga
// reads it.
type Reply struct {
	Type    string
	OrderID string
	// Reason is the failing replies' reason.
	Reason string
	// Items and Total are inventory.reserved's prices.
	Items []Item
	Total *Money
}

// Row is one row of the state table of docs/orders.md: an order in From that
// hears On moves to To (nextOfCompensation: the next state of its compensation)
// and sends To's command. A row that starts a compensation sets what follows To
// (Then) and where it all ends (Outcome, for the Reason).
type Row struct {
	From    State
	On      string
	To      State
	Then    []State
	Outcome State
	Reason  string
}

// Table is the saga, row by row as docs/orders.md lists it. Any (state, reply)
// pair not in it is stale: it changes nothing.
var Table = []Row{
	{From: Pending, On: ReplyReserved, To: Reserved},
	{From: Pending, On: ReplyRejected, To: Rejected, Reason: ReasonFromReply},
	{From: Pending, On: OnTimeout, To: Releasing, Outcome: Rejected, Reason: ReasonInvTimeout},
	{From: Reserved, On: ReplyAuthorised, To: Authorised},
	{From: Reserved, On: ReplyDeclined, To: Releasing, Outcome: PaymentFailed, Reason: ReasonFromReply},
	{From: Reserved, On: OnTimeout, To: Voiding, Then: []State{Releasing}, Outcome: PaymentFailed, Reason: ReasonPayTimeout},
	{From: Authorised, On: ReplyCaptured, To: Paid},
	{From: Authorised, On: ReplyCaptureFailed, To: Voiding, Then: []State{Releasing}, Outcome: PaymentFailed, Reason: ReasonFromReply},
	{From: Authorised, On: OnTimeout, To: Voiding, Then: []State{Releasing}, Outcome: PaymentFailed, Reason: ReasonPayTimeout},
	{From: Paid, On: ReplyCommitted, To: Confirmed},
	{From: Paid, On: ReplyCommitFailed, To: Refunding, Outcome: Cancelled, Reason: ReasonStockGone},
	{From: Paid, On: OnTimeout, To: Refunding, Then: []State{Releasing}, Outcome: Cancelled, Reason: ReasonInvTimeout},
	{From: Confirmed, On: OnCancel, To: Refunding, Then: []State{Restocking}, Outcome: Cancelled, Reason: ReasonOwnerCancel},
	{From: Voiding, On: ReplyVoided, To: nextOfCompensation},
	{From: Refunding, On: ReplyRefunded, To: nextOfCompensation},
	{From: Restocking, On: ReplyRestocked, To: nextOfCompensation},
	{From: Releasing, On: ReplyReleased, To: nextOfCompensation},
}

// row finds the row of (from, on).
func row(from State, on string) (Row, bool) {
	i := slices.IndexFunc(Table, func(r Row) bool { return r.From == from && r.On == on })
	if i < 0 {
		return Row{}, false
	}
	return Table[i], true
}

// Timing is the saga's clock policy (docs/orders.md, Timeouts).
type Timing struct {
	// StepTimeout bounds the wait on a forward step's reply.
	StepTimeout time.Duration
	// RetryInterval is the wait before the first re-send of a command; each
	// further one doubles it, up to RetryMax.
	RetryInterval time.Duration
	RetryMax      time.Duration
}

// DefaultTiming is docs/orders.md's: 2 min per step, re-sent after 5 s doubling
// up to 1 min.
var DefaultTiming = Timing{StepTimeout: 2 * time.Minute, RetryInterval: 5 * time.Second, RetryMax: time.Minute}

// MinHold is the least time a reservation is held before it expires.
const MinHold = 15 * time.Minute

// Hold is how long after an order is placed its reservation expires: twice the
// step timeout, at least MinHold.
func (t Timing) Hold() time.Duration { return max(2*t.StepTimeout, MinHold) }

// retryAfter is the wait after the given number of sends of a command.
func (t Timing) retryAfter(sends int) time.Duration {
	d := t.RetryInterval
	for i := 1; i < sends && d < t.RetryMax; i++ {
		d *= 2
	}
	return min(d, t.RetryMax)
}

// Change is one step of an order's saga: the order after it, and what to send.
type Change struct {
	// From and FromVersion are the order's state and version before the change.
	From        State
	FromVersion int
	Order       Order
	Commands    []Command
	// Priced says that the items' prices and the total were recorded.
	Priced bool
	// Answered is the step whose reply made the change, and Took how long after
	// its first send the reply came; "" for a change not made by a reply.
	Answered Step
	Took     time.Duration
	// Compensates names the step whose failure or timeout started a
	// compensation (or "cancel"), "" when the change starts none.
	Compensates string
}

// OnReply is the change r makes to o at now, and false when r is stale for o.
func (t Timing) OnReply(o Order, r Reply, now time.Time) (Change, bool) {
	rw, ok := row(o.State, r.Type)
	if !ok {
		return Change{}, false
	}
	if r.Type == ReplyReserved {
		// Recorded before the move: the authorisation asks for the total.
		o.Items, o.Total = priced(o.Items, r.Items), r.Total
	}
	ch := t.apply(o, rw, r.Reason, now)
	ch.Priced = r.Type == ReplyReserved
	ch.Answered, ch.Took = StepOf(o.State), now.Sub(o.Saga.StepStartedAt)
	return ch, true
}

// OnTimer is what the timer does to o at now: nothing (false) before its next
// attempt; past a forward step's deadline, the step's compensation; else the
// step's command again.
func (t Timing) OnTimer(o Order, now time.Time) (Change, bool) {
	next := o.Saga.NextAttemptAt
	if next == nil || now.Before(*next) {
		return Change{}, false
	}
	if dl := o.Saga.StepDeadline; o.State.Forward() && dl != nil && !now.Before(*dl) {
		rw, _ := row(o.State, OnTimeout)
		return t.apply(o, rw, "", now), true
	}
	ch := Change{From: o.State, FromVersion: o.Version, Order: o}
	n := &ch.Order
	n.Version++
	n.Saga.Attempts++
	at := now.Add(t.retryAfter(n.Saga.Attempts))
	if dl := n.Saga.StepDeadline; dl != nil && at.After(*dl) {
		at = *dl // wake at the deadline, to compensate on time
	}
	n.Saga.NextAttemptAt = &at
	c, _ := command(*n)
	ch.Commands = []Command{c}
	return ch, true
}

// ErrNotCancellable is the answer to a cancel of an order still in its saga or
// already over.
var ErrNotCancellable = fault.New(fault.Conflict, "only a confirmed order can be cancelled; this one is not")

// OnCancel is the change the owner's cancel makes to o at now. Errors:
// ErrNotCancellable unless o is confirmed.
func (t Timing) OnCancel(o Order, now time.Time) (Change, error) {
	rw, ok := row(o.State, OnCancel)
	if !ok {
		return Change{}, ErrNotCancellable
	}
	return t.apply(o, rw, "", now), nil
}

// apply moves o along rw at now, reason being the reply's.
func (t Timing) apply(o Order, rw Row, reason string, now time.Time) Change {
	ch := Change{From: o.State, FromVersion: o.Version, Order: o}
	n := &ch.Order
	n.Version++
	n.UpdatedAt = now
	if rw.Outcome != "" {
		// A compensation starts.
		n.Saga.Then, n.Saga.Outcome = slices.Clone(rw.Then), rw.Outcome
		if step := StepOf(o.State); rw.On == OnCancel {
			ch.Compensates = compensationByOwner
		} else {
			ch.Compensates = string(step)
		}
	}
	if rw.Reason != "" {
		why := rw.Reason
		if why == ReasonFromReply {
			why = reason
			if why == "" {
				why = reasonUnknownReply
			}
		}
		n.Reason = &why
	}
	to := rw.To
	if to == nextOfCompensation {
		if len(n.Saga.Then) > 0 {
			to, n.Saga.Then = n.Saga.Then[0], n.Saga.Then[1:]
		} else {
			to = n.Saga.Outcome
		}
	}
	n.State = to
	if to != Pending && to != Reserved {
		// The authorisation is answered, or will never be asked for.
		n.Saga.SealedCard = ""
	}
	n.Saga.Attempts, n.Saga.NextAttemptAt, n.Saga.StepDeadline = 0, nil, nil
	if c, ok := command(*n); ok {
		ch.Commands = []Command{c}
		start(n, t, now)
	}
	if to.Final() {
		n.Saga.Then, n.Saga.Outcome = nil, ""
	}
	return ch
}

// start records the first send of the step n's state waits on, at now.
func start(n *Order, t Timing, now time.Time) {
	n.Saga.Attempts, n.Saga.StepStartedAt = 1, now
	next := now.Add(t.retryAfter(1))
	if n.State.Forward() {
		dl := now.Add(t.StepTimeout)
		n.Saga.StepDeadline = &dl
		if next.After(dl) {
			next = dl
		}
	}
	n.Saga.NextAttemptAt = &next
}

// priced returns items with the unit prices of the reserved ones.
func priced(items, reserved []Item) []Item {
	out := slices.Clone(items)
	for i := range out {
		for _, r := range reserved {
			if r.BookID == out[i].BookID && r.UnitPrice != nil {
				p := *r.UnitPrice
				out[i].UnitPrice = &p
			}
		}
	}
	return out
}
