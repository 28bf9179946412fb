package resilient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/logging"
	"folio/internal/platform/polltest"
	"folio/internal/platform/resilient"
	"folio/internal/platform/tracing"
	"folio/internal/platform/tracing/tracingtest"
)

// peer answers 500 to its first failFirst requests, or to every request while down,
// and 200 with the request body otherwise. It counts the requests that reach it.
type peer struct {
	*httptest.Server
	hits      atomic.Int32
	failFirst int32
	down      atomic.Bool
}

func newPeer(t *testing.T, failFirst int32) *peer {
	t.Helper()
	p := &peer{failFirst: failFirst}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		if n <= p.failFirst || p.down.Load() {
			http.Error(w, "failing", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(append([]byte("ok:"), body...))
	}))
	t.Cleanup(p.Close)
	return p
}

// call makes one request and returns its status and body, or the error.
func call(t *testing.T, c *http.Client, method, url, body string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(b), nil
}

// config returns the policies for a test: attempts get a generous deadline so that a
// slow machine never turns a success into a timeout.
func config(failures uint, delay time.Duration) resilient.Config {
	cfg := resilient.DefaultConfig("test")
	cfg.BreakerFailures, cfg.BreakerDelay = failures, delay
	cfg.AttemptTimeout = 10 * time.Second
	return cfg
}

func TestRetries(t *testing.T) {
	t.Run("GET is retried", func(t *testing.T) {
		p := newPeer(t, 1)
		c := resilient.NewClient(config(10, time.Minute), prometheus.NewRegistry())
		status, body, err := call(t, c, http.MethodGet, p.URL, "")
		if err != nil || status != http.StatusOK || body != "ok:" {
			t.Errorf("got %d %q %v, want 200 ok:", status, body, err)
		}
		if got := p.hits.Load(); got != 2 {
			t.Errorf("peer got %d requests, want 2", got)
		}
	})

	t.Run("POST is not retried", func(t *testing.T) {
		p := newPeer(t, 1)
		c := resilient.NewClient(config(10, time.Minute), prometheus.NewRegistry())
		status, _, err := call(t, c, http.MethodPost, p.URL, `{"a":1}`)
		if err != nil || status != http.StatusInternalServerError {
			t.Errorf("got %d %v, want the 500 returned", status, err)
		}
		if got := p.hits.Load(); got != 1 {
			t.Errorf("peer got %d requests, want 1", got)
		}
		// The next POST carries its body.
		status, body, err := call(t, c, http.MethodPost, p.URL, `{"a":1}`)
		if err != nil || status != http.StatusOK || body != `ok:{"a":1}` {
			t.Errorf("got %d %q %v, want 200 with the body echoed", status, body, err)
		}
	})

	t.Run("retries spent", func(t *testing.T) {
		p := newPeer(t, 100)
		cfg := config(10, time.Minute)
		cfg.Retries = 2
		c := resilient.NewClient(cfg, prometheus.NewRegistry())
		status, _, err := call(t, c, http.MethodGet, p.URL, "")
		if err != nil || status != http.StatusInternalServerError {
			t.Errorf("got %d %v, want the last 500 returned", status, err)
		}
		if got := p.hits.Load(); got != 3 {
			t.Errorf("peer got %d requests, want 3", got)
		}
	})
}

func TestBreaker(t *testing.T) {
	p := newPeer(t, 0)
	p.down.Store(true)
	reg := prometheus.NewRegistry()
	c := resilient.NewClient(config(3, 200*time.Millisecond), reg)

	for i := range 3 {
		if status, _, err := call(t, c, http.MethodPost, p.URL, ""); err != nil || status != http.StatusInternalServerError {
			t.Fatalf("call %d: got %d %v, want 500", i+1, status, err)
		}
	}
	if got := p.hits.Load(); got != 3 {
		t.Fatalf("peer got %d requests, want 3", got)
	}
	if got := breakerOpen(t, reg); got != 1 {
		t.Errorf("peer_circuit_breaker_open: got %v, want 1", got)
	}
	// While open, calls fail without reaching the peer. (On a machine slow enough for the
	// breaker's delay to pass meanwhile, a call is let through as a probe; it fails and
	// opens the breaker again, so the check is simply repeated.)
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		for attempt := 1; ; attempt++ {
			before := p.hits.Load()
			_, _, err := call(t, c, method, p.URL, "")
			if errors.Is(err, resilient.ErrUnavailable) && p.hits.Load() == before {
				break
			}
			if attempt == 10 {
				t.Fatalf("%s while open: got %v and %d requests at the peer, want an error wrapping ErrUnavailable and none",
					method, err, p.hits.Load()-before)
			}
		}
	}

	// The peer recovers; after the breaker's delay a probe gets through and closes it.
	p.down.Store(false)
	polltest.Until(t, "the breaker closes once the peer recovered", func() error {
		status, _, err := call(t, c, http.MethodGet, p.URL, "")
		if err != nil && !errors.Is(err, resilient.ErrUnavailable) {
			t.Fatalf("got %v, want only ErrUnavailable while the breaker is open", err)
		}
		if err == nil && status != http.StatusOK {
			return fmt.Errorf("status %d", status)
		}
		return err
	})
	if got := breakerOpen(t, reg); got != 0 {
		t.Errorf("peer_circuit_breaker_open: got %v, want 0", got)
	}
	for range 5 {
		if status, _, err := call(t, c, http.MethodPost, p.URL, ""); err != nil || status != http.StatusOK {
			t.Fatalf("after recovery: got %d %v, want 200", status, err)
		}
	}
}

