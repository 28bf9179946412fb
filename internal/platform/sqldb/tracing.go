package sqldb

import (
	"context"
	"strings"

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

// startStatement is startSpan for query, named by its kind, which is worked out
// only for a span that records.
func (db *DB) startStatement(ctx context.Context, query string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return db.startSpan(ctx, statementKind(query))
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
