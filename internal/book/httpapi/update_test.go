package httpapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"folio/internal/book"
	"folio/internal/platform/id"
)

func TestBookReplaceSetsEveryWritableField(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		b := s.create(t, fields("put-test", "isbn", testISBN(1), "published_year", 1999))
		resp := s.do(t, http.MethodPut, "/books/"+b.ID, mustJSON(t, map[string]any{
			"title": " Replaced ", "author_id": authorB, "genre": "put-done"}))
		if resp.Status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", resp.Status, resp.Body)
		}
		got := resp.book(t)
		want := book.Book{ID: b.ID, Title: "Replaced", AuthorID: authorB, Genre: "put-done", Version: 2,
			CreatedAt: b.CreatedAt, UpdatedAt: got.UpdatedAt}
		if diff := sameBook(got, want); diff != "" {
			t.Error(diff)
		}
		if got.UpdatedAt.Before(b.UpdatedAt) {
			t.Errorf("updated_at: got %v, want at least %v", got.UpdatedAt, b.UpdatedAt)
		}
		if et := resp.Header.Get("ETag"); et != `"2"` {
			t.Errorf(`ETag: got %q, want "2"`, et)
		}
		if diff := sameBook(s.get(t, b.ID), got); diff != "" {
			t.Errorf("get after put: %s", diff)
		}
	})
}

// TestBookReplaceIgnoresReadOnlyFields checks that a client can PUT back what it read, the read-only fields ignored whatever their values.
func TestBookReplaceIgnoresReadOnlyFields(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		b := s.create(t, fields("put-back", "isbn", testISBN(2), "published_year", 2001))
		read := s.do(t, http.MethodGet, "/books/"+b.ID, "")
		var doc map[string]any
		if err := json.Unmarshal(read.Body, &doc); err != nil {
			t.Fatal(err)
		}
		doc["title"] = "Changed"
		resp := s.do(t, http.MethodPut, "/books/"+b.ID, mustJSON(t, doc))
		if resp.Status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", resp.Status, resp.Body)
		}
		want := b
		want.Title, want.Version, want.UpdatedAt = "Changed", 2, resp.book(t).UpdatedAt
		if diff := sameBook(resp.book(t), want); diff != "" {
			t.Error(diff)
		}

		// Read-only fields with other values are ignored too.
		doc["id"], doc["version"], doc["created_at"], doc["updated_at"] = id.New(), 99, "yesterday", 7
		resp = s.do(t, http.MethodPut, "/books/"+b.ID, mustJSON(t, doc))
		if resp.Status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", resp.Status, resp.Body)
		}
		if got := resp.book(t); got.ID != b.ID || got.Version != 3 || !got.CreatedAt.Equal(b.CreatedAt) {
			t.Errorf("got id %s version %d created_at %v, want %s, 3, %v", got.ID, got.Version, got.CreatedAt, b.ID, b.CreatedAt)
		}
	})
}

