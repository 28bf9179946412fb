package outbox_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/broker"
	"folio/internal/platform/outbox"
	"folio/internal/platform/polltest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// instance is one process's view of a SQLite outbox that several share: a
// handle of its own on the file, a relay, a broker double and metrics.
type instance struct {
	db    *sqldb.DB
	relay *outbox.Relay
	reg   *prometheus.Registry
	stop  func()
}

// sharedFile opens n handles on one new SQLite file, each migrated as a
// service's start does.
func sharedFile(t *testing.T, n int) []*sqldb.DB {
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "shared.db")
	var dbs []*sqldb.DB
	for range n {
		db := sqldbtest.Open(t, dsn, service)
		if err := outbox.Migrate(context.Background(), db); err != nil {
			t.Fatal(err)
		}
		dbs = append(dbs, db)
	}
	return dbs
}

func startInstance(t *testing.T, db *sqldb.DB, pub broker.Publisher, lease time.Duration) *instance {
	reg := prometheus.NewRegistry()
	r := newRelay(t, db, pub, reg)
	r.LeaseDuration = lease
	return &instance{db: db, relay: r, reg: reg, stop: run(t, r)}
}

func (in *instance) leader(t *testing.T) bool {
	return metric(t, in.reg, "folio_outbox_relay_leader") == 1
}

// Three instances on one SQLite file: one relay publishes, every event once, in
// order; the others wait.
func TestOneRelayPublishesASharedSQLiteFile(t *testing.T) {
	ctx := context.Background()
	dbs := sharedFile(t, 3)
	pubs := []*batchPublisher{{}, {}, {}}
	var instances []*instance
	for i, db := range dbs {
		instances = append(instances, startInstance(t, db, pubs[i], 0)) // the default lease
	}
	var want []string
	for i := range 90 {
		in := instances[i%3]
		want = append(want, write(t, ctx, in.db, "book.updated", fmt.Sprintf("b%d", i%4)))
		in.relay.Notify()
	}
	all := func() []string {
		var got []string
		for _, p := range pubs {
			got = append(got, ids(p.received())...)
		}
		return got
	}
	polltest.Until(t, "every event to be published", polltest.Holds(func() bool { return len(all()) >= len(want) }))
	polltest.Until(t, "every row to be marked sent", polltest.Holds(func() bool { return count(t, dbs[0], "sent_at IS NULL") == 0 }))

	var publishers, leaders []int
	for i, p := range pubs {
		if len(p.received()) > 0 {
			publishers = append(publishers, i)
		}
		if instances[i].leader(t) {
			leaders = append(leaders, i)
		}
	}
	if len(publishers) != 1 || len(leaders) != 1 || publishers[0] != leaders[0] {
		t.Fatalf("instances %v published and %v say they lead; want one, the same", publishers, leaders)
	}
	if got := all(); !equal(got, want) {
		t.Fatalf("published (%d)\n%v\nwant (%d)\n%v", len(got), got, len(want), want)
	}
}

// freezingPublisher stands for a relay's process stopped (SIGSTOP) in the middle of
// a publish: its first call blocks, whatever its context says, until thaw; the
// message then reaches the broker, as bytes written before the stop would.
type freezingPublisher struct {
	batchPublisher
	frozen   chan struct{} // closed once the first call blocks
	thaw     chan struct{}
	once     sync.Once
	batching bool // offer PublishBatch (else the relay publishes one by one)
}

func newFreezingPublisher(batching bool) *freezingPublisher {
	return &freezingPublisher{frozen: make(chan struct{}), thaw: make(chan struct{}), batching: batching}
}

func (p *freezingPublisher) freeze() {
	first := false
	p.once.Do(func() { first = true })
	if first {
		close(p.frozen)
		<-p.thaw
	}
}

func (p *freezingPublisher) Publish(ctx context.Context, m broker.Message) error {
	p.freeze()
	return p.publisher.Publish(context.WithoutCancel(ctx), m)
}

func (p *freezingPublisher) PublishBatch(ctx context.Context, ms []broker.Message) (int, error) {
	p.freeze()
	return p.batchPublisher.PublishBatch(context.WithoutCancel(ctx), ms)
}

// onlyPublisher hides PublishBatch, so that the relay publishes one at a time.
type onlyPublisher struct{ p *freezingPublisher }

