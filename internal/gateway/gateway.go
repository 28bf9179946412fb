// Package gateway is Folio's public entry point: a reverse proxy that routes each
// request to the service that owns its path, verifies JWTs locally from the auth
// service's JWKS, enforces roles, limits each client's request rate, and balances
// load over every healthy instance of a service. The same holds for the calls of
// the services' RPC APIs (gRPC, gRPC-Web and Connect; rpc.go), which go on over
// h2c and are refused, when they are, in the caller's protocol.
package gateway

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"

	"folio/internal/platform/authn"
	"folio/internal/platform/clientip"
	"folio/internal/platform/discovery"
)

// OpenAPI describes the gateway's own endpoints; the merged documentation of every
// service is a later addition (/docs).
//
//go:embed openapi.json
var OpenAPI []byte

// Names of the services behind the gateway, as used in metrics and logs.
const (
	ServiceBook   = "book"
	ServiceAuthor = "author"
	ServiceAuth   = "auth"
	ServiceNotify = "notify"
	// ServiceInventory and ServiceOrder serve the order saga's public routes
	// (docs/orders.md); the payment service is internal and has no route here.
	ServiceInventory = "inventory"
	ServiceOrder     = "order"
)

// Services are the services the gateway routes to.
var Services = []string{ServiceBook, ServiceAuthor, ServiceAuth, ServiceNotify, ServiceInventory, ServiceOrder}

// Config is what the gateway needs. Zero values of the tuning fields take defaults.
type Config struct {
	// Instances maps each service name to the base URLs of its instances
	// (static discovery): scheme and host only, no path.
	Instances map[string][]string
	// Resolver, when set, replaces Instances: each service's pool follows the
	// instances it reports (nats discovery) while Run runs.
	Resolver discovery.Resolver
	// JWKSURL is where the auth service publishes its public keys. Empty means the
	// auth service's /.well-known/jwks.json, fetched through its pool.
	JWKSURL  string
	Issuer   string
	Audience string
	// TokenTTL is the longest lifetime a token may have (default 15 min), the auth
	// service's FOLIO_TOKEN_TTL.
	TokenTTL time.Duration
	// RateLimit is each client's sustained request rate per second; RateBurst its burst.
	RateLimit float64
	RateBurst int
	// CORSOrigins lists the origins browsers may call from ("*" for any); empty turns CORS off.
	CORSOrigins []string
	// UpstreamTimeout bounds each proxied request, retries included.
	UpstreamTimeout time.Duration
	// RouteTimeouts overrides UpstreamTimeout for the routes whose path starts
	// with a key ("/authors/books": 5s); the longest matching prefix wins.
	RouteTimeouts map[string]time.Duration
	// TryTimeout bounds one attempt at an idempotent request (GET, HEAD, OPTIONS
	// without a body) while another instance is left to retry it on: an instance
	// that has not started answering by then is abandoned for another, once, within
	// the route's deadline (default 1 s; decision 18). TryTimeouts overrides it per
	// service; the author service's reads wait on the book service for up to the
	// 2 s the contract allows, so its default is authorTryTimeout.
	TryTimeout  time.Duration
	TryTimeouts map[string]time.Duration

	// JWKSMinRefresh is the least time between two JWKS fetches (default 10 s), so
	// that tokens with unknown key ids cannot make the gateway hammer the auth service.
	JWKSMinRefresh time.Duration
	// JWKSMaxAge is how long a fetched key set is used before it is fetched again (default 5 min).
	JWKSMaxAge time.Duration
	// EjectAfter consecutive failures (connections refused or broken, timeouts) take
	// an instance out of rotation for EjectFor (defaults 3 and 10 s).
	EjectAfter int
	EjectFor   time.Duration
	// MaxClients bounds the rate limiter's memory (default 100 000 clients).
	MaxClients int
	// RedisURL, when set, keeps the rate limit budgets in Redis, shared by every
	// gateway instance, under keys starting with RedisKeyPrefix (default
	// "folio:gateway:"); otherwise each instance keeps its own in memory.
	RedisURL       string
	RedisKeyPrefix string
	// Proxies are the proxies in front of the gateway whose X-Forwarded-For is
	// kept (FOLIO_TRUSTED_PROXIES); from any other peer the chain starts afresh.
	Proxies clientip.Proxies
	// Now is the clock (default time.Now); tests replace it.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.UpstreamTimeout <= 0 {
		c.UpstreamTimeout = 10 * time.Second
	}
	if c.TryTimeout <= 0 {
		c.TryTimeout = time.Second
	}
	if c.JWKSMinRefresh <= 0 {
		c.JWKSMinRefresh = 10 * time.Second
	}
	if c.JWKSMaxAge <= 0 {
		c.JWKSMaxAge = 5 * time.Minute
	}
	if c.EjectAfter <= 0 {
		c.EjectAfter = 3
	}
	if c.EjectFor <= 0 {
		c.EjectFor = 10 * time.Second
	}
	if c.MaxClients <= 0 {
		c.MaxClients = 100_000
	}
	if c.RedisKeyPrefix == "" {
		c.RedisKeyPrefix = "folio:gateway:"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	for _, name := range Services {
		urls := c.Instances[name]
		if len(urls) == 0 && c.Resolver == nil {
			return fmt.Errorf("service %s has no instance URLs", name)
		}
		for _, raw := range urls {
			if _, err := parseInstanceURL(raw); err != nil {
				return fmt.Errorf("service %s: %w", name, err)
			}
		}
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("JWKS URL %q is not an http or https URL", c.JWKSURL)
		}
	}
	for prefix, d := range c.RouteTimeouts {
		if !strings.HasPrefix(prefix, "/") || d <= 0 {
			return fmt.Errorf("route timeout %s=%s: the route must start with / and the timeout be positive", prefix, d)
		}
	}
	for service, d := range c.TryTimeouts {
		if !slices.Contains(Services, service) || d <= 0 {
			return fmt.Errorf("try timeout %s=%s: the service must be one of %s and the timeout be positive", service, d, strings.Join(Services, ", "))
		}
	}
	if c.Issuer == "" || c.Audience == "" {
		return errors.New("the JWT issuer and audience must be set")
	}
	if c.RateLimit <= 0 || c.RateBurst <= 0 {
		return fmt.Errorf("the rate limit (%v/s) and burst (%d) must be positive", c.RateLimit, c.RateBurst)
	}
	return nil
}

func parseInstanceURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("instance URL %q is not an http or https URL", raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("instance URL %q must have no path, query or user info", raw)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// Gateway routes, authenticates, rate-limits and balances requests to the services.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	metrics  *instruments
	verifier *authn.Verifier
	limiter  rateLimiter
	services map[string]*service
	cors     *cors.Cors
	rpcCORS  *cors.Cors // the RPC routes' CORS (newRPCCORS), nil as cors is
}

// New builds a gateway from cfg, registering its metrics on reg. It returns an error
// when cfg is not valid.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := newInstruments(reg)
	g := &Gateway{
		cfg:      cfg,
		log:      log,
		metrics:  m,
		services: map[string]*service{},
	}
	if cfg.RedisURL != "" {
		rl, err := newRedisLimiter(cfg.RedisURL, cfg.RedisKeyPrefix, cfg.RateLimit, cfg.RateBurst, log, m)
		if err != nil {
			return nil, err
		}
		g.limiter = rl
	} else {
		g.limiter = newLimiter(cfg.RateLimit, cfg.RateBurst, cfg.MaxClients, cfg.Now)
	}
	for _, name := range Services {
		var urls []string
		if cfg.Resolver == nil {
			urls = cfg.Instances[name]
		}
		svc, err := newService(name, urls, cfg, log, m)
		if err != nil {
			return nil, err
		}
		g.services[name] = svc
	}
	jwks := &http.Client{Timeout: 5 * time.Second}
	if cfg.JWKSURL == "" {
		// Through the auth service's pool: whichever instance is up answers.
		cfg.JWKSURL = "http://" + ServiceAuth + "/.well-known/jwks.json"
		jwks.Transport = g.services[ServiceAuth].proxy.Transport
	}
	g.verifier = authn.NewVerifier(authn.Config{JWKSURL: cfg.JWKSURL, Issuer: cfg.Issuer, Audience: cfg.Audience,
		MaxTTL: cfg.TokenTTL, JWKSMinRefresh: cfg.JWKSMinRefresh, JWKSMaxAge: cfg.JWKSMaxAge, Now: cfg.Now}, jwks, log, reg)
	if len(cfg.CORSOrigins) > 0 {
		g.cors = cors.New(cors.Options{
			AllowedOrigins: cfg.CORSOrigins,
			AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
			AllowedHeaders: []string{"Authorization", "Content-Type", "Accept", "If-Match", "If-None-Match",
				"Idempotency-Key", "X-Request-ID", "traceparent", "tracestate"},
			ExposedHeaders: []string{"ETag", "Location", "Retry-After", "X-Request-ID", "WWW-Authenticate"},
			MaxAge:         600,
		})
	}
	g.rpcCORS = newRPCCORS(cfg.CORSOrigins)
	return g, nil
}

// Verifier is the gateway's token verifier, for the revocations to be fed to.
func (g *Gateway) Verifier() *authn.Verifier { return g.verifier }

// Run does the gateway's background work (following discovery, forgetting idle
// rate-limit clients) until ctx ends.
func (g *Gateway) Run(ctx context.Context) {
	if g.cfg.Resolver != nil {
		for _, svc := range g.services {
			go svc.pool.follow(ctx, g.cfg.Resolver, g.log)
		}
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if rl, ok := g.limiter.(*redisLimiter); ok {
				_ = rl.close()
			}
			return
		case <-t.C:
			g.limiter.sweep()
		}
	}
}

// authorTryTimeout is the author service's default try timeout: above the 2 s within
// which the contract has it answer when the book service is slow, so that the
// gateway never abandons an author instance that is itself waiting out a slow book
// instance (and would answer).
const authorTryTimeout = 2500 * time.Millisecond

// tryTimeout is the try timeout of service's idempotent requests.
func (c Config) tryTimeout(service string) time.Duration {
	if d, ok := c.TryTimeouts[service]; ok {
		return d
	}
	if service == ServiceAuthor {
		return max(c.TryTimeout, authorTryTimeout)
	}
	return c.TryTimeout
}

// timeout is the upstream timeout of a request for path: that of the longest
// route prefix configured for it, else the default.
func (g *Gateway) timeout(path string) time.Duration {
	best, d := -1, g.cfg.UpstreamTimeout
	for prefix, t := range g.cfg.RouteTimeouts {
		if len(prefix) > best && strings.HasPrefix(path, prefix) {
			best, d = len(prefix), t
		}
	}
	return d
}
