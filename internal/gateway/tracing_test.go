package gateway

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"folio/internal/platform/authn"
	"folio/internal/platform/tracing"
	"folio/internal/platform/tracing/tracingtest"
)

// The tests here change OpenTelemetry's global provider and propagator: none of
// them may run in parallel.

// setPropagator installs the propagators tracing.Setup installs even when
// tracing is off (tracingtest.Record installs them with its provider).
func setPropagator(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(tracing.Propagator)
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
}

// endedSpans waits until sr holds at least n ended spans of kind, and returns
// them in the order they ended. A server span ends once the handler has returned,
// which may be after the client has read the whole answer.
func endedSpans(t *testing.T, sr *tracetest.SpanRecorder, kind trace.SpanKind, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []sdktrace.ReadOnlySpan
		for _, s := range sr.Ended() {
			if s.SpanKind() == kind {
				got = append(got, s)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s spans ended, want %d", len(got), kind, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// attrs are a span's attributes, as strings.
func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// upstreamContext is the span context an upstream received in traceparent.
func upstreamContext(e echoed) trace.SpanContext {
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(e.Header))
	return trace.SpanContextFromContext(ctx)
}

// attack is what a client sends to choose the trace the services log under,
// force sampling, and push baggage into the services.
const clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

var attack = map[string]string{
	"traceparent": "00-" + clientTraceID + "-00f067aa0ba902b7-01",
	"tracestate":  "mallory=chosen",
	"baggage":     "folio.role=admin,user=mallory",
}

// TestClientTraceContextStopsAtGateway replays the attack with tracing on: the
// upstream continues the gateway's trace, through the attempt's client span, and
// gets neither the client's trace id nor its trace state nor its baggage.
func TestClientTraceContextStopsAtGateway(t *testing.T) {
	sr := tracingtest.Record(t)
	h := newHarness(t, nil)
	e := h.do("GET", "/books/1", "", "", attack).echo(t)

	sc := upstreamContext(e)
	if !sc.IsValid() {
		t.Fatalf("the upstream got traceparent %q, want the gateway's", e.Header.Get("Traceparent"))
	}
	if sc.TraceID().String() == clientTraceID {
		t.Errorf("the upstream continues the client's trace %s", clientTraceID)
	}
	if got := e.Header.Values("Tracestate"); len(got) != 0 {
		t.Errorf("the upstream got tracestate %q, want none", got)
	}
	if got := e.Header.Values("Baggage"); len(got) != 0 {
		t.Errorf("the upstream got baggage %q, want none", got)
	}

	server := endedSpans(t, sr, trace.SpanKindServer, 1)[0]
	client := endedSpans(t, sr, trace.SpanKindClient, 1)[0]
	if server.SpanContext().TraceID() != sc.TraceID() {
		t.Errorf("the upstream's trace %s is not the gateway's %s", sc.TraceID(), server.SpanContext().TraceID())
	}
	if client.SpanContext().SpanID() != sc.SpanID() {
		t.Errorf("the upstream's parent span is %s, want the attempt's client span %s", sc.SpanID(), client.SpanContext().SpanID())
	}
	if client.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Errorf("the client span's parent is %s, want the gateway's server span %s", client.Parent().SpanID(), server.SpanContext().SpanID())
	}
}

// TestClientCannotForceSampling: a gateway whose sampler keeps none of its own
// traces does not record one because a client's traceparent says "sampled", and
// the services get the gateway's unsampled context, not the client's.
func TestClientCannotForceSampling(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())), sdktrace.WithSpanProcessor(sr))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(prev)
		_ = tp.Shutdown(context.Background())
	})
	setPropagator(t)
	h := newHarness(t, nil)
	e := h.do("GET", "/books/1", "", "", attack).echo(t)
	sc := upstreamContext(e)
	if !sc.IsValid() || sc.TraceID().String() == clientTraceID || sc.IsSampled() {
		t.Errorf("the upstream got traceparent %q, want the gateway's, not sampled", e.Header.Get("Traceparent"))
	}
	// Every span of the request started before the upstream answered.
	for _, s := range sr.Started() {
		t.Errorf("span %q recorded, in trace %s", s.Name(), s.SpanContext().TraceID())
	}
}

