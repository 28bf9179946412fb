package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"folio/internal/platform/httpserver"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
)

func TestBookInvalidIDsAreNotFound(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		b := s.create(t, fields("invalid-ids"))
		ids := []string{"abc", strings.ToUpper(b.ID), url.PathEscape("../x"), url.PathEscape("{" + b.ID + "}"),
			b.ID + "0", b.ID[:35], "urn:uuid:" + b.ID, strings.ReplaceAll(b.ID, "-", ""), url.PathEscape(" " + b.ID),
			"%00", id.New()}
		for _, id := range ids {
			for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodDelete} {
				t.Run(m+" "+id, func(t *testing.T) {
					body := ""
					switch m {
					case http.MethodPatch:
						body = `{"title":"x"}`
					case http.MethodPut:
						body = mustJSON(t, fields("invalid-ids"))
					}
					s.do(t, m, "/books/"+id, body, "If-Match", "*").problem(t, http.StatusNotFound).wantType(t, "/not-found")
				})
			}
		}
		if diff := sameBook(s.get(t, b.ID), b); diff != "" {
			t.Errorf("the book changed: %s", diff)
		}
	})
}

func TestBookMalformedBodiesAnswer400(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		valid := mustJSON(t, fields("malformed"))
		tests := []struct {
			name, body, field string // field: the field the errors must name, if any
		}{
			{"not json", `{"title":"x",`, ""},
			{"not json at all", `hello`, ""},
			{"empty", ``, ""},
			{"only whitespace", " \n\t", ""},
			{"unknown field", mustJSON(t, fields("malformed", "subtitle", "x")), "subtitle"},
			{"wrong type title", mustJSON(t, fields("malformed", "title", 5)), "title"},
			{"wrong type year", mustJSON(t, fields("malformed", "published_year", "1999")), "published_year"},
			{"fractional year", mustJSON(t, fields("malformed", "published_year", 1999.5)), "published_year"},
			{"wrong type isbn", mustJSON(t, fields("malformed", "isbn", 9780306406157)), "isbn"},
			{"wrong type genre", mustJSON(t, fields("malformed", "genre", []string{"a"})), "genre"},
			{"trailing garbage", valid + ` x`, ""},
			{"two objects", valid + valid, ""},
			{"array", `[` + valid + `]`, ""},
			{"string", `"x"`, ""},
			{"null", `null`, ""},
		}
		for _, m := range []string{http.MethodPost, http.MethodPut} {
			target := s.create(t, fields("malformed-target"))
			for _, tt := range tests {
				t.Run(m+" "+tt.name, func(t *testing.T) {
					path := "/books"
					if m == http.MethodPut {
						path += "/" + target.ID
					}
					p := s.do(t, m, path, tt.body).problem(t, http.StatusBadRequest)
					p.wantType(t, "/malformed-request")
					if tt.field != "" && !slices.Contains(p.fields(), tt.field) {
						t.Errorf("got errors naming %v, want %s", p.fields(), tt.field)
					}
					if tt.field != "" && !strings.Contains(p.Detail, tt.field) {
						t.Errorf("got detail %q, want it to name %s", p.Detail, tt.field)
					}
				})
			}
			if diff := sameBook(s.get(t, target.ID), target); diff != "" {
				t.Errorf("the book changed: %s", diff)
			}
		}
		if got := s.do(t, http.MethodGet, "/books?genre=malformed", "").page(t); len(got.Items) != 0 {
			t.Errorf("got %d books created by malformed requests, want 0", len(got.Items))
		}
	})
}

