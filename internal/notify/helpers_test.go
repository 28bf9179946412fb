package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/notify"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/broker"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/inbox"
	"folio/internal/platform/metrics"
	"folio/internal/platform/rest"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.DiscardHandler)

// openSQLite opens a new notify database, migrated with the inbox.
func openSQLite(tb testing.TB) *sqldb.DB {
	tb.Helper()
	db := sqldbtest.Open(tb, "sqlite:"+filepath.Join(tb.TempDir(), "notify.db"), notify.Migrations)
	if err := inbox.Migrate(context.Background(), db); err != nil {
		tb.Fatalf("inbox migrate: %v", err)
	}
	return db
}

// server is the notify service wired as cmd/notify does, without the worker.
type server struct {
	h   http.Handler
	mux *http.ServeMux
	svc *notify.Service
	// iss issues the tokens the service accepts; admin is one of role admin,
	// which do sends unless told otherwise.
	iss   *authntest.Issuer
	admin string
}

// testBox is a secrets box with a fixed key, so that services over one database
// in a test open each other's secrets.
func testBox(tb testing.TB) *secrets.Box {
	tb.Helper()
	box, err := secrets.New(bytes.Repeat([]byte{7}, secrets.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	return box
}

// resolver resolves every name to a public address, so that the tests send no
// DNS query and example.com hosts pass the address check without being dialled.
type resolver struct{}

func (resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if host == "localhost" {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return []netip.Addr{netip.MustParseAddr("93.184.215.14")}, nil
}

func newServer(tb testing.TB, db *sqldb.DB) *server {
	tb.Helper()
	return newServerConfig(tb, db, notify.Config{})
}

// newServerConfig wires the service with cfg; a nil cfg.Secrets takes testBox and a
// nil resolver takes the fake one.
func newServerConfig(tb testing.TB, db *sqldb.DB, cfg notify.Config) *server {
	tb.Helper()
	if cfg.Secrets == nil {
		cfg.Secrets = testBox(tb)
	}
	if cfg.Egress.Resolver == nil {
		cfg.Egress.Resolver = resolver{}
	}
	svc, err := notify.NewService(db, cfg, quiet)
	if err != nil {
		tb.Fatal(err)
	}
	if err := idempotency.Migrate(context.Background(), db); err != nil {
		tb.Fatalf("idempotency migrate: %v", err)
	}
	iss := authntest.New(tb)
	v := authn.NewVerifier(authn.Config{JWKSURL: iss.JWKSURL()}, nil, quiet, prometheus.NewRegistry())
	mux := http.NewServeMux()
	notify.Routes(mux, svc, idempotency.New(db, quiet), v, quiet)
	srv := httpserver.New(httpserver.Config{}, quiet, metrics.NewRegistry(), mux, notify.OpenAPI, db.PingContext)
	return &server{h: srv.Handler(), mux: mux, svc: svc, iss: iss, admin: iss.Token("admin-1", "admin")}
}

// do serves one request as the admin; header holds name, value pairs, and an
// Authorization among them replaces the admin's ("" sends none).
func (s *server) do(method, target, body string, header ...string) *httptest.ResponseRecorder {
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
	return resttest.Do(s.h, method, target, body, rest...)
}

// subscribe creates a subscription and returns it.
func (s *server) subscribe(tb testing.TB, url, secret string, events ...string) notify.Subscription {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"url": url, "events": events, "secret": secret})
	rec := s.do(http.MethodPost, "/subscriptions", string(body))
	if rec.Code != http.StatusCreated {
		tb.Fatalf("subscribe: got %d %s", rec.Code, rec.Body)
	}
	var sub notify.Subscription
	if err := json.Unmarshal(rec.Body.Bytes(), &sub); err != nil {
		tb.Fatal(err)
	}
	return sub
}

// deliveries returns every delivery of a subscription.
func (s *server) deliveries(tb testing.TB, id string) []notify.Delivery {
	tb.Helper()
	rec := s.do(http.MethodGet, "/subscriptions/"+id+"/deliveries?limit=100", "")
	if rec.Code != http.StatusOK {
		tb.Fatalf("deliveries: got %d %s", rec.Code, rec.Body)
	}
	var page struct{ Items []notify.Delivery }
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
		tb.Fatal(err)
	}
	return page.Items
}

// clock is a settable clock for the delivery worker.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// event returns a broker message carrying an event envelope.
func event(tb testing.TB, id, typ string) broker.Message {
	tb.Helper()
	body, err := json.Marshal(broker.Envelope{ID: id, Type: typ, OccurredAt: time.Now().UTC(), Data: json.RawMessage(`{"id":"` + rest.NewID() + `"}`)})
	if err != nil {
		tb.Fatal(err)
	}
	return broker.Message{Subject: "folio." + typ, ID: id, Body: body, Header: map[string]string{}}
}