func (o onlyPublisher) Publish(ctx context.Context, m broker.Message) error {
	return o.p.Publish(ctx, m)
}
func (o onlyPublisher) Close() error { return nil }

// The leader stops in the middle of a publish: another instance takes over once
// its lease expires and publishes everything; the old leader, resumed, sends
// nothing more and marks nothing, and follows.
func TestStoppedLeaderIsTakenOverAndFenced(t *testing.T) {
	for _, batching := range []bool{false, true} {
		t.Run(map[bool]string{false: "one by one", true: "batches"}[batching], func(t *testing.T) {
			ctx := context.Background()
			dbs := sharedFile(t, 2)
			frozen := newFreezingPublisher(batching)
			var pub broker.Publisher = frozen
			if !batching {
				pub = onlyPublisher{frozen}
			}
			// A short lease, so that the takeover comes soon.
			old := startInstance(t, dbs[0], pub, 200*time.Millisecond)
			var want []string
			for i := range 5 {
				want = append(want, write(t, ctx, dbs[0], "book.created", fmt.Sprintf("b%d", i)))
			}
			old.relay.Notify()
			select {
			case <-frozen.frozen:
			case <-time.After(wait):
				t.Fatal("the first relay never published")
			}
			// The new leader's lease outlasts the test, so that the old one,
			// resumed, cannot take it back, however slow the machine.
			fresh := &batchPublisher{}
			next := startInstance(t, dbs[1], fresh, 10*wait)
			polltest.Until(t, "the second relay to publish the events", polltest.Holds(func() bool { return len(fresh.received()) >= len(want) }))
			if !next.leader(t) {
				t.Error("the relay that took over does not say it leads")
			}

			close(frozen.thaw)
			polltest.Until(t, "the resumed relay to find it lost the lease", polltest.Holds(func() bool { return !old.leader(t) }))
			for i := 5; i < 10; i++ {
				want = append(want, write(t, ctx, dbs[0], "book.created", fmt.Sprintf("b%d", i)))
				old.relay.Notify()
				next.relay.Notify()
			}
			polltest.Until(t, "the new events to be published", polltest.Holds(func() bool { return len(fresh.received()) >= len(want) }))
			polltest.Until(t, "every row to be marked sent", polltest.Holds(func() bool { return count(t, dbs[0], "sent_at IS NULL") == 0 }))
			old.stop()

			if got := ids(fresh.received()); !equal(got, want) {
				t.Errorf("the new leader published\n%v\nwant\n%v", got, want)
			}
			// What was in flight when it stopped, and nothing after.
			if batching {
				if batches, _ := frozen.calls(); len(batches) != 1 {
					t.Errorf("the stopped relay made %d publish calls %v, want the one it was stopped in", len(batches), batches)
				}
			} else if got := ids(frozen.received()); !equal(got, want[:1]) {
				t.Errorf("the stopped relay published %v, want only %v, in flight when it stopped", got, want[:1])
			}
		})
	}
}

// A relay that stops hands the lease on: the next takes over at once, not when
// the lease would have expired.
func TestStoppingRelayReleasesTheLease(t *testing.T) {
	ctx := context.Background()
	dbs := sharedFile(t, 2)
	first, second := &batchPublisher{}, &batchPublisher{}
	// Leases longer than the test: only a release lets the second publish.
	a := startInstance(t, dbs[0], first, 10*wait)
	polltest.Until(t, "the first relay to lead", polltest.Holds(func() bool { return a.leader(t) }))
	b := startInstance(t, dbs[1], second, 10*wait)
	before := write(t, ctx, dbs[1], "book.created", "b1")
	a.relay.Notify()
	polltest.Until(t, "the first relay to publish", polltest.Holds(func() bool { return len(first.received()) == 1 }))
	a.stop()
	after := write(t, ctx, dbs[1], "book.created", "b2")
	b.relay.Notify()
	polltest.Until(t, "the second relay to take over and publish", polltest.Holds(func() bool { return len(second.received()) == 1 }))
	if got := slices.Concat(ids(first.received()), ids(second.received())); !equal(got, []string{before, after}) {
		t.Errorf("published %v, want %v", got, []string{before, after})
	}
	if a.leader(t) || !b.leader(t) {
		t.Errorf("leaders: stopped relay %t, running one %t; want false, true", a.leader(t), b.leader(t))
	}
}
