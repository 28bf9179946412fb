package httpserver

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"

	"folio/internal/platform/tracing"
)

// traced gives every request a server span named by its route, child of the
// caller's span, when spans are recorded; otherwise it only takes the caller's
// trace context, so that the calls and events the request causes carry it on.
//
// A public endpoint (the gateway) trusts no trace context from outside: its
// span starts a trace of its own, linked to the caller's, and the caller's
// baggage is dropped, so that a client can neither choose the trace id the
// services log under, nor force sampling, nor push baggage into them.
func traced(next http.Handler, public bool) http.Handler {
	if !tracing.Recording() {
		if public {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := r.Header["Traceparent"]; ok {
				r = r.WithContext(tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
			}
			next.ServeHTTP(w, r)
		})
	}
	opts := []otelhttp.Option{
		otelhttp.WithSpanNameFormatter(spanName), otelhttp.WithPropagators(tracing.Propagator),
		// Probes every few seconds would bury the traces worth reading.
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/healthz" && r.URL.Path != "/readyz" }),
	}
	if public {
		opts = append(opts, otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }), otelhttp.WithPropagators(propagation.TraceContext{}))
	}
	return otelhttp.NewHandler(next, "", opts...)
}

// spanName is "METHOD /route/{pattern}" once the request is routed (the raw path
// would make a name per book), and the method alone before.
func spanName(_ string, r *http.Request) string {
	switch {
	case r.Pattern == "":
		return r.Method
	case strings.HasPrefix(r.Pattern, "/"):
		return r.Method + " " + r.Pattern
	default:
		return r.Pattern
	}
}
