package httpapi_test

import (
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"folio/internal/book/httpapi"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/id"
	"folio/internal/platform/rest/openapicheck"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestOpenAPIMatchesRoutes checks that openapi.json documents exactly the routes the
// service serves: each route of book.Routes (read from routes.go) is documented, and
// each documented operation reaches the route of the same method and path.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	documented := map[string]bool{} // "GET /books/{id}"
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}

	routes := openapicheck.RoutesIn(t, "routes.go")
	if len(routes) < 6 {
		t.Fatalf("found %d routes in routes.go, want at least 6: %v", len(routes), routes)
	}
	for _, r := range routes {
		if !documented[openAPIRoute(r)] {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}

	db := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "test.db"), sqlstore.Migrations)
	s := newServer(t, db)
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}
	for path := range doc.Paths {
		for _, m := range methods {
			req := httptest.NewRequest(m, strings.ReplaceAll(path, "{id}", id.New()), nil)
			_, pattern := s.mux.Handler(req)
			want := m + " " + path
			switch {
			case documented[want] && pattern != want:
				t.Errorf("openapi.json documents %q, but the service routes it to %q", want, pattern)
			case !documented[want] && pattern != "" && !(m == "HEAD" && documented["GET "+path]):
				t.Errorf("the service serves %q (route %q), which openapi.json does not document", want, pattern)
			}
		}
	}
}

// openAPIRoute turns a ServeMux pattern ("GET /books/{id}", "GET /files/{path...}",
// "GET /{$}") into the OpenAPI form of the same route.
func openAPIRoute(pattern string) string {
	method, path, _ := strings.Cut(pattern, " ")
	path = strings.ReplaceAll(path, "{$}", "")
	path = strings.ReplaceAll(path, "...}", "}")
	return method + " " + path
}
