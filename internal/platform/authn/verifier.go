package authn

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
	"github.com/prometheus/client_golang/prometheus"
)

type claims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles"`
}

var (
	errUnknownKID   = errors.New("the token's key id is not in the key set")
	errNoKID        = errors.New("the token has no key id")
	errNoSubject    = errors.New("the token has no subject")
	errNoIssuedAt   = fmt.Errorf("%w: iat", jwt.ErrTokenRequiredClaimMissing)
	errLifetime     = errors.New("the token's lifetime exceeds the maximum")
	errRevoked      = errors.New("the token was issued before its subject's tokens were revoked")
	errMissingToken = errors.New("no bearer token")
)

// ErrNotBearer is the error of a request whose Authorization header is not a bearer token.
var ErrNotBearer = errors.New(`the Authorization header is not "Bearer <token>"`)

// Verifier checks EdDSA JWTs against the auth service's JWKS, which it fetches once,
// caches, and fetches again only when a token names an unknown key id or the set is
// older than its maximum age, and never more often than once per minimum interval.
// It refuses tokens that live longer than the configured lifetime and tokens of
// revoked subjects issued before their revocation.
type Verifier struct {
	url        string
	client     *http.Client
	parser     *jwt.Parser
	maxTTL     time.Duration
	minRefresh time.Duration
	maxAge     time.Duration
	now        func() time.Time
	metrics    *instruments
	log        *slog.Logger

	cache   tokenCache
	revoked revocations

	keys        atomic.Pointer[keySet]
	mu          sync.Mutex // held while fetching
	lastAttempt time.Time  // of a fetch, guarded by mu
}

type keySet struct {
	keys    map[string]ed25519.PublicKey
	fetched time.Time
}

// NewVerifier returns a verifier of tokens under cfg that fetches the JWKS with
// client, registering its metrics on reg (nil registers none).
func NewVerifier(cfg Config, client *http.Client, log *slog.Logger, reg prometheus.Registerer) *Verifier {
	cfg.setDefaults()
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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
		maxTTL:     cfg.MaxTTL,
		minRefresh: cfg.JWKSMinRefresh,
		maxAge:     cfg.JWKSMaxAge,
		now:        cfg.Now,
		metrics:    newInstruments(reg),
		log:        log,
		cache:      tokenCache{max: 10_000, ttl: time.Minute},
		revoked:    revocations{keep: cfg.MaxTTL + Leeway},
	}
}

// Verify checks a compact JWT and returns the identity it carries. Its errors wrap
// the jwt package's sentinel errors (jwt.ErrTokenExpired…) or say what else is wrong.
// A token already verified against the current key set is answered from a cache
// until it expires (signature checks are most of a verifier's CPU time); the
// revocations are checked on every call, cached or not.
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	now := v.now()
	if e, ok := v.cache.get(token, v.keys.Load(), now); ok {
		if v.revoked.refuses(e.id.Subject, e.issued, now) {
			return Identity{}, errRevoked
		}
		return e.id, nil
	}
	id, err := v.verify(ctx, token, now)
	outcome := "ok"
	if err != nil {
		outcome = "refused"
	}
	v.metrics.verifications.WithLabelValues(outcome).Inc()
	return id, err
}

// Cached returns the identity of a token that passed verification recently and
// still holds, without any signature work; false means Verify must decide.
func (v *Verifier) Cached(token string) (Identity, bool) {
	now := v.now()
	e, ok := v.cache.get(token, v.keys.Load(), now)
	if !ok || v.revoked.refuses(e.id.Subject, e.issued, now) {
		return Identity{}, false
	}
	return e.id, true
}

func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (Identity, error) {
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
	if c.IssuedAt == nil {
		// Without iat neither the lifetime nor a revocation can be checked.
		return Identity{}, errNoIssuedAt
	}
	if c.ExpiresAt.Sub(c.IssuedAt.Time) > v.maxTTL {
		return Identity{}, errLifetime
	}
	if v.revoked.refuses(c.Subject, c.IssuedAt.Time, now) {
		return Identity{}, errRevoked
	}
	id := Identity{Subject: c.Subject, Roles: c.Roles}
	v.cache.put(token, cachedToken{id: id, keys: used, issued: c.IssuedAt.Time, expires: c.ExpiresAt.Add(Leeway)}, now)
	return id, nil
}

// Revoke refuses, from now on, every token of subject issued before before, cached
// ones included. The entry is kept until no such token can still be unexpired.
func (v *Verifier) Revoke(subject string, before time.Time) {
	v.revoked.add(subject, before, v.now())
	v.metrics.revocations.Inc()
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
	if v.url == "" {
		return nil, errors.New("fetch JWKS: no JWKS URL is configured")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
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

// FailureReason names why a token was refused, for metrics (reason) and the
// client's problem detail.
func FailureReason(err error) (reason, detail string) {
	switch {
	case errors.Is(err, errMissingToken):
		return "missing", "this request needs a bearer token"
	case errors.Is(err, ErrNotBearer):
		return "malformed", "the Authorization header must be \"Bearer <token>\""
	case errors.Is(err, errUnknownKID):
		return "unknown_kid", "the token was not signed by a known key"
	case errors.Is(err, errNoKID):
		return "no_kid", "the token has no key id"
	case errors.Is(err, errNoSubject):
		return "missing_claim", "the token has no subject"
	case errors.Is(err, errLifetime):
		return "lifetime", "the token's lifetime is longer than the auth service issues"
	case errors.Is(err, errRevoked):
		return "revoked", "the token has been revoked; get a new one"
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
	issued  time.Time // iat, for the revocation check
	expires time.Time
}

func (c *tokenCache) get(token string, current *keySet, now time.Time) (cachedToken, bool) {
	c.mu.Lock()
	e, ok := c.entries[token]
	c.mu.Unlock()
	if !ok || e.keys != current || current == nil || !now.Before(e.expires) {
		return cachedToken{}, false
	}
	return e, true
}

func (c *tokenCache) put(token string, e cachedToken, now time.Time) {
	if e.keys == nil {
		return
	}
	e.expires = minTime(e.expires, now.Add(c.ttl))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]cachedToken)
	}
	if len(c.entries) >= c.max {
		// Expired entries go first, then arbitrary ones until a tenth is free.
		for k, old := range c.entries {
			if !now.Before(old.expires) || len(c.entries) > c.max-c.max/10 {
				delete(c.entries, k)
			}
		}
	}
	c.entries[token] = e
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// revocations remembers, per subject, the time before which its tokens are refused.
// An entry is needed only while a token issued before it can be unexpired: keep
// (the longest lifetime plus the leeway) after it, then it is dropped, so memory is
// bounded by the revocations of one token lifetime.
type revocations struct {
	keep time.Duration

	mu      sync.RWMutex
	entries map[string]time.Time
}

func (r *revocations) add(subject string, before, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries == nil {
		r.entries = make(map[string]time.Time)
	}
	for s, b := range r.entries {
		if now.Sub(b) > r.keep {
			delete(r.entries, s)
		}
	}
	if now.Sub(before) > r.keep {
		return // every token it could refuse has expired
	}
	if old, ok := r.entries[subject]; !ok || before.After(old) {
		r.entries[subject] = before
	}
}

// refuses reports whether a token of subject issued at iat is revoked.
func (r *revocations) refuses(subject string, iat, now time.Time) bool {
	r.mu.RLock()
	before, ok := r.entries[subject]
	r.mu.RUnlock()
	return ok && iat.Before(before) && now.Sub(before) <= r.keep
}

func (r *revocations) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.entries)
}
