package discovery

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

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

// Validate checks the settings without connecting, so that a program can refuse
// a bad one before it opens anything.
func (cfg Config) Validate() error {
	switch cfg.Mode {
	case "", "static":
		return nil
	case "nats":
		if cfg.TTL <= 0 {
			return fmt.Errorf("discovery: FOLIO_DISCOVERY_TTL must be positive, not %s", cfg.TTL)
		}
		if cfg.Bucket == "" {
			return fmt.Errorf("discovery: FOLIO_DISCOVERY_BUCKET must not be empty")
		}
		return nil
	default:
		return fmt.Errorf("discovery: FOLIO_DISCOVERY must be static or nats, not %q", cfg.Mode)
	}
}

// Open returns the resolver cfg asks for. static gives each service's instances in
// static mode and is ignored in nats mode. In nats mode the connection is retried in
// the background, so a program starts while NATS is still coming up.
func Open(ctx context.Context, cfg Config, static map[string][]string) (*Discovery, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Mode {
	case "", "static":
		return &Discovery{Resolver: NewStatic(static)}, nil
	case "nats":
		auth, err := cfg.NATS.Options()
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		nc, err := nats.Connect(cfg.NATSURL, append(auth, nats.Name("folio-discovery"),
			nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond),
			// As the broker's: a silently dropped connection is noticed in 30 s.
			nats.PingInterval(15*time.Second), nats.MaxPingsOutstanding(2))...)
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

// Status says, in nats mode, how the registry looks from this process, for
// /readyz: while it is unhealthy, the instance lists in use are the last known
// ones. It is nil in static mode.
func (d *Discovery) Status() map[string]any {
	if d.Registry == nil {
		return nil
	}
	h := d.Registry.Health()
	status := map[string]any{"registry": "healthy"}
	switch {
	case h.Since.IsZero():
		status["registry"] = "not checked yet"
	case !h.Healthy:
		status["registry"] = "unreachable or not taking heartbeats"
		status["instances"] = "last known"
		status["unhealthy_seconds"] = time.Since(h.Since).Seconds()
	}
	return status
}

// RegisterMetrics adds, in nats mode, the registry's health to reg:
// folio_discovery_registry_healthy (1 or 0) and the time it was last healthy.
func (d *Discovery) RegisterMetrics(reg prometheus.Registerer) error {
	if d.Registry == nil {
		return nil
	}
	r := d.Registry
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "folio_discovery_registry_healthy",
			Help: "1 while the discovery registry answers and takes heartbeats; at 0 the instance lists in use are the last known ones.",
		}, func() float64 {
			if r.Health().Healthy {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "folio_discovery_registry_last_healthy_timestamp_seconds",
			Help: "When the discovery registry was last seen healthy (Unix time; 0 if never).",
		}, func() float64 {
			if t := r.Health().LastHealthy; !t.IsZero() {
				return float64(t.UnixNano()) / 1e9
			}
			return 0
		}),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("discovery metrics: %w", err)
		}
	}
	return nil
}
