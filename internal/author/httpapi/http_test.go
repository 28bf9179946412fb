package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"folio/internal/author"
	"folio/internal/author/httpapi"
	"folio/internal/author/sqlstore"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

func TestCreateValidation(t *testing.T) {
	s := newOfflineServer(t)
	year := time.Now().Year()
	long := func(r string, n int) string { return strings.Repeat(r, n) }
	tests := []struct {
		name       string
		body       string
		wantFields []string // nil: created
		check      func(t *testing.T, a author.Author)
	}{
		{"name only", `{"name":"Ada"}`, nil, func(t *testing.T, a author.Author) {
			if a.Name != "Ada" || a.Bio != nil || a.BirthYear != nil {
				t.Errorf("got %+v, want name Ada, no bio, no birth year", a)
			}
		}},
		{"name missing", `{"bio":"x"}`, []string{"name"}, nil},
		{"name null", `{"name":null}`, []string{"name"}, nil},
		{"name empty", `{"name":""}`, []string{"name"}, nil},
		{"name blank", `{"name":" \t\n "}`, []string{"name"}, nil},
		{"name trimmed", `{"name":"  Ada Lovelace \n"}`, nil, func(t *testing.T, a author.Author) {
			if a.Name != "Ada Lovelace" {
				t.Errorf("got name %q, want %q", a.Name, "Ada Lovelace")
			}
		}},
		{"name 200 characters", `{"name":"` + long("a", 200) + `"}`, nil, nil},
		{"name 200 multi-byte characters", `{"name":"` + long("é", 200) + `"}`, nil, nil},
		{"name 201 characters", `{"name":"` + long("a", 201) + `"}`, []string{"name"}, nil},
		{"name 200 characters after trimming", `{"name":"  ` + long("a", 200) + `  "}`, nil, nil},
		{"name with NUL", `{"name":"a\u0000b"}`, []string{"name"}, nil},
		{"bio", `{"name":"A","bio":"  Wrote things.  "}`, nil, func(t *testing.T, a author.Author) {
			if a.Bio == nil || *a.Bio != "Wrote things." {
				t.Errorf("got bio %v, want %q", a.Bio, "Wrote things.")
			}
		}},
		{"bio blank is null", `{"name":"A","bio":"   "}`, nil, func(t *testing.T, a author.Author) {
			if a.Bio != nil {
				t.Errorf("got bio %q, want null", *a.Bio)
			}
		}},
		{"bio null", `{"name":"A","bio":null}`, nil, nil},
		{"bio 5000 characters", `{"name":"A","bio":"` + long("ü", 5000) + `"}`, nil, nil},
		{"bio 5001 characters", `{"name":"A","bio":"` + long("b", 5001) + `"}`, []string{"bio"}, nil},
		{"bio with NUL", `{"name":"A","bio":"\u0000"}`, []string{"bio"}, nil},
		{"birth year lowest", `{"name":"A","birth_year":-3000}`, nil, func(t *testing.T, a author.Author) {
			if a.BirthYear == nil || *a.BirthYear != -3000 {
				t.Errorf("got birth year %v, want -3000", a.BirthYear)
			}
		}},
		{"birth year too low", `{"name":"A","birth_year":-3001}`, []string{"birth_year"}, nil},
		{"birth year this year", fmt.Sprintf(`{"name":"A","birth_year":%d}`, year), nil, nil},
		{"birth year next year", fmt.Sprintf(`{"name":"A","birth_year":%d}`, year+1), []string{"birth_year"}, nil},
		{"birth year null", `{"name":"A","birth_year":null}`, nil, nil},
		{"every field broken", `{"name":"","bio":"` + long("b", 5001) + `","birth_year":99999}`, []string{"name", "bio", "birth_year"}, nil},
		{"read-only fields ignored", `{"name":"A","id":"x","version":99,"created_at":"1999-01-01T00:00:00Z","updated_at":5,"book_count":12}`, nil,
			func(t *testing.T, a author.Author) {
				if !id.Valid(a.ID) || a.Version != 1 || time.Since(a.CreatedAt) > time.Hour || !a.UpdatedAt.Equal(a.CreatedAt) {
					t.Errorf("got %+v, want server-assigned id, version 1 and timestamps", a)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := s.do("POST", "/authors", tt.body)
			if tt.wantFields != nil {
				p := wantProblem(t, rec, http.StatusUnprocessableEntity, problem.TypeValidation, tt.wantFields...)
				if len(p.Errors) != len(tt.wantFields) {
					t.Errorf("got errors %+v, want exactly %v", p.Errors, tt.wantFields)
				}
				return
			}
			if rec.Code != http.StatusCreated {
				t.Fatalf("got status %d, want 201: %s", rec.Code, rec.Body)
			}
			a := decode[author.Author](t, rec)
			if loc := rec.Header().Get("Location"); loc != "/authors/"+a.ID {
				t.Errorf("got Location %q, want /authors/%s", loc, a.ID)
			}
			if etag := rec.Header().Get("ETag"); etag != `"1"` {
				t.Errorf("got ETag %q, want %q", etag, `"1"`)
			}
			if tt.check != nil {
				tt.check(t, a)
			}
			get := s.do("GET", "/authors/"+a.ID, "")
			if stored := decode[author.Author](t, get); !sameAuthor(stored, a) {
				t.Errorf("stored %+v, want what POST answered %+v", stored, a)
			}
		})
	}
}

func TestMalformedBodies(t *testing.T) {
	s := newOfflineServer(t)
	a := s.create(`{"name":"A"}`)
	tests := []struct {
		name  string
		body  string
		field string // named in errors when not ""
	}{
		{"not JSON", `{"name":`, ""},
		{"garbage", `hello`, ""},
		{"empty", ``, ""},
		{"array", `[{"name":"A"}]`, ""},
		{"string", `"A"`, ""},
		{"two values", `{"name":"A"}{"name":"B"}`, ""},
		{"unknown field", `{"name":"A","nationality":"x"}`, "nationality"},
		{"name not a string", `{"name":5}`, "name"},
		{"bio not a string", `{"name":"A","bio":["x"]}`, "bio"},
		{"birth year a string", `{"name":"A","birth_year":"1900"}`, "birth_year"},
		{"birth year a fraction", `{"name":"A","birth_year":1900.5}`, "birth_year"},
		{"birth year too big for an int", `{"name":"A","birth_year":1e30}`, "birth_year"},
	}
	for _, tt := range tests {
		for _, method := range []string{"POST", "PUT"} {
			t.Run(method+" "+tt.name, func(t *testing.T) {
				path := "/authors"
				if method == "PUT" {
					path += "/" + a.ID
				}
				var fields []string
				if tt.field != "" {
					fields = []string{tt.field}
				}
				wantProblem(t, s.do(method, path, tt.body), http.StatusBadRequest, problem.TypeMalformed, fields...)
			})
		}
	}
	patches := []struct{ name, body string }{
		{"not JSON", `{"name":`},
		{"empty", ``},
		{"unknown field", `{"nationality":"x"}`},
		{"wrong type", `{"birth_year":"1900"}`},
		{"array", `["name"]`},
	}
	for _, tt := range patches {
		t.Run("PATCH "+tt.name, func(t *testing.T) {
			wantProblem(t, s.do("PATCH", "/authors/"+a.ID, tt.body), http.StatusBadRequest, problem.TypeMalformed)
		})
	}
	if got := decode[author.Author](t, s.do("GET", "/authors/"+a.ID, "")); got.Version != 1 {
		t.Errorf("a malformed request changed the author: version %d, want 1", got.Version)
	}
}

func TestBodyTooLarge(t *testing.T) {
	s := newOfflineServer(t)
	a := s.create(`{"name":"A"}`)
	big := `{"name":"A","bio":"` + strings.Repeat("x", 1<<20) + `"}`
	for _, method := range []string{"POST", "PUT", "PATCH"} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s chunked=%v", method, chunked), func(t *testing.T) {
				path := "/authors"
				if method != "POST" {
					path += "/" + a.ID
				}
				req := httptest.NewRequest(method, path, strings.NewReader(big))
				req.Header.Set("Content-Type", "application/json")
				if chunked {
					req.ContentLength = -1 // the size is known only by reading
				}
				rec := httptest.NewRecorder()
				s.h.ServeHTTP(rec, req)
				wantProblem(t, rec, http.StatusRequestEntityTooLarge, problem.TypeTooLarge)
			})
		}
	}
	t.Run("with an Idempotency-Key", func(t *testing.T) {
		req := httptest.NewRequest("POST", "/authors", strings.NewReader(big))
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = -1
		req.Header.Set(idempotency.Header, "big")
		rec := httptest.NewRecorder()
		s.h.ServeHTTP(rec, req)
		wantProblem(t, rec, http.StatusRequestEntityTooLarge, problem.TypeTooLarge)
	})
}

