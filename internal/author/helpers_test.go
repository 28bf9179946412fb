package author_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/author"
	"folio/internal/book"
	"folio/internal/bookclient"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/resilient"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.DiscardHandler)

// openSQLite opens a new, migrated author database in a temporary directory. It takes
// a testing.TB so that fuzz targets can use it too.
func openSQLite(tb testing.TB) *sqldb.DB {
	tb.Helper()
	db := sqldbtest.Open(tb, "sqlite:"+filepath.Join(tb.TempDir(), "author.db"), author.Migrations)
	outboxtest.Migrate(tb, db)
	return db
}

// server is an author service in-process, with the chassis around its routes.
type server struct {
	tb testing.TB
	// h serves a request that names no Authorization as an editor's; one that names
	// an empty Authorization goes without (see asEditor).
	h   http.Handler
	iss *authntest.Issuer // whose tokens the service accepts
}

// newServer serves the author service over db, asking books for books.
func newServer(tb testing.TB, db *sqldb.DB, books author.Books) *server {
	tb.Helper()
	outboxtest.Migrate(tb, db)
	mux := http.NewServeMux()
	svc := author.NewService(author.NewSQLStore(db), books, 0)
	iss := authntest.New(tb)
	author.Routes(mux, svc, idempotency.New(db, quiet), verifier(iss), quiet)
	srv := httpserver.New(httpserver.Config{}, quiet, prometheus.NewRegistry(), mux, author.OpenAPI, db.PingContext)
	return &server{tb: tb, h: asEditor(iss, srv.Handler()), iss: iss}
}

// verifier verifies the tokens of iss, as a service configured with its JWKS does.
func verifier(iss *authntest.Issuer) *authn.Verifier {
	return authn.NewVerifier(authn.Config{JWKSURL: iss.JWKSURL()}, http.DefaultClient, quiet, prometheus.NewRegistry())
}

// asEditor gives each request that names no Authorization an editor's token from
// iss, as most of these tests speak as an editor would; an Authorization named empty
// is removed, for the tests of anonymous requests.
func asEditor(iss *authntest.Issuer, h http.Handler) http.Handler {
	bearer := authntest.Bearer(iss.Token("editor-1", authn.RoleEditor))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, named := r.Header["Authorization"]; !named {
			r.Header.Set("Authorization", bearer)
		} else if r.Header.Get("Authorization") == "" {
			r.Header.Del("Authorization")
		}
		h.ServeHTTP(w, r)
	})
}

// booksAt returns a client of a book service at url, with the policies a deployed
// author service uses.
func booksAt(url string) *bookclient.Client {
	return bookclient.New(url, resilient.NewClient(resilient.DefaultConfig("book"), prometheus.NewRegistry()))
}

// closedURL returns the URL of a port nothing listens on.
func closedURL(tb testing.TB) string {
	tb.Helper()
	return resttest.ClosedURL(tb, "http")
}

// do serves one request; header holds name, value pairs.
func (s *server) do(method, path, body string, header ...string) *httptest.ResponseRecorder {
	return resttest.Do(s.h, method, path, body, header...)
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

// decode and wantProblem are resttest's, under the names the tests of this package use.
func decode[T any](tb testing.TB, rec *httptest.ResponseRecorder) T {
	tb.Helper()
	return resttest.Decode[T](tb, rec)
}

var wantProblem = resttest.WantProblem

// everyAuthor is the book service's view of authors in these tests: every id exists.
type everyAuthor struct{}

func (everyAuthor) Exists(context.Context, string) (bool, error) { return true, nil }

// startBookService serves the real book service handler, chassis included, over a
// new SQLite database.
func startBookService(t testing.TB) *httptest.Server {
	t.Helper()
	db := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "book.db"), book.Migrations)
	outboxtest.Migrate(t, db)
	return serveBooks(t, db)
}

// serveBooks serves the real book service handler, chassis included, over db, which
// has the book schema and the outbox and inbox tables. Requests that name no
// Authorization are an editor's (see asEditor), so that tests can create books.
func serveBooks(t testing.TB, db *sqldb.DB) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	iss := authntest.New(t)
	book.Routes(mux, book.NewService(book.NewSQLStore(db), everyAuthor{}), idempotency.New(db, quiet), verifier(iss), quiet)
	srv := httpserver.New(httpserver.Config{}, quiet, prometheus.NewRegistry(), mux, book.OpenAPI, db.PingContext)
	ts := httptest.NewServer(asEditor(iss, srv.Handler()))
	t.Cleanup(ts.Close)
	return ts
}

// createBook creates a book in the book service at baseURL and returns it.
func createBook(t testing.TB, baseURL string, fields map[string]any) bookclient.Book {
	t.Helper()
	return resttest.PostJSON[bookclient.Book](t, baseURL+"/books", fields, http.StatusCreated)
}
