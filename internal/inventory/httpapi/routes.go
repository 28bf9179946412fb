// Package httpapi is the inventory service's HTTP API: its routes, the handlers that
// turn requests into calls of the inventory.Service, and its OpenAPI document.
package httpapi

import (
	_ "embed"
	"net/http"

	"folio/internal/inventory"
	"folio/internal/platform/authn"
)

// OpenAPI is the inventory service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the inventory service's API with the access it
// needs: reads are public, setting a book's stock and price needs an editor's or
// an admin's token, checked here by v whether the request came through the gateway
// or straight to the service.
func Routes(mux *http.ServeMux, svc *inventory.Service, v *authn.Verifier) {
	mux.Handle("GET /inventory", v.Require(authn.Public, handleItemList(svc)))
	mux.Handle("GET /inventory/{book_id}", v.Require(authn.Public, handleItemGet(svc)))
	mux.Handle("PUT /inventory/{book_id}", v.Require(authn.Editor, handleItemPut(svc)))
}
