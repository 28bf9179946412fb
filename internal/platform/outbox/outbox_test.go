package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"folio/internal/platform/broker"
	"folio/internal/platform/logging"
	"folio/internal/platform/outbox"
	"folio/internal/platform/polltest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
	"folio/internal/platform/tracing"
	"folio/internal/platform/tracing/tracingtest"
)

// service stands for a service's own migrations, which the outbox's are applied
// beside.
var service = fstest.MapFS{
	"migrations/sqlite/00001_books.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE books (id TEXT PRIMARY KEY, title TEXT NOT NULL);\n")},
	"migrations/postgres/00001_books.sql": {Data: []byte("-- +goose Up\nCREATE TABLE books (id TEXT PRIMARY KEY, title TEXT NOT NULL);\n")},
}

// wait is how long a test waits for something the relay should do: polltest's
// deadline, generous, so that only a real failure runs into it.
const wait = polltest.Deadline

func open(t *testing.T, suite func(t *testing.T, db *sqldb.DB)) {
	sqldbtest.ForEach(t, service, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		for range 2 { // a second run finds nothing to do
			if err := outbox.Migrate(ctx, db); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
		}
		var version int64
		if err := db.QueryRow(`SELECT MAX(version_id) FROM folio_outbox_version`).Scan(&version); err != nil || version != 2 {
			t.Fatalf("folio_outbox_version: version %d, %v; want 2", version, err)
		}
		suite(t, db)
	})
}

// publisher is a broker test double that records what it is sent, and can be made
// to fail or to hang to inject faults.
type publisher struct {
	mu       sync.Mutex
	msgs     []broker.Message
	down     bool // every publish fails
	failNext int  // so many next publishes fail
	hang     bool // publishes block until their context ends
	attempts int
	failures int
}

func (p *publisher) Publish(ctx context.Context, m broker.Message) error {
	p.mu.Lock()
	p.attempts++
	hang := p.hang
	if !hang && (p.down || p.failNext > 0) {
		if p.failNext > 0 {
			p.failNext--
		}
		p.failures++
		p.mu.Unlock()
		return errors.New("broker unavailable")
	}
	if !hang {
		p.msgs = append(p.msgs, m)
	}
	p.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (p *publisher) Close() error { return nil }

func (p *publisher) set(f func(p *publisher)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *publisher) received() []broker.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]broker.Message(nil), p.msgs...)
}

func (p *publisher) stats() (attempts, failures int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts, p.failures
}

// batchPublisher is a publisher that also pipelines (broker.BatchPublisher), so
// the relay gives it whole batches. Each call takes the next entry of script: so
// many leading messages are acknowledged, then the batch fails; past the end of
// the script every batch succeeds. down and hang work as for publisher.
type batchPublisher struct {
	publisher
	script  []int
	batches [][]string // the ids offered to each call
	singles int        // Publish calls, which the relay should not make
}

func (p *batchPublisher) Publish(ctx context.Context, m broker.Message) error {
	p.mu.Lock()
	p.singles++
	p.mu.Unlock()
	return p.publisher.Publish(ctx, m)
}

func (p *batchPublisher) PublishBatch(ctx context.Context, ms []broker.Message) (int, error) {
	p.mu.Lock()
	p.attempts++
	p.batches = append(p.batches, ids(ms))
	if p.hang {
		p.mu.Unlock()
		<-ctx.Done()
		return 0, ctx.Err()
	}
	acked, err := len(ms), error(nil)
	switch {
	case p.down:
		acked, err = 0, errors.New("broker unavailable")
	case len(p.script) > 0:
		acked, err = min(p.script[0], len(ms)), errors.New("broker failed mid-batch")
		p.script = p.script[1:]
	}
	if err != nil {
		p.failures++
	}
	p.msgs = append(p.msgs, ms[:acked]...)
	p.mu.Unlock()
	return acked, err
}

func (p *batchPublisher) calls() (batches [][]string, singles int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.batches...), p.singles
}

