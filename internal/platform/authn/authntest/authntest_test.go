package authntest_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"folio/internal/platform/authn/authntest"
)

// TestTokenVerifiesWithServedKeys checks a token against the JWKS the issuer serves,
// with the rules a Folio verifier applies.
func TestTokenVerifiesWithServedKeys(t *testing.T) {
	iss := authntest.New(t)
	resp, err := http.Get(iss.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kid, X string } `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("got %d keys, want 1", len(set.Keys))
	}
	x, err := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	if err != nil {
		t.Fatal(err)
	}
	var c authntest.Claims
	_, err = jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer("folio-auth"),
		jwt.WithAudience("folio"), jwt.WithExpirationRequired(), jwt.WithIssuedAt()).
		ParseWithClaims(iss.Token("acct-1", "editor"), &c, func(tok *jwt.Token) (any, error) {
			if tok.Header["kid"] != set.Keys[0].Kid {
				t.Errorf("got kid %v, want %s", tok.Header["kid"], set.Keys[0].Kid)
			}
			return ed25519.PublicKey(x), nil
		})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c.Subject != "acct-1" || !slices.Equal(c.Roles, []string{"editor"}) {
		t.Errorf("got subject %q roles %v, want acct-1 [editor]", c.Subject, c.Roles)
	}
	if ttl := c.ExpiresAt.Sub(c.IssuedAt.Time); ttl != authntest.TTL {
		t.Errorf("got lifetime %s, want %s", ttl, authntest.TTL)
	}
	if env := iss.Env(); len(env) != 1 || env[0] != "FOLIO_JWKS_URL="+iss.JWKSURL() {
		t.Errorf("got env %v", env)
	}
}
