package sqlstore_test

import (
	"context"
	"database/sql"
	"maps"
	"testing"
	"time"

	"folio/internal/notify/events"
	"folio/internal/notify/sqlstore"
	"folio/internal/platform/inbox"
	"folio/internal/platform/sqldb"
)

func TestStoreKeepsEachDeliverysTraceContextForItsClaim(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := sqlstore.New(db)
		sub := newSub("book.created")
		if err := st.CreateSubscription(ctx, sub, 0); err != nil {
			t.Fatal(err)
		}
		traced := map[string]string{
			"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"tracestate":  "vendor=abc123",
		}
		now := time.UnixMilli(1_800_000_000_000)
		for eventID, tc := range map[string]map[string]string{"traced": traced, "untraced": nil, "empty": {}} {
			_, err := inbox.Apply(ctx, db, events.Consumer, eventID, func(tx *sql.Tx) error {
				_, err := st.AddDeliveries(ctx, tx, eventID, "book.created", []byte(`{}`), tc, now)
				return err
			})
			if err != nil {
				t.Fatalf("add %s: %v", eventID, err)
			}
		}
		var nulls int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM deliveries WHERE trace_context IS NULL`).Scan(&nulls); err != nil {
			t.Fatal(err)
		}
		if nulls != 2 {
			t.Errorf("%d deliveries without a trace context, want 2 (none given, and an empty one)", nulls)
		}
		claims, err := st.Claim(ctx, now, time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(claims) != 3 {
			t.Fatalf("claimed %d, want 3", len(claims))
		}
		for _, c := range claims {
			want := map[string]string(nil)
			if c.EventID == "traced" {
				want = traced
			}
			if !maps.Equal(c.TraceContext, want) || (want == nil) != (c.TraceContext == nil) {
				t.Errorf("claim of %s carries %v, want %v", c.EventID, c.TraceContext, want)
			}
		}
	})
}
