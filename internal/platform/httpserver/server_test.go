package httpserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/logging"
	"folio/internal/platform/metrics"
	"folio/internal/platform/polltest"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
)

type chassis struct {
	h     http.Handler
	srv   *httpserver.Server
	logs  *chassistest.LogBuffer
	reg   *prometheus.Registry
	ready error
}

// metrics returns what the metrics listener would serve.
func (c *chassis) metrics(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	metrics.Handler(c.reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// openMetrics returns what the metrics listener serves to Prometheus, which asks
// for OpenMetrics (the format that carries exemplars).
func (c *chassis) openMetrics(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	metrics.Handler(c.reg).ServeHTTP(rec, req)
	return rec.Body.String()
}

// newChassis serves a few test routes in the chassis.
func newChassis(t *testing.T) *chassis {
	t.Helper()
	return newChassisWith(t, httpserver.Config{AccessLog: true})
}

// newChassisWith is newChassis with the configuration cfg.
func newChassisWith(t *testing.T, cfg httpserver.Config) *chassis {
	t.Helper()
	c := &chassis{logs: &chassistest.LogBuffer{}, reg: metrics.NewRegistry()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		panic("secret panic value")
	})
	mux.HandleFunc("GET /panic-after-write", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		panic("late")
	})
	mux.HandleFunc("GET /abort", func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotFound) // a route's own 404 is left alone
		_, _ = io.WriteString(w, "no thing "+r.PathValue("id"))
	})
	mux.HandleFunc("GET /trace/{id}", func(w http.ResponseWriter, r *http.Request) {
		// The trace and span the handler's context carries on to calls and events.
		sc := trace.SpanContextFromContext(r.Context())
		if sc.IsValid() {
			_, _ = io.WriteString(w, sc.TraceID().String()+" "+sc.SpanID().String())
		}
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := rest.ReadBody(r)
		if err != nil {
			problem.WriteError(w, r, nil, err)
			return
		}
		_, _ = w.Write(b)
	})
	log := logging.New(c.logs, "test", "json", "info")
	c.srv = httpserver.New(cfg, log, c.reg, mux, []byte(`{"openapi":"3.1.0"}`),
		func(context.Context) error { return c.ready })
	c.h = c.srv.Handler()
	return c
}

func (c *chassis) do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantProblem(t *testing.T, resp *http.Response, status int, typ string) problem.Problem {
	t.Helper()
	b := body(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("got %d %s, want %d", resp.StatusCode, b, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("got Content-Type %q, want %q", ct, problem.ContentType)
	}
	var p problem.Problem
	if err := json.Unmarshal([]byte(b), &p); err != nil {
		t.Fatalf("body %q: %v", b, err)
	}
	if p.Status != status || p.Type != typ {
		t.Errorf("got %+v, want status %d, type %s", p, status, typ)
	}
	return p
}

func TestPanic(t *testing.T) {
	c := newChassis(t)
	req := httptest.NewRequest(http.MethodGet, "/panic", nil)
	req.Header.Set(httpserver.RequestIDHeader, "panic-req")
	resp := c.do(t, req)
	b := body(t, resp)
	resp.Body = io.NopCloser(strings.NewReader(b))
	wantProblem(t, resp, http.StatusInternalServerError, problem.TypeInternal)
	for _, leak := range []string{"goroutine", "secret panic value", ".go:", "runtime/debug"} {
		if strings.Contains(b, leak) {
			t.Errorf("body %s leaks %q", b, leak)
		}
	}
	// The stack goes to the log, with the request id.
	var found bool
	for _, line := range strings.Split(c.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "panic serving request" {
			found = true
			if rec["request_id"] != "panic-req" || !strings.Contains(rec["stack"].(string), "goroutine") {
				t.Errorf("got log line %s, want the request id and the stack", line)
			}
		}
	}
	if !found {
		t.Errorf("the panic was not logged:\n%s", c.logs)
	}

	// A panic after the header was sent cannot change the answer, and does not
	// write a second one.
	resp = c.do(t, httptest.NewRequest(http.MethodGet, "/panic-after-write", nil))
	if b := body(t, resp); resp.StatusCode != http.StatusAccepted || b != "" {
		t.Errorf("got %d %q, want the 202 already sent", resp.StatusCode, b)
	}

	// http.ErrAbortHandler keeps its meaning: the server aborts the response.
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("got panic %v, want http.ErrAbortHandler passed on", v)
			}
		}()
		c.do(t, httptest.NewRequest(http.MethodGet, "/abort", nil))
	}()

	// Counted as a 500 in the metrics.
	metrics := c.metrics(t)
	if !strings.Contains(metrics, `http_requests_total{code="500",method="GET",route="GET /panic"} 1`) {
		t.Errorf("metrics do not count the panic as a 500:\n%s", metrics)
	}
}

