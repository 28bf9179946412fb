// Command gateway runs Folio's public entry point: routing, JWT verification, rate
// limiting and load balancing in front of the services.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"folio/internal/gateway"
	"folio/internal/platform/broker"
	"folio/internal/platform/chassis"
	"folio/internal/platform/config"
	"folio/internal/platform/discovery"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/metrics"
	"folio/internal/platform/release"
	"folio/internal/platform/tracing"
)

// settings is the gateway's configuration. It has no database, so it embeds only
// the server part of what the services read.
type settings struct {
	chassis.ServerConfig

	BookURLs   []string `env:"FOLIO_BOOK_URLS" envDefault:"http://127.0.0.1:8081"`
	AuthorURLs []string `env:"FOLIO_AUTHOR_URLS" envDefault:"http://127.0.0.1:8082"`
	AuthURLs   []string `env:"FOLIO_AUTH_URLS" envDefault:"http://127.0.0.1:8083"`
	NotifyURLs []string `env:"FOLIO_NOTIFY_URLS" envDefault:"http://127.0.0.1:8084"`
	// The order saga's public services (the payment service is internal).
	InventoryURLs []string `env:"FOLIO_INVENTORY_URLS" envDefault:"http://127.0.0.1:8085"`
	OrderURLs     []string `env:"FOLIO_ORDER_URLS" envDefault:"http://127.0.0.1:8087"`

	Discovery discovery.Config

	JWTIssuer   string `env:"FOLIO_JWT_ISSUER" envDefault:"folio-auth"`
	JWTAudience string `env:"FOLIO_JWT_AUDIENCE" envDefault:"folio"`
	// JWKSURL defaults to /.well-known/jwks.json of whichever auth instance is up.
	JWKSURL string `env:"FOLIO_JWKS_URL"`
	// TokenTTL is the auth service's token lifetime: longer-lived tokens are refused.
	TokenTTL time.Duration `env:"FOLIO_TOKEN_TTL" envDefault:"15m"`
	// Broker is where the auth service's account revocations come from; the
	// gateway only follows them.
	Broker broker.Config

	RateLimit       float64       `env:"FOLIO_RATE_LIMIT" envDefault:"50"`
	RateBurst       int           `env:"FOLIO_RATE_BURST" envDefault:"100"`
	CORSOrigins     []string      `env:"FOLIO_CORS_ORIGINS"`
	RedisURL        string        `env:"FOLIO_REDIS_URL"`
	UpstreamTimeout time.Duration `env:"FOLIO_UPSTREAM_TIMEOUT" envDefault:"10s"`
	// RouteTimeouts are per-route overrides: "/authors/books=3s,/auth/token=5s".
	RouteTimeouts map[string]time.Duration `env:"FOLIO_ROUTE_TIMEOUTS" envKeyValSeparator:"="`
	// TryTimeout bounds one attempt at a GET, HEAD or OPTIONS while another instance
	// is left to retry it on; TryTimeouts overrides it per service: "author=3s".
	TryTimeout  time.Duration            `env:"FOLIO_UPSTREAM_TRY_TIMEOUT" envDefault:"1s"`
	TryTimeouts map[string]time.Duration `env:"FOLIO_UPSTREAM_TRY_TIMEOUTS" envKeyValSeparator:"="`
}

// gatewayConfig turns the environment's view into the gateway's, trimming the lists.
func (c settings) gatewayConfig() (gateway.Config, error) {
	gc := gateway.Config{
		Instances: map[string][]string{
			gateway.ServiceBook:      trimList(c.BookURLs),
			gateway.ServiceAuthor:    trimList(c.AuthorURLs),
			gateway.ServiceAuth:      trimList(c.AuthURLs),
			gateway.ServiceNotify:    trimList(c.NotifyURLs),
			gateway.ServiceInventory: trimList(c.InventoryURLs),
			gateway.ServiceOrder:     trimList(c.OrderURLs),
		},
		JWKSURL:         c.JWKSURL,
		Issuer:          c.JWTIssuer,
		Audience:        c.JWTAudience,
		TokenTTL:        c.TokenTTL,
		RateLimit:       c.RateLimit,
		RateBurst:       c.RateBurst,
		CORSOrigins:     trimList(c.CORSOrigins),
		RedisURL:        c.RedisURL,
		UpstreamTimeout: c.UpstreamTimeout,
		RouteTimeouts:   c.RouteTimeouts,
		TryTimeout:      c.TryTimeout,
		TryTimeouts:     c.TryTimeouts,
	}
	// Checked by ServerConfig.Check before.
	gc.Proxies, _ = c.Proxies()
	if c.TokenTTL < time.Second {
		return gc, fmt.Errorf("FOLIO_TOKEN_TTL must be at least 1s, not %s", c.TokenTTL)
	}
	if c.UpstreamTimeout <= 0 {
		return gc, fmt.Errorf("FOLIO_UPSTREAM_TIMEOUT must be positive, not %s", c.UpstreamTimeout)
	}
	if c.TryTimeout <= 0 {
		return gc, fmt.Errorf("FOLIO_UPSTREAM_TRY_TIMEOUT must be positive, not %s", c.TryTimeout)
	}
	return gc, gc.Validate()
}

