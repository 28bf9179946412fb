package httpapi_test

import (
	"testing"

	"folio/internal/auth"
	"folio/internal/auth/sqlstore"
	"folio/internal/platform/problem"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestEveryEngine runs the service's main path over each database engine.
func TestEveryEngine(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		s := newServer(t, db)
		_, adminTok := s.admin()
		ada := s.register("ada@example.com", "twelve chars")
		wantProblem(t, s.do("POST", "/auth/register", credentials("ada@example.com", "twelve chars")), 409, problem.TypeConflict)
		tok := s.token("ada@example.com", "twelve chars")
		if c := s.verify(tok); c.Subject != ada.ID {
			t.Errorf("got sub %s, want %s", c.Subject, ada.ID)
		}
		if rec := s.do("PUT", "/auth/users/"+ada.ID+"/roles", `{"roles":["editor"]}`, bearer(adminTok)...); rec.Code != 200 {
			t.Errorf("roles change: got %d, want 200: %s", rec.Code, rec.Body)
		}
		// The role change revoked the earlier token.
		wantProblem(t, s.do("GET", "/auth/users/"+ada.ID, "", bearer(tok)...), 401, problem.TypeUnauthorized)
		tok = s.token("ada@example.com", "twelve chars")
		if rec := s.do("GET", "/auth/users/"+ada.ID, "", bearer(tok)...); rec.Code != 200 || decode[auth.User](t, rec).Version != 2 {
			t.Errorf("GET self: got %d %s, want 200 at version 2", rec.Code, rec.Body)
		}
		wantProblem(t, s.do("GET", "/auth/users/nope", "", bearer(adminTok)...), 404, problem.TypeNotFound)
	})
}
