// Package tracingtest records the spans a test's code ends, through a real
// OpenTelemetry SDK tracer provider, so that tests check the traces Folio makes.
package tracingtest

import (
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"folio/internal/platform/tracing"
)

// Record installs, for the rest of t, a tracer provider that samples every trace
// and keeps its ended spans in the returned recorder, and the propagators
// tracing.Setup installs, so that the test runs under a program's globals; the
// previous ones come back when t ends. Code that reads the provider when it is
// built (HTTP servers and clients) must be built after Record. Tests that call it
// must not run in parallel: the provider is global.
func Record(t testing.TB) *tracetest.SpanRecorder {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	prev, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(tracing.Propagator)
	t.Cleanup(func() {
		otel.SetTracerProvider(prev)
		otel.SetTextMapPropagator(prevProp)
		_ = tp.Shutdown(t.Context())
	})
	return sr
}
