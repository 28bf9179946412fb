// Package httpserver is the HTTP chassis of every Folio service: middleware (request
// id, panic recovery, body limit, safe response headers, metrics, access log), the
// operational endpoints (/healthz, /readyz, /openapi.json; /metrics on a listener of
// its own) and graceful shutdown.
package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/metrics"
	"folio/internal/platform/problem"
	"folio/internal/platform/tracing"
)

// Config is the part of a service's configuration that concerns its HTTP server.
type Config struct {
	// ShutdownDelay is how long /readyz answers 503 before the listener closes, so that
	// a load balancer stops sending new requests first (Kubernetes wants a few seconds).
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish (15 s
	// when zero).
	ShutdownTimeout time.Duration
	AccessLog       bool
	// ReadyDetail, if set, adds facts worth watching to the /readyz answer that
	// do not make the service unready (an outbox's lag, say).
	ReadyDetail func(context.Context) Detail
	// Public says that the server faces clients outside Folio (the gateway): the
	// trace context they send is not continued.
	Public bool
	// BeforeClose, if set, runs when shutdown begins, alongside ShutdownDelay: the
	// listener closes once both are over, and the server answers meanwhile. A
	// program announced in discovery withdraws there and waits until its peers have
	// stopped choosing it.
	BeforeClose func()
}

// Detail is extra information in the /readyz answer, under "detail".
type Detail map[string]any

// Server serves one service's routes inside the chassis.
type Server struct {
	cfg      Config
	log      *slog.Logger
	handler  http.Handler
	draining atomic.Bool
	ready    func(context.Context) error
}

// New registers the operational endpoints on mux and wraps it in the middleware.
// ready reports whether the service can do its job (typically: its database answers).
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry, mux *http.ServeMux, openapi []byte, ready func(context.Context) error) *Server {
	s := &Server{cfg: cfg, log: log, ready: ready}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi)
	})
	s.handler = wrap(mux, log, newInstruments(reg), cfg.AccessLog, serverSpans{record: tracing.Recording(), public: cfg.Public})
	return s
}

// Handler returns the service wrapped in the chassis, for tests that serve it in-process.
func (s *Server) Handler() http.Handler { return s.handler }

// handleReady serves GET /readyz.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		problem.Write(w, r, problem.Problem{Type: "/problems/not-ready", Status: http.StatusServiceUnavailable, Detail: "shutting down"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		s.log.WarnContext(ctx, "not ready", "err", err)
		problem.Write(w, r, problem.Problem{Type: "/problems/not-ready", Status: http.StatusServiceUnavailable, Detail: "the service cannot reach its database"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	var detail Detail
	if s.cfg.ReadyDetail != nil {
		detail = s.cfg.ReadyDetail(ctx)
	}
	if len(detail) == 0 {
		_, _ = w.Write([]byte(`{"status":"ready"}`))
		return
	}
	_ = json.NewEncoder(w).Encode(struct {
		Status string `json:"status"`
		Detail Detail `json:"detail"`
	}{"ready", detail})
}

// MaxHeaderBytes bounds a request's line and headers (64 KiB): Go's default of 1 MiB
// lets every connection hold a megabyte before any handler runs, and no Folio
// request needs more than a token and a few ids.
const MaxHeaderBytes = 64 << 10

// ServeMetrics serves reg's metrics at /metrics on a listener of its own at addr until
// ctx ends, and returns the address listened on. The public port does not serve them:
// they tell anyone who asks about routes, traffic and internals, so they belong on an
// address only the monitoring can reach.
func ServeMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) (net.Addr, error) {
	ln, err := Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second,
		MaxHeaderBytes: MaxHeaderBytes, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	log.Info("metrics listening", "addr", ln.Addr().String())
	return ln.Addr(), nil
}

// Listen opens the server's port. A port that is taken gives an error that says so.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("address %s is already in use by another program; choose another address", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// protocols are HTTP/1.1 and HTTP/2 without TLS (h2c, with prior knowledge): gRPC
// clients speak HTTP/2 only, and Folio's services talk plaintext inside the
// cluster (TLS ends at the ingress or in a mesh).
func protocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// Serve serves on ln until ctx ends, then shuts down gracefully: /readyz turns 503,
// after ShutdownDelay and BeforeClose the listener closes, and in-flight requests get
// ShutdownTimeout to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		Protocols:         protocols(),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("shutting down", "delay", s.cfg.ShutdownDelay)
	var before sync.WaitGroup
	if s.cfg.BeforeClose != nil {
		before.Go(s.cfg.BeforeClose)
	}
	time.Sleep(s.cfg.ShutdownDelay)
	before.Wait()
	timeout := s.cfg.ShutdownTimeout
	if timeout <= 0 {
		// Zero would give in-flight requests no time at all, not unlimited time.
		timeout = 15 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	s.log.Info("stopped")
	return nil
}
