package httpapi_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"folio/internal/order/httpapi"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/rest/openapicheck"
)

// TestOpenAPIDocument checks that the order service's OpenAPI document is valid and
// that every answer of the service, errors included, matches what it says.
func TestOpenAPIDocument(t *testing.T) {
	doc := openapicheck.Load(t, httpapi.OpenAPI, "http://example.com")
	s := newServer(t)
	o := s.place(t, "u1")
	confirmed := s.place(t, "u1")
	s.confirm(t, confirmed.ID)
	other := s.iss.Token("u2", "reader")
	for _, cl := range []struct {
		method, path, body string
		header             []string
		want               int
	}{
		{"GET", "/orders", "", nil, 200},
		{"GET", "/orders?limit=1", "", nil, 200},
		{"GET", "/orders?limit=0", "", nil, 400},
		{"POST", "/orders", validBody, nil, 202},
		{"POST", "/orders", validBody, []string{idempotency.Header, "k"}, 202},
		{"POST", "/orders", validBody, []string{idempotency.Header, "k"}, 202},
		{"POST", "/orders", `{"items":[]}`, nil, 422},
		{"POST", "/orders", `{"items":1}`, nil, 400},
		{"POST", "/orders", `{"items":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413},
		{"GET", "/orders/" + o.ID, "", nil, 200},
		{"GET", "/orders/nope", "", nil, 404},
		{"POST", "/orders/" + o.ID + "/cancel", "", nil, 409},
		{"POST", "/orders/" + confirmed.ID + "/cancel", "", nil, 202},
		{"POST", "/orders/" + id.New() + "/cancel", "", nil, 404},
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
	for _, cl := range []struct{ method, path, auth string }{
		{"GET", "/orders", ""},
		{"GET", "/orders/" + o.ID, "Bearer " + other},
	} {
		var header []string
		if cl.auth != "" {
			header = []string{"Authorization", cl.auth}
		}
		rec := httptestDo(s, cl.method, cl.path, header...)
		doc.CheckRecorded(t, cl.method, cl.path, rec)
	}
}

func httptestDo(s *server, method, path string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return rec
}

// TestOpenAPIMatchesRoutes checks that openapi.json documents exactly the routes the
// service serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	openapicheck.MatchesRoutes(t, httpapi.OpenAPI, newServer(t).mux, "/orders", 4)
}
