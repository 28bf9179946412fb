package gateway

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter keeps one token bucket per client, in memory bounded by max clients.
// A client idle long enough for its bucket to refill is forgotten: a new bucket for
// it would be the same.
type limiter struct {
	rate  rate.Limit
	burst int
	max   int
	idle  time.Duration
	now   func() time.Time

	mu      sync.Mutex
	clients map[string]*bucket
}

// verdict is a rate limiter's answer to one request.
type verdict uint8

const (
	admitted  verdict = iota // within the client's budget
	refused                  // over it: the client gets 429
	unchecked                // let through because the shared limiter could not be asked
)

type bucket struct {
	lim  *rate.Limiter
	seen time.Time // guarded by limiter.mu
}

func newLimiter(perSecond float64, burst, maxClients int, now func() time.Time) *limiter {
	idle := time.Duration(float64(burst) / perSecond * float64(time.Second))
	idle = max(idle, 10*time.Second)
	return &limiter{rate: rate.Limit(perSecond), burst: burst, max: maxClients, idle: idle, now: now,
		clients: make(map[string]*bucket)}
}

// allow takes one token from key's bucket. When there is none it refuses, with
// how long until there will be.
func (l *limiter) allow(_ context.Context, key string) (verdict, time.Duration) {
	now := l.now()
	l.mu.Lock()
	b := l.clients[key]
	if b == nil {
		if len(l.clients) >= l.max {
			l.evictLocked(now)
		}
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.clients[key] = b
	}
	b.seen = now
	l.mu.Unlock()

	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return refused, time.Second
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return admitted, 0
	}
	r.CancelAt(now)
	return refused, d
}

// sweep forgets idle clients.
func (l *limiter) sweep() {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.clients {
		if now.Sub(b.seen) > l.idle {
			delete(l.clients, k)
		}
	}
}

// evictLocked makes room: first idle clients go, then, if the map is still full
// (a flood of distinct clients), arbitrary ones until a tenth of the room is free.
func (l *limiter) evictLocked(now time.Time) {
	for k, b := range l.clients {
		if now.Sub(b.seen) > l.idle {
			delete(l.clients, k)
		}
	}
	target := l.max - l.max/10 - 1
	for k := range l.clients {
		if len(l.clients) <= target {
			break
		}
		delete(l.clients, k)
	}
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