// write commits a change to book id together with its event, as a service does.
func write(t *testing.T, ctx context.Context, db *sqldb.DB, typ, id string) string {
	t.Helper()
	eventID, err := writeEvent(ctx, db, typ, id)
	if err != nil {
		t.Fatal(err)
	}
	return eventID
}

// writeEvent is write for a goroutine other than the test's, which must hand its
// error back rather than end the test.
func writeEvent(ctx context.Context, db *sqldb.DB, typ, id string) (string, error) {
	var eventID string
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO books (id, title) VALUES ($1, $2)
			ON CONFLICT (id) DO UPDATE SET title = excluded.title`, id, typ); err != nil {
			return err
		}
		var err error
		eventID, err = outbox.Add(ctx, tx, outbox.Event{Type: typ, Aggregate: id, Data: map[string]string{"id": id, "title": typ}})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("write %s %s: %w", typ, id, err)
	}
	return eventID, nil
}

func count(t *testing.T, db *sqldb.DB, where string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM outbox WHERE ` + where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// run starts r and stops it when the test ends, failing if it does not stop.
func run(t *testing.T, r *outbox.Relay) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(wait):
			t.Fatalf("Run did not return within %v of its context ending", wait)
		}
	}
	t.Cleanup(stop)
	return stop
}

func newRelay(t *testing.T, db *sqldb.DB, pub broker.Publisher, reg prometheus.Registerer) *outbox.Relay {
	r := outbox.NewRelay(db, pub, "folio", slog.New(slog.NewTextHandler(t.Output(), nil)), reg)
	r.PollInterval = 20 * time.Millisecond
	return r
}

