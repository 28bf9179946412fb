package httpserver

import (
	"context"
	"net"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/tracing"
)

// serverSpans starts and ends the span of each request. When spans are recorded
// (record), every request but the probes gets a server span, child of the
// caller's; otherwise the caller's trace context is only taken, so that the
// calls and events the request causes carry it on.
//
// A public endpoint (the gateway) trusts no trace context from outside: its span
// starts a trace of its own, linked to the caller's, and the caller's baggage is
// dropped, so that a client can neither choose the trace id the services log
// under, nor force sampling, nor push baggage into them.
//
// Written here rather than taken from otelhttp's handler: that one computes its
// attributes and wraps the writer and body of every request, sampled or not,
// which cost a quarter of a read's CPU at 1 % sampling (docs/benchmarks.md);
// this one does the work only for a span that records.
type serverSpans struct {
	record, public bool
}

var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// start returns r's context with the request's span, or the caller's trace
// context, and the span to end (nil when none was started).
func (s serverSpans) start(r *http.Request) (context.Context, trace.Span) {
	ctx := r.Context()
	if _, sent := r.Header["Traceparent"]; !s.record {
		if sent && !s.public {
			ctx = tracing.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		return ctx, nil
	}
	if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
		return ctx, nil // probes every few seconds would bury the traces worth reading
	}
	var span trace.Span
	if s.public {
		var link trace.SpanStartOption = trace.WithLinks()
		if caller := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))); caller.IsValid() {
			link = trace.WithLinks(trace.Link{SpanContext: caller})
		}
		ctx, span = tracing.Tracer().Start(ctx, r.Method, serverKind, trace.WithNewRoot(), link)
	} else {
		ctx = tracing.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span = tracing.Tracer().Start(ctx, r.Method, serverKind)
	}
	if span.IsRecording() {
		span.SetAttributes(requestAttributes(r)...)
	}
	return ctx, span
}

// end ends span, if any, named by the request's route and marked by its status.
func (s serverSpans) end(span trace.Span, r *http.Request, status int) {
	if span == nil {
		return
	}
	if span.IsRecording() {
		span.SetName(spanName(r))
		if r.Pattern != "" {
			span.SetAttributes(semconv.HTTPRoute(route(r.Pattern)))
		}
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
	span.End()
}

// requestAttributes are the semantic conventions' attributes of a request that
// are known before it is served. The query is left out: it is the caller's.
func requestAttributes(r *http.Request) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.URL.Path), semconv.URLScheme("http"),
		semconv.NetworkProtocolVersion(strings.TrimPrefix(r.Proto, "HTTP/")),
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, semconv.NetworkPeerAddress(host))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	return attrs
}

// spanName is "METHOD /route/{pattern}" once the request is routed (the raw path
// would make a name per book), and the method alone when no route matched.
func spanName(r *http.Request) string {
	if r.Pattern == "" {
		return r.Method
	}
	return r.Method + " " + route(r.Pattern)
}

// route is a mux pattern without its method: "GET /books/{id}" → "/books/{id}".
func route(pattern string) string {
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		return pattern[i:]
	}
	return pattern
}
