// Package httpapi is the order service's HTTP API: its routes, the handlers that
// turn requests into calls of the order.Service, and its OpenAPI document.
package httpapi

import (
	_ "embed"
	"net/http"

	"folio/internal/order"
	"folio/internal/platform/authn"
	"folio/internal/platform/idempotency"
)

// OpenAPI is the order service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the order service's API. Each needs a signed-in
// user, checked here whether the request came through the gateway or straight to
// the service; whose orders a caller sees is the service's rule (its own, or any
// for an admin to read).
func Routes(mux *http.ServeMux, svc *order.Service, keys *idempotency.Keys, v *authn.Verifier) {
	user := func(h http.Handler) http.Handler { return v.Require(authn.AnyToken, h) }
	mux.Handle("GET /orders", user(handleOrderList(svc)))
	mux.Handle("POST /orders", user(keys.Wrap(handleOrderPlace(svc))))
	mux.Handle("GET /orders/{id}", user(handleOrderGet(svc)))
	mux.Handle("POST /orders/{id}/cancel", user(handleOrderCancel(svc)))
}
