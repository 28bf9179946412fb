// Command auth runs the auth service.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"folio/internal/auth"
	"folio/internal/auth/httpapi"
	"folio/internal/auth/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/chassis"
	"folio/internal/platform/config"
	"folio/internal/platform/fault"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox"
	"folio/internal/platform/release"
	"folio/internal/platform/secrets"
	"folio/internal/platform/tracing"
)

type settings struct {
	chassis.ServiceConfig
	// AdminEmail and AdminPassword make the first admin account at start, when no
	// account has that email yet.
	AdminEmail    string        `env:"FOLIO_ADMIN_EMAIL"`
	AdminPassword string        `env:"FOLIO_ADMIN_PASSWORD" mask:"true"`
	JWTIssuer     string        `env:"FOLIO_JWT_ISSUER" envDefault:"folio-auth"`
	JWTAudience   string        `env:"FOLIO_JWT_AUDIENCE" envDefault:"folio"`
	TokenTTL      time.Duration `env:"FOLIO_TOKEN_TTL" envDefault:"15m"`
	// KeyRotation is how often a new signing key is made; the old one stays in the
	// JWKS until the tokens it signed have expired (TokenTTL after its retirement).
	KeyRotation time.Duration `env:"FOLIO_KEY_ROTATION" envDefault:"24h"`
	// HashSlots caps the argon2id runs in flight (19 MiB each); 0 means one per
	// CPU. A register or login that finds no slot within HashWait gets 503.
	HashSlots int           `env:"FOLIO_HASH_SLOTS" envDefault:"0"`
	HashWait  time.Duration `env:"FOLIO_HASH_WAIT" envDefault:"1s"`
	// Secrets is the key that seals the signing keys in the database.
	Secrets secrets.Config
}

// check fills in the defaults every service shares and checks every setting, so
// that a bad one is refused before anything is opened.
func (c *settings) check() error {
	if err := c.ServiceConfig.Check("auth", ":8083"); err != nil {
		return err
	}
	if (c.AdminEmail == "") != (c.AdminPassword == "") {
		return errors.New("FOLIO_ADMIN_EMAIL and FOLIO_ADMIN_PASSWORD must be set together")
	}
	if c.AdminEmail != "" {
		if err := auth.CheckCredentials(c.AdminEmail, c.AdminPassword); err != nil {
			return fmt.Errorf("FOLIO_ADMIN_EMAIL and FOLIO_ADMIN_PASSWORD: %s", describe(err))
		}
	}
	if c.JWTIssuer == "" {
		return errors.New("FOLIO_JWT_ISSUER must not be empty")
	}
	if c.JWTAudience == "" {
		return errors.New("FOLIO_JWT_AUDIENCE must not be empty")
	}
	if c.TokenTTL < time.Second {
		return fmt.Errorf("FOLIO_TOKEN_TTL must be at least 1s, not %s", c.TokenTTL)
	}
	if c.HashSlots < 0 {
		return fmt.Errorf("FOLIO_HASH_SLOTS must not be negative, not %d", c.HashSlots)
	}
	if c.HashWait <= 0 {
		return fmt.Errorf("FOLIO_HASH_WAIT must be positive, not %s", c.HashWait)
	}
	if c.KeyRotation < time.Minute {
		return fmt.Errorf("FOLIO_KEY_ROTATION must be at least 1m, not %s", c.KeyRotation)
	}
	return nil
}

// describe spells out the broken rules of an Invalid error for an operator.
func describe(err error) string {
	fe := fault.Classify(err)
	if fe == nil || len(fe.Fields) == 0 {
		return err.Error()
	}
	rules := make([]string, len(fe.Fields))
	for i, f := range fe.Fields {
		rules[i] = f.Field + " " + f.Message
	}
	return strings.Join(rules, "; ")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if release.IsVersionFlag(args) {
		fmt.Fprintln(stdout, "auth", release.Get())
		return nil
	}
	if chassis.IsHealthcheckFlag(args) {
		return chassis.Healthcheck(ctx, getenv, ":8083", stdout)
	}
	if len(args) > 1 {
		return errors.New("auth takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}

	// Configuration: read and checked before anything is opened.
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.check(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	proxies, err := cfg.Proxies()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	log := cfg.Logger(stdout, "auth")
	log.Info("starting", config.Attrs(&cfg)...)

	// Tracing, from the standard OTEL_* variables: off unless they name an exporter.
	stopTracing, err := tracing.Setup(ctx, getenv, "auth", log)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() { _ = stopTracing(context.Background()) }()

	// Database: the accounts and signing keys, then the idempotency keys and the
	// outbox beside them. auth consumes no events: it has no inbox.
	db, err := chassis.OpenDatabase(ctx, cfg.DatabaseURL, sqlstore.Migrations, idempotency.Migrate, outbox.Migrate)
	if err != nil {
		return err
	}
	defer db.Close()
	// The key that seals the signing keys: never in the database.
	box, err := secrets.Load(cfg.Secrets, cfg.DataDir, log)
	if err != nil {
		return err
	}

	// Metrics and discovery.
	reg := metrics.NewRegistry()
	metrics.RegisterDB(reg, db.DB, "auth")
	disc, err := chassis.OpenDiscovery(ctx, cfg.Discovery, reg)
	if err != nil {
		return err
	}
	defer disc.Close()

	// Events: the broker (connected in the background), the relay of the outbox,
	// which carries account.revoked to every verifier.
	bk, err := broker.Open(ctx, cfg.Broker, log, reg)
	if err != nil {
		return err
	}
	defer bk.Close()
	relay := outbox.NewRelay(db, bk, cfg.Broker.Prefix, log, reg)

	// The service, its signing keys and first admin, and its routes.
	store := sqlstore.New(outbox.NewWriter(db, relay.Notify), box)
	svc, err := auth.NewService(store, auth.Options{
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, TokenTTL: cfg.TokenTTL, KeyRotation: cfg.KeyRotation, Log: log,
		HashSlots: cfg.HashSlots, HashWait: cfg.HashWait,
	})
	if err != nil {
		return err
	}
	if err := svc.Rotate(ctx); err != nil {
		return err
	}
	if cfg.AdminEmail != "" {
		created, err := svc.EnsureAdmin(ctx, cfg.AdminEmail, cfg.AdminPassword)
		if err != nil {
			return err
		}
		if created {
			log.Info("created the first admin account", "email", cfg.AdminEmail)
		}
	}
	keys := idempotency.New(db, log)
	keys.Fingerprint = svc.Fingerprint // a register body holds a password
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, keys, proxies, httpapi.Limits{})

	// Background jobs, beside the server until ctx ends. Checking the signing keys
	// often keeps rotation close to its period and picks up keys that other
	// instances made.
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { relay.Run(ctx); return nil })
	g.Go(func() error { keys.RunPurger(ctx, time.Hour); return nil })
	g.Go(func() error { svc.RunRotation(ctx, min(time.Minute, cfg.KeyRotation/4)); return nil })

	// Serve until ctx ends, registered in discovery meanwhile.
	g.Go(func() error {
		health := chassis.Health{Ready: db.PingContext, Detail: chassis.EventsDetail(relay, cfg.BrokerStaleAfter, disc)}
		if err := chassis.Serve(ctx, cfg.ServerConfig, log, reg, mux, httpapi.OpenAPI, health,
			chassis.Register(disc, "auth", cfg.Discovery, log)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		return nil
	})
	return g.Wait()
}
