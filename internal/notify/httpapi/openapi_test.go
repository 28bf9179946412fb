package httpapi_test

import (
	"strings"
	"testing"

	"folio/internal/notify/httpapi"
	"folio/internal/notify/notifytest"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/rest/openapicheck"
)

// TestOpenAPIDocument checks that the notify service's OpenAPI document is valid and
// that every answer of the service, errors included, matches what it says.
func TestOpenAPIDocument(t *testing.T) {
	doc := openapicheck.Load(t, httpapi.OpenAPI, "http://example.com")

	s := newServer(t, openSQLite(t))
	sub := s.subscribe(t, "http://example.com/hook", secret, "book.created", "author.deleted")
	for range 2 {
		s.Receive(t, notifytest.Event(t, id.New(), "book.created"))
	}
	path := "/subscriptions/" + sub.ID
	valid := `{"url":"http://example.com/hook","events":["book.updated"],"secret":"` + secret + `"}`
	editor := authntest.Bearer(s.iss.Token("e", "editor"))

	type call struct {
		method, path string
		body         string
		header       []string
		want         int
	}
	for _, cl := range []call{
		{"GET", "/subscriptions", "", nil, 200},
		{"GET", "/subscriptions", "", []string{"Authorization", ""}, 401},
		{"POST", "/subscriptions", valid, []string{"Authorization", "Bearer x"}, 401},
		{"POST", "/subscriptions", valid, []string{"Authorization", editor}, 403},
		{"GET", path + "/deliveries", "", []string{"Authorization", editor}, 403},
		{"GET", "/subscriptions?limit=1", "", nil, 200},
		{"GET", "/subscriptions?limit=0", "", nil, 400},
		{"POST", "/subscriptions", valid, []string{idempotency.Header, "k"}, 201},
		{"POST", "/subscriptions", valid, []string{idempotency.Header, "k"}, 201},
		{"POST", "/subscriptions", strings.Replace(valid, "updated", "deleted", 1), []string{idempotency.Header, "k"}, 422},
		{"POST", "/subscriptions", `{"url":""}`, nil, 422},
		{"POST", "/subscriptions", `{"url":1}`, nil, 400},
		{"POST", "/subscriptions", `{"secret":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413},
		{"GET", path, "", nil, 200},
		{"GET", path, "", []string{"If-None-Match", `"1"`}, 304},
		{"GET", "/subscriptions/nope", "", nil, 404},
		{"GET", path + "/deliveries", "", nil, 200},
		{"GET", path + "/deliveries?limit=1", "", nil, 200},
		{"GET", path + "/deliveries?cursor=nope", "", nil, 400},
		{"GET", "/subscriptions/nope/deliveries", "", nil, 404},
		{"DELETE", path, "", []string{"If-Match", `"2"`}, 412},
		{"DELETE", path, "", nil, 204},
		{"DELETE", path, "", nil, 404},
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

// TestOpenAPIMatchesRoutes checks that openapi.json documents exactly the routes the
// service serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	openapicheck.MatchesRoutes(t, httpapi.OpenAPI, newServer(t, openSQLite(t)).mux, "/subscriptions", 5)
}
