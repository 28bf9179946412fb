package author_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"folio/internal/author"
	"folio/internal/platform/broker"
	"folio/internal/platform/rest"
)

// BenchmarkGenreBooks measures GET /authors/books?genre=X for a genre of 250 books by
// 125 authors, with the real book service serving over loopback HTTP.
func BenchmarkGenreBooks(b *testing.B) {
	books := startBookService(b)
	db := openSQLite(b)
	srv := newServer(b, db, booksAt(books.URL))
	var authors []author.Author
	for i := range 125 {
		authors = append(authors, srv.create(fmt.Sprintf(`{"name":"Author %03d","bio":"A writer of the benchmark.","birth_year":1900}`, i)))
	}
	for i := range 250 {
		createBook(b, books.URL, map[string]any{"title": fmt.Sprintf("Book %d", i), "author_id": authors[i%125].ID,
			"genre": "science-fiction", "published_year": 1950})
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := srv.do(http.MethodGet, "/authors/books?genre=science-fiction", "")
			if rec.Code != http.StatusOK {
				b.Fatalf("got %d: %s", rec.Code, rec.Body)
			}
		}
	})
}

// BenchmarkApplyBookEvent measures applying one book.created event through the
// inbox to book_count on SQLite (a commit with fsync each): the consumer's share of
// the events pipeline.
//
//	go test -run '^$' -bench ApplyBookEvent ./internal/author/
func BenchmarkApplyBookEvent(b *testing.B) {
	db := openSQLite(b)
	handle := author.NewEventHandler(author.NewSQLStore(db), slog.New(slog.DiscardHandler))
	authorID := rest.NewID()
	msgs := make([]broker.Message, b.N)
	for i := range msgs {
		msgs[i] = bookEvent("book.created", rest.NewID(), authorID, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := handle(context.Background(), msgs[i]); err != nil {
			b.Fatal(err)
		}
	}
}
