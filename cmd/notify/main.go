// Command notify runs the notify service: webhook subscriptions, fed by the book
// and author events from the broker.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"folio/internal/notify"
	"folio/internal/notify/events"
	"folio/internal/notify/httpapi"
	"folio/internal/notify/sqlstore"
	"folio/internal/notify/webhook"
	"folio/internal/platform/broker"
	"folio/internal/platform/chassis"
	"folio/internal/platform/config"
	"folio/internal/platform/egress"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/inbox"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox"
	"folio/internal/platform/release"
	"folio/internal/platform/secrets"
	"folio/internal/platform/tracing"
)

// settings is the notify service's configuration.
type settings struct {
	chassis.ServiceConfig

	WebhookConcurrency int           `env:"FOLIO_WEBHOOK_CONCURRENCY" envDefault:"8"`
	WebhookTimeout     time.Duration `env:"FOLIO_WEBHOOK_TIMEOUT" envDefault:"10s"`
	WebhookBackoff     time.Duration `env:"FOLIO_WEBHOOK_BACKOFF" envDefault:"1s"`
	WebhookBackoffMax  time.Duration `env:"FOLIO_WEBHOOK_BACKOFF_MAX" envDefault:"5m"`
	WebhookGiveUp      time.Duration `env:"FOLIO_WEBHOOK_GIVE_UP" envDefault:"1h"`
	// DeliveryRetention is how long finished deliveries stay listed.
	DeliveryRetention time.Duration `env:"FOLIO_DELIVERY_RETENTION" envDefault:"720h"`
	// WebhookAllowPrivate lets webhooks go to loopback, private and other
	// non-public addresses: for local development only (folio up sets it).
	WebhookAllowPrivate bool `env:"FOLIO_WEBHOOK_ALLOW_PRIVATE" envDefault:"false"`
	MaxSubscriptions    int  `env:"FOLIO_MAX_SUBSCRIPTIONS" envDefault:"1000"`
	Secrets             secrets.Config
}

