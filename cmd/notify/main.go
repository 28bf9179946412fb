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

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"folio/internal/notify"
	"folio/internal/platform/broker"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/inbox"
	"folio/internal/platform/process"
	"folio/internal/platform/sqldb"
)

type config struct {
	process.Base
	Broker broker.Config

	WebhookConcurrency int           `env:"FOLIO_WEBHOOK_CONCURRENCY" envDefault:"8"`
	WebhookTimeout     time.Duration `env:"FOLIO_WEBHOOK_TIMEOUT" envDefault:"10s"`
	WebhookBackoff     time.Duration `env:"FOLIO_WEBHOOK_BACKOFF" envDefault:"1s"`
	WebhookBackoffMax  time.Duration `env:"FOLIO_WEBHOOK_BACKOFF_MAX" envDefault:"5m"`
	WebhookGiveUp      time.Duration `env:"FOLIO_WEBHOOK_GIVE_UP" envDefault:"1h"`
	// DeliveryRetention is how long finished deliveries stay listed.
	DeliveryRetention time.Duration `env:"FOLIO_DELIVERY_RETENTION" envDefault:"720h"`
	// InboxRetention is how long applied event ids are remembered; it must outlast
	// any redelivery or duplicate publish of an event.
	InboxRetention time.Duration `env:"FOLIO_INBOX_RETENTION" envDefault:"168h"`
}

func (c config) validate() error {
	for name, d := range map[string]time.Duration{
		"FOLIO_WEBHOOK_TIMEOUT": c.WebhookTimeout, "FOLIO_WEBHOOK_BACKOFF": c.WebhookBackoff,
		"FOLIO_WEBHOOK_BACKOFF_MAX": c.WebhookBackoffMax, "FOLIO_WEBHOOK_GIVE_UP": c.WebhookGiveUp,
		"FOLIO_DELIVERY_RETENTION": c.DeliveryRetention, "FOLIO_INBOX_RETENTION": c.InboxRetention,
	} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive, not %s", name, d)
		}
	}
	if c.WebhookConcurrency < 1 || c.WebhookConcurrency > 1000 {
		return fmt.Errorf("FOLIO_WEBHOOK_CONCURRENCY must be from 1 to 1000, not %d", c.WebhookConcurrency)
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
	if len(args) > 1 {
		return errors.New("notify takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}
	var cfg config
	p, err := process.Start(ctx, "notify", ":8084", &cfg, &cfg.Base, getenv, stdout, notify.Migrations)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := inbox.Migrate(ctx, p.DB); err != nil {
		return err
	}

	svc := notify.NewService(p.DB, notify.Config{
		Concurrency:    cfg.WebhookConcurrency,
		AttemptTimeout: cfg.WebhookTimeout,
		BackoffBase:    cfg.WebhookBackoff,
		BackoffMax:     cfg.WebhookBackoffMax,
		GiveUpAfter:    cfg.WebhookGiveUp,
		Registerer:     p.Registry,
	}, p.Log)
	keys := idempotency.New(p.DB, p.Log)
	mux := http.NewServeMux()
	notify.Routes(mux, svc, keys, p.Log)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { keys.RunPurger(ctx, time.Hour); return nil })
	g.Go(func() error { purge(ctx, p.Log, svc, p.DB, cfg); return nil })
	g.Go(func() error { return svc.Run(ctx) })
	g.Go(func() error { return consumeEvents(ctx, cfg.Broker, p.Log, p.Registry, svc) })
	g.Go(func() error { return p.Serve(ctx, mux, notify.OpenAPI) })
	return g.Wait()
}

// consumeEvents is the broker wiring: it hands every book and author event to the
// service until ctx ends. The broker connection is retried in the background, so
// the service serves its API while the broker is down.
func consumeEvents(ctx context.Context, cfg broker.Config, log *slog.Logger, reg prometheus.Registerer, svc *notify.Service) error {
	b, err := broker.Open(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer b.Close()
	return b.Consume(ctx, notify.BrokerSubscription(cfg.Prefix), svc.HandleEvent)
}

// purge drops, every hour, finished deliveries past their retention and inbox
// records old enough that no copy of their event can still arrive.
func purge(ctx context.Context, log *slog.Logger, svc *notify.Service, db *sqldb.DB, cfg config) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := svc.Purge(ctx, cfg.DeliveryRetention); err != nil && ctx.Err() == nil {
			log.Warn("purge deliveries", "error", err)
		} else if n > 0 {
			log.Info("purged deliveries", "count", n)
		}
		if _, err := inbox.Purge(ctx, db, cfg.InboxRetention); err != nil && ctx.Err() == nil {
			log.Warn("purge inbox", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
