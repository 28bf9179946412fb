package broker

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"folio/internal/platform/config"
	"folio/internal/platform/polltest"
)

// kafkaAdapter runs the suite against franz-go's in-process Kafka cluster,
// kfake: a cluster of three brokers per test, so that a group's coordinator and
// a partition's leader need not be the same broker.
func kafkaAdapter() adapter {
	return adapter{
		name:        "kafka",
		kind:        "kafka",
		serve:       func(t *testing.T) string { return startKafka(t, "").seeds },
		config:      func(cfg Config, url string) Config { cfg.KafkaBrokers = url; return cfg },
		ready:       kafkaReady,
		cleanup:     func(*testing.T, *env) {}, // the cluster goes with the test
		deadLetters: kafkaDeadLetters,
		unreachable: "127.0.0.1:1",
		drop: func(t *testing.T, e *env, _ *Broker) {
			c, ok := kafkaClusters.Load(e.url)
			if !ok {
				t.Fatalf("no test cluster at %s", e.url)
			}
			c.(*kafkaCluster).dropConnections()
		},
	}
}

// kafkaCluster is a kfake cluster whose connections a test can cut.
type kafkaCluster struct {
	*kfake.Cluster
	seeds string

	mu    sync.Mutex
	conns []net.Conn
}

// kafkaClusters are the running test clusters by their seeds, for drop.
var kafkaClusters sync.Map