// check fills in the defaults every service shares and checks every setting.
func (c *settings) check() error {
	if err := c.ServiceConfig.Check("notify", ":8084"); err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{
		"FOLIO_WEBHOOK_TIMEOUT": c.WebhookTimeout, "FOLIO_WEBHOOK_BACKOFF": c.WebhookBackoff,
		"FOLIO_WEBHOOK_BACKOFF_MAX": c.WebhookBackoffMax, "FOLIO_WEBHOOK_GIVE_UP": c.WebhookGiveUp,
		"FOLIO_DELIVERY_RETENTION": c.DeliveryRetention,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, not %s", name, d)
		}
	}
	if c.WebhookConcurrency < 1 || c.WebhookConcurrency > 1000 {
		return fmt.Errorf("FOLIO_WEBHOOK_CONCURRENCY must be from 1 to 1000, not %d", c.WebhookConcurrency)
	}
	if c.MaxSubscriptions < 1 {
		return fmt.Errorf("FOLIO_MAX_SUBSCRIPTIONS must be at least 1, not %d", c.MaxSubscriptions)
	}
	if c.WebhookBackoffMax < c.WebhookBackoff {
		return fmt.Errorf("FOLIO_WEBHOOK_BACKOFF_MAX (%s) must not be below FOLIO_WEBHOOK_BACKOFF (%s)", c.WebhookBackoffMax, c.WebhookBackoff)
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "notify:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if release.IsVersionFlag(args) {
		fmt.Fprintln(stdout, "notify", release.Get())
		return nil
	}
	if chassis.IsHealthcheckFlag(args) {
		return chassis.Healthcheck(ctx, getenv, ":8084", stdout)
	}
	if len(args) > 1 {
		return errors.New("notify takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}

	// Configuration: read and checked before anything is opened.
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := cfg.Logger(stdout, "notify")
	log.Info("starting", config.Attrs(&cfg)...)

	// Tracing, from the standard OTEL_* variables: off unless they name an exporter.
	stopTracing, err := tracing.Setup(ctx, getenv, "notify", log)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() { _ = stopTracing(context.Background()) }()
	if cfg.WebhookAllowPrivate {
		log.Warn("FOLIO_WEBHOOK_ALLOW_PRIVATE is set: webhooks may go to loopback and private addresses; never do this on a shared network")
	}

	// Secrets: the key that seals the webhook secrets at rest, from the settings,
	// or from a file made in the data directory on first start.
	box, err := secrets.Load(cfg.Secrets, cfg.DataDir, log)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}

	// Database: the service's tables, then the idempotency keys, outbox and inbox
	// beside them. The service publishes nothing: its outbox stays empty, and is
	// there for the relay's part of /readyz.
	db, err := chassis.OpenDatabase(ctx, cfg.DatabaseURL, sqlstore.Migrations, idempotency.Migrate, outbox.Migrate, inbox.Migrate)
	if err != nil {
		return err
	}
	defer db.Close()

	// Metrics, discovery and token verification. The service calls no peer.
	reg := metrics.NewRegistry()
	metrics.RegisterDB(reg, db.DB, "notify")
	disc, err := chassis.OpenDiscovery(ctx, cfg.Discovery, reg)
	if err != nil {
		return err
	}
	defer disc.Close()
	verifier := chassis.NewVerifier(ctx, cfg.ServiceConfig, disc, log, reg)

	// Events: the broker (connected in the background), the relay of the outbox.
	bk, err := broker.Open(ctx, cfg.Broker, log, reg)
	if err != nil {
		return err
	}
	defer bk.Close()
	relay := outbox.NewRelay(db, bk, cfg.Broker.Prefix, log, reg)

	// The service and its routes. An older version kept the webhook secrets in
	// clear: they are sealed before anything reads them.
	store := sqlstore.New(db)
	svc, err := notify.NewService(store, webhook.New(webhook.Config{Egress: egress.Policy{AllowPrivate: cfg.WebhookAllowPrivate}}), notify.Config{
		Concurrency:      cfg.WebhookConcurrency,
		AttemptTimeout:   cfg.WebhookTimeout,
		BackoffBase:      cfg.WebhookBackoff,
		BackoffMax:       cfg.WebhookBackoffMax,
		GiveUpAfter:      cfg.WebhookGiveUp,
		MaxSubscriptions: cfg.MaxSubscriptions,
		Secrets:          box,
		Metrics:          webhook.NewMetrics(reg),
		Tracer:           webhook.AttemptSpans{},
	}, log)
	if err != nil {
		return err
	}
	if n, err := svc.SealSecrets(ctx); err != nil {
		return err
	} else if n > 0 {
		log.Info("sealed webhook secrets stored in clear", "count", n)
	}
	keys := idempotency.New(db, log)
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, keys, verifier)

	// Background jobs, beside the server until ctx ends: the relay, the intake of
	// the book and author events, the webhook worker, and the purges of old
	// deliveries, inbox records and idempotency keys; the revocations.
	intake := events.NewIntake(store, svc.Now, svc.Wake)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { relay.Run(ctx); return nil })
	g.Go(func() error {
		return chassis.Consume(ctx, bk, intake.Subscription(cfg.Broker.Prefix), intake.Handler(db, log), log)
	})
	g.Go(func() error { return svc.Run(ctx) })
	g.Go(func() error { purgeDeliveries(ctx, log, svc, cfg.DeliveryRetention); return nil })
	g.Go(func() error { chassis.PurgeInbox(ctx, db, log); return nil })
	g.Go(func() error { keys.RunPurger(ctx, time.Hour); return nil })
	g.Go(func() error { return chassis.FollowRevocations(ctx, verifier, bk, cfg.Broker.Prefix) })

	// Serve until ctx ends, registered in discovery meanwhile.
	g.Go(func() error {
		return chassis.Serve(ctx, cfg.ServerConfig, log, reg, mux, httpapi.OpenAPI,
			chassis.Health{Ready: db.PingContext, Detail: chassis.EventsDetail(relay, cfg.BrokerStaleAfter, disc)},
			chassis.Register(disc, "notify", cfg.Discovery, log))
	})
	return g.Wait()
}

// purgeDeliveries drops, every hour, finished deliveries past their retention.
func purgeDeliveries(ctx context.Context, log *slog.Logger, svc *notify.Service, retention time.Duration) {
	chassis.Every(ctx, time.Hour, func() {
		if n, err := svc.Purge(ctx, retention); err != nil && ctx.Err() == nil {
			log.Warn("purge deliveries", "error", err)
		} else if n > 0 {
			log.Info("purged deliveries", "count", n)
		}
	})
}
