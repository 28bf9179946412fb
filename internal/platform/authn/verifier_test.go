package authn

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"folio/internal/platform/authn/authntest"
	"folio/internal/platform/config"
	"folio/internal/platform/rest/resttest"
)

func TestJWKSFetchedOnceUnderConcurrentFirstUse(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.token("ed", []string{RoleEditor})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 16 {
		wg.Go(func() {
			if _, err := f.v.Verify(context.Background(), tok); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of 16 verifications failed", failed.Load())
	}
	if got := f.iss.Fetches(); got != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", got)
	}
}

func TestStaleJWKSIsRefreshedAndDropsRetiredKeys(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.JWKSMaxAge = time.Minute })
	tok := f.token("ed", []string{RoleEditor}, func(c *authntest.Claims) { c.ExpiresAt.Time = c.ExpiresAt.Add(5 * time.Minute) })
	if a := f.write(tok); a.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (%s)", a.status, a.body)
	}
	// The auth service retires the key; once the cached set is older than its
	// maximum age the verifier fetches again and stops accepting the key.
	retired := f.iss.KeyID()
	f.iss.Rotate()
	f.iss.Retire(retired)
	if a := f.write(tok); a.status != http.StatusOK {
		t.Fatalf("within the max age: status = %d, want 200 (the cached key)", a.status)
	}
	f.offset.Store(int64(2 * time.Minute))
	wantRefused(t, f.write(tok), "not signed by a known key")
	if got := f.iss.Fetches(); got != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", got)
	}
}

func TestJWKSDownRejectsWithoutHammering(t *testing.T) {
	f := newFixture(t, nil)
	f.iss.Down()
	tok := f.token("ed", []string{RoleEditor})
	for range 10 {
		wantRefused(t, f.write(tok), "not signed by a known key")
	}
	if got := f.iss.Fetches(); got > 1 {
		t.Fatalf("JWKS fetched %d times for 10 requests, want at most 1", got)
	}
	// Public requests without a token do not need the key set at all.
	if a := f.serve(Public, http.MethodGet, ""); a.status != http.StatusOK {
		t.Fatalf("public request with the JWKS down: status = %d, want 200", a.status)
	}
}

func TestCachedTokenStillExpires(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.token("ed", []string{RoleEditor}, func(c *authntest.Claims) { c.ExpiresAt.Time = f.now().Add(time.Minute) })
	for range 3 {
		if a := f.write(tok); a.status != http.StatusOK {
			t.Fatalf("status = %d, want 200", a.status)
		}
	}
	if got := f.counter("verifications", "ok"); got != 1 {
		t.Fatalf("%v full verifications for three uses of one token, want 1 (the cache)", got)
	}
	f.offset.Store(int64(time.Minute + Leeway + time.Second))
	wantRefused(t, f.write(tok), "expired")
}

func TestTokenCacheIsBounded(t *testing.T) {
	c := tokenCache{max: 10, ttl: time.Minute}
	ks := &keySet{}
	now := time.Unix(0, 0)
	entry := cachedToken{id: Identity{Subject: "s"}, keys: ks, expires: now.Add(time.Hour)}
	for i := range 100 {
		c.put(string(rune('a'+i%26))+time.Duration(i).String(), entry, now)
	}
	if n := len(c.entries); n > 10 {
		t.Fatalf("%d tokens cached, want at most 10", n)
	}
	c.put("tok", entry, now)
	if _, ok := c.get("tok", ks, now.Add(30*time.Second)); !ok {
		t.Fatal("a fresh entry was not found")
	}
	if _, ok := c.get("tok", ks, now.Add(2*time.Minute)); ok {
		t.Fatal("an entry outlived the cache's ttl")
	}
	if _, ok := c.get("tok", &keySet{}, now); ok {
		t.Fatal("an entry verified with another key set was used")
	}
}

