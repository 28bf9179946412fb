package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"folio/internal/book"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb/sqldbtest"
)

// benchCatalogue stores 5,000 books over 20 genres (250 each) in a new SQLite
// database and returns a handler over it, with one book id per genre.
func benchCatalogue(b *testing.B) (http.Handler, []string) {
	db := sqldbtest.Open(b, "sqlite:"+filepath.Join(b.TempDir(), "bench.db"), sqlstore.Migrations)
	outboxtest.Migrate(b, db)
	store := sqlstore.New(outbox.NewWriter(db, nil))
	now := time.Now().UTC().Truncate(time.Microsecond)
	year := 1900
	var ids []string
	for i := range 5000 {
		bk := book.Book{ID: id.New(), Title: fmt.Sprintf("Book number %d of the benchmark", i), AuthorID: authorA,
			Genre: fmt.Sprintf("genre-%d", i%20), PublishedYear: &year, Version: 1, CreatedAt: now, UpdatedAt: now}
		if err := store.Create(context.Background(), bk); err != nil {
			b.Fatal(err)
		}
		if i < 20 {
			ids = append(ids, bk.ID)
		}
	}
	return newServerLogging(b, db, io.Discard).h, ids
}

func benchGet(b *testing.B, h http.Handler, target string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
			if rec.Code != http.StatusOK {
				b.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
			}
		}
	})
}

func BenchmarkBookGet(b *testing.B) {
	h, ids := benchCatalogue(b)
	benchGet(b, h, "/books/"+ids[0])
}

func BenchmarkBookListGenre100(b *testing.B) {
	h, _ := benchCatalogue(b)
	benchGet(b, h, "/books?genre=genre-3&limit=100")
}
