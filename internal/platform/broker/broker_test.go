package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/polltest"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
)

// wait bounds every wait in these tests: generous, so that none passes or fails
// on timing, only on what happens.
const wait = polltest.Deadline

// adapter is one broker the behaviour suite runs against.
type adapter struct {
	name string // of the subtest
	kind string
	env  string // names the test server's URL
	// serve, when set, starts the test server instead.
	serve func(t *testing.T) string
	// config points cfg at url.
	config func(cfg Config, url string) Config
	// ready waits until subscription name receives what is published next.
	ready func(t *testing.T, e *env, name string)
	// cleanup deletes what the test created on the server.
	cleanup func(t *testing.T, e *env)
	// deadLetters counts the messages kept for subscription name's dead letters.
	deadLetters func(t *testing.T, e *env, name string) int
	// drop cuts the broker's connection as a network failure would.
	drop func(t *testing.T, e *env, b *Broker)
	// unreachable is an address of this kind where no broker listens, for
	// TestUnreachable; empty for a variant of an adapter tested there already.
	unreachable string
}

var adapters = []adapter{
	natsAdapter("nats", "FOLIO_TEST_NATS_URL", nil, "nats://127.0.0.1:1"),
	// The server folio up embeds, newer than the machine's, takes atomic
	// batches: the same suite runs on that path of the adapter too.
	natsAdapter("nats-embedded", "", embeddedNATS, ""),
	{
		name:        "rabbitmq",
		kind:        "rabbitmq",
		env:         "FOLIO_TEST_RABBITMQ_URL",
		config:      func(cfg Config, url string) Config { cfg.RabbitMQURL = url; return cfg },
		ready:       rabbitReady,
		cleanup:     rabbitCleanup,
		deadLetters: rabbitDeadLetters,
		unreachable: "amqp://guest:guest@127.0.0.1:1/",
		drop: func(t *testing.T, _ *env, b *Broker) {
			rt := b.t.(*rabbitTransport)
			rt.mu.Lock()
			conn := rt.conn
			rt.mu.Unlock()
			if conn == nil {
				t.Fatal("not connected")
			}
			_ = conn.Close()
		},
	},
	kafkaAdapter(),
}

func natsAdapter(name, urlEnv string, serve func(t *testing.T) string, unreachable string) adapter {
	return adapter{
		name:        name,
		kind:        "nats",
		env:         urlEnv,
		serve:       serve,
		config:      func(cfg Config, url string) Config { cfg.NATSURL = url; return cfg },
		ready:       natsReady,
		cleanup:     natsCleanup,
		deadLetters: natsDeadLetters,
		unreachable: unreachable,
		drop: func(t *testing.T, _ *env, b *Broker) {
			if err := b.t.(*natsTransport).nc.ForceReconnect(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

var embedded struct {
	once sync.Once
	dir  string
	srv  *server.Server
	err  error
	log  serverLog
}

// serverLog keeps the embedded server's warnings and errors, which say why a
// request failed where the API answer only gives a code (a stream's store
// failing, for one), so a failed test can show them.
type serverLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *serverLog) add(level, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, level+" "+fmt.Sprintf(format, v...))
}

func (l *serverLog) Noticef(string, ...any)         {}
func (l *serverLog) Debugf(string, ...any)          {}
func (l *serverLog) Tracef(string, ...any)          {}
func (l *serverLog) Warnf(format string, v ...any)  { l.add("WRN", format, v...) }
func (l *serverLog) Errorf(format string, v ...any) { l.add("ERR", format, v...) }
func (l *serverLog) Fatalf(format string, v ...any) { l.add("FTL", format, v...) }

// since returns the lines logged after the first n.
func (l *serverLog) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines[min(n, len(l.lines)):])
}

