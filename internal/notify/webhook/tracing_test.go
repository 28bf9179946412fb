package webhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/notify"
	"folio/internal/notify/notifytest"
	"folio/internal/notify/webhook"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/polltest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/tracing/tracingtest"
)

// The parts of a subscriber's URL that may be its secret, which no span may show.
const (
	pathSecret  = "T0KEN1N-PATH"
	querySecret = "t0ken-in-query"
)

// writeTraceState is the tracestate of the write an event comes from, which the
// webhook must pass on.
const writeTraceState = "vendor=abc123"

// handleTraced hands the intake m under a consumer span, as the chassis does: a
// child of the write that published the event (with a tracestate, and baggage
// that must not reach a subscriber). It returns the consumer span's context.
func handleTraced(t *testing.T, s *notifytest.Service, m broker.Message) trace.SpanContext {
	t.Helper()
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, err := trace.ParseTraceState(writeTraceState)
	if err != nil {
		t.Fatal(err)
	}
	write := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), write)
	member, err := baggage.NewMember("folio.user", "alice")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx = baggage.ContextWithBaggage(ctx, bag)
	ctx, span := otel.Tracer("test").Start(ctx, "consume "+m.Subject, trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	if err := s.Handle(ctx, m); err != nil {
		t.Fatalf("event %s: %v", m.ID, err)
	}
	return span.SpanContext()
}

