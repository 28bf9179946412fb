package httpapi_test

import (
	"strings"
	"testing"

	"folio/internal/auth/httpapi"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/rest/openapicheck"
)

// TestOpenAPIDocument checks that the auth service's OpenAPI document is valid and
// that every answer of the service, errors included, matches what it says.
func TestOpenAPIDocument(t *testing.T) {
	doc := openapicheck.Load(t, httpapi.OpenAPI, "http://example.com")

	s := newServer(t, openSQLite(t), func(s *settings) { s.limits.Email = httpapi.Limit{Every: 1 << 40, Burst: 2} })
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
		{"POST", "/auth/token", credentials("new@example.com", "twelve chars"), []string{"Content-Type", "text/plain"}, 415},
		{"POST", "/auth/register", credentials("other@example.com", "twelve chars"), []string{"Content-Type", "text/plain"}, 415},
		{"GET", "/.well-known/jwks.json", "", nil, 200},
		{"GET", path, "", bearer(adaTok), 200},
		{"GET", path, "", append(bearer(adaTok), "If-None-Match", `"1"`), 304},
		{"GET", path, "", nil, 401},
		{"GET", "/auth/users/" + id.New(), "", bearer(adaTok), 404},
		{"PUT", path + "/roles", `{"roles":["admin"]}`, bearer(adaTok), 403},
		{"PUT", path + "/roles", `{"roles":["reader","editor"]}`, bearer(adminTok), 200},
		{"PUT", path + "/roles", `{"roles":["reader"]}`, append(bearer(adminTok), "If-Match", `"1"`), 412},
		{"PUT", path + "/roles", `{"roles":["root"]}`, bearer(adminTok), 422},
		{"PUT", path + "/roles", `{"roles":1}`, bearer(adminTok), 400},
		{"PUT", path + "/roles", `{"roles":["admin"]}`, nil, 401},
		{"PUT", path + "/roles", `{"roles":["admin"]}`, append(bearer(adminTok), "Content-Type", "text/plain"), 415},
		{"GET", path, "", bearer("not-a-token"), 401},
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
		doc.CheckRecorded(t, cl.method, cl.path, rec)
	}
}
