package httpapi_test

import (
	"strings"
	"testing"

	"folio/internal/author/authortest"
	"folio/internal/author/events"
	"folio/internal/author/httpapi"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/rest/openapicheck"
)

// TestOpenAPIDocument checks that the author service's OpenAPI document is valid and
// that every answer of the service, errors included, matches what it says.
func TestOpenAPIDocument(t *testing.T) {
	doc := openapicheck.Load(t, httpapi.OpenAPI, "http://example.com")

	c := newCatalogue(t)
	down := newServer(t, openSQLite(t), booksAt(closedURL(t)))
	stranded := down.create(`{"name":"Stranded"}`)
	busyDB := openSQLite(t)
	busy := newServer(t, busyDB, booksAt(closedURL(t)))
	prolific := busy.create(`{"name":"Prolific"}`)
	busy.deliver(authortest.BookEvent(events.EventBookCreated, id.New(), prolific.ID, 1))
	a := c.s.create(`{"name":"Checked","bio":"b","birth_year":1900}`)
	path := "/authors/" + a.ID
	anonymous := []string{"Authorization", ""}
	reader := []string{"Authorization", authntest.Bearer(c.s.iss.Token("reader-1", authn.RoleReader))}
	badToken := []string{"Authorization", "Bearer not-a-token"}
	plain := []string{"Content-Type", "text/plain"}

	type call struct {
		s            *server
		method, path string
		body         string
		header       []string
		want         int
	}
	calls := []call{
		{c.s, "GET", "/authors", "", nil, 200},
		{c.s, "GET", "/authors?limit=2", "", nil, 200},
		{c.s, "GET", "/authors?limit=0", "", nil, 400},
		{c.s, "POST", "/authors", `{"name":"New"}`, []string{idempotency.Header, "k"}, 201},
		{c.s, "POST", "/authors", `{"name":"New"}`, []string{idempotency.Header, "k"}, 201},
		{c.s, "POST", "/authors", `{"name":"Other"}`, []string{idempotency.Header, "k"}, 422},
		{c.s, "POST", "/authors", `{"name":""}`, nil, 422},
		{c.s, "POST", "/authors", `{"name":1}`, nil, 400},
		{c.s, "POST", "/authors", `{"name":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413},
		{c.s, "POST", "/authors", `{"name":"New"}`, plain, 415},
		{c.s, "POST", "/authors", `{"name":"New"}`, anonymous, 401},
		{c.s, "POST", "/authors", `{"name":"New"}`, reader, 403},
		{c.s, "GET", "/authors", "", badToken, 401},
		{c.s, "GET", path, "", badToken, 401},
		{c.s, "PUT", path, `{"name":"Checked"}`, plain, 415},
		{c.s, "PATCH", path, `{"bio":"c"}`, []string{"Content-Type", "application/merge-patch+json", "Authorization", ""}, 401},
		{c.s, "PATCH", path, `{"bio":"c"}`, plain, 415},
		{c.s, "DELETE", path, "", reader, 403},
		{c.s, "GET", path, "", nil, 200},
		{c.s, "GET", path, "", []string{"If-None-Match", `"1"`}, 304},
		{c.s, "GET", "/authors/nope", "", nil, 404},
		{c.s, "PUT", path, `{"name":"Checked","bio":"b"}`, []string{"If-Match", `"1"`}, 200},
		{c.s, "PUT", path, `{"name":"Checked"}`, []string{"If-Match", `"1"`}, 412},
		{c.s, "PUT", path, `{"name":"` + strings.Repeat("x", 201) + `"}`, nil, 422},
		{c.s, "PATCH", path, `{"birth_year":null}`, nil, 200},
		{c.s, "PATCH", path, `{"birth_year":"x"}`, nil, 400},
		{c.s, "GET", "/authors/" + c.zadie.ID + "/books?limit=1", "", nil, 200},
		{c.s, "GET", "/authors/" + c.zadie.ID + "/books?cursor=nope", "", nil, 400},
		{c.s, "GET", "/authors/" + c.bookless.ID + "/books", "", nil, 200},
		{c.s, "GET", "/authors/nope/books", "", nil, 404},
		{c.s, "GET", "/authors/books?genre=fantasy", "", nil, 200},
		{c.s, "GET", "/authors/books?genre=poetry", "", nil, 200},
		{c.s, "GET", "/authors/books", "", nil, 400},
		{down, "GET", "/authors/" + stranded.ID + "/books", "", nil, 503},
		{down, "GET", "/authors/books?genre=fantasy", "", nil, 503},
		{busy, "GET", "/authors/" + prolific.ID, "", nil, 200},
		{busy, "DELETE", "/authors/" + prolific.ID, "", nil, 409},
		{c.s, "DELETE", path, "", []string{"If-Match", `"1"`}, 412},
		{c.s, "DELETE", path, "", nil, 204},
		{c.s, "DELETE", path, "", nil, 404},
		{c.s, "GET", "/healthz", "", nil, 200},
		{c.s, "GET", "/readyz", "", nil, 200},
		{c.s, "GET", "/openapi.json", "", nil, 200},
	}
	for _, cl := range calls {
		rec := cl.s.do(cl.method, cl.path, cl.body, cl.header...)
		if rec.Code != cl.want {
			t.Errorf("%s %s: got status %d, want %d: %.300s", cl.method, cl.path, rec.Code, cl.want, rec.Body)
			continue
		}
		doc.CheckRecorded(t, cl.method, cl.path, rec)
	}
}
