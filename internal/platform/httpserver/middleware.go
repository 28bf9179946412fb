package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/logging"
	"folio/internal/platform/problem"
)

// MaxBodyBytes is the largest request body any service reads (1 MiB).
const MaxBodyBytes = 1 << 20

// RequestIDHeader carries the request id between clients and services.
const RequestIDHeader = "X-Request-ID"

type instruments struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
}

func newInstruments(reg prometheus.Registerer) *instruments {
	in := &instruments{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP requests served, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "Time to serve HTTP requests, by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight", Help: "HTTP requests being served now.",
		}),
	}
	reg.MustRegister(in.requests, in.duration, in.inflight)
	return in
}

// statusWriter records the status code, and turns the router's plain-text 404 and 405
// answers for unknown routes into problem+json.
type statusWriter struct {
	http.ResponseWriter
	r           *http.Request
	status      int
	wroteHeader bool
	swallow     bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	w.status = code
	safeHeaders(w.Header())
	if w.r.Pattern == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		w.swallow = true
		p := problem.Problem{Type: problem.TypeNotFound, Status: code, Detail: "no such resource"}
		if code == http.StatusMethodNotAllowed {
			p.Type, p.Detail = problem.TypeMethodNotAllowed, "this resource does not support "+w.r.Method
		}
		problem.Write(w.ResponseWriter, w.r, p)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

// safeHeaders adds the headers every answer carries unless its handler chose
// otherwise. No browser may guess another type than the one declared (a JSON string
// read as HTML), and no cache may keep an answer that can hold a caller's data. A
// handler that wants caching (the JWKS) sets its own Cache-Control; ETags and 304s
// work as before for clients that ask. They are added when the answer starts rather
// than before the handler runs, so that the gateway, which copies a service's headers
// by adding them, never sends two of each.
//
// The values are one shared slice each rather than a new one per answer (two
// allocations of every request): a header's value slice is only ever replaced
// (Set) or appended to (Add, which copies a full slice), never written in place.
func safeHeaders(h http.Header) {
	if _, ok := h["X-Content-Type-Options"]; !ok {
		h["X-Content-Type-Options"] = nosniff
	}
	if _, ok := h["Cache-Control"]; !ok {
		h["Cache-Control"] = noStore
	}
}

var (
	nosniff = []string{"nosniff"}[:1:1]
	noStore = []string{"no-store"}[:1:1]
)

// requestIDKey is RequestIDHeader as http.Header keys it (canonical form), so
// that the middleware indexes the map without canonicalizing on every request.
var requestIDKey = http.CanonicalHeaderKey(RequestIDHeader)

// statusCodes are the http_requests_total code labels of the codes 100–599, made
// once rather than formatted on every request.
var statusCodes = func() (codes [600]string) {
	for c := 100; c < len(codes); c++ {
		codes[c] = strconv.Itoa(c)
	}
	return codes
}()

func statusLabel(code int) string {
	if code >= 100 && code < len(statusCodes) {
		return statusCodes[code]
	}
	return strconv.Itoa(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush sends what was written so far: Connect writes the messages of a stream
// (gRPC reflection's, say) through http.Flusher.
func (w *statusWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.swallow {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// wrap puts the chassis around a service's routes: request id, the request's
// span, safe response headers, panic recovery, body limit, metrics per route and
// an access log line per request.
func wrap(next http.Handler, log *slog.Logger, in *instruments, accessLog bool, spans serverSpans) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var id string
		if v := r.Header[requestIDKey]; len(v) > 0 {
			id = v[0]
		}
		if validRequestID(id) {
			w.Header()[requestIDKey] = []string{id}
		} else {
			id = uuid.Must(uuid.NewV7()).String()
			// One allocation for both headers; each gets a full slice of its own.
			ids := []string{id, id}
			r.Header[requestIDKey] = ids[0:1:1]
			w.Header()[requestIDKey] = ids[1:2:2]
		}
		ctx, span := spans.start(r)
		ctx = logging.WithRequestID(logging.WithLogger(ctx, log), id)
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w, r: r}
		in.inflight.Inc()

		defer func() {
			in.inflight.Dec()
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					spans.end(span, r, sw.status)
					panic(v)
				}
				log.ErrorContext(ctx, "panic serving request", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if !sw.wroteHeader {
					problem.Write(sw, r, problem.Problem{Type: problem.TypeInternal, Status: http.StatusInternalServerError,
						Detail: "the server could not complete the request; it has been logged"})
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			spans.end(span, r, sw.status)
			end := time.Now()
			elapsed := end.Sub(start)
			in.requests.WithLabelValues(route, r.Method, statusLabel(sw.status)).Inc()
			observe(in.duration.WithLabelValues(route, r.Method), elapsed.Seconds(), ctx)
			if accessLog {
				accessLine(ctx, log, end, r, sw.status, elapsed)
			}
		}()

		if r.ContentLength > MaxBodyBytes {
			if isRPC(r) {
				_ = rpcErrors.Write(sw, r, connect.NewError(connect.CodeResourceExhausted, errors.New("request bodies are limited to 1 MiB")))
				return
			}
			problem.Write(sw, r, problem.Problem{Type: problem.TypeTooLarge, Status: http.StatusRequestEntityTooLarge,
				Detail: "request bodies are limited to 1 MiB"})
			return
		}
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			problem.Write(sw, r, problem.Problem{Type: problem.TypeMalformed, Status: http.StatusBadRequest,
				Detail: "the query string is malformed"})
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(sw, r.Body, MaxBodyBytes)
		}
		next.ServeHTTP(sw, r)
	})
}

// rpcErrors writes an error in the protocol of an RPC call (gRPC, gRPC-Web,
// Connect), which a client of it reads where it could not read a problem.
var rpcErrors = connect.NewErrorWriter()

// isRPC reports whether r is an RPC call: a procedure's path ("/pkg.Service/Method",
// which no REST route has) in a protocol Connect speaks.
func isRPC(r *http.Request) bool {
	service, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return ok && method != "" && !strings.Contains(method, "/") &&
		strings.Contains(service, ".") && !strings.HasPrefix(service, ".") && rpcErrors.IsSupported(r)
}

// accessLine logs the request's access log line. It is what log.LogAttrs would
// log, made by hand: LogAttrs also walks the stack for the line's source, which
// no Folio handler prints (AddSource is off) and which was a tenth of the line's
// cost, and reads the clock again.
func accessLine(ctx context.Context, log *slog.Logger, at time.Time, r *http.Request, status int, elapsed time.Duration) {
	h := log.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	rec := slog.NewRecord(at, slog.LevelInfo, "request", 0)
	rec.AddAttrs(slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status),
		slog.Duration("duration", elapsed), slog.String("remote", r.RemoteAddr))
	_ = h.Handle(ctx, rec)
}

// observe records a request's duration, with the trace id as an exemplar when the
// request's span is sampled, so that a slow bucket on a dashboard leads to a trace.
func observe(o prometheus.Observer, seconds float64, ctx context.Context) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if e, ok := o.(prometheus.ExemplarObserver); ok {
			e.ObserveWithExemplar(seconds, prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	o.Observe(seconds)
}

// validRequestID accepts ids a client sent if they are short printable ASCII, so a
// request id can never smuggle a line break or a megabyte into the logs.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
