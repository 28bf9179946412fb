package httpapi_test

import (
	"net/http"
	"testing"

	"folio/internal/book"
	"folio/internal/book/booktest"
	"folio/internal/book/httpapi"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/idempotency/idempotencytest"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestIdempotentCreateSurvivesACrash: a book, its event and the stored answer commit
// together, so a retry after a crash gets the first answer or creates once, never 409.
func TestIdempotentCreateSurvivesACrash(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		outboxtest.Migrate(t, db)
		create := idempotencytest.Create{
			Handler: func(t *testing.T, db *sqldb.DB) http.Handler {
				store := sqlstore.New(outbox.NewWriter(db, nil))
				authors := booktest.NewAuthors(authorA)
				return httpapi.HandleBookCreate(book.NewService(store, book.NewAuthorDirectory(store, authors, quiet)))
			},
			Path:   "/books",
			Body:   mustJSON(t, fields("crash")),
			Tables: []string{"books", "outbox"},
		}
		t.Run("after the commit", func(t *testing.T) { idempotencytest.CrashAfterCommit(t, db, create) })
		t.Run("before the commit", func(t *testing.T) { idempotencytest.CrashBeforeCommit(t, db, create) })
	})
}
