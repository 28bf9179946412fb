package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/book"
	"folio/internal/book/booktest"
	"folio/internal/book/httpapi"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/fault"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/logging"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// Authors the fake author service knows, and one it does not.
const (
	authorA      = booktest.AuthorA
	authorB      = booktest.AuthorB
	absentAuthor = booktest.AbsentAuthor
)

var (
	sameBook = booktest.SameBook
	ids      = booktest.IDs
)

func ptr[T any](v T) *T { return &v }

// server is the book service wired as cmd/book does, over db, with a fake author
// service, verifying the tokens of a test issuer.
type server struct {
	h       http.Handler
	mux     *http.ServeMux
	authors *booktest.Authors
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

// forEachServer runs suite on a new server over each SQL engine.
func forEachServer(t *testing.T, suite func(t *testing.T, s *server)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		suite(t, newServer(t, db))
	})
}

func newServerLogging(tb testing.TB, db *sqldb.DB, w io.Writer) *server {
	tb.Helper()
	log := logging.New(w, "book", "json", "info")
	outboxtest.Migrate(tb, db)
	authors := booktest.NewAuthors(authorA, authorB)
	store := sqlstore.New(outbox.NewWriter(db, nil))
	svc := book.NewService(store, book.NewAuthorDirectory(store, authors, log))
	keys := idempotency.New(db, log)
	iss := authntest.New(tb)
	reg := metrics.NewRegistry()
	verifier := authn.NewVerifier(authn.Config{JWKSURL: iss.JWKSURL()}, http.DefaultClient, log, reg)
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, keys, verifier)
	srv := httpserver.New(httpserver.Config{AccessLog: true}, log, reg, mux, httpapi.OpenAPI, db.PingContext)
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
	resp, err := s.answer(req, header...)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

// try is do for a goroutine other than the test's: it returns what goes wrong
// instead of failing the test.
func (s *server) try(method, target, body string, header ...string) (response, error) {
	if body != "" && method == http.MethodPatch {
		header = append([]string{"Content-Type", "application/merge-patch+json"}, header...)
	}
	return s.answer(resttest.NewRequest(method, target, body, header...))
}

// answer serves req, as an editor unless it names its own Authorization; header
// holds name, value pairs set on it.
func (s *server) answer(req *http.Request, header ...string) (response, error) {
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
		return response{}, fmt.Errorf("%s %s: read the answer: %w", req.Method, req.URL, err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: b}, nil
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

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func show[T any](p *T) string { return booktest.Show(p) }