func (l *serverLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// embeddedNATS starts, once for the package, a NATS server of the version
// folio up embeds, syncing every write as there.
func embeddedNATS(t *testing.T) string {
	embedded.once.Do(func() {
		if embedded.dir, embedded.err = os.MkdirTemp("", "folio-broker-nats-"); embedded.err != nil {
			return
		}
		embedded.srv, embedded.err = server.NewServer(&server.Options{
			Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: embedded.dir,
			SyncAlways: true, NoSigs: true, NoLog: true, HTTPPort: -1,
		})
		if embedded.err == nil {
			embedded.srv.SetLoggerV2(&embedded.log, false, false, false)
			go embedded.srv.Start()
			if !embedded.srv.ReadyForConnections(wait) {
				embedded.err = errors.New("embedded NATS not ready")
			}
		}
	})
	if embedded.err != nil {
		t.Fatal(embedded.err)
	}
	from := embedded.log.len()
	t.Cleanup(func() {
		if t.Failed() {
			for _, line := range embedded.log.since(from) {
				t.Logf("embedded NATS: %s", line)
			}
		}
	})
	return embedded.srv.ClientURL()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if embedded.srv != nil {
		embedded.srv.Shutdown()
		embedded.srv.WaitForShutdown()
	}
	if embedded.dir != "" {
		_ = os.RemoveAll(embedded.dir)
	}
	os.Exit(code)
}

// forEach runs test against each adapter whose server is configured.
func forEach(t *testing.T, test func(t *testing.T, e *env)) {
	for _, a := range adapters {
		t.Run(a.name, func(t *testing.T) {
			if a.serve != nil {
				test(t, newEnv(t, a, a.serve(t)))
				return
			}
			url := os.Getenv(a.env)
			if url == "" {
				if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
					t.Fatalf("%s is not set and FOLIO_REQUIRE_INTEGRATION=1", a.env)
				}
				t.Skipf("%s broker tests skipped: set %s to run them", a.kind, a.env)
			}
			test(t, newEnv(t, a, url))
		})
	}
}

// env is one test's stream or exchange and prefix, unique to it, deleted with
// everything under it when the test ends.
type env struct {
	a   adapter
	url string
	cfg Config

	mu   sync.Mutex
	subs []Subscription // what was consumed, for cleanup
}

func newEnv(t *testing.T, a adapter, url string) *env {
	suffix := strings.ToLower(rand.Text()[:10])
	e := &env{a: a, url: url, cfg: a.config(Config{
		Kind:   a.kind,
		Stream: "FOLIO_TEST_" + strings.ToUpper(suffix),
		Prefix: "t" + suffix,
	}, url)}
	t.Cleanup(func() { a.cleanup(t, e) })
	return e
}

// open opens a Broker on the test's stream, closed when the test ends.
func (e *env) open(t *testing.T) *Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	b, err := Open(ctx, e.cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func (e *env) subject(rest string) string { return e.cfg.Prefix + "." + rest }

// consume runs b.Consume until the returned stop is called (or the test ends),
// once the consumer is ready for what is published next.
func (e *env) consume(t *testing.T, b *Broker, s Subscription, h Handler) (stop func()) {
	t.Helper()
	e.mu.Lock()
	e.subs = append(e.subs, s)
	e.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Consume(ctx, s, h) }()
	e.a.ready(t, e, s.Name)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Consume %s returned %v", s.Name, err)
				}
			case <-time.After(wait):
				t.Errorf("Consume %s did not return after its context ended", s.Name)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func publish(t *testing.T, b *Broker, m Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := b.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// receive waits for the next message on ch.
func receive(t *testing.T, ch <-chan Message, what string) Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(wait):
		t.Fatalf("no %s within %s", what, wait)
		return Message{}
	}
}

// recorder is a handler that passes every delivery on to a channel.
func recorder() (Handler, chan Message) {
	ch := make(chan Message, 100)
	return func(_ context.Context, m Message) error { ch <- m; return nil }, ch
}

func TestPublishConsume(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		h, got := recorder()
		e.consume(t, b, Subscription{Name: "books", Subjects: []string{e.subject("book.>")}}, h)

		written := time.Now().Add(-90 * time.Second).UTC() // as if it had waited in an outbox
		sent := Message{
			Subject: e.subject("book.created"),
			ID:      "evt-1",
			Body:    []byte(`{"id":"evt-1","type":"book.created"}`),
			Header: map[string]string{
				HeaderRequestID:   "req-42",
				HeaderTraceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				HeaderWrittenAt:   written.Format(time.RFC3339Nano),
			},
		}
		publish(t, b, sent)

		m := receive(t, got, "message")
		want := map[string]string{HeaderAttempts: "1"}
		for k, v := range sent.Header {
			want[k] = v
		}
		if m.Subject != sent.Subject || m.ID != sent.ID || string(m.Body) != string(sent.Body) {
			t.Errorf("got %s %s %s, want %s %s %s", m.Subject, m.ID, m.Body, sent.Subject, sent.ID, sent.Body)
		}
		if fmt.Sprint(m.Header) != fmt.Sprint(want) {
			t.Errorf("headers %v, want %v", m.Header, want)
		}
		// The consumer's lag is the event's age when handled: at least the 90 s
		// it was made to wait.
		if lag := testutil.ToFloat64(b.metrics.consumerLag.WithLabelValues("books")); lag < 90 || lag > 90+60 {
			t.Errorf("consumer lag %.1f s, want the event's age (90 s and the test's time)", lag)
		}
		if n := testutil.CollectAndCount(b.metrics.deadLetteredTotal); n != 1 {
			t.Errorf("%d dead-letter series, want the subscription's, at zero, from the start", n)
		}
	})
}

