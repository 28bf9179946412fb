package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"folio/internal/platform/id"
)

// SigningKey is an Ed25519 key that signs tokens. A retired key signs no more but
// stays published, so that the tokens it signed verify until they expire.
type SigningKey struct {
	KID       string
	Private   ed25519.PrivateKey
	CreatedAt time.Time
	RetiredAt *time.Time
}

// JWK is one public key of a JWKS document (RFC 7517, RFC 8037 for Ed25519).
type JWK struct {
	KTY string `json:"kty"`
	CRV string `json:"crv"`
	ALG string `json:"alg"`
	Use string `json:"use"`
	KID string `json:"kid"`
	X   string `json:"x"`
}

// JWKS is the document served at /.well-known/jwks.json.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// keyRing holds the signing keys loaded from the store.
type keyRing struct {
	store    Store
	now      func() time.Time
	ttl      time.Duration
	rotation time.Duration

	mu   sync.RWMutex
	keys []SigningKey // by creation, oldest first
}

func newSigningKey(now time.Time) (SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SigningKey{}, fmt.Errorf("generate signing key: %w", err)
	}
	return SigningKey{KID: id.New(), Private: priv, CreatedAt: now.UTC().Truncate(time.Microsecond)}, nil
}

// rotate makes a new signing key when there is none or the newest is older than the
// rotation period, retiring the others, then reloads the keys from the store (which
// also picks up keys made by other instances).
func (k *keyRing) rotate(ctx context.Context) error {
	now := k.now()
	keys, err := k.store.SigningKeys(ctx)
	if err != nil {
		return err
	}
	if active := ActiveKey(keys); active == nil || !now.Before(active.CreatedAt.Add(k.rotation)) {
		nk, err := newSigningKey(now)
		if err != nil {
			return err
		}
		if err := k.store.RotateSigningKey(ctx, nk, now.Add(-k.rotation)); err != nil {
			return err
		}
		if keys, err = k.store.SigningKeys(ctx); err != nil {
			return err
		}
	}
	slices.SortStableFunc(keys, func(a, b SigningKey) int { return a.CreatedAt.Compare(b.CreatedAt) })
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	return nil
}

// ActiveKey returns the newest key that is not retired, or nil: the key that signs.
func ActiveKey(keys []SigningKey) *SigningKey {
	var newest *SigningKey
	for i := range keys {
		if keys[i].RetiredAt == nil && (newest == nil || keys[i].CreatedAt.After(newest.CreatedAt)) {
			newest = &keys[i]
		}
	}
	return newest
}

// published reports whether key still verifies tokens at now: it is active, or was
// retired no longer than a token's lifetime ago.
func (k *keyRing) published(key SigningKey, now time.Time) bool {
	return key.RetiredAt == nil || now.Before(key.RetiredAt.Add(k.ttl))
}

// signer returns the key that signs new tokens.
func (k *keyRing) signer() (SigningKey, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if a := ActiveKey(k.keys); a != nil {
		return *a, nil
	}
	return SigningKey{}, errors.New("no signing key: the key ring was not loaded")
}

// publicKey returns the public key with kid if it is published now.
func (k *keyRing) publicKey(kid string) (ed25519.PublicKey, bool) {
	now := k.now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, key := range k.keys {
		if key.KID == kid && k.published(key, now) {
			return key.Private.Public().(ed25519.PublicKey), true
		}
	}
	return nil, false
}

// jwks returns the published public keys.
func (k *keyRing) jwks() JWKS {
	now := k.now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	doc := JWKS{Keys: []JWK{}}
	for _, key := range k.keys {
		if !k.published(key, now) {
			continue
		}
		pub := key.Private.Public().(ed25519.PublicKey)
		doc.Keys = append(doc.Keys, JWK{KTY: "OKP", CRV: "Ed25519", ALG: "EdDSA", Use: "sig", KID: key.KID,
			X: base64.RawURLEncoding.EncodeToString(pub)})
	}
	return doc
}

// Claims are the claims of an access token.
type Claims struct {
	Roles []string `json:"roles"`
	jwt.RegisteredClaims
}

// sign returns a signed access token with claims, whose header names the key.
func (k *keyRing) sign(claims Claims) (string, error) {
	key, err := k.signer()
	if err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = key.KID
	s, err := t.SignedString(key.Private)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// issuedAhead is how far ahead of the clock a token's iat may be: the auth service
// issues tokens at its accounts' revoked_before, which lies a second ahead per role
// change made within the same second. The other verifiers allow their leeway.
const issuedAhead = 30 * time.Second

// errLifetime refuses a token whose iat or lifetime is outside the rules.
var errLifetime = errors.New("the token's iat is missing, in the future, or its lifetime exceeds the token TTL")

// verify parses and checks a token: EdDSA only, signed by a published key named by
// its kid, with this issuer and audience, not expired and already valid, issued (iat)
// no later than now, and living (exp - iat) no longer than ttl, so that a token
// with exp in the year 3000 is refused even when validly signed.
func (k *keyRing) verify(token, issuer, audience string, ttl time.Duration) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		pub, ok := k.publicKey(kid)
		if !ok {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return pub, nil
	}, jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}), jwt.WithIssuer(issuer),
		jwt.WithAudience(audience), jwt.WithExpirationRequired(), jwt.WithTimeFunc(k.now))
	if err != nil {
		return nil, err
	}
	if c.IssuedAt == nil || c.IssuedAt.After(k.now().Add(issuedAhead)) || c.ExpiresAt.Sub(c.IssuedAt.Time) > ttl {
		return nil, errLifetime
	}
	return &c, nil
}
