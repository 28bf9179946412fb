// Package httpapi is the HTTP API of the auth service: its routes, the handlers that
// read requests and answer them, the per-client limits of logins and registrations,
// and the OpenAPI document.
package httpapi

import (
	_ "embed"
	"net/http"

	"folio/internal/auth"
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
func Routes(mux *http.ServeMux, svc *auth.Service, keys *idempotency.Keys, proxies clientip.Proxies, limits Limits) {
	l := newClientLimits(limits)
	mux.Handle("POST /auth/register", limitRegister(svc, proxies, l, keys.Wrap(handleUserRegister(svc))))
	mux.Handle("POST /auth/token", handleTokenCreate(svc, proxies, l))
	mux.Handle("GET /.well-known/jwks.json", handleKeysGet(svc))
	mux.Handle("GET /auth/users/{id}", handleUserGet(svc))
	mux.Handle("PUT /auth/users/{id}/roles", handleUserRolesReplace(svc))
}