func TestBookPatchMergesIntoTheBook(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		isbn := testISBN(3)
		tests := []struct {
			name       string
			patch      string
			want       int
			wantFields []string
			check      func(before, after book.Book) string
		}{
			{"set title", `{"title":" Patched "}`, 200, nil, func(b, a book.Book) string {
				b.Title = "Patched"
				return sameBook(a, b)
			}},
			{"set isbn", `{"isbn":"` + isbn + `"}`, 200, nil, func(b, a book.Book) string {
				b.ISBN = &isbn
				return sameBook(a, b)
			}},
			{"clear year with null", `{"published_year":null}`, 200, nil, func(b, a book.Book) string {
				b.PublishedYear = nil
				return sameBook(a, b)
			}},
			{"clear isbn with null", `{"isbn":null}`, 200, nil, func(b, a book.Book) string {
				b.ISBN = nil
				return sameBook(a, b)
			}},
			{"several fields", `{"genre":"patched","author_id":"` + authorB + `","published_year":-5}`, 200, nil, func(b, a book.Book) string {
				b.Genre, b.AuthorID, b.PublishedYear = "patched", authorB, ptr(-5)
				return sameBook(a, b)
			}},
			{"empty patch", `{}`, 200, nil, sameBook},
			{"read-only fields ignored", `{"id":"x","version":42,"created_at":null}`, 200, nil, sameBook},
			{"null title", `{"title":null}`, 422, []string{"title"}, nil},
			{"null author", `{"author_id":null}`, 422, []string{"author_id"}, nil},
			{"null genre", `{"genre":null}`, 422, []string{"genre"}, nil},
			{"broken value", `{"genre":"Not A Slug","published_year":99999}`, 422, []string{"genre", "published_year"}, nil},
			{"unknown author", `{"author_id":"` + absentAuthor + `"}`, 422, []string{"author_id"}, nil},
			{"unknown field", `{"subtitle":"x"}`, 400, []string{"subtitle"}, nil},
			{"wrong type", `{"published_year":"1999"}`, 400, []string{"published_year"}, nil},
			{"array", `[{"title":"x"}]`, 400, nil, nil},
			{"string", `"x"`, 400, nil, nil},
			{"number", `1`, 400, nil, nil},
			{"null", `null`, 400, nil, nil},
			{"not json", `{"title":`, 400, nil, nil},
			{"trailing garbage", `{"title":"x"} x`, 400, nil, nil},
			{"empty body", ``, 400, nil, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b := s.create(t, fields("patch-test", "published_year", 1999))
				resp := s.do(t, http.MethodPatch, "/books/"+b.ID, tt.patch)
				if tt.want != http.StatusOK {
					p := resp.problem(t, tt.want)
					if tt.wantFields != nil && !slices.Equal(p.fields(), tt.wantFields) {
						t.Errorf("got errors naming %v, want %v", p.fields(), tt.wantFields)
					}
					if diff := sameBook(s.get(t, b.ID), b); diff != "" {
						t.Errorf("a failed patch changed the book: %s", diff)
					}
					return
				}
				if resp.Status != http.StatusOK {
					t.Fatalf("got %d %s, want 200", resp.Status, resp.Body)
				}
				got := resp.book(t)
				if got.Version != 2 || got.UpdatedAt.Before(b.UpdatedAt) {
					t.Errorf("got version %d updated_at %v, want 2 and at least %v", got.Version, got.UpdatedAt, b.UpdatedAt)
				}
				if et := resp.Header.Get("ETag"); et != `"2"` {
					t.Errorf(`ETag: got %q, want "2"`, et)
				}
				b.Version, b.UpdatedAt = got.Version, got.UpdatedAt
				if diff := tt.check(b, got); diff != "" {
					t.Error(diff)
				}
				if diff := sameBook(s.get(t, b.ID), got); diff != "" {
					t.Errorf("get after patch: %s", diff)
				}
			})
		}
	})
}

func TestBookWritesCheckIfMatch(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		writes := []struct {
			method, body string
			success      int
		}{
			{http.MethodPut, mustJSON(t, fields("if-match-done")), http.StatusOK},
			{http.MethodPatch, `{"genre":"if-match-done"}`, http.StatusOK},
			{http.MethodDelete, "", http.StatusNoContent},
		}
		tests := []struct {
			ifMatch string
			ok      bool
		}{
			{`"1"`, true},
			{`*`, true},
			{`"5", "1"`, true},
			{`"2"`, false},
			{`W/"1"`, false}, // weak tags never match If-Match
			{`1`, false},
			{`"1"x`, false},
		}
		for _, w := range writes {
			for _, tt := range tests {
				t.Run(w.method+" "+tt.ifMatch, func(t *testing.T) {
					b := s.create(t, fields("if-match"))
					resp := s.do(t, w.method, "/books/"+b.ID, w.body, "If-Match", tt.ifMatch)
					if tt.ok {
						if resp.Status != w.success {
							t.Fatalf("got %d %s, want %d", resp.Status, resp.Body, w.success)
						}
						return
					}
					resp.problem(t, http.StatusPreconditionFailed).wantType(t, "/precondition-failed")
					if diff := sameBook(s.get(t, b.ID), b); diff != "" {
						t.Errorf("the book changed: %s", diff)
					}
				})
			}
		}
	})
}

func TestBookDeleteAnswers204ThenNotFound(t *testing.T) {
	forEachServer(t, func(t *testing.T, s *server) {
		b := s.create(t, fields("delete-test"))
		resp := s.do(t, http.MethodDelete, "/books/"+b.ID, "")
		if resp.Status != http.StatusNoContent || len(resp.Body) != 0 {
			t.Fatalf("got %d %q, want 204 without a body", resp.Status, resp.Body)
		}
		for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodPatch, http.MethodPut} {
			body := ""
			switch m {
			case http.MethodPatch:
				body = `{"title":"x"}`
			case http.MethodPut:
				body = mustJSON(t, fields("delete-test"))
			}
			s.do(t, m, "/books/"+b.ID, body).problem(t, http.StatusNotFound).wantType(t, "/not-found")
		}
	})
}
