package book

import (
	_ "embed"
	"log/slog"
	"net/http"

	"folio/internal/platform/idempotency"
)

// OpenAPI is the book service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the book service's API.
func Routes(mux *http.ServeMux, svc *Service, keys *idempotency.Keys, log *slog.Logger) {
	mux.Handle("GET /books", handleBookList(svc, log))
	mux.Handle("POST /books", keys.Wrap(handleBookCreate(svc, log)))
	mux.Handle("GET /books/{id}", handleBookGet(svc, log))
	mux.Handle("PUT /books/{id}", handleBookReplace(svc, log))
	mux.Handle("PATCH /books/{id}", handleBookPatch(svc, log))
	mux.Handle("DELETE /books/{id}", handleBookDelete(svc, log))
}
