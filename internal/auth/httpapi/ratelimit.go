package httpapi

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"folio/internal/auth"
	"folio/internal/platform/fault"
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

// Limits are the per-client limits of logins and registrations, kept in memory per
// client address and per account at that address, so that a flood from one client
// never locks out another. Zero fields take the defaults.
type Limits struct {
	Email    Limit // DefaultEmailLimit: logins per account and client address
	IP       Limit // DefaultIPLimit: logins per client address
	Register Limit // DefaultRegisterLimit: registrations per client address
	// Now is the clock the buckets refill by (time.Now).
	Now func() time.Time
}

// clientLimits are the buckets of one API's Limits.
type clientLimits struct {
	login    *loginLimiter
	register *limiter
	now      func() time.Time
}

func newClientLimits(l Limits) *clientLimits {
	if l.Email == (Limit{}) {
		l.Email = DefaultEmailLimit
	}
	if l.IP == (Limit{}) {
		l.IP = DefaultIPLimit
	}
	if l.Register == (Limit{}) {
		l.Register = DefaultRegisterLimit
	}
	if l.Now == nil {
		l.Now = time.Now
	}
	return &clientLimits{
		login:    &loginLimiter{email: newLimiter(l.Email), ip: newLimiter(l.IP)},
		register: newLimiter(l.Register),
		now:      l.Now,
	}
}

// allowLogin takes one login attempt of in's account from client. Errors:
// RateLimited.
func (c *clientLimits) allowLogin(in auth.Credentials, client string) error {
	var email string
	if in.Email != nil {
		email, _ = auth.NormalizeEmail(*in.Email)
	}
	// The bucket key is bounded, so that huge emails cannot make the limiter huge.
	// The account's bucket is per client address too: one per account alone would let
	// anyone who knows an email lock its owner out by failing on purpose.
	if ok, wait := c.login.allow(email[:min(len(email), auth.MaxEmail)]+"\x00"+client, client, c.now()); !ok {
		return rateLimited("too many login attempts; retry later", wait)
	}
	return nil
}

// allowRegister takes one registration attempt from client's bucket. Errors:
// RateLimited.
func (c *clientLimits) allowRegister(client string) error {
	if r, wait := c.register.reserve(client, c.now()); r == nil {
		return rateLimited("too many registrations from this address; retry later", wait)
	}
	return nil
}

func rateLimited(message string, wait time.Duration) error {
	return &fault.Error{Kind: fault.RateLimited, Message: message, RetryAfter: wait}
}

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
func (l *loginLimiter) allow(email, ip string, now time.Time) (bool, time.Duration) {
	ri, di := l.ip.reserve(ip, now)
	if ri == nil {
		return false, wholeSeconds(di)
	}
	re, de := l.email.reserve(email, now)
	if re == nil {
		ri.CancelAt(now)
		return false, wholeSeconds(de)
	}
	return true, 0
}

// wholeSeconds rounds d up to whole seconds, at least one: Retry-After has no finer
// unit, and a client told 0 would retry at once.
func wholeSeconds(d time.Duration) time.Duration {
	return time.Duration(max(1, int(math.Ceil(d.Seconds())))) * time.Second
}