// startKafka starts a kfake cluster, closed when the test ends. With dir, it
// keeps its data there and listens on ports, so that a cluster started again
// on them finds it.
func startKafka(t *testing.T, dir string, ports ...int) *kafkaCluster {
	t.Helper()
	kc := &kafkaCluster{}
	opts := []kfake.Opt{kfake.NumBrokers(3), kfake.ListenFn(kc.listen)}
	if dir != "" {
		opts = append(opts, kfake.DataDir(dir), kfake.SyncWrites())
	}
	if len(ports) > 0 {
		opts = append(opts, kfake.Ports(ports...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	kc.Cluster, kc.seeds = c, strings.Join(c.ListenAddrs(), ",")
	kafkaClusters.Store(kc.seeds, kc)
	var once sync.Once
	t.Cleanup(func() { once.Do(kc.stop) })
	return kc
}

func (kc *kafkaCluster) listen(network, address string) (net.Listener, error) {
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &trackingListener{Listener: l, kc: kc}, nil
}

// stop closes the cluster, as a broker shut down.
func (kc *kafkaCluster) stop() {
	kafkaClusters.Delete(kc.seeds)
	kc.Close()
}

// dropConnections closes every connection the cluster accepted: the clients
// see the network fail, and connect again.
func (kc *kafkaCluster) dropConnections() {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	for _, c := range kc.conns {
		_ = c.Close()
	}
	kc.conns = nil
}

type trackingListener struct {
	net.Listener
	kc *kafkaCluster
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.kc.mu.Lock()
		l.kc.conns = append(l.kc.conns, c)
		l.kc.mu.Unlock()
	}
	return c, err
}

// kafkaAdmin is an admin client on the test's cluster.
func kafkaAdmin(t *testing.T, seeds string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(seeds, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func kafkaReady(t *testing.T, e *env, name string) {
	adm := kafkaAdmin(t, e.url)
	group := kafkaGroup(e.cfg.Prefix, name)
	// A new group reads each topic from its start, a topic created later
	// too, so once the member has joined it gets whatever is published.
	polltest.Until(t, "group "+group+" stable", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		groups, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return err
		}
		g := groups[group]
		if g.Err != nil || g.State != "Stable" || len(g.Members) == 0 {
			return fmt.Errorf("group %s: state %q, %d members, %v", group, g.State, len(g.Members), g.Err)
		}
		return nil
	})
}

// kafkaSourceTopic is the topic of e's events from source ("book").
func kafkaSourceTopic(e *env, source string) string { return e.cfg.Stream + "." + source }

// kafkaRecords reads the whole of topic on e's cluster.
func kafkaRecords(t *testing.T, e *env, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	ends, err := kafkaAdmin(t, e.url).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.url, ",")...), kgo.ConsumeTopics(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var records []*kgo.Record
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading the topic: %v (still want %v)", err, want)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			records = append(records, r)
			if r.Offset+1 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	return records
}

func kafkaDeadLetters(t *testing.T, e *env, name string) int {
	n := 0
	for _, r := range kafkaRecords(t, e, kafkaDeadLetterTopic(e.cfg.Stream, name)) {
		if string(r.Key) == DeadLetterSubject(e.cfg.Prefix, name) {
			n++
		}
	}
	return n
}

// kafkaEnv is a test env on a Kafka cluster of the test's own.
func kafkaEnv(t *testing.T, kc *kafkaCluster) *env {
	return newEnv(t, kafkaAdapter(), kc.seeds)
}

// Each source's events are a topic of their own, <stream>.<source>, and each
// subscription's dead letters too, of one partition, created with the stream's
// limits; each record carries its subject as its key and its id and headers as
// headers, in the order published. There is no topic for the whole stream.
func TestKafkaTopicLayout(t *testing.T) {
	e := kafkaEnv(t, startKafka(t, ""))
	b := e.open(t)
	subjects := []string{"book.created", "author.deleted", "book.updated", "account.revoked", "deadletter.book-authors", "book.x.y"}
	for i, s := range subjects {
		publish(t, b, Message{Subject: e.subject(s), ID: fmt.Sprint("l", i), Body: []byte("{}"), Header: map[string]string{HeaderRequestID: fmt.Sprint("req-", i)}})
	}
	want := map[string][]int{ // topic: the subjects on it, in order
		kafkaSourceTopic(e, "book"):                        {0, 2, 5},
		kafkaSourceTopic(e, "author"):                      {1},
		kafkaSourceTopic(e, "account"):                     {3},
		kafkaDeadLetterTopic(e.cfg.Stream, "book-authors"): {4},
	}
	if got := kafkaStreamTopics(t, e); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
		t.Errorf("the stream's topics are %v, want %v", got, slices.Sorted(maps.Keys(want)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	adm := kafkaAdmin(t, e.url)
	for topic, on := range want {
		topics, err := adm.ListTopics(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(topics[topic].Partitions); got != 1 {
			t.Errorf("topic %s has %d partitions, want 1", topic, got)
		}
		configs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := configs.On(topic, nil)
		if err != nil {
			t.Fatal(err)
		}
		for key, want := range map[string]string{"retention.ms": fmt.Sprint(DefaultMaxAge.Milliseconds()), "retention.bytes": fmt.Sprint(DefaultMaxBytes), "cleanup.policy": "delete"} {
			i := slices.IndexFunc(cfg.Configs, func(c kadm.Config) bool { return c.Key == key })
			if i < 0 || cfg.Configs[i].Value == nil || *cfg.Configs[i].Value != want {
				t.Errorf("topic %s config %s is not %s: %+v", topic, key, want, cfg.Configs)
			}
		}
		records := kafkaRecords(t, e, topic)
		if len(records) != len(on) {
			t.Fatalf("topic %s holds %d records, want %d", topic, len(records), len(on))
		}
		for k, r := range records {
			i := on[k]
			headers := map[string]string{}
			for _, h := range r.Headers {
				headers[h.Key] = string(h.Value)
			}
			want := map[string]string{kafkaIDHeader: fmt.Sprint("l", i), HeaderRequestID: fmt.Sprint("req-", i)}
			if string(r.Key) != e.subject(subjects[i]) || fmt.Sprint(headers) != fmt.Sprint(want) || r.Partition != 0 {
				t.Errorf("%s record %d: key %s, headers %v, partition %d; want %s, %v, 0", topic, k, r.Key, headers, r.Partition, e.subject(subjects[i]), want)
			}
		}
	}
}

// kafkaStreamTopics are the names of the topics of e's stream, sorted.
func kafkaStreamTopics(t *testing.T, e *env) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	topics, err := kafkaAdmin(t, e.url).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range topics {
		if strings.HasPrefix(name, e.cfg.Stream) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// A subject that names no topic is refused before anything is sent: one
// without a source and an event, one whose source cannot be in a topic name, a
// dead-letter subject that names no subscription, one whose topic name would be
// too long. In a batch, nothing behind it is sent.
func TestKafkaSubjectWithoutTopicRefused(t *testing.T) {
	e := kafkaEnv(t, startKafka(t, ""))
	b := e.open(t)
	publish(t, b, Message{Subject: e.subject("book.created"), ID: "first"})
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	for _, tt := range []struct{ subject, want string }{
		{"book", "<prefix>.<source>.<event>"},
		{"deadletter", "<prefix>.<source>.<event>"},
		{"bo:ok.created", "letters, digits"},
		{"deadletter.a.b", "<prefix>.deadletter.<subscription>"},
		{"deadletter.a:b", "<prefix>.deadletter.<subscription>"},
		{strings.Repeat("s", kafkaMaxTopicLen) + ".created", "longer than Kafka's"},
	} {
		err := b.Publish(ctx, Message{Subject: e.subject(tt.subject), ID: "bad"})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("publish on %s: %v, want an error saying %q", tt.subject, err, tt.want)
		}
	}
	acked, err := b.PublishBatch(ctx, []Message{
		{Subject: e.subject("book.updated"), ID: "v1"},
		{Subject: e.subject("bo:ok.created"), ID: "v2"},
		{Subject: e.subject("book.updated"), ID: "v3"},
	})
	if acked != 1 || err == nil {
		t.Errorf("PublishBatch with a subject without a topic second = %d, %v; want 1 and an error", acked, err)
	}
	if got := kafkaStreamTopics(t, e); !slices.Equal(got, []string{kafkaSourceTopic(e, "book")}) {
		t.Errorf("the stream's topics are %v, want only the book topic", got)
	}
	var ids []string
	for _, r := range kafkaRecords(t, e, kafkaSourceTopic(e, "book")) {
		ids = append(ids, string(r.Headers[0].Value))
	}
	if !slices.Equal(ids, []string{"first", "v1"}) {
		t.Errorf("the book topic holds %v, want [first v1]", ids)
	}
}

// Records someone else wrote to a topic, without a subject or an id, with a
// subject that is no filter's, or with a subject of another topic, are passed
// over: they neither reach a handler nor stop the records behind them. The
// last is what a credential allowed to write one source's topic would do to
// forge another's events: the book service writing "author.deleted" to the
// book topic, or an account revocation to its dead letters.
func TestKafkaForeignRecordsPassedOver(t *testing.T) {
	e := kafkaEnv(t, startKafka(t, ""))
	b := e.open(t)
	h, got := recorder()
	e.consume(t, b, Subscription{Name: "strict", Subjects: []string{e.subject(">")}}, h)
	followed := follower(t, b, []string{e.subject(">")}, time.Now().Add(-time.Hour))
	publish(t, b, Message{Subject: e.subject("book.created"), ID: "first"})
	publish(t, b, Message{Subject: e.subject("deadletter.strict"), ID: "dead"})
	for _, ch := range []<-chan Message{got, followed} {
		ids := []string{receive(t, ch, "first").ID, receive(t, ch, "dead").ID}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"dead", "first"}) {
			t.Fatalf("got %v, want the two published", ids)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.url, ",")...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	id := func(v string) []kgo.RecordHeader { return []kgo.RecordHeader{{Key: kafkaIDHeader, Value: []byte(v)}} }
	books, deadLetters := kafkaSourceTopic(e, "book"), kafkaDeadLetterTopic(e.cfg.Stream, "strict")
	foreign := []*kgo.Record{
		{Topic: books, Value: []byte("no key, no id")},
		{Topic: books, Key: []byte(e.subject("book.created")), Value: []byte("no id")},
		{Topic: books, Value: []byte("no subject"), Headers: id("x1")},
		{Topic: books, Key: []byte(e.subject("book.>")), Value: []byte("a wildcard for a subject"), Headers: id("x2")},
		{Topic: books, Key: []byte(e.subject("book..created")), Value: []byte("an empty token"), Headers: id("x3")},
		{Topic: books, Key: []byte(e.subject("author.deleted")), Value: []byte(`{"id":"forged"}`), Headers: id("x4")},
		{Topic: books, Key: []byte(e.subject("book")), Value: []byte("no event"), Headers: id("x5")},
		{Topic: deadLetters, Key: []byte(e.subject("account.revoked")), Value: []byte(`{"id":"forged"}`), Headers: id("x6")},
		{Topic: deadLetters, Key: []byte(e.subject("deadletter.other")), Value: []byte("another's dead letter"), Headers: id("x7")},
	}
	if err := cl.ProduceSync(ctx, foreign...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A sentinel behind them on each topic.
	publish(t, b, Message{Subject: e.subject("book.created"), ID: "sentinel"})
	publish(t, b, Message{Subject: e.subject("deadletter.strict"), ID: "sentinel-dead"})
	for _, ch := range []<-chan Message{got, followed} {
		ids := []string{receive(t, ch, "sentinel").ID, receive(t, ch, "sentinel").ID}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"sentinel", "sentinel-dead"}) {
			t.Errorf("got %v, want the sentinels only", ids)
		}
	}
}

// kafkaCommitted is the offset group has committed on partition 0 of topic,
// -1 if none.
func kafkaCommitted(t *testing.T, e *env, group, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	offsets, err := kafkaAdmin(t, e.url).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offsets.Lookup(topic, 0)
	if !ok {
		return -1
	}
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	return o.At
}

// With several handlers at once, the offset committed never passes a record
// not yet handled: a consumer stopped (or killed) while one record is
// unfinished and the ones behind it are done gets that record again, and
// those behind it, when it comes back. Each topic (source) has its own
// committed offset: one unfinished book event does not hold back the author
// events, which are not delivered again.
func TestKafkaCommitsOnlyTheFinishedPrefix(t *testing.T) {
	e := kafkaEnv(t, startKafka(t, ""))
	b := e.open(t)
	const n, stuck, authors = 20, 5, 10
	handled := make(chan Message, 2*(n+authors))
	h := func(ctx context.Context, m Message) error {
		if m.ID == fmt.Sprintf("p%02d", stuck) {
			<-ctx.Done() // a handler that has not finished when the consumer stops
			return ctx.Err()
		}
		handled <- m
		return nil
	}
	s := Subscription{Name: "prefix", Subjects: []string{e.subject(">")}, Concurrency: 4}
	stop := e.consume(t, b, s, h)
	var ms []Message
	for i := range n {
		ms = append(ms, Message{Subject: e.subject("book.created"), ID: fmt.Sprintf("p%02d", i)})
		if i < authors {
			ms = append(ms, Message{Subject: e.subject("author.created"), ID: fmt.Sprintf("a%02d", i)})
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if acked, err := b.PublishBatch(ctx, ms); err != nil || acked != len(ms) {
		t.Fatalf("PublishBatch = %d, %v", acked, err)
	}
	var done []string
	for len(done) < n-1+authors {
		done = append(done, receive(t, handled, "handled message").ID)
	}
	stop()
	group := kafkaGroup(e.cfg.Prefix, s.Name)
	if got := kafkaCommitted(t, e, group, kafkaSourceTopic(e, "book")); got != stuck {
		t.Errorf("committed book offset %d with record %d unfinished and the %d others done, want %d", got, stuck, n-1, stuck)
	}
	if got := kafkaCommitted(t, e, group, kafkaSourceTopic(e, "author")); got != authors {
		t.Errorf("committed author offset %d with all %d handled, want %d", got, authors, authors)
	}

	// The consumer back, as after a restart: the unfinished record first, then
	// those behind it, and no author event again.
	restarted := e.open(t)
	h2, got := recorder()
	e.consume(t, restarted, Subscription{Name: "prefix", Subjects: []string{e.subject(">")}}, h2)
	var again []string
	for range n - stuck {
		again = append(again, receive(t, got, "redelivered message").ID)
	}
	want := make([]string, 0, n-stuck)
	for i := stuck; i < n; i++ {
		want = append(want, fmt.Sprintf("p%02d", i))
	}
	if !slices.Equal(again, want) {
		t.Errorf("after the restart got %v, want %v (from the unfinished one on)", again, want)
	}
	publish(t, restarted, Message{Subject: e.subject("author.created"), ID: "sentinel"})
	if m := receive(t, got, "sentinel"); m.ID != "sentinel" {
		t.Errorf("after the restart got %s, want no author event before the sentinel", m.ID)
	}
}

// A partition handed to another member of the group (the first one leaving)
// comes with what the first had settled committed: the second starts after it.
func TestKafkaHandoverCommitsFirst(t *testing.T) {
	e := kafkaEnv(t, startKafka(t, ""))
	first, second := e.open(t), e.open(t)
	s := Subscription{Name: "shared", Subjects: []string{e.subject(">")}}
	var mu sync.Mutex
	by := map[string][]string{}
	handler := func(name string) (Handler, chan Message) {
		ch := make(chan Message, 100)
		return func(_ context.Context, m Message) error {
			mu.Lock()
			by[m.ID] = append(by[m.ID], name)
			mu.Unlock()
			ch <- m
			return nil
		}, ch
	}
	h1, got1 := handler("first")
	stop := e.consume(t, first, s, h1)
	for i := range 10 {
		publish(t, first, Message{Subject: e.subject("book.created"), ID: fmt.Sprint("h", i)})
	}
	for range 10 {
		receive(t, got1, "message for the first member")
	}
	h2, got2 := handler("second")
	e.consume(t, second, s, h2) // joins; the one partition stays with the first
	stop()
	for i := 10; i < 20; i++ {
		publish(t, second, Message{Subject: e.subject("book.created"), ID: fmt.Sprint("h", i)})
	}
	for i := 10; i < 20; i++ {
		if id := receive(t, got2, "message for the second member").ID; id != fmt.Sprint("h", i) {
			t.Fatalf("second member got %s, want h%d", id, i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, members := range by {
		if len(members) != 1 {
			t.Errorf("%s handled by %v, want once", id, members)
		}
	}
}

// The broker goes down while the outbox relay keeps publishing, and comes back
// (on the same address, with its data): publishing fails meanwhile, and once
// it is back, every message reaches the consumer.
func TestKafkaNoLossWhileBrokerDown(t *testing.T) {
	dir := t.TempDir()
	kc := startKafka(t, dir)
	var ports []int
	for _, a := range strings.Split(kc.seeds, ",") {
		_, port, _ := net.SplitHostPort(a)
		var p int
		fmt.Sscan(port, &p)
		ports = append(ports, p)
	}
	e := kafkaEnv(t, kc)
	b := e.open(t)
	var mu sync.Mutex
	seen := map[string]int{}
	e.consume(t, b, Subscription{Name: "steady", Subjects: []string{e.subject(">")}, Concurrency: 2}, func(_ context.Context, m Message) error {
		mu.Lock()
		seen[m.ID]++
		mu.Unlock()
		return nil
	})
	batch := func(from, to int) []Message {
		var ms []Message
		for i := from; i < to; i++ {
			ms = append(ms, Message{Subject: e.subject("book.created"), ID: fmt.Sprintf("n%03d", i)})
		}
		return ms
	}
	// relay publishes ms as the outbox relay does: what was not acknowledged is
	// sent again, until all is.
	failures := 0
	relay := func(ms []Message) {
		for len(ms) > 0 {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			acked, err := b.PublishBatch(ctx, ms)
			cancel()
			ms = ms[acked:]
			if err != nil {
				failures++
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	relay(batch(0, 100))
	polltest.Until(t, "some handled before the outage", polltest.Holds(func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 50
	}))

	stopped := time.Now()
	kc.stop()
	t.Logf("broker stopped in %s", time.Since(stopped).Round(time.Millisecond))
	relayed := make(chan struct{})
	go func() {
		defer close(relayed)
		relay(batch(100, 150)) // fails until the broker is back
	}()
	// The relay tries while the broker is down: its failures are what the
	// outbox sees.
	polltest.Until(t, "a publish failing while the broker is down", polltest.Holds(func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		return b.Publish(ctx, Message{Subject: e.subject("book.probe"), ID: "probe"}) != nil
	}))
	restarted := startKafka(t, dir, ports...)
	t.Logf("broker down %s", time.Since(stopped).Round(time.Millisecond))
	back := time.Now()
	if restarted.seeds != kc.seeds {
		t.Fatalf("restarted on %s, want %s", restarted.seeds, kc.seeds)
	}
	<-relayed
	t.Logf("the relay's backlog published %s after the broker came back", time.Since(back).Round(time.Millisecond))
	relay(batch(150, 200))
	polltest.Until(t, "every message handled", func() error {
		mu.Lock()
		defer mu.Unlock()
		var missing []string
		for i := range 200 {
			if id := fmt.Sprintf("n%03d", i); seen[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d missing: %v", len(missing), missing)
		}
		return nil
	})
	t.Logf("every message handled %s after the broker came back", time.Since(back).Round(time.Millisecond))
	mu.Lock()
	defer mu.Unlock()
	twice := 0
	for _, n := range seen {
		if n > 1 {
			twice++
		}
	}
	t.Logf("relay failures while the broker was down: %d; messages handled more than once (at least once delivery): %d", failures, twice)
}

func TestKafkaConfig(t *testing.T) {
	load := func(vars map[string]string) (Config, error) {
		var cfg Config
		if err := config.Load(&cfg, func(k string) string { return vars[k] }); err != nil {
			return cfg, err
		}
		return cfg, cfg.Validate()
	}
	cfg, err := load(map[string]string{"FOLIO_BROKER": "kafka"})
	if err != nil || cfg.Kind != "kafka" || cfg.KafkaBrokers != "127.0.0.1:9092" {
		t.Errorf("FOLIO_BROKER=kafka alone: %q %q, %v; want kafka at 127.0.0.1:9092", cfg.Kind, cfg.KafkaBrokers, err)
	}
	cfg, err = load(map[string]string{"FOLIO_BROKER": "kafka", "FOLIO_KAFKA_BROKERS": "k1:9092, k2:9093,[::1]:9094"})
	if seeds, serr := kafkaSeeds(cfg.KafkaBrokers); err != nil || serr != nil || !slices.Equal(seeds, []string{"k1:9092", "k2:9093", "[::1]:9094"}) {
		t.Errorf("three brokers: %v, %v, %v", seeds, err, serr)
	}
	for _, bad := range []string{"k1", "k1:", ":9092", "k1:0", "k1:70000", "k1:x", "k1:9092,,k2:9092", "k1:9092,"} {
		if _, err := load(map[string]string{"FOLIO_BROKER": "kafka", "FOLIO_KAFKA_BROKERS": bad}); err == nil || !strings.Contains(err.Error(), "FOLIO_KAFKA_BROKERS") {
			t.Errorf("FOLIO_KAFKA_BROKERS=%q: %v, want an error naming the setting", bad, err)
		}
	}
	long := Config{Kind: "kafka", KafkaBrokers: "k:1", Stream: strings.Repeat("S", kafkaMaxTopicLen+1), Prefix: "p"}
	if err := long.Validate(); err == nil || !strings.Contains(err.Error(), "FOLIO_EVENTS_STREAM") {
		t.Errorf("a stream name too long for a topic: %v", err)
	}
	// A stream's topics are <stream>.<source>: one that leaves no room for them is refused.
	long.Stream = strings.Repeat("S", kafkaMaxTopicLen-1)
	if err := long.Validate(); err == nil || !strings.Contains(err.Error(), "FOLIO_EVENTS_STREAM") {
		t.Errorf("a stream name that leaves no room for .<source>: %v", err)
	}
	long.Stream = strings.Repeat("S", kafkaMaxTopicLen-2)
	if err := long.Validate(); err != nil {
		t.Errorf("a stream name that leaves room for a one-letter source: %v", err)
	}
	// The brokers of another kind are not read.
	if _, err := load(map[string]string{"FOLIO_BROKER": "nats", "FOLIO_KAFKA_BROKERS": "k1"}); err != nil {
		t.Errorf("FOLIO_KAFKA_BROKERS checked for NATS: %v", err)
	}
	if _, err := Open(t.Context(), Config{Kind: "kafka", KafkaBrokers: "nohost", Stream: "S", Prefix: "p"}, nil, prometheus.NewRegistry()); err == nil {
		t.Error("Open with a bad FOLIO_KAFKA_BROKERS succeeded")
	}
}

// kafkaTopicLimits are the retention.ms and retention.bytes of topic.
func kafkaTopicLimits(t *testing.T, e *env, topic string) (ms, bytes string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	configs, err := kafkaAdmin(t, e.url).DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := configs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Value == nil {
			continue
		}
		switch c.Key {
		case "retention.ms":
			ms = *c.Value
		case "retention.bytes":
			bytes = *c.Value
		}
	}
	return ms, bytes
}

// An operator may change a topic's limits; services starting keep them, unless
// a limit is configured explicitly: then that one is applied, and only that one,
// when the service first uses the topic. A topic without any limit is warned of.
func TestKafkaConfiguredLimitsOverrideAnExistingTopic(t *testing.T) {
	kc := startKafka(t, "")
	e := kafkaEnv(t, kc)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	adm := kafkaAdmin(t, e.url)
	topic := kafkaSourceTopic(e, "book")
	if _, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{
		"retention.ms": kadm.StringPtr("3600000"), "retention.bytes": kadm.StringPtr("10485760"),
	}, topic); err != nil {
		t.Fatal(err)
	}
	check := func(what, ms, bytes string) {
		t.Helper()
		if gotMs, gotBytes := kafkaTopicLimits(t, e, topic); gotMs != ms || gotBytes != bytes {
			t.Errorf("%s: retention.ms %s, retention.bytes %s; want %s, %s", what, gotMs, gotBytes, ms, bytes)
		}
	}
	var log logBuffer
	published := 0
	openAndPublish := func(age StreamAge, size StreamBytes) {
		t.Helper()
		log.Reset()
		published++
		publish(t, e.openWith(t, age, size, &log), Message{Subject: e.subject("book.created"), ID: fmt.Sprint("k", published)})
	}
	openAndPublish(StreamAge{}, StreamBytes{})
	check("nothing configured", "3600000", "10485760")
	if strings.Contains(log.String(), "limits") {
		t.Errorf("the operator's limits were logged about:\n%s", log.String())
	}

	openAndPublish(StreamAge{3 * time.Hour, true}, StreamBytes{})
	check("an age configured", "10800000", "10485760")
	if !strings.Contains(log.String(), `level=INFO msg="event topic limits changed as configured"`) {
		t.Errorf("raising the age limit was not logged as information:\n%s", log.String())
	}

	openAndPublish(StreamAge{}, StreamBytes{1 << 20, true})
	check("a lower size configured", "10800000", "1048576")
	if !strings.Contains(log.String(), `level=WARN msg="event topic limits changed as configured"`) {
		t.Errorf("lowering the size limit was not logged as a warning:\n%s", log.String())
	}

	openAndPublish(StreamAge{3 * time.Hour, true}, StreamBytes{1 << 20, true})
	check("the same configured again", "10800000", "1048576")
	if strings.Contains(log.String(), "limits") {
		t.Errorf("limits the topic has already were logged as changed:\n%s", log.String())
	}

	openAndPublish(StreamAge{0, true}, StreamBytes{0, true})
	check("no limits configured", "-1", "-1")
	openAndPublish(StreamAge{}, StreamBytes{})
	if !strings.Contains(log.String(), "grows for ever") {
		t.Errorf("no warning of a topic without limits:\n%s", log.String())
	}
	if n := len(kafkaRecords(t, e, topic)); n != published {
		t.Errorf("the topic holds %d records, want %d", n, published)
	}
}
