// Package resilient builds the HTTP client a Folio service uses to call a peer: a
// deadline on every attempt, retries with jittered backoff (of idempotent requests
// after any failure, of every request after a refused connection, since nothing was
// sent), each retry on another instance of the peer when it has several, a circuit
// breaker that fails fast while the peer is down, and a cap on concurrent calls.
// The policies come from failsafe-go.
package resilient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/discovery"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/logging"
	"folio/internal/platform/tracing"
)

// Config tunes the policies around calls to one peer.
type Config struct {
	Peer            string        // the peer's name, for metrics
	AttemptTimeout  time.Duration // deadline of one attempt
	Retries         int           // extra attempts: for GET, HEAD and OPTIONS, or any request refused
	MaxConcurrent   uint          // calls in flight at once; more wait briefly, then fail
	BreakerFailures uint          // consecutive failures that open the breaker
	BreakerDelay    time.Duration // how long the breaker stays open before probing
	// Route, when set, wraps the connection pool with what chooses the instance of
	// each attempt (a discovery.Picker), so that a retry goes to another instance.
	Route func(http.RoundTripper) http.RoundTripper
	// HTTP2 calls the peer with HTTP/2 only, as gRPC needs: over TLS for https
	// URLs, without (h2c, prior knowledge) for http URLs. Otherwise HTTP/1.1.
	HTTP2 bool
}

// DefaultConfig suits calls between Folio services on one network.
func DefaultConfig(peer string) Config {
	return Config{Peer: peer, AttemptTimeout: time.Second, Retries: 2, MaxConcurrent: 256,
		BreakerFailures: 5, BreakerDelay: 2 * time.Second}
}

// ErrUnavailable is returned (wrapped) for every call that failed because the peer could
// not answer: refused, timed out, breaker open, too many calls in flight.
var ErrUnavailable = errors.New("peer unavailable")

// NewClient returns an http.Client that applies the policies. Responses with status
// 5xx count as failures for the breaker and are retried (for GET, HEAD and OPTIONS),
// but are still returned to the caller once retries are spent. A request of another
// method is retried only when its connection could not be opened: it was not sent.
func NewClient(cfg Config, reg prometheus.Registerer) *http.Client {
	state := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "peer_circuit_breaker_open", Help: "1 while the circuit breaker to the peer is open or half-open, else 0.",
		ConstLabels: prometheus.Labels{"peer": cfg.Peer},
	})
	transitions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peer_circuit_breaker_transitions_total", Help: "Circuit breaker state changes, by new state.",
		ConstLabels: prometheus.Labels{"peer": cfg.Peer},
	}, []string{"state"})
	retries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peer_retries_total", Help: "Calls sent again, by the reason of the failed attempt: connect_error (nothing was sent; any method), timeout, error, 4xx (429), 5xx or grpc (a gRPC status a server sends when it cannot serve) (GET, HEAD, OPTIONS and Repeatable calls only).",
		ConstLabels: prometheus.Labels{"peer": cfg.Peer},
	}, []string{"reason"})
	reg.MustRegister(state, transitions, retries)
	countRetry := func(e failsafe.ExecutionEvent[*http.Response]) {
		retries.WithLabelValues(failureReason(e.LastResult(), e.LastError())).Inc()
		// failsafe-go drops the failed attempt's response without closing it: its
		// connection would stay busy, never reused nor closed (and its client span
		// never end). A little of the body is read so that the connection can
		// serve again.
		if resp := e.LastResult(); resp != nil && resp.Body != nil {
			_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
			resp.Body.Close()
		}
	}

	failed := func(resp *http.Response, err error) bool {
		return err != nil || resp.StatusCode >= 500 || grpcFailure(resp)
	}
	breaker := circuitbreaker.NewBuilder[*http.Response]().
		HandleIf(failed).
		WithFailureThreshold(cfg.BreakerFailures).
		WithDelay(cfg.BreakerDelay).
		WithJitterFactor(0.2).
		WithSuccessThreshold(1).
		OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
			if e.NewState == circuitbreaker.ClosedState {
				state.Set(0)
			} else {
				state.Set(1)
			}
			transitions.WithLabelValues(e.NewState.String()).Inc()
		}).
		Build()
	limit := bulkhead.NewBuilder[*http.Response](cfg.MaxConcurrent).WithMaxWaitTime(100 * time.Millisecond).Build()
	attempt := timeout.New[*http.Response](cfg.AttemptTimeout)
	retry := failsafehttp.NewRetryPolicyBuilder().
		AbortOnErrors(circuitbreaker.ErrOpen, bulkhead.ErrFull).
		WithMaxRetries(cfg.Retries).
		WithBackoff(25*time.Millisecond, 250*time.Millisecond).
		WithJitterFactor(0.5).
		HandleIf(func(resp *http.Response, _ error) bool { return grpcFailure(resp) }).
		ReturnLastFailure().
		OnRetry(countRetry).
		Build()
	// Other methods: only when the connection was refused (nothing was sent), and
	// with no delay, since the next attempt goes to another instance.
	retryRefused := retrypolicy.NewBuilder[*http.Response]().
		HandleIf(func(_ *http.Response, err error) bool { return isConnectError(err) }).
		AbortOnErrors(circuitbreaker.ErrOpen, bulkhead.ErrFull, context.Canceled).
		WithMaxRetries(cfg.Retries).
		ReturnLastFailure().
		OnRetry(countRetry).
		Build()

	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256, // the default of 2 would open a connection per call under load
		IdleConnTimeout:     90 * time.Second,
	}
	if cfg.HTTP2 {
		transport.Protocols = new(http.Protocols)
		transport.Protocols.SetHTTP2(true)
		transport.Protocols.SetUnencryptedHTTP2(true)
	}
	var base http.RoundTripper = transport
	if cfg.Route != nil {
		base = cfg.Route(base)
	}
	base = grpcAnswers{next: base}
	if tracing.Recording() {
		// Under the policies, so that each attempt is a client span of its own and
		// a retry shows as one. carryContext has put the caller's trace context on
		// the request for the attempts that make no span.
		base = tracing.RecordedOnly(otelhttp.NewTransport(base, otelhttp.WithPropagators(tracing.Propagator),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + cfg.Peer })), base)
	}
	// failsafehttp keeps the request's body and gives each attempt a fresh reader of
	// it, so a refused POST is sent again whole.
	refused := failsafehttp.NewRoundTripper(base, retryRefused, breaker, limit, attempt)
	retried := failsafehttp.NewRoundTripper(base, retry, breaker, limit, attempt)
	return &http.Client{Transport: roundTripper{refused: refused, retried: retried}}
}

