package gateway

import (
	"net/http"
	"slices"
	"strings"
)

// access is what a request needs before the gateway forwards it.
type access int

const (
	public     access = iota // anyone
	anyToken                 // a valid token, whatever its roles
	editorRole               // a valid token with role editor or admin
	adminRole                // a valid token with role admin
)

// Role names carried in the token's roles claim.
const (
	RoleReader = "reader"
	RoleEditor = "editor"
	RoleAdmin  = "admin"
)

// required says what a request for method and path (already cleaned by the router)
// needs, per the contract's Gateway section.
func required(method, path string) access {
	read := method == http.MethodGet || method == http.MethodHead
	switch {
	case under(path, "/books"), under(path, "/authors"):
		if read {
			return public
		}
		return editorRole
	case under(path, "/subscriptions"):
		return adminRole
	case method == http.MethodPost && (path == "/auth/register" || path == "/auth/token"):
		return public
	case under(path, "/.well-known"):
		// Well-known documents (the JWKS) are public by nature.
		if read {
			return public
		}
		return anyToken
	default:
		return anyToken
	}
}

// under reports whether path is prefix itself or inside it.
func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// allows reports whether roles satisfy need.
func allows(need access, roles []string) bool {
	switch need {
	case editorRole:
		return slices.Contains(roles, RoleEditor) || slices.Contains(roles, RoleAdmin)
	case adminRole:
		return slices.Contains(roles, RoleAdmin)
	default:
		return true
	}
}
