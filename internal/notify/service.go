package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/paging"
)

// Store keeps the subscriptions, the events they receive and the state of each
// delivery (package sqlstore).
type Store interface {
	// CreateSubscription stores sub, its secret as given, unless max (when
	// positive) subscriptions exist already: then it returns ErrFull.
	CreateSubscription(ctx context.Context, sub Subscription, max int) error
	// GetSubscription returns the subscription with id. Errors: ErrNotFound.
	GetSubscription(ctx context.Context, id string) (Subscription, error)
	// ListSubscriptions returns up to page.Fetch() subscriptions after page.After,
	// in id order.
	ListSubscriptions(ctx context.Context, page paging.Request) ([]Subscription, error)
	// DeleteSubscription removes the subscription and its deliveries. Errors:
	// ErrNotFound.
	DeleteSubscription(ctx context.Context, id string) error
	// SealSecrets replaces each secret not sealed yet with seal(id, secret) and
	// returns how many it replaced.
	SealSecrets(ctx context.Context, seal func(id, clear string) string) (int, error)
	// ListDeliveries returns up to page.Fetch() deliveries of the subscription
	// after page.After, oldest first.
	ListDeliveries(ctx context.Context, subscriptionID string, page paging.Request) ([]Delivery, error)

	// Claim reserves up to limit pending deliveries due at now and leased to no
	// one, until now+lease; no two claimers ever get the same delivery.
	Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Claim, error)
	// Finish records an attempt of c and ends its lease, unless another claimer
	// recorded one meanwhile (c's lease had run out): then it changes nothing.
	Finish(ctx context.Context, c Claim, o Outcome) error
	// Release ends the lease of c without counting an attempt.
	Release(ctx context.Context, c Claim) error
	// Purge removes finished deliveries last changed before the cutoff, and the
	// events no delivery needs any more, and returns how many deliveries it removed.
	Purge(ctx context.Context, before time.Time) (int64, error)
}

// Webhooks is how the service reaches subscribers (package webhook).
type Webhooks interface {
	// CheckURL returns nil when url may be sent to, an error wrapping ErrNotPublic
	// when it reaches only non-public addresses, and another error when it is not
	// a URL the service calls.
	CheckURL(ctx context.Context, url string) error
	// Send makes one attempt to deliver w and returns nil when the subscriber
	// took it. A failure other than ctx's end is a *SendError.
	Send(ctx context.Context, w Webhook) error
}

// Sealer seals the subscriptions' secrets at rest, bound to a context (the
// subscription's id); *secrets.Box is one.
type Sealer interface {
	Seal(plaintext, context []byte) string
	Unseal(sealed string, context []byte) ([]byte, error)
}

// Metrics hears what the delivery worker does, so that a subscriber that keeps
// failing shows on a dashboard before anyone reads its deliveries.
type Metrics interface {
	// Attempted is called after each attempt to send, answered or not, with how
	// long it took.
	Attempted(took time.Duration)
	// Recorded is called once the outcome of an attempt is recorded: "delivered",
	// "retry" (it failed and will be retried) or "failed" (given up).
	Recorded(result string)
}

// Config tunes the delivery of webhooks. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// Concurrency bounds the deliveries one instance sends at once.
	Concurrency int
	// AttemptTimeout bounds one attempt to send to a subscriber.
	AttemptTimeout time.Duration
	// BackoffBase is the wait after the first failed attempt; each further failure
	// doubles it, up to BackoffMax, and a random part of it is taken off so that
	// many deliveries failing together do not retry together.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// GiveUpAfter is how long after its first attempt a delivery keeps being retried
	// before it is marked failed.
	GiveUpAfter time.Duration
	// PollInterval is how often the worker looks for due deliveries when nothing
	// woke it (a new event wakes it at once).
	PollInterval time.Duration
	// Lease is how long a claimed delivery stays reserved to the instance that
	// claimed it; past it, another instance may take it over (the claimer died).
	// It must exceed AttemptTimeout.
	Lease time.Duration
	// MaxSubscriptions caps how many subscriptions the service holds (default
	// 1000): each costs a delivery per matching event, so the cap bounds the work
	// one admin token, or one stolen, can make the service do.
	MaxSubscriptions int
	// Secrets seals the subscriptions' secrets at rest; it is required.
	Secrets Sealer
	// Metrics, when set, hears of every attempt.
	Metrics Metrics
	// Tracer, when set, follows every attempt (webhook.AttemptSpans: a span in
	// the trace of the delivery's event).
	Tracer Tracer
	// Now is the clock; nil means time.Now. Tests set it to move through hours.
	Now func() time.Time
}

