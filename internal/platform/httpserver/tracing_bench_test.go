package httpserver_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"folio/internal/platform/httpserver"
	"folio/internal/platform/logging"
	"folio/internal/platform/metrics"
)

// BenchmarkTracing measures what tracing adds to a request in the chassis (its
// access log line included), with spans exported over OTLP/HTTP to a receiver that discards them: off (no
// provider), on at 1 % and at 100 % (parent-based). It reports numbers only:
//
//	go test -run '^$' -bench Tracing -benchmem ./internal/platform/httpserver/
func BenchmarkTracing(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer sink.Close()
	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: tracing off
	}{
		{"off", nil},
		{"1%", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))},
		{"100%", sdktrace.ParentBased(sdktrace.AlwaysSample())},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if tc.sampler != nil {
				exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(sink.URL), otlptracehttp.WithInsecure())
				if err != nil {
					b.Fatal(err)
				}
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(tc.sampler))
				prev := otel.GetTracerProvider()
				otel.SetTracerProvider(tp)
				defer func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) }()
			}
			mux := http.NewServeMux()
			mux.HandleFunc("GET /books/{id}", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"id":"`+r.PathValue("id")+`","title":"The Dispossessed"}`)
			})
			h := httpserver.New(httpserver.Config{AccessLog: true}, logging.New(io.Discard, "bench", "json", "info"), metrics.NewRegistry(),
				mux, nil, func(context.Context) error { return nil }).Handler()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/books/7", nil))
				}
			})
		})
	}
}
