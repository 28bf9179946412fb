package httpapi_test

import (
	"strings"
	"testing"

	"folio/internal/inventory/httpapi"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/id"
	"folio/internal/platform/rest/openapicheck"
)

// TestOpenAPIDocument checks that the inventory service's OpenAPI document is valid
// and that every answer of the service, errors included, matches what it says.
func TestOpenAPIDocument(t *testing.T) {
	doc := openapicheck.Load(t, httpapi.OpenAPI, "http://example.com")
	s := newServer(t, openSQLite(t))
	bookID := s.put(t, tenEuros)
	s.reserve(t, bookID, 4)
	deleted := s.put(t, tenEuros)
	s.deleteBook(t, deleted)
	path := "/inventory/" + bookID
	anonymous := []string{"Authorization", ""}
	reader := []string{"Authorization", authntest.Bearer(s.iss.Token("reader-1", authn.RoleReader))}
	badToken := []string{"Authorization", "Bearer not-a-token"}
	plain := []string{"Content-Type", "text/plain"}

	for _, cl := range []struct {
		method, path, body string
		header             []string
		want               int
	}{
		{"GET", "/inventory", "", nil, 200},
		{"GET", "/inventory", "", anonymous, 200},
		{"GET", "/inventory?limit=1", "", nil, 200},
		{"GET", "/inventory?limit=0", "", nil, 400},
		{"GET", "/inventory", "", badToken, 401},
		{"GET", path, "", anonymous, 200},
		{"GET", path, "", badToken, 401},
		{"GET", "/inventory/nope", "", nil, 404},
		{"GET", "/inventory/" + deleted, "", nil, 404},
		{"PUT", "/inventory/" + id.New(), tenEuros, nil, 201},
		{"PUT", path, tenEuros, nil, 428},
		{"PUT", path, tenEuros, []string{"If-Match", `"9"`}, 412},
		{"PUT", path, `{"price":{"amount":1,"currency":"EUR"},"quantity":3}`, []string{"If-Match", `"1"`}, 409},
		{"PUT", "/inventory/" + deleted, tenEuros, nil, 409},
		{"PUT", path, `{"quantity":-1}`, []string{"If-Match", `"1"`}, 422},
		{"PUT", path, `{"quantity":"x"}`, nil, 400},
		{"PUT", path, `{"quantity":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413},
		{"PUT", path, tenEuros, plain, 415},
		{"PUT", path, tenEuros, anonymous, 401},
		{"PUT", path, tenEuros, reader, 403},
		{"PUT", "/inventory/nope", tenEuros, nil, 404},
		{"PUT", path, tenEuros, []string{"If-Match", `"1"`}, 200},
		{"GET", "/healthz", "", nil, 200},
		{"GET", "/readyz", "", nil, 200},
		{"GET", "/openapi.json", "", nil, 200},
	} {
		rec := s.do(cl.method, cl.path, cl.body, cl.header...)
		if rec.Code != cl.want {
			t.Errorf("%s %s: got status %d, want %d: %.300s", cl.method, cl.path, rec.Code, cl.want, rec.Body)
			continue
		}
		doc.CheckRecorded(t, cl.method, cl.path, rec)
	}
}

// TestOpenAPIMatchesRoutes checks that openapi.json documents exactly the routes
// the service serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	openapicheck.MatchesRoutes(t, httpapi.OpenAPI, newServer(t, openSQLite(t)).mux, "/inventory", 3)
}
