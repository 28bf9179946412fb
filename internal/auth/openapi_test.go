package auth_test

import (
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"folio/internal/auth"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/rest"
)

// TestOpenAPIDocument checks that the auth service's OpenAPI document is valid and
// that every answer of the service, errors included, matches what it says.
func TestOpenAPIDocument(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(auth.OpenAPI)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: "http://example.com"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}

	s := newServer(t, openSQLite(t), func(o *auth.Options) { o.EmailLimit = auth.Limit{Every: 1 << 40, Burst: 2} })
	_, adminTok := s.admin()
	ada := s.register("ada@example.com", "twelve chars")
	adaTok := s.token("ada@example.com", "twelve chars")
	path := "/auth/users/" + ada.ID

	type call struct {
		method, path, body string
		header             []string
		want               int
	}
	calls := []call{
		{"POST", "/auth/register", credentials("new@example.com", "twelve chars"), []string{idempotency.Header, "k"}, 201},
		{"POST", "/auth/register", credentials("new@example.com", "twelve chars"), []string{idempotency.Header, "k"}, 201},
		{"POST", "/auth/register", credentials("new@example.com", "twelve chars"), nil, 409},
		{"POST", "/auth/register", credentials("new@example.com", "short"), nil, 422},
		{"POST", "/auth/register", `{"email":1}`, nil, 400},
		{"POST", "/auth/register", `{"email":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413},
		{"POST", "/auth/token", credentials("new@example.com", "twelve chars"), nil, 200},
		{"POST", "/auth/token", credentials("new@example.com", "wrong password"), nil, 401},
		{"POST", "/auth/token", credentials("new@example.com", "wrong password"), nil, 429},
		{"POST", "/auth/token", `[]`, nil, 400},
		{"GET", "/.well-known/jwks.json", "", nil, 200},
		{"GET", path, "", bearer(adaTok), 200},
		{"GET", path, "", append(bearer(adaTok), "If-None-Match", `"1"`), 304},
		{"GET", path, "", nil, 401},
		{"GET", "/auth/users/" + rest.NewID(), "", bearer(adaTok), 404},
		{"PUT", path + "/roles", `{"roles":["reader","editor"]}`, bearer(adminTok), 200},
		{"PUT", path + "/roles", `{"roles":["reader"]}`, append(bearer(adminTok), "If-Match", `"1"`), 412},
		{"PUT", path + "/roles", `{"roles":["root"]}`, bearer(adminTok), 422},
		{"PUT", path + "/roles", `{"roles":1}`, bearer(adminTok), 400},
		{"PUT", path + "/roles", `{"roles":["admin"]}`, bearer(adaTok), 403},
		{"PUT", path + "/roles", `{"roles":["admin"]}`, nil, 401},
		{"PUT", "/auth/users/nope/roles", `{"roles":["admin"]}`, bearer(adminTok), 404},
		{"GET", "/healthz", "", nil, 200},
		{"GET", "/readyz", "", nil, 200},
		{"GET", "/openapi.json", "", nil, 200},
	}
	for _, cl := range calls {
		rec := s.do(cl.method, cl.path, cl.body, cl.header...)
		if rec.Code != cl.want {
			t.Errorf("%s %s: got status %d, want %d: %.300s", cl.method, cl.path, rec.Code, cl.want, rec.Body)
			continue
		}
		checkResponse(t, router, cl.method, cl.path, rec)
	}
}

// checkResponse validates one answer against the document.
func checkResponse(t *testing.T, router routers.Router, method, path string, rec *httptest.ResponseRecorder) {
	t.Helper()
	req := httptest.NewRequest(method, "http://example.com"+path, nil)
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Errorf("%s %s is not in the document: %v", method, path, err)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s: answer %d does not match the document: %v\n%.500s", method, path, rec.Code, err, rec.Body)
	}
}
