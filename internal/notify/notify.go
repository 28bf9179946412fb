// Package notify is the notify service: webhook subscriptions to Folio's events, and
// the signed, retried delivery of every event to each subscription that asks for it.
package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/egress"
	"folio/internal/platform/fault"
	"folio/internal/platform/rest"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
)

// EventTypes are the event types a subscription may ask for.
var EventTypes = []string{
	"author.created", "author.updated", "author.deleted",
	"book.created", "book.updated", "book.deleted",
}

// Limits of the writable fields.
const (
	MaxURL    = 2000
	MinSecret = 16
	MaxSecret = 1000
)

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
)

// Subscription is the resource the service owns. Subscriptions cannot change, so
// Version is always 1; it is there because every Folio resource carries one. The
// secret is write-only and never leaves the service except as signatures; at rest it
// is sealed (package secrets) for the subscription's id.
type Subscription struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	Secret    string    `json:"-"`
}

// Input is a subscription as a client writes it. Read-only fields are accepted and
// ignored, as everywhere in Folio.
type Input struct {
	URL    *string   `json:"url"`
	Events *[]string `json:"events"`
	Secret *string   `json:"secret"`

	ID        json.RawMessage `json:"id,omitempty"`
	Version   json.RawMessage `json:"version,omitempty"`
	CreatedAt json.RawMessage `json:"created_at,omitempty"`
}

// Delivery is the state of one event's delivery to one subscription.
type Delivery struct {
	ID        string    `json:"-"` // orders the list; event ids need not be Folio ids
	EventID   string    `json:"event_id"`
	Type      string    `json:"type"`
	Status    string    `json:"status"`
	Attempts  int       `json:"attempts"`
	LastError *string   `json:"last_error"`
	UpdatedAt time.Time `json:"updated_at"`
}

// validate checks in against every rule, the URL's destination with dest, and
// returns the subscription's writable fields, trimmed, or an Invalid error naming
// each broken field.
func (in Input) validate(ctx context.Context, dest egress.Policy) (Subscription, error) {
	var s Subscription
	var errs fault.Fields
	s.URL = trimmed(in.URL)
	switch {
	case s.URL == "":
		errs.Add("url", "is required")
	case len(s.URL) > MaxURL:
		errs.Add("url", fmt.Sprintf("must be at most %d characters", MaxURL))
	default:
		switch err := dest.CheckURL(ctx, s.URL); {
		case errors.Is(err, egress.ErrForbidden):
			errs.Add("url", "must reach a public address: loopback, private, link-local and other non-public addresses are refused")
		case err != nil:
			errs.Add("url", egress.ErrBadURL.Error())
		}
	}
	if in.Events == nil || len(*in.Events) == 0 {
		errs.Add("events", "is required: at least one of "+strings.Join(EventTypes, ", "))
	} else {
		for _, e := range *in.Events {
			e = strings.TrimSpace(e)
			if !slices.Contains(EventTypes, e) {
				errs.Add("events", fmt.Sprintf("%q is not an event type; use %s", e, strings.Join(EventTypes, ", ")))
				continue
			}
			if !slices.Contains(s.Events, e) { // a repeat adds nothing
				s.Events = append(s.Events, e)
			}
		}
	}
	s.Secret = trimmed(in.Secret)
	switch n := utf8.RuneCountInString(s.Secret); {
	case in.Secret == nil || n == 0:
		errs.Add("secret", "is required")
	case n < MinSecret:
		errs.Add("secret", fmt.Sprintf("must be at least %d characters", MinSecret))
	case n > MaxSecret:
		errs.Add("secret", fmt.Sprintf("must be at most %d characters", MaxSecret))
	case strings.ContainsRune(s.Secret, 0):
		// PostgreSQL cannot store NUL in text; refuse it on every engine alike.
		errs.Add("secret", "must not contain NUL characters")
	case strings.HasPrefix(s.Secret, secretPrefix):
		if key, err := base64.StdEncoding.DecodeString(s.Secret[len(secretPrefix):]); err != nil || len(key) < MinSecret {
			errs.Add("secret", fmt.Sprintf("a %s secret must be the standard base64 of at least %d bytes", secretPrefix, MinSecret))
		}
	}
	return s, errs.Err()
}

func trimmed(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}

var errNotFound = fault.New(fault.NotFound, "no such subscription")

