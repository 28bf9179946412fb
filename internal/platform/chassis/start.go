package chassis

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/authn"
	"folio/internal/platform/broker"
	"folio/internal/platform/discovery"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/inbox"
	"folio/internal/platform/logging"
	"folio/internal/platform/outbox"
	"folio/internal/platform/resilient"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/tracing"
)

// Check fills in the defaults that depend on the program, its listen address (on
// loopback) and its SQLite file under DataDir, and checks the settings every
// service shares, so that a bad one is refused before anything is opened.
func (c *ServiceConfig) Check(name, addr string) error {
	if err := c.ServerConfig.Check(addr); err != nil {
		return err
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, name+".db")
	}
	if c.BrokerStaleAfter <= 0 {
		return fmt.Errorf("FOLIO_BROKER_STALE_AFTER must be positive, not %s", c.BrokerStaleAfter)
	}
	if err := c.Discovery.Validate(); err != nil {
		return err
	}
	return c.Broker.Validate()
}

// Check fills in the listen address (addr, on loopback when it names no host)
// and checks the server's settings.
func (c *ServerConfig) Check(addr string) error {
	if c.HTTPAddr == "" {
		c.HTTPAddr = loopbackDefault(addr)
	}
	if c.ShutdownDelay < 0 || c.ShutdownTimeout <= 0 {
		return fmt.Errorf("FOLIO_SHUTDOWN_DELAY must not be negative and FOLIO_SHUTDOWN_TIMEOUT must be positive, not %s and %s", c.ShutdownDelay, c.ShutdownTimeout)
	}
	_, err := c.Proxies()
	return err
}

