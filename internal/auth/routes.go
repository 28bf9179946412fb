package auth

import (
	_ "embed"
	"log/slog"
	"net/http"

	"folio/internal/platform/idempotency"
)

// OpenAPI is the auth service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the auth service's API.
func Routes(mux *http.ServeMux, svc *Service, keys *idempotency.Keys, log *slog.Logger) {
	mux.Handle("POST /auth/register", keys.Wrap(handleUserRegister(svc, log)))
	mux.Handle("POST /auth/token", handleTokenCreate(svc, log))
	mux.Handle("GET /.well-known/jwks.json", handleKeysGet(svc))
	mux.Handle("GET /auth/users/{id}", handleUserGet(svc, log))
	mux.Handle("PUT /auth/users/{id}/roles", handleUserRolesReplace(svc, log))
}
