package httpapi_test

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/payment"
	"folio/internal/payment/httpapi"
	"folio/internal/payment/sqlstore"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/id"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.DiscardHandler)

// server is the payment service's HTTP API wired as cmd/payment does, over a
// SQLite store.
type server struct {
	db    *sqldb.DB
	store *sqlstore.Store
	svc   *payment.Service
	key   *secrets.Recipient
	h     http.Handler
	mux   *http.ServeMux
	// iss issues the tokens the service accepts; admin is one of role admin,
	// which do sends unless told otherwise.
	iss   *authntest.Issuer
	admin string
}

func newServer(t testing.TB) *server {
	t.Helper()
	db := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "payment.db"), sqlstore.Migrations)
	outboxtest.Migrate(t, db)
	key, err := secrets.LoadRecipient(secrets.GenerateRecipientKey())
	if err != nil {
		t.Fatal(err)
	}
	store := sqlstore.New(db)
	svc := payment.NewService(store, key, payment.Config{})
	iss := authntest.New(t)
	v := authn.NewVerifier(authn.Config{JWKSURL: iss.JWKSURL()}, nil, quiet, prometheus.NewRegistry())
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, v)
	srv := httpserver.New(httpserver.Config{}, quiet, metrics.NewRegistry(), mux, httpapi.OpenAPI, db.PingContext)
	return &server{db: db, store: store, svc: svc, key: key, h: srv.Handler(), mux: mux, iss: iss, admin: iss.Token("admin-1", "admin")}
}

// do serves one request as the admin; header holds name, value pairs, and an
// Authorization among them replaces the admin's ("" sends none).
func (s *server) do(method, target string, header ...string) *httptest.ResponseRecorder {
	auth := authntest.Bearer(s.admin)
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
	return resttest.Do(s.h, method, target, "", rest...)
}

// pay authorises 1299 EUR on the card number for a new order (none when number
// is ""), then applies the other commands, and returns the order's id.
func (s *server) pay(t testing.TB, number string, then ...string) string {
	t.Helper()
	orderID := id.New()
	sealed, err := secrets.SealTo(s.key.PublicKey(), []byte(`{"number":"`+number+`","expiry":"12/30","cvc":"123"}`))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []payment.Command
	if number != "" {
		cmds = append(cmds, payment.Command{Type: payment.CommandAuthorise, OrderID: orderID, Amount: payment.Money{Amount: 1299, Currency: "EUR"}, SealedCard: sealed})
	}
	for _, typ := range then {
		cmds = append(cmds, payment.Command{Type: typ, OrderID: orderID})
	}
	for _, cmd := range cmds {
		err := s.db.InTx(context.Background(), func(tx *sql.Tx) error {
			_, err := s.store.Apply(context.Background(), tx, orderID, func(cur *payment.Payment) (payment.Outcome, error) {
				return s.svc.Decide(cur, cmd)
			})
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", cmd.Type, err)
		}
	}
	return orderID
}
