package gateway

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestJWKSFetchedOnceUnderConcurrentFirstUse(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("ed", []string{RoleEditor})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 16 {
		wg.Go(func() {
			if r := h.do("POST", "/books", tok, "{}", nil); r.status != http.StatusOK {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of 16 requests failed", failed.Load())
	}
	if got := h.jwks.hits.Load(); got != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", got)
	}
}

func TestStaleJWKSIsRefreshedAndDropsRetiredKeys(t *testing.T) {
	var offset atomic.Int64
	h := newHarness(t, func(c *Config) {
		c.JWKSMaxAge = time.Minute
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	tok := h.token("ed", []string{RoleEditor}, func(c *claims) { c.ExpiresAt.Time = c.ExpiresAt.Add(time.Hour) })
	if r := h.do("POST", "/books", tok, "{}", nil); r.status != http.StatusOK {
		t.Fatalf("status = %d, want 200", r.status)
	}
	// The auth service retires the key; once the cached set is older than its
	// maximum age the gateway fetches again and stops accepting the key.
	h.jwks.mu.Lock()
	h.jwks.keys = []signingKey{newKey(t, "key-2")}
	h.jwks.mu.Unlock()
	if r := h.do("POST", "/books", tok, "{}", nil); r.status != http.StatusOK {
		t.Fatalf("within the max age: status = %d, want 200 (the cached key)", r.status)
	}
	offset.Store(int64(2 * time.Minute))
	wantProblem(t, h.do("POST", "/books", tok, "{}", nil), http.StatusUnauthorized)
	if got := h.jwks.hits.Load(); got != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", got)
	}
}

func TestJWKSDownRejectsWithoutHammering(t *testing.T) {
	h := newHarness(t, nil)
	h.jwks.Close()
	tok := h.token("ed", []string{RoleEditor})
	for range 10 {
		wantProblem(t, h.do("POST", "/books", tok, "{}", nil), http.StatusUnauthorized)
	}
	// Public reads do not need the key set at all.
	if r := h.do("GET", "/books", "", "", nil); r.status != http.StatusOK {
		t.Fatalf("public read with the JWKS down: status = %d, want 200", r.status)
	}
}

func TestCachedTokenStillExpires(t *testing.T) {
	var offset atomic.Int64
	h := newHarness(t, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	tok := h.token("ed", []string{RoleEditor}, func(c *claims) { c.ExpiresAt.Time = time.Now().Add(time.Minute) })
	for range 3 {
		if r := h.do("POST", "/books", tok, "{}", nil); r.status != http.StatusOK {
			t.Fatalf("status = %d, want 200", r.status)
		}
	}
	offset.Store(int64(time.Minute + Leeway + time.Second))
	wantProblem(t, h.do("POST", "/books", tok, "{}", nil), http.StatusUnauthorized)
}

func TestTokenCacheIsBounded(t *testing.T) {
	c := tokenCache{max: 10, ttl: time.Minute}
	ks := &keySet{}
	now := time.Unix(0, 0)
	for i := range 100 {
		c.put(string(rune('a'+i%26))+time.Duration(i).String(), Identity{Subject: "s"}, ks, now.Add(time.Hour), now)
	}
	if n := len(c.entries); n > 10 {
		t.Fatalf("%d tokens cached, want at most 10", n)
	}
	c.put("tok", Identity{Subject: "s"}, ks, now.Add(time.Hour), now)
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
