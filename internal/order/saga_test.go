package order_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"folio/internal/order"
	"folio/internal/platform/id"
)

var (
	t0     = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	timing = order.Timing{StepTimeout: 2 * time.Minute, RetryInterval: 5 * time.Second, RetryMax: time.Minute}
)

func ptr[T any](v T) *T { return &v }

// inState returns an order in s, as the saga leaves it on entering s at t0: its
// step's command sent once, and for a compensation what follows it.
func inState(s order.State, then []order.State, outcome order.State) order.Order {
	o := order.Order{
		ID: id.New(), UserID: "u1", State: s, Version: 3,
		Items:     []order.Item{{BookID: id.New(), Quantity: 2}},
		Total:     &order.Money{Amount: 2598, Currency: "EUR"},
		Card:      order.Card{Brand: "visa", Last4: "4242"},
		CreatedAt: t0, UpdatedAt: t0,
		Saga: order.Saga{Then: then, Outcome: outcome, ExpiresAt: t0.Add(time.Hour)},
	}
	if s == order.Pending || s == order.Reserved {
		o.Saga.SealedCard = "x25519:sealed"
	}
	if order.StepOf(s) != "" {
		next := t0.Add(timing.RetryInterval)
		o.Saga.Attempts, o.Saga.StepStartedAt, o.Saga.NextAttemptAt = 1, t0, &next
		if s.Forward() {
			dl := t0.Add(timing.StepTimeout)
			o.Saga.StepDeadline = &dl
		}
	}
	return o
}

// commandTypes lists the types of cmds.
func commandTypes(cmds []order.Command) []string {
	var out []string
	for _, c := range cmds {
		out = append(out, c.Type)
	}
	return out
}

