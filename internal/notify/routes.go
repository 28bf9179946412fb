package notify

import (
	_ "embed"
	"log/slog"
	"net/http"

	"folio/internal/platform/idempotency"
)

// OpenAPI is the notify service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the notify service's API. The gateway lets only
// admins reach them, so the service checks no credentials itself.
func Routes(mux *http.ServeMux, svc *Service, keys *idempotency.Keys, log *slog.Logger) {
	mux.Handle("GET /subscriptions", handleList(svc, log))
	mux.Handle("POST /subscriptions", keys.Wrap(handleCreate(svc, log)))
	mux.Handle("GET /subscriptions/{id}", handleGet(svc, log))
	mux.Handle("DELETE /subscriptions/{id}", handleDelete(svc, log))
	mux.Handle("GET /subscriptions/{id}/deliveries", handleDeliveries(svc, log))
}
