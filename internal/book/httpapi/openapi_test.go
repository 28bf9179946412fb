package httpapi_test

import (
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"folio/internal/book/httpapi"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/rest/openapicheck"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestOpenAPIDocument checks that the book service's OpenAPI document is valid and
// that every answer of the service, the refusals of v1.1 included, matches what it
// says.
func TestOpenAPIDocument(t *testing.T) {
	doc := openapicheck.Load(t, httpapi.OpenAPI, "http://example.com")

	s := newServer(t, sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "test.db"), sqlstore.Migrations))
	b := s.create(t, fields("fantasy"))
	path := "/books/" + b.ID
	anonymous := []string{"Authorization", ""}
	reader := []string{"Authorization", authntest.Bearer(s.iss.Token("reader-1", authn.RoleReader))}
	badToken := []string{"Authorization", "Bearer not-a-token"}
	plain := []string{"Content-Type", "text/plain"}
	input := mustJSON(t, fields("fantasy"))

	type call struct {
		method, path, body string
		header             []string
		want               int
	}
	calls := []call{
		{"GET", "/books", "", nil, 200},
		{"GET", "/books?limit=0", "", nil, 400},
		{"GET", "/books", "", anonymous, 200},
		{"GET", "/books", "", badToken, 401},
		{"POST", "/books", input, []string{idempotency.Header, "k"}, 201},
		{"POST", "/books", `{"title":1}`, nil, 400},
		{"POST", "/books", mustJSON(t, fields("fantasy", "author_id", absentAuthor)), nil, 422},
		{"POST", "/books", `{"title":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413},
		{"POST", "/books", input, plain, 415},
		{"POST", "/books", input, anonymous, 401},
		{"POST", "/books", input, badToken, 401},
		{"POST", "/books", input, reader, 403},
		{"GET", path, "", nil, 200},
		{"GET", path, "", []string{"If-None-Match", `"1"`}, 304},
		{"GET", path, "", badToken, 401},
		{"GET", "/books/nope", "", nil, 404},
		{"PUT", path, input, []string{"If-Match", `"1"`}, 200},
		{"PUT", path, input, []string{"If-Match", `"1"`}, 412},
		{"PUT", path, input, plain, 415},
		{"PUT", path, input, anonymous, 401},
		{"PUT", path, input, reader, 403},
		{"PATCH", path, `{"title":"Changed"}`, nil, 200},
		{"PATCH", path, `{"title":"Changed"}`, []string{"Content-Type", "application/json"}, 200},
		{"PATCH", path, `{"title":"Changed"}`, plain, 415},
		{"PATCH", path, `{"title":"Changed"}`, reader, 403},
		{"DELETE", path, "", reader, 403},
		{"DELETE", path, "", anonymous, 401},
		{"DELETE", path, "", nil, 204},
		{"DELETE", path, "", nil, 404},
		{"GET", "/healthz", "", nil, 200},
		{"GET", "/readyz", "", nil, 200},
		{"GET", "/openapi.json", "", nil, 200},
	}
	for _, cl := range calls {
		resp := s.do(t, cl.method, cl.path, cl.body, cl.header...)
		if resp.Status != cl.want {
			t.Errorf("%s %s: got status %d, want %d: %.300s", cl.method, cl.path, resp.Status, cl.want, resp.Body)
			continue
		}
		doc.Check(t, httptest.NewRequest(cl.method, "http://example.com"+cl.path, nil), resp.Status, resp.Header, resp.Body)
	}
	s.authors.SetDown(true)
	resp := s.do(t, "POST", "/books", mustJSON(t, fields("fantasy", "author_id", authorB)))
	if resp.Status != 503 {
		t.Fatalf("POST /books with the author service down: got %d, want 503: %s", resp.Status, resp.Body)
	}
	doc.Check(t, httptest.NewRequest("POST", "http://example.com/books", nil), resp.Status, resp.Header, resp.Body)
}
