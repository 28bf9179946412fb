// Package outboxtest lets a service's tests give a database the platform tables a
// service with events has, and read back the events its writes put in the outbox.
package outboxtest

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"folio/internal/platform/broker"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/inbox"
	"folio/internal/platform/outbox"
	"folio/internal/platform/sqldb"
)

// Migrate adds the outbox, inbox and idempotency-key tables to db, as a service's
// start does.
func Migrate(tb testing.TB, db *sqldb.DB) {
	tb.Helper()
	ctx := context.Background()
	if err := outbox.Migrate(ctx, db); err != nil {
		tb.Fatalf("outbox migrate: %v", err)
	}
	if err := inbox.Migrate(ctx, db); err != nil {
		tb.Fatalf("inbox migrate: %v", err)
	}
	if err := idempotency.Migrate(ctx, db); err != nil {
		tb.Fatalf("idempotency migrate: %v", err)
	}
}

// Event is one row of the outbox as a test sees it.
type Event struct {
	Aggregate string
	Envelope  broker.Envelope
	Body      []byte
}

// Events returns the events in the outbox of db whose sequence number is above
// after, in publishing order, and the last sequence number (after when none is).
func Events(tb testing.TB, db *sqldb.DB, after int64) ([]Event, int64) {
	tb.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT seq, aggregate, body FROM outbox WHERE seq > $1 ORDER BY seq`, after)
	if err != nil {
		tb.Fatalf("read outbox: %v", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var body string
		if err := rows.Scan(&after, &e.Aggregate, &body); err != nil {
			tb.Fatalf("read outbox: %v", err)
		}
		e.Body = []byte(body)
		if err := json.Unmarshal(e.Body, &e.Envelope); err != nil {
			tb.Fatalf("outbox body %s: %v", body, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("read outbox: %v", err)
	}
	return out, after
}

// SameJSON reports whether two JSON documents hold the same values.
func SameJSON(tb testing.TB, a, b []byte) bool {
	tb.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		tb.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		tb.Fatalf("decode %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}
