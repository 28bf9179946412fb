package httpapi_test

import (
	"net/http"
	"testing"

	"folio/internal/notify/httpapi"
	"folio/internal/notify/notifytest"
	"folio/internal/notify/sqlstore"
	"folio/internal/platform/idempotency/idempotencytest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestIdempotentCreateSurvivesACrash: a subscription and the stored answer commit
// together, so a retry after a crash gets the first answer or creates once, never 409.
func TestIdempotentCreateSurvivesACrash(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		notifytest.Migrate(t, db)
		create := idempotencytest.Create{
			Handler: func(t *testing.T, db *sqldb.DB) http.Handler {
				return httpapi.HandleSubscriptionCreate(newServer(t, db).Svc)
			},
			Path:   "/subscriptions",
			Body:   `{"url":"https://hooks.example.com/folio","events":["book.created"],"secret":"a secret of sixteen or more"}`,
			Tables: []string{"subscriptions", "subscription_events"},
		}
		t.Run("after the commit", func(t *testing.T) { idempotencytest.CrashAfterCommit(t, db, create) })
		t.Run("before the commit", func(t *testing.T) { idempotencytest.CrashBeforeCommit(t, db, create) })
	})
}
