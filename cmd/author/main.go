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

	"folio/internal/author"
	"folio/internal/author/bookclient"
	"folio/internal/author/events"
	"folio/internal/author/httpapi"
	"folio/internal/author/sqlstore"
	"folio/internal/platform/chassis"
	"folio/internal/platform/outbox"
	"folio/internal/platform/resilient"
)

type config struct {
	chassis.ServiceConfig
	BookURL     string        `env:"FOLIO_BOOK_URL" envDefault:"http://127.0.0.1:8081"`
	PeerTimeout time.Duration `env:"FOLIO_PEER_TIMEOUT" envDefault:"1s"`
	// UpstreamBudget bounds all calls to the book service for one request, retries
	// included, so that the request is answered within 2 s even when the book
	// service is slow.
	UpstreamBudget time.Duration `env:"FOLIO_UPSTREAM_BUDGET" envDefault:"1500ms"`
}

func (c config) validate() error {
	u, err := url.Parse(c.BookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("FOLIO_BOOK_URL %q is not an http or https URL", c.BookURL)
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
	if len(args) > 1 {
		return errors.New("author takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}
	var cfg config
	p, err := chassis.Start(ctx, "author", ":8082", &cfg, &cfg.ServiceConfig, getenv, stdout, sqlstore.Migrations)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}

	peer := resilient.DefaultConfig("book")
	peer.AttemptTimeout = cfg.PeerTimeout
	books := bookclient.New(p.Peer("book", cfg.BookURL, peer))
	ev, err := p.OpenEvents(ctx)
	if err != nil {
		return err
	}
	store := sqlstore.New(outbox.NewWriter(p.DB, ev.Relay.Notify))
	bookEvents := events.Books(store)
	ev.Consume(bookEvents.Subscription(cfg.Broker.Prefix), bookEvents.Handler(p.DB, p.Log))
	svc := author.NewService(store, books, cfg.UpstreamBudget)

	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, p.Keys, p.Verifier)
	return p.Serve(ctx, mux, httpapi.OpenAPI)
}