func ids(msgs []broker.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAddIsAtomic(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		// Tracing off: the trace context of the write goes out as it came.
		const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		ctx := tracing.Extract(logging.WithRequestID(context.Background(), "req-1"), map[string]string{"traceparent": tp})
		boom := errors.New("boom")

		err := db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := outbox.Add(ctx, tx, outbox.Event{Type: "book.created", Aggregate: "b0", Data: "x"}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx = %v, want boom", err)
		}
		if n := count(t, db, "1=1"); n != 0 {
			t.Fatalf("rolled-back transaction left %d outbox rows, want 0", n)
		}
		if err := db.InTx(ctx, func(tx *sql.Tx) error {
			_, err := outbox.Add(ctx, tx, outbox.Event{Aggregate: "b0"})
			return err
		}); err == nil {
			t.Fatal("Add without a type succeeded")
		}

		before := time.Now()
		want := []string{write(t, ctx, db, "book.created", "b1"), write(t, ctx, db, "book.updated", "b1")}
		var both []string
		if err := db.InTx(ctx, func(tx *sql.Tx) error {
			for _, id := range []string{"b2", "b3"} {
				eid, err := outbox.Add(ctx, tx, outbox.Event{Type: "book.created", Aggregate: id, Data: map[string]string{"id": id, "title": "book.created"}})
				if err != nil {
					return err
				}
				both = append(both, eid)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want = append(want, both...)
		plain := write(t, context.Background(), db, "book.deleted", "b1")
		want = append(want, plain)
		after := time.Now()
		if n := count(t, db, "1=1"); n != len(want) {
			t.Fatalf("%d outbox rows, want %d", n, len(want))
		}

		pub := &publisher{}
		run(t, newRelay(t, db, pub, nil))
		polltest.Until(t, "the events to be published", polltest.Holds(func() bool { return len(pub.received()) >= len(want) }))
		got := pub.received()
		if !equal(ids(got), want) {
			t.Fatalf("published %v, want %v", ids(got), want)
		}
		aggregates := []string{"b1", "b1", "b2", "b3", "b1"}
		types := []string{"book.created", "book.updated", "book.created", "book.created", "book.deleted"}
		for i, m := range got {
			if m.Subject != "folio."+types[i] {
				t.Errorf("message %d subject %q, want %q", i, m.Subject, "folio."+types[i])
			}
			var env broker.Envelope
			if err := json.Unmarshal(m.Body, &env); err != nil {
				t.Fatalf("message %d body %s: %v", i, m.Body, err)
			}
			if env.ID != m.ID || env.Type != types[i] {
				t.Errorf("message %d envelope id %q type %q, want %q %q", i, env.ID, env.Type, m.ID, types[i])
			}
			if env.OccurredAt.Location() != time.UTC || env.OccurredAt.Before(before.Add(-time.Second)) || env.OccurredAt.After(after.Add(time.Second)) {
				t.Errorf("message %d occurred_at %v, want UTC between %v and %v", i, env.OccurredAt, before, after)
			}
			wantData := fmt.Sprintf(`{"id":%q,"title":%q}`, aggregates[i], types[i])
			if string(env.Data) != wantData {
				t.Errorf("message %d data %s, want %s", i, env.Data, wantData)
			}
			written, err := time.Parse(time.RFC3339Nano, m.Header[broker.HeaderWrittenAt])
			if err != nil || !written.Equal(env.OccurredAt) {
				t.Errorf("message %d written at %q (%v), want its occurred_at %v", i, m.Header[broker.HeaderWrittenAt], err, env.OccurredAt)
			}
			if m.ID == plain {
				if len(m.Header) != 1 {
					t.Errorf("message without request context has headers %v, want only %s", m.Header, broker.HeaderWrittenAt)
				}
				continue
			}
			if m.Header[broker.HeaderRequestID] != "req-1" || m.Header[broker.HeaderTraceparent] != tp {
				t.Errorf("message %d headers %v, want request id req-1 and traceparent %s", i, m.Header, tp)
			}
		}
	})
}

func TestRelayLosesAndReordersNothingWhileBrokerFails(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		reg := prometheus.NewRegistry()
		pub := &publisher{down: true}
		r := newRelay(t, db, pub, reg)
		r.BatchSize = 7 // several batches
		run(t, r)

		var want []string
		for i := range 30 {
			want = append(want, write(t, ctx, db, "book.updated", fmt.Sprintf("b%d", i%3)))
		}
		r.Notify()
		polltest.Until(t, "three failed publish attempts", polltest.Holds(func() bool { _, f := pub.stats(); return f >= 3 }))
		if got := pub.received(); len(got) != 0 {
			t.Fatalf("%d messages published while the broker was down", len(got))
		}
		if pending, _, err := r.Lag(ctx); err != nil || pending != 30 {
			t.Fatalf("Lag while down: %d pending, %v; want 30", pending, err)
		}

		pub.set(func(p *publisher) { p.down = false })
		polltest.Until(t, "the backlog to be published", polltest.Holds(func() bool { return len(pub.received()) >= 30 }))

		// Brief failures in the middle of a stream.
		pub.set(func(p *publisher) { p.failNext = 3 })
		for i := range 20 {
			want = append(want, write(t, ctx, db, "book.updated", fmt.Sprintf("b%d", i%3)))
			r.Notify()
		}
		polltest.Until(t, "every event to be published", polltest.Holds(func() bool { return len(pub.received()) >= len(want) }))
		if got := ids(pub.received()); !equal(got, want) {
			t.Fatalf("published in order\n%v\nwant\n%v", got, want)
		}
		polltest.Until(t, "no event to be pending", polltest.Holds(func() bool {
			pending, _, err := r.Lag(ctx)
			return err == nil && pending == 0 && metric(t, reg, "folio_outbox_pending") == 0
		}))
		if got := metric(t, reg, "folio_outbox_published_total"); got != 50 {
			t.Errorf("folio_outbox_published_total = %v, want 50", got)
		}
		_, failures := pub.stats()
		if got := metric(t, reg, "folio_outbox_publish_errors_total"); int(got) != failures {
			t.Errorf("folio_outbox_publish_errors_total = %v, want %d", got, failures)
		}
	})
}

