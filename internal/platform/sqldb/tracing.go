package sqldb

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/tracing"
)

// startSpan starts a client span named operation (a statement's kind, or
// "transaction") for work on the database, when the caller's span is recorded.
// Statements are not recorded: their values can be a user's data, and their
// text is the code's. Work outside a recorded span (the relay's polling, the
// purges) makes no span, so that it starts no traces of its own.
func (db *DB) startSpan(ctx context.Context, operation string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	system := semconv.DBSystemNameSQLite
	if db.Dialect == Postgres {
		system = semconv.DBSystemNamePostgreSQL
	}
	return tracing.Tracer().Start(ctx, operation, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(system, semconv.DBOperationName(operation)))
}

// endSpan ends a span startSpan started, if any, marking it failed by err.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// statementKind is a statement's first keyword (SELECT, INSERT, …): what a span
// may say of it.
func statementKind(query string) string {
	kind, _, _ := strings.Cut(strings.TrimSpace(query), " ")
	if i := strings.IndexAny(kind, "\n\t("); i >= 0 {
		kind = kind[:i]
	}
	return strings.ToUpper(kind)
}
