package httpapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"folio/internal/book/httpapi"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/id"
	"folio/internal/platform/metrics"
)

func TestUnknownRouteAnswers404(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		for _, path := range []string{"/nope", "/books/", "/books/" + id.New() + "/x", "/authors"} {
			s.do(t, http.MethodGet, path, "").problem(t, http.StatusNotFound).wantType(t, "/not-found")
		}
	})
}

func TestWrongMethodAnswers405WithAllow(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		for _, tt := range []struct{ method, path string }{
			{http.MethodPost, "/books/" + id.New()},
			{http.MethodDelete, "/books"},
			{http.MethodPut, "/books"},
			{http.MethodPost, "/healthz"},
		} {
			resp := s.do(t, tt.method, tt.path, "{}")
			resp.problem(t, http.StatusMethodNotAllowed).wantType(t, "/method-not-allowed")
			if resp.Header.Get("Allow") == "" {
				t.Errorf("%s %s: got no Allow header", tt.method, tt.path)
			}
		}
	})
}

func TestRequestIDIsEchoedOrMadeAndLogged(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		sent := "req-" + id.New()
		resp := s.do(t, http.MethodGet, "/books?genre=request-id", "", httpserver.RequestIDHeader, sent)
		if got := resp.Header.Get(httpserver.RequestIDHeader); got != sent {
			t.Errorf("sent %q: got %q echoed", sent, got)
		}
		generated := map[string]bool{}
		for _, header := range [][]string{nil, {httpserver.RequestIDHeader, "has space"}, {httpserver.RequestIDHeader, strings.Repeat("x", 129)}} {
			resp := s.do(t, http.MethodGet, "/books?genre=request-id", "", header...)
			got := resp.Header.Get(httpserver.RequestIDHeader)
			if got == "" || len(got) > 128 || generated[got] || (len(header) > 0 && got == header[1]) {
				t.Errorf("sent %v: got request id %q, want a new one", header, got)
			}
			generated[got] = true
		}
		if s.logs != nil && !logged(t, s.logs.String(), sent) {
			t.Errorf("no access log line carries request_id %q", sent)
		}
	})
}

func TestOperationalEndpoints(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		for _, path := range []string{"/healthz", "/readyz"} {
			resp := s.do(t, http.MethodGet, path, "")
			if resp.Status != http.StatusOK || !json.Valid(resp.Body) {
				t.Errorf("%s: got %d %s, want 200 and JSON", path, resp.Status, resp.Body)
			}
		}

		b := s.create(t, fields("metrics"))
		s.get(t, b.ID)
		if resp := s.do(t, http.MethodGet, "/metrics", ""); resp.Status != http.StatusNotFound {
			t.Errorf("/metrics on the public port: got %d, want 404", resp.Status)
		}
		rec := httptest.NewRecorder()
		metrics.Handler(s.reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		resp := response{Status: rec.Code, Body: rec.Body.Bytes()}
		if resp.Status != http.StatusOK {
			t.Fatalf("/metrics: got %d, want 200", resp.Status)
		}
		found := false
		sc := bufio.NewScanner(bytes.NewReader(resp.Body))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "http_requests_total{") && strings.Contains(line, `route="GET /books/{id}"`) &&
				strings.Contains(line, `code="200"`) && strings.Contains(line, `method="GET"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("/metrics has no http_requests_total line for route \"GET /books/{id}\":\n%s", resp.Body)
		}

		resp = s.do(t, http.MethodGet, "/openapi.json", "")
		if resp.Status != http.StatusOK || !json.Valid(resp.Body) || !bytes.Equal(resp.Body, httpapi.OpenAPI) {
			t.Errorf("/openapi.json: got %d and %d bytes, want 200 and the document", resp.Status, len(resp.Body))
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("/openapi.json: got Content-Type %q, want application/json", ct)
		}
	})
}
