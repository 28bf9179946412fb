package httpserver_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/httpserver"
	"folio/internal/platform/tracing/tracingtest"
)

const (
	sentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	sentSpan  = "00f067aa0ba902b7"
	sent      = "00-" + sentTrace + "-" + sentSpan + "-01"
)

// handled asks for /trace/7 with traceparent tp (none when "") and returns the
// trace and span ids the handler's context carried ("" for none).
func handled(t *testing.T, c *chassis, tp string) (traceID, spanID string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/trace/7", nil)
	if tp != "" {
		req.Header.Set("traceparent", tp)
	}
	traceID, spanID, _ = strings.Cut(body(t, c.do(t, req)), " ")
	return traceID, spanID
}

// Tracing off: a service takes the caller's trace context as it came, for its
// calls and events to carry on, and makes none of its own.
func TestUntracedServiceCarriesTheCallersTraceOn(t *testing.T) {
	c := newChassis(t)
	for tp, want := range map[string]string{sent: sentTrace, "": "", "00-xyz": "", "00-" + sentTrace + "-0000000000000000-01": ""} {
		if got, span := handled(t, c, tp); got != want || (want != "" && span != sentSpan) {
			t.Errorf("traceparent %q: handler in trace %q span %q, want trace %q", tp, got, span, want)
		}
	}
}

// Tracing on: each request is a server span named by its route, child of the
// caller's span; the handler works inside it.
func TestTracedServiceSpansEachRequest(t *testing.T) {
	spans := tracingtest.Record(t)
	c := newChassis(t)
	traceID, spanID := handled(t, c, sent)
	ended := spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans, want 1", len(ended))
	}
	s := ended[0]
	if s.Name() != "GET /trace/{id}" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q of kind %v, want the server span \"GET /trace/{id}\"", s.Name(), s.SpanKind())
	}
	if s.SpanContext().TraceID().String() != sentTrace || s.Parent().SpanID().String() != sentSpan {
		t.Errorf("span in trace %s under %s, want the caller's trace %s under %s", s.SpanContext().TraceID(), s.Parent().SpanID(), sentTrace, sentSpan)
	}
	if traceID != sentTrace || spanID != s.SpanContext().SpanID().String() {
		t.Errorf("handler in %s/%s, want the server span %s", traceID, spanID, s.SpanContext().SpanID())
	}

	// The latency histogram points at the trace (OpenMetrics exemplars).
	if m := c.openMetrics(t); !strings.Contains(m, `# {trace_id="`+sentTrace+`"}`) {
		t.Errorf("no exemplar with the request's trace id in:\n%s", grep(m, "http_request_duration_seconds_bucket"))
	}

	// A request without a trace context starts one; probes are not traced.
	if traceID, _ := handled(t, c, ""); traceID == "" || traceID == sentTrace {
		t.Errorf("request without a trace context: handler in trace %q, want a new trace", traceID)
	}
	before := len(spans.Ended())
	for _, probe := range []string{"/healthz", "/readyz"} {
		c.do(t, httptest.NewRequest(http.MethodGet, probe, nil))
	}
	if n := len(spans.Ended()) - before; n != 0 {
		t.Errorf("probes made %d spans, want none", n)
	}
}

// A public endpoint (the gateway) does not let a client choose the trace, force
// sampling or send baggage in: with tracing on its span starts a new trace,
// linked to the client's; with tracing off it carries none.
func TestPublicEndpointStartsItsOwnTrace(t *testing.T) {
	attack := func(t *testing.T, c *chassis) (traceID string) {
		req := httptest.NewRequest(http.MethodGet, "/trace/7", nil)
		req.Header.Set("traceparent", sent)
		req.Header.Set("baggage", "tenant=admin")
		traceID, _, _ = strings.Cut(body(t, c.do(t, req)), " ")
		return traceID
	}
	t.Run("tracing off", func(t *testing.T) {
		if got := attack(t, newChassisWith(t, httpserver.Config{Public: true})); got != "" {
			t.Errorf("handler in the client's trace %q, want none", got)
		}
	})
	t.Run("tracing on", func(t *testing.T) {
		spans := tracingtest.Record(t)
		got := attack(t, newChassisWith(t, httpserver.Config{Public: true}))
		s := spans.Ended()[0]
		if got == sentTrace || got != s.SpanContext().TraceID().String() || s.Parent().IsValid() {
			t.Errorf("handler in trace %q, span %s with parent %v: want a new root span", got, s.SpanContext().TraceID(), s.Parent())
		}
		if links := s.Links(); len(links) != 1 || links[0].SpanContext.TraceID().String() != sentTrace {
			t.Errorf("links %v, want one to the client's span", links)
		}
	})
}

// grep returns the lines of s that contain what.
func grep(s, what string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, what) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A server span records the path, never the query: it is whatever the caller
// sent, and a trace store is no place for it.
func TestServerSpanLeavesTheQueryOut(t *testing.T) {
	spans := tracingtest.Record(t)
	c := newChassis(t)
	c.do(t, httptest.NewRequest(http.MethodGet, "/trace/7?token=s3cret", nil))
	for _, s := range spans.Ended() {
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.Emit(), "s3cret") {
				t.Errorf("span %q attribute %s=%q holds the query", s.Name(), a.Key, a.Value.Emit())
			}
		}
	}
	if len(spans.Ended()) != 1 {
		t.Errorf("%d spans, want the request's", len(spans.Ended()))
	}
}
