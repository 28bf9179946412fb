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
	"folio/internal/platform/chassis"
	"folio/internal/platform/egress"
	"folio/internal/platform/secrets"
)

type config struct {
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

func (c config) validate() error {
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
	if len(args) > 1 {
		return errors.New("notify takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}
	var cfg config
	p, err := chassis.Start(ctx, "notify", ":8084", &cfg, &cfg.ServiceConfig, getenv, stdout, notify.Migrations)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// The notify service publishes nothing: its outbox stays empty.
	events, err := p.OpenEvents(ctx)
	if err != nil {
		return err
	}

	box, err := secrets.Load(cfg.Secrets, cfg.DataDir, p.Log)
	if err != nil {
		return err
	}
	if cfg.WebhookAllowPrivate {
		p.Log.Warn("FOLIO_WEBHOOK_ALLOW_PRIVATE is set: webhooks may go to loopback and private addresses; never do this on a shared network")
	}
	svc, err := notify.NewService(p.DB, notify.Config{
		Concurrency:      cfg.WebhookConcurrency,
		AttemptTimeout:   cfg.WebhookTimeout,
		BackoffBase:      cfg.WebhookBackoff,
		BackoffMax:       cfg.WebhookBackoffMax,
		GiveUpAfter:      cfg.WebhookGiveUp,
		Egress:           egress.Policy{AllowPrivate: cfg.WebhookAllowPrivate},
		MaxSubscriptions: cfg.MaxSubscriptions,
		Secrets:          box,
		Registerer:       p.Registry,
	}, p.Log)
	if err != nil {
		return err
	}
	// An older version kept the secrets in clear: seal them before anything reads them.
	if n, err := svc.SealSecrets(ctx); err != nil {
		return err
	} else if n > 0 {
		p.Log.Info("sealed webhook secrets stored in clear", "count", n)
	}
	mux := http.NewServeMux()
	notify.Routes(mux, svc, p.Keys, p.Verifier, p.Log)

	events.Consume(notify.BrokerSubscription(cfg.Broker.Prefix), svc.HandleEvent)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { purge(ctx, p.Log, svc, cfg.DeliveryRetention); return nil })
	g.Go(func() error { return svc.Run(ctx) })
	g.Go(func() error { return p.Serve(ctx, mux, notify.OpenAPI) })
	return g.Wait()
}

// purge drops, every hour, finished deliveries past their retention.
func purge(ctx context.Context, log *slog.Logger, svc *notify.Service, retention time.Duration) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := svc.Purge(ctx, retention); err != nil && ctx.Err() == nil {
			log.Warn("purge deliveries", "error", err)
		} else if n > 0 {
			log.Info("purged deliveries", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
