package httpapi_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"folio/internal/inventory"
	"folio/internal/inventory/httpapi"
	"folio/internal/inventory/sqlstore"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/chassis/chassistest"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/id"
	"folio/internal/platform/logging"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// server is the inventory service's API wired as cmd/inventory does, over db,
// verifying the tokens of a test issuer.
type server struct {
	h     http.Handler
	mux   *http.ServeMux
	db    *sqldb.DB
	store *sqlstore.Store
	iss   *authntest.Issuer
	// editor is the token a request carries unless it names its own
	// Authorization (an empty one sends none).
	editor string
}

func newServer(tb testing.TB, db *sqldb.DB) *server {
	tb.Helper()
	log := logging.New(&chassistest.LogBuffer{}, "inventory", "json", "info")
	outboxtest.Migrate(tb, db)
	store := sqlstore.New(outbox.NewWriter(db, nil))
	svc := inventory.NewService(store, nil, nil)
	iss := authntest.New(tb)
	reg := metrics.NewRegistry()
	v := authn.NewVerifier(authn.Config{JWKSURL: iss.JWKSURL()}, http.DefaultClient, log, reg)
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, v)
	srv := httpserver.New(httpserver.Config{}, log, reg, mux, httpapi.OpenAPI, db.PingContext)
	return &server{h: srv.Handler(), mux: mux, db: db, store: store, iss: iss, editor: iss.Token("editor-1", authn.RoleEditor)}
}

func openSQLite(tb testing.TB) *sqldb.DB {
	tb.Helper()
	return sqldbtest.Open(tb, "sqlite:"+filepath.Join(tb.TempDir(), "inventory.db"), sqlstore.Migrations)
}

// forEachServer runs suite on a new server over each SQL engine.
func forEachServer(t *testing.T, suite func(t *testing.T, s *server)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		suite(t, newServer(t, db))
	})
}

// do serves one request as the editor; header holds name, value pairs, and an
// Authorization among them replaces the editor's ("" sends none).
func (s *server) do(method, target, body string, header ...string) *httptest.ResponseRecorder {
	auth := authntest.Bearer(s.editor)
	var rest []string
	for i := 0; i+1 < len(header); i += 2 {
		if http.CanonicalHeaderKey(header[i]) == "Authorization" {
			auth = header[i+1]
			continue
		}
		rest = append(rest, header[i], header[i+1])
	}
	if auth != "" {
		rest = append(rest, "Authorization", auth)
	}
	return resttest.Do(s.h, method, target, body, rest...)
}

// put creates the stock of a new book through the API and returns its id.
func (s *server) put(t *testing.T, body string) string {
	t.Helper()
	bookID := id.New()
	if rec := s.do(http.MethodPut, "/inventory/"+bookID, body); rec.Code != http.StatusCreated {
		t.Fatalf("PUT new stock: got %d %s", rec.Code, rec.Body)
	}
	return bookID
}

// reserve holds copies of the book for a new order, as the order saga does.
func (s *server) reserve(t *testing.T, bookID string, quantity int64) {
	t.Helper()
	c := inventory.Command{Type: inventory.CommandReserve, OrderID: id.New(),
		Items: []inventory.Line{{BookID: bookID, Quantity: quantity}}, ExpiresAt: time.Now().Add(time.Hour)}
	err := s.db.InTx(context.Background(), func(tx *sql.Tx) error {
		o, err := s.store.Apply(context.Background(), tx, c)
		if err == nil && o.Reply.Type != inventory.EventReserved {
			t.Errorf("reserve: got %s", o.Reply.Type)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// deleteBook tells the store the book service deleted the book.
func (s *server) deleteBook(t *testing.T, bookID string) {
	t.Helper()
	if err := s.db.InTx(context.Background(), func(tx *sql.Tx) error {
		return s.store.MarkBookDeleted(context.Background(), tx, bookID)
	}); err != nil {
		t.Fatal(err)
	}
}
