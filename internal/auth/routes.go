package auth

import (
	_ "embed"
	"log/slog"
	"net/http"

	"folio/internal/platform/clientip"
	"folio/internal/platform/idempotency"
)

// OpenAPI is the auth service's OpenAPI 3.1 document, served at /openapi.json.
//
//go:embed openapi.json
var OpenAPI []byte

// Routes lists every route of the auth service's API. proxies says whose
// X-Forwarded-For names the client, for the per-client limits; keys should digest
// requests with svc.Fingerprint, since a register body holds a password.
func Routes(mux *http.ServeMux, svc *Service, keys *idempotency.Keys, proxies clientip.Proxies, log *slog.Logger) {
	mux.Handle("POST /auth/register", limitRegister(svc, proxies, log, keys.Wrap(handleUserRegister(svc, log))))
	mux.Handle("POST /auth/token", handleTokenCreate(svc, proxies, log))
	mux.Handle("GET /.well-known/jwks.json", handleKeysGet(svc))
	mux.Handle("GET /auth/users/{id}", handleUserGet(svc, log))
	mux.Handle("PUT /auth/users/{id}/roles", handleUserRolesReplace(svc, log))
}