// A batch arrives whole and in order, each message as a single publish would
// send it.
func TestPublishBatch(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		h, got := recorder()
		e.consume(t, b, Subscription{Name: "batch", Subjects: []string{e.subject("book.>")}, Concurrency: 1}, h)

		const n = 500
		subjects := []string{"book.created", "book.updated", "book.deleted"}
		ms := make([]Message, n)
		for i := range ms {
			id := fmt.Sprintf("evt-%03d", i)
			ms[i] = Message{
				Subject: e.subject(subjects[i%len(subjects)]),
				ID:      id,
				Body:    []byte(`{"id":"` + id + `"}`),
				Header:  map[string]string{HeaderRequestID: "req-" + id, HeaderTraceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		acked, err := b.PublishBatch(ctx, ms)
		if err != nil || acked != n {
			t.Fatalf("PublishBatch = %d, %v; want %d, nil", acked, err, n)
		}
		for i, sent := range ms {
			m := receive(t, got, fmt.Sprint("message ", i))
			want := map[string]string{HeaderAttempts: "1"}
			for k, v := range sent.Header {
				want[k] = v
			}
			if m.Subject != sent.Subject || m.ID != sent.ID || string(m.Body) != string(sent.Body) || fmt.Sprint(m.Header) != fmt.Sprint(want) {
				t.Fatalf("message %d: got %s %s %s %v, want %s %s %s %v", i, m.Subject, m.ID, m.Body, m.Header, sent.Subject, sent.ID, sent.Body, want)
			}
		}
		if got := testutil.ToFloat64(b.metrics.publishedTotal.WithLabelValues("ok")); got != n {
			t.Errorf("published ok = %v, want %d", got, n)
		}

		// An invalid message is not sent, nor anything behind it.
		acked, err = b.PublishBatch(ctx, []Message{
			{Subject: e.subject("book.created"), ID: "v1"},
			{Subject: e.subject("book.created"), ID: "v2"},
			{Subject: e.subject("book.created")},
			{Subject: e.subject("book.created"), ID: "v4"},
		})
		if err == nil || acked != 2 {
			t.Fatalf("PublishBatch with an invalid third message = %d, %v; want 2 and an error", acked, err)
		}
		publish(t, b, Message{Subject: e.subject("book.sentinel"), ID: "sentinel"})
		var after []string
		for range 3 {
			after = append(after, receive(t, got, "message").ID)
		}
		if !slices.Equal(after, []string{"v1", "v2", "sentinel"}) {
			t.Errorf("got %v, want [v1 v2 sentinel]", after)
		}
	})
}

func TestSubjectFilters(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		h, got := recorder()
		e.consume(t, b, Subscription{Name: "some", Subjects: []string{e.subject("book.>"), e.subject("*.deleted")}}, h)
		for i, s := range []string{"book.created", "author.created", "author.deleted", "loan.due.soon", "book.x.y"} {
			publish(t, b, Message{Subject: e.subject(s), ID: fmt.Sprint("f", i)})
		}
		var subjects []string
		for range 3 {
			subjects = append(subjects, strings.TrimPrefix(receive(t, got, "message").Subject, e.cfg.Prefix+"."))
		}
		slices.Sort(subjects)
		if want := []string{"author.deleted", "book.created", "book.x.y"}; !slices.Equal(subjects, want) {
			t.Errorf("got %v, want %v", subjects, want)
		}
		// Sentinels behind the others show nothing else came through: one per
		// source, as Kafka orders each source's events, not the stream's.
		sentinels := []string{"book.sentinel", "author.deleted", "loan.deleted"}
		for i, s := range sentinels {
			publish(t, b, Message{Subject: e.subject(s), ID: fmt.Sprint("sentinel", i)})
		}
		for range sentinels {
			if m := receive(t, got, "sentinel"); !strings.HasPrefix(m.ID, "sentinel") {
				t.Errorf("got %s %s, want a sentinel", m.Subject, m.ID)
			}
		}
	})
}

