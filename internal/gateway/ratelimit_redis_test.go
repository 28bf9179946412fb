package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// redisURL returns FOLIO_TEST_REDIS_URL, skipping the test without it (failing it
// when FOLIO_REQUIRE_INTEGRATION=1).
func redisURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("FOLIO_TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("FOLIO_TEST_REDIS_URL is not set and FOLIO_REQUIRE_INTEGRATION=1")
		}
		t.Skip("Redis tests skipped: set FOLIO_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0) to run them")
	}
	return url
}

// TestRedisRateLimitIsShared runs two gateways on one Redis: a client's burst is one
// budget across both, and another client's budget is its own.
func TestRedisRateLimitIsShared(t *testing.T) {
	url := redisURL(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "folio:test:" + hex.EncodeToString(b) + ":"
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, "*"+prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
	})

	shared := func(c *Config) {
		c.RedisURL, c.RedisKeyPrefix = url, prefix
		c.RateLimit, c.RateBurst = 0.01, 4 // one request per 100 s after a burst of 4
	}
	one := newHarness(t, shared)
	two := newHarness(t, func(c *Config) {
		shared(c)
		c.JWKSURL = one.iss.JWKSURL() // same signing keys, same subjects
	})
	alice := one.token("alice", []string{"reader"})

	var limited int
	for i := range 8 {
		h := one
		if i%2 == 1 {
			h = two
		}
		r := h.do(http.MethodGet, "/books", alice, "", nil)
		switch r.status {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			limited++
			if r.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		default:
			t.Fatalf("request %d: got %d %s", i, r.status, r.body)
		}
	}
	// Alone, each gateway would have let all 4 of its requests through.
	if limited != 4 {
		t.Errorf("%d of 8 requests across two gateways were refused, want 4 (one shared burst of 4)", limited)
	}
	bob := one.token("bob", []string{"reader"})
	if r := two.do(http.MethodGet, "/books", bob, "", nil); r.status != http.StatusOK {
		t.Errorf("another client: got %d, want 200", r.status)
	}
}

// TestRedisDownLetsRequestsThrough: when the shared limiter cannot be asked, the
// gateway serves rather than failing every request.
func TestRedisDownLetsRequestsThrough(t *testing.T) {
	dead := "redis://" + strings.TrimPrefix(closedURL(t), "http://") + "/0"
	h := newHarness(t, func(c *Config) { c.RedisURL, c.RateLimit, c.RateBurst = dead, 1, 1 })
	for i := range 3 {
		if r := h.do(http.MethodGet, "/books", "", "", nil); r.status != http.StatusOK {
			t.Fatalf("request %d with Redis down: got %d %s, want 200", i, r.status, r.body)
		}
	}
	if got := testutil.ToFloat64(h.gw.metrics.limiterErrors); got != 3 {
		t.Errorf("limiter errors counted: got %v, want 3", got)
	}
}
