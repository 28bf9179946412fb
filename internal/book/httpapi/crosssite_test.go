package httpapi_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"folio/internal/book/sqlstore"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestCrossSiteBodies replays issue 8, finding 3: a web page can make a browser POST
// text/plain (or a form) to a service on localhost without a CORS preflight. Such a
// body is refused with 415 before anything is done with it.
func TestCrossSiteBodies(t *testing.T) {
	db := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "book.db"), sqlstore.Migrations)
	s := newServer(t, db)
	target := s.create(t, fields("poetry"))
	body := mustJSON(t, fields("science-fiction", "title", "Sent Cross-Site"))
	for _, tc := range []struct {
		method, path, contentType string
		header                    []string
	}{
		{http.MethodPost, "/books", "text/plain", nil},
		{http.MethodPost, "/books", "text/plain;charset=UTF-8", []string{"Idempotency-Key", "cross-site"}},
		{http.MethodPost, "/books", "application/x-www-form-urlencoded", nil},
		{http.MethodPost, "/books", "multipart/form-data; boundary=x", nil},
		{http.MethodPut, "/books/" + target.ID, "text/plain", []string{"If-Match", `"1"`}},
		{http.MethodPatch, "/books/" + target.ID, "text/plain", nil},
	} {
		t.Run(tc.method+" "+tc.contentType, func(t *testing.T) {
			resp := s.do(t, tc.method, tc.path, body, append([]string{"Content-Type", tc.contentType}, tc.header...)...)
			resp.problem(t, http.StatusUnsupportedMediaType).wantType(t, "/unsupported-media-type")
		})
	}
	list := s.do(t, http.MethodGet, "/books?genre=science-fiction", "")
	if list.Status != http.StatusOK || strings.Contains(string(list.Body), "Sent Cross-Site") {
		t.Errorf("after the refused requests: got %d %s, want no book created", list.Status, list.Body)
	}
	if got := s.get(t, target.ID); got.Title != target.Title || got.Genre != target.Genre {
		t.Errorf("after the refused requests: the book is %+v, want it unchanged", got)
	}
	// The JSON media types are still read.
	if resp := s.do(t, http.MethodPatch, "/books/"+target.ID, `{"title":"Patched"}`, "Content-Type", "application/merge-patch+json"); resp.Status != http.StatusOK {
		t.Errorf("PATCH as merge-patch+json: got %d %s, want 200", resp.Status, resp.Body)
	}
	if resp := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("poetry")), "Content-Type", "application/json; charset=utf-8"); resp.Status != http.StatusCreated {
		t.Errorf("POST as application/json; charset=utf-8: got %d %s, want 201", resp.Status, resp.Body)
	}
}
