package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"folio/internal/platform/id"
	"folio/internal/platform/paging"
)

// Metrics hears what the saga does, once each change has committed.
type Metrics interface {
	// Transition counts an order moving from one state to another.
	Transition(from, to State)
	// Compensation counts a compensation started by the failure or timeout of
	// step (or "cancel": the owner's).
	Compensation(step string)
	// StepAnswered observes how long after its command was first sent a step
	// was answered.
	StepAnswered(step Step, took time.Duration)
	// Stuck sets how many orders wait on a compensation past the step timeout.
	Stuck(n int)
}

// Config is what the service needs besides its store.
type Config struct {
	Timing Timing
	// Seal seals a card's data to the payment service (secrets.SealTo with its
	// public key): the order service can never read it back.
	Seal func(plaintext []byte) (string, error)
	// Metrics, when set, hears of every committed change.
	Metrics Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TimerBatch bounds the due orders the timer takes at once (default 100).
	TimerBatch int
}

// Service applies the order rules and the saga to its store.
type Service struct {
	store Store
	cfg   Config
	log   *slog.Logger
}

// NewService returns the service over store. Errors: a Config without Seal, or
// with a timing that is not positive.
func NewService(store Store, cfg Config, log *slog.Logger) (*Service, error) {
	t := cfg.Timing
	if t.StepTimeout <= 0 || t.RetryInterval <= 0 || t.RetryMax < t.RetryInterval {
		return nil, fmt.Errorf("order service: timing %+v: every duration must be positive and RetryMax at least RetryInterval", t)
	}
	if cfg.Seal == nil {
		return nil, errors.New("order service: Config.Seal is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TimerBatch <= 0 {
		cfg.TimerBatch = 100
	}
	return &Service{store: store, cfg: cfg, log: log}, nil
}

// Now is the service's clock, truncated to what both databases keep.
func (s *Service) Now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

// Timing is the service's saga timing.
func (s *Service) Timing() Timing { return s.cfg.Timing }

// sealedCard is what is sealed to the payment service: the card as the client
// gave it, its number's digits only.
type sealedCard struct {
	Number string `json:"number"`
	Expiry string `json:"expiry"`
	CVC    string `json:"cvc"`
}

// Place checks in and stores a new pending order of the user, with the reserve
// command that starts its saga. Errors: Invalid.
func (s *Service) Place(ctx context.Context, userID string, in Input) (Order, error) {
	now := s.Now()
	items, digits, err := in.validate(now)
	if err != nil {
		return Order{}, err
	}
	plain, err := json.Marshal(sealedCard{Number: digits, Expiry: in.Card.Expiry, CVC: in.Card.CVC})
	if err != nil {
		return Order{}, fmt.Errorf("place order: %w", err)
	}
	sealed, err := s.cfg.Seal(plain)
	if err != nil {
		return Order{}, fmt.Errorf("place order: seal the card: %w", err)
	}
	o := Order{
		ID: id.New(), UserID: userID, State: Pending, Items: items,
		Card:      Card{Brand: brand(digits), Last4: digits[len(digits)-4:]},
		CreatedAt: now, UpdatedAt: now, Version: 1,
		Saga: Saga{SealedCard: sealed, ExpiresAt: now.Add(s.cfg.Timing.Hold())},
	}
	start(&o, s.cfg.Timing, now)
	c, _ := command(o)
	if err := s.store.Create(ctx, o, []Command{c}); err != nil {
		return Order{}, err
	}
	return o, nil
}

// Get returns the order with id as the caller may see it: its owner's, or any
// for an admin. Errors: ErrNotFound.
func (s *Service) Get(ctx context.Context, callerID string, admin bool, orderID string) (Order, error) {
	if !id.Valid(orderID) {
		return Order{}, ErrNotFound
	}
	o, err := s.store.Get(ctx, orderID)
	if err != nil {
		return Order{}, err
	}
	if o.UserID != callerID && !admin {
		return Order{}, ErrNotFound
	}
	return o, nil
}

// List returns the page of the user's own orders that page asks for.
func (s *Service) List(ctx context.Context, userID string, page paging.Request) (paging.Page[Order], error) {
	orders, err := s.store.List(ctx, userID, page)
	if err != nil {
		return paging.Page[Order]{}, err
	}
	return paging.Of(page, orders, func(o Order) string { return o.ID }), nil
}

// Cancel starts the refund and restock of the caller's confirmed order. Errors:
// ErrNotFound (no such order of the caller's), ErrNotCancellable.
func (s *Service) Cancel(ctx context.Context, callerID, orderID string) (Order, error) {
	for {
		o, err := s.Get(ctx, callerID, false, orderID)
		if err != nil {
			return Order{}, err
		}
		ch, err := s.cfg.Timing.OnCancel(o, s.Now())
		if err != nil {
			return Order{}, err
		}
		err = s.store.Advance(ctx, ch)
		if errors.Is(err, ErrStale) {
			continue // a late reply or the timer moved it: decide again
		}
		if err != nil {
			return Order{}, err
		}
		s.Observe(ch)
		return ch.Order, nil
	}
}

// Observe tells the metrics of ch, once it has committed.
func (s *Service) Observe(ch Change) {
	m := s.cfg.Metrics
	if m == nil {
		return
	}
	if ch.From != ch.Order.State {
		m.Transition(ch.From, ch.Order.State)
	}
	if ch.Compensates != "" {
		m.Compensation(ch.Compensates)
	}
	if ch.Answered != "" {
		m.StepAnswered(ch.Answered, ch.Took)
	}
}

// OnReply is the change r makes to o now, false when r is stale for o.
func (s *Service) OnReply(o Order, r Reply) (Change, bool) {
	return s.cfg.Timing.OnReply(o, r, s.Now())
}

// Tick does what is due now once: it re-sends the commands of the orders whose
// next attempt has come, compensates those past their step's deadline, and
// counts the stuck ones. Another instance doing the same at once is harmless:
// each order's change commits once (its version guards it), the other's is
// dropped. It returns how many orders it changed.
func (s *Service) Tick(ctx context.Context) (int, error) {
	now := s.Now()
	due, err := s.store.Due(ctx, now, s.cfg.TimerBatch)
	if err != nil {
		return 0, err
	}
	changed := 0
	for _, o := range due {
		ch, ok := s.cfg.Timing.OnTimer(o, now)
		if !ok {
			continue
		}
		err := s.store.Advance(ctx, ch)
		if errors.Is(err, ErrStale) || errors.Is(err, ErrNotFound) {
			continue // another instance, or a reply, came first
		}
		if err != nil {
			return changed, err
		}
		changed++
		s.Observe(ch)
		if ch.From != ch.Order.State {
			s.log.InfoContext(ctx, "order step timed out; compensating", "order", o.ID, "from", ch.From, "to", ch.Order.State)
		} else if ch.Order.State.Compensating() && ch.Order.Saga.Attempts%10 == 0 {
			s.log.WarnContext(ctx, "order compensation still unanswered", "order", o.ID, "state", o.State, "attempts", ch.Order.Saga.Attempts)
		}
	}
	if s.cfg.Metrics != nil {
		n, err := s.store.Stuck(ctx, now.Add(-s.cfg.Timing.StepTimeout))
		if err != nil {
			return changed, err
		}
		s.cfg.Metrics.Stuck(n)
	}
	return changed, nil
}

// RunTimer calls Tick every period until ctx ends, and at once again when a
// tick found a full batch due.
func (s *Service) RunTimer(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		n, err := s.Tick(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("order timer", "error", err)
		}
		if err == nil && n >= s.cfg.TimerBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
