package httpapi_test

import (
	"net/http"
	"testing"

	"folio/internal/author"
	"folio/internal/author/httpapi"
	"folio/internal/author/sqlstore"
	"folio/internal/platform/idempotency/idempotencytest"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestIdempotentCreateSurvivesACrash: an author, its event and the stored answer
// commit together, so a retry after a crash gets the first answer or creates once,
// never 409.
func TestIdempotentCreateSurvivesACrash(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		outboxtest.Migrate(t, db)
		create := idempotencytest.Create{
			Handler: func(t *testing.T, db *sqldb.DB) http.Handler {
				return httpapi.HandleAuthorCreate(author.NewService(newStore(db), booksAt(closedURL(t)), 0))
			},
			Path:   "/authors",
			Body:   `{"name":"Ada Lovelace"}`,
			Tables: []string{"authors", "outbox"},
		}
		t.Run("after the commit", func(t *testing.T) { idempotencytest.CrashAfterCommit(t, db, create) })
		t.Run("before the commit", func(t *testing.T) { idempotencytest.CrashBeforeCommit(t, db, create) })
	})
}
