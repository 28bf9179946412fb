package webhook

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/notify"
	"folio/internal/platform/egress"
	"folio/internal/platform/tracing"
)

// traced wraps the transport that enforces the egress policy (which still makes
// every connection) with a client span per POST, and sends that span's context to
// the subscriber in traceparent and tracestate, so that a subscriber that traces
// can join its handling to Folio's trace. The webhook signature covers the id, the
// timestamp and the body only, so these headers leave it unchanged.
//
// otelhttp's transport is not used: it records url.full, query string and all,
// and a webhook URL's query or path is often the subscriber's secret (a token in
// it). The span names the server, never the URL.
type traced struct{ next http.RoundTripper }

// subscriberPropagator is what a subscriber receives: the trace context only. The
// baggage Folio's services pass each other is not for a third party's eyes.
var subscriberPropagator = propagation.TraceContext{}

func (t traced) RoundTrip(req *http.Request) (*http.Response, error) {
	attrs := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.HTTPRequestMethodKey.String(req.Method), semconv.URLScheme(req.URL.Scheme),
		semconv.ServerAddress(req.URL.Hostname()))}
	if port := serverPort(req); port > 0 {
		attrs = append(attrs, trace.WithAttributes(semconv.ServerPort(port)))
	}
	ctx, span := tracing.Tracer().Start(req.Context(), req.Method, attrs...)
	// A RoundTripper must not change the request it was given.
	req = req.Clone(ctx)
	subscriberPropagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		// egress.Describe's words, not err's text, which may quote the URL.
		reason := egress.Describe(err)
		span.SetAttributes(semconv.ErrorTypeKey.String(reason))
		span.SetStatus(codes.Error, reason)
		span.End()
		return nil, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, "")
	}
	// The span lasts until the answer has been read, as the POST does.
	resp.Body = &endOnClose{ReadCloser: resp.Body, span: span}
	return resp, nil
}

// serverPort is the port the request goes to, or 0 when the URL names none and
// the scheme's is not known.
func serverPort(req *http.Request) int {
	if p, err := strconv.Atoi(req.URL.Port()); err == nil {
		return p
	}
	switch req.URL.Scheme {
	case "https":
		return 443
	case "http":
		return 80
	}
	return 0
}

// endOnClose ends a span when the body it carries is closed.
type endOnClose struct {
	io.ReadCloser
	span trace.Span
	once sync.Once
}

func (b *endOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.span.End() })
	return err
}

// Attributes of a delivery attempt's span, beside the event's.
const (
	attrSubscription = attribute.Key("folio.notify.subscription.id")
	attrDelivery     = attribute.Key("folio.notify.delivery.id")
	attrAttempt      = attribute.Key("folio.notify.attempt") // 1 for the first
	// attrOutcome is what became of the delivery: delivered, retry, failed, or
	// released (cut short by a shutdown, not counted).
	attrOutcome   = attribute.Key("folio.notify.outcome")
	attrEventID   = attribute.Key("folio.event.id")
	attrEventType = attribute.Key("folio.event.type")
)

// AttemptSpans is the notify service's Tracer: each attempt to send a delivery
// is a span, "deliver <type>", child of the span that handled its event, whose
// context the delivery's row kept, so that the webhook shows in the trace of the
// write that caused it, however late it goes out and from whichever instance. A
// row kept without one starts a trace of its own.
type AttemptSpans struct{}

// Attempt implements notify.Tracer.
func (AttemptSpans) Attempt(ctx context.Context, c notify.Claim) (context.Context, func(result, reason string, status int)) {
	// Only the stored context may be the parent, not whatever span Run's caller
	// had: a delivery belongs to its event's trace or to none.
	ctx = tracing.Extract(trace.ContextWithSpanContext(ctx, trace.SpanContext{}), c.TraceContext)
	ctx, span := tracing.Tracer().Start(ctx, "deliver "+c.EventType, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attrSubscription.String(c.SubscriptionID), attrDelivery.String(c.ID),
			attrEventID.String(c.EventID), attrEventType.String(c.EventType), attrAttempt.Int(c.Attempts+1)))
	return ctx, func(result, reason string, status int) {
		span.SetAttributes(attrOutcome.String(result))
		if reason != "" {
			span.SetAttributes(semconv.ErrorTypeKey.String(reason))
			if status != 0 {
				span.SetAttributes(semconv.HTTPResponseStatusCode(status))
			}
			span.SetStatus(codes.Error, reason)
		}
		span.End()
	}
}
