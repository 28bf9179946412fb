package notify

import (
	_ "embed"
	"log/slog"
	"net/http"

	"folio/internal/platform/authn"
	"folio/internal/platform/idempotency"
)

// OpenAPI is the notify service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the notify service's API. Every one needs an admin
// token, checked here as the gateway checks it: the service may be reached without
// the gateway, and a subscription makes it send every event, signed, wherever it
// says.
func Routes(mux *http.ServeMux, svc *Service, keys *idempotency.Keys, v *authn.Verifier, log *slog.Logger) {
	admin := func(h http.Handler) http.Handler { return v.Require(authn.Admin, h) }
	mux.Handle("GET /subscriptions", admin(handleList(svc, log)))
	mux.Handle("POST /subscriptions", admin(keys.Wrap(handleCreate(svc, log))))
	mux.Handle("GET /subscriptions/{id}", admin(handleGet(svc, log)))
	mux.Handle("DELETE /subscriptions/{id}", admin(handleDelete(svc, log)))
	mux.Handle("GET /subscriptions/{id}/deliveries", admin(handleDeliveries(svc, log)))
}