// DefaultConfig is the delivery policy of the contract: 10 s per attempt, backoff
// from 1 s doubling up to 5 min, given up an hour after the first attempt.
func DefaultConfig() Config {
	return Config{
		Concurrency:    8,
		AttemptTimeout: 10 * time.Second,
		BackoffBase:    time.Second,
		BackoffMax:     5 * time.Minute,
		GiveUpAfter:    time.Hour,
		PollInterval:   time.Second,

		MaxSubscriptions: 1000,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Concurrency <= 0 {
		c.Concurrency = d.Concurrency
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = d.AttemptTimeout
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = d.BackoffBase
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = d.BackoffMax
	}
	if c.GiveUpAfter <= 0 {
		c.GiveUpAfter = d.GiveUpAfter
	}
	if c.PollInterval <= 0 {
		c.PollInterval = d.PollInterval
	}
	if c.Lease <= c.AttemptTimeout {
		c.Lease = c.AttemptTimeout + 30*time.Second
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = d.MaxSubscriptions
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	if c.Tracer == nil {
		c.Tracer = noTracer{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Tracer follows each attempt to send a delivery.
type Tracer interface {
	// Attempt starts following an attempt to send c, and returns the context to
	// send it in and what ends it: with what became of the delivery (delivered,
	// retry, failed, or released: cut short by a shutdown) and, for a failed
	// attempt, its reason and the subscriber's status code (0 if none).
	Attempt(ctx context.Context, c Claim) (context.Context, func(result, reason string, status int))
}

type noTracer struct{}

func (noTracer) Attempt(ctx context.Context, _ Claim) (context.Context, func(string, string, int)) {
	return ctx, func(string, string, int) {}
}

type noMetrics struct{}

func (noMetrics) Attempted(time.Duration) {}
func (noMetrics) Recorded(string)         {}

// Service holds the subscriptions and delivers events to them.
type Service struct {
	store Store
	hooks Webhooks
	cfg   Config
	log   *slog.Logger
	// wake tells the worker that new deliveries may be due, so that an event goes
	// out at once rather than at the next poll.
	wake chan struct{}
}

// NewService returns the service over store, sending with hooks. It returns an
// error when cfg has no Secrets.
func NewService(store Store, hooks Webhooks, cfg Config, log *slog.Logger) (*Service, error) {
	if cfg.Secrets == nil {
		return nil, errors.New("notify: no secrets box to seal the webhook secrets with")
	}
	return &Service{store: store, hooks: hooks, cfg: cfg.withDefaults(), log: log, wake: make(chan struct{}, 1)}, nil
}

// errTooMany is Create's answer past Config.MaxSubscriptions: a conflict with the
// service's state, which deleting a subscription resolves.
func (s *Service) errTooMany() error {
	return fault.New(fault.Conflict, "the service already holds its maximum of %d subscriptions; delete one first", s.cfg.MaxSubscriptions)
}

// Create validates in and stores a new subscription, its secret sealed. Errors:
// Invalid, Conflict (the service holds Config.MaxSubscriptions already).
func (s *Service) Create(ctx context.Context, in Input) (Subscription, error) {
	sub, err := in.validate(ctx, s.hooks.CheckURL)
	if err != nil {
		return Subscription{}, err
	}
	sub.ID = id.New()
	sub.Version = 1
	sub.CreatedAt = s.cfg.Now().UTC().Truncate(time.Microsecond)
	stored := sub
	stored.Secret = s.seal(sub.ID, sub.Secret)
	switch err := s.store.CreateSubscription(ctx, stored, s.cfg.MaxSubscriptions); {
	case errors.Is(err, ErrFull):
		return Subscription{}, s.errTooMany()
	case err != nil:
		return Subscription{}, err
	}
	return sub, nil
}

// seal seals a subscription's secret, bound to its id, so that a sealed secret
// copied onto another row does not open.
func (s *Service) seal(subID, secret string) string {
	return s.cfg.Secrets.Seal([]byte(secret), []byte(subID))
}

// unseal opens a subscription's secret as stored.
func (s *Service) unseal(subID, stored string) (string, error) {
	b, err := s.cfg.Secrets.Unseal(stored, []byte(subID))
	if err != nil {
		return "", fmt.Errorf("unseal the secret of subscription %s: %w", subID, err)
	}
	return string(b), nil
}

// SealSecrets seals every secret an older version of the service stored in clear,
// and returns how many it sealed. The service runs it at start.
func (s *Service) SealSecrets(ctx context.Context) (int, error) {
	return s.store.SealSecrets(ctx, s.seal)
}

// Get returns the subscription with id. Errors: NotFound.
func (s *Service) Get(ctx context.Context, subID string) (Subscription, error) {
	if !id.Valid(subID) {
		return Subscription{}, ErrNotFound
	}
	return s.store.GetSubscription(ctx, subID)
}

// List returns a page of the subscriptions, by id.
func (s *Service) List(ctx context.Context, page paging.Request) (paging.Page[Subscription], error) {
	subs, err := s.store.ListSubscriptions(ctx, page)
	if err != nil {
		return paging.Page[Subscription]{}, err
	}
	return paging.Of(page, subs, func(s Subscription) string { return s.ID }), nil
}

// Delete removes the subscription and its deliveries, if check accepts its version.
// Errors: NotFound, PreconditionFailed (from check).
func (s *Service) Delete(ctx context.Context, subID string, check func(version int) error) error {
	sub, err := s.Get(ctx, subID)
	if err != nil {
		return err
	}
	if err := check(sub.Version); err != nil {
		return err
	}
	return s.store.DeleteSubscription(ctx, subID)
}

// Deliveries returns a page of the deliveries of the subscription, oldest first.
// Errors: NotFound.
func (s *Service) Deliveries(ctx context.Context, subID string, page paging.Request) (paging.Page[Delivery], error) {
	if _, err := s.Get(ctx, subID); err != nil {
		return paging.Page[Delivery]{}, err
	}
	ds, err := s.store.ListDeliveries(ctx, subID, page)
	if err != nil {
		return paging.Page[Delivery]{}, err
	}
	return paging.Of(page, ds, func(d Delivery) string { return d.ID }), nil
}

// Now is the service's clock, at which received events fall due.
func (s *Service) Now() time.Time { return s.cfg.Now() }

// Wake tells the worker that deliveries may be due now: an event intake calls it
// once its deliveries have committed. It never blocks.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default: // already woken
	}
}

// Purge removes deliveries that ended (delivered or failed) more than olderThan ago.
func (s *Service) Purge(ctx context.Context, olderThan time.Duration) (int64, error) {
	return s.store.Purge(ctx, s.cfg.Now().Add(-olderThan))
}