// TestLifetimeIsCapped replays finding 8 of issue 8: a validly signed token that
// lives longer than the auth service issues them, or says nothing of when it was
// issued, is refused.
func TestLifetimeIsCapped(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxTTL = 15 * time.Minute })
	now := f.now()
	tests := []struct {
		name   string
		mod    func(*authntest.Claims)
		detail string // "" for accepted
	}{
		{"exactly the lifetime", func(c *authntest.Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(15 * time.Minute)) }, ""},
		{"exp in the year 3000", func(c *authntest.Claims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))
		}, "lifetime"},
		{"one second over the lifetime", func(c *authntest.Claims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(15*time.Minute + time.Second))
		}, "lifetime"},
		{"issued long ago, expiring late", func(c *authntest.Claims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(-24 * time.Hour))
			c.NotBefore = c.IssuedAt
			c.ExpiresAt = jwt.NewNumericDate(now.Add(time.Minute))
		}, "lifetime"},
		{"no iat", func(c *authntest.Claims) { c.IssuedAt = nil }, "lacks a required claim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// iat is now, the instant exp is reckoned from: left to the issuer's clock
			// (read later, cut to whole seconds) "one second over" could be exactly
			// the lifetime.
			issued := func(c *authntest.Claims) {
				c.IssuedAt = jwt.NewNumericDate(now)
				c.NotBefore = c.IssuedAt
			}
			tok := f.token("eve", []string{RoleAdmin}, issued, tt.mod)
			a := f.write(tok)
			if tt.detail == "" {
				if a.status != http.StatusOK {
					t.Fatalf("status = %d, want 200 (%s)", a.status, a.body)
				}
				return
			}
			wantRefused(t, a, tt.detail)
		})
	}
}

// TestRevocation replays the other half of finding 8: an editor demoted to reader
// kept writing with the old token. After Revoke the subject's earlier tokens are
// refused, cached or not; tokens issued since, and other subjects', are not.
func TestRevocation(t *testing.T) {
	f := newFixture(t, nil)
	old := f.token("ed", []string{RoleEditor})
	other := f.token("someone-else", []string{RoleEditor})
	for _, tok := range []string{old, other} {
		if a := f.write(tok); a.status != http.StatusOK {
			t.Fatalf("before the revocation: status = %d, want 200", a.status)
		}
	}
	if _, ok := f.v.Cached(old); !ok {
		t.Fatal("the token is not cached; the test would not check the cached path")
	}

	// As the auth service publishes it: the second after the change.
	f.v.Revoke("ed", f.now().Truncate(time.Second).Add(time.Second))
	wantRefused(t, f.write(old), "revoked")
	if _, ok := f.v.Cached(old); ok {
		t.Error("Cached still answers for a revoked token")
	}
	f.offset.Store(int64(time.Second))
	if a := f.write(f.token("ed", []string{RoleReader}, func(c *authntest.Claims) {
		c.IssuedAt = jwt.NewNumericDate(f.now().Truncate(time.Second))
	})); a.status != http.StatusForbidden {
		t.Errorf("a token issued after the revocation: status = %d, want 403 (a reader now; not revoked)", a.status)
	}
	if a := f.write(other); a.status != http.StatusOK {
		t.Errorf("another subject's token: status = %d, want 200", a.status)
	}
	// An older revocation arriving late does not shorten a newer one.
	f.v.Revoke("ed", f.now().Add(-time.Hour))
	wantRefused(t, f.write(old), "revoked")
	if got := f.counter("failures", "revoked"); got != 2 {
		t.Errorf("folio_auth_failures_total{reason=revoked} = %v, want 2", got)
	}
}