func TestConsumerRestart(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		s := Subscription{Name: "durable", Subjects: []string{e.subject("book.>")}}
		h, got := recorder()

		stop := e.consume(t, b, s, h)
		publish(t, b, Message{Subject: e.subject("book.created"), ID: "1"})
		if m := receive(t, got, "first message"); m.ID != "1" {
			t.Fatalf("got %s, want 1", m.ID)
		}
		stop()

		publish(t, b, Message{Subject: e.subject("book.created"), ID: "2"})
		publish(t, b, Message{Subject: e.subject("book.updated"), ID: "3"})
		e.consume(t, b, s, h)
		publish(t, b, Message{Subject: e.subject("book.deleted"), ID: "4"})

		var ids []string
		for range 3 {
			ids = append(ids, receive(t, got, "message").ID)
		}
		if !slices.Equal(ids, []string{"2", "3", "4"}) {
			t.Errorf("after restart got %v, want [2 3 4] (1 was acked before)", ids)
		}
	})
}

// flaky fails the first failures deliveries of each message.
type flaky struct {
	failures int
	mu       sync.Mutex
	attempts map[string][]string // message id -> HeaderAttempts seen
	done     chan Message        // messages handled successfully
}

func newFlaky(failures int) *flaky {
	return &flaky{failures: failures, attempts: map[string][]string{}, done: make(chan Message, 100)}
}

func (f *flaky) handle(_ context.Context, m Message) error {
	f.mu.Lock()
	f.attempts[m.ID] = append(f.attempts[m.ID], m.Header[HeaderAttempts])
	n := len(f.attempts[m.ID])
	fail := n <= f.failures
	f.mu.Unlock()
	if fail {
		return fmt.Errorf("failure %d", n)
	}
	f.done <- m
	return nil
}

func (f *flaky) seen(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attempts[id])
}

func TestRetry(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		f := newFlaky(2)
		e.consume(t, b, Subscription{Name: "retrying", Subjects: []string{e.subject("book.>")}, Backoff: 50 * time.Millisecond}, f.handle)
		publish(t, b, Message{Subject: e.subject("book.created"), ID: "r1", Header: map[string]string{HeaderRequestID: "req-r1"}})

		m := receive(t, f.done, "successful attempt")
		if m.ID != "r1" || m.Subject != e.subject("book.created") || m.Header[HeaderRequestID] != "req-r1" {
			t.Errorf("retried message came back as %s %s %v", m.Subject, m.ID, m.Header)
		}
		// Let a sentinel through so that a fourth attempt would have shown.
		f.mu.Lock()
		f.failures = 0
		f.mu.Unlock()
		publish(t, b, Message{Subject: e.subject("book.created"), ID: "sentinel"})
		receive(t, f.done, "sentinel")
		if got := f.seen("r1"); !slices.Equal(got, []string{"1", "2", "3"}) {
			t.Errorf("attempts %v, want [1 2 3]", got)
		}
		if got := testutil.ToFloat64(b.metrics.consumedTotal.WithLabelValues("retrying", "retry")); got != 2 {
			t.Errorf("retry metric %v, want 2", got)
		}
	})
}

