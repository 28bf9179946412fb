package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/discovery"
)

// pool is the instances of one service, chosen round-robin. An instance that fails
// (refuses or breaks a connection, or does not answer in time) ejectAfter times in a row is skipped for ejectFor, then tried
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
	// statusOutcomes holds the upstream counters of the outcomes 1xx–5xx, each
	// looked up on first use (a series appears when it is first counted, as
	// before) rather than hashed from its labels on every attempt.
	statusOutcomes [6]atomic.Pointer[prometheus.Counter]
}

type instance struct {
	url          *url.URL
	fails        atomic.Int32 // consecutive failures
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

// failed counts a failure of in (reason is an outcome: connect_error, timeout,
// error) and ejects it once its failures in a row reach ejectAfter.
func (p *pool) failed(in *instance, reason string) {
	if in.fails.Add(1) >= p.ejectAfter {
		now := p.now()
		// Requests that were in flight on it when it was ejected fail too: they extend
		// the ejection, but are not counted as ejections of their own.
		if in.ejectedUntil.Swap(now.Add(p.ejectFor).UnixNano()) <= now.UnixNano() {
			p.metrics.ejections.WithLabelValues(p.service, reason).Inc()
		}
	}
}

func (p *pool) succeeded(in *instance) {
	if in.fails.Load() != 0 {
		in.fails.Store(0)
		in.ejectedUntil.Store(0)
	}
}

// size is how many instances the pool has now.
func (p *pool) size() int { return len(*p.instances.Load()) }

// balancer is the RoundTripper under a service's reverse proxy: it sends each request
// to an instance from the pool and, at most once, to another instance when the first
// attempt fails in a way that makes a second one safe (decision 18):
//
//   - the connection could not be opened (refused, no instance): nothing was sent,
//     so any method is retried, provided nothing has read its body;
//   - an idempotent request without a body (GET, HEAD, OPTIONS) got no answer within
//     the try timeout, or its connection broke before an answer.
//
// A request whose bytes may have reached a service is otherwise never sent again.
// The second attempt has the rest of the route's deadline; a timeout of that
// deadline is never retried, since it has spent the request's time.
type balancer struct {
	pool       *pool
	base       http.RoundTripper
	tryTimeout time.Duration
}

func (b *balancer) RoundTrip(r *http.Request) (*http.Response, error) {
	first := b.pool.pick(nil)
	if first == nil {
		return nil, discovery.ErrNoInstance
	}
	resp, err := b.attempt(r, first, b.firstTry(r))
	if err == nil {
		return resp, nil
	}
	reason, ok := retryReason(r, err)
	if !ok {
		return nil, err
	}
	second := b.pool.pick(first)
	if second == nil || r.Context().Err() != nil {
		return nil, err
	}
	b.pool.metrics.retries.WithLabelValues(b.pool.service, reason).Inc()
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(attrRetry.String(reason))
	}
	return b.attempt(r, second, 0)
}

// firstTry is the timeout of a request's first attempt: the try timeout for an
// idempotent request while another instance is left to retry on and the route's
// deadline leaves time for that, else none (the route's deadline bounds it).
func (b *balancer) firstTry(r *http.Request) time.Duration {
	if b.tryTimeout <= 0 || !idempotent(r) || b.pool.size() < 2 {
		return 0
	}
	if deadline, ok := r.Context().Deadline(); ok && time.Until(deadline) <= b.tryTimeout {
		return 0
	}
	return b.tryTimeout
}

// errTryTimeout is the cause of an attempt abandoned at its try timeout.
var errTryTimeout error = tryTimeoutError{}

type tryTimeoutError struct{}

func (tryTimeoutError) Error() string {
	return "the instance did not start answering within the try timeout"
}
func (tryTimeoutError) Timeout() bool   { return true }
func (tryTimeoutError) Temporary() bool { return true }