// TestTableWalksEveryRowOfTheContract checks each row of docs/orders.md's state
// table: the state it leads to, the command it sends, the reason recorded and,
// for a compensation, what follows it.
func TestTableWalksEveryRowOfTheContract(t *testing.T) {
	type want struct {
		to      order.State
		cmd     string // "" for none
		reason  string // "" for none
		then    []order.State
		outcome order.State
	}
	tests := []struct {
		from          order.State
		then          []order.State // of the order in from
		outcome       order.State
		on, onReason  string
		want          want
		compensates   string
		answeredAfter bool
	}{
		{from: order.Pending, on: order.ReplyReserved, want: want{to: order.Reserved, cmd: order.CommandAuthorise}},
		{from: order.Pending, on: order.ReplyRejected, onReason: "out_of_stock", want: want{to: order.Rejected, reason: "out_of_stock"}},
		{from: order.Pending, on: order.OnTimeout, want: want{to: order.Releasing, cmd: order.CommandRelease, reason: "inventory_timeout", outcome: order.Rejected}, compensates: "reserve"},
		{from: order.Reserved, on: order.ReplyAuthorised, want: want{to: order.Authorised, cmd: order.CommandCapture}},
		{from: order.Reserved, on: order.ReplyDeclined, onReason: "card_declined", want: want{to: order.Releasing, cmd: order.CommandRelease, reason: "card_declined", outcome: order.PaymentFailed}, compensates: "authorise"},
		{from: order.Reserved, on: order.OnTimeout, want: want{to: order.Voiding, cmd: order.CommandVoid, reason: "payment_timeout", then: []order.State{order.Releasing}, outcome: order.PaymentFailed}, compensates: "authorise"},
		{from: order.Authorised, on: order.ReplyCaptured, want: want{to: order.Paid, cmd: order.CommandCommit}},
		{from: order.Authorised, on: order.ReplyCaptureFailed, onReason: "capture_declined", want: want{to: order.Voiding, cmd: order.CommandVoid, reason: "capture_declined", then: []order.State{order.Releasing}, outcome: order.PaymentFailed}, compensates: "capture"},
		{from: order.Authorised, on: order.OnTimeout, want: want{to: order.Voiding, cmd: order.CommandVoid, reason: "payment_timeout", then: []order.State{order.Releasing}, outcome: order.PaymentFailed}, compensates: "capture"},
		{from: order.Paid, on: order.ReplyCommitted, want: want{to: order.Confirmed}},
		{from: order.Paid, on: order.ReplyCommitFailed, onReason: "expired", want: want{to: order.Refunding, cmd: order.CommandRefund, reason: "stock_unavailable", outcome: order.Cancelled}, compensates: "commit"},
		{from: order.Paid, on: order.OnTimeout, want: want{to: order.Refunding, cmd: order.CommandRefund, reason: "inventory_timeout", then: []order.State{order.Releasing}, outcome: order.Cancelled}, compensates: "commit"},
		{from: order.Confirmed, on: order.OnCancel, want: want{to: order.Refunding, cmd: order.CommandRefund, reason: "cancelled_by_owner", then: []order.State{order.Restocking}, outcome: order.Cancelled}, compensates: "cancel"},
		{from: order.Voiding, then: []order.State{order.Releasing}, outcome: order.PaymentFailed, on: order.ReplyVoided, want: want{to: order.Releasing, cmd: order.CommandRelease, outcome: order.PaymentFailed}},
		{from: order.Refunding, then: []order.State{order.Restocking}, outcome: order.Cancelled, on: order.ReplyRefunded, want: want{to: order.Restocking, cmd: order.CommandRestock, outcome: order.Cancelled}},
		{from: order.Refunding, then: []order.State{order.Releasing}, outcome: order.Cancelled, on: order.ReplyRefunded, want: want{to: order.Releasing, cmd: order.CommandRelease, outcome: order.Cancelled}},
		{from: order.Refunding, outcome: order.Cancelled, on: order.ReplyRefunded, want: want{to: order.Cancelled}},
		{from: order.Restocking, outcome: order.Cancelled, on: order.ReplyRestocked, want: want{to: order.Cancelled}},
		{from: order.Releasing, outcome: order.Rejected, on: order.ReplyReleased, want: want{to: order.Rejected}},
		{from: order.Releasing, outcome: order.PaymentFailed, on: order.ReplyReleased, want: want{to: order.PaymentFailed}},
		{from: order.Releasing, outcome: order.Cancelled, on: order.ReplyReleased, want: want{to: order.Cancelled}},
	}
	covered := map[[2]string]bool{}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s on %s to %s", tt.from, tt.on, tt.want.to), func(t *testing.T) {
			covered[[2]string{string(tt.from), tt.on}] = true
			o := inState(tt.from, tt.then, tt.outcome)
			at := t0.Add(30 * time.Second)
			var ch order.Change
			switch tt.on {
			case order.OnTimeout:
				at = *o.Saga.StepDeadline
				var ok bool
				if ch, ok = timing.OnTimer(o, at); !ok {
					t.Fatal("OnTimer at the deadline: no change")
				}
			case order.OnCancel:
				var err error
				if ch, err = timing.OnCancel(o, at); err != nil {
					t.Fatal(err)
				}
			default:
				var ok bool
				if ch, ok = timing.OnReply(o, order.Reply{Type: tt.on, OrderID: o.ID, Reason: tt.onReason}, at); !ok {
					t.Fatal("the reply was taken as stale")
				}
				if ch.Answered != order.StepOf(tt.from) || ch.Took != 30*time.Second {
					t.Errorf("answered %q after %s, want %q after 30s", ch.Answered, ch.Took, order.StepOf(tt.from))
				}
			}
			n := ch.Order
			if n.State != tt.want.to {
				t.Errorf("state %s, want %s", n.State, tt.want.to)
			}
			var wantCmds []string
			if tt.want.cmd != "" {
				wantCmds = []string{tt.want.cmd}
			}
			if got := commandTypes(ch.Commands); !slices.Equal(got, wantCmds) {
				t.Errorf("commands %q, want %q", got, wantCmds)
			}
			if tt.want.reason != "" && (n.Reason == nil || *n.Reason != tt.want.reason) {
				t.Errorf("reason %v, want %q", n.Reason, tt.want.reason)
			}
			if tt.want.reason == "" && n.Reason != nil {
				t.Errorf("reason %q, want none", *n.Reason)
			}
			if !slices.Equal(n.Saga.Then, tt.want.then) || n.Saga.Outcome != tt.want.outcome {
				t.Errorf("then %v outcome %q, want %v %q", n.Saga.Then, n.Saga.Outcome, tt.want.then, tt.want.outcome)
			}
			if ch.Compensates != tt.compensates {
				t.Errorf("compensates %q, want %q", ch.Compensates, tt.compensates)
			}
			if ch.From != tt.from || ch.FromVersion != o.Version || n.Version != o.Version+1 || !n.UpdatedAt.Equal(at) {
				t.Errorf("from %s v%d to v%d at %s; want from %s v%d, v%d at %s", ch.From, ch.FromVersion, n.Version, n.UpdatedAt, tt.from, o.Version, o.Version+1, at)
			}
			// The step's clock starts again with each command; nothing is awaited
			// once none is sent.
			switch {
			case tt.want.cmd == "":
				if n.Saga.NextAttemptAt != nil || n.Saga.StepDeadline != nil || n.Saga.Attempts != 0 {
					t.Errorf("no command, yet next attempt %v, deadline %v, attempts %d", n.Saga.NextAttemptAt, n.Saga.StepDeadline, n.Saga.Attempts)
				}
			default:
				if n.Saga.Attempts != 1 || !n.Saga.StepStartedAt.Equal(at) || n.Saga.NextAttemptAt == nil || !n.Saga.NextAttemptAt.Equal(at.Add(timing.RetryInterval)) {
					t.Errorf("step started %s, attempts %d, next %v; want %s, 1, %s", n.Saga.StepStartedAt, n.Saga.Attempts, n.Saga.NextAttemptAt, at, at.Add(timing.RetryInterval))
				}
				if fwd := n.State.Forward(); fwd != (n.Saga.StepDeadline != nil) || fwd && !n.Saga.StepDeadline.Equal(at.Add(timing.StepTimeout)) {
					t.Errorf("deadline %v for %s", n.Saga.StepDeadline, n.State)
				}
			}
			// The sealed card is kept only until the authorisation is answered.
			if keep := n.State == order.Pending || n.State == order.Reserved; keep != (n.Saga.SealedCard != "") {
				t.Errorf("in %s the sealed card is %q", n.State, n.Saga.SealedCard)
			}
			// The input is not changed: a change is a new value.
			if o.State != tt.from || o.Version != 3 {
				t.Errorf("the order read was changed: %s v%d", o.State, o.Version)
			}
		})
	}
	for _, r := range order.Table {
		if !covered[[2]string{string(r.From), r.On}] {
			t.Errorf("row %s on %s is not walked", r.From, r.On)
		}
	}
}