// Config tunes the delivery of webhooks. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// Concurrency bounds the deliveries one instance sends at once.
	Concurrency int
	// AttemptTimeout bounds one POST to a subscriber.
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
	// Egress says where webhooks may go: by default only to public addresses,
	// checked when a subscription is made and again at every dial.
	Egress egress.Policy
	// Client sends the webhooks; nil means Egress's client, which checks every
	// address it dials, takes no proxy and follows no redirect.
	Client *http.Client
	// MaxSubscriptions caps how many subscriptions the service holds (default
	// 1000): each costs a delivery per matching event, so the cap bounds the work
	// one admin token, or one stolen, can make the service do.
	MaxSubscriptions int
	// Secrets seals the subscriptions' secrets at rest; it is required.
	Secrets *secrets.Box
	// Now is the clock; nil means time.Now. Tests set it to move through hours.
	Now func() time.Time
	// Registerer, when set, receives the webhook metrics.
	Registerer prometheus.Registerer
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
	if c.Client == nil {
		// A redirect is not a 2xx: the subscriber should fix its URL, and following
		// it could lead to an address the check never saw.
		c.Client = c.Egress.Client()
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = d.MaxSubscriptions
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Service holds the subscriptions and delivers events to them.
type Service struct {
	store *Store
	db    *sqldb.DB
	cfg   Config
	log   *slog.Logger
	stats *webhookMetrics
	// wake tells the worker that new deliveries may be due, so that an event goes
	// out at once rather than at the next poll.
	wake chan struct{}
}

// NewService returns the service over db, which must be migrated with Migrations
// and with inbox.Migrate. It returns an error when cfg has no Secrets.
func NewService(db *sqldb.DB, cfg Config, log *slog.Logger) (*Service, error) {
	if cfg.Secrets == nil {
		return nil, errors.New("notify: no secrets box to seal the webhook secrets with")
	}
	return &Service{store: NewStore(db), db: db, cfg: cfg.withDefaults(), log: log,
		stats: newWebhookMetrics(cfg.Registerer), wake: make(chan struct{}, 1)}, nil
}

// errTooMany is Create's answer past Config.MaxSubscriptions: a conflict with the
// service's state, which deleting a subscription resolves.
func (s *Service) errTooMany() error {
	return fault.New(fault.Conflict, "the service already holds its maximum of %d subscriptions; delete one first", s.cfg.MaxSubscriptions)
}

// Create validates in and stores a new subscription, its secret sealed. Errors:
// Invalid, Conflict (the service holds Config.MaxSubscriptions already).
func (s *Service) Create(ctx context.Context, in Input) (Subscription, error) {
	sub, err := in.validate(ctx, s.cfg.Egress)
	if err != nil {
		return Subscription{}, err
	}
	sub.ID = rest.NewID()
	sub.Version = 1
	sub.CreatedAt = s.cfg.Now().UTC().Truncate(time.Microsecond)
	stored := sub
	stored.Secret = s.seal(sub.ID, sub.Secret)
	switch err := s.store.CreateSubscription(ctx, stored, s.cfg.MaxSubscriptions); {
	case errors.Is(err, errFull):
		return Subscription{}, s.errTooMany()
	case err != nil:
		return Subscription{}, err
	}
	return sub, nil
}

// seal seals a subscription's secret, bound to its id, so that a sealed secret
// copied onto another row does not open.
func (s *Service) seal(id, secret string) string {
	return s.cfg.Secrets.Seal([]byte(secret), []byte(id))
}

// unseal opens a subscription's secret as stored.
func (s *Service) unseal(id, stored string) (string, error) {
	b, err := s.cfg.Secrets.Unseal(stored, []byte(id))
	if err != nil {
		return "", fmt.Errorf("unseal the secret of subscription %s: %w", id, err)
	}
	return string(b), nil
}

// SealSecrets seals every secret an older version of the service stored in clear,
// and returns how many it sealed. The service runs it at start.
func (s *Service) SealSecrets(ctx context.Context) (int, error) {
	return s.store.SealSecrets(ctx, func(id, clear string) string { return s.seal(id, clear) })
}

// Get returns the subscription with id. Errors: NotFound.
func (s *Service) Get(ctx context.Context, id string) (Subscription, error) {
	if !rest.ValidID(id) {
		return Subscription{}, errNotFound
	}
	return s.store.GetSubscription(ctx, id)
}

// List returns up to page.Limit+1 subscriptions after page.After, by id.
func (s *Service) List(ctx context.Context, page rest.PageRequest) ([]Subscription, error) {
	return s.store.ListSubscriptions(ctx, page.After, page.Limit+1)
}

// Delete removes the subscription and its deliveries, if check accepts its version.
// Errors: NotFound, PreconditionFailed.
func (s *Service) Delete(ctx context.Context, id string, check func(version int) error) error {
	sub, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := check(sub.Version); err != nil {
		return err
	}
	return s.store.DeleteSubscription(ctx, id)
}

// Deliveries returns up to page.Limit+1 deliveries of the subscription, oldest
// first. Errors: NotFound.
func (s *Service) Deliveries(ctx context.Context, id string, page rest.PageRequest) ([]Delivery, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	return s.store.ListDeliveries(ctx, id, page.After, page.Limit+1)
}
