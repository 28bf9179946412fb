package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/authn"
	"folio/internal/platform/clientip"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/problem"
	"folio/internal/platform/tracing"
)

// Problem types the gateway adds to the chassis' ones.
const (
	TypeUnauthorized = authn.TypeUnauthorized
	TypeForbidden    = authn.TypeForbidden
	TypeRateLimited  = "/problems/rate-limited"
	TypeBadGateway   = "/problems/bad-gateway"
	TypeTimeout      = "/problems/upstream-timeout"
)

// service is one backend service: its instances and the reverse proxies in front
// of them, one for its REST routes and one for its RPC procedures.
type service struct {
	name  string
	attr  attribute.KeyValue // folio.gateway.upstream, built once
	pool  *pool
	proxy *httputil.ReverseProxy
	// rpc forwards gRPC, gRPC-Web and Connect calls over HTTP/2 without TLS
	// (h2c), which gRPC needs end to end, streaming each message and the
	// trailers; its refusals are in the caller's protocol (rpcProxyError).
	rpc *httputil.ReverseProxy
}

func newService(name string, raw []string, cfg Config, log *slog.Logger, m *instruments) (*service, error) {
	var urls []*url.URL
	for _, s := range raw {
		u, err := parseInstanceURL(s)
		if err != nil {
			return nil, err
		}
		urls = append(urls, u)
	}
	s := &service{name: name, attr: attrUpstream.String(name), pool: newPool(name, urls, cfg, m)}
	s.proxy = &httputil.ReverseProxy{
		Rewrite: rewrite(name, cfg),
		// The chassis has already set the response's X-Request-ID; the service echoes the
		// same id, which would otherwise arrive twice.
		ModifyResponse: dropRequestID,
		Transport:      s.balancer(newTransport(longestTimeout(cfg)), cfg),
		// Without a pool the proxy allocates a 32 KiB copy buffer per request: three
		// quarters of the gateway's allocations, and so of its GC work.
		BufferPool:   copyBuffers,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: proxyError(name, log),
	}
	s.rpc = &httputil.ReverseProxy{
		Rewrite:        rewrite(name, cfg),
		ModifyResponse: dropRequestID,
		Transport:      s.balancer(newH2CTransport(longestTimeout(cfg)), cfg),
		// Each message of a stream (reflection's is both ways) goes on as it comes.
		FlushInterval: -1,
		BufferPool:    copyBuffers,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler:  rpcProxyError(name, log),
	}
	return s, nil
}

// balancer is the round tripper that spreads the service's requests over its pool
// through base.
func (s *service) balancer(base http.RoundTripper, cfg Config) *balancer {
	if tracing.Recording() {
		// Under the balancer, so that a retry on another instance is a span of its
		// own. Without a recorded span the gateway has no trace context to send (the
		// chassis continues no client's), and otelhttp would only cost allocations.
		base = tracing.RecordedOnly(tracedTransport(s.name, base), base)
	}
	return &balancer{pool: s.pool, base: base, tryTimeout: cfg.tryTimeout(s.name)}
}

// dropRequestID removes the service's X-Request-ID from its answer: the chassis
// has set the same id on the gateway's.
func dropRequestID(resp *http.Response) error {
	delete(resp.Header, requestIDKey)
	return nil
}

// rewrite makes the request a proxy sends to the service name: the client's
// method, path, query, body and headers, less what the gateway does not let a
// client choose.
func rewrite(name string, cfg Config) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		// Method, path, query, body and headers are kept; the balancer fills in the
		// instance. The upstream sees its own host; X-Forwarded-Host keeps ours.
		pr.Out.URL.Scheme = "http"
		pr.Out.URL.Host = name
		pr.Out.Host = ""
		pr.SetXForwarded()
		// SetXForwarded starts X-Forwarded-For afresh with the peer, so that a client
		// cannot choose the address the services see; a trusted proxy's chain is
		// kept, with the proxy appended.
		if chain := pr.In.Header.Values("X-Forwarded-For"); len(chain) > 0 {
			if peer, ok := clientip.Peer(pr.In); ok && cfg.Proxies.Trusts(peer) {
				pr.Out.Header.Set("X-Forwarded-For", strings.Join(chain, ", ")+", "+peer.String())
			}
		}
		// The services continue the gateway's trace, whose context the transport
		// sets for each attempt, not one a client sent: an outside caller must not
		// choose the trace id the services log under, force them to sample, or
		// push baggage into them. Dropped with tracing off too.
		// (The keys are canonical, as Header.Del would make them.)
		for _, k := range [...]string{"Traceparent", "Tracestate", "Baggage"} {
			delete(pr.Out.Header, k)
		}
		// A span that is not recorded (sampled out) makes no client span; its
		// context goes on from here, so that the services drop the trace too.
		if sc := trace.SpanContextFromContext(pr.In.Context()); sc.IsValid() && !trace.SpanFromContext(pr.In.Context()).IsRecording() {
			upstreamPropagator.Inject(pr.In.Context(), propagation.HeaderCarrier(pr.Out.Header))
		}
		if pr.Out.Body != nil {
			pr.Out.Body = &requestBody{ReadCloser: pr.Out.Body}
		}
		// The client's token goes on to the service, which verifies it again. It is
		// set here, after the hop-by-hop headers are gone, so that a client's
		// "Connection: Authorization" cannot strip it; only the value the gateway
		// verified goes.
		if a := pr.In.Header.Get("Authorization"); a != "" {
			// Usually the copy already holds exactly that value: kept as it is, it
			// costs no new slice.
			if v := pr.Out.Header["Authorization"]; len(v) != 1 || v[0] != a {
				pr.Out.Header["Authorization"] = []string{a}
			}
		}
	}
}