func trimList(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func main() {
	if os.Getenv("GOGC") == "" {
		// The gateway's live heap is small (a few MB) and every request allocates,
		// so at the default the collector runs every few hundred requests. Letting
		// the heap grow to five times the live data costs tens of MB and saves
		// that CPU; GOGC in the environment still decides.
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if release.IsVersionFlag(args) {
		fmt.Fprintln(stdout, "gateway", release.Get())
		return nil
	}
	if chassis.IsHealthcheckFlag(args) {
		return chassis.Healthcheck(ctx, getenv, "127.0.0.1:8080", stdout)
	}
	if len(args) > 1 {
		return errors.New("gateway takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}

	// Configuration: read and checked before anything is opened. Loopback unless
	// told otherwise: containers set FOLIO_HTTP_ADDR=0.0.0.0:8080.
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.ServerConfig.Check("127.0.0.1:8080"); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	gcfg, err := cfg.gatewayConfig()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := cfg.Logger(stdout, "gateway")
	log.Info("starting", config.Attrs(&cfg)...)

	// Tracing, from the standard OTEL_* variables: off unless they name an exporter.
	stopTracing, err := tracing.Setup(ctx, getenv, "gateway", log)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() { _ = stopTracing(context.Background()) }()
	// Clients outside Folio do not choose the trace the services log under.
	cfg.Public = true

	// Discovery and metrics. In nats discovery the instance lists come from the
	// registry, else from the FOLIO_*_URLS.
	reg := metrics.NewRegistry()
	disc, err := discovery.Open(ctx, cfg.Discovery, gcfg.Instances)
	if err != nil {
		return err
	}
	defer disc.Close()
	if err := disc.RegisterMetrics(reg); err != nil {
		return err
	}
	if disc.Registry != nil {
		gcfg.Resolver = disc.Resolver
	}

	// The broker, only to follow the auth service's revocations: the gateway
	// publishes nothing and consumes nothing else.
	bk, err := broker.Open(ctx, cfg.Broker, log, reg)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer bk.Close()

	// The gateway and its routes.
	gw, err := gateway.New(gcfg, log, reg)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	mux := http.NewServeMux()
	gw.Routes(mux)

	// Background jobs, beside the server until ctx ends: the instance lists and
	// the rate limiter's upkeep, the revocations.
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { gw.Run(ctx); return nil })
	g.Go(func() error {
		if err := chassis.FollowRevocations(ctx, gw.Verifier(), bk, cfg.Broker.Prefix); err != nil {
			// Tokens of revoked accounts pass until they expire: worth an error
			// line, not worth refusing every request.
			log.Error("not following the token revocations", "err", err)
		}
		return nil
	})

	// Serve until ctx ends. The gateway has no database: it is ready while it is
	// not shutting down (the server answers 503 itself then); a service being down
	// never makes it unready. /readyz says when the instance lists are the last
	// known ones.
	g.Go(func() error {
		health := chassis.Health{
			Ready: func(context.Context) error { return nil },
			Detail: func(context.Context) httpserver.Detail {
				if s := disc.Status(); s != nil {
					return httpserver.Detail{"discovery": s}
				}
				return nil
			},
		}
		if err := chassis.Serve(ctx, cfg.ServerConfig, log, reg, mux, gateway.OpenAPI, health, nil); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		return nil
	})
	return g.Wait()
}
