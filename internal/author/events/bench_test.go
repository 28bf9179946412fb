package events_test

import (
	"context"
	"path/filepath"
	"testing"

	"folio/internal/author/authortest"
	"folio/internal/author/events"
	"folio/internal/author/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/sqldb/sqldbtest"
)

// BenchmarkApplyBookEvent measures applying one book.created event through the
// inbox to book_count on SQLite (a commit with fsync each): the consumer's share of
// the events pipeline.
//
//	go test -run '^$' -bench ApplyBookEvent ./internal/author/events/
func BenchmarkApplyBookEvent(b *testing.B) {
	c := newConsumer(b, sqldbtest.Open(b, "sqlite:"+filepath.Join(b.TempDir(), "author.db"), sqlstore.Migrations))
	authorID := id.New()
	msgs := make([]broker.Message, b.N)
	for i := range msgs {
		msgs[i] = authortest.BookEvent(events.EventBookCreated, id.New(), authorID, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := c.handle(context.Background(), msgs[i]); err != nil {
			b.Fatal(err)
		}
	}
}
