// Package tracing sets up OpenTelemetry tracing for a Folio program from the
// standard OTEL_* environment variables, and carries trace context through the
// places HTTP instrumentation does not reach: event headers and stored rows.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/release"
)

// ScopeName is the instrumentation scope of the spans Folio's own code starts.
const ScopeName = "folio"

// Propagator reads and writes trace context as W3C traceparent and tracestate,
// and baggage. Folio's code uses it rather than OpenTelemetry's global one, so
// that trace context travels whether or not Setup ran (in-process tests).
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Tracer returns the tracer Folio's code starts its spans with. It is looked up
// on each call, so that spans follow the provider Setup (or a test) installed.
func Tracer() trace.Tracer { return otel.Tracer(ScopeName) }

// Enabled reports whether the environment asks for traces to be exported: an
// OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT or its _TRACES_ variant) or
// OTEL_TRACES_EXPORTER is "otlp", and neither OTEL_SDK_DISABLED nor
// OTEL_TRACES_EXPORTER=none turns it off. getenv is os.Getenv outside tests.
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the W3C trace context and baggage propagators and, when the
// environment enables tracing, a tracer provider exporting over OTLP (HTTP by
// default, gRPC when OTEL_EXPORTER_OTLP_PROTOCOL says so). service names the
// program (OTEL_SERVICE_NAME overrides it). The returned function flushes the
// spans not yet exported; call it on the way out.
//
// Without tracing, no span is recorded and the tracer is OpenTelemetry's no-op:
// a trace context that arrives is still passed on to peers and events, so that a
// traced caller's trace goes on through an untraced program.
func Setup(ctx context.Context, getenv func(string) string, service string, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(Propagator)
	if !Enabled(getenv) {
		return func(context.Context) error { return nil }, nil
	}
	if v := getenv("OTEL_TRACES_EXPORTER"); v != "" && !strings.EqualFold(v, "otlp") {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: Folio exports traces over OTLP only (otlp or none)", v)
	}
	exporter, err := newExporter(ctx, protocol(getenv))
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, service)
	if err != nil {
		return nil, err
	}
	// The sampler comes from OTEL_TRACES_SAMPLER (the SDK reads it); its default,
	// parentbased_always_on, keeps or drops a trace whole.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetErrorHandler(errorLogger{log: log})
	log.Info("tracing", "exporter", "otlp", "protocol", protocol(getenv))
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return tp.Shutdown(ctx)
	}, nil
}

// protocol is the OTLP transport the environment asks for traces.
func protocol(getenv func(string) string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return "http/protobuf"
}

// newExporter builds the OTLP exporter; both clients read the endpoint, headers,
// timeout and TLS settings from the process's OTEL_EXPORTER_OTLP_* variables
// themselves.
func newExporter(ctx context.Context, protocol string) (*otlptrace.Exporter, error) {
	switch protocol {
	case "http/protobuf":
		return otlptracehttp.New(ctx)
	case "grpc":
		return otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%s: use http/protobuf or grpc", protocol)
	}
}

// newResource describes the program: service.name (the program, unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise), service.namespace
// folio, service.version, and the host and process it runs as.
func newResource(ctx context.Context, service string) (*resource.Resource, error) {
	info := release.Get()
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceNamespace("folio"),
			semconv.ServiceVersion(info.Version), attribute.String("vcs.ref.head.revision", info.Revision)),
		resource.WithHost(), resource.WithProcessPID(), resource.WithProcessRuntimeVersion(),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // last, so that the user's settings win
	)
	if errors.Is(err, resource.ErrPartialResource) {
		err = nil // a detector that found nothing leaves the rest usable
	}
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	return res, nil
}

// errorLogger reports the SDK's errors (an unreachable collector, mostly) in the
// program's log, rather than on stderr in another format.
type errorLogger struct{ log *slog.Logger }

func (e errorLogger) Handle(err error) { e.log.Warn("tracing", "err", err) }

// Inject writes ctx's trace context (traceparent, tracestate, baggage) into
// header, for an event or a stored row to carry.
func Inject(ctx context.Context, header map[string]string) {
	Propagator.Inject(ctx, propagation.MapCarrier(header))
}

// Extract returns ctx with the trace context header carries, if any.
func Extract(ctx context.Context, header map[string]string) context.Context {
	return Propagator.Extract(ctx, propagation.MapCarrier(header))
}

// Recording reports whether spans are recorded: a tracer provider of the SDK is
// installed (by Setup, or by a test). Without one, the HTTP chassis and clients
// skip OpenTelemetry's instrumentation, which costs allocations on every request
// even when its spans go nowhere, and only pass trace context on.
func Recording() bool {
	_, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	return ok
}

// End ends span, if there is one, marked failed by err when err is not nil.
func End(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// RecordedOnly sends a request made within a recorded span through traced (a
// client span per request: otelhttp), and any other straight to plain. Under
// parent-based sampling the client span of a request whose caller is not
// sampled would not be recorded either, and otelhttp's transport copies the
// request, computes its attributes and wraps its body all the same: a sixth of
// a read's CPU at 1 % sampling. The caller puts the trace context of an
// unrecorded span on the request itself, so that the peer keeps the verdict.
func RecordedOnly(traced, plain http.RoundTripper) http.RoundTripper {
	return recordedOnly{traced: traced, plain: plain}
}

type recordedOnly struct{ traced, plain http.RoundTripper }

func (t recordedOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if trace.SpanFromContext(r.Context()).IsRecording() {
		return t.traced.RoundTrip(r)
	}
	return t.plain.RoundTrip(r)
}