// ended returns the ended spans named name, in the order they ended.
func ended(sr *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// attr returns the value of the span's attribute key, or an empty value.
func attr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// traceparent is the header a subscriber gets from the POST span p.
func traceparent(p sdktrace.ReadOnlySpan) string {
	sc := p.SpanContext()
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
}

// delivered waits until the subscription's first delivery is delivered and returns it.
func delivered(t *testing.T, s *notifytest.Service, subID string) notify.Delivery {
	t.Helper()
	polltest.Until(t, "the delivery", polltest.Holds(func() bool { return s.Delivery(t, subID).Status == notify.StatusDelivered }))
	return s.Delivery(t, subID)
}

func TestWebhookContinuesTheTraceOfItsEvent(t *testing.T) {
	notifytest.ForEach(t, func(t *testing.T, db *sqldb.DB) {
		sr := tracingtest.Record(t)
		rc := notifytest.Answering(t, http.StatusNoContent)
		s := notifytest.New(t, db, notifytest.Fast())
		sub := s.Subscribe(t, rc.URL+"/hook/"+pathSecret+"?token="+querySecret, secret, "book.updated")
		// A second subscriber where nothing listens: the error of a failed POST
		// quotes the URL, which its spans must not.
		closed := httptest.NewServer(http.NotFoundHandler())
		closed.Close()
		refused := s.Subscribe(t, closed.URL+"/hook/"+pathSecret+"?token="+querySecret, secret, "book.updated")
		m := notifytest.Event(t, id.New(), "book.updated")
		event := handleTraced(t, s, m)
		stop := s.RunWorker(t)
		d := delivered(t, s, sub.ID)
		polltest.Until(t, "an attempt to the closed port", polltest.Holds(func() bool { return s.Delivery(t, refused.ID).Attempts >= 1 }))
		stop() // the spans have ended once the worker has stopped

		var dsp sdktrace.ReadOnlySpan
		var failedAttempt bool
		for _, sp := range ended(sr, "deliver book.updated") {
			switch attr(sp, "folio.notify.subscription.id").AsString() {
			case sub.ID:
				dsp = sp
			case refused.ID:
				failedAttempt = failedAttempt || sp.Status().Code == codes.Error
			}
		}
		if dsp == nil || !failedAttempt {
			t.Fatalf("delivery spans: %v for the receiver, a failed attempt to the closed port %v; want both", dsp != nil, failedAttempt)
		}
		var post sdktrace.ReadOnlySpan
		for _, p := range ended(sr, "POST") {
			if p.Parent().SpanID() == dsp.SpanContext().SpanID() {
				post = p
			}
		}
		reqs := rc.Got()
		if post == nil || len(reqs) != 1 {
			t.Fatalf("POST span under the delivery span: %v; %d requests; want one", post != nil, len(reqs))
		}
		r := reqs[0]
		if dsp.Parent().SpanID() != event.SpanID() || dsp.SpanContext().TraceID() != event.TraceID() {
			t.Errorf("delivery span in trace %s under %s, want the event's span %s in %s",
				dsp.SpanContext().TraceID(), dsp.Parent().SpanID(), event.SpanID(), event.TraceID())
		}
		if post.SpanKind() != trace.SpanKindClient {
			t.Errorf("POST span of kind %v, want client", post.SpanKind())
		}
		if got, want := r.Header.Get("traceparent"), traceparent(post); got != want {
			t.Errorf("traceparent %q, want %q (the event's trace, the POST span)", got, want)
		}
		if got := r.Header.Get("tracestate"); got != writeTraceState {
			t.Errorf("tracestate %q, want the write's %q", got, writeTraceState)
		}
		if got := r.Header.Get("baggage"); got != "" {
			t.Errorf("the subscriber got Folio's baggage %q", got)
		}
		ts, _ := strconv.ParseInt(r.Header.Get(webhook.HeaderTimestamp), 10, 64)
		if got, want := r.Header.Get(webhook.HeaderSignature), webhook.Sign(secret, m.ID, time.Unix(ts, 0), r.Body); got != want {
			t.Errorf("webhook-signature %q, want %q", got, want)
		}

		for key, want := range map[string]attribute.Value{
			"folio.notify.subscription.id": attribute.StringValue(sub.ID),
			"folio.notify.delivery.id":     attribute.StringValue(d.ID),
			"folio.event.id":               attribute.StringValue(m.ID),
			"folio.event.type":             attribute.StringValue("book.updated"),
			"folio.notify.attempt":         attribute.IntValue(1),
			"folio.notify.outcome":         attribute.StringValue("delivered"),
		} {
			if got := attr(dsp, key); got != want {
				t.Errorf("delivery span %s = %v, want %v", key, got.Emit(), want.Emit())
			}
		}
		if dsp.Status().Code != codes.Unset {
			t.Errorf("delivery span status %v, want unset", dsp.Status())
		}
		host := strings.TrimPrefix(rc.URL, "http://")
		if got := attr(post, "server.address").AsString() + ":" + attr(post, "server.port").Emit(); got != host {
			t.Errorf("POST span server %s, want %s", got, host)
		}
		if got := attr(post, "http.response.status_code"); got != attribute.IntValue(http.StatusNoContent) {
			t.Errorf("POST span status code %v, want 204", got.Emit())
		}
		for _, sp := range sr.Ended() {
			shown := sp.Name() + " " + sp.Status().Description
			for _, kv := range sp.Attributes() {
				shown += " " + string(kv.Key) + "=" + kv.Value.Emit()
			}
			for _, ev := range sp.Events() {
				shown += " " + ev.Name
				for _, kv := range ev.Attributes {
					shown += " " + kv.Value.Emit()
				}
			}
			for _, hidden := range []string{pathSecret, querySecret, secret} {
				if strings.Contains(shown, hidden) {
					t.Errorf("span %q shows %q: %s", sp.Name(), hidden, shown)
				}
			}
		}
	})
}

func TestEachAttemptOfAWebhookIsASpanInItsEventsTrace(t *testing.T) {
	notifytest.ForEach(t, func(t *testing.T, db *sqldb.DB) {
		sr := tracingtest.Record(t)
		rc := notifytest.NewReceiver(t, func(n int, _ *http.Request) int {
			if n == 1 {
				return http.StatusServiceUnavailable
			}
			return http.StatusNoContent
		})
		s := notifytest.New(t, db, notifytest.Fast())
		sub := s.Subscribe(t, rc.URL+"/hook", secret, "book.updated")
		event := handleTraced(t, s, notifytest.Event(t, id.New(), "book.updated"))
		stop := s.RunWorker(t)
		delivered(t, s, sub.ID)
		stop()

		deliveries, posts, reqs := ended(sr, "deliver book.updated"), ended(sr, "POST"), rc.Got()
		if len(deliveries) != 2 || len(posts) != 2 || len(reqs) != 2 {
			t.Fatalf("%d delivery spans, %d POST spans, %d requests; want 2 each", len(deliveries), len(posts), len(reqs))
		}
		wants := []struct {
			outcome string
			code    codes.Code
		}{{"retry", codes.Error}, {"delivered", codes.Unset}}
		for i, dsp := range deliveries {
			if dsp.Parent().SpanID() != event.SpanID() || dsp.SpanContext().TraceID() != event.TraceID() {
				t.Errorf("attempt %d: in trace %s under %s, want the event's span %s in %s", i+1,
					dsp.SpanContext().TraceID(), dsp.Parent().SpanID(), event.SpanID(), event.TraceID())
			}
			if got := attr(dsp, "folio.notify.attempt"); got != attribute.IntValue(i+1) {
				t.Errorf("attempt %d: folio.notify.attempt = %v", i+1, got.Emit())
			}
			if got := attr(dsp, "folio.notify.outcome").AsString(); got != wants[i].outcome || dsp.Status().Code != wants[i].code {
				t.Errorf("attempt %d: outcome %q, status %v; want %q, %v", i+1, got, dsp.Status(), wants[i].outcome, wants[i].code)
			}
			post := posts[i]
			if post.Parent().SpanID() != dsp.SpanContext().SpanID() {
				t.Errorf("attempt %d: POST span's parent %v, want its delivery span %v", i+1, post.Parent().SpanID(), dsp.SpanContext().SpanID())
			}
			if got, want := reqs[i].Header.Get("traceparent"), traceparent(post); got != want {
				t.Errorf("attempt %d: traceparent %q, want %q", i+1, got, want)
			}
		}
		first, firstPost := deliveries[0], posts[0]
		if got := attr(first, "http.response.status_code"); got != attribute.IntValue(http.StatusServiceUnavailable) ||
			first.Status().Description != "http 503" {
			t.Errorf("failed attempt: status code %v, status %v; want 503, http 503", got.Emit(), first.Status())
		}
		if firstPost.Status().Code != codes.Error || attr(firstPost, "error.type").AsString() != "503" {
			t.Errorf("POST answered 503: status %v, error.type %q", firstPost.Status(), attr(firstPost, "error.type").AsString())
		}
	})
}

func TestWebhookStoredWithoutTraceContextStartsATrace(t *testing.T) {
	notifytest.ForEach(t, func(t *testing.T, db *sqldb.DB) {
		sr := tracingtest.Record(t)
		s := notifytest.New(t, db, notifytest.Fast())
		// A row from before the column (NULL), and one whose context does not read.
		stored := map[string]string{"": "NULL", "garbled": "'{not json'"}
		rcs, subs := map[string]*notifytest.Receiver{}, map[string]notify.Subscription{}
		for k := range stored {
			rcs[k] = notifytest.Answering(t, http.StatusNoContent)
			subs[k] = s.Subscribe(t, rcs[k].URL+"/hook", secret, "book.updated")
		}
		event := handleTraced(t, s, notifytest.Event(t, id.New(), "book.updated"))
		for k, v := range stored {
			res, err := db.ExecContext(context.Background(), `UPDATE deliveries SET trace_context = `+v+
				` WHERE subscription_id = $1 AND trace_context IS NOT NULL`, subs[k].ID)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("%d deliveries of %q had a trace context, want 1", n, k)
			}
		}
		// The worker's own context has a span, which must not adopt the deliveries.
		ctx, ambient := otel.Tracer("test").Start(context.Background(), "ambient")
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Svc.Run(ctx) }()
		for _, sub := range subs {
			delivered(t, s, sub.ID)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		ambient.End()

		deliveries := ended(sr, "deliver book.updated")
		if len(deliveries) != 2 {
			t.Fatalf("%d delivery spans, want 2", len(deliveries))
		}
		for _, dsp := range deliveries {
			if dsp.Parent().IsValid() || dsp.SpanContext().TraceID() == event.TraceID() ||
				dsp.SpanContext().TraceID() == ambient.SpanContext().TraceID() {
				t.Errorf("delivery span in trace %s under %s, want a trace of its own (event's %s, ambient %s)",
					dsp.SpanContext().TraceID(), dsp.Parent().SpanID(), event.TraceID(), ambient.SpanContext().TraceID())
			}
		}
		for k, rc := range rcs {
			reqs := rc.Got()
			if len(reqs) != 1 {
				t.Fatalf("%q: %d requests, want 1", k, len(reqs))
			}
			tp := reqs[0].Header.Get("traceparent")
			if len(tp) != 55 || !(tp[3:35] == deliveries[0].SpanContext().TraceID().String() || tp[3:35] == deliveries[1].SpanContext().TraceID().String()) {
				t.Errorf("%q: traceparent %q, want one in a delivery span's new trace", k, tp)
			}
		}
	})
}