func TestBookInvalidBodiesAnswer422(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		tests := []struct {
			name       string
			body       map[string]any
			wantFields []string
		}{
			{"title missing", fields("invalid", "title", nil), []string{"title"}},
			{"title blank", fields("invalid", "title", "  "), []string{"title"}},
			{"title too long", fields("invalid", "title", strings.Repeat("é", 301)), []string{"title"}},
			{"author missing", fields("invalid", "author_id", nil), []string{"author_id"}},
			{"author not an id", fields("invalid", "author_id", "abc"), []string{"author_id"}},
			{"author unknown", fields("invalid", "author_id", absentAuthor), []string{"author_id"}},
			{"genre missing", fields("invalid", "genre", nil), []string{"genre"}},
			{"genre not a slug", fields("Invalid"), []string{"genre"}},
			{"isbn check digit", fields("invalid", "isbn", "0-306-40615-3"), []string{"isbn"}},
			{"year too early", fields("invalid", "published_year", -3001), []string{"published_year"}},
			{"year too late", fields("invalid", "published_year", time.Now().Year()+10), []string{"published_year"}},
			{"everything", map[string]any{"title": "", "author_id": "x", "genre": "-", "isbn": "1", "published_year": -4000},
				[]string{"title", "author_id", "genre", "isbn", "published_year"}},
			{"empty object", map[string]any{}, []string{"title", "author_id", "genre"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := s.do(t, http.MethodPost, "/books", mustJSON(t, tt.body)).problem(t, http.StatusUnprocessableEntity)
				p.wantType(t, "/validation")
				if got := p.fields(); !slices.Equal(got, tt.wantFields) {
					t.Errorf("got errors naming %v, want %v", got, tt.wantFields)
				}
			})
		}
		if got := s.do(t, http.MethodGet, "/books?genre=invalid", "").page(t); len(got.Items) != 0 {
			t.Errorf("got %d books created by invalid requests, want 0", len(got.Items))
		}
	})
}

func TestBookBodiesOverTheLimitAnswer413(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		target := s.create(t, fields("body-limit"))
		big := mustJSON(t, fields("body-limit", "title", strings.Repeat("a", httpserver.MaxBodyBytes)))
		for _, tt := range []struct {
			method, path string
			chunked      bool
			header       []string
		}{
			{http.MethodPost, "/books", false, nil},
			{http.MethodPost, "/books", true, nil},
			{http.MethodPost, "/books", true, []string{idempotency.Header, "big-" + id.New()}},
			{http.MethodPut, "/books/" + target.ID, false, nil},
			{http.MethodPut, "/books/" + target.ID, true, nil},
			{http.MethodPatch, "/books/" + target.ID, true, nil},
		} {
			t.Run(fmt.Sprintf("%s %s chunked=%v key=%v", tt.method, tt.path, tt.chunked, tt.header != nil), func(t *testing.T) {
				var body io.Reader = strings.NewReader(big)
				if tt.chunked {
					body = io.MultiReader(body) // hides the length
				}
				req := httptest.NewRequest(tt.method, tt.path, body)
				req.Header.Set("Content-Type", "application/json")
				if tt.chunked {
					req.ContentLength, req.TransferEncoding = -1, []string{"chunked"}
				} else if req.ContentLength != int64(len(big)) {
					t.Fatalf("got Content-Length %d, want %d", req.ContentLength, len(big))
				}
				s.serve(t, req, tt.header...).problem(t, http.StatusRequestEntityTooLarge).wantType(t, "/payload-too-large")
			})
		}

		// A body of exactly 1 MiB is still read.
		exact := mustJSON(t, fields("body-limit"))
		exact += strings.Repeat(" ", httpserver.MaxBodyBytes-len(exact))
		for _, chunked := range []bool{false, true} {
			var body io.Reader = strings.NewReader(exact)
			if chunked {
				body = io.MultiReader(body)
			}
			req := httptest.NewRequest(http.MethodPost, "/books", body)
			req.Header.Set("Content-Type", "application/json")
			if resp := s.serve(t, req); resp.Status != http.StatusCreated {
				t.Errorf("1 MiB body, chunked=%v: got %d %s, want 201", chunked, resp.Status, resp.Body)
			}
		}
		if diff := sameBook(s.get(t, target.ID), target); diff != "" {
			t.Errorf("the book changed: %s", diff)
		}
	})
}