func TestInvalidIDs(t *testing.T) {
	s := newOfflineServer(t)
	a := s.create(`{"name":"A"}`)
	for _, id := range []string{"nope", "42", strings.ToUpper(a.ID), a.ID + "0", id.New(), "%00", "books"} {
		for _, method := range []string{"GET", "PUT", "PATCH", "DELETE"} {
			t.Run(method+" "+id, func(t *testing.T) {
				body := ""
				if method == "PUT" || method == "PATCH" {
					body = `{"name":"B"}`
				}
				if id == "books" && method == "GET" {
					return // GET /authors/books is the genre grouping, tested on its own
				}
				wantProblem(t, s.do(method, "/authors/"+id, body), http.StatusNotFound, problem.TypeNotFound)
			})
		}
		t.Run("books of "+id, func(t *testing.T) {
			wantProblem(t, s.do("GET", "/authors/"+id+"/books", ""), http.StatusNotFound, problem.TypeNotFound)
		})
	}
}

func TestListQueryErrors(t *testing.T) {
	s := newOfflineServer(t)
	a := s.create(`{"name":"A"}`)
	tests := []struct{ query, field string }{
		{"limit=0", "limit"},
		{"limit=101", "limit"},
		{"limit=-1", "limit"},
		{"limit=ten", "limit"},
		{"limit=", "limit"},
		{"limit=1.5", "limit"},
		{"cursor=", "cursor"},
	}
	for _, tt := range tests {
		for _, path := range []string{"/authors", "/authors/" + a.ID + "/books"} {
			t.Run(path+"?"+tt.query, func(t *testing.T) {
				wantProblem(t, s.do("GET", path+"?"+tt.query, ""), http.StatusBadRequest, problem.TypeMalformed, tt.field)
			})
		}
	}
	for _, cursor := range []string{"nope", rest.Cursor("not-an-id"), "YzE6"} {
		t.Run("/authors?cursor="+cursor, func(t *testing.T) {
			wantProblem(t, s.do("GET", "/authors?cursor="+cursor, ""), http.StatusBadRequest, problem.TypeMalformed, "cursor")
		})
	}
	t.Run("bad genre filter", func(t *testing.T) {
		wantProblem(t, s.do("GET", "/authors/"+a.ID+"/books?genre=Not+A+Slug", ""), http.StatusBadRequest, problem.TypeMalformed, "genre")
	})
}

