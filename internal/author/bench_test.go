package author_test

import (
	"fmt"
	"net/http"
	"testing"

	"folio/internal/author"
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
