package author_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/author"
	"folio/internal/book"
	"folio/internal/bookclient"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/problem"
	"folio/internal/platform/resilient"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.DiscardHandler)

// openSQLite opens a new, migrated author database in a temporary directory. It takes
// a testing.TB so that fuzz targets can use it too.
func openSQLite(tb testing.TB) *sqldb.DB {
	tb.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(tb.TempDir(), "author.db"))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, author.Migrations); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	migratePlatform(tb, db)
	return db
}

// server is an author service in-process, with the chassis around its routes.
type server struct {
	tb testing.TB
	h  http.Handler
}

// newServer serves the author service over db, asking books for books.
func newServer(tb testing.TB, db *sqldb.DB, books author.Books) *server {
	tb.Helper()
	migratePlatform(tb, db)
	mux := http.NewServeMux()
	svc := author.NewService(author.NewSQLStore(db), books, 0)
	author.Routes(mux, svc, idempotency.New(db, quiet), quiet)
	srv := httpserver.New(httpserver.Config{}, quiet, prometheus.NewRegistry(), mux, author.OpenAPI, db.PingContext)
	return &server{tb: tb, h: srv.Handler()}
}

// booksAt returns a client of a book service at url, with the policies a deployed
// author service uses.
func booksAt(url string) *bookclient.Client {
	return bookclient.New(url, resilient.NewClient(resilient.DefaultConfig("book"), prometheus.NewRegistry()))
}

// closedURL returns the URL of a port nothing listens on.
func closedURL(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

// do serves one request; header holds name, value pairs.
func (s *server) do(method, path, body string, header ...string) *httptest.ResponseRecorder {
	s.tb.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return rec
}

// create posts body to /authors and returns the author, failing unless it is created.
func (s *server) create(body string) author.Author {
	s.tb.Helper()
	rec := s.do("POST", "/authors", body)
	if rec.Code != http.StatusCreated {
		s.tb.Fatalf("POST /authors %s: got status %d, want 201: %s", body, rec.Code, rec.Body)
	}
	return decode[author.Author](s.tb, rec)
}

func decode[T any](tb testing.TB, rec *httptest.ResponseRecorder) T {
	tb.Helper()
	var v T
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("got Content-Type %q, want application/json (status %d: %s)", ct, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		tb.Fatalf("decode %s: %v", rec.Body, err)
	}
	return v
}

// wantProblem checks that rec is a problem+json document with the status and type,
// naming the fields given (in any order, at least these), and returns it.
func wantProblem(tb testing.TB, rec *httptest.ResponseRecorder, status int, typ string, fields ...string) problem.Problem {
	tb.Helper()
	if rec.Code != status {
		tb.Fatalf("got status %d, want %d: %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != problem.ContentType {
		tb.Fatalf("got Content-Type %q, want %q", ct, problem.ContentType)
	}
	var p problem.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		tb.Fatalf("decode problem %s: %v", rec.Body, err)
	}
	if p.Type != typ || p.Status != status || p.Title == "" {
		tb.Errorf("got problem type %q status %d title %q, want type %q status %d", p.Type, p.Status, p.Title, typ, status)
	}
	named := map[string]bool{}
	for _, e := range p.Errors {
		named[e.Field] = true
		if e.Message == "" {
			tb.Errorf("field %q has an empty message", e.Field)
		}
	}
	for _, f := range fields {
		if !named[f] {
			tb.Errorf("problem errors %+v do not name %q", p.Errors, f)
		}
	}
	return p
}

// everyAuthor is the book service's view of authors in these tests: every id exists.
type everyAuthor struct{}

func (everyAuthor) Exists(context.Context, string) (bool, error) { return true, nil }

// startBookService serves the real book service handler, chassis included, over a
// new SQLite database.
func startBookService(t testing.TB) *httptest.Server {
	t.Helper()
	db := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "book.db"), book.Migrations)
	migratePlatform(t, db)
	return serveBooks(t, db)
}

// serveBooks serves the real book service handler, chassis included, over db, which
// has the book schema and the outbox and inbox tables.
func serveBooks(t testing.TB, db *sqldb.DB) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	book.Routes(mux, book.NewService(book.NewSQLStore(db), everyAuthor{}), idempotency.New(db, quiet), quiet)
	srv := httpserver.New(httpserver.Config{}, quiet, prometheus.NewRegistry(), mux, book.OpenAPI, db.PingContext)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}

// createBook creates a book in the book service at baseURL and returns it.
func createBook(t testing.TB, baseURL string, fields map[string]any) bookclient.Book {
	t.Helper()
	body, _ := json.Marshal(fields)
	resp, err := http.Post(baseURL+"/books", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("create book: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("create book: got status %d, want 201: %s", resp.StatusCode, b)
	}
	var b bookclient.Book
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("create book: %v", err)
	}
	return b
}
