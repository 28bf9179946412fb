package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/author"
	"folio/internal/author/authortest"
	"folio/internal/author/bookclient"
	"folio/internal/author/events"
	"folio/internal/author/httpapi"
	"folio/internal/author/sqlstore"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/broker"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/outbox"
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
	db := sqldbtest.Open(tb, "sqlite:"+filepath.Join(tb.TempDir(), "author.db"), sqlstore.Migrations)
	outboxtest.Migrate(tb, db)
	return db
}

// newStore is the store a deployed service has over db, without a relay to wake.
func newStore(db *sqldb.DB) *sqlstore.Store {
	return sqlstore.New(outbox.NewWriter(db, nil))
}

// server is an author service in-process, with the chassis around its routes.
type server struct {
	tb testing.TB
	db *sqldb.DB
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
	svc := author.NewService(newStore(db), books, 0)
	iss := authntest.New(tb)
	httpapi.Routes(mux, svc, idempotency.New(db, quiet), verifier(iss))
	srv := httpserver.New(httpserver.Config{}, quiet, prometheus.NewRegistry(), mux, httpapi.OpenAPI, db.PingContext)
	return &server{tb: tb, db: db, h: asEditor(iss, srv.Handler()), iss: iss}
}

// newOfflineServer serves the author service with no book service behind it: none of
// the endpoints tested with it may need one.
func newOfflineServer(t *testing.T) *server {
	return newServer(t, openSQLite(t), booksAt(closedURL(t)))
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

// deliver applies book events to the server's database as its consumer does.
func (s *server) deliver(msgs ...broker.Message) {
	s.tb.Helper()
	handle := events.Books(newStore(s.db)).Handler(s.db, quiet)
	for _, m := range msgs {
		if err := handle(context.Background(), m); err != nil {
			s.tb.Fatalf("deliver %s: %v", m.Subject, err)
		}
	}
}

// decode and wantProblem are resttest's, under the names the tests of this package use.
func decode[T any](tb testing.TB, rec *httptest.ResponseRecorder) T {
	tb.Helper()
	return resttest.Decode[T](tb, rec)
}

var wantProblem = resttest.WantProblem

var (
	sameAuthor = authortest.SameAuthor
	idsOf      = authortest.IDs
	bookIDs    = authortest.BookIDs
)
