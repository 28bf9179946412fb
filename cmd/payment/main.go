// Command payment runs the payment service: it answers the order saga's payment
// commands from the broker (authorise, capture, void, refund) with its replies,
// keeps the payments and their ledger, and shows them to admins over HTTP.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"folio/internal/payment"
	"folio/internal/payment/events"
	"folio/internal/payment/httpapi"
	"folio/internal/payment/sqlstore"
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

// DefaultCardKeyFile is the card key file's name inside the data directory when
// neither FOLIO_PAYMENT_CARD_KEY nor FOLIO_PAYMENT_CARD_KEY_FILE is set.
const DefaultCardKeyFile = "payment-card.key"

// cardPublicKeyFlag makes the program print its card public key and exit.
const cardPublicKeyFlag = "--card-public-key"

// settings is the payment service's configuration.
type settings struct {
	chassis.ServiceConfig

	// CardKey is the private key (base64) that opens the cards the order service
	// seals to this service's public key.
	CardKey string `env:"FOLIO_PAYMENT_CARD_KEY" mask:"true"`
	// CardKeyFile holds the key instead, made with a fresh key when missing;
	// <data dir>/payment-card.key when neither is set.
	CardKeyFile string `env:"FOLIO_PAYMENT_CARD_KEY_FILE"`
	// SlowDelay is how long the slow test card's authorisation takes.
	SlowDelay time.Duration `env:"FOLIO_PAYMENT_SLOW_DELAY" envDefault:"10s"`
}

// check fills in the defaults every service shares and checks every setting.
func (c *settings) check() error {
	if err := c.ServiceConfig.Check("payment", ":8086"); err != nil {
		return err
	}
	if c.SlowDelay < 0 {
		return fmt.Errorf("FOLIO_PAYMENT_SLOW_DELAY must not be negative, not %s", c.SlowDelay)
	}
	if c.CardKey != "" {
		if c.CardKeyFile != "" {
			return errors.New("FOLIO_PAYMENT_CARD_KEY and FOLIO_PAYMENT_CARD_KEY_FILE are both set; set one")
		}
		if _, err := secrets.LoadRecipient(c.CardKey); err != nil {
			return fmt.Errorf("FOLIO_PAYMENT_CARD_KEY: %w", err)
		}
	}
	if c.CardKey == "" && c.CardKeyFile == "" {
		c.CardKeyFile = filepath.Join(c.DataDir, DefaultCardKeyFile)
	}
	return nil
}

// cardKey returns the key that opens sealed cards: FOLIO_PAYMENT_CARD_KEY, else
// the key file, made with a fresh key on first start.
func (c *settings) cardKey() (*secrets.Recipient, error) {
	if c.CardKey != "" {
		return secrets.LoadRecipient(c.CardKey)
	}
	key, err := secrets.EnsureRecipientKeyFile(c.CardKeyFile)
	if err != nil {
		return nil, fmt.Errorf("FOLIO_PAYMENT_CARD_KEY_FILE: %w", err)
	}
	return key, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if release.IsVersionFlag(args) {
		fmt.Fprintln(stdout, "payment", release.Get())
		return nil
	}
	if chassis.IsHealthcheckFlag(args) {
		return chassis.Healthcheck(ctx, getenv, ":8086", stdout)
	}
	printKey := len(args) == 2 && args[1] == cardPublicKeyFlag
	if len(args) > 1 && !printKey {
		return errors.New("payment takes no arguments but " + cardPublicKeyFlag + "; it is configured with FOLIO_* environment variables (see README)")
	}

	// Configuration: read and checked before anything is opened.
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if printKey {
		// For the operator (and folio up) to hand to the order service as
		// FOLIO_PAYMENT_CARD_PUBLIC_KEY: the key file is made now if missing, so
		// that the service started next opens what is sealed to it.
		key, err := cfg.cardKey()
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		fmt.Fprintln(stdout, key.PublicKey())
		return nil
	}
	log := cfg.Logger(stdout, "payment")
	log.Info("starting", config.Attrs(&cfg)...)

	// Tracing, from the standard OTEL_* variables: off unless they name an exporter.
	stopTracing, err := tracing.Setup(ctx, getenv, "payment", log)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() { _ = stopTracing(context.Background()) }()

	// The card key: only this service can open the cards sealed to its public
	// key, which the order service needs (FOLIO_PAYMENT_CARD_PUBLIC_KEY).
	cards, err := cfg.cardKey()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log.Info("card public key", "card_public_key", cards.PublicKey(), "card_key_id", cards.KeyID())
	if cfg.CardKey == "" {
		secrets.WarnIfOpenToAll(log, "card key", cfg.CardKeyFile)
	}

	// Database: the payments and their ledger, then the idempotency keys, outbox
	// and inbox beside them.
	db, err := chassis.OpenDatabase(ctx, cfg.DatabaseURL, sqlstore.Migrations, idempotency.Migrate, outbox.Migrate, inbox.Migrate)
	if err != nil {
		return err
	}
	defer db.Close()

	// Metrics, discovery and token verification. The service calls no peer.
	reg := metrics.NewRegistry()
	metrics.RegisterDB(reg, db.DB, "payment")
	disc, err := chassis.OpenDiscovery(ctx, cfg.Discovery, reg)
	if err != nil {
		return err
	}
	defer disc.Close()
	verifier := chassis.NewVerifier(ctx, cfg.ServiceConfig, disc, log, reg)

	// Events: the broker (connected in the background), the relay of the outbox
	// that carries the replies.
	bk, err := broker.Open(ctx, cfg.Broker, log, reg)
	if err != nil {
		return err
	}
	defer bk.Close()
	relay := outbox.NewRelay(db, bk, cfg.Broker.Prefix, log, reg)

	// The service and its route.
	store := sqlstore.New(db)
	svc := payment.NewService(store, cards, payment.Config{SlowDelay: cfg.SlowDelay, Log: log})
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, verifier)

	// Background jobs, beside the server until ctx ends: the relay, the order
	// service's commands, the purge of old inbox records, the revocations.
	orders := events.Orders(svc, store, relay.Notify)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { relay.Run(ctx); return nil })
	g.Go(func() error {
		return chassis.Consume(ctx, bk, orders.Subscription(cfg.Broker.Prefix),
			events.Handler(orders, svc, events.NewMetrics(reg), db, log), log)
	})
	g.Go(func() error { chassis.PurgeInbox(ctx, db, log); return nil })
	g.Go(func() error { return chassis.FollowRevocations(ctx, verifier, bk, cfg.Broker.Prefix) })

	// Serve until ctx ends, registered in discovery meanwhile.
	g.Go(func() error {
		return chassis.Serve(ctx, cfg.ServerConfig, log, reg, mux, httpapi.OpenAPI,
			chassis.Health{Ready: db.PingContext, Detail: chassis.EventsDetail(relay, cfg.BrokerStaleAfter, disc)},
			chassis.Register(disc, "payment", cfg.Discovery, log))
	})
	return g.Wait()
}
