// Package openapicheck holds a service's answers to its OpenAPI document in tests:
// each answer checked must be one the document describes, errors included.
package openapicheck

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"folio/internal/platform/id"
)

// Document is a loaded, valid OpenAPI document and the routes it describes.
type Document struct {
	*openapi3.T
	router routers.Router
}

// Load parses spec, fails t unless it is valid OpenAPI, and routes requests made to
// serverURL against it.
func Load(t testing.TB, spec []byte, serverURL string) *Document {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: serverURL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route the OpenAPI document: %v", err)
	}
	return &Document{T: doc, router: router}
}

// Check reports on t when the answer (status, header, body) to req is not one the
// document gives for req's route, or when the route is not in the document.
func (d *Document) Check(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		t.Errorf("%s %s is not in the document: %v", req.Method, req.URL, err)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		t.Errorf("%s %s: answer %d does not match the document: %v\n%.500s", req.Method, req.URL, status, err, body)
	}
}

// CheckRecorded is Check for an answer recorded by httptest to method and path,
// with the document loaded for serverURL "http://example.com".
func (d *Document) CheckRecorded(t testing.TB, method, path string, rec *httptest.ResponseRecorder) {
	t.Helper()
	d.Check(t, httptest.NewRequest(method, "http://example.com"+path, nil), rec.Code, rec.Header(), rec.Body.Bytes())
}

// RoutesIn returns the patterns passed to Handle and HandleFunc in a Go source file
// (a service's routes.go), so that a test can hold them to the document. A pattern
// that is not a string literal fails t: it could not be checked.
func RoutesIn(t testing.TB, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("%s: a route pattern that is not a string literal: %T", file, call.Args[0])
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, s)
		return true
	})
	return routes
}

// MatchesRoutes checks that spec documents exactly the routes mux serves: every
// pattern in routes.go (of which there must be want, so that a parse that finds
// none cannot pass) is in the document, every documented operation under prefix
// is routed to its own pattern, and mux serves no method on a documented path that
// the document leaves out (HEAD aside, served with GET). Path parameters are
// filled with a valid id.
func MatchesRoutes(t testing.TB, spec []byte, mux *http.ServeMux, prefix string, want int) {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(spec, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	routes := RoutesIn(t, "routes.go")
	if len(routes) != want {
		t.Fatalf("found %d routes in routes.go, want %d: %v", len(routes), want, routes)
	}
	for _, r := range routes {
		if !documented[r] {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	for path := range doc.Paths {
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"} {
			req := httptest.NewRequest(m, param.ReplaceAllLiteralString(path, id.New()), nil)
			_, pattern := mux.Handler(req)
			op := m + " " + path
			switch {
			case documented[op] && strings.HasPrefix(path, prefix) && pattern != op:
				t.Errorf("openapi.json documents %q, but the service routes it to %q", op, pattern)
			case !documented[op] && pattern != "" && !(m == "HEAD" && documented["GET "+path]):
				t.Errorf("the service serves %q (route %q), which openapi.json does not document", op, pattern)
			}
		}
	}
}
