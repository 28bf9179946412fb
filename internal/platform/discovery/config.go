package discovery

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"folio/internal/platform/broker/natsconn"
)

// Config chooses how a program finds its peers and, in nats mode, how it announces
// itself.
type Config struct {
	// Mode is "static" (peer URLs from configuration) or "nats" (the key-value
	// registry on the NATS server at NATSURL).
	Mode    string        `env:"FOLIO_DISCOVERY" envDefault:"static"`
	NATSURL string        `env:"FOLIO_NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	Bucket  string        `env:"FOLIO_DISCOVERY_BUCKET" envDefault:"folio_discovery"`
	TTL     time.Duration `env:"FOLIO_DISCOVERY_TTL" envDefault:"6s"`
	// AdvertiseURL is the URL other programs reach this instance at; by default
	// http://127.0.0.1:<port>, which only suits one machine.
	AdvertiseURL string `env:"FOLIO_ADVERTISE_URL"`
	// InstanceID names this instance in the registry (default: a random id).
	InstanceID string `env:"FOLIO_INSTANCE_ID"`
	// NATS is the program's NATS credential and TLS settings, the same as its
	// broker connection's.
	NATS natsconn.Config
}

// Discovery is an open resolver, and in nats mode the registry services register
// themselves in.
type Discovery struct {
	Resolver
	// Registry is nil in static mode.
	Registry *Registry
	nc       *nats.Conn
}

// Open returns the resolver cfg asks for. static gives each service's instances in
// static mode and is ignored in nats mode. In nats mode the connection is retried in
// the background, so a program starts while NATS is still coming up.
func Open(ctx context.Context, cfg Config, static map[string][]string) (*Discovery, error) {
	switch cfg.Mode {
	case "", "static":
		return &Discovery{Resolver: NewStatic(static)}, nil
	case "nats":
		auth, err := cfg.NATS.Options()
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		nc, err := nats.Connect(cfg.NATSURL, append(auth, nats.Name("folio-discovery"),
			nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond))...)
		if err != nil {
			return nil, fmt.Errorf("discovery: connect to %s: %w", natsconn.Redact(cfg.NATSURL), err)
		}
		reg, err := openRegistryRetrying(ctx, nc, cfg.Bucket, cfg.TTL)
		if err != nil {
			nc.Close()
			return nil, err
		}
		return &Discovery{Resolver: reg, Registry: reg, nc: nc}, nil
	default:
		return nil, fmt.Errorf("discovery: FOLIO_DISCOVERY must be static or nats, not %q", cfg.Mode)
	}
}

// openRegistryRetrying opens the bucket, trying again while NATS is unreachable
// until ctx ends or 30 s have passed.
func openRegistryRetrying(ctx context.Context, nc *nats.Conn, bucket string, ttl time.Duration) (*Registry, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
		reg, err := OpenRegistry(octx, nc, bucket, ttl)
		ocancel()
		if err == nil {
			return reg, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Close closes the NATS connection, if any.
func (d *Discovery) Close() {
	if d.nc != nil {
		d.nc.Close()
	}
}
