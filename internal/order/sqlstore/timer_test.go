package sqlstore_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"folio/internal/order"
	"folio/internal/order/sqlstore"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb"
)

// fixedClock is a clock a test moves.
type fixedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fixedClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fixedClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTimerService(t *testing.T, s *sqlstore.Store, c *fixedClock) *order.Service {
	t.Helper()
	svc, err := order.NewService(s, order.Config{Timing: timing, Now: c.Now,
		Seal: func(p []byte) (string, error) { return "x25519:test", nil }}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestTimersOfSeveralInstancesActOnce runs the timers of three instances over one
// database at the same moments: every due order is re-sent, then compensated,
// exactly once.
func TestTimersOfSeveralInstancesActOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *sqldb.DB, s *sqlstore.Store) {
		ctx := context.Background()
		c := &fixedClock{now: now()}
		instances := []*order.Service{newTimerService(t, s, c), newTimerService(t, s, c), newTimerService(t, s, c)}
		const orders = 12
		for range orders {
			if _, err := instances[0].Place(ctx, "u1", order.Input{
				Items: []order.ItemInput{{BookID: id.New(), Quantity: 1}},
				Card:  order.CardInput{Number: "4242424242424242", Expiry: "12/99", CVC: "123"},
			}); err != nil {
				t.Fatal(err)
			}
		}
		_, seq := outboxtest.Events(t, db, 0)
		tickAll := func() int {
			var wg sync.WaitGroup
			var mu sync.Mutex
			total := 0
			for _, svc := range instances {
				wg.Go(func() {
					n, err := svc.Tick(ctx)
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					total += n
					mu.Unlock()
				})
			}
			wg.Wait()
			return total
		}
		count := func(typ string) int {
			events, last := outboxtest.Events(t, db, seq)
			seq = last
			n := 0
			for _, e := range events {
				if e.Envelope.Type == typ {
					n++
				}
			}
			return n
		}
		if n := tickAll(); n != 0 {
			t.Errorf("nothing due yet, yet %d changed", n)
		}
		c.Add(timing.RetryInterval)
		if n := tickAll(); n != orders {
			t.Errorf("re-sends: %d changed, want %d", n, orders)
		}
		if n := count(order.CommandReserve); n != orders {
			t.Errorf("re-sent %d reserves, want %d", n, orders)
		}
		c.Add(timing.StepTimeout)
		if n := tickAll(); n != orders {
			t.Errorf("timeouts: %d changed, want %d", n, orders)
		}
		if n := count(order.CommandRelease); n != orders {
			t.Errorf("sent %d releases, want %d", n, orders)
		}
		due, err := s.Due(ctx, c.Now(), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) != 0 {
			t.Errorf("%d orders still due right after the tick", len(due))
		}
	})
}
