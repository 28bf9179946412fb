package gateway

import (
	"net/http"
	"strings"

	"folio/internal/platform/authn"
)

// required says what a request for method and path (already cleaned by the router)
// needs, per the contract's Gateway section. The services apply the same rules
// themselves; the gateway's check spares them requests it can refuse.
func required(method, path string) authn.Access {
	read := method == http.MethodGet || method == http.MethodHead
	switch {
	case under(path, "/books"), under(path, "/authors"), under(path, "/inventory"):
		if read {
			return authn.Public
		}
		return authn.Editor
	case under(path, "/subscriptions"):
		return authn.Admin
	case under(path, "/orders"):
		// Any signed-in user places and reads orders; the order service shows
		// each only its own.
		return authn.AnyToken
	case method == http.MethodPost && (path == "/auth/register" || path == "/auth/token"):
		return authn.Public
	case under(path, "/.well-known"):
		// Well-known documents (the JWKS) are public by nature.
		if read {
			return authn.Public
		}
		return authn.AnyToken
	default:
		return authn.AnyToken
	}
}

// under reports whether path is prefix itself or inside it.
func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}