// attempt sends r to in. A positive try bounds the wait for the answer's headers
// only: once they have come, the body streams under the route's deadline.
func (b *balancer) attempt(r *http.Request, in *instance, try time.Duration) (*http.Response, error) {
	ctx := r.Context()
	var (
		cancel context.CancelCauseFunc
		timer  *time.Timer
	)
	if try > 0 {
		ctx, cancel = context.WithCancelCause(ctx)
		timer = time.AfterFunc(try, func() { cancel(errTryTimeout) })
	}
	out := r.WithContext(ctx) // a shallow copy with its own URL
	u := *r.URL
	u.Scheme, u.Host = in.url.Scheme, in.url.Host
	out.URL = &u
	resp, err := b.base.RoundTrip(out)
	if timer != nil {
		switch {
		case !timer.Stop():
			// The try timed out, perhaps just as the answer came: its context is
			// cancelled, so the answer could not be read anyway.
			if err == nil {
				resp.Body.Close()
				resp = nil
			}
			if err == nil {
				err = errTryTimeout
			} else {
				err = fmt.Errorf("%w: %w", errTryTimeout, err)
			}
		case err == nil:
			resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		default:
			cancel(nil)
		}
	}
	outcome := "error"
	switch {
	case err == nil:
		b.pool.succeeded(in)
		if c := b.pool.statusCounter(resp.StatusCode); c != nil {
			c.Inc()
			return resp, nil
		}
		outcome = strconv.Itoa(resp.StatusCode/100) + "xx"
	case isConnectError(err):
		b.pool.failed(in, "connect_error")
		outcome = "connect_error"
	case isTimeout(err):
		outcome = "timeout"
		if !errors.Is(r.Context().Err(), context.Canceled) {
			// The instance did not answer in time (the try's or the route's): count
			// it like a failed connection, so that a frozen instance is ejected.
			b.pool.failed(in, outcome)
		}
	case r.Context().Err() == nil:
		// The connection broke without an answer: count it against the instance.
		b.pool.failed(in, outcome)
	}
	b.pool.metrics.upstream.WithLabelValues(b.pool.service, outcome).Inc()
	return resp, err
}

// statusCounter is the upstream counter of an answer with status code, or nil
// for a code outside 100–599.
func (p *pool) statusCounter(code int) prometheus.Counter {
	class := code / 100
	if class < 1 || class >= len(p.statusOutcomes) {
		return nil
	}
	if c := p.statusOutcomes[class].Load(); c != nil {
		return *c
	}
	c := p.metrics.upstream.WithLabelValues(p.service, strconv.Itoa(class)+"xx")
	p.statusOutcomes[class].Store(&c)
	return c
}

// cancelOnClose releases an attempt's context once its answer has been read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}

// retryReason says whether the failed first attempt at r may be made again on
// another instance, and why (the retries metric's reason).
func retryReason(r *http.Request, err error) (string, bool) {
	switch {
	case isConnectError(err):
		if b, ok := r.Body.(*requestBody); ok && b.sent() {
			return "", false
		}
		return "connect_error", true
	case !idempotent(r) || r.Context().Err() != nil:
		return "", false
	case errors.Is(err, errTryTimeout):
		return "timeout", true
	case isTimeout(err):
		return "", false
	default:
		return "error", true
	}
}

// idempotent reports whether r may be sent twice: a GET, HEAD or OPTIONS without
// a body (a body once read cannot be sent again).
func idempotent(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions) &&
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

// newH2CTransport is newTransport speaking HTTP/2 without TLS, with prior
// knowledge, as the services' chassis serves it: gRPC needs HTTP/2 and its
// trailers end to end. The calls to an instance share its connection (another is
// opened when the instance's concurrent streams run out).
func newH2CTransport(timeout time.Duration) *http.Transport {
	t := newTransport(timeout)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	t.Protocols = &p
	// Every call to an instance rides one connection: one that stops answering
	// (the instance frozen, or cut off) is found by a ping and closed, rather
	// than holding each of those calls until its deadline.
	t.HTTP2 = &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 5 * time.Second}
	return t
}