// TestStaleRepliesChangeNothing: every reply a state does not wait on, in every
// state, is stale; so is the reply of a row once it moved the order on
// (a duplicate).
func TestStaleRepliesChangeNothing(t *testing.T) {
	waits := map[[2]string]bool{}
	for _, r := range order.Table {
		waits[[2]string{string(r.From), r.On}] = true
	}
	for _, s := range order.States {
		for _, typ := range order.ReplyTypes {
			if waits[[2]string{string(s), typ}] {
				continue
			}
			o := inState(s, nil, order.Cancelled)
			if ch, ok := timing.OnReply(o, order.Reply{Type: typ, OrderID: o.ID, Reason: "expired"}, t0.Add(time.Second)); ok {
				t.Errorf("%s in %s: changed it to %s, want stale", typ, s, ch.Order.State)
			}
		}
	}
	// Each forward reply, delivered twice: the second is stale.
	o := inState(order.Pending, nil, "")
	for i, typ := range []string{order.ReplyReserved, order.ReplyAuthorised, order.ReplyCaptured, order.ReplyCommitted} {
		ch, ok := timing.OnReply(o, order.Reply{Type: typ, OrderID: o.ID}, t0.Add(time.Duration(i+1)*time.Second))
		if !ok {
			t.Fatalf("%s in %s: stale", typ, o.State)
		}
		if _, ok := timing.OnReply(ch.Order, order.Reply{Type: typ, OrderID: o.ID}, t0.Add(time.Hour)); ok {
			t.Errorf("%s again in %s: changed it, want stale", typ, ch.Order.State)
		}
		o = ch.Order
	}
	if o.State != order.Confirmed {
		t.Errorf("after the forward replies: %s, want confirmed", o.State)
	}
	// A reply to an earlier step, arriving late (reordered): stale.
	if _, ok := timing.OnReply(o, order.Reply{Type: order.ReplyReserved, OrderID: o.ID}, t0.Add(time.Hour)); ok {
		t.Error("a late inventory.reserved changed a confirmed order")
	}
	if _, err := timing.OnCancel(inState(order.Paid, nil, ""), t0); err != order.ErrNotCancellable {
		t.Errorf("cancel of a paid order: %v, want ErrNotCancellable", err)
	}
}