// requestIDKey is the request id header as http.Header keys it.
var requestIDKey = http.CanonicalHeaderKey(httpserver.RequestIDHeader)

// proxyError answers a request that could not be proxied with a problem: 413 or 400
// when the client's own body could not be read (over the limit, malformed), 503 when
// no instance could be connected to, 504 on a timeout, 502 otherwise. The cause is only
// logged, since it names internal addresses.
func proxyError(name string, log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(r.Context().Err(), context.Canceled) {
			// The client went away; nobody reads this answer.
			problem.Write(w, r, problem.ClientClosed())
			return
		}
		if b, ok := r.Body.(*requestBody); ok {
			// The client's body, not the service, failed: the client gets what a
			// service reached directly would have answered.
			var tooLarge *http.MaxBytesError
			switch berr := b.failure(); {
			case errors.As(berr, &tooLarge):
				problem.Write(w, r, problem.Problem{Type: problem.TypeTooLarge, Status: http.StatusRequestEntityTooLarge,
					Detail: "request bodies are limited to 1 MiB"})
				return
			case berr != nil:
				problem.Write(w, r, problem.Problem{Type: problem.TypeMalformed, Status: http.StatusBadRequest,
					Detail: "the request body could not be read: " + berr.Error()})
				return
			}
		}
		log.WarnContext(r.Context(), "upstream failed", "upstream", name, "method", r.Method, "path", r.URL.Path, "err", err)
		p := problem.Problem{Type: TypeBadGateway, Status: http.StatusBadGateway,
			Detail: "the " + name + " service gave no valid answer"}
		switch {
		case isConnectError(err):
			w.Header().Set("Retry-After", "1")
			p = problem.Problem{Type: problem.TypeUpstreamUnavailable, Status: http.StatusServiceUnavailable,
				Detail: "the " + name + " service is unavailable"}
		case isTimeout(err):
			p = problem.Problem{Type: TypeTimeout, Status: http.StatusGatewayTimeout,
				Detail: "the " + name + " service did not answer in time"}
		}
		problem.Write(w, r, p)
	}
}

// requestBody is a client's request body on its way to a service. It remembers why
// reading it failed (the chassis' 1 MiB cap, a malformed chunk), since the transport
// reports that as a failed round trip, which is no fault of the service. It also
// knows whether anything has read it: a body nothing read was not sent, so the
// request may go to another instance with the same body, whatever its method.
type requestBody struct {
	io.ReadCloser
	mu      sync.Mutex
	err     error
	touched bool // Read was called
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	b.touched = true
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// Close closes the client's body only once something has read it. The transport
// closes a request's body when it cannot connect; that body is still whole and is
// sent to the next instance (the server closes it when the handler returns).
func (b *requestBody) Close() error {
	if !b.sent() {
		return nil
	}
	return b.ReadCloser.Close()
}

// sent reports whether any of the body may have left for a service.
func (b *requestBody) sent() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.touched
}

// failure is the error that reading the body ended with, or nil.
func (b *requestBody) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// longestTimeout is the longest upstream timeout of any route: the request's own
// deadline is the bound of each route, the transport's must not cut it shorter.
func longestTimeout(cfg Config) time.Duration {
	d := cfg.UpstreamTimeout
	for _, t := range cfg.RouteTimeouts {
		d = max(d, t)
	}
	return d
}

// copyBuffers is the reverse proxies' pool of response copy buffers.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