// A BatchPublisher gets whole batches; when one fails part way, only its
// acknowledged prefix is marked sent, and the next batch starts at the first
// event it did not acknowledge: nothing lost, nothing twice, nothing reordered.
func TestRelayPipelinesBatchesAndRetriesTheUnacknowledgedRest(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		reg := prometheus.NewRegistry()
		var want []string
		for i := range 35 {
			want = append(want, write(t, ctx, db, "book.updated", fmt.Sprintf("b%d", i%3)))
		}
		pub := &batchPublisher{script: []int{4, 0, 9, 3}}
		r := newRelay(t, db, pub, reg)
		r.BatchSize = 10
		run(t, r)

		polltest.Until(t, "the events to be published", polltest.Holds(func() bool { return len(pub.received()) >= len(want) }))
		if got := ids(pub.received()); !equal(got, want) {
			t.Fatalf("published in order\n%v\nwant\n%v", got, want)
		}
		// Acknowledged 4 of 10, 0 of 10, 9 of 10, 3 of 10, then all.
		wantBatches := [][2]int{{0, 10}, {4, 14}, {4, 14}, {13, 23}, {16, 26}, {26, 35}}
		batches, singles := pub.calls()
		if len(batches) != len(wantBatches) {
			t.Fatalf("%d batches %v, want %d", len(batches), batches, len(wantBatches))
		}
		for i, b := range batches {
			if w := want[wantBatches[i][0]:wantBatches[i][1]]; !equal(b, w) {
				t.Errorf("batch %d offered\n%v\nwant\n%v", i, b, w)
			}
		}
		if singles != 0 {
			t.Errorf("%d single publishes to a BatchPublisher", singles)
		}
		// The relay marks a batch and counts it after the broker has taken it,
		// so the last batch may still be on its way to the database here.
		polltest.Until(t, "every row to be marked sent", polltest.Holds(func() bool { return count(t, db, "sent_at IS NULL") == 0 }))
		if got := metric(t, reg, "folio_outbox_published_total"); got != 35 {
			t.Errorf("folio_outbox_published_total = %v, want 35", got)
		}
		if got := metric(t, reg, "folio_outbox_publish_errors_total"); got != 4 {
			t.Errorf("folio_outbox_publish_errors_total = %v, want 4", got)
		}

		// The broker down for a while, writes going on.
		pub.set(func(p *publisher) { p.down = true })
		for i := range 12 {
			want = append(want, write(t, ctx, db, "book.updated", fmt.Sprintf("b%d", i%3)))
		}
		r.Notify()
		polltest.Until(t, "three failed batches", polltest.Holds(func() bool { _, f := pub.stats(); return f >= 4+3 }))
		if n := len(pub.received()); n != 35 {
			t.Fatalf("%d messages published, want the 35 from before the broker went down", n)
		}
		pub.set(func(p *publisher) { p.down = false })
		polltest.Until(t, "the backlog to be published", polltest.Holds(func() bool { return len(pub.received()) >= len(want) }))
		if got := ids(pub.received()); !equal(got, want) {
			t.Fatalf("published in order\n%v\nwant\n%v", got, want)
		}
		polltest.Until(t, "no event to be pending", polltest.Holds(func() bool {
			pending, _, err := r.Lag(ctx)
			return err == nil && pending == 0
		}))
		_, failures := pub.stats()
		if got := metric(t, reg, "folio_outbox_publish_errors_total"); int(got) != failures {
			t.Errorf("folio_outbox_publish_errors_total = %v, want %d", got, failures)
		}
	})
}

// metric returns the value of the gauge or counter registered on reg under name.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// Several writers commit at once; each aggregate's events must arrive in its
// writer's order, through intermittent broker failures.
func TestRelayKeepsAggregateOrderWithConcurrentWriters(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		pub := &publisher{}
		r := newRelay(t, db, pub, prometheus.NewRegistry())
		r.BatchSize = 5
		run(t, r)

		const writers, perWriter = 4, 15
		want := make([][]string, writers)
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					if w == 0 && i%5 == 2 {
						pub.set(func(p *publisher) { p.failNext++ })
					}
					id, err := writeEvent(ctx, db, "book.updated", fmt.Sprintf("b%d", w))
					if err != nil {
						errs[w] = err
						return
					}
					want[w] = append(want[w], id)
					r.Notify()
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		polltest.Until(t, "every event to be published", polltest.Holds(func() bool { return len(pub.received()) >= writers*perWriter }))
		got := map[string][]string{}
		for _, m := range pub.received() {
			var env broker.Envelope
			if err := json.Unmarshal(m.Body, &env); err != nil {
				t.Fatal(err)
			}
			var data struct{ ID string }
			if err := json.Unmarshal(env.Data, &data); err != nil {
				t.Fatal(err)
			}
			got[data.ID] = append(got[data.ID], m.ID)
		}
		for w := range writers {
			if agg := fmt.Sprintf("b%d", w); !equal(got[agg], want[w]) {
				t.Errorf("aggregate %s published as\n%v\nwant\n%v", agg, got[agg], want[w])
			}
		}
		if n := len(pub.received()); n != writers*perWriter {
			t.Errorf("%d messages published, want %d (none twice)", n, writers*perWriter)
		}
	})
}

