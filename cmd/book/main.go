// Command book runs the book service.
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

	"folio/internal/book"
	"folio/internal/book/authorclient"
	"folio/internal/book/events"
	"folio/internal/book/httpapi"
	"folio/internal/book/rpcapi"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/chassis"
	"folio/internal/platform/config"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/inbox"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox"
	"folio/internal/platform/release"
	"folio/internal/platform/resilient"
	"folio/internal/platform/tracing"
)

// settings is the book service's configuration: what every service reads, and how
// it reaches the author service.
type settings struct {
	chassis.ServiceConfig
	// AuthorURL is the author service's address in static discovery; in nats
	// discovery its registered instances are called instead.
	AuthorURL string `env:"FOLIO_AUTHOR_URL" envDefault:"http://127.0.0.1:8082"`
	// PeerTimeout bounds one attempt at a call to the author service.
	PeerTimeout time.Duration `env:"FOLIO_PEER_TIMEOUT" envDefault:"1s"`
}

// check fills in the defaults and refuses a bad setting, naming it.
func (c *settings) check() error {
	if err := c.ServiceConfig.Check("book", ":8081"); err != nil {
		return err
	}
	if c.PeerTimeout <= 0 {
		return fmt.Errorf("FOLIO_PEER_TIMEOUT must be positive, not %s", c.PeerTimeout)
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "book:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if release.IsVersionFlag(args) {
		fmt.Fprintln(stdout, "book", release.Get())
		return nil
	}
	if chassis.IsHealthcheckFlag(args) {
		return chassis.Healthcheck(ctx, getenv, ":8081", stdout)
	}
	if len(args) > 1 {
		return errors.New("book takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}

	// Configuration: read and checked before anything is opened.
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := cfg.Logger(stdout, "book")
	log.Info("starting", config.Attrs(&cfg)...)

	// Tracing, from the standard OTEL_* variables: off unless they name an exporter.
	stopTracing, err := tracing.Setup(ctx, getenv, "book", log)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() { _ = stopTracing(context.Background()) }()

	// Database: the books and known authors, then the idempotency keys, the outbox
	// and the inbox beside them.
	db, err := chassis.OpenDatabase(ctx, cfg.DatabaseURL, sqlstore.Migrations, idempotency.Migrate, outbox.Migrate, inbox.Migrate)
	if err != nil {
		return err
	}
	defer db.Close()

	// Metrics, discovery, the author service and the verifier of the callers' tokens.
	reg := metrics.NewRegistry()
	metrics.RegisterDB(reg, db.DB, "book")
	if err := db.RegisterMetrics(reg); err != nil {
		return err
	}
	disc, err := chassis.OpenDiscovery(ctx, cfg.Discovery, reg)
	if err != nil {
		return err
	}
	defer disc.Close()
	verifier := chassis.NewVerifier(ctx, cfg.ServiceConfig, disc, log, reg)
	peer := resilient.DefaultConfig("author")
	peer.AttemptTimeout = cfg.PeerTimeout
	authors := authorclient.New(chassis.PeerClient(ctx, disc, reg, "author", cfg.AuthorURL, peer))

	// Events: the broker (connected in the background: the service takes writes
	// while it is down, its outbox keeps the events), the relay of the outbox.
	bk, err := broker.Open(ctx, cfg.Broker, log, reg)
	if err != nil {
		return err
	}
	defer bk.Close()
	relay := outbox.NewRelay(db, bk, cfg.Broker.Prefix, log, reg)

	// The service and its routes, REST and RPC. Authors are looked up in the book database first,
	// and only those it does not know are asked of the author service.
	store := sqlstore.New(outbox.NewWriter(db, relay.Notify))
	svc := book.NewService(store, book.NewAuthorDirectory(store, authors, log))
	keys := idempotency.New(db, log)
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, keys, verifier)
	rpcapi.Routes(mux, svc, keys, verifier, db.PingContext)

	// Background jobs, beside the server until ctx ends: the relay, the author
	// events that keep the known authors, the upkeep of the inbox and of the
	// idempotency keys, the revocations of accounts.
	authorEvents := events.Authors(store)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { relay.Run(ctx); return nil })
	g.Go(func() error {
		return chassis.Consume(ctx, bk, authorEvents.Subscription(cfg.Broker.Prefix), authorEvents.Handler(db, log), log)
	})
	g.Go(func() error { chassis.PurgeInbox(ctx, db, log); return nil })
	g.Go(func() error { keys.RunPurger(ctx, time.Hour); return nil })
	g.Go(func() error {
		if err := chassis.FollowRevocations(ctx, verifier, bk, cfg.Broker.Prefix); err != nil {
			return fmt.Errorf("book: %w", err)
		}
		return nil
	})

	// Serve until ctx ends, registered in discovery meanwhile.
	g.Go(func() error {
		health := chassis.Health{Ready: db.PingContext, Detail: chassis.EventsDetail(relay, cfg.BrokerStaleAfter, disc)}
		if err := chassis.Serve(ctx, cfg.ServerConfig, log, reg, mux, httpapi.OpenAPI, health,
			chassis.Register(disc, "book", cfg.Discovery, log)); err != nil {
			return fmt.Errorf("book: %w", err)
		}
		return nil
	})
	return g.Wait()
}
