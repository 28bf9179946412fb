package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"folio/internal/platform/outbox"
	"folio/internal/platform/sqldb"
)

func TestWriterWakesTheRelayOnlyAfterACommit(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		woken := 0
		w := outbox.NewWriter(db, func() { woken++ })
		boom := errors.New("boom")
		if err := w.Write(ctx, func(tx *sql.Tx) error {
			if err := outbox.AddEvent(ctx, tx, "book.created", "b1", map[string]string{"id": "b1"}); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("Write = %v, want boom", err)
		}
		if woken != 0 || count(t, db, "1=1") != 0 {
			t.Fatalf("after a rollback: woken %d times, %d events; want 0, 0", woken, count(t, db, "1=1"))
		}
		if err := w.Write(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO books (id, title) VALUES ('b1', 'Dune')`); err != nil {
				return err
			}
			return outbox.AddEvent(ctx, tx, "book.created", "b1", map[string]string{"id": "b1"})
		}); err != nil {
			t.Fatal(err)
		}
		if woken != 1 || count(t, db, "1=1") != 1 {
			t.Fatalf("after a commit: woken %d times, %d events; want 1, 1", woken, count(t, db, "1=1"))
		}
		if err := outbox.NewWriter(db, nil).Write(ctx, func(tx *sql.Tx) error { return nil }); err != nil {
			t.Fatalf("a writer without notify: %v", err)
		}
	})
}
