package chassis

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/broker"
	"folio/internal/platform/tracing"
	"folio/internal/platform/tracing/tracingtest"
)

// A consumer's span continues the trace of the event's publication: the
// producer span is its parent and its link.
func TestHandlingAnEventContinuesItsTrace(t *testing.T) {
	spans := tracingtest.Record(t)
	_, send := tracing.Tracer().Start(context.Background(), "send folio.book.created", trace.WithSpanKind(trace.SpanKindProducer))
	header := map[string]string{broker.HeaderAttempts: "2"}
	tracing.Inject(trace.ContextWithSpan(context.Background(), send), header)
	send.End()

	_, span := startProcess(context.Background(), "author-books", broker.Message{Subject: "folio.book.created", ID: "e1", Header: header})
	span.End()
	got := spans.Ended()[1]
	if got.Name() != "process folio.book.created" || got.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("span %q of kind %v, want a consumer span \"process folio.book.created\"", got.Name(), got.SpanKind())
	}
	if got.Parent().SpanID() != send.SpanContext().SpanID() || got.SpanContext().TraceID() != send.SpanContext().TraceID() {
		t.Errorf("consumer span's parent %s in trace %s, want the producer span %s", got.Parent().SpanID(), got.SpanContext().TraceID(), send.SpanContext().SpanID())
	}
	if links := got.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != send.SpanContext().SpanID() {
		t.Errorf("links %v, want one to the producer span", links)
	}

	// An event published outside any trace starts none.
	_, span = startProcess(context.Background(), "author-books", broker.Message{Subject: "folio.book.created", ID: "e2", Header: map[string]string{}})
	span.End()
	if n := len(spans.Ended()); n != 2 {
		t.Errorf("%d spans ended, want no new one for an untraced event", n)
	}
}