func TestNotifyWakesRelay(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		pub := &publisher{}
		r := newRelay(t, db, pub, nil)
		r.PollInterval = time.Hour // only Notify can make it look again in time
		run(t, r)
		for i := 1; i <= 3; i++ {
			write(t, ctx, db, "book.created", fmt.Sprintf("b%d", i))
			r.Notify()
			polltest.Until(t, fmt.Sprintf("event %d to be published after Notify", i), polltest.Holds(func() bool { return len(pub.received()) == i }))
		}
	})
}

func TestLag(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		r := newRelay(t, db, &publisher{}, nil)
		if pending, oldest, err := r.Lag(ctx); err != nil || pending != 0 || oldest != 0 {
			t.Fatalf("Lag of an empty outbox = %d, %v, %v; want 0, 0, nil", pending, oldest, err)
		}
		first := write(t, ctx, db, "book.created", "b1")
		write(t, ctx, db, "book.created", "b2")
		write(t, ctx, db, "book.created", "b3")
		if _, err := db.Exec(`UPDATE outbox SET created_at = created_at - $1 WHERE id = $2`, int64(time.Hour), first); err != nil {
			t.Fatal(err)
		}
		pending, oldest, err := r.Lag(ctx)
		if err != nil || pending != 3 || oldest < time.Hour || oldest > time.Hour+wait {
			t.Fatalf("Lag = %d, %v, %v; want 3, about an hour, nil", pending, oldest, err)
		}
	})
}

func TestPublishedEventsArePurged(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		pub := &publisher{}
		r := newRelay(t, db, pub, nil)
		r.Retention = 0
		r.PurgeInterval = 10 * time.Millisecond
		run(t, r)
		for i := range 5 {
			write(t, ctx, db, "book.created", fmt.Sprintf("b%d", i))
		}
		r.Notify()
		polltest.Until(t, "the events to be published", polltest.Holds(func() bool { return len(pub.received()) == 5 }))
		polltest.Until(t, "the published events to be purged", polltest.Holds(func() bool { return count(t, db, "1=1") == 0 }))
	})
}

