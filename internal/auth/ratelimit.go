package auth

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a token bucket: Burst attempts at once, one more every Every.
type Limit struct {
	Every time.Duration // one attempt is given back every Every
	Burst int
}

// Default limits. Logins: 5 attempts a minute with a burst of 10 per email at one
// client address, 30 a minute with a burst of 60 per client address. Registrations:
// 10 a minute with a burst of 20 per client address.
var (
	DefaultEmailLimit    = Limit{Every: time.Minute / 5, Burst: 10}
	DefaultIPLimit       = Limit{Every: time.Minute / 30, Burst: 60}
	DefaultRegisterLimit = Limit{Every: time.Minute / 10, Burst: 20}
)

// maxBuckets bounds the memory of one limiter.
const maxBuckets = 100_000

// limiter keeps one token bucket per key in memory. Buckets that are full again hold
// no information and are dropped; past maxBuckets, arbitrary buckets are dropped too,
// so memory stays bounded whatever the traffic.
type limiter struct {
	limit   rate.Limit
	burst   int
	max     int // buckets held at most
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(l Limit) *limiter {
	return &limiter{limit: rate.Every(l.Every), burst: l.Burst, max: maxBuckets, buckets: map[string]*rate.Limiter{}}
}

// reserve takes one attempt for key at now. When none is left it takes nothing and
// returns how long until one is.
func (l *limiter) reserve(key string, now time.Time) (*rate.Reservation, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return nil, time.Minute
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return nil, d
	}
	return r, 0
}

// evict drops the full buckets, then arbitrary ones until a tenth of the room is free.
func (l *limiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.max*9/10 {
			break
		}
		delete(l.buckets, k)
	}
}

// size returns the number of buckets held.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// loginLimiter limits login attempts per account at a client address and per client
// address.
type loginLimiter struct {
	email, ip *limiter
}

// allow takes one attempt from both buckets, or from neither when either is empty, in
// which case it returns the wait in whole seconds (at least 1).
func (l *loginLimiter) allow(email, ip string, now time.Time) (bool, int) {
	ri, di := l.ip.reserve(ip, now)
	if ri == nil {
		return false, seconds(di)
	}
	re, de := l.email.reserve(email, now)
	if re == nil {
		ri.CancelAt(now)
		return false, seconds(de)
	}
	return true, 0
}

func seconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