// TestRevocationsAreBounded checks that a revocation is forgotten once no token it
// refuses can still be valid, so that memory holds one token lifetime of them.
func TestRevocationsAreBounded(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxTTL = 15 * time.Minute })
	for i := range 1000 {
		f.v.Revoke(time.Duration(i).String(), f.now())
	}
	if n := f.v.revoked.len(); n != 1000 {
		t.Fatalf("%d revocations kept, want 1000", n)
	}
	tok := f.token("0s", []string{RoleEditor}, func(c *authntest.Claims) { c.IssuedAt = jwt.NewNumericDate(f.now().Add(-time.Minute)) })
	wantRefused(t, f.write(tok), "revoked")

	f.offset.Store(int64(15*time.Minute + Leeway + time.Second))
	f.v.Revoke("late", f.now())
	if n := f.v.revoked.len(); n != 1 {
		t.Fatalf("%d revocations kept after a token lifetime, want 1", n)
	}
	// A revocation too old to refuse any live token is not kept at all.
	f.v.Revoke("ancient", f.now().Add(-time.Hour))
	if n := f.v.revoked.len(); n != 1 {
		t.Fatalf("%d revocations kept, want 1 (the ancient one refuses nothing)", n)
	}
}

func TestRequire(t *testing.T) {
	f := newFixture(t, nil)
	tokens := map[string]string{
		"none":   "",
		"reader": "Bearer " + f.token("reader-1", []string{RoleReader}),
		"editor": "Bearer " + f.token("editor-1", []string{RoleEditor}),
		"admin":  "Bearer " + f.token("admin-1", []string{RoleAdmin}),
		"norole": "Bearer " + f.token("norole-1", nil),
		"basic":  "Basic ZXZlOmV2ZQ==",
		"forged": "Bearer " + f.iss.Impostor().Token("eve", RoleAdmin),
	}
	tests := []struct {
		need Access
		want map[string]int // by caller; callers not listed get def
		def  int
	}{
		{Public, map[string]int{"basic": 401, "forged": 401}, 200},
		{AnyToken, map[string]int{"none": 401, "basic": 401, "forged": 401}, 200},
		{Editor, map[string]int{"none": 401, "basic": 401, "forged": 401, "reader": 403, "norole": 403}, 200},
		{Admin, map[string]int{"none": 401, "basic": 401, "forged": 401, "admin": 200}, 403},
	}
	for _, tt := range tests {
		for caller, auth := range tokens {
			want, ok := tt.want[caller]
			if !ok {
				want = tt.def
			}
			t.Run(caller+" needing "+[]string{"public", "any token", "editor", "admin"}[tt.need], func(t *testing.T) {
				a := f.serve(tt.need, http.MethodPost, auth)
				switch want {
				case 200:
					if a.status != 200 {
						t.Fatalf("status = %d, want 200 (%s)", a.status, a.body)
					}
					if caller == "none" && a.id != nil {
						t.Errorf("anonymous request has identity %+v", *a.id)
					}
					if caller != "none" && (a.id == nil || a.id.Subject != caller+"-1") {
						t.Errorf("identity in the context = %+v, want subject %s-1", a.id, caller)
					}
				case 401:
					resttest.WantProblem(t, a.rec, 401, TypeUnauthorized)
					wantWWW := `Bearer error="invalid_token"`
					if caller == "none" {
						wantWWW = "Bearer"
					}
					if got := a.header.Get("WWW-Authenticate"); got != wantWWW {
						t.Errorf("WWW-Authenticate = %q, want %q", got, wantWWW)
					}
				case 403:
					resttest.WantProblem(t, a.rec, 403, TypeForbidden)
				}
			})
		}
	}
	if got := f.counter("failures", "missing"); got != 3 {
		t.Errorf("folio_auth_failures_total{reason=missing} = %v, want 3", got)
	}
	if got := f.counter("failures", "forbidden"); got != 5 {
		t.Errorf("folio_auth_failures_total{reason=forbidden} = %v, want 5", got)
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	var cfg struct{ Authn Config }
	env := map[string]string{"FOLIO_JWKS_URL": "http://auth:8083/.well-known/jwks.json", "FOLIO_TOKEN_TTL": "5m"}
	if err := config.Load(&cfg, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	want := Config{JWKSURL: "http://auth:8083/.well-known/jwks.json", Issuer: "folio-auth", Audience: "folio", MaxTTL: 5 * time.Minute}
	got := cfg.Authn
	if got.JWKSURL != want.JWKSURL || got.Issuer != want.Issuer || got.Audience != want.Audience || got.MaxTTL != want.MaxTTL || got.Now != nil {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