func TestPoisonMessage(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		dl, dead := recorder()
		e.consume(t, b, Subscription{Name: "watch", Subjects: []string{DeadLetterSubject(e.cfg.Prefix, "poisoned")}}, dl)

		var mu sync.Mutex
		var order []string // "<id>#<attempt>" in handling order
		goodDone := make(chan Message, 100)
		h := func(_ context.Context, m Message) error {
			mu.Lock()
			order = append(order, m.ID+"#"+m.Header[HeaderAttempts])
			mu.Unlock()
			if m.ID == "poison" {
				return errors.New("cannot apply\nthis event")
			}
			goodDone <- m
			return nil
		}
		// The backoff is long next to handling the good messages, so they must all
		// be handled while the poison waits for its second attempt, unless it blocks
		// them.
		s := Subscription{Name: "poisoned", Subjects: []string{e.subject("book.>")}, MaxAttempts: 3, Backoff: 2 * time.Second}
		e.consume(t, b, s, h)

		publish(t, b, Message{Subject: e.subject("book.created"), ID: "poison", Body: []byte("bad"), Header: map[string]string{HeaderRequestID: "req-p"}})
		for i := range 5 {
			publish(t, b, Message{Subject: e.subject("book.updated"), ID: fmt.Sprint("good", i)})
		}
		for range 5 {
			receive(t, goodDone, "message behind the poison")
		}

		d := receive(t, dead, "dead letter")
		if d.Subject != DeadLetterSubject(e.cfg.Prefix, "poisoned") || string(d.Body) != "bad" ||
			d.Header[HeaderOriginalSubject] != e.subject("book.created") ||
			d.Header[HeaderError] != "cannot apply this event" || d.Header[HeaderRequestID] != "req-p" {
			t.Errorf("dead letter %s %s %q %v", d.Subject, d.ID, d.Body, d.Header)
		}
		polltest.Until(t, "dead letter kept", polltest.Holds(func() bool { return e.a.deadLetters(t, e, "poisoned") == 1 }))

		publish(t, b, Message{Subject: e.subject("book.updated"), ID: "sentinel"})
		receive(t, goodDone, "sentinel")
		mu.Lock()
		defer mu.Unlock()
		var poison []string
		second := -1
		for i, o := range order {
			if id, attempt, _ := strings.Cut(o, "#"); id == "poison" {
				poison = append(poison, attempt)
				if attempt == "2" {
					second = i
				}
			}
		}
		if !slices.Equal(poison, []string{"1", "2", "3"}) {
			t.Errorf("poison attempts %v, want [1 2 3]", poison)
		}
		if second < 6 {
			t.Errorf("handling order %v: the good messages waited for the poison", order)
		}
		if got := testutil.ToFloat64(b.metrics.deadLetteredTotal.WithLabelValues("poisoned")); got != 1 {
			t.Errorf("dead-lettered metric %v, want 1", got)
		}
	})
}

func TestConcurrency(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		const n = 4
		var inFlight, peak atomic.Int32
		all := make(chan struct{})
		var closeAll sync.Once
		var mu sync.Mutex
		handled := map[string]int{}
		h := func(_ context.Context, m Message) error {
			now := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				p := peak.Load()
				if now <= p || peak.CompareAndSwap(p, now) {
					break
				}
			}
			if now == n {
				closeAll.Do(func() { close(all) })
			}
			// The first n wait for each other: that only ends if n run at once.
			select {
			case <-all:
			case <-time.After(wait):
				closeAll.Do(func() { close(all) }) // fail once, not once per message
			}
			mu.Lock()
			handled[m.ID]++
			mu.Unlock()
			return nil
		}
		e.consume(t, b, Subscription{Name: "parallel", Subjects: []string{e.subject(">")}, Concurrency: n}, h)
		const total = 40
		for i := range total {
			publish(t, b, Message{Subject: e.subject("book.created"), ID: fmt.Sprint("c", i)})
		}
		polltest.Until(t, "all handled", polltest.Holds(func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(handled) == total
		}))
		if p := peak.Load(); p != n {
			t.Errorf("at most %d handlers ran at once, want %d", p, n)
		}
		mu.Lock()
		defer mu.Unlock()
		for id, c := range handled {
			if c != 1 {
				t.Errorf("%s handled %d times", id, c)
			}
		}
	})
}

func TestReconnect(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		h, got := recorder()
		e.consume(t, b, Subscription{Name: "resilient", Subjects: []string{e.subject(">")}}, h)
		publish(t, b, Message{Subject: e.subject("book.created"), ID: "before"})
		receive(t, got, "message before the drop")

		e.a.drop(t, e, b)
		// Publish fails until the connection is back, then succeeds.
		polltest.Until(t, "publish after reconnect", polltest.Holds(func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			return b.Publish(ctx, Message{Subject: e.subject("book.created"), ID: "after"}) == nil
		}))
		// "before" may come again: its acknowledgement can be lost with the
		// connection, and delivery is at least once.
		m := receive(t, got, "message after the reconnect")
		for m.ID == "before" {
			m = receive(t, got, "message after the reconnect")
		}
		if m.ID != "after" {
			t.Errorf("got %s, want after", m.ID)
		}
	})
}