// roundTripper retries every failure of the methods that are safe to repeat, and
// only refused connections of the others.
type roundTripper struct{ refused, retried http.RoundTripper }

func (t roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	rt := t.refused
	if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions || r.Context().Value(repeatableKey{}) != nil {
		rt = t.retried
	}
	// The route sends each retry to an instance the call has not tried.
	r = r.WithContext(discovery.WithAttempts(r.Context()))
	carryContext(r)
	resp, err := rt.RoundTrip(r)
	if err != nil {
		return nil, errors.Join(ErrUnavailable, err)
	}
	return resp, nil
}

type repeatableKey struct{}

// Repeatable marks the calls made with ctx as safe to repeat although they are not
// GETs: reads sent as POST, as every gRPC call is. They are retried as GETs are.
func Repeatable(ctx context.Context) context.Context {
	return context.WithValue(ctx, repeatableKey{}, true)
}

// grpcFailure reports whether resp is a gRPC answer that failed the way a 5xx
// does: gRPC answers HTTP 200 and sends its status as grpc-status, in the trailers
// (grpcAnswers has read them) or, in a trailers-only answer, the headers.
// UNKNOWN, DEADLINE_EXCEEDED, INTERNAL and UNAVAILABLE count; codes about the
// request itself (NOT_FOUND, INVALID_ARGUMENT...) do not.
func grpcFailure(resp *http.Response) bool {
	if resp == nil {
		return false
	}
	status := resp.Header.Get("Grpc-Status")
	if status == "" {
		status = resp.Trailer.Get("Grpc-Status")
	}
	switch status {
	case "2", "4", "13", "14":
		return true
	}
	return false
}

// maxGRPCAnswer bounds a gRPC answer grpcAnswers reads.
const maxGRPCAnswer = 8 << 20

// grpcAnswers reads each gRPC answer whole before the policies judge it, so that
// its status, sent in trailers after the message, counts for the breaker and the
// retries as an HTTP status does. Calls between Folio services are unary: their
// answer is one message, read within the attempt's timeout. (A streaming call
// would be held until its end: it is not what this client is for.)
type grpcAnswers struct{ next http.RoundTripper }

func (g grpcAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := g.next.RoundTrip(r)
	if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc") {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxGRPCAnswer+1))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read the gRPC answer: %w", err)
	}
	if len(body) > maxGRPCAnswer {
		return nil, fmt.Errorf("the gRPC answer is over %d bytes", maxGRPCAnswer)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// carryContext sets on r (a copy the caller does not see) the request id and
// trace context of the request being served, so that the peer's logs and traces
// join this one's; a request id the caller set itself is kept. When spans are
// recorded, each attempt's client span sets the trace context again, as its own.
func carryContext(r *http.Request) {
	ctx := r.Context()
	id := logging.RequestID(ctx)
	needID := id != "" && r.Header.Get(httpserver.RequestIDHeader) == ""
	traced := trace.SpanContextFromContext(ctx).IsValid()
	if !needID && !traced {
		return
	}
	// Only a request that gains a header needs its own map.
	r.Header = r.Header.Clone()
	if r.Header == nil {
		r.Header = http.Header{}
	}
	if needID {
		r.Header.Set(httpserver.RequestIDHeader, id)
	}
	if traced {
		tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	}
}

// isConnectError reports whether err is a failure to open a connection, which means
// the request was not sent. (discovery.ErrNoInstance is one too.)
func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// failureReason names a failed attempt for the retries metric.
func failureReason(resp *http.Response, err error) string {
	switch {
	case err == nil && grpcFailure(resp):
		return "grpc"
	case err == nil && resp != nil:
		return strconv.Itoa(resp.StatusCode/100) + "xx"
	case isConnectError(err):
		return "connect_error"
	case errors.Is(err, timeout.ErrExceeded) || errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "error"
	}
}
