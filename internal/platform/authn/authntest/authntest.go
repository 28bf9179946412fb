// Package authntest issues real Folio access tokens for tests: EdDSA JWTs signed by
// a key of its own, whose public half it serves as a JWKS, so that a service under
// test verifies them exactly as it verifies the auth service's.
package authntest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// IssuerName, Audience and TTL are what the auth service puts in its tokens by
// default, and what a verifier with the default configuration expects.
const (
	IssuerName = "folio-auth"
	Audience   = "folio"
	TTL        = 15 * time.Minute
)

// JWKSPath is where the issuer's server serves its key set, as the auth service does.
const JWKSPath = "/.well-known/jwks.json"

// Issuer signs tokens with one Ed25519 key and serves its JWKS over HTTP.
type Issuer struct {
	t    testing.TB
	kid  string
	priv ed25519.PrivateKey
	srv  *httptest.Server
}

// New returns an issuer with a fresh key and starts its JWKS server, which stops
// when the test ends. Two issuers never share a key: a token from one is a token
// from a foreign key to a verifier fed by the other.
func New(t testing.TB) *Issuer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate signing key: %v", err)
	}
	kid := make([]byte, 8)
	if _, err := rand.Read(kid); err != nil {
		t.Fatalf("generate key id: %v", err)
	}
	iss := &Issuer{t: t, kid: hex.EncodeToString(kid), priv: priv}
	doc, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": iss.kid,
		"x": base64.RawURLEncoding.EncodeToString(pub),
	}}})
	if err != nil {
		t.Fatalf("encode JWKS: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+JWKSPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

// JWKSURL is the URL of the issuer's key set, for FOLIO_JWKS_URL.
func (i *Issuer) JWKSURL() string { return i.srv.URL + JWKSPath }

// Env is the environment that makes a child process verify this issuer's tokens.
func (i *Issuer) Env() []string { return []string{"FOLIO_JWKS_URL=" + i.JWKSURL()} }

// Token returns a token for subject with roles, issued now and valid for TTL.
func (i *Issuer) Token(subject string, roles ...string) string {
	i.t.Helper()
	now := time.Now().Truncate(time.Second)
	return i.Sign(Claims{Roles: roles, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: IssuerName, Audience: jwt.ClaimStrings{Audience}, Subject: subject,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(TTL)),
	}})
}

// Claims are the claims of a Folio access token.
type Claims struct {
	Roles []string `json:"roles"`
	jwt.RegisteredClaims
}

// Sign signs any claims with the issuer's key and names the key in the header, so
// that a test can make a token that is wrong in one chosen way (expired, too long
// lived, for another audience).
func (i *Issuer) Sign(c Claims) string {
	i.t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = i.kid
	s, err := tok.SignedString(i.priv)
	if err != nil {
		i.t.Fatalf("sign token: %v", err)
	}
	return s
}

// Bearer is the Authorization header value that carries token.
func Bearer(token string) string { return "Bearer " + token }
