package book_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/book"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/fault"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/logging"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
	"folio/internal/platform/rest/openapicheck"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// Authors the fake author service knows, and one it does not.
const (
	authorA      = "01890a5d-ac96-774b-bcce-b302099a8057"
	authorB      = "01890a5d-ac96-774b-bcce-b302099a8058"
	absentAuthor = "01890a5d-ac96-774b-bcce-b302099a8050"
)

// fakeAuthors stands in for the author service: it knows a set of ids, and can be
// switched to answering Unavailable as a resilient client does when the peer is down.
type fakeAuthors struct {
	mu   sync.Mutex
	ids  map[string]bool
	down bool
}

func (f *fakeAuthors) Exists(_ context.Context, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return false, fault.Wrap(fault.Unavailable, errors.New("dial tcp 10.0.0.7:8082: connection refused"),
			"the author service cannot confirm the author right now")
	}
	return f.ids[id], nil
}

func (f *fakeAuthors) add(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids[id] = true
}

func (f *fakeAuthors) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// server is the book service wired as cmd/book does, over db, with a fake author
// service, verifying the tokens of a test issuer.
type server struct {
	h       http.Handler
	mux     *http.ServeMux
	authors *fakeAuthors
	logs    *chassistest.LogBuffer // the service's log, written from concurrent requests
	iss     *authntest.Issuer
	// editor is the token a request carries unless it names its own Authorization
	// (an empty one sends none): most tests speak as an editor would.
	editor string
	// reg is what the metrics listener serves, off the public port.
	reg *prometheus.Registry
}

func newServer(tb testing.TB, db *sqldb.DB) *server {
	tb.Helper()
	logs := &chassistest.LogBuffer{}
	s := newServerLogging(tb, db, logs)
	s.logs = logs
	return s
}

