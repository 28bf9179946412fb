// Package httpapi is the author service's HTTP API: its routes, their handlers and
// its OpenAPI document. The handlers decode and answer; the rules are the domain's.
package httpapi

import (
	_ "embed"
	"net/http"

	"folio/internal/author"
	"folio/internal/platform/authn"
	"folio/internal/platform/idempotency"
)

// OpenAPI is the author service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the author service's API with the access it needs:
// reads are public, writes need an editor's or an admin's token, checked here by v
// whether the request came through the gateway or straight to the service.
// GET /authors/books is more specific than GET /authors/{id}, so the router sends
// /authors/books to it.
func Routes(mux *http.ServeMux, svc *author.Service, keys *idempotency.Keys, v *authn.Verifier) {
	mux.Handle("GET /authors", v.Require(authn.Public, handleAuthorList(svc)))
	mux.Handle("POST /authors", v.Require(authn.Editor, keys.Wrap(handleAuthorCreate(svc))))
	mux.Handle("GET /authors/books", v.Require(authn.Public, handleGenreBooksGet(svc)))
	mux.Handle("GET /authors/{id}", v.Require(authn.Public, handleAuthorGet(svc)))
	mux.Handle("PUT /authors/{id}", v.Require(authn.Editor, handleAuthorReplace(svc)))
	mux.Handle("PATCH /authors/{id}", v.Require(authn.Editor, handleAuthorPatch(svc)))
	mux.Handle("DELETE /authors/{id}", v.Require(authn.Editor, handleAuthorDelete(svc)))
	mux.Handle("GET /authors/{id}/books", v.Require(authn.Public, handleAuthorBooksGet(svc)))
}