func TestPagingWalk(t *testing.T) {
	s := newOfflineServer(t)
	empty := decode[rest.Page[author.Author]](t, s.do("GET", "/authors", ""))
	if empty.Items == nil || len(empty.Items) != 0 || empty.NextCursor != nil {
		t.Errorf("empty list: got %+v, want items [] and next_cursor null", empty)
	}
	var want []string
	for i := range 23 {
		want = append(want, s.create(fmt.Sprintf(`{"name":"Author %d"}`, i)).ID)
	}
	slices.Sort(want)
	for _, limit := range []int{1, 7, 22, 23, 100} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			var got []string
			path := "/authors?limit=" + strconv.Itoa(limit)
			for pages := 0; ; pages++ {
				if pages > len(want) {
					t.Fatal("the walk does not end")
				}
				rec := s.do("GET", path, "")
				if rec.Code != http.StatusOK {
					t.Fatalf("GET %s: got status %d: %s", path, rec.Code, rec.Body)
				}
				page := decode[rest.Page[author.Author]](t, rec)
				if len(page.Items) > limit {
					t.Fatalf("got %d items, want at most %d", len(page.Items), limit)
				}
				got = append(got, idsOf(page.Items)...)
				if page.NextCursor == nil {
					break
				}
				path = "/authors?limit=" + strconv.Itoa(limit) + "&cursor=" + *page.NextCursor
			}
			if !slices.Equal(got, want) {
				t.Errorf("walk got %v, want every author once in id order %v", got, want)
			}
		})
	}
	t.Run("default limit", func(t *testing.T) {
		page := decode[rest.Page[author.Author]](t, s.do("GET", "/authors", ""))
		if len(page.Items) != 20 || page.NextCursor == nil {
			t.Errorf("got %d items and cursor %v, want 20 and a cursor", len(page.Items), page.NextCursor)
		}
	})
}