func TestUnknownRoutes(t *testing.T) {
	c := newChassis(t)
	for _, tt := range []struct {
		method, path string
		status       int
		typ          string
	}{
		{http.MethodGet, "/nope", http.StatusNotFound, problem.TypeNotFound},
		{http.MethodGet, "/things", http.StatusNotFound, problem.TypeNotFound},
		{http.MethodDelete, "/things/1", http.StatusMethodNotAllowed, problem.TypeMethodNotAllowed},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed, problem.TypeMethodNotAllowed},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp := c.do(t, httptest.NewRequest(tt.method, tt.path, nil))
			p := wantProblem(t, resp, tt.status, tt.typ)
			if p.Instance != tt.path {
				t.Errorf("got instance %q, want %q", p.Instance, tt.path)
			}
			if got := resp.Header.Values("X-Content-Type-Options"); len(got) != 1 || got[0] != "nosniff" {
				t.Errorf("got X-Content-Type-Options %q, want nosniff once", got)
			}
			if tt.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
				t.Error("got no Allow header with 405")
			}
		})
	}

	// A route's own 404 is not rewritten.
	resp := c.do(t, httptest.NewRequest(http.MethodGet, "/things/7", nil))
	if b := body(t, resp); resp.StatusCode != http.StatusNotFound || b != "no thing 7" {
		t.Errorf("got %d %q, want the route's own 404", resp.StatusCode, b)
	}

	metrics := c.metrics(t)
	for _, want := range []string{
		`http_requests_total{code="404",method="GET",route="unmatched"} 2`,
		`http_requests_total{code="405",method="DELETE",route="unmatched"} 1`,
		`http_requests_total{code="404",method="GET",route="GET /things/{id}"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestRequestID(t *testing.T) {
	c := newChassis(t)
	tests := []struct {
		name, sent string
		echoed     bool
	}{
		{"sent", "abc-123", true},
		{"uuid", "01890a5d-ac96-774b-bcce-b302099a8057", true},
		{"128 chars", strings.Repeat("r", 128), true},
		{"none", "", false},
		{"129 chars", strings.Repeat("r", 129), false},
		{"space", "a b", false},
		{"non-ascii", "é", false},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
			if tt.sent != "" {
				req.Header.Set(httpserver.RequestIDHeader, tt.sent)
			}
			got := c.do(t, req).Header.Get(httpserver.RequestIDHeader)
			if tt.echoed && got != tt.sent {
				t.Errorf("got %q, want %q echoed", got, tt.sent)
			}
			if !tt.echoed && (got == "" || got == tt.sent || seen[got]) {
				t.Errorf("got %q, want a new id", got)
			}
			seen[got] = true
		})
	}
	// The access log line carries the id.
	if !strings.Contains(c.logs.String(), `"request_id":"abc-123"`) {
		t.Errorf("no log line carries the request id:\n%s", c.logs)
	}
}

func TestBodyLimit(t *testing.T) {
	c := newChassis(t)
	big := strings.Repeat("x", httpserver.MaxBodyBytes+1)

	req := httptest.NewRequest(http.MethodPost, "/echo", strings.NewReader(big))
	wantProblem(t, c.do(t, req), http.StatusRequestEntityTooLarge, problem.TypeTooLarge)

	req = httptest.NewRequest(http.MethodPost, "/echo", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	wantProblem(t, c.do(t, req), http.StatusRequestEntityTooLarge, problem.TypeTooLarge)

	exact := big[1:]
	req = httptest.NewRequest(http.MethodPost, "/echo", io.MultiReader(strings.NewReader(exact)))
	req.Header.Set("Content-Type", "application/json")
	resp := c.do(t, req)
	if b := body(t, resp); resp.StatusCode != http.StatusOK || len(b) != len(exact) {
		t.Errorf("1 MiB: got %d and %d bytes, want 200 and the body", resp.StatusCode, len(b))
	}
}

// TestBodyLimitOfAnRPC: an RPC call over the limit is refused in its own protocol
// (a Connect client reads a problem as UNKNOWN), while a REST request with the same
// content type still gets the problem.
func TestBodyLimitOfAnRPC(t *testing.T) {
	c := newChassis(t)
	big := strings.Repeat("x", httpserver.MaxBodyBytes+1)
	for _, tc := range []struct {
		path, contentType string
		status            int
		wantRPC           bool
	}{
		{"/folio.book.v1.BookService/CreateBook", "application/json", http.StatusTooManyRequests, true}, // Connect: RESOURCE_EXHAUSTED is 429
		{"/folio.book.v1.BookService/CreateBook", "application/proto", http.StatusTooManyRequests, true},
		{"/echo", "application/json", http.StatusRequestEntityTooLarge, false},
		{"/.well-known/x/y", "application/json", http.StatusRequestEntityTooLarge, false},
	} {
		req := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(big))
		req.Header.Set("Content-Type", tc.contentType)
		resp := c.do(t, req)
		b := body(t, resp)
		if resp.StatusCode != tc.status || tc.wantRPC != strings.Contains(string(b), `"code":"resource_exhausted"`) {
			t.Errorf("%s %s: %d %s, want %d (an RPC error: %v)", tc.path, tc.contentType, resp.StatusCode, b, tc.status, tc.wantRPC)
		}
	}
}

func TestOperationalEndpoints(t *testing.T) {
	c := newChassis(t)
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json"} {
		resp := c.do(t, httptest.NewRequest(http.MethodGet, path, nil))
		if b := body(t, resp); resp.StatusCode != http.StatusOK || !json.Valid([]byte(b)) ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: got %d %q %s, want 200 JSON", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	}

	c.ready = errors.New("dial tcp 10.9.9.9:5432: connection refused")
	resp := c.do(t, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	p := wantProblem(t, resp, http.StatusServiceUnavailable, "/problems/not-ready")
	if strings.Contains(p.Detail, "10.9.9.9") {
		t.Errorf("got detail %q, which leaks the database address", p.Detail)
	}
	if resp := c.do(t, httptest.NewRequest(http.MethodGet, "/healthz", nil)); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz while not ready: got %d, want 200", resp.StatusCode)
	}

	// The metrics are not on the public port (issue 8, finding 10).
	wantProblem(t, c.do(t, httptest.NewRequest(http.MethodGet, "/metrics", nil)), http.StatusNotFound, problem.TypeNotFound)
}

func TestServeMetrics(t *testing.T) {
	c := newChassis(t)
	c.do(t, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	ctx, cancel := context.WithCancel(context.Background())
	logs := &chassistest.LogBuffer{}
	addr, err := httpserver.ServeMetrics(ctx, "127.0.0.1:0", c.reg, logging.New(logs, "test", "json", "info"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"msg":"metrics listening"`) || !strings.Contains(logs.String(), `"addr":"`+addr.String()+`"`) {
		t.Errorf("no log line names the metrics address %s:\n%s", addr, logs)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(b, `http_requests_total{code="200",method="GET",route="GET /healthz"} 1`) ||
		!strings.Contains(b, "go_goroutines") {
		t.Errorf("/metrics: got %d, want 200 with the HTTP and runtime metrics:\n%s", resp.StatusCode, b)
	}
	resp.Body.Close()
	cancel()
	polltest.Until(t, "the metrics listener closes after its context ended", func() error {
		conn, err := net.Dial("tcp", addr.String())
		if err != nil {
			return nil
		}
		conn.Close()
		return errors.New("it still takes connections")
	})
}

