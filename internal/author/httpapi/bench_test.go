package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"

	"folio/internal/author"
	"folio/internal/author/authortest"
)

// BenchmarkGenreBooks measures GET /authors/books?genre=X for a genre of 250 books by
// 125 authors, with a book service in memory serving over loopback HTTP (the tests of
// the author service start no other service: the e2e benchmarks measure the real one).
func BenchmarkGenreBooks(b *testing.B) {
	books, url := authortest.StartBookService(b)
	db := openSQLite(b)
	srv := newServer(b, db, booksAt(url))
	var authors []author.Author
	for i := range 125 {
		authors = append(authors, srv.create(fmt.Sprintf(`{"name":"Author %03d","bio":"A writer of the benchmark.","birth_year":1900}`, i)))
	}
	for i := range 250 {
		books.Add(authors[i%125].ID, "science-fiction")
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := srv.do(http.MethodGet, "/authors/books?genre=science-fiction", "")
			if rec.Code != http.StatusOK {
				b.Errorf("got %d: %s", rec.Code, rec.Body)
				return
			}
		}
	})
}
