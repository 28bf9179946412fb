package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/notify"
	"folio/internal/notify/httpapi"
	"folio/internal/notify/notifytest"
	"folio/internal/platform/authn"
	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/metrics"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest/resttest"
	"folio/internal/platform/sqldb"
)

const secret = notifytest.Secret

var (
	quiet      = notifytest.Quiet
	openSQLite = notifytest.OpenSQLite
)

// server is the notify service wired as cmd/notify does, with its HTTP API and
// without the worker.
type server struct {
	*notifytest.Service
	h   http.Handler
	mux *http.ServeMux
	// iss issues the tokens the service accepts; admin is one of role admin,
	// which do sends unless told otherwise.
	iss   *authntest.Issuer
	admin string
}

func newServer(tb testing.TB, db *sqldb.DB) *server {
	tb.Helper()
	return newServerWith(tb, db, notifytest.Options{})
}

// newServerWith wires the service with opt (see notifytest.New).
func newServerWith(tb testing.TB, db *sqldb.DB, opt notifytest.Options) *server {
	tb.Helper()
	s := notifytest.New(tb, db, opt)
	iss := authntest.New(tb)
	v := authn.NewVerifier(authn.Config{JWKSURL: iss.JWKSURL()}, nil, quiet, prometheus.NewRegistry())
	mux := http.NewServeMux()
	httpapi.Routes(mux, s.Svc, idempotency.New(db, quiet), v)
	srv := httpserver.New(httpserver.Config{}, quiet, metrics.NewRegistry(), mux, httpapi.OpenAPI, db.PingContext)
	return &server{Service: s, h: srv.Handler(), mux: mux, iss: iss, admin: iss.Token("admin-1", "admin")}
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

// subscribe creates a subscription through the API and returns it.
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

// problemOf decodes a problem+json answer.
func problemOf(t *testing.T, body []byte) problem.Problem {
	t.Helper()
	var p problem.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("not a problem document: %v: %s", err, body)
	}
	return p
}
