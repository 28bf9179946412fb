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
	"syscall"
	"time"

	"folio/internal/auth"
	"folio/internal/auth/httpapi"
	"folio/internal/auth/sqlstore"
	"folio/internal/platform/chassis"
	"folio/internal/platform/outbox"
	"folio/internal/platform/secrets"
)

type config struct {
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

func (c config) validate() error {
	if (c.AdminEmail == "") != (c.AdminPassword == "") {
		return errors.New("FOLIO_ADMIN_EMAIL and FOLIO_ADMIN_PASSWORD must be set together")
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 1 {
		return errors.New("auth takes no arguments; it is configured with FOLIO_* environment variables (see README)")
	}
	var cfg config
	p, err := chassis.Start(ctx, "auth", ":8083", &cfg, &cfg.ServiceConfig, getenv, stdout, sqlstore.Migrations)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}

	box, err := secrets.Load(cfg.Secrets, cfg.DataDir, p.Log)
	if err != nil {
		return err
	}
	// The outbox carries account.revoked events to every verifier.
	events, err := p.OpenEvents(ctx)
	if err != nil {
		return err
	}
	store := sqlstore.New(outbox.NewWriter(p.DB, events.Relay.Notify), box)
	svc, err := auth.NewService(store, auth.Options{
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, TokenTTL: cfg.TokenTTL, KeyRotation: cfg.KeyRotation, Log: p.Log,
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
			p.Log.Info("created the first admin account", "email", cfg.AdminEmail)
		}
	}
	// Checking often keeps rotation close to its period and picks up keys that
	// other instances made.
	go svc.RunRotation(ctx, min(time.Minute, cfg.KeyRotation/4))
	p.Keys.Fingerprint = svc.Fingerprint

	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, p.Keys, p.Proxies, httpapi.Limits{})
	return p.Serve(ctx, mux, httpapi.OpenAPI)
}
