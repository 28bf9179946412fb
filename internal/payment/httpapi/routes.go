// Package httpapi is the payment service's HTTP API: its one route, which shows
// operators a payment and its ledger, and the OpenAPI document that describes it.
package httpapi

import (
	_ "embed"
	"net/http"

	"folio/internal/payment"
	"folio/internal/platform/authn"
)

// OpenAPI is the payment service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the payment service's API. Every one needs an admin
// token, checked here: the gateway does not route to the service, and whoever
// reaches it must still not read payments.
func Routes(mux *http.ServeMux, svc *payment.Service, v *authn.Verifier) {
	admin := func(h http.Handler) http.Handler { return v.Require(authn.Admin, h) }
	mux.Handle("GET /payments/{order_id}", admin(handlePaymentGet(svc)))
}
