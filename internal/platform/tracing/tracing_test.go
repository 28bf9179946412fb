package tracing_test

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/tracing"
	"folio/internal/platform/tracing/tracingtest"
)

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{map[string]string{"OTEL_SERVICE_NAME": "book"}, false},
	} {
		if got := tracing.Enabled(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("Enabled(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// A refused setting stops the program rather than tracing nowhere.
func TestSetupRefusesAnUnknownExporter(t *testing.T) {
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "zipkin"}
	if _, err := tracing.Setup(context.Background(), func(k string) string { return env[k] }, "book", nil); err == nil {
		t.Error("OTEL_TRACES_EXPORTER=zipkin accepted")
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Only a request made within a recorded span goes through the client span's
// transport.
func TestRecordedOnly(t *testing.T) {
	tracingtest.Record(t)
	var took string
	rt := tracing.RecordedOnly(
		roundTripper(func(*http.Request) (*http.Response, error) { took = "traced"; return nil, nil }),
		roundTripper(func(*http.Request) (*http.Response, error) { took = "plain"; return nil, nil }))
	recorded, span := tracing.Tracer().Start(context.Background(), "serving")
	defer span.End()
	sampledOut := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}}))
	for ctx, want := range map[context.Context]string{recorded: "traced", sampledOut: "plain", context.Background(): "plain"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://peer/", nil)
		_, _ = rt.RoundTrip(req)
		if took != want {
			t.Errorf("request went %s, want %s", took, want)
		}
	}
}