// TestSafeHeaders: every answer says nosniff and no-store unless its handler chose a
// Cache-Control, once each even when a proxied answer brought its own (issue 8,
// finding 10).
func TestSafeHeaders(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /plain", func(w http.ResponseWriter, r *http.Request) {
		rest.WriteJSON(w, http.StatusOK, map[string]string{"a": "b"})
	})
	mux.HandleFunc("GET /cached", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		rest.WriteJSON(w, http.StatusOK, map[string]string{"a": "b"})
	})
	mux.HandleFunc("GET /tagged", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		rest.WriteJSON(w, http.StatusOK, map[string]string{"a": "b"})
	})
	mux.HandleFunc("GET /proxied", func(w http.ResponseWriter, r *http.Request) {
		// What httputil.ReverseProxy does with a service's answer: add its headers.
		w.Header().Add("Cache-Control", "no-store")
		w.Header().Add("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
	})
	h := httpserver.New(httpserver.Config{}, slogDiscard(), metrics.NewRegistry(), mux, []byte(`{}`),
		func(context.Context) error { return nil }).Handler()
	for _, tc := range []struct {
		path, ifNoneMatch, cache string
		status                   int
	}{
		{path: "/plain", cache: "no-store", status: 200},
		{path: "/cached", cache: "public, max-age=60", status: 200},
		{path: "/tagged", cache: "no-store", status: 200},
		{path: "/tagged", ifNoneMatch: `"v1"`, cache: "no-store", status: 304},
		{path: "/proxied", cache: "no-store", status: 200},
		{path: "/nope", cache: "no-store", status: 404},
		{path: "/healthz", cache: "no-store", status: 200},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.ifNoneMatch != "" {
			req.Header.Set("If-None-Match", tc.ifNoneMatch)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("%s: got %d, want %d", tc.path, rec.Code, tc.status)
		}
		if got := rec.Header().Values("Cache-Control"); len(got) != 1 || got[0] != tc.cache {
			t.Errorf("%s: got Cache-Control %q, want %q once", tc.path, got, tc.cache)
		}
		if got := rec.Header().Values("X-Content-Type-Options"); len(got) != 1 || got[0] != "nosniff" {
			t.Errorf("%s: got X-Content-Type-Options %q, want nosniff once", tc.path, got)
		}
	}
}

