package gateway

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/authn"
)

// Attributes the gateway sets on its server span (the chassis starts it), so that
// a trace says what the gateway decided about the request, not only where it went.
// They are set only when the span records: building them is not free.
const (
	// attrUpstream is the service the route leads to: book, author, auth, notify.
	attrUpstream = attribute.Key("folio.gateway.upstream")
	// attrAccess is what the route asks of the caller: public, any_token,
	// editor, admin.
	attrAccess = attribute.Key("folio.gateway.access")
	// attrAuth is the authorisation decision: anonymous (no token, public route),
	// allowed, missing_token (401), invalid_token (401), forbidden (403). It is
	// absent when the rate limiter refused the request before the decision.
	attrAuth = attribute.Key("folio.gateway.auth")
	// attrAuthFailure says why a token was invalid, in the words of the
	// folio_auth_failures_total metric (expired, bad_signature, revoked, ...).
	attrAuthFailure = attribute.Key("folio.gateway.auth_failure")
	// attrSubject is the subject of a token the gateway verified, never anything
	// of an unverified one.
	attrSubject = attribute.Key("folio.gateway.subject")
	// attrRateLimit is the rate limiter's verdict: allowed, limited (429), or
	// unchecked (the shared limiter did not answer; let through).
	attrRateLimit = attribute.Key("folio.gateway.rate_limit")
	// attrRateLimitBudget is the budget the verdict drew on: verify (the
	// address's budget for checking a token not seen before), ip, subject.
	attrRateLimitBudget = attribute.Key("folio.gateway.rate_limit_budget")
	// attrRetry is why the request was sent to a second instance: connect_error,
	// timeout, error (the retries metric's reasons). Each attempt is a client span.
	attrRetry = attribute.Key("folio.gateway.retry")
)

var (
	verdictAttrs = [...]attribute.KeyValue{
		admitted:  attrRateLimit.String("allowed"),
		refused:   attrRateLimit.String("limited"),
		unchecked: attrRateLimit.String("unchecked"),
	}
	budgetVerify  = attrRateLimitBudget.String("verify")
	budgetIP      = attrRateLimitBudget.String("ip")
	budgetSubject = attrRateLimitBudget.String("subject")
)

// accessAttr names what need asks of the caller.
func accessAttr(need authn.Access) attribute.KeyValue {
	switch need {
	case authn.Public:
		return attrAccess.String("public")
	case authn.AnyToken:
		return attrAccess.String("any_token")
	case authn.Editor:
		return attrAccess.String("editor")
	case authn.Admin:
		return attrAccess.String("admin")
	default:
		return attrAccess.String("unknown")
	}
}

// authAttrs names the decision authn.Verifier.Authorize made (ok) for identity
// id and token error err, following the order in which it checks them.
func authAttrs(ok bool, id *authn.Identity, err error) []attribute.KeyValue {
	switch {
	case ok && id == nil:
		return []attribute.KeyValue{attrAuth.String("anonymous")}
	case ok:
		return []attribute.KeyValue{attrAuth.String("allowed")}
	case err != nil:
		reason, _ := authn.FailureReason(err)
		return []attribute.KeyValue{attrAuth.String("invalid_token"), attrAuthFailure.String(reason)}
	case id == nil:
		return []attribute.KeyValue{attrAuth.String("missing_token")}
	default:
		return []attribute.KeyValue{attrAuth.String("forbidden")}
	}
}

// upstreamPropagator writes the gateway's trace context into each attempt. Not
// baggage: the gateway sets none of its own, and a client's must never reach the
// services, whatever the chassis lets into the request's context.
var upstreamPropagator = propagation.TraceContext{}

// tracedTransport makes each attempt at service (the balancer's first try and its
// retry alike) a client span of its own, named "GET book", with the instance as
// server.address and server.port, and sends that span's context to the instance.
func tracedTransport(service string, next http.RoundTripper) http.RoundTripper {
	return otelhttp.NewTransport(withoutQuery{next: next},
		otelhttp.WithPropagators(upstreamPropagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + service }))
}

// withoutQuery runs inside the attempt's client span and records its url.full
// without the query string: otelhttp records the URL whole, and the query is
// whatever a client chose to send, which the trace store has no use for (the
// server spans record the path only).
type withoutQuery struct{ next http.RoundTripper }

func (t withoutQuery) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			u := *r.URL
			u.RawQuery, u.ForceQuery, u.User = "", false, nil
			span.SetAttributes(semconv.URLFull(u.String()))
		}
	}
	return t.next.RoundTrip(r)
}
