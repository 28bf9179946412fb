package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/order"
	"folio/internal/order/httpapi"
	"folio/internal/order/sqlstore"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/metrics"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.DiscardHandler)

// server is the order service wired as cmd/order does, with its HTTP API and
// without the consumer and the timer.
type server struct {
	db    *sqldb.DB
	store *sqlstore.Store
	svc   *order.Service
	h     http.Handler
	mux   *http.ServeMux
	iss   *authntest.Issuer
	// payment holds the key the cards are sealed to, as the payment service does.
	payment *secrets.Recipient
}

func newServer(tb testing.TB) *server {
	tb.Helper()
	db := sqldbtest.Open(tb, "sqlite:"+filepath.Join(tb.TempDir(), "order.db"), sqlstore.Migrations)
	outboxtest.Migrate(tb, db)
	payment, err := secrets.LoadRecipient(secrets.GenerateRecipientKey())
	if err != nil {
		tb.Fatal(err)
	}
	store := sqlstore.New(outbox.NewWriter(db, nil))
	svc, err := order.NewService(store, order.Config{Timing: order.DefaultTiming,
		Seal: func(p []byte) (string, error) { return secrets.SealTo(payment.PublicKey(), p) }}, quiet)
	if err != nil {
		tb.Fatal(err)
	}
	iss := authntest.New(tb)
	v := authn.NewVerifier(authn.Config{JWKSURL: iss.JWKSURL()}, nil, quiet, prometheus.NewRegistry())
	mux := http.NewServeMux()
	httpapi.Routes(mux, svc, idempotency.New(db, quiet), v)
	srv := httpserver.New(httpserver.Config{}, quiet, metrics.NewRegistry(), mux, httpapi.OpenAPI, db.PingContext)
	return &server{db: db, store: store, svc: svc, h: srv.Handler(), mux: mux, iss: iss, payment: payment}
}

// as serves one request with the token of user (roles given); header holds name,
// value pairs.
func (s *server) as(user string, roles []string, method, target, body string, header ...string) *httptest.ResponseRecorder {
	if user != "" {
		header = append(header, "Authorization", authntest.Bearer(s.iss.Token(user, roles...)))
	}
	return resttest.Do(s.h, method, target, body, header...)
}

// do serves one request as user u1, a reader.
func (s *server) do(method, target, body string, header ...string) *httptest.ResponseRecorder {
	return s.as("u1", []string{"reader"}, method, target, body, header...)
}

// validBody is an order of two books paid with an approved test card.
const validBody = `{"items":[{"book_id":"0190f5c4-5b1e-7000-8000-000000000001","quantity":2},{"book_id":"0190f5c4-5b1e-7000-8000-000000000002","quantity":1}],
	"payment":{"card":{"number":"4242 4242 4242 4242","expiry":"12/99","cvc":"123"}}}`

// place places validBody as user and returns the order.
func (s *server) place(tb testing.TB, user string) order.Order {
	tb.Helper()
	rec := s.as(user, []string{"reader"}, "POST", "/orders", validBody)
	if rec.Code != http.StatusAccepted {
		tb.Fatalf("place: got %d %s", rec.Code, rec.Body)
	}
	return resttest.Decode[order.Order](tb, rec)
}

// confirm carries the order through its saga's replies to confirmed.
func (s *server) confirm(tb testing.TB, orderID string) {
	tb.Helper()
	ctx := context.Background()
	for _, typ := range []string{order.ReplyReserved, order.ReplyAuthorised, order.ReplyCaptured, order.ReplyCommitted} {
		o, err := s.store.Get(ctx, orderID)
		if err != nil {
			tb.Fatal(err)
		}
		r := order.Reply{Type: typ, OrderID: orderID}
		if typ == order.ReplyReserved {
			r.Total = &order.Money{Amount: 100, Currency: "EUR"}
		}
		ch, ok := s.svc.OnReply(o, r)
		if !ok {
			tb.Fatalf("%s stale in %s", typ, o.State)
		}
		if err := s.store.Advance(ctx, ch); err != nil {
			tb.Fatal(err)
		}
	}
}
