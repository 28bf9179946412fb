// Command inventory runs the inventory service: the stock and price of each book,
// and the reservations of the order saga, whose commands it takes from the broker
// and answers there (docs/orders.md).
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

	"folio/internal/inventory"
	"folio/internal/inventory/events"
	"folio/internal/inventory/httpapi"
	"folio/internal/inventory/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/chassis"
	"folio/internal/platform/config"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/inbox"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox"
	"folio/internal/platform/release"
	"folio/internal/platform/tracing"
)

// settings is the inventory service's configuration.
type settings struct {
	chassis.ServiceConfig
	// SweepInterval is how often reservations past their expiry are freed.
	SweepInterval time.Duration `env:"FOLIO_RESERVATION_SWEEP_INTERVAL" envDefault:"5s"`
}

// check fills in the defaults every service shares and checks every setting.
func (c *settings) check() error {
	if err := c.ServiceConfig.Check("inventory", ":8085"); err != nil {
		return err
	}
	if c.SweepInterval <= 0 {
		return fmt.Errorf("FOLIO_RESERVATION_SWEEP_INTERVAL must be positive, not %s", c.SweepInterval)
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if release.IsVersionFlag(args) {
		fmt.Fprintln(stdout, "inventory", release.Get())
		return nil
	}
	if chassis.IsHealthcheckFlag(args) {
		return chassis.Healthcheck(ctx, getenv, ":8085", stdout)
	}
	if len(args) > 1 {
		return errors.New("inventory takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}

	// Configuration: read and checked before anything is opened.
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := cfg.Logger(stdout, "inventory")
	log.Info("starting", config.Attrs(&cfg)...)

	// Tracing, from the standard OTEL_* variables: off unless they name an exporter.
	stopTracing, err := tracing.Setup(ctx, getenv, "inventory", log)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() { _ = stopTracing(context.Background()) }()

	// Database: the stock and the reservations, then the idempotency keys, outbox
	// (the replies to the order saga) and inbox (the commands applied) beside them.
	db, err := chassis.OpenDatabase(ctx, cfg.DatabaseURL, sqlstore.Migrations, idempotency.Migrate, outbox.Migrate, inbox.Migrate)
	if err != nil {
		return err
	}
	defer db.Close()

	// Metrics, discovery and token verification. The service calls no peer.
	reg := metrics.NewRegistry()
	metrics.RegisterDB(reg, db.DB, "inventory")
	if err := db.RegisterMetrics(reg); err != nil {
		return err
	}
	counts := events.NewMetrics(reg)
	disc, err := chassis.OpenDiscovery(ctx, cfg.Discovery, reg)
	if err != nil {
		return err
	}
	defer disc.Close()
	verifier := chassis.NewVerifier(ctx, cfg.ServiceConfig, disc, log, reg)

	// Events: the broker (connected in the background: the service serves its API
	// while it is down, its outbox keeping the replies), the relay of the outbox.
	bk, err := broker.Open(ctx, cfg.Broker, log, reg)
	if err != nil {
		return err
	}
	defer bk.Close()
	relay := outbox.NewRelay(db, bk, cfg.Broker.Prefix, log, reg)

	// The service and its routes.
	store := sqlstore.New(outbox.NewWriter(db, relay.Notify))
	svc := inventory.NewService(store, counts, nil)
	keys := idempotency.New(db, log)
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, verifier)

	// Background jobs, beside the server until ctx ends: the relay, the order
	// saga's commands, the book deletes, the sweep of expired reservations, the
	// purges of the inbox and of expired idempotency keys, the revocations.
	orders := events.Orders(store, counts, relay.Notify)
	books := events.Books(store)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { relay.Run(ctx); return nil })
	g.Go(func() error {
		return chassis.Consume(ctx, bk, orders.Subscription(cfg.Broker.Prefix), orders.Handler(db, log), log)
	})
	g.Go(func() error {
		return chassis.Consume(ctx, bk, books.Subscription(cfg.Broker.Prefix), books.Handler(db, log), log)
	})
	g.Go(func() error { sweepReservations(ctx, log, svc, cfg.SweepInterval); return nil })
	g.Go(func() error { chassis.PurgeInbox(ctx, db, log); return nil })
	g.Go(func() error { keys.RunPurger(ctx, time.Hour); return nil })
	g.Go(func() error {
		if err := chassis.FollowRevocations(ctx, verifier, bk, cfg.Broker.Prefix); err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		return nil
	})

	// Serve until ctx ends, registered in discovery meanwhile.
	g.Go(func() error {
		health := chassis.Health{Ready: db.PingContext, Detail: chassis.EventsDetail(relay, cfg.BrokerStaleAfter, disc)}
		if err := chassis.Serve(ctx, cfg.ServerConfig, log, reg, mux, httpapi.OpenAPI, health,
			chassis.Register(disc, "inventory", cfg.Discovery, log)); err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
		return nil
	})
	return g.Wait()
}

// sweepReservations frees, every interval, the reservations past their expiry, so
// that a dead order service never holds stock for ever.
func sweepReservations(ctx context.Context, log *slog.Logger, svc *inventory.Service, interval time.Duration) {
	chassis.Every(ctx, interval, func() {
		if n, err := svc.Sweep(ctx); err != nil && ctx.Err() == nil {
			log.Warn("sweep reservations", "error", err)
		} else if n > 0 {
			log.Info("freed expired reservations", "count", n)
		}
	})
}
