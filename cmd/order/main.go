// Command order runs the order service: orders placed over HTTP, carried through
// the order saga (docs/orders.md) by commands to the inventory and payment
// services and their replies, over the broker.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"folio/internal/order"
	"folio/internal/order/events"
	"folio/internal/order/httpapi"
	"folio/internal/order/sagametrics"
	"folio/internal/order/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/chassis"
	"folio/internal/platform/config"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/inbox"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox"
	"folio/internal/platform/release"
	"folio/internal/platform/secrets"
	"folio/internal/platform/tracing"
)

// settings is the order service's configuration.
type settings struct {
	chassis.ServiceConfig

	// CardPublicKey is the payment service's X25519 public key (base64), to which
	// every card is sealed: the order service cannot read a card back.
	CardPublicKey string        `env:"FOLIO_PAYMENT_CARD_PUBLIC_KEY"`
	StepTimeout   time.Duration `env:"FOLIO_ORDER_STEP_TIMEOUT" envDefault:"2m"`
	RetryInterval time.Duration `env:"FOLIO_ORDER_RETRY_INTERVAL" envDefault:"5s"`
	RetryMax      time.Duration `env:"FOLIO_ORDER_RETRY_MAX" envDefault:"1m"`
	// Secrets is the key under which the idempotency keys' request digests are
	// made: a POST /orders body holds a card number.
	Secrets secrets.Config
}

// timerPeriod is how often the saga's timer looks for due orders: the retry
// interval's resolution.
const timerPeriod = time.Second

// check fills in the defaults every service shares and checks every setting.
func (c *settings) check() error {
	if err := c.ServiceConfig.Check("order", ":8087"); err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{
		"FOLIO_ORDER_STEP_TIMEOUT": c.StepTimeout, "FOLIO_ORDER_RETRY_INTERVAL": c.RetryInterval, "FOLIO_ORDER_RETRY_MAX": c.RetryMax,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, not %s", name, d)
		}
	}
	if c.RetryMax < c.RetryInterval {
		return fmt.Errorf("FOLIO_ORDER_RETRY_MAX (%s) must not be below FOLIO_ORDER_RETRY_INTERVAL (%s)", c.RetryMax, c.RetryInterval)
	}
	if c.CardPublicKey == "" {
		return errors.New("FOLIO_PAYMENT_CARD_PUBLIC_KEY is required: the payment service's public key (base64), to which cards are sealed")
	}
	if _, err := secrets.PublicKeyID(c.CardPublicKey); err != nil {
		return errors.New("FOLIO_PAYMENT_CARD_PUBLIC_KEY must be 32 bytes in base64 (the payment service's X25519 public key)")
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "order:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if release.IsVersionFlag(args) {
		fmt.Fprintln(stdout, "order", release.Get())
		return nil
	}
	if chassis.IsHealthcheckFlag(args) {
		return chassis.Healthcheck(ctx, getenv, ":8087", stdout)
	}
	if len(args) > 1 {
		return errors.New("order takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}

	// Configuration: read and checked before anything is opened.
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := cfg.Logger(stdout, "order")
	log.Info("starting", config.Attrs(&cfg)...)

	// Tracing, from the standard OTEL_* variables: off unless they name an exporter.
	stopTracing, err := tracing.Setup(ctx, getenv, "order", log)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() { _ = stopTracing(context.Background()) }()

	// Secrets: the key of the idempotency digests, from the settings, or from a
	// file made in the data directory on first start.
	box, err := secrets.Load(cfg.Secrets, cfg.DataDir, log)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}

	// Database: the orders, then the idempotency keys, outbox and inbox beside them.
	db, err := chassis.OpenDatabase(ctx, cfg.DatabaseURL, sqlstore.Migrations, idempotency.Migrate, outbox.Migrate, inbox.Migrate)
	if err != nil {
		return err
	}
	defer db.Close()

	// Metrics, discovery and token verification. The service calls no peer: the
	// saga speaks to inventory and payment through the broker only.
	reg := metrics.NewRegistry()
	metrics.RegisterDB(reg, db.DB, "order")
	if err := db.RegisterMetrics(reg); err != nil {
		return err
	}
	disc, err := chassis.OpenDiscovery(ctx, cfg.Discovery, reg)
	if err != nil {
		return err
	}
	defer disc.Close()
	verifier := chassis.NewVerifier(ctx, cfg.ServiceConfig, disc, log, reg)

	// Events: the broker (connected in the background: orders are taken while it
	// is down, their commands waiting in the outbox), the relay of the outbox.
	bk, err := broker.Open(ctx, cfg.Broker, log, reg)
	if err != nil {
		return err
	}
	defer bk.Close()
	relay := outbox.NewRelay(db, bk, cfg.Broker.Prefix, log, reg)

	// The service and its routes.
	store := sqlstore.New(outbox.NewWriter(db, relay.Notify))
	cardKey := cfg.CardPublicKey
	// The payment service logs its key's id at start, and names the id of a card
	// sealed to another key when it declines one: the two lines to compare.
	cardKeyID, _ := secrets.PublicKeyID(cardKey) // checked with the configuration
	log.Info("cards sealed to the payment service's key", "card_key_id", cardKeyID)
	svc, err := order.NewService(store, order.Config{
		Timing:  order.Timing{StepTimeout: cfg.StepTimeout, RetryInterval: cfg.RetryInterval, RetryMax: cfg.RetryMax},
		Seal:    func(card []byte) (string, error) { return secrets.SealTo(cardKey, card) },
		Metrics: sagametrics.New(reg),
	}, log)
	if err != nil {
		return err
	}
	keys := idempotency.New(db, log)
	// A request's digest is kept for the keys' lifetime (24 h), and a card number
	// has too few possible values for a plain hash of it to hide it: the digest is
	// keyed.
	keys.Fingerprint = func(_ string, request []byte) []byte { return box.Digest("idempotency", request) }
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, keys, verifier)

	// Background jobs, beside the server until ctx ends: the relay, the replies of
	// the inventory and payment services, the saga's timer (re-sends and
	// timeouts), the purges of the inbox and of expired idempotency keys, the
	// auth service's revocations.
	replies := events.Replies(store, withCrashPoints(svc, getenv), relay.Notify, log)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { relay.Run(ctx); return nil })
	g.Go(func() error {
		return chassis.Consume(ctx, bk, replies.Subscription(cfg.Broker.Prefix), replies.Handler(db, log), log)
	})
	g.Go(func() error { svc.RunTimer(ctx, timerPeriod); return nil })
	g.Go(func() error { chassis.PurgeInbox(ctx, db, log); return nil })
	g.Go(func() error { keys.RunPurger(ctx, time.Hour); return nil })
	g.Go(func() error { return chassis.FollowRevocations(ctx, verifier, bk, cfg.Broker.Prefix) })

	// Serve until ctx ends, registered in discovery meanwhile.
	g.Go(func() error {
		return chassis.Serve(ctx, cfg.ServerConfig, log, reg, mux, httpapi.OpenAPI,
			chassis.Health{Ready: db.PingContext, Detail: chassis.EventsDetail(relay, cfg.BrokerStaleAfter, disc)},
			chassis.Register(disc, "order", cfg.Discovery, log))
	})
	return g.Wait()
}