// OpenDatabase opens the database at url and applies the service's migrations,
// then those of the platform parts it keeps beside its tables (idempotency.Migrate,
// outbox.Migrate, inbox.Migrate), each under its own version table.
func OpenDatabase(ctx context.Context, url string, migrations fs.FS, more ...func(context.Context, *sqldb.DB) error) (*sqldb.DB, error) {
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, migrations); err != nil {
		db.Close()
		return nil, err
	}
	for _, migrate := range more {
		if err := migrate(ctx, db); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// OpenDiscovery opens the resolver (and in nats mode the registry) cfg asks for,
// with its metrics in reg.
func OpenDiscovery(ctx context.Context, cfg discovery.Config, reg prometheus.Registerer) (*discovery.Discovery, error) {
	disc, err := discovery.Open(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := disc.RegisterMetrics(reg); err != nil {
		disc.Close()
		return nil, err
	}
	return disc, nil
}

// PeerClient returns the base URL and HTTP client to call the peer service with,
// under the policies of rc: in static discovery the peer is at staticURL; in nats
// discovery each attempt goes to one of the instances registered now. The peer's
// watch lasts as long as ctx.
func PeerClient(ctx context.Context, disc *discovery.Discovery, reg prometheus.Registerer, service, staticURL string, rc resilient.Config) (baseURL string, client *http.Client) {
	r := disc.Resolver
	if disc.Registry == nil {
		r = discovery.NewStatic(map[string][]string{service: {staticURL}})
	}
	rc.Route = discovery.NewPicker(ctx, r, service).RoundTripper
	return "http://" + service, resilient.NewClient(rc, reg)
}

// NewVerifier returns the verifier of the service's callers' tokens, which fetches
// the JWKS from FOLIO_JWKS_URL or else from the auth service (at AuthURL, or its
// registered instances, which only it may register).
func NewVerifier(ctx context.Context, cfg ServiceConfig, disc *discovery.Discovery, log *slog.Logger, reg prometheus.Registerer) *authn.Verifier {
	acfg := cfg.Authn
	client := &http.Client{Timeout: 5 * time.Second}
	if acfg.JWKSURL == "" {
		var base string
		base, client = PeerClient(ctx, disc, reg, "auth", cfg.AuthURL, resilient.DefaultConfig("auth"))
		acfg.JWKSURL = base + "/.well-known/jwks.json"
	}
	return authn.NewVerifier(acfg, client, log, reg)
}

// FollowRevocations feeds v the auth service's account revocations from b until
// ctx ends.
func FollowRevocations(ctx context.Context, v *authn.Verifier, b *broker.Broker, prefix string) error {
	// b closes as ctx ends, perhaps before FollowRevocations returns.
	if err := v.FollowRevocations(ctx, b, prefix); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// Consume applies h to the messages of sub until ctx ends. The handler's context
// carries the request id the event was written under, so that its logs join
// those of the request, and the span of its handling, which continues the trace
// of the event's publication; a failure is logged and left to the broker's
// retries.
func Consume(ctx context.Context, b *broker.Broker, sub broker.Subscription, h broker.Handler, log *slog.Logger) error {
	err := b.Consume(ctx, sub, func(ctx context.Context, m broker.Message) error {
		if id := m.Header[broker.HeaderRequestID]; id != "" {
			ctx = logging.WithRequestID(ctx, id)
		}
		ctx, span := startProcess(ctx, sub.Name, m)
		err := h(ctx, m)
		if err != nil {
			log.WarnContext(ctx, "event not applied; it will be retried", "subscription", sub.Name,
				"subject", m.Subject, "event_id", m.ID, "attempt", m.Header[broker.HeaderAttempts], "err", err)
		}
		tracing.End(span, err)
		return err
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("consume %s: %w", sub.Name, err)
	}
	return nil
}

// startProcess starts the consumer span of m's handling by the subscription:
// a child of the span that published it, and linked to it as OpenTelemetry's
// messaging conventions ask, so that the event's trace goes on from the write
// through the broker into every consumer. A message published outside any trace
// starts none.
func startProcess(ctx context.Context, subscription string, m broker.Message) (context.Context, trace.Span) {
	ctx = tracing.Extract(ctx, m.Header)
	sent := trace.SpanContextFromContext(ctx)
	if !sent.IsValid() {
		return ctx, trace.SpanFromContext(ctx)
	}
	attempt, _ := strconv.Atoi(m.Header[broker.HeaderAttempts])
	return tracing.Tracer().Start(ctx, "process "+m.Subject, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(trace.Link{SpanContext: sent}),
		trace.WithAttributes(semconv.MessagingOperationTypeProcess, semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(m.Subject), semconv.MessagingConsumerGroupName(subscription),
			semconv.MessagingMessageID(m.ID), attribute.Int("folio.event.attempt", attempt)))
}

// inboxRetention is how long applied event ids are remembered: longer than any
// redelivery or republish of an event can arrive.
const inboxRetention = 7 * 24 * time.Hour

// PurgeInbox forgets, every hour until ctx ends, the events applied longer ago
// than any redelivery or republish of them can arrive.
func PurgeInbox(ctx context.Context, db *sqldb.DB, log *slog.Logger) {
	Every(ctx, time.Hour, func() {
		if _, err := inbox.Purge(ctx, db, inboxRetention); err != nil && ctx.Err() == nil {
			log.Warn("purge the inbox", "err", err)
		}
	})
}

// Every runs fn now and then every period until ctx ends: the shape of a
// program's periodic upkeep (purges), listed as a job in its run.
func Every(ctx context.Context, period time.Duration, fn func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Health is what a program's /readyz says besides its routes.
type Health struct {
	// Ready says whether the program can do its job (its database answers, say).
	Ready func(context.Context) error
	// Detail, if not nil, adds what is worth watching to the answer.
	Detail func(context.Context) httpserver.Detail
}

// EventsDetail is the /readyz detail of a service with an outbox: the relay's lag,
// and that the broker is not taking events once the oldest has waited longer than
// staleAfter (worth an operator's attention, but no reason to take the service out
// of rotation: its writes do not need the broker); and, in nats discovery, whether
// the registry answers.
func EventsDetail(relay *outbox.Relay, staleAfter time.Duration, disc *discovery.Discovery) func(context.Context) httpserver.Detail {
	return func(ctx context.Context) httpserver.Detail {
		d := httpserver.Detail{}
		if pending, oldest, err := relay.Lag(ctx); err != nil {
			d["outbox"] = map[string]any{"error": err.Error()}
		} else {
			d["outbox"] = map[string]any{"pending": pending, "oldest_age_seconds": oldest.Seconds()}
			status := map[string]any{"status": "taking events"}
			if pending > 0 && oldest > staleAfter {
				status = map[string]any{"status": "not taking events", "for_seconds": oldest.Seconds()}
			}
			d["broker"] = status
		}
		if s := disc.Status(); s != nil {
			d["discovery"] = s
		}
		return d
	}
}

// Registration is how a service announces itself in nats discovery while it
// serves: as service, with cfg's instance id and advertised URL (by default a
// random id, and the address it listens on). It is nil in static discovery.
type Registration func(ctx context.Context, addr net.Addr) (withdraw func(context.Context) error, err error)

// Register returns the Registration of service in disc's registry, or nil in
// static discovery.
func Register(disc *discovery.Discovery, service string, cfg discovery.Config, log *slog.Logger) Registration {
	reg := disc.Registry
	if reg == nil {
		return nil
	}
	return func(ctx context.Context, addr net.Addr) (func(context.Context) error, error) {
		inst := discovery.Instance{Service: service, ID: cfg.InstanceID, URL: cfg.AdvertiseURL}
		if inst.ID == "" {
			inst.ID = uuid.NewString()
		}
		if inst.URL == "" {
			inst.URL = advertised(addr)
		}
		withdraw, err := reg.Register(ctx, inst, reg.TTL()/3)
		if err != nil {
			return nil, err
		}
		log.Info("registered", "instance", inst.ID, "url", inst.URL, "ttl", reg.TTL())
		return withdraw, nil
	}
}

// Serve serves mux, with the chassis around it (request ids, access log, metrics,
// /healthz, /readyz, /openapi.json), on cfg.HTTPAddr until ctx ends, then shuts down
// gracefully. Metrics are served on their own listener (cfg.MetricsAddr), and the
// profiler when cfg.PprofAddr is set. With a Registration the program is
// registered once it listens and withdrawn first thing on shutdown, a second
// before its listener closes (decision 22).
func Serve(ctx context.Context, cfg ServerConfig, log *slog.Logger, reg *prometheus.Registry, mux *http.ServeMux, openapi []byte, health Health, registration Registration) error {
	if health.Ready == nil {
		return errors.New("chassis: Serve needs Health.Ready")
	}
	sv := serving{ready: health.Ready, detail: health.Detail}
	if registration != nil {
		sv.announce = func(addr net.Addr) (func(context.Context) error, error) { return registration(ctx, addr) }
	}
	return cfg.serve(ctx, log, reg, mux, openapi, sv)
}
