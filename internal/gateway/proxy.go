package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"folio/internal/platform/httpserver"
	"folio/internal/platform/problem"
)

// Problem types the gateway adds to the chassis' ones.
const (
	TypeUnauthorized = "/problems/unauthorized"
	TypeForbidden    = "/problems/forbidden"
	TypeRateLimited  = "/problems/rate-limited"
	TypeBadGateway   = "/problems/bad-gateway"
	TypeTimeout      = "/problems/upstream-timeout"
)

// service is one backend service: its instances and the reverse proxy in front of them.
type service struct {
	name  string
	pool  *pool
	proxy *httputil.ReverseProxy
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
	s := &service{name: name, pool: newPool(name, urls, cfg, m)}
	s.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Method, path, query, body and headers are kept; the balancer fills in the
			// instance. The upstream sees its own host; X-Forwarded-Host keeps ours.
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = name
			pr.Out.Host = ""
			pr.SetXForwarded()
			// The client's token goes on to the service, which verifies it again. It is
			// set here, after the hop-by-hop headers are gone, so that a client's
			// "Connection: Authorization" cannot strip it; only the value the gateway
			// verified goes.
			if a := pr.In.Header.Get("Authorization"); a != "" {
				pr.Out.Header.Set("Authorization", a)
			}
		},
		// The chassis has already set the response's X-Request-ID; the service echoes the
		// same id, which would otherwise arrive twice.
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del(httpserver.RequestIDHeader)
			return nil
		},
		Transport: &balancer{pool: s.pool, base: newTransport(longestTimeout(cfg))},
		// Without a pool the proxy allocates a 32 KiB copy buffer per request: three
		// quarters of the gateway's allocations, and so of its GC work.
		BufferPool:   copyBuffers,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: proxyError(name, log),
	}
	return s, nil
}

// proxyError answers a request that could not be proxied with a problem: 503 when no
// instance could be connected to, 504 on a timeout, 502 otherwise. The cause is only
// logged, since it names internal addresses.
func proxyError(name string, log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if errors.Is(r.Context().Err(), context.Canceled) {
			// The client went away; nobody reads this answer.
			problem.Write(w, r, problem.ClientClosed())
			return
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
