// Package openapicheck holds a service's answers to its OpenAPI document in tests:
// each answer checked must be one the document describes, errors included.
package openapicheck

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
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