func TestUnpublishedEventsAreNeverPurged(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		id := write(t, ctx, db, "book.created", "b1")
		if _, err := db.Exec(`UPDATE outbox SET created_at = 0 WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		pub := &publisher{down: true}
		r := newRelay(t, db, pub, nil)
		r.Retention = 0
		r.PurgeInterval = time.Nanosecond // purge before every attempt
		stop := run(t, r)
		polltest.Until(t, "three failed publish attempts", polltest.Holds(func() bool { _, f := pub.stats(); return f >= 3 }))
		stop()
		if n := count(t, db, "sent_at IS NULL"); n != 1 {
			t.Fatalf("%d unpublished rows, want 1", n)
		}
	})
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		t.Run("idle", func(t *testing.T) {
			stop := run(t, newRelay(t, db, &publisher{}, nil))
			stop()
		})
		write(t, ctx, db, "book.created", "b1")
		t.Run("backing off", func(t *testing.T) {
			pub := &publisher{down: true}
			stop := run(t, newRelay(t, db, pub, nil))
			polltest.Until(t, "a failed publish", polltest.Holds(func() bool { _, f := pub.stats(); return f >= 1 }))
			stop()
		})
		t.Run("broker hangs", func(t *testing.T) {
			pub := &publisher{hang: true}
			stop := run(t, newRelay(t, db, pub, nil))
			polltest.Until(t, "a publish attempt", polltest.Holds(func() bool { a, _ := pub.stats(); return a >= 1 }))
			stop()
		})
		t.Run("broker hangs on a batch", func(t *testing.T) {
			pub := &batchPublisher{}
			pub.hang = true
			stop := run(t, newRelay(t, db, pub, nil))
			polltest.Until(t, "a publish attempt", polltest.Holds(func() bool { a, _ := pub.stats(); return a >= 1 }))
			stop()
		})
		if n := count(t, db, "sent_at IS NULL"); n != 1 {
			t.Fatalf("%d unpublished rows after the relays stopped, want 1", n)
		}
	})
}

// Several instances of a service on one database each run a relay: they take
// turns (PostgreSQL) or one holds the lease (SQLite), so that nothing is published
// twice or out of order. lease_test.go has the SQLite file shared by several
// handles, as by several processes.
func TestRelaysShareADatabase(t *testing.T) {
	open(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		pub := &publisher{}
		reg := prometheus.NewRegistry()
		var relays []*outbox.Relay
		for range 3 {
			r := newRelay(t, db, pub, reg) // one registry: the metrics are shared, not registered twice
			r.BatchSize = 4
			run(t, r)
			relays = append(relays, r)
		}
		var want []string
		for i := range 60 {
			want = append(want, write(t, ctx, db, "book.updated", fmt.Sprintf("b%d", i%4)))
			relays[i%len(relays)].Notify()
		}
		polltest.Until(t, "every event to be published", polltest.Holds(func() bool { return len(pub.received()) >= len(want) }))
		if got := ids(pub.received()); !equal(got, want) {
			t.Fatalf("published\n%v\nwant\n%v", got, want)
		}
	})
}

// With tracing on, each publication is a producer span, child of the write's span,
// and the message carries the producer span's context for consumers to continue;
// both publishers (one at a time, pipelined) do it.
func TestPublishingContinuesTheWritesTrace(t *testing.T) {
	spans := tracingtest.Record(t)
	open(t, func(t *testing.T, db *sqldb.DB) {
		for name, pub := range map[string]interface {
			broker.Publisher
			received() []broker.Message
		}{"one at a time": &publisher{}, "pipelined": &batchPublisher{}} {
			t.Run(name, func(t *testing.T) {
				ctx, writing := tracing.Tracer().Start(context.Background(), "POST /books")
				id := write(t, ctx, db, "book.created", "b1")
				writing.End()
				untraced := write(t, context.Background(), db, "book.created", "b2")
				stop := run(t, newRelay(t, db, pub, nil))
				polltest.Until(t, "the events to be published", polltest.Holds(func() bool { return len(pub.received()) >= 2 }))
				stop()

				var send sdktrace.ReadOnlySpan
				for _, s := range spans.Ended() {
					if s.SpanKind() == trace.SpanKindProducer && s.Parent().SpanID() == writing.SpanContext().SpanID() {
						send = s
					}
				}
				if send == nil {
					t.Fatal("no producer span under the write's span")
				}
				if send.Name() != "send folio.book.created" || send.SpanContext().TraceID() != writing.SpanContext().TraceID() {
					t.Errorf("producer span %q in trace %s, want \"send folio.book.created\" in the write's", send.Name(), send.SpanContext().TraceID())
				}
				for _, m := range pub.received() {
					carried := trace.SpanContextFromContext(tracing.Extract(context.Background(), m.Header))
					switch m.ID {
					case id:
						if carried.SpanID() != send.SpanContext().SpanID() {
							t.Errorf("message carries span %s, want the producer span %s", carried.SpanID(), send.SpanContext().SpanID())
						}
					case untraced:
						if carried.IsValid() {
							t.Errorf("an event written outside any trace went out in trace %s", carried.TraceID())
						}
					}
				}
			})
		}
	})
}
