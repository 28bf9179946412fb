package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"folio/internal/platform/discovery"
)

// pool is the instances of one service, chosen round-robin. An instance whose
// connections fail ejectAfter times in a row is skipped for ejectFor, then tried
// again (one more failure ejects it again; a success restores it fully). The list
// follows discovery: instances come and go while requests are served.
type pool struct {
	service    string
	instances  atomic.Pointer[[]*instance]
	next       atomic.Uint64
	ejectAfter int32
	ejectFor   time.Duration
	now        func() time.Time
	metrics    *instruments
}

type instance struct {
	url          *url.URL
	fails        atomic.Int32 // consecutive connect failures
	ejectedUntil atomic.Int64 // unix nanoseconds
}

func newPool(service string, urls []*url.URL, cfg Config, m *instruments) *pool {
	p := &pool{service: service, ejectAfter: int32(cfg.EjectAfter), ejectFor: cfg.EjectFor, now: cfg.Now, metrics: m}
	p.set(urls)
	return p
}

// set replaces the instance list with urls. An instance that stays keeps its
// failure count and ejection, so that rediscovering it does not reset them.
func (p *pool) set(urls []*url.URL) {
	old := map[string]*instance{}
	if cur := p.instances.Load(); cur != nil {
		for _, in := range *cur {
			old[in.url.String()] = in
		}
	}
	list := make([]*instance, 0, len(urls))
	for _, u := range urls {
		in, ok := old[u.String()]
		if !ok {
			in = &instance{url: u}
		}
		list = append(list, in)
	}
	p.instances.Store(&list)
	p.metrics.instances.WithLabelValues(p.service).Set(float64(len(list)))
}

// follow keeps the pool's list equal to the instances of the service that r
// knows, until ctx ends.
func (p *pool) follow(ctx context.Context, r discovery.Resolver, log *slog.Logger) {
	for list := range r.Watch(ctx, p.service) {
		urls := make([]*url.URL, 0, len(list))
		for _, in := range list {
			u, err := parseInstanceURL(in.URL)
			if err != nil {
				log.Warn("ignoring a registered instance with a bad URL", "service", p.service, "instance", in.ID, "err", err)
				continue
			}
			urls = append(urls, u)
		}
		p.set(urls)
	}
}

// pick returns the next instance in rotation other than not. When every instance is
// ejected it still returns one (the next in rotation), since trying is better than
// refusing; it returns nil when there is no other instance.
func (p *pool) pick(not *instance) *instance {
	instances := *p.instances.Load()
	n := uint64(len(instances))
	start := p.next.Add(1)
	now := p.now().UnixNano()
	var fallback *instance
	for i := range n {
		in := instances[(start+i)%n]
		if in == not {
			continue
		}
		if in.ejectedUntil.Load() <= now {
			return in
		}
		if fallback == nil {
			fallback = in
		}
	}
	return fallback
}

func (p *pool) failed(in *instance) {
	if in.fails.Add(1) >= p.ejectAfter {
		in.ejectedUntil.Store(p.now().Add(p.ejectFor).UnixNano())
		p.metrics.ejections.WithLabelValues(p.service).Inc()
	}
}

func (p *pool) succeeded(in *instance) {
	if in.fails.Load() != 0 {
		in.fails.Store(0)
		in.ejectedUntil.Store(0)
	}
}

// balancer is the RoundTripper under a service's reverse proxy: it sends each request
// to an instance from the pool and retries a GET or HEAD without a body once on
// another instance when the first fails before answering: it could not be connected
// to, or the connection broke (an instance killed mid-request resets it). Reads are
// safe to repeat; anything else is never retried. A timeout is not retried either:
// it has already spent the request's time.
type balancer struct {
	pool *pool
	base http.RoundTripper
}

func (b *balancer) RoundTrip(r *http.Request) (*http.Response, error) {
	first := b.pool.pick(nil)
	if first == nil {
		return nil, discovery.ErrNoInstance
	}
	resp, err := b.attempt(r, first)
	if err == nil || !retryable(r) || isTimeout(err) {
		return resp, err
	}
	second := b.pool.pick(first)
	if second == nil || r.Context().Err() != nil {
		return nil, err
	}
	b.pool.metrics.retries.WithLabelValues(b.pool.service).Inc()
	return b.attempt(r, second)
}

func (b *balancer) attempt(r *http.Request, in *instance) (*http.Response, error) {
	out := r.WithContext(r.Context()) // a shallow copy with its own URL
	u := *r.URL
	u.Scheme, u.Host = in.url.Scheme, in.url.Host
	out.URL = &u
	resp, err := b.base.RoundTrip(out)
	outcome := "error"
	switch {
	case err == nil:
		b.pool.succeeded(in)
		outcome = strconv.Itoa(resp.StatusCode/100) + "xx"
	case isConnectError(err):
		b.pool.failed(in)
		outcome = "connect_error"
	case isTimeout(err):
		outcome = "timeout"
	case r.Context().Err() == nil:
		// The connection broke without an answer: count it against the instance.
		b.pool.failed(in)
	}
	b.pool.metrics.upstream.WithLabelValues(b.pool.service, outcome).Inc()
	return resp, err
}

// retryable reports whether r may be sent again: a GET or HEAD without a body.
func retryable(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		(r.Body == nil || r.Body == http.NoBody)
}

// isConnectError reports whether err is a failure to open a connection, which means
// the request was not sent.
func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// newTransport is the connection pool shared by all services' balancers.
func newTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy: nil, // the services are reached directly, whatever HTTP_PROXY says
		DialContext: (&net.Dialer{
			Timeout:   min(2*time.Second, timeout),
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
	}
}