func TestOpenTwice(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		// The second declares the same stream or exchange again, and registers
		// its metrics on the same registry.
		reg := prometheus.NewRegistry()
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		for i := range 2 {
			b, err := Open(ctx, e.cfg, nil, reg)
			if err != nil {
				t.Fatalf("open %d: %v", i, err)
			}
			if err := b.Publish(ctx, Message{Subject: e.subject("book.created"), ID: fmt.Sprint("o", i)}); err != nil {
				t.Errorf("publish %d: %v", i, err)
			}
			_ = b.Close()
		}
		if got := testutil.ToFloat64(newMetricsOn(t, reg).publishedTotal.WithLabelValues("ok")); got != 2 {
			t.Errorf("published metric %v, want 2", got)
		}
	})
}

func TestCloseEndsConsume(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		e.mu.Lock()
		e.subs = append(e.subs, Subscription{Name: "closing"})
		e.mu.Unlock()
		done := make(chan error, 1)
		go func() {
			done <- b.Consume(t.Context(), Subscription{Name: "closing", Subjects: []string{e.subject(">")}}, func(context.Context, Message) error { return nil })
		}()
		e.a.ready(t, e, "closing")
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(wait):
			t.Fatal("Consume still running after Close")
		}
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		if err := b.Publish(ctx, Message{Subject: e.subject("book.created"), ID: "late"}); err == nil {
			t.Error("Publish after Close succeeded")
		}
	})
}

// An operator may change the stream's limits; services starting must keep them.
// On a server that takes atomic batches a batch is stored whole; published again
// (its acknowledgement lost, say) it is refused as a whole, and the adapter
// sends it message by message, so that nothing is stored twice.
func TestNATSAtomicBatches(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		if e.a.kind != "nats" {
			t.Skip("JetStream only")
		}
		b := e.open(t)
		batch := func(from, to int) []Message {
			var ms []Message
			for i := from; i < to; i++ {
				ms = append(ms, Message{Subject: e.subject("book.created"), ID: fmt.Sprintf("a%03d", i), Body: []byte("{}")})
			}
			return ms
		}
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		if acked, err := b.PublishBatch(ctx, batch(0, 40)); err != nil || acked != 40 {
			t.Fatalf("PublishBatch = %d, %v; want 40, nil", acked, err)
		}
		nt := b.t.(*natsTransport)
		if e.a.serve != nil && !nt.atomicBatches() {
			t.Fatal("the embedded server's stream does not take atomic batches")
		}
		if acked, err := b.PublishBatch(ctx, batch(20, 60)); err != nil || acked != 40 {
			t.Fatalf("PublishBatch again = %d, %v; want 40, nil", acked, err)
		}
		js, done := natsJS(t, e)
		defer done()
		st, err := js.Stream(ctx, e.cfg.Stream)
		if err != nil {
			t.Fatal(err)
		}
		if info := st.CachedInfo(); info.State.Msgs != 60 {
			t.Errorf("stream holds %d messages, want 60", info.State.Msgs)
		}
		for seq := uint64(1); seq <= 60; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("a%03d", seq-1); m.Header.Get(jetstream.MsgIDHeader) != want {
				t.Fatalf("message %d is %s, want %s", seq, m.Header.Get(jetstream.MsgIDHeader), want)
			}
			// The first batch went as one, the rest of the second one by one.
			if inBatch, want := m.Header.Get("Nats-Batch-Id") != "", nt.atomicBatches() && seq <= 40; inBatch != want {
				t.Errorf("message %d stored in an atomic batch: %t, want %t", seq, inBatch, want)
			}
		}
	})
}

func TestNATSKeepsStreamSettings(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		if e.a.kind != "nats" {
			t.Skip("JetStream only")
		}
		js, done := natsJS(t, e)
		defer done()
		cfg := jetstream.StreamConfig{Name: e.cfg.Stream, Subjects: []string{e.subject(">")}, Storage: jetstream.FileStorage, MaxAge: time.Hour}
		if _, err := js.CreateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
		publish(t, e.open(t), Message{Subject: e.subject("book.created"), ID: "k1"})
		st, err := js.Stream(t.Context(), e.cfg.Stream)
		if err != nil {
			t.Fatal(err)
		}
		if info := st.CachedInfo(); info.Config.MaxAge != time.Hour || info.State.Msgs != 1 {
			t.Errorf("stream now has max age %s and %d messages", info.Config.MaxAge, info.State.Msgs)
		}
	})
}