// TestMaxHeaderBytes: a request whose headers pass 64 KiB is refused with 431 before
// any handler runs; Go's default would have read a megabyte of them.
func TestMaxHeaderBytes(t *testing.T) {
	c := newChassis(t)
	ln, err := httpserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	for _, tc := range []struct {
		size   int
		status int
	}{{size: 16 << 10, status: http.StatusOK}, {size: 100 << 10, status: http.StatusRequestHeaderFieldsTooLarge}} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/healthz", nil)
		req.Header.Set("X-Padding", strings.Repeat("a", tc.size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%d bytes of headers: %v", tc.size, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%d bytes of headers: got %d, want %d", tc.size, resp.StatusCode, tc.status)
		}
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestServeAndShutdown(t *testing.T) {
	c := newChassis(t)
	ln, err := httpserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := httpserver.Listen(ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("second listener on %s: got %v, want an error saying the address is in use", ln.Addr(), err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.srv.Serve(ctx, ln) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("got %d, want 200", resp.StatusCode)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: got %v, want nil after a graceful shutdown", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener is still open after shutdown")
	}
}

// TestBeforeCloseKeepsTheListenerOpen: shutting down, the server answers until
// BeforeClose has returned (a program withdrawn from discovery waits there for its
// peers to stop choosing it), then closes its listener.
func TestBeforeCloseKeepsTheListenerOpen(t *testing.T) {
	began, release := make(chan struct{}), make(chan struct{})
	srv := httpserver.New(httpserver.Config{BeforeClose: func() { close(began); <-release }}, slogDiscard(), metrics.NewRegistry(),
		http.NewServeMux(), []byte(`{}`), func(context.Context) error { return nil })
	ln, err := httpserver.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	base := "http://" + ln.Addr().String()
	// Each request on a new connection: what is tested is that the listener accepts.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	status := func(path string) int {
		t.Helper()
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("/healthz"); got != http.StatusOK {
		t.Fatalf("before shutdown: /healthz %d", got)
	}

	cancel()
	select {
	case <-began:
	case <-time.After(polltest.Deadline):
		t.Fatal("BeforeClose was not called when the context ended")
	}
	if got := status("/healthz"); got != http.StatusOK {
		t.Errorf("during BeforeClose: /healthz %d, want 200", got)
	}
	if got := status("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("during BeforeClose: /readyz %d, want 503", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) before BeforeClose did", err)
	default:
	}

	close(release)
	released = true
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("the listener is still open after Serve returned")
	}
}