// TestLifecycle runs a create, read, change and delete cycle on every database engine.
func TestLifecycle(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		s := newServer(t, db, booksAt(closedURL(t)))
		a := s.create(`{"name":"Octavia Butler","bio":"Writer.","birth_year":1947}`)
		path := "/authors/" + a.ID

		rec := s.do("GET", path, "")
		if rec.Code != http.StatusOK || rec.Header().Get("ETag") != `"1"` {
			t.Fatalf("GET: got %d ETag %q, want 200 %q", rec.Code, rec.Header().Get("ETag"), `"1"`)
		}
		for _, inm := range []string{`"1"`, `W/"1"`, `"7", "1"`, `*`} {
			rec = s.do("GET", path, "", "If-None-Match", inm)
			if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 || rec.Header().Get("ETag") != `"1"` {
				t.Errorf("GET If-None-Match %s: got %d ETag %q body %q, want 304 with the ETag and no body", inm, rec.Code, rec.Header().Get("ETag"), rec.Body)
			}
		}
		if rec = s.do("GET", path, "", "If-None-Match", `"2"`); rec.Code != http.StatusOK {
			t.Errorf("GET If-None-Match another version: got %d, want 200", rec.Code)
		}

		// PUT replaces every writable field: the ones left out are cleared.
		wantProblem(t, s.do("PUT", path, `{"name":"X"}`, "If-Match", `"2"`), http.StatusPreconditionFailed, problem.TypePreconditionFailed)
		wantProblem(t, s.do("PUT", path, `{"name":"X"}`, "If-Match", `W/"1"`), http.StatusPreconditionFailed, problem.TypePreconditionFailed)
		rec = s.do("PUT", path, `{"name":" Octavia E. Butler "}`, "If-Match", `"1"`)
		if rec.Code != http.StatusOK || rec.Header().Get("ETag") != `"2"` {
			t.Fatalf("PUT: got %d ETag %q: %s", rec.Code, rec.Header().Get("ETag"), rec.Body)
		}
		put := decode[author.Author](t, rec)
		if put.Name != "Octavia E. Butler" || put.Bio != nil || put.BirthYear != nil || put.Version != 2 ||
			!put.CreatedAt.Equal(a.CreatedAt) || put.UpdatedAt.Before(a.UpdatedAt) {
			t.Errorf("PUT: got %+v", put)
		}

		// A client can PUT back what it read.
		got := s.do("GET", path, "").Body.Bytes()
		rec = s.do("PUT", path, string(got))
		if rec.Code != http.StatusOK || decode[author.Author](t, rec).Version != 3 {
			t.Errorf("PUT of what GET answered: got %d %s, want 200 at version 3", rec.Code, rec.Body)
		}
		wantProblem(t, s.do("PUT", path, `{"name":""}`), http.StatusUnprocessableEntity, problem.TypeValidation, "name")

		// PATCH merges.
		wantProblem(t, s.do("PATCH", path, `{"bio":"x"}`, "If-Match", `"1"`), http.StatusPreconditionFailed, problem.TypePreconditionFailed)
		rec = s.do("PATCH", path, `{"bio":"  Wrote Kindred. ","birth_year":1947,"book_count":4,"version":1}`, "If-Match", `"3"`)
		if rec.Code != http.StatusOK || rec.Header().Get("ETag") != `"4"` {
			t.Fatalf("PATCH: got %d ETag %q: %s", rec.Code, rec.Header().Get("ETag"), rec.Body)
		}
		patched := decode[author.Author](t, rec)
		if patched.Name != "Octavia E. Butler" || patched.Bio == nil || *patched.Bio != "Wrote Kindred." ||
			patched.BirthYear == nil || *patched.BirthYear != 1947 || patched.Version != 4 {
			t.Errorf("PATCH: got %+v", patched)
		}
		rec = s.do("PATCH", path, `{"bio":null}`)
		if p := decode[author.Author](t, rec); p.Bio != nil || p.BirthYear == nil || p.Version != 5 {
			t.Errorf("PATCH bio null: got %+v, want bio cleared and the rest kept", p)
		}
		wantProblem(t, s.do("PATCH", path, `{"name":null}`), http.StatusUnprocessableEntity, problem.TypeValidation, "name")
		wantProblem(t, s.do("PATCH", path, `{"birth_year":-5000}`), http.StatusUnprocessableEntity, problem.TypeValidation, "birth_year")
		if v := decode[author.Author](t, s.do("GET", path, "")).Version; v != 5 {
			t.Errorf("rejected changes moved the version to %d, want 5", v)
		}

		// DELETE.
		wantProblem(t, s.do("DELETE", path, "", "If-Match", `"4"`), http.StatusPreconditionFailed, problem.TypePreconditionFailed)
		if rec = s.do("DELETE", path, "", "If-Match", `"5"`); rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
			t.Fatalf("DELETE: got %d %s, want 204 and no body", rec.Code, rec.Body)
		}
		wantProblem(t, s.do("GET", path, ""), http.StatusNotFound, problem.TypeNotFound)
		wantProblem(t, s.do("DELETE", path, ""), http.StatusNotFound, problem.TypeNotFound)
		wantProblem(t, s.do("PATCH", path, `{}`), http.StatusNotFound, problem.TypeNotFound)
	})
}

