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

// TestRotatedKeysAreServedUntilRetired checks the key set a verifier sees through a
// rotation: the new key signs and is served beside the old until the old is
// retired, and an impostor names the current key without holding it.
func TestRotatedKeysAreServedUntilRetired(t *testing.T) {
	iss := authntest.New(t)
	kids := func() []string {
		t.Helper()
		resp, err := http.Get(iss.JWKSURL())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var set struct {
			Keys []struct{ Kid string } `json:"keys"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, k := range set.Keys {
			ids = append(ids, k.Kid)
		}
		return ids
	}
	old := iss.KeyID()
	iss.Rotate()
	next := iss.KeyID()
	if got := kids(); next == old || !slices.Equal(got, []string{old, next}) {
		t.Fatalf("after a rotation: served %v, signing with %s; want [%s %s]", got, next, old, next)
	}
	iss.Retire(old)
	if got := kids(); !slices.Equal(got, []string{next}) {
		t.Fatalf("after retiring %s: served %v, want [%s]", old, got, next)
	}
	if got := iss.Fetches(); got != 2 {
		t.Errorf("Fetches = %d, want 2", got)
	}
	imp := iss.Impostor()
	if imp.KeyID() != next || imp.PublicKey().Equal(iss.PublicKey()) {
		t.Errorf("impostor: kid %s (want %s), same key %v (want false)", imp.KeyID(), next, imp.PublicKey().Equal(iss.PublicKey()))
	}
}
