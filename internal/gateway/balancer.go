package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// pool is the instances of one service, chosen round-robin. An instance whose
// connections fail ejectAfter times in a row is skipped for ejectFor, then tried
// again (one more failure ejects it again; a success restores it fully).
type pool struct {
	service    string
	instances  []*instance
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
	for _, u := range urls {
		p.instances = append(p.instances, &instance{url: u})
	}
	return p
}

// pick returns the next instance in rotation other than not. When every instance is
// ejected it still returns one (the next in rotation), since trying is better than
// refusing; it returns nil only when not is the sole instance.
func (p *pool) pick(not *instance) *instance {
	n := uint64(len(p.instances))
	start := p.next.Add(1)
	now := p.now().UnixNano()
	var fallback *instance
	for i := range n {
		in := p.instances[(start+i)%n]
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
