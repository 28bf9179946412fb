package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"folio/internal/platform/id"
	"folio/internal/platform/secrets"
)

// Store is what the service reads payments from (sqlstore.Store); commands are
// applied by the store in the transaction of the inbox that received them.
type Store interface {
	// Get returns the payment of the order with its ledger. Errors: ErrNotFound.
	Get(ctx context.Context, orderID string) (Payment, error)
}

// Opener opens the cards the order service sealed to the service's public key
// (secrets.Recipient).
type Opener interface {
	Open(sealed string) ([]byte, error)
}

// Config holds the service's settings.
type Config struct {
	// SlowDelay is how long the slow test card's authorisation waits.
	SlowDelay time.Duration
	// Log, if not nil, is told of what an operator must mend: cards sealed to
	// another key than the service's.
	Log *slog.Logger
}

// Service applies the payment rules: it decides what each command of the order
// saga does to a payment, and what the reply is.
type Service struct {
	store Store
	cards Opener
	cfg   Config
	now   func() time.Time
}

// NewService returns the service over store, opening cards with cards.
func NewService(store Store, cards Opener, cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, cards: cards, cfg: cfg, now: time.Now}
}

func (s *Service) timestamp() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Get returns the payment of the order with id orderID. Errors: ErrNotFound.
func (s *Service) Get(ctx context.Context, orderID string) (Payment, error) {
	if !id.Valid(orderID) {
		return Payment{}, ErrNotFound
	}
	return s.store.Get(ctx, orderID)
}

// SlowAuthorisation reports whether cmd authorises the slow test card for an
// order that has no payment yet: one the payment network answers only after the
// slow delay (WaitSlowDelay). Errors: the store's.
func (s *Service) SlowAuthorisation(ctx context.Context, cmd Command) (bool, error) {
	if cmd.Type != CommandAuthorise || s.cfg.SlowDelay <= 0 {
		return false, nil
	}
	card, err := s.openCard(cmd.SealedCard)
	if err != nil || card.Behaviour() != ApproveSlowly {
		return false, nil
	}
	if _, err := s.store.Get(ctx, cmd.OrderID); err == nil {
		return false, nil // answered before: the answer is sent again at once
	} else if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	return true, nil
}

