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

	"folio/internal/book"
	"folio/internal/book/authorclient"
	"folio/internal/book/events"
	"folio/internal/book/httpapi"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/chassis"
	"folio/internal/platform/outbox"
	"folio/internal/platform/resilient"
)

type config struct {
	chassis.ServiceConfig
	AuthorURL   string        `env:"FOLIO_AUTHOR_URL" envDefault:"http://127.0.0.1:8082"`
	PeerTimeout time.Duration `env:"FOLIO_PEER_TIMEOUT" envDefault:"1s"`
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
	if len(args) > 1 {
		return errors.New("book takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}
	var cfg config
	p, err := chassis.Start(ctx, "book", ":8081", &cfg, &cfg.ServiceConfig, getenv, stdout, sqlstore.Migrations)
	if err != nil {
		return err
	}
	defer p.Close()

	peer := resilient.DefaultConfig("author")
	peer.AttemptTimeout = cfg.PeerTimeout
	authors := authorclient.New(p.Peer("author", cfg.AuthorURL, peer))
	ev, err := p.OpenEvents(ctx)
	if err != nil {
		return err
	}
	store := sqlstore.New(outbox.NewWriter(p.DB, ev.Relay.Notify))
	authorEvents := events.Authors(store)
	ev.Consume(authorEvents.Subscription(cfg.Broker.Prefix), authorEvents.Handler(p.DB, p.Log))
	svc := book.NewService(store, book.NewAuthorDirectory(store, authors, p.Log))

	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, p.Keys, p.Verifier)
	return p.Serve(ctx, mux, httpapi.OpenAPI)
}