func newMetricsOn(t *testing.T, reg prometheus.Registerer) *metrics {
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestUnreachable needs no server: nothing listens on port 1.
func TestUnreachable(t *testing.T) {
	for _, a := range adapters {
		if a.unreachable == "" {
			continue // the same adapter as one tested
		}
		t.Run(a.kind, func(t *testing.T) {
			cfg := a.config(Config{Kind: a.kind, Stream: "FOLIO_TEST_UNREACHABLE", Prefix: "unreachable"}, a.unreachable)
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			b, err := Open(ctx, cfg, nil, prometheus.NewRegistry())
			if err != nil {
				t.Fatalf("Open failed with the broker down: %v", err)
			}
			defer b.Close()

			pctx, pcancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer pcancel()
			start := time.Now()
			err = b.Publish(pctx, Message{Subject: "unreachable.book.created", ID: "1"})
			if err == nil {
				t.Fatal("Publish succeeded with the broker down")
			}
			// A bound that proves Publish gives up at its context's deadline instead of
			// retrying on; the margin past it is generous for a loaded machine.
			const margin = 10 * time.Second
			if took := time.Since(start); took > 5*time.Second+margin {
				t.Errorf("Publish took %s, past its context's deadline", took)
			}

			start = time.Now()
			acked, err := b.PublishBatch(pctx, []Message{
				{Subject: "unreachable.book.created", ID: "1"},
				{Subject: "unreachable.book.created", ID: "2"},
			})
			if err == nil || acked != 0 {
				t.Fatalf("PublishBatch = %d, %v with the broker down; want 0 and an error", acked, err)
			}
			if took := time.Since(start); took > 5*time.Second+margin {
				t.Errorf("PublishBatch took %s, past its context's deadline", took)
			}
			if got := testutil.ToFloat64(b.metrics.publishedTotal.WithLabelValues("error")); got != 2 {
				t.Errorf("published error = %v, want 2 (one Publish, one PublishBatch)", got)
			}

			// Consume keeps trying, and returns nil once its context ends.
			cctx, ccancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer ccancel()
			err = b.Consume(cctx, Subscription{Name: "x", Subjects: []string{"unreachable.>"}}, func(context.Context, Message) error { return nil })
			if err != nil {
				t.Errorf("Consume returned %v", err)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	for _, cfg := range []Config{
		{Kind: "pulsar", Stream: "S", Prefix: "p"},
		{Kind: "nats", Stream: "", Prefix: "p"},
		{Kind: "nats", Stream: "S", Prefix: "a.b"},
	} {
		if _, err := Open(t.Context(), cfg, nil, nil); err == nil {
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

func TestSubscriptionValidation(t *testing.T) {
	b := &Broker{prefix: "folio"}
	for _, s := range []Subscription{
		{Name: "", Subjects: []string{"folio.>"}},
		{Name: "a.b", Subjects: []string{"folio.>"}},
		{Name: "a"},
		{Name: "a", Subjects: []string{"other.>"}},
		{Name: "a", Subjects: []string{"folio.>.x"}},
		{Name: "a", Subjects: []string{"folio..x"}},
		{Name: "a", Subjects: []string{"folio.b*"}},
	} {
		if _, err := b.normalize(s); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	s, err := b.normalize(Subscription{Name: "a", Subjects: []string{"folio.*.created"}})
	if err != nil || s.MaxAttempts != 5 || s.Backoff != 200*time.Millisecond || s.Concurrency != 1 {
		t.Errorf("defaults: %+v %v", s, err)
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, c := range []struct {
		filter, subject string
		want            bool
	}{
		{"folio.>", "folio.book.created", true},
		{"folio.>", "folio", false},
		{"folio.book.>", "folio.book", false},
		{"folio.*.created", "folio.book.created", true},
		{"folio.*.created", "folio.book.x.created", false},
		{"folio.book.created", "folio.book.created", true},
		{"folio.book.created", "folio.book.created.x", false},
		{"folio.book", "folio.book.created", false},
	} {
		if got := subjectMatches(c.filter, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v", c.filter, c.subject, got)
		}
	}
	if got := bindingKey("folio.*.>"); got != "folio.*.#" {
		t.Errorf("bindingKey = %q", got)
	}
}

func TestBackoff(t *testing.T) {
	s := Subscription{Backoff: 200 * time.Millisecond}
	for attempt, want := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 4: 1600 * time.Millisecond, 10: time.Minute, 1000: time.Minute} {
		if got := backoff(s, attempt); got != want {
			t.Errorf("backoff(%d) = %s, want %s", attempt, got, want)
		}
	}
}

func natsJS(t *testing.T, e *env) (jetstream.JetStream, func()) {
	t.Helper()
	nc, err := nats.Connect(e.url)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, nc.Close
}

func natsReady(t *testing.T, e *env, name string) {
	js, done := natsJS(t, e)
	defer done()
	// A durable consumer delivers the stream from its start: once it exists,
	// it gets whatever is published.
	polltest.Until(t, "consumer "+name, polltest.Holds(func() bool {
		_, err := js.Consumer(t.Context(), e.cfg.Stream, name)
		return err == nil
	}))
}

func natsCleanup(t *testing.T, e *env) {
	js, done := natsJS(t, e)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := js.DeleteStream(ctx, e.cfg.Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("delete stream %s: %v", e.cfg.Stream, err)
	}
}

func natsDeadLetters(t *testing.T, e *env, name string) int {
	js, done := natsJS(t, e)
	defer done()
	st, err := js.Stream(t.Context(), e.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	subj := DeadLetterSubject(e.cfg.Prefix, name)
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Subjects[subj])
}

// rabbitChannel runs f on a fresh channel: a failed passive declare closes it.
func rabbitChannel(t *testing.T, e *env, f func(ch *amqp.Channel) error) error {
	t.Helper()
	conn, err := amqp.Dial(e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return f(ch)
}

func rabbitReady(t *testing.T, e *env, name string) {
	// A queue only gets what is published after its bindings; the consumer
	// is started after them.
	polltest.Until(t, "consumer on "+name, polltest.Holds(func() bool {
		return rabbitChannel(t, e, func(ch *amqp.Channel) error {
			q, err := ch.QueueDeclarePassive(e.cfg.Prefix+"."+name, true, false, false, false, nil)
			if err == nil && q.Consumers == 0 {
				err = errors.New("no consumer")
			}
			return err
		}) == nil
	}))
}

func rabbitDeadLetters(t *testing.T, e *env, name string) int {
	var n int
	err := rabbitChannel(t, e, func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(DeadLetterSubject(e.cfg.Prefix, name), true, false, false, false, nil)
		n = q.Messages
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func rabbitCleanup(t *testing.T, e *env) {
	e.mu.Lock()
	defer e.mu.Unlock()
	err := rabbitChannel(t, e, func(ch *amqp.Channel) error {
		for _, s := range e.subs {
			queue := e.cfg.Prefix + "." + s.Name
			queues := []string{queue, DeadLetterSubject(e.cfg.Prefix, s.Name)}
			s, _ := (&Broker{prefix: e.cfg.Prefix}).normalize(s)
			for attempt := 1; attempt < s.MaxAttempts+2; attempt++ {
				queues = append(queues, retryQueue(queue, backoff(s, attempt)))
			}
			for _, q := range slices.Compact(queues) {
				// Deleting a queue that is not there is fine in AMQP 0-9-1.
				if _, err := ch.QueueDelete(q, false, false, false); err != nil {
					return fmt.Errorf("delete queue %s: %w", q, err)
				}
			}
		}
		return ch.ExchangeDelete(e.cfg.Stream, false, false)
	})
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// TestStorageUnavailableIsNeverDeadLettered: a consumer whose database is full
// fails every attempt for a while; its event waits instead of being dead-lettered
// after MaxAttempts, and is applied once the database takes writes again.
func TestStorageUnavailableIsNeverDeadLettered(t *testing.T) {
	forEach(t, func(t *testing.T, e *env) {
		b := e.open(t)
		const failures = 5 // more than MaxAttempts
		f := newFlaky(failures)
		full := func(ctx context.Context, m Message) error {
			if err := f.handle(ctx, m); err != nil {
				return fmt.Errorf("apply: %w", fault.Wrap(fault.StorageUnavailable, err, "the database is full"))
			}
			return nil
		}
		s := Subscription{Name: "full", Subjects: []string{e.subject("book.>")}, MaxAttempts: 2, Backoff: 20 * time.Millisecond}
		e.consume(t, b, s, full)
		publish(t, b, Message{Subject: e.subject("book.created"), ID: "f1"})

		receive(t, f.done, "the event, once the database takes writes")
		if got := f.seen("f1"); len(got) != failures+1 {
			t.Errorf("attempts %v, want %d", got, failures+1)
		}
		if n := e.a.deadLetters(t, e, "full"); n != 0 {
			t.Errorf("%d dead letters, want none", n)
		}
	})
}