// TestReservedRecordsThePrices: inventory.reserved records each item's price and
// the total, which the authorisation then asks for.
func TestReservedRecordsThePrices(t *testing.T) {
	o := inState(order.Pending, nil, "")
	o.Total = nil
	eur := func(n int64) *order.Money { return &order.Money{Amount: n, Currency: "EUR"} }
	ch, ok := timing.OnReply(o, order.Reply{Type: order.ReplyReserved, OrderID: o.ID,
		Items: []order.Item{{BookID: o.Items[0].BookID, Quantity: 2, UnitPrice: eur(1299)}}, Total: eur(2598)}, t0)
	if !ok || !ch.Priced {
		t.Fatalf("ok %v priced %v", ok, ch.Priced)
	}
	if p := ch.Order.Items[0].UnitPrice; p == nil || *p != *eur(1299) || *ch.Order.Total != *eur(2598) {
		t.Errorf("items %+v total %+v", ch.Order.Items, ch.Order.Total)
	}
	if o.Items[0].UnitPrice != nil {
		t.Error("the order read was changed")
	}
	auth := ch.Commands[0].Data.(order.AuthoriseData)
	if auth.OrderID != o.ID || auth.Amount != *eur(2598) || auth.SealedCard != "x25519:sealed" {
		t.Errorf("authorise %+v", auth)
	}
}

// TestTimerResendsWithBackoffThenCompensates walks a forward step with a fixed
// clock: re-sent 5 s, then 10, 20, 40 s apart (doubling up to the max), never past
// the deadline, where it compensates; a compensation is re-sent for ever.
func TestTimerResendsWithBackoffThenCompensates(t *testing.T) {
	o := inState(order.Reserved, nil, "")
	if _, ok := timing.OnTimer(o, t0.Add(4*time.Second)); ok {
		t.Fatal("OnTimer before the next attempt changed the order")
	}
	var gaps []time.Duration
	at := t0
	for o.State == order.Reserved {
		next := *o.Saga.NextAttemptAt
		ch, ok := timing.OnTimer(o, next)
		if !ok {
			t.Fatalf("OnTimer at the next attempt %s: no change", next)
		}
		gaps = append(gaps, next.Sub(at))
		at = next
		if ch.Order.State == order.Reserved {
			if got := commandTypes(ch.Commands); !slices.Equal(got, []string{order.CommandAuthorise}) || ch.Order.Saga.Attempts != o.Saga.Attempts+1 {
				t.Fatalf("re-send: commands %q, attempts %d", got, ch.Order.Saga.Attempts)
			}
			if ch.Order.Saga.NextAttemptAt.After(*o.Saga.StepDeadline) {
				t.Fatalf("next attempt %s past the deadline %s", ch.Order.Saga.NextAttemptAt, o.Saga.StepDeadline)
			}
		}
		o = ch.Order
	}
	s := time.Second
	if want := []time.Duration{5 * s, 10 * s, 20 * s, 40 * s, 45 * s}; !slices.Equal(gaps, want) {
		// Sends at 0, 5, 15, 35 and 75 s; the next would be at 135 s, past the
		// deadline at 120 s, which wakes it to compensate instead.
		t.Errorf("gaps between timer actions %v, want %v", gaps, want)
	}
	if o.State != order.Voiding || !at.Equal(t0.Add(timing.StepTimeout)) {
		t.Fatalf("after the deadline: %s at %s, want voiding at %s", o.State, at, t0.Add(timing.StepTimeout))
	}
	// The compensation has no deadline: re-sent up to a minute apart, for ever.
	for i := 0; i < 12; i++ {
		ch, ok := timing.OnTimer(o, *o.Saga.NextAttemptAt)
		if !ok || ch.Order.State != order.Voiding || ch.Commands[0].Type != order.CommandVoid {
			t.Fatalf("compensation re-send %d: ok %v, %s %q", i, ok, ch.Order.State, commandTypes(ch.Commands))
		}
		if gap := ch.Order.Saga.NextAttemptAt.Sub(*o.Saga.NextAttemptAt); gap > timing.RetryMax {
			t.Errorf("re-send %d: %s until the next, more than the max", i, gap)
		}
		o = ch.Order
	}
	if o.Saga.Attempts != 13 {
		t.Errorf("attempts %d, want 13", o.Saga.Attempts)
	}
	// Final states and confirmed orders wait on nothing.
	for _, s := range []order.State{order.Confirmed, order.Rejected, order.PaymentFailed, order.Cancelled} {
		if _, ok := timing.OnTimer(inState(s, nil, ""), t0.Add(time.Hour)); ok {
			t.Errorf("OnTimer changed a %s order", s)
		}
	}
}

