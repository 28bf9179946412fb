package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
	"folio/internal/platform/tracing"
	"folio/internal/platform/tracing/tracingtest"
)

// Inside a recorded span, a transaction and a statement are spans named by what
// they are, never by their text; outside one, they make none.
func TestDatabaseWorkIsSpannedWithoutItsText(t *testing.T) {
	spans := tracingtest.Record(t)
	sqldbtest.ForEach(t, migrations, func(t *testing.T, db *sqldb.DB) {
		spans.Reset()
		ctx, request := tracing.Tracer().Start(context.Background(), "POST /books")
		boom := errors.New("boom")
		_ = db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO t (id, u, n) VALUES (1, 'secret-u', 'secret n')`)
			if err != nil {
				t.Fatal(err)
			}
			return boom
		})
		if _, err := db.ExecContext(ctx, `
			SELECT id FROM t WHERE n = $1`, "secret n"); err != nil {
			t.Fatal(err)
		}
		request.End()
		if _, err := db.ExecContext(context.Background(), `SELECT 1`); err != nil {
			t.Fatal(err)
		}

		ended := spans.Ended()
		if len(ended) != 3 {
			t.Fatalf("%d spans, want the transaction, the statement and the request", len(ended))
		}
		tx, stmt := ended[0], ended[1]
		if tx.Name() != "transaction" || tx.Status().Code != codes.Error || tx.Parent().SpanID() != request.SpanContext().SpanID() {
			t.Errorf("span %q (%v) under %s, want a failed \"transaction\" under the request", tx.Name(), tx.Status(), tx.Parent().SpanID())
		}
		if stmt.Name() != "SELECT" || stmt.Parent().SpanID() != request.SpanContext().SpanID() {
			t.Errorf("span %q under %s, want \"SELECT\" under the request", stmt.Name(), stmt.Parent().SpanID())
		}
		for _, s := range ended[:2] {
			for _, a := range s.Attributes() {
				if v := a.Value.Emit(); strings.Contains(v, "secret") {
					t.Errorf("span %q attribute %s=%q holds the statement's values", s.Name(), a.Key, v)
				}
			}
		}
	})
}
