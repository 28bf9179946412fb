package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// rateLimiter gives each client a budget of requests. allow takes one request from
// key's budget; when there is none it refuses, with how long until there will be.
type rateLimiter interface {
	allow(ctx context.Context, key string) (verdict, time.Duration)
	sweep()
}

// redisLimiter keeps the budgets in Redis (GCRA, by redis_rate), so that every
// gateway instance draws on one budget per client.
type redisLimiter struct {
	rdb    *redis.Client
	lim    *redis_rate.Limiter
	limit  redis_rate.Limit
	prefix string
	log    *slog.Logger
	m      *instruments
}

func newRedisLimiter(url, prefix string, perSecond float64, burst int, log *slog.Logger, m *instruments) (*redisLimiter, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	// A slow Redis must not slow every request down; past these deadlines the
	// request is let through (see allow).
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, 200*time.Millisecond, 200*time.Millisecond
	rdb := redis.NewClient(opt)
	// GCRA needs a whole number of requests per period; per minute keeps fractional
	// per-second rates exact enough.
	limit := redis_rate.Limit{Rate: max(1, int(math.Round(perSecond*60))), Period: time.Minute, Burst: burst}
	return &redisLimiter{rdb: rdb, lim: redis_rate.NewLimiter(rdb), limit: limit, prefix: prefix, log: log, m: m}, nil
}

// allow lets the request through when Redis cannot answer: the limiter protects the
// services from one client's excess, and an outage of Redis should not become an
// outage of the whole API. Such requests are counted in
// gateway_rate_limiter_errors_total.
func (l *redisLimiter) allow(ctx context.Context, key string) (verdict, time.Duration) {
	res, err := l.lim.Allow(ctx, l.prefix+key, l.limit)
	if err != nil {
		l.m.limiterErrors.Inc()
		l.log.WarnContext(ctx, "rate limiter unavailable; request let through", "err", err)
		return unchecked, 0
	}
	if res.Allowed > 0 {
		return admitted, 0
	}
	return refused, res.RetryAfter
}

// sweep has nothing to do: Redis expires idle budgets itself.
func (l *redisLimiter) sweep() {}

func (l *redisLimiter) close() error { return l.rdb.Close() }
