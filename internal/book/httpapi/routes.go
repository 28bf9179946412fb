// Package httpapi is the book service's HTTP API: its routes, the handlers that turn
// requests into calls of the book.Service, and its OpenAPI document.
package httpapi

import (
	_ "embed"
	"net/http"

	"folio/internal/book"
	"folio/internal/platform/authn"
	"folio/internal/platform/idempotency"
)

// OpenAPI is the book service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the book service's API with the access it needs: reads
// are public, writes need an editor's or an admin's token, checked here by v whether
// the request came through the gateway or straight to the service.
func Routes(mux *http.ServeMux, svc *book.Service, keys *idempotency.Keys, v *authn.Verifier) {
	mux.Handle("GET /books", v.Require(authn.Public, handleBookList(svc)))
	mux.Handle("POST /books", v.Require(authn.Editor, keys.Wrap(handleBookCreate(svc))))
	mux.Handle("GET /books/{id}", v.Require(authn.Public, handleBookGet(svc)))
	mux.Handle("PUT /books/{id}", v.Require(authn.Editor, handleBookReplace(svc)))
	mux.Handle("PATCH /books/{id}", v.Require(authn.Editor, handleBookPatch(svc)))
	mux.Handle("DELETE /books/{id}", v.Require(authn.Editor, handleBookDelete(svc)))
}
