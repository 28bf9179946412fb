// Package httpapi is the notify service's HTTP API: its routes, their handlers and
// the OpenAPI document that describes them.
package httpapi

import (
	_ "embed"
	"net/http"

	"folio/internal/notify"
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
func Routes(mux *http.ServeMux, svc *notify.Service, keys *idempotency.Keys, v *authn.Verifier) {
	admin := func(h http.Handler) http.Handler { return v.Require(authn.Admin, h) }
	mux.Handle("GET /subscriptions", admin(handleSubscriptionList(svc)))
	mux.Handle("POST /subscriptions", admin(keys.Wrap(handleSubscriptionCreate(svc))))
	mux.Handle("GET /subscriptions/{id}", admin(handleSubscriptionGet(svc)))
	mux.Handle("DELETE /subscriptions/{id}", admin(handleSubscriptionDelete(svc)))
	mux.Handle("GET /subscriptions/{id}/deliveries", admin(handleDeliveryList(svc)))
}
