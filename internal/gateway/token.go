package gateway

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Leeway is the clock skew tolerated when checking exp, nbf and iat.
const Leeway = 30 * time.Second

// Identity is who a verified token speaks for.
type Identity struct {
	Subject string
	Roles   []string
}

type claims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles"`
}

var (
	errUnknownKID = errors.New("the token's key id is not in the key set")
	errNoKID      = errors.New("the token has no key id")
	errNoSubject  = errors.New("the token has no subject")
)

// Verifier checks EdDSA JWTs against the auth service's JWKS, which it fetches once,
// caches, and fetches again only when a token names an unknown key id or the set is
// older than its maximum age, and never more often than once per minimum interval.
type Verifier struct {
	url        string
	client     *http.Client
	parser     *jwt.Parser
	minRefresh time.Duration
	maxAge     time.Duration
	now        func() time.Time
	metrics    *instruments
	log        *slog.Logger

	cache       tokenCache
	keys        atomic.Pointer[keySet]
	mu          sync.Mutex // held while fetching
	lastAttempt time.Time  // of a fetch, guarded by mu
}

type keySet struct {
	keys    map[string]ed25519.PublicKey
	fetched time.Time
}

func newVerifier(cfg Config, client *http.Client, log *slog.Logger, m *instruments) *Verifier {
	return &Verifier{
		url:    cfg.JWKSURL,
		client: client,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithLeeway(Leeway),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithTimeFunc(cfg.Now),
		),
		minRefresh: cfg.JWKSMinRefresh,
		maxAge:     cfg.JWKSMaxAge,
		now:        cfg.Now,
		metrics:    m,
		log:        log,
		cache:      tokenCache{max: 10_000, ttl: time.Minute},
	}
}

// Verify checks a compact JWT and returns the identity it carries. Its errors wrap
// the jwt package's sentinel errors (jwt.ErrTokenExpired…) or say the key id is unknown.
// A token already verified against the current key set is answered from a cache
// until it expires (signature checks are most of the gateway's CPU time).
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	if id, ok := v.cache.get(token, v.keys.Load(), v.now()); ok {
		return id, nil
	}
	var c claims
	var used *keySet
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errNoKID
		}
		k, ks, err := v.key(ctx, kid)
		used = ks
		return k, err
	})
	if err != nil {
		return Identity{}, err
	}
	if c.Subject == "" {
		return Identity{}, errNoSubject
	}
	id := Identity{Subject: c.Subject, Roles: c.Roles}
	v.cache.put(token, id, used, c.ExpiresAt.Add(Leeway), v.now())
	return id, nil
}

// key returns the public key with id kid and the set it came from, fetching the key
// set when kid is unknown or the set is stale and the minimum interval since the last
// fetch has passed.
func (v *Verifier) key(ctx context.Context, kid string) (ed25519.PublicKey, *keySet, error) {
	ks := v.keys.Load()
	if ks != nil {
		if k, ok := ks.keys[kid]; ok {
			if v.now().Sub(ks.fetched) > v.maxAge && v.mu.TryLock() {
				// Stale: refresh, but keep using the key when the fetch fails, and let
				// other requests go on with the old set meanwhile.
				v.refreshLocked(ctx)
				v.mu.Unlock()
				return lookup(v.keys.Load(), kid)
			}
			return k, ks, nil
		}
	}
	v.mu.Lock()
	// Another request may have fetched while this one waited.
	if v.keys.Load() == ks {
		v.refreshLocked(ctx)
	}
	v.mu.Unlock()
	return lookup(v.keys.Load(), kid)
}

func lookup(ks *keySet, kid string) (ed25519.PublicKey, *keySet, error) {
	if ks != nil {
		if k, ok := ks.keys[kid]; ok {
			return k, ks, nil
		}
	}
	return nil, ks, errUnknownKID
}

// refreshLocked fetches the key set unless the last attempt was too recent. A failed
// fetch keeps the old set. v.mu must be held.
func (v *Verifier) refreshLocked(ctx context.Context) {
	now := v.now()
	if !v.lastAttempt.IsZero() && now.Sub(v.lastAttempt) < v.minRefresh {
		return
	}
	v.lastAttempt = now
	keys, err := v.fetch(context.WithoutCancel(ctx))
	if err != nil {
		v.metrics.jwksFetches.WithLabelValues("error").Inc()
		v.log.WarnContext(ctx, "cannot refresh the JWKS; keeping the keys already known", "err", err)
		return
	}
	v.metrics.jwksFetches.WithLabelValues("ok").Inc()
	v.keys.Store(&keySet{keys: keys, fetched: now})
}

type jwks struct {
	Keys []struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		Alg string `json:"alg"`
		Use string `json:"use"`
		Kid string `json:"kid"`
		X   string `json:"x"`
	} `json:"keys"`
}

// fetch gets and parses the JWKS, keeping only Ed25519 signing keys.
func (v *Verifier) fetch(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS: status %d", resp.StatusCode)
	}
	var set jwks
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("fetch JWKS: decode: %w", err)
	}
	keys := make(map[string]ed25519.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Kid == "" ||
			(k.Alg != "" && k.Alg != "EdDSA") || (k.Use != "" && k.Use != "sig") {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "="))
		if err != nil || len(x) != ed25519.PublicKeySize {
			continue
		}
		keys[k.Kid] = ed25519.PublicKey(x)
	}
	return keys, nil
}

// failureReason names why a token was rejected, for metrics and the client's detail.
func failureReason(err error) (reason, detail string) {
	switch {
	case errors.Is(err, errUnknownKID):
		return "unknown_kid", "the token was not signed by a known key"
	case errors.Is(err, errNoKID):
		return "no_kid", "the token has no key id"
	case errors.Is(err, errNoSubject):
		return "missing_claim", "the token has no subject"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed", "the token is malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad_signature", "the token's signature or algorithm is not valid"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired", "the token has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not_yet_valid", "the token is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong_issuer", "the token was issued by someone else"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong_audience", "the token is meant for someone else"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing_claim", "the token lacks a required claim"
	default:
		return "invalid", "the token is not valid"
	}
}

// tokenCache remembers tokens that passed verification, bounded in size. An entry
// holds only while the key set it was verified with is the current one (so a
// refreshed set that retires a key also retires its tokens), while the token has
// not expired, and for at most ttl.
type tokenCache struct {
	max int
	ttl time.Duration

	mu      sync.Mutex
	entries map[string]cachedToken
}

type cachedToken struct {
	id      Identity
	keys    *keySet
	expires time.Time
}

func (c *tokenCache) get(token string, current *keySet, now time.Time) (Identity, bool) {
	c.mu.Lock()
	e, ok := c.entries[token]
	c.mu.Unlock()
	if !ok || e.keys != current || current == nil || !now.Before(e.expires) {
		return Identity{}, false
	}
	return e.id, true
}

func (c *tokenCache) put(token string, id Identity, keys *keySet, expires, now time.Time) {
	if keys == nil {
		return
	}
	expires = minTime(expires, now.Add(c.ttl))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]cachedToken)
	}
	if len(c.entries) >= c.max {
		// Expired entries go first, then arbitrary ones until a tenth is free.
		for k, e := range c.entries {
			if !now.Before(e.expires) || len(c.entries) > c.max-c.max/10 {
				delete(c.entries, k)
			}
		}
	}
	c.entries[token] = cachedToken{id: id, keys: keys, expires: expires}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
