package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"folio/internal/auth"
	"folio/internal/platform/id"
	"folio/internal/platform/problem"
)

func TestJWTAttacks(t *testing.T) {
	s := newServer(t, openSQLite(t))
	ada := s.register("ada@example.com", "twelve chars")
	valid := s.token("ada@example.com", "twelve chars")
	kid := s.currentKID()
	path := "/auth/users/" + ada.ID

	now := s.clock.Now()
	claims := func(change func(*auth.Claims)) auth.Claims {
		c := auth.Claims{Roles: []string{"reader", "admin"}, RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "folio-auth", Audience: jwt.ClaimStrings{"folio"}, Subject: ada.ID,
			ExpiresAt: jwt.NewNumericDate(now.Add(10 * time.Minute)), IssuedAt: jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now), ID: id.New()}}
		if change != nil {
			change(&c)
		}
		return c
	}
	byService := s.sign
	withKey := func(m jwt.SigningMethod, key any, c auth.Claims) string {
		tok := jwt.NewWithClaims(m, c)
		tok.Header["kid"] = kid
		str, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return str
	}
	pub := s.jwks()[kid]
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)

	// The forging helper works: a well-formed token it signs is accepted.
	if rec := s.do("GET", path, "", bearer(byService(claims(nil), ""))...); rec.Code != 200 {
		t.Fatalf("a valid forged-for-test token: got %d, want 200: %s", rec.Code, rec.Body)
	}
	if rec := s.do("GET", path, "", bearer(valid)...); rec.Code != 200 {
		t.Fatalf("a valid token: got %d, want 200: %s", rec.Code, rec.Body)
	}

	for _, tc := range []struct{ name, tok string }{
		{"alg none", withKey(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))},
		{"HS256 signed with the public key", withKey(jwt.SigningMethodHS256, []byte(pub), claims(nil))},
		{"HS256 signed with the JWK x", withKey(jwt.SigningMethodHS256, []byte(base64.RawURLEncoding.EncodeToString(pub)), claims(nil))},
		{"another key with the same kid", withKey(jwt.SigningMethodEdDSA, otherKey, claims(nil))},
		{"expired", byService(claims(func(c *auth.Claims) {
			c.ExpiresAt, c.IssuedAt, c.NotBefore = jwt.NewNumericDate(now.Add(-time.Second)), jwt.NewNumericDate(now.Add(-time.Hour)), jwt.NewNumericDate(now.Add(-time.Hour))
		}), "")},
		{"no expiry", byService(claims(func(c *auth.Claims) { c.ExpiresAt = nil }), "")},
		{"not yet valid", byService(claims(func(c *auth.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute)) }), "")},
		{"issued in the future", byService(claims(func(c *auth.Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Minute)) }), "")},
		{"wrong iss", byService(claims(func(c *auth.Claims) { c.Issuer = "evil" }), "")},
		{"wrong aud", byService(claims(func(c *auth.Claims) { c.Audience = jwt.ClaimStrings{"other"} }), "")},
		{"sub not an id", byService(claims(func(c *auth.Claims) { c.Subject = "ada" }), "")},
		{"unknown kid", byService(claims(nil), "no-such-key")},
		{"no kid", withoutKID(t, byService(claims(nil), ""))},
		{"tampered payload: roles escalated", escalate(t, valid)},
		{"garbage", "not.a.token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := s.do("GET", path, "", bearer(tc.tok)...)
			wantProblem(t, rec, 401, problem.TypeUnauthorized)
			wantProblem(t, s.do("PUT", path+"/roles", `{"roles":["admin"]}`, bearer(tc.tok)...), 401, problem.TypeUnauthorized)
		})
	}
}

// escalate rewrites the payload of tok to add the admin role, keeping the signature.
func escalate(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["roles"] = []string{"reader", "editor", "admin"}
	payload, _ = json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// withoutKID rewrites the header of tok to drop its kid, keeping the signature.
func withoutKID(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	parts[0] = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT"}`))
	return strings.Join(parts, ".")
}

func TestKeyRotation(t *testing.T) {
	db := openSQLite(t)
	s := newServer(t, db)
	ctx := context.Background()
	ada := s.register("ada@example.com", "twelve chars")
	path := "/auth/users/" + ada.ID
	kid1 := s.currentKID()
	if h := header(t, s.token("ada@example.com", "twelve chars")); h != kid1 {
		t.Fatalf("a token names kid %s, want the stored %s", h, kid1)
	}
	if keys := s.jwks(); len(keys) != 1 || keys[kid1] == nil {
		t.Fatalf("got JWKS %v, want only %s", keys, kid1)
	}

	// Before the rotation period nothing changes, and a restart keeps the key.
	s.clock.Advance(23 * time.Hour)
	if err := s.svc.Rotate(ctx); err != nil {
		t.Fatalf("Rotate within the period: %v", err)
	}
	if got := header(t, s.token("ada@example.com", "twelve chars")); got != kid1 {
		t.Fatalf("Rotate within the period: a new token names kid %s, want %s", got, kid1)
	}
	restarted := newServerWith(t, db, s.box)
	if got := header(t, restarted.token("ada@example.com", "twelve chars")); got != kid1 {
		t.Errorf("after a restart the service signs with %s, want the stored %s", got, kid1)
	}

	// A token signed a minute before rotation by the old key.
	s.clock.Advance(time.Hour - time.Minute)
	old := s.token("ada@example.com", "twelve chars")
	s.clock.Advance(time.Minute)
	if err := s.svc.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	kid2 := s.currentKID()
	if kid2 == kid1 {
		t.Fatal("after the rotation period the signing key is unchanged")
	}
	fresh := s.token("ada@example.com", "twelve chars")
	if h := header(t, fresh); h != kid2 {
		t.Errorf("a new token names kid %s, want %s", h, kid2)
	}
	if h := header(t, old); h != kid1 {
		t.Errorf("the old token names kid %s, want %s", h, kid1)
	}
	keys := s.jwks()
	if len(keys) != 2 || keys[kid1] == nil || keys[kid2] == nil {
		t.Errorf("after rotation got JWKS %v, want %s and %s", keys, kid1, kid2)
	}
	for _, tok := range []string{old, fresh} {
		s.verify(tok)
		if rec := s.do("GET", path, "", bearer(tok)...); rec.Code != 200 {
			t.Errorf("GET with a token: got %d, want 200: %s", rec.Code, rec.Body)
		}
	}

	// One token lifetime after retirement the old key is gone.
	s.clock.Advance(15*time.Minute - time.Second)
	if keys := s.jwks(); keys[kid1] == nil {
		t.Error("the old key left the JWKS before its tokens expired")
	}
	s.clock.Advance(time.Second)
	keys = s.jwks()
	if len(keys) != 1 || keys[kid2] == nil {
		t.Errorf("a token lifetime after retirement got JWKS %v, want only %s", keys, kid2)
	}
	if _, err := s.tryVerify(old); err == nil {
		t.Error("the old token still verifies against the JWKS")
	}
	wantProblem(t, s.do("GET", path, "", bearer(old)...), 401, problem.TypeUnauthorized)
	if rec := s.do("GET", path, "", bearer(s.token("ada@example.com", "twelve chars"))...); rec.Code != 200 {
		t.Errorf("GET with a token of the new key: got %d, want 200", rec.Code)
	}
}

// header returns the kid of tok.
func header(t *testing.T, tok string) string {
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Kid, Alg string }
	if err := json.Unmarshal(h, &v); err != nil || v.Alg != "EdDSA" {
		t.Fatalf("header %s: %v, want alg EdDSA", h, err)
	}
	return v.Kid
}
