package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"folio/internal/author"
	"folio/internal/platform/problem"
)

// FuzzAuthorDecode sends arbitrary bodies to POST /authors and PATCH /authors/{id}
// through the whole chassis: no body may get a 5xx, an error must be a problem
// document, and what is created must keep the rules.
func FuzzAuthorDecode(f *testing.F) {
	seeds := []string{
		`{"name":"Ada"}`,
		`{"name":"  Ada  ","bio":"  x ","birth_year":1815}`,
		`{"name":"A","bio":null,"birth_year":null,"id":"x","version":3,"book_count":2,"created_at":1,"updated_at":{}}`,
		`{"name":""}`,
		`{"name":"a\u0000"}`,
		`{"name":"` + strings.Repeat("n", 201) + `"}`,
		`{"name":"A","birth_year":-3001}`,
		`{"name":"A","birth_year":1e400}`,
		`{"name":"A","birth_year":-0}`,
		`{"name":5}`,
		`{"name":"A","extra":true}`,
		`{"name":"A"} trailing`,
		`[]`, `null`, `""`, `0`, `{`, ``, "\xff\xfe", `{"name":"\ud800"}`, `{"name":"A","name":"B"}`,
		`{"bio":null}`, `{"name":null}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	srv := newServer(f, openSQLite(f), booksAt(closedURL(f)))
	req := httptest.NewRequest("POST", "/authors", strings.NewReader(`{"name":"Patched"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.h.ServeHTTP(rec, req)
	var patched author.Author
	if err := json.Unmarshal(rec.Body.Bytes(), &patched); err != nil || rec.Code != http.StatusCreated {
		f.Fatalf("create the author to patch: %d %s", rec.Code, rec.Body)
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		for _, target := range []struct{ method, path string }{{"POST", "/authors"}, {"PATCH", "/authors/" + patched.ID}} {
			req := httptest.NewRequest(target.method, target.path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			srv.h.ServeHTTP(rec, req)
			switch {
			case rec.Code >= 500:
				t.Fatalf("%s %s %q: got status %d: %s", target.method, target.path, body, rec.Code, rec.Body)
			case rec.Code == http.StatusCreated || rec.Code == http.StatusOK:
				var a author.Author
				if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
					t.Fatalf("%s %q: answer is not an author: %v", target.method, body, err)
				}
				if n := utf8.RuneCountInString(a.Name); n == 0 || n > author.MaxName || strings.TrimSpace(a.Name) != a.Name {
					t.Errorf("%s %q: stored a name that breaks the rules: %q", target.method, body, a.Name)
				}
				if a.Bio != nil && (*a.Bio == "" || utf8.RuneCountInString(*a.Bio) > author.MaxBio || strings.TrimSpace(*a.Bio) != *a.Bio) {
					t.Errorf("%s %q: stored a bio that breaks the rules: %q", target.method, body, *a.Bio)
				}
				if a.BirthYear != nil && *a.BirthYear < author.MinYear {
					t.Errorf("%s %q: stored birth year %d", target.method, body, *a.BirthYear)
				}
			default:
				if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
					t.Errorf("%s %q: got %d with Content-Type %q, want a problem document", target.method, body, rec.Code, ct)
				}
			}
		}
	})
}
