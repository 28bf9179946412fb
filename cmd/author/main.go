// Command author runs the author service.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"folio/internal/author"
	"folio/internal/author/bookclient"
	"folio/internal/author/events"
	"folio/internal/author/httpapi"
	"folio/internal/author/sqlstore"
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

type settings struct {
	chassis.ServiceConfig
	BookURL string `env:"FOLIO_BOOK_URL" envDefault:"http://127.0.0.1:8081"`
	// BookTransport is how the book service is called: its HTTP API or gRPC.
	BookTransport string        `env:"FOLIO_BOOK_TRANSPORT" envDefault:"http"`
	PeerTimeout   time.Duration `env:"FOLIO_PEER_TIMEOUT" envDefault:"1s"`
	// UpstreamBudget bounds all calls to the book service for one request, retries
	// included, so that the request is answered within 2 s even when the book
	// service is slow.
	UpstreamBudget time.Duration `env:"FOLIO_UPSTREAM_BUDGET" envDefault:"1500ms"`
}

// check fills in the defaults and refuses a bad setting, before anything is opened.
func (c *settings) check() error {
	if err := c.ServiceConfig.Check("author", ":8082"); err != nil {
		return err
	}
	u, err := url.Parse(c.BookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("FOLIO_BOOK_URL %q is not an http or https URL", c.BookURL)
	}
	if c.BookTransport != "http" && c.BookTransport != "grpc" {
		return fmt.Errorf("FOLIO_BOOK_TRANSPORT must be http or grpc, not %q", c.BookTransport)
	}
	if c.PeerTimeout <= 0 {
		return fmt.Errorf("FOLIO_PEER_TIMEOUT must be positive, not %s", c.PeerTimeout)
	}
	if c.UpstreamBudget <= 0 {
		return fmt.Errorf("FOLIO_UPSTREAM_BUDGET must be positive, not %s", c.UpstreamBudget)
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "author:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if release.IsVersionFlag(args) {
		fmt.Fprintln(stdout, "author", release.Get())
		return nil
	}
	if chassis.IsHealthcheckFlag(args) {
		return chassis.Healthcheck(ctx, getenv, ":8082", stdout)
	}
	if len(args) > 1 {
		return errors.New("author takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}

	// Configuration: read and checked before anything is opened.
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := cfg.Logger(stdout, "author")
	log.Info("starting", config.Attrs(&cfg)...)

	// Tracing, from the standard OTEL_* variables: off unless they name an exporter.
	stopTracing, err := tracing.Setup(ctx, getenv, "author", log)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() { _ = stopTracing(context.Background()) }()

	// Database: the authors and the book projection, then the idempotency keys,
	// outbox and inbox beside them.
	db, err := chassis.OpenDatabase(ctx, cfg.DatabaseURL, sqlstore.Migrations, idempotency.Migrate, outbox.Migrate, inbox.Migrate)
	if err != nil {
		return err
	}
	defer db.Close()

	// Metrics, discovery, the book service and token verification.
	reg := metrics.NewRegistry()
	metrics.RegisterDB(reg, db.DB, "author")
	if err := db.RegisterMetrics(reg); err != nil {
		return err
	}
	disc, err := chassis.OpenDiscovery(ctx, cfg.Discovery, reg)
	if err != nil {
		return err
	}
	defer disc.Close()
	verifier := chassis.NewVerifier(ctx, cfg.ServiceConfig, disc, log, reg)
	peer := resilient.DefaultConfig("book")
	peer.AttemptTimeout = cfg.PeerTimeout
	var books author.Books
	if cfg.BookTransport == "grpc" {
		peer.HTTP2 = true
		books = bookclient.NewRPC(chassis.PeerClient(ctx, disc, reg, "book", cfg.BookURL, peer))
	} else {
		books = bookclient.New(chassis.PeerClient(ctx, disc, reg, "book", cfg.BookURL, peer))
	}

	// Events: the broker (connected in the background: the service takes writes
	// while it is down, its outbox keeping the events), the relay of the outbox.
	bk, err := broker.Open(ctx, cfg.Broker, log, reg)
	if err != nil {
		return err
	}
	defer bk.Close()
	relay := outbox.NewRelay(db, bk, cfg.Broker.Prefix, log, reg)

	// The service and its routes.
	store := sqlstore.New(outbox.NewWriter(db, relay.Notify))
	svc := author.NewService(store, books, cfg.UpstreamBudget)
	keys := idempotency.New(db, log)
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, keys, verifier)

	// Background jobs, beside the server until ctx ends: the relay, the book events
	// that keep book_count, the purges of the inbox and of expired idempotency
	// keys, the auth service's revocations.
	bookEvents := events.Books(store)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { relay.Run(ctx); return nil })
	g.Go(func() error {
		return chassis.Consume(ctx, bk, bookEvents.Subscription(cfg.Broker.Prefix), bookEvents.Handler(db, log), log)
	})
	g.Go(func() error { chassis.PurgeInbox(ctx, db, log); return nil })
	g.Go(func() error { keys.RunPurger(ctx, time.Hour); return nil })
	g.Go(func() error {
		if err := chassis.FollowRevocations(ctx, verifier, bk, cfg.Broker.Prefix); err != nil {
			return fmt.Errorf("author: %w", err)
		}
		return nil
	})

	// Serve until ctx ends, registered in discovery meanwhile.
	g.Go(func() error {
		health := chassis.Health{Ready: db.PingContext, Detail: chassis.EventsDetail(relay, cfg.BrokerStaleAfter, disc)}
		if err := chassis.Serve(ctx, cfg.ServerConfig, log, reg, mux, httpapi.OpenAPI, health,
			chassis.Register(disc, "author", cfg.Discovery, log)); err != nil {
			return fmt.Errorf("author: %w", err)
		}
		return nil
	})
	return g.Wait()
}