func TestConcurrentPatchesAllApply(t *testing.T) {
	s := newOfflineServer(t)
	a := s.create(`{"name":"A"}`)
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			codes[i] = s.do("PATCH", "/authors/"+a.ID, fmt.Sprintf(`{"birth_year":%d}`, 1900+i)).Code
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("PATCH %d: got status %d, want 200", i, c)
		}
	}
	if v := decode[author.Author](t, s.do("GET", "/authors/"+a.ID, "")).Version; v != n+1 {
		t.Errorf("got version %d, want %d: an update was lost", v, n+1)
	}
}

func TestIdempotentCreate(t *testing.T) {
	s := newOfflineServer(t)
	body := `{"name":"Ada"}`
	first := s.do("POST", "/authors", body, idempotency.Header, "key-1")
	if first.Code != http.StatusCreated {
		t.Fatalf("first POST: got %d: %s", first.Code, first.Body)
	}
	again := s.do("POST", "/authors", body, idempotency.Header, "key-1")
	if again.Code != http.StatusCreated {
		t.Fatalf("repeated POST: got %d: %s, want 201", again.Code, again.Body)
	}
	a, b := decode[author.Author](t, first), decode[author.Author](t, again)
	if a.ID != b.ID || again.Header().Get("Location") != first.Header().Get("Location") || again.Header().Get("ETag") != `"1"` {
		t.Errorf("repeat answered %+v (Location %q), want the first answer %+v", b, again.Header().Get("Location"), a)
	}
	wantProblem(t, s.do("POST", "/authors", `{"name":"Grace"}`, idempotency.Header, "key-1"),
		http.StatusUnprocessableEntity, problem.TypeValidation, idempotency.Header)

	other := s.do("POST", "/authors", body, idempotency.Header, "key-2")
	if other.Code != http.StatusCreated || decode[author.Author](t, other).ID == a.ID {
		t.Errorf("another key: got %d %s, want a new author", other.Code, other.Body)
	}
	wantProblem(t, s.do("POST", "/authors", body, idempotency.Header, strings.Repeat("k", 201)), http.StatusBadRequest, problem.TypeMalformed)

	// A rejected request does not use the key up.
	wantProblem(t, s.do("POST", "/authors", `{"name":""}`, idempotency.Header, "key-3"), http.StatusUnprocessableEntity, problem.TypeValidation, "name")
	if rec := s.do("POST", "/authors", body, idempotency.Header, "key-3"); rec.Code != http.StatusCreated {
		t.Errorf("fixed request with the same key: got %d %s, want 201", rec.Code, rec.Body)
	}

	page := decode[rest.Page[author.Author]](t, s.do("GET", "/authors", ""))
	if len(page.Items) != 3 {
		t.Errorf("got %d authors, want 3", len(page.Items))
	}
}

func TestOperationalEndpoints(t *testing.T) {
	s := newOfflineServer(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		if rec := s.do("GET", path, ""); rec.Code != http.StatusOK {
			t.Errorf("GET %s: got %d, want 200", path, rec.Code)
		}
	}
	// The metrics have a listener of their own, off the public port.
	if rec := s.do("GET", "/metrics", ""); rec.Code != http.StatusNotFound {
		t.Errorf("GET /metrics: got %d, want 404", rec.Code)
	}
	rec := s.do("GET", "/openapi.json", "")
	var doc map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &doc) != nil || doc["openapi"] != "3.1.0" {
		t.Errorf("GET /openapi.json: got %d, want the OpenAPI 3.1 document", rec.Code)
	}
	if !bytes.Equal(rec.Body.Bytes(), httpapi.OpenAPI) {
		t.Error("GET /openapi.json does not serve httpapi.OpenAPI")
	}
}
