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
	"slices"
	"sync"
	"sync/atomic"
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
	now  func() time.Time
	ttl  time.Duration
	srv  *httptest.Server
	hits atomic.Int64

	mu     sync.Mutex
	keys   []key // served in the JWKS
	signer key   // signs the tokens; served unless retired
}

// key is one Ed25519 signing key and the id a token names it by.
type key struct {
	kid  string
	priv ed25519.PrivateKey
}

func (k key) public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// Option changes what New makes.
type Option func(*Issuer)

// WithClock makes the issuer issue its tokens at the times now tells, for a test
// that moves its verifier's clock.
func WithClock(now func() time.Time) Option { return func(i *Issuer) { i.now = now } }

// WithTTL makes the issuer's tokens valid for ttl rather than TTL.
func WithTTL(ttl time.Duration) Option { return func(i *Issuer) { i.ttl = ttl } }

// New returns an issuer with a fresh key and starts its JWKS server, which stops
// when the test ends. Two issuers never share a key: a token from one is a token
// from a foreign key to a verifier fed by the other.
func New(t testing.TB, opts ...Option) *Issuer {
	t.Helper()
	return newIssuer(t, newKey(t, ""), opts...)
}

func newIssuer(t testing.TB, k key, opts ...Option) *Issuer {
	t.Helper()
	iss := &Issuer{t: t, now: time.Now, ttl: TTL, keys: []key{k}, signer: k}
	for _, o := range opts {
		o(iss)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+JWKSPath, iss.serveJWKS)
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

// newKey makes an Ed25519 key named kid, or a random id when kid is "".
func newKey(t testing.TB, kid string) key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate signing key: %v", err)
	}
	if kid == "" {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			t.Fatalf("generate key id: %v", err)
		}
		kid = hex.EncodeToString(b)
	}
	return key{kid: kid, priv: priv}
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	i.hits.Add(1)
	i.mu.Lock()
	set := make([]map[string]string, 0, len(i.keys))
	for _, k := range i.keys {
		set = append(set, map[string]string{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
			"kid": k.kid, "x": base64.RawURLEncoding.EncodeToString(k.public())})
	}
	i.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": set})
}

// JWKSURL is the URL of the issuer's key set, for FOLIO_JWKS_URL.
func (i *Issuer) JWKSURL() string { return i.srv.URL + JWKSPath }

// Env is the environment that makes a child process verify this issuer's tokens.
func (i *Issuer) Env() []string { return []string{"FOLIO_JWKS_URL=" + i.JWKSURL()} }

// Fetches is how many times the key set has been fetched, for tests of a
// verifier's caching.
func (i *Issuer) Fetches() int64 { return i.hits.Load() }

// Down stops serving the key set, as an auth service that is down.
func (i *Issuer) Down() { i.srv.Close() }

// Rotate makes a new key sign the tokens from now on; the key set serves it beside
// the earlier keys, as the auth service does while tokens of the old key live.
func (i *Issuer) Rotate() {
	k := newKey(i.t, "")
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys, i.signer = append(i.keys, k), k
}

// Retire drops the key named kid from the key set: tokens it signed no longer
// verify once a verifier fetches the set again.
func (i *Issuer) Retire(kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = slices.DeleteFunc(i.keys, func(k key) bool { return k.kid == kid })
}

// KeyID is the id of the key that signs the tokens now.
func (i *Issuer) KeyID() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.signer.kid
}

// PublicKey is the public half of the key that signs the tokens now, which an
// attacker can read from the key set.
func (i *Issuer) PublicKey() ed25519.PublicKey {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.signer.public()
}

// Impostor returns an issuer with a key of its own that its tokens name by this
// issuer's key id: a forger who knows the id but not the key.
func (i *Issuer) Impostor() *Issuer {
	i.t.Helper()
	return newIssuer(i.t, newKey(i.t, i.KeyID()), WithClock(i.now), WithTTL(i.ttl))
}

// Claims are the claims of a Folio access token.
type Claims struct {
	Roles []string `json:"roles"`
	jwt.RegisteredClaims
}

// Claims returns what Token signs for subject with roles: issued now by the
// issuer's clock and valid for its TTL.
func (i *Issuer) Claims(subject string, roles ...string) Claims {
	now := i.now().Truncate(time.Second)
	return Claims{Roles: roles, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: IssuerName, Audience: jwt.ClaimStrings{Audience}, Subject: subject,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(i.ttl)),
	}}
}

// Token returns a token for subject with roles, issued now and valid for TTL
// (unless WithTTL said otherwise).
func (i *Issuer) Token(subject string, roles ...string) string {
	i.t.Helper()
	return i.Sign(i.Claims(subject, roles...))
}

// TokenWith returns a token like Token's after change has altered its claims, so
// that a test can make a token that is wrong in one chosen way (expired, too long
// lived, for another audience).
func (i *Issuer) TokenWith(subject string, roles []string, change ...func(*Claims)) string {
	i.t.Helper()
	c := i.Claims(subject, roles...)
	for _, f := range change {
		f(&c)
	}
	return i.Sign(c)
}

// Sign signs any claims with the issuer's key and names the key in the header.
func (i *Issuer) Sign(c Claims) string {
	i.t.Helper()
	i.mu.Lock()
	k := i.signer
	i.mu.Unlock()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		i.t.Fatalf("sign token: %v", err)
	}
	return s
}

// Bearer is the Authorization header value that carries token.
func Bearer(token string) string { return "Bearer " + token }
