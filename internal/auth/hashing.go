package auth

import (
	"context"
	"fmt"
	"sync"
	"time"

	"folio/internal/platform/fault"
)

// hashGate caps the argon2id runs in flight. Each run holds 19 MiB for its whole
// length, so without a cap memory grows with the number of concurrent registers and
// logins, and with a cap of about the number of cores throughput is the same: the
// hashes are CPU-bound.
type hashGate struct {
	slots chan struct{}
	wait  time.Duration

	mu            sync.Mutex
	running, peak int    // argon2id runs in flight, and the most there ever were
	waiting       int    // requests waiting for a slot
	hook          func() // Options.OnHash
}

func newHashGate(slots int, wait time.Duration) *hashGate {
	return &hashGate{slots: make(chan struct{}, slots), wait: wait}
}

type heldSlot struct{}

// acquire takes a slot for ctx's request, waiting at most the gate's wait, and
// returns what gives it back. A request that holds a slot already (see hold) takes
// no second one: its hashes run one after another.
func (g *hashGate) acquire(ctx context.Context) (release func(), err error) {
	if ctx.Value(heldSlot{}) != nil {
		return func() {}, nil
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	g.mu.Lock()
	g.waiting++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.waiting--
		g.mu.Unlock()
	}()
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	case <-t.C:
		// Every slot stayed taken for the whole wait: the client is told to come back
		// after about as long, rather than queue without bound.
		return nil, &fault.Error{Kind: fault.Overloaded, Message: "too many password checks in progress; retry later",
			RetryAfter: g.wait}
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a password-hashing slot: %w", ctx.Err())
	}
}

// run runs one argon2id computation, counting it.
func (g *hashGate) run(f func()) {
	g.mu.Lock()
	g.running++
	g.peak = max(g.peak, g.running)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.running--
		g.mu.Unlock()
	}()
	if g.hook != nil {
		g.hook()
	}
	f()
}

// HashLoad returns the argon2id runs in flight, the most there ever were at once,
// and the requests waiting for a slot.
func (s *Service) HashLoad() (running, peak, waiting int) {
	g := s.hashes
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.peak, g.waiting
}
