package httpapi_test

import (
	"net/http"
	"testing"

	"folio/internal/auth/httpapi"
	"folio/internal/auth/sqlstore"
	"folio/internal/platform/idempotency/idempotencytest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestIdempotentRegisterSurvivesACrash: an account and the stored answer to its
// registration commit together, so a retry after a crash gets the first answer or
// registers once, never 409.
func TestIdempotentRegisterSurvivesACrash(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		box := newBox(t)
		create := idempotencytest.Create{
			Handler: func(t *testing.T, db *sqldb.DB) http.Handler {
				return httpapi.HandleUserRegister(newServerWith(t, db, box).svc)
			},
			Path:   "/auth/register",
			Body:   credentials("crash@example.com", "twelve chars"),
			Tables: []string{"users"},
		}
		t.Run("after the commit", func(t *testing.T) { idempotencytest.CrashAfterCommit(t, db, create) })
		t.Run("before the commit", func(t *testing.T) {
			create.Body = credentials("crash-2@example.com", "twelve chars")
			idempotencytest.CrashBeforeCommit(t, db, create)
		})
	})
}