func newServerLogging(tb testing.TB, db *sqldb.DB, w io.Writer) *server {
	tb.Helper()
	log := logging.New(w, "book", "json", "info")
	outboxtest.Migrate(tb, db)
	authors := &fakeAuthors{ids: map[string]bool{authorA: true, authorB: true}}
	store := book.NewSQLStore(db)
	svc := book.NewService(store, book.NewAuthorDirectory(store, authors, log))
	keys := idempotency.New(db, log)
	iss := authntest.New(tb)
	reg := metrics.NewRegistry()
	verifier := authn.NewVerifier(authn.Config{JWKSURL: iss.JWKSURL()}, http.DefaultClient, log, reg)
	mux := http.NewServeMux()
	book.Routes(mux, svc, keys, verifier, log)
	srv := httpserver.New(httpserver.Config{AccessLog: true}, log, reg, mux, book.OpenAPI, db.PingContext)
	return &server{h: srv.Handler(), mux: mux, authors: authors, iss: iss, editor: iss.Token("editor-1", authn.RoleEditor), reg: reg}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do serves one request; header holds name, value pairs. A PATCH body is a JSON
// merge patch.
func (s *server) do(tb testing.TB, method, target, body string, header ...string) response {
	tb.Helper()
	if body != "" && method == http.MethodPatch {
		header = append([]string{"Content-Type", "application/merge-patch+json"}, header...)
	}
	return s.serve(tb, resttest.NewRequest(method, target, body, header...))
}

func (s *server) serve(tb testing.TB, req *http.Request, header ...string) response {
	tb.Helper()
	if _, named := req.Header["Authorization"]; !named {
		req.Header.Set("Authorization", authntest.Bearer(s.editor))
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Del("Authorization")
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// fields returns the JSON body of a valid new book in genre, changed by edits (a nil
// value removes the field).
func fields(genre string, edits ...any) map[string]any {
	m := map[string]any{"title": "A Book", "author_id": authorA, "genre": genre}
	for i := 0; i+1 < len(edits); i += 2 {
		if edits[i+1] == nil {
			delete(m, edits[i].(string))
		} else {
			m[edits[i].(string)] = edits[i+1]
		}
	}
	return m
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func (s *server) create(tb testing.TB, m map[string]any, header ...string) book.Book {
	tb.Helper()
	resp := s.do(tb, http.MethodPost, "/books", mustJSON(tb, m), header...)
	if resp.Status != http.StatusCreated {
		tb.Fatalf("create %v: got %d %s, want 201", m, resp.Status, resp.Body)
	}
	return resp.book(tb)
}

func (s *server) get(tb testing.TB, id string) book.Book {
	tb.Helper()
	resp := s.do(tb, http.MethodGet, "/books/"+id, "")
	if resp.Status != http.StatusOK {
		tb.Fatalf("get %s: got %d %s, want 200", id, resp.Status, resp.Body)
	}
	return resp.book(tb)
}

func (r response) book(tb testing.TB) book.Book {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("got Content-Type %q, want application/json", ct)
	}
	var b book.Book
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		tb.Fatalf("decode book %s: %v", r.Body, err)
	}
	return b
}

type bookPage struct {
	Items      []book.Book `json:"items"`
	NextCursor *string     `json:"next_cursor"`
}

func (r response) page(tb testing.TB) bookPage {
	tb.Helper()
	if r.Status != http.StatusOK {
		tb.Fatalf("list: got %d %s, want 200", r.Status, r.Body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		tb.Fatalf("decode page %s: %v", r.Body, err)
	}
	if _, ok := raw["next_cursor"]; !ok || string(raw["items"]) == "null" || raw["items"] == nil {
		tb.Fatalf("got page %s, want items (an array) and next_cursor always present", r.Body)
	}
	var p bookPage
	if err := json.Unmarshal(r.Body, &p); err != nil {
		tb.Fatalf("decode page %s: %v", r.Body, err)
	}
	return p
}

// problemDoc is an RFC 9457 document as the services write it.
type problemDoc struct {
	Type     string              `json:"type"`
	Title    string              `json:"title"`
	Status   int                 `json:"status"`
	Detail   string              `json:"detail"`
	Instance string              `json:"instance"`
	Errors   *[]fault.FieldError `json:"errors"`
}

// problem checks that r is a problem+json answer with status want and returns it.
func (r response) problem(tb testing.TB, want int) problemDoc {
	tb.Helper()
	if r.Status != want {
		tb.Fatalf("got status %d %s, want %d", r.Status, r.Body, want)
	}
	if ct := r.Header.Get("Content-Type"); ct != problem.ContentType {
		tb.Fatalf("got Content-Type %q, want %q", ct, problem.ContentType)
	}
	var p problemDoc
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		tb.Fatalf("decode problem %s: %v", r.Body, err)
	}
	if p.Status != want || p.Title == "" || p.Type == "" {
		tb.Errorf("got problem %s, want status %d, a type and a title", r.Body, want)
	}
	if want == http.StatusUnprocessableEntity && p.Errors == nil {
		tb.Errorf("got 422 problem %s without errors, want errors always present", r.Body)
	}
	for _, leak := range []string{"goroutine", ".go:", "SQLSTATE", "sqlite", "INSERT", "SELECT", "10.0.0.7"} {
		if bytes.Contains(r.Body, []byte(leak)) {
			tb.Errorf("problem %s leaks %q", r.Body, leak)
		}
	}
	return p
}

// fields returns the names of the fields the problem's errors name, in order.
func (p problemDoc) fields() []string {
	if p.Errors == nil {
		return nil
	}
	var names []string
	for _, e := range *p.Errors {
		names = append(names, e.Field)
	}
	return names
}

func (p problemDoc) wantType(tb testing.TB, suffix string) {
	tb.Helper()
	if !strings.HasSuffix(p.Type, suffix) {
		tb.Errorf("got problem type %q, want one ending in %q", p.Type, suffix)
	}
}

// testISBN returns the n-th of a series of valid, distinct ISBN-13s.
func testISBN(n int) string {
	body := fmt.Sprintf("979%09d", n)
	sum := 0
	for i, c := range body {
		w := 1
		if i%2 == 1 {
			w = 3
		}
		sum += w * int(c-'0')
	}
	return body + strconv.Itoa((10-sum%10)%10)
}

func TestHTTP(t *testing.T) {
	sqldbtest.ForEach(t, book.Migrations, func(t *testing.T, db *sqldb.DB) {
		testHTTP(t, newServer(t, db))
	})
}

func testHTTP(t *testing.T, s *server) {
	t.Run("create", func(t *testing.T) {
		before := time.Now().UTC().Add(-time.Second)
		resp := s.do(t, http.MethodPost, "/books", `{"title":"  Dune \n","author_id":"`+authorA+
			`","genre":"science-fiction","isbn":"0-306-40615-2","published_year":1965}`)
		if resp.Status != http.StatusCreated {
			t.Fatalf("got %d %s, want 201", resp.Status, resp.Body)
		}
		b := resp.book(t)
		if !rest.ValidID(b.ID) {
			t.Errorf("got id %q, want a canonical UUID", b.ID)
		}
		if got, want := resp.Header.Get("Location"), "/books/"+b.ID; got != want {
			t.Errorf("Location: got %q, want %q", got, want)
		}
		if got := resp.Header.Get("ETag"); got != `"1"` {
			t.Errorf(`ETag: got %q, want "1"`, got)
		}
		want := book.Book{ID: b.ID, Title: "Dune", AuthorID: authorA, Genre: "science-fiction",
			ISBN: ptr("9780306406157"), PublishedYear: ptr(1965), Version: 1, CreatedAt: b.CreatedAt, UpdatedAt: b.CreatedAt}
		if diff := sameBook(b, want); diff != "" {
			t.Error(diff)
		}
		if b.CreatedAt.Before(before) || b.CreatedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("created_at: got %v, want about now", b.CreatedAt)
		}
		var raw map[string]any
		if err := json.Unmarshal(resp.Body, &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"created_at", "updated_at"} {
			v, _ := raw[k].(string)
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil || !strings.HasSuffix(v, "Z") {
				t.Errorf("%s: got %q, want an RFC 3339 UTC timestamp", k, v)
			}
		}
		if diff := sameBook(s.get(t, b.ID), b); diff != "" {
			t.Errorf("get after create: %s", diff)
		}

		// Optional fields left out are null, not missing.
		resp = s.do(t, http.MethodPost, "/books", mustJSON(t, fields("science-fiction")))
		if resp.Status != http.StatusCreated {
			t.Fatalf("got %d %s, want 201", resp.Status, resp.Body)
		}
		for _, k := range []string{`"isbn":null`, `"published_year":null`} {
			if !bytes.Contains(resp.Body, []byte(k)) {
				t.Errorf("got %s, want it to hold %s", resp.Body, k)
			}
		}
	})

	t.Run("get", func(t *testing.T) {
		b := s.create(t, fields("get-test"))
		resp := s.do(t, http.MethodGet, "/books/"+b.ID, "")
		if diff := sameBook(resp.book(t), b); resp.Status != http.StatusOK || diff != "" {
			t.Fatalf("got %d %s, want 200 and the book", resp.Status, diff)
		}
		if got := resp.Header.Get("ETag"); got != `"1"` {
			t.Errorf(`ETag: got %q, want "1"`, got)
		}

		tests := []struct {
			ifNoneMatch string
			want        int
		}{
			{`"1"`, http.StatusNotModified},
			{`W/"1"`, http.StatusNotModified},
			{`"7", "1"`, http.StatusNotModified},
			{`*`, http.StatusNotModified},
			{`"2"`, http.StatusOK},
			{`1`, http.StatusOK},
		}
		for _, tt := range tests {
			t.Run(tt.ifNoneMatch, func(t *testing.T) {
				resp := s.do(t, http.MethodGet, "/books/"+b.ID, "", "If-None-Match", tt.ifNoneMatch)
				if resp.Status != tt.want {
					t.Fatalf("got %d, want %d", resp.Status, tt.want)
				}
				if got := resp.Header.Get("ETag"); got != `"1"` {
					t.Errorf(`ETag: got %q, want "1"`, got)
				}
				if tt.want == http.StatusNotModified && len(resp.Body) != 0 {
					t.Errorf("got body %q with 304, want none", resp.Body)
				}
			})
		}
	})

	t.Run("put replaces every writable field", func(t *testing.T) {
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

	t.Run("put back what was read", func(t *testing.T) {
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
		doc["id"], doc["version"], doc["created_at"], doc["updated_at"] = rest.NewID(), 99, "yesterday", 7
		resp = s.do(t, http.MethodPut, "/books/"+b.ID, mustJSON(t, doc))
		if resp.Status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", resp.Status, resp.Body)
		}
		if got := resp.book(t); got.ID != b.ID || got.Version != 3 || !got.CreatedAt.Equal(b.CreatedAt) {
			t.Errorf("got id %s version %d created_at %v, want %s, 3, %v", got.ID, got.Version, got.CreatedAt, b.ID, b.CreatedAt)
		}
	})

	t.Run("patch", func(t *testing.T) {
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

	t.Run("if-match", func(t *testing.T) {
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

	t.Run("delete", func(t *testing.T) {
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

	t.Run("invalid ids", func(t *testing.T) {
		b := s.create(t, fields("invalid-ids"))
		ids := []string{"abc", strings.ToUpper(b.ID), url.PathEscape("../x"), url.PathEscape("{" + b.ID + "}"),
			b.ID + "0", b.ID[:35], "urn:uuid:" + b.ID, strings.ReplaceAll(b.ID, "-", ""), url.PathEscape(" " + b.ID),
			"%00", rest.NewID()}
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

	t.Run("malformed bodies", func(t *testing.T) {
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

	t.Run("invalid bodies", func(t *testing.T) {
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

	t.Run("body limit", func(t *testing.T) {
		target := s.create(t, fields("body-limit"))
		big := mustJSON(t, fields("body-limit", "title", strings.Repeat("a", httpserver.MaxBodyBytes)))
		for _, tt := range []struct {
			method, path string
			chunked      bool
			header       []string
		}{
			{http.MethodPost, "/books", false, nil},
			{http.MethodPost, "/books", true, nil},
			{http.MethodPost, "/books", true, []string{idempotency.Header, "big-" + rest.NewID()}},
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

	t.Run("duplicate isbn", func(t *testing.T) {
		isbn10 := "0-8044-2957-X"
		first := s.create(t, fields("dup-isbn", "isbn", isbn10))
		if first.ISBN == nil || *first.ISBN != "9780804429573" {
			t.Fatalf("got isbn %s, want 9780804429573", show(first.ISBN))
		}
		p := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("dup-isbn", "isbn", "978-0-8044-2957-3"))).problem(t, http.StatusConflict)
		p.wantType(t, "/conflict")
		if !slices.Equal(p.fields(), []string{"isbn"}) {
			t.Errorf("got errors naming %v, want [isbn]", p.fields())
		}
		other := s.create(t, fields("dup-isbn"))
		s.do(t, http.MethodPut, "/books/"+other.ID, mustJSON(t, fields("dup-isbn", "isbn", isbn10))).problem(t, http.StatusConflict)
		s.do(t, http.MethodPatch, "/books/"+other.ID, `{"isbn":"9780804429573"}`).problem(t, http.StatusConflict)
		// A book may keep its own ISBN.
		if resp := s.do(t, http.MethodPut, "/books/"+first.ID, mustJSON(t, fields("dup-isbn", "isbn", isbn10, "title", "Kept"))); resp.Status != http.StatusOK {
			t.Errorf("put keeping its own isbn: got %d %s, want 200", resp.Status, resp.Body)
		}
	})

	t.Run("author service unavailable", func(t *testing.T) {
		newAuthor := rest.NewID()
		s.authors.add(newAuthor)
		confirmed := s.create(t, fields("authors-down")) // authorA is confirmed now
		s.authors.setDown(true)
		defer s.authors.setDown(false)

		resp := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("authors-down", "author_id", newAuthor)))
		p := resp.problem(t, http.StatusServiceUnavailable)
		p.wantType(t, "/upstream-unavailable")
		if resp.Header.Get("Retry-After") == "" {
			t.Error("got no Retry-After with 503")
		}
		s.do(t, http.MethodPatch, "/books/"+confirmed.ID, `{"author_id":"`+newAuthor+`"}`).
			problem(t, http.StatusServiceUnavailable).wantType(t, "/upstream-unavailable")

		// An author confirmed before needs no call: books of it can still be written.
		s.create(t, fields("authors-down"))
		if resp := s.do(t, http.MethodPatch, "/books/"+confirmed.ID, `{"title":"Still writable"}`); resp.Status != http.StatusOK {
			t.Errorf("patch keeping a confirmed author: got %d %s, want 200", resp.Status, resp.Body)
		}

		s.authors.setDown(false)
		s.create(t, fields("authors-down", "author_id", newAuthor))
	})

	t.Run("list", func(t *testing.T) {
		t.Run("default limit", func(t *testing.T) {
			for range 25 {
				s.create(t, fields("limit-default"))
			}
			first := s.do(t, http.MethodGet, "/books?genre=limit-default", "").page(t)
			if len(first.Items) != 20 || first.NextCursor == nil {
				t.Fatalf("got %d items, next_cursor %v; want 20 and a cursor", len(first.Items), first.NextCursor)
			}
			second := s.do(t, http.MethodGet, "/books?genre=limit-default&cursor="+url.QueryEscape(*first.NextCursor), "").page(t)
			if len(second.Items) != 5 || second.NextCursor != nil {
				t.Errorf("got %d items, next_cursor %v; want 5 and null", len(second.Items), second.NextCursor)
			}
		})

		t.Run("limits", func(t *testing.T) {
			for _, tt := range []struct {
				limit string
				want  int // items wanted, or -1 for 400
			}{
				{"1", 1}, {"25", 25}, {"100", 25},
				{"0", -1}, {"101", -1}, {"-1", -1}, {"abc", -1}, {"", -1}, {"1.5", -1}, {"1e2", -1}, {" 5", -1},
			} {
				t.Run(tt.limit, func(t *testing.T) {
					resp := s.do(t, http.MethodGet, "/books?genre=limit-default&limit="+url.QueryEscape(tt.limit), "")
					if tt.want < 0 {
						p := resp.problem(t, http.StatusBadRequest)
						if !slices.Equal(p.fields(), []string{"limit"}) {
							t.Errorf("got errors naming %v, want [limit]", p.fields())
						}
						return
					}
					if got := len(resp.page(t).Items); got != tt.want {
						t.Errorf("got %d items, want %d", got, tt.want)
					}
				})
			}
		})

		t.Run("invalid cursor", func(t *testing.T) {
			for _, c := range []string{"", "abc", "!!!", base64.RawURLEncoding.EncodeToString([]byte("c1:not-an-id")),
				base64.RawURLEncoding.EncodeToString([]byte(rest.NewID())), base64.RawURLEncoding.EncodeToString([]byte("c2:" + rest.NewID())),
				base64.URLEncoding.EncodeToString([]byte("c1:" + rest.NewID() + "0"))} {
				t.Run(c, func(t *testing.T) {
					p := s.do(t, http.MethodGet, "/books?cursor="+url.QueryEscape(c), "").problem(t, http.StatusBadRequest)
					if !slices.Equal(p.fields(), []string{"cursor"}) {
						t.Errorf("got errors naming %v, want [cursor]", p.fields())
					}
				})
			}
		})

		t.Run("invalid filters", func(t *testing.T) {
			for _, tt := range []struct{ query, field string }{
				{"genre=Fantasy", "genre"}, {"genre=1984", "genre"}, {"author_id=abc", "author_id"},
				{"author_id=" + strings.ToUpper(authorA), "author_id"},
			} {
				p := s.do(t, http.MethodGet, "/books?"+tt.query, "").problem(t, http.StatusBadRequest)
				if !slices.Equal(p.fields(), []string{tt.field}) {
					t.Errorf("%s: got errors naming %v, want [%s]", tt.query, p.fields(), tt.field)
				}
			}
		})

		t.Run("empty", func(t *testing.T) {
			resp := s.do(t, http.MethodGet, "/books?genre=nobody-writes-this", "")
			if p := resp.page(t); len(p.Items) != 0 || p.NextCursor != nil {
				t.Errorf("got %s, want no items and a null cursor", resp.Body)
			}
			if !bytes.Contains(resp.Body, []byte(`"items":[]`)) {
				t.Errorf("got %s, want items as an empty array", resp.Body)
			}
		})

		t.Run("paging walk", func(t *testing.T) {
			var want []string
			for i := range 55 {
				author := authorA
				if i%2 == 1 {
					author = authorB
				}
				want = append(want, s.create(t, fields("paging-walk", "author_id", author)).ID)
			}
			slices.Sort(want)
			var got []string
			pages := 0
			next := "/books?genre=paging-walk&limit=7"
			for next != "" {
				if pages++; pages > 20 {
					t.Fatal("paging does not end")
				}
				p := s.do(t, http.MethodGet, next, "").page(t)
				if len(p.Items) > 7 {
					t.Fatalf("got %d items, want at most 7", len(p.Items))
				}
				got = append(got, ids(p.Items)...)
				next = ""
				if p.NextCursor != nil {
					next = "/books?genre=paging-walk&limit=7&cursor=" + url.QueryEscape(*p.NextCursor)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("walked %d ids %v,\nwant the %d created, each once, in id order: %v", len(got), got, len(want), want)
			}
			if pages != 8 {
				t.Errorf("got %d pages, want 8", pages)
			}
		})

		t.Run("filters", func(t *testing.T) {
			want := map[string][]string{}
			for i := range 12 {
				genre, author := "filter-a", authorA
				if i%2 == 1 {
					genre = "filter-b"
				}
				if i%3 == 0 {
					author = authorB
				}
				id := s.create(t, fields(genre, "author_id", author)).ID
				for _, k := range []string{"genre=" + genre, "genre=" + genre + "&author_id=" + author} {
					want[k] = append(want[k], id)
				}
			}
			want["genre=filter-b&author_id="+absentAuthor] = nil
			for query, w := range want {
				t.Run(query, func(t *testing.T) {
					got := s.do(t, http.MethodGet, "/books?limit=100&"+query, "").page(t)
					if !slices.Equal(ids(got.Items), w) {
						t.Errorf("got %v, want %v", ids(got.Items), w)
					}
				})
			}
			got := s.do(t, http.MethodGet, "/books?limit=100&author_id="+authorB, "").page(t)
			if len(got.Items) == 0 {
				t.Error("author filter alone: got no books")
			}
			for _, b := range got.Items {
				if b.AuthorID != authorB {
					t.Errorf("author filter alone: got a book of %s, want only %s", b.AuthorID, authorB)
				}
			}
		})
	})

	t.Run("idempotency", func(t *testing.T) {
		key := "create-" + rest.NewID()
		body := mustJSON(t, fields("idem-same"))
		first := s.do(t, http.MethodPost, "/books", body, idempotency.Header, key)
		if first.Status != http.StatusCreated {
			t.Fatalf("first: got %d %s, want 201", first.Status, first.Body)
		}
		b := first.book(t)
		for i := range 2 {
			again := s.do(t, http.MethodPost, "/books", body, idempotency.Header, key)
			if again.Status != http.StatusCreated {
				t.Fatalf("repeat %d: got %d %s, want 201", i+1, again.Status, again.Body)
			}
			if diff := sameBook(again.book(t), b); diff != "" {
				t.Errorf("repeat %d: %s", i+1, diff)
			}
			for _, h := range []string{"Location", "ETag"} {
				if again.Header.Get(h) != first.Header.Get(h) {
					t.Errorf("repeat %d: %s: got %q, want %q", i+1, h, again.Header.Get(h), first.Header.Get(h))
				}
			}
		}
		if got := s.do(t, http.MethodGet, "/books?genre=idem-same", "").page(t); !slices.Equal(ids(got.Items), []string{b.ID}) {
			t.Errorf("got books %v, want only %s", ids(got.Items), b.ID)
		}

		p := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("idem-same", "title", "Other")), idempotency.Header, key).
			problem(t, http.StatusUnprocessableEntity)
		if !slices.Equal(p.fields(), []string{idempotency.Header}) {
			t.Errorf("same key, other body: got errors naming %v, want [%s]", p.fields(), idempotency.Header)
		}

		// Without a key, or with another key, the same body creates another book.
		s.create(t, fields("idem-same"))
		s.create(t, fields("idem-same"), idempotency.Header, key+"-other")
		if got := s.do(t, http.MethodGet, "/books?genre=idem-same", "").page(t); len(got.Items) != 3 {
			t.Errorf("got %d books, want 3", len(got.Items))
		}

		t.Run("key length", func(t *testing.T) {
			p := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("idem-long")), idempotency.Header, strings.Repeat("k", 201)).
				problem(t, http.StatusBadRequest)
			if !slices.Equal(p.fields(), []string{idempotency.Header}) {
				t.Errorf("got errors naming %v, want [%s]", p.fields(), idempotency.Header)
			}
			s.create(t, fields("idem-long"), idempotency.Header, strings.Repeat("k", 200))
		})

		t.Run("key reusable after a failure", func(t *testing.T) {
			key := "retry-" + rest.NewID()
			s.do(t, http.MethodPost, "/books", mustJSON(t, fields("idem-retry", "title", nil)), idempotency.Header, key).
				problem(t, http.StatusUnprocessableEntity)
			b := s.create(t, fields("idem-retry"), idempotency.Header, key)
			again := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("idem-retry")), idempotency.Header, key)
			if again.Status != http.StatusCreated || again.book(t).ID != b.ID {
				t.Errorf("repeat of the fixed request: got %d %s, want 201 with id %s", again.Status, again.Body, b.ID)
			}
			if got := s.do(t, http.MethodGet, "/books?genre=idem-retry", "").page(t); len(got.Items) != 1 {
				t.Errorf("got %d books, want 1", len(got.Items))
			}
		})

		t.Run("key that is not text", func(t *testing.T) {
			resp := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("idem-binary")), idempotency.Header, "\xff\xfe")
			resp.problem(t, http.StatusBadRequest)
		})
	})

	t.Run("concurrency", func(t *testing.T) {
		// parallel sends n requests at once and returns the answers.
		parallel := func(n int, req func(i int) response) []response {
			out := make([]response, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { out[i] = req(i) })
			}
			wg.Wait()
			return out
		}
		const n = 8

		t.Run("no change is lost", func(t *testing.T) {
			b := s.create(t, fields("concurrent"))
			resps := parallel(n, func(i int) response {
				return s.do(t, http.MethodPatch, "/books/"+b.ID, fmt.Sprintf(`{"title":"T%d"}`, i))
			})
			versions := map[int]bool{}
			for _, r := range resps {
				if r.Status != http.StatusOK {
					t.Fatalf("got %d %s, want 200", r.Status, r.Body)
				}
				versions[r.book(t).Version] = true
			}
			if len(versions) != n {
				t.Errorf("got versions %v, want %d distinct ones", versions, n)
			}
			if got := s.get(t, b.ID).Version; got != n+1 {
				t.Errorf("final version: got %d, want %d", got, n+1)
			}
		})

		t.Run("one isbn, one book", func(t *testing.T) {
			isbn := testISBN(4)
			resps := parallel(n, func(i int) response {
				return s.do(t, http.MethodPost, "/books", mustJSON(t, fields("concurrent-isbn", "isbn", isbn)))
			})
			created := 0
			for _, r := range resps {
				switch r.Status {
				case http.StatusCreated:
					created++
				case http.StatusConflict:
					r.problem(t, http.StatusConflict)
				default:
					t.Errorf("got %d %s, want 201 or 409", r.Status, r.Body)
				}
			}
			if created != 1 {
				t.Errorf("got %d books created, want 1", created)
			}
		})

		t.Run("one key, one book", func(t *testing.T) {
			key := "concurrent-" + rest.NewID()
			body := mustJSON(t, fields("concurrent-key"))
			resps := parallel(n, func(i int) response {
				return s.do(t, http.MethodPost, "/books", body, idempotency.Header, key)
			})
			ids := map[string]bool{}
			for _, r := range resps {
				switch r.Status {
				case http.StatusCreated:
					ids[r.book(t).ID] = true
				case http.StatusConflict:
					r.problem(t, http.StatusConflict)
				default:
					t.Errorf("got %d %s, want 201 or 409", r.Status, r.Body)
				}
			}
			if len(ids) != 1 {
				t.Errorf("got ids %v in the answers, want exactly one", ids)
			}
			if got := s.do(t, http.MethodGet, "/books?genre=concurrent-key", "").page(t); len(got.Items) != 1 {
				t.Errorf("got %d books, want 1", len(got.Items))
			}
		})
	})

	t.Run("unknown route", func(t *testing.T) {
		for _, path := range []string{"/nope", "/books/", "/books/" + rest.NewID() + "/x", "/authors"} {
			s.do(t, http.MethodGet, path, "").problem(t, http.StatusNotFound).wantType(t, "/not-found")
		}
	})

	t.Run("wrong method", func(t *testing.T) {
		for _, tt := range []struct{ method, path string }{
			{http.MethodPost, "/books/" + rest.NewID()},
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

	t.Run("request id", func(t *testing.T) {
		sent := "req-" + rest.NewID()
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

	t.Run("operational endpoints", func(t *testing.T) {
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
		if resp.Status != http.StatusOK || !json.Valid(resp.Body) || !bytes.Equal(resp.Body, book.OpenAPI) {
			t.Errorf("/openapi.json: got %d and %d bytes, want 200 and the document", resp.Status, len(resp.Body))
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("/openapi.json: got Content-Type %q, want application/json", ct)
		}
	})
}

// logged reports whether a JSON log line with message "request" carries request id.
func logged(t *testing.T, logs, id string) bool {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec["msg"] == "request" && rec["request_id"] == id && rec["service"] == "book" {
			return true
		}
	}
	return false
}

// TestOpenAPIMatchesRoutes checks that openapi.json documents exactly the routes the
// service serves: each route of book.Routes (read from routes.go) is documented, and
// each documented operation reaches the route of the same method and path.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(book.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	documented := map[string]bool{} // "GET /books/{id}"
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}

	routes := openapicheck.RoutesIn(t, "routes.go")
	if len(routes) < 6 {
		t.Fatalf("found %d routes in routes.go, want at least 6: %v", len(routes), routes)
	}
	for _, r := range routes {
		if !documented[openAPIRoute(r)] {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}

	db := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "test.db"), book.Migrations)
	s := newServer(t, db)
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}
	for path := range doc.Paths {
		for _, m := range methods {
			req := httptest.NewRequest(m, strings.ReplaceAll(path, "{id}", rest.NewID()), nil)
			_, pattern := s.mux.Handler(req)
			want := m + " " + path
			switch {
			case documented[want] && pattern != want:
				t.Errorf("openapi.json documents %q, but the service routes it to %q", want, pattern)
			case !documented[want] && pattern != "" && !(m == "HEAD" && documented["GET "+path]):
				t.Errorf("the service serves %q (route %q), which openapi.json does not document", want, pattern)
			}
		}
	}
}

// openAPIRoute turns a ServeMux pattern ("GET /books/{id}", "GET /files/{path...}",
// "GET /{$}") into the OpenAPI form of the same route.
func openAPIRoute(pattern string) string {
	method, path, _ := strings.Cut(pattern, " ")
	path = strings.ReplaceAll(path, "{$}", "")
	path = strings.ReplaceAll(path, "...}", "}")
	return method + " " + path
}