// TestClientTraceContextStopsAtGatewayUntraced: with tracing off (a no-op
// provider) the gateway has no trace context to send, and the client's headers
// do not pass either.
func TestClientTraceContextStopsAtGatewayUntraced(t *testing.T) {
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(noop.NewTracerProvider())
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	setPropagator(t) // as tracing.Setup does when tracing is off
	h := newHarness(t, nil)
	for _, req := range []struct{ method, path, body string }{{"GET", "/books/1", ""}, {"POST", "/auth/token", "{}"}} {
		r := h.do(req.method, req.path, "", req.body, attack)
		if r.status != http.StatusOK {
			t.Fatalf("%s %s: status %d (%s), want the upstream's 200", req.method, req.path, r.status, r.body)
		}
		e := r.echo(t)
		for _, k := range []string{"Traceparent", "Tracestate", "Baggage"} {
			if got := e.Header.Values(k); len(got) != 0 {
				t.Errorf("%s %s: the upstream got %s %q, want none", req.method, req.path, k, got)
			}
		}
	}
}

// TestRetryIsASpanOfItsOwn: a request whose first attempt finds its instance
// refusing connections shows, under the gateway's server span, a failed client
// span for that instance and a second one for the instance that answered; the
// upstream continues the second.
func TestRetryIsASpanOfItsOwn(t *testing.T) {
	sr := tracingtest.Record(t)
	var live atomic.Int64
	echo := newEcho(t, ServiceBook, "live", &live)
	h := newHarness(t, func(c *Config) {
		c.EjectAfter = 100 // the refusing instance stays in rotation
		c.Instances[ServiceBook] = []string{closedURL(t), echo.URL}
	})
	livePort := mustPort(t, echo.URL)
	editor := h.token("ed", []string{authn.RoleEditor})
	body := `{"title":"` + strings.Repeat("x", 256<<10) + `"}` // more than one read's worth

	// Round-robin: of two requests in a row, one starts on the refusing instance.
	retried := false
	for i := range 2 {
		r := h.do("POST", "/books", editor, body, nil)
		if r.status != http.StatusOK {
			t.Fatalf("request %d: status %d (%s), want 200 from the live instance", i, r.status, r.body)
		}
		e := r.echo(t)
		if e.Body != body {
			t.Fatalf("request %d: the instance got %d bytes of body, want %d", i, len(e.Body), len(body))
		}
		server := endedSpans(t, sr, trace.SpanKindServer, i+1)[i]
		var attempts []sdktrace.ReadOnlySpan
		for _, s := range endedSpans(t, sr, trace.SpanKindClient, 0) {
			if s.SpanContext().TraceID() == server.SpanContext().TraceID() {
				attempts = append(attempts, s)
			}
		}
		slices.SortFunc(attempts, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
		for _, a := range attempts {
			if a.Name() != "POST book" {
				t.Errorf("request %d: client span %q, want \"POST book\"", i, a.Name())
			}
			if a.Parent().SpanID() != server.SpanContext().SpanID() {
				t.Errorf("request %d: client span %q is not a child of the server span", i, a.Name())
			}
		}
		if len(attempts) == 0 {
			t.Fatalf("request %d: no client span in the gateway's trace", i)
		}
		last := attempts[len(attempts)-1]
		if a := attrs(last); a["server.port"] != livePort || a["http.response.status_code"] != "200" {
			t.Errorf("request %d: the last attempt has server.port %s and status %s, want %s and 200", i, a["server.port"], a["http.response.status_code"], livePort)
		}
		if sc := upstreamContext(e); sc.SpanID() != last.SpanContext().SpanID() {
			t.Errorf("request %d: the upstream's parent span is %s, want the last attempt's %s", i, sc.SpanID(), last.SpanContext().SpanID())
		}
		switch len(attempts) {
		case 1:
			if got := attrs(server)[string(attrRetry)]; got != "" {
				t.Errorf("request %d: one attempt, but %s = %q", i, attrRetry, got)
			}
		case 2:
			retried = true
			first := attempts[0]
			if a := attrs(first); a["server.address"] != "127.0.0.1" || a["server.port"] != "1" {
				t.Errorf("request %d: the first attempt went to %s:%s, want the refusing 127.0.0.1:1", i, a["server.address"], a["server.port"])
			}
			if first.Status().Code != codes.Error {
				t.Errorf("request %d: the refused attempt's status is %v, want Error", i, first.Status())
			}
			if got := attrs(server)[string(attrRetry)]; got != "connect_error" {
				t.Errorf("request %d: %s = %q, want connect_error", i, attrRetry, got)
			}
		default:
			t.Fatalf("request %d: %d attempts, want 1 or 2", i, len(attempts))
		}
	}
	if !retried {
		t.Fatal("no request was retried: the refusing instance was never tried first")
	}
}

// mustPort is the port of a URL.
func mustPort(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Port() == "" {
		t.Fatalf("URL %q has no port", raw)
	}
	return u.Port()
}

// TestQueryIsNotRecorded: the attempt's url.full leaves out the client's query
// string, and the request still carries it.
func TestQueryIsNotRecorded(t *testing.T) {
	sr := tracingtest.Record(t)
	h := newHarness(t, nil)
	e := h.do("GET", "/authors/books?genre=sf&access_token=s3cret", "", "", nil).echo(t)
	if e.Query != "genre=sf&access_token=s3cret" {
		t.Fatalf("the upstream got query %q", e.Query)
	}
	client := endedSpans(t, sr, trace.SpanKindClient, 1)[0]
	if got, want := attrs(client)["url.full"], "http://"+e.Host+"/authors/books"; got != want {
		t.Errorf("url.full = %q, want %q", got, want)
	}
	endedSpans(t, sr, trace.SpanKindServer, 1)
	noSpanHas(t, sr, "s3cret")
}

// noSpanHas fails if any attribute of any recorded span contains secret.
func noSpanHas(t *testing.T, sr *tracetest.SpanRecorder, secret string) {
	t.Helper()
	for _, s := range sr.Ended() {
		for k, v := range attrs(s) {
			if strings.Contains(v, secret) {
				t.Errorf("span %q records %s = %q", s.Name(), k, v)
			}
		}
	}
}

// TestDecisionAttributes: the gateway's server span says which service the route
// leads to, what it asks of the caller, the authorisation decision with the
// verified subject (never a token), and the rate limiter's verdict.
func TestDecisionAttributes(t *testing.T) {
	sr := tracingtest.Record(t)
	h := newHarness(t, nil)
	reader := h.token("reader-1", []string{authn.RoleReader})
	forged := h.iss.Impostor().Token("admin-1", authn.RoleAdmin)
	tests := []struct {
		name, method, path string
		header             map[string]string
		status             int
		want               map[attribute.Key]string // "" means absent
	}{
		{"anonymous read", "GET", "/books", nil, 200, map[attribute.Key]string{
			attrUpstream: "book", attrAccess: "public", attrAuth: "anonymous", attrSubject: "", attrAuthFailure: "",
			attrRateLimit: "allowed", attrRateLimitBudget: "ip"}},
		{"reader reads", "GET", "/authors/1", bearer(reader), 200, map[attribute.Key]string{
			attrUpstream: "author", attrAccess: "public", attrAuth: "allowed", attrSubject: "reader-1",
			attrRateLimit: "allowed", attrRateLimitBudget: "subject"}},
		{"a write without a token", "POST", "/books", nil, 401, map[attribute.Key]string{
			attrUpstream: "book", attrAccess: "editor", attrAuth: "missing_token", attrSubject: "", attrAuthFailure: ""}},
		{"a reader writes", "DELETE", "/books/1", bearer(reader), 403, map[attribute.Key]string{
			attrUpstream: "book", attrAccess: "editor", attrAuth: "forbidden", attrSubject: "reader-1"}},
		{"a reader lists subscriptions", "GET", "/subscriptions", bearer(reader), 403, map[attribute.Key]string{
			attrUpstream: "notify", attrAccess: "admin", attrAuth: "forbidden", attrSubject: "reader-1"}},
		{"a reader's own account", "GET", "/auth/users/1", bearer(reader), 200, map[attribute.Key]string{
			attrUpstream: "auth", attrAccess: "any_token", attrAuth: "allowed", attrSubject: "reader-1"}},
		{"a forged token", "GET", "/books", bearer(forged), 401, map[attribute.Key]string{
			attrAuth: "invalid_token", attrAuthFailure: "bad_signature", attrSubject: "",
			attrRateLimit: "allowed", attrRateLimitBudget: "ip"}},
		{"not a bearer token", "GET", "/books", map[string]string{"Authorization": "Basic " + reader}, 401, map[attribute.Key]string{
			attrAuth: "invalid_token", attrAuthFailure: "malformed", attrSubject: ""}},
	}
	for i, tt := range tests {
		r := h.do(tt.method, tt.path, "", "", tt.header)
		if r.status != tt.status {
			t.Fatalf("%s: status %d (%s), want %d", tt.name, r.status, r.body, tt.status)
		}
		got := attrs(endedSpans(t, sr, trace.SpanKindServer, i+1)[i])
		for k, want := range tt.want {
			if got[string(k)] != want {
				t.Errorf("%s: %s = %q, want %q", tt.name, k, got[string(k)], want)
			}
		}
	}
	noSpanHas(t, sr, reader)
	noSpanHas(t, sr, forged)
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// TestRateLimitAttributes: a request the limiter refuses says so, and which
// budget refused it; its authorisation was never decided.
func TestRateLimitAttributes(t *testing.T) {
	sr := tracingtest.Record(t)
	h := newHarness(t, func(c *Config) { c.RateLimit, c.RateBurst = 0.001, 1 })
	steps := []struct {
		name   string
		token  string
		status int
		want   map[attribute.Key]string
	}{
		{"first anonymous", "", 200, map[attribute.Key]string{attrRateLimit: "allowed", attrRateLimitBudget: "ip", attrAuth: "anonymous"}},
		{"second anonymous", "", 429, map[attribute.Key]string{attrRateLimit: "limited", attrRateLimitBudget: "ip", attrAuth: ""}},
		// The address's verify budget pays for the first new token, the subject's own
		// budget for its request.
		{"a new token", h.token("alice", []string{authn.RoleReader}), 200, map[attribute.Key]string{
			attrRateLimit: "allowed", attrRateLimitBudget: "subject", attrSubject: "alice", attrAuth: "allowed"}},
		{"another new token", h.token("bob", []string{authn.RoleReader}), 429, map[attribute.Key]string{
			attrRateLimit: "limited", attrRateLimitBudget: "verify", attrSubject: "", attrAuth: ""}},
	}
	for i, s := range steps {
		r := h.do("GET", "/books", s.token, "", nil)
		if r.status != s.status {
			t.Fatalf("%s: status %d (%s), want %d", s.name, r.status, r.body, s.status)
		}
		got := attrs(endedSpans(t, sr, trace.SpanKindServer, i+1)[i])
		for k, want := range s.want {
			if got[string(k)] != want {
				t.Errorf("%s: %s = %q, want %q", s.name, k, got[string(k)], want)
			}
		}
	}
}

// TestRateLimitUncheckedAttribute: a request let through because the shared
// limiter did not answer is marked unchecked, not allowed.
func TestRateLimitUncheckedAttribute(t *testing.T) {
	sr := tracingtest.Record(t)
	dead := "redis://" + strings.TrimPrefix(closedURL(t), "http://") + "/0"
	h := newHarness(t, func(c *Config) { c.RedisURL = dead })
	if r := h.do("GET", "/books", "", "", nil); r.status != http.StatusOK {
		t.Fatalf("status %d (%s), want 200 with Redis down", r.status, r.body)
	}
	if got := attrs(endedSpans(t, sr, trace.SpanKindServer, 1)[0])[string(attrRateLimit)]; got != "unchecked" {
		t.Errorf("%s = %q, want unchecked", attrRateLimit, got)
	}
}