// WaitSlowDelay waits the slow delay, as a slow payment network would answer, and
// returns nil, or ctx's error if ctx ends first. The caller waits before the
// command's transaction, so that it holds nothing meanwhile.
func (s *Service) WaitSlowDelay(ctx context.Context) error {
	t := time.NewTimer(s.cfg.SlowDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// openCard opens and checks a sealed card. The error says which rule failed,
// never the number.
func (s *Service) openCard(sealed string) (Card, error) {
	plain, err := s.cards.Open(sealed)
	if err != nil {
		return Card{}, fmt.Errorf("card: cannot be opened: %w", err)
	}
	return ParseCard(plain, s.now())
}

// Decide returns what cmd does to cur, the order's payment (nil when it has
// none). Every command is idempotent by order: one applied before changes nothing
// and is answered with the same reply again. Errors: a command that cannot be
// read (Command.Check).
func (s *Service) Decide(cur *Payment, cmd Command) (Outcome, error) {
	if err := cmd.Check(); err != nil {
		return Outcome{}, err
	}
	if cur != nil && cur.OrderID != cmd.OrderID {
		return Outcome{}, fmt.Errorf("%s of order %s: given the payment of order %s", cmd.Type, cmd.OrderID, cur.OrderID)
	}
	now := s.timestamp()
	switch cmd.Type {
	case CommandAuthorise:
		return s.authorise(cur, cmd, now), nil
	case CommandCapture:
		return capture(cur, cmd.OrderID, now), nil
	case CommandVoid:
		return void(cur, cmd.OrderID, now), nil
	default:
		return refund(cur, cmd.OrderID, now), nil
	}
}

// authorise authorises the amount on the card, or declines it. A second
// authorise answers as the first did; one after a tombstone is declined.
func (s *Service) authorise(cur *Payment, cmd Command, now time.Time) Outcome {
	if cur != nil {
		return Outcome{Reply: authoriseReply(cur)}
	}
	p := &Payment{ID: id.New(), OrderID: cmd.OrderID, Amount: cmd.Amount, CreatedAt: now, UpdatedAt: now, Version: 1}
	card, err := s.openCard(cmd.SealedCard)
	switch {
	case err != nil:
		p.State, p.DeclineReason = StateDeclined, ReasonInvalidCard
		if errors.Is(err, secrets.ErrOtherKey) {
			// Every order is declined so until it is mended: the buyer sees an
			// invalid card, the operator must see why.
			s.cfg.Log.Error("card sealed to another key than this service's, declined: the order service's FOLIO_PAYMENT_CARD_PUBLIC_KEY must be this service's public key (payment --card-public-key prints it)",
				"order_id", cmd.OrderID, "error", err)
		}
	case card.Behaviour() == DeclineCard:
		p.State, p.DeclineReason = StateDeclined, ReasonCardDeclined
	case card.Behaviour() == DeclineFunds:
		p.State, p.DeclineReason = StateDeclined, ReasonInsufficientFunds
	default:
		p.State = StateAuthorised
		p.CaptureRefused = card.Behaviour() == RefuseCapture
		p.Entries = []Entry{{Kind: EntryAuthorise, Amount: cmd.Amount.Amount, At: now}}
	}
	if err == nil {
		ref := card.Ref(id.New())
		p.Card = &ref
	}
	return Outcome{Payment: p, Entries: p.Entries, Reply: authoriseReply(p)}
}

func authoriseReply(p *Payment) Reply {
	switch {
	case p.has(EntryAuthorise):
		a := Authorised{OrderID: p.OrderID, PaymentID: p.ID, Amount: p.Amount}
		if p.Card != nil {
			a.Card = CardSummary{Brand: p.Card.Brand, Last4: p.Card.Last4}
		}
		return Reply{Type: ReplyAuthorised, Data: a}
	case p.State == StateDeclined:
		return Reply{Type: ReplyDeclined, Data: Failed{OrderID: p.OrderID, Reason: p.DeclineReason}}
	default: // a tombstone
		return Reply{Type: ReplyDeclined, Data: Failed{OrderID: p.OrderID, Reason: ReasonVoided}}
	}
}

// capture captures the authorised amount of an authorised payment. A payment
// captured before is answered as captured again; the test card that refuses
// captures leaves the authorisation as it is.
func capture(cur *Payment, orderID string, now time.Time) Outcome {
	switch {
	case cur != nil && cur.has(EntryCapture):
		return Outcome{Reply: Reply{Type: ReplyCaptured, Data: Captured{OrderID: orderID, Amount: cur.money(cur.Captured)}}}
	case cur == nil || cur.State != StateAuthorised:
		return Outcome{Reply: Reply{Type: ReplyCaptureFailed, Data: Failed{OrderID: orderID, Reason: ReasonNotAuthorised}}}
	case cur.CaptureRefused:
		return Outcome{Reply: Reply{Type: ReplyCaptureFailed, Data: Failed{OrderID: orderID, Reason: ReasonCaptureDeclined}}}
	}
	e := Entry{Kind: EntryCapture, Amount: cur.Amount.Amount, At: now}
	p := cur.next(StateCaptured, now, e)
	return Outcome{Payment: p, Entries: []Entry{e}, Reply: Reply{Type: ReplyCaptured, Data: Captured{OrderID: orderID, Amount: p.money(p.Captured)}}}
}

// void releases an authorisation, or refunds a capture and then voids; with no
// payment it writes a tombstone, which declines a later authorise.
func void(cur *Payment, orderID string, now time.Time) Outcome {
	var e Entry
	switch {
	case cur == nil:
		p := tombstone(orderID, now)
		return Outcome{Payment: p, Reply: Reply{Type: ReplyVoided, Data: Voided{OrderID: orderID, Refunded: p.money(0)}}}
	case cur.State == StateAuthorised:
		e = Entry{Kind: EntryVoid, Amount: cur.Amount.Amount, At: now}
	case cur.State == StateCaptured:
		e = Entry{Kind: EntryRefund, Amount: cur.Captured, At: now}
	default: // voided, refunded or declined: nothing left to release
		return Outcome{Reply: Reply{Type: ReplyVoided, Data: Voided{OrderID: orderID, Refunded: cur.money(cur.Refunded)}}}
	}
	p := cur.next(StateVoided, now, e)
	return Outcome{Payment: p, Entries: []Entry{e}, Reply: Reply{Type: ReplyVoided, Data: Voided{OrderID: orderID, Refunded: p.money(p.Refunded)}}}
}

// refund refunds a capture; a payment only authorised is voided instead (amount
// 0); with no payment it writes a tombstone.
func refund(cur *Payment, orderID string, now time.Time) Outcome {
	var e Entry
	state := StateRefunded
	switch {
	case cur == nil:
		p := tombstone(orderID, now)
		return Outcome{Payment: p, Reply: Reply{Type: ReplyRefunded, Data: Refunded{OrderID: orderID, Amount: p.money(0)}}}
	case cur.State == StateCaptured:
		e = Entry{Kind: EntryRefund, Amount: cur.Captured, At: now}
	case cur.State == StateAuthorised:
		e, state = Entry{Kind: EntryVoid, Amount: cur.Amount.Amount, At: now}, StateVoided
	default: // voided, refunded or declined: nothing left to refund
		return Outcome{Reply: Reply{Type: ReplyRefunded, Data: Refunded{OrderID: orderID, Amount: cur.money(cur.Refunded)}}}
	}
	p := cur.next(state, now, e)
	// What this command refunded: nothing when it voided an authorisation.
	refunded := p.Refunded - cur.Refunded
	return Outcome{Payment: p, Entries: []Entry{e}, Reply: Reply{Type: ReplyRefunded, Data: Refunded{OrderID: orderID, Amount: p.money(refunded)}}}
}

// tombstone is the payment a void or refund leaves for an order with none: its
// amount and currency are unknown, and it declines a later authorise.
func tombstone(orderID string, now time.Time) *Payment {
	return &Payment{ID: id.New(), OrderID: orderID, State: StateVoided, CreatedAt: now, UpdatedAt: now, Version: 1}
}

// has reports whether p's ledger has an entry of kind.
func (p *Payment) has(kind string) bool {
	for _, e := range p.Entries {
		if e.Kind == kind {
			return true
		}
	}
	return false
}
