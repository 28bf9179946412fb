// Package authn verifies Folio's bearer tokens inside every program, the gateway and
// each service alike, so that nothing is trusted for merely being able to reach it.
package authn

import (
	"context"
	"slices"
	"time"
)

// Config locates the auth service's keys and says what a token must claim. The
// untagged fields are tuning that tests and the gateway set; zero takes the default.
type Config struct {
	// JWKSURL is where the auth service publishes its public keys. It is
	// configuration, never taken from a registry entry that others could write.
	JWKSURL  string `env:"FOLIO_JWKS_URL"`
	Issuer   string `env:"FOLIO_JWT_ISSUER" envDefault:"folio-auth"`
	Audience string `env:"FOLIO_JWT_AUDIENCE" envDefault:"folio"`
	// MaxTTL is the longest lifetime (exp - iat) a token may have: the auth
	// service's token lifetime. It also bounds how long a revocation is remembered.
	MaxTTL time.Duration `env:"FOLIO_TOKEN_TTL" envDefault:"15m"`

	// JWKSMinRefresh is the least time between two JWKS fetches (default 10 s), so
	// that tokens with unknown key ids cannot make a verifier hammer the auth service.
	JWKSMinRefresh time.Duration
	// JWKSMaxAge is how long a fetched key set is used before it is fetched again
	// (default 5 min).
	JWKSMaxAge time.Duration
	// Now is the clock (default time.Now); tests replace it.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Issuer == "" {
		// The jwt package skips the issuer check when none is expected.
		c.Issuer = "folio-auth"
	}
	if c.Audience == "" {
		c.Audience = "folio"
	}
	if c.MaxTTL <= 0 {
		c.MaxTTL = 15 * time.Minute
	}
	if c.JWKSMinRefresh <= 0 {
		c.JWKSMinRefresh = 10 * time.Second
	}
	if c.JWKSMaxAge <= 0 {
		c.JWKSMaxAge = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Leeway is the clock skew tolerated when checking exp, nbf and iat.
const Leeway = 30 * time.Second

// Identity is who a verified token speaks for.
type Identity struct {
	Subject string
	Roles   []string
}

// Role names carried in the token's roles claim.
const (
	RoleReader = "reader"
	RoleEditor = "editor"
	RoleAdmin  = "admin"
)

// Access is what a request needs before it is served.
type Access int

const (
	Public   Access = iota // anyone; a token, if sent, must still be valid
	AnyToken               // a valid token, whatever its roles
	Editor                 // a valid token with role editor or admin
	Admin                  // a valid token with role admin
)

// Allows reports whether roles satisfy a.
func (a Access) Allows(roles []string) bool {
	switch a {
	case Editor:
		return slices.Contains(roles, RoleEditor) || slices.Contains(roles, RoleAdmin)
	case Admin:
		return slices.Contains(roles, RoleAdmin)
	default:
		return true
	}
}

type ctxKey struct{}

// NewContext returns ctx carrying id, as Require does for the handlers behind it.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the verified identity of the request whose context ctx is,
// and false for an anonymous request.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
