package author

import (
	_ "embed"
	"log/slog"
	"net/http"

	"folio/internal/platform/idempotency"
)

// OpenAPI is the author service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the author service's API. GET /authors/books is more
// specific than GET /authors/{id}, so the router sends /authors/books to it.
func Routes(mux *http.ServeMux, svc *Service, keys *idempotency.Keys, log *slog.Logger) {
	mux.Handle("GET /authors", handleAuthorList(svc, log))
	mux.Handle("POST /authors", keys.Wrap(handleAuthorCreate(svc, log)))
	mux.Handle("GET /authors/books", handleGenreBooks(svc, log))
	mux.Handle("GET /authors/{id}", handleAuthorGet(svc, log))
	mux.Handle("PUT /authors/{id}", handleAuthorReplace(svc, log))
	mux.Handle("PATCH /authors/{id}", handleAuthorPatch(svc, log))
	mux.Handle("DELETE /authors/{id}", handleAuthorDelete(svc, log))
	mux.Handle("GET /authors/{id}/books", handleAuthorBooks(svc, log))
}