// breakerOpen returns the value of the peer_circuit_breaker_open gauge in reg.
func breakerOpen(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "peer_circuit_breaker_open" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no peer_circuit_breaker_open metric")
	return 0
}

func TestUnreachable(t *testing.T) {
	// Port 1: a privileged port no test binds, so the connection is refused for sure
	// (a port just closed could be bound by another process meanwhile).
	addr := "127.0.0.1:1"
	c := resilient.NewClient(config(10, time.Minute), prometheus.NewRegistry())
	if _, _, err := call(t, c, http.MethodGet, "http://"+addr, ""); !errors.Is(err, resilient.ErrUnavailable) {
		t.Errorf("refused: got %v, want an error wrapping ErrUnavailable", err)
	}
}

func TestAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	cfg := config(10, time.Minute)
	cfg.AttemptTimeout, cfg.Retries = 20*time.Millisecond, 1
	c := resilient.NewClient(cfg, prometheus.NewRegistry())
	if _, _, err := call(t, c, http.MethodGet, srv.URL, ""); !errors.Is(err, resilient.ErrUnavailable) {
		t.Errorf("stalled peer: got %v, want an error wrapping ErrUnavailable", err)
	}
}

// TestLargeBody checks that a response body can be read whole after the call returns:
// the policies' deadlines and contexts must not cut it off.
func TestLargeBody(t *testing.T) {
	const size = 8 << 20
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 64<<10))
		for written := 0; written < size; written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	cfg := resilient.DefaultConfig("test")
	cfg.AttemptTimeout = 10 * time.Second
	c := resilient.NewClient(cfg, prometheus.NewRegistry())
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		status, body, err := call(t, c, method, srv.URL, "")
		if err != nil || status != http.StatusOK || len(body) != size {
			t.Errorf("%s: got %d, %d bytes, %v; want 200 and %d bytes", method, status, len(body), err, size)
		}
	}
}

func TestCallsCarryTheRequestIDAndTraceContext(t *testing.T) {
	got := make(chan http.Header, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() }))
	defer srv.Close()
	c := resilient.NewClient(resilient.DefaultConfig("peer"), prometheus.NewRegistry())
	// Tracing off: the trace context of the request being served goes on as it came.
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := tracing.Extract(logging.WithRequestID(context.Background(), "req-7"), map[string]string{"traceparent": tp})

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-got
	if h.Get("X-Request-ID") != "req-7" || h.Get("traceparent") != tp {
		t.Errorf("peer got X-Request-ID %q, traceparent %q; want req-7, %s", h.Get("X-Request-ID"), h.Get("traceparent"), tp)
	}
	if req.Header.Get("X-Request-ID") != "" {
		t.Error("the caller's request was changed")
	}

	// A header the caller set itself wins.
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	req.Header.Set("X-Request-ID", "own")
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := <-got; h.Get("X-Request-ID") != "own" {
		t.Errorf("peer got X-Request-ID %q, want the caller's own", h.Get("X-Request-ID"))
	}
}

func TestEachAttemptIsAClientSpan(t *testing.T) {
	spans := tracingtest.Record(t)
	p := newPeer(t, 1) // the first attempt fails, the retry succeeds
	c := resilient.NewClient(resilient.DefaultConfig("peer"), prometheus.NewRegistry())
	ctx, parent := tracing.Tracer().Start(context.Background(), "serving")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()

	var attempts []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			attempts = append(attempts, s)
		}
	}
	if len(attempts) != 2 {
		t.Fatalf("%d client spans, want one per attempt (2)", len(attempts))
	}
	for _, s := range attempts {
		if s.Name() != "GET peer" || s.Parent().SpanID() != parent.SpanContext().SpanID() ||
			s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("span %q (parent %s, trace %s), want \"GET peer\" under the caller's span", s.Name(), s.Parent().SpanID(), s.SpanContext().TraceID())
		}
	}
	if attempts[0].Status().Code != codes.Error || attempts[1].Status().Code == codes.Error {
		t.Errorf("statuses %v, %v: want the failed attempt marked an error and the retry not", attempts[0].Status(), attempts[1].Status())
	}
}

// closeCounter counts the response bodies closed of the responses through it.
type closeCounter struct {
	next   http.RoundTripper
	closed *atomic.Int32
}

func (c closeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if resp != nil {
		resp.Body = countedBody{resp.Body, c.closed}
	}
	return resp, err
}

type countedBody struct {
	io.ReadCloser
	closed *atomic.Int32
}

func (b countedBody) Close() error { b.closed.Add(1); return b.ReadCloser.Close() }

// A failed attempt's response, which the retry replaces, is closed: left open, its
// connection stayed busy for good.
func TestRetriedResponsesAreClosed(t *testing.T) {
	p := newPeer(t, 2)
	var closed atomic.Int32
	cfg := resilient.DefaultConfig("peer")
	cfg.Route = func(next http.RoundTripper) http.RoundTripper { return closeCounter{next, &closed} }
	resp, err := resilient.NewClient(cfg, prometheus.NewRegistry()).Get(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got := closed.Load(); got != 2 {
		t.Errorf("%d of the 2 failed attempts' responses closed before the answer", got)
	}
	resp.Body.Close()
}