// TestSagaRunsToEveryEnd plays whole sagas, timeouts included, with a fixed clock.
func TestSagaRunsToEveryEnd(t *testing.T) {
	reply := func(typ string) string { return typ }
	tests := []struct {
		name   string
		steps  []string // reply types, OnTimeout or OnCancel
		state  order.State
		reason string
	}{
		{"confirmed", []string{order.ReplyReserved, order.ReplyAuthorised, order.ReplyCaptured, order.ReplyCommitted}, order.Confirmed, ""},
		{"out of stock", []string{order.ReplyRejected}, order.Rejected, "out_of_stock"},
		{"reserve timed out", []string{order.OnTimeout, order.ReplyReleased}, order.Rejected, "inventory_timeout"},
		{"declined", []string{order.ReplyReserved, order.ReplyDeclined, order.ReplyReleased}, order.PaymentFailed, "out_of_stock"},
		{"authorise timed out", []string{order.ReplyReserved, order.OnTimeout, order.ReplyVoided, order.ReplyReleased}, order.PaymentFailed, "payment_timeout"},
		{"capture refused", []string{order.ReplyReserved, order.ReplyAuthorised, order.ReplyCaptureFailed, order.ReplyVoided, order.ReplyReleased}, order.PaymentFailed, "out_of_stock"},
		{"commit failed", []string{order.ReplyReserved, order.ReplyAuthorised, order.ReplyCaptured, order.ReplyCommitFailed, order.ReplyRefunded}, order.Cancelled, "stock_unavailable"},
		{"commit timed out", []string{order.ReplyReserved, order.ReplyAuthorised, order.ReplyCaptured, order.OnTimeout, order.ReplyRefunded, order.ReplyReleased}, order.Cancelled, "inventory_timeout"},
		{"cancelled by the owner", []string{order.ReplyReserved, order.ReplyAuthorised, order.ReplyCaptured, order.ReplyCommitted, order.OnCancel, order.ReplyRefunded, order.ReplyRestocked}, order.Cancelled, "cancelled_by_owner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := inState(order.Pending, nil, "")
			now := t0
			for _, step := range tt.steps {
				now = now.Add(time.Second)
				var ch order.Change
				var ok bool
				switch step {
				case order.OnTimeout:
					now = *o.Saga.StepDeadline
					ch, ok = timing.OnTimer(o, now)
				case order.OnCancel:
					var err error
					ch, err = timing.OnCancel(o, now)
					ok = err == nil
				default:
					ch, ok = timing.OnReply(o, order.Reply{Type: reply(step), OrderID: o.ID, Reason: "out_of_stock"}, now)
				}
				if !ok {
					t.Fatalf("%s in %s: no change", step, o.State)
				}
				o = ch.Order
			}
			if o.State != tt.state || (tt.reason == "") != (o.Reason == nil) || o.Reason != nil && *o.Reason != tt.reason {
				t.Errorf("ended %s (reason %v), want %s (%q)", o.State, o.Reason, tt.state, tt.reason)
			}
			if o.Saga.NextAttemptAt != nil || o.Saga.SealedCard != "" || o.Saga.Then != nil || o.Saga.Outcome != "" {
				t.Errorf("a finished saga keeps %+v", o.Saga)
			}
		})
	}
}

func TestHold(t *testing.T) {
	for _, tc := range []struct{ step, want time.Duration }{
		{2 * time.Minute, 15 * time.Minute}, {7 * time.Minute, 15 * time.Minute}, {10 * time.Minute, 20 * time.Minute},
	} {
		if got := (order.Timing{StepTimeout: tc.step}).Hold(); got != tc.want {
			t.Errorf("Hold with a %s step timeout: %s, want %s", tc.step, got, tc.want)
		}
	}
}
