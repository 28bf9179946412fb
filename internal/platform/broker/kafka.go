package broker

// The Kafka adapter, on franz-go.
//
// Topic layout (kafka_topics.go): a topic per source of events,
// <stream>.<source> ("FOLIO_EVENTS.book" holds folio.book.created), and a topic
// per subscription for its dead letters; the subject is the record's key, and
// consumers filter on it, client-side, with the same NATS-style wildcards as
// the other adapters (subjectMatches). The whole stream in one topic was the
// layout before, and was given up because Kafka grants writing a topic, not a
// key: any credential allowed to publish (every consumer, for its dead letters)
// could forge any subject. One topic per subject was turned down because
// Subscription.Subjects are filters ("folio.book.>", "folio.*.deleted") that
// name sources, and a subject first published after a subscription started
// would need a metadata refresh before it is seen.
//
// Order: every record goes to partition 0 of its topic (a manual partitioner),
// whatever the partition count of a topic that exists already; a topic the
// adapter creates has one partition. So a source's events are delivered in the
// order they were published, across its subjects: a Concurrency-1 consumer sees
// book.created before the book.updated behind it, and the e2e tests rely on an
// author's delete being applied before the authors created after it. Events
// of different sources have no order between them, unlike on NATS and
// RabbitMQ; no Folio consumer relies on one (each projection reads one source,
// notify treats each event on its own), and the shared suite asks for order
// within a source only. Keying by the event's resource id over several
// partitions would scale further but keep only each resource's own order, which
// is less than what consumers are promised. A topic is consumed by one member
// of a consumer group at a time, with Subscription.Concurrency handlers in that
// member, as with a single JetStream consumer; Folio's event volume is far
// below what one partition takes.
//
// The cost: a subscription whose filters leave the source open reads every
// topic of the stream and passes over what they do not match, as does one
// that takes some of a source's subjects.
//
// Delivery: a consumer group per subscription (named "<prefix>.<name>", as the
// RabbitMQ queue is, since group names are cluster-wide and two deployments may
// share a cluster). Offsets are committed, for each partition, only up to the
// first record not yet settled (handled, dead-lettered, or passed over), so
// that a crash or a rebalance redelivers everything not finished, never skips
// it. A failed record waits out its backoff in the consumer while the records
// behind it are handled; the attempt count is kept in memory, so a consumer
// restart starts it again at 1. Kafka has no per-message negative
// acknowledgement; a retry topic would keep the count across restarts but
// needs delayed delivery Kafka does not have.
//
// Publishing: an idempotent producer with acks=all. Kafka's idempotence drops
// the producer's own retries of a request, not a message the outbox relay
// publishes again after a lost acknowledgement: those arrive twice, and the
// consumers' inboxes, which key on the message id, apply them once.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka settings.
const (
	// kafkaIDHeader carries Message.ID; the subject is the record key.
	kafkaIDHeader = "Folio-Message-Id"
	// kafkaPublishWait bounds one Publish or PublishBatch: without it a record
	// whose broker went away waits for the broker's return, while the outbox
	// could be trying again.
	kafkaPublishWait = 10 * time.Second
	// kafkaTopicWait bounds one attempt of a consumer or follower to have its
	// topics ready: a cluster that does not answer, or refuses the
	// credential, is reported every few seconds.
	kafkaTopicWait = 5 * time.Second
	// kafkaMaxPending bounds the records a consumer has taken and not settled:
	// one failing record holds the committed offset, and the consumer goes on
	// with up to this many behind it (JetStream's MaxAckPending, natsMaxAckPending).
	kafkaMaxPending = 1000
	// kafkaCommitWait bounds a commit, in particular the last one when Consume
	// stops or a partition is revoked.
	kafkaCommitWait = 10 * time.Second
	// kafkaMaxTopicLen is Kafka's limit on a topic name.
	kafkaMaxTopicLen = 249
)

type kafkaTransport struct {
	cfg Config
	log *slog.Logger
	// common are the options of every client: the seeds, TLS and SASL.
	common []kgo.Opt
	pub    *kgo.Client // the producer, also used for admin requests
	adm    *kadm.Client
	done   chan struct{} // closed by close

	mu sync.Mutex
	// topics are the topics published to or read, by name.
	topics map[string]*kafkaTopic
	// discoverers are the clients reading every topic of the stream.
	discoverers map[*kgo.Client]struct{}
}

func openKafka(_ context.Context, cfg Config, log *slog.Logger) (*kafkaTransport, error) {
	seeds, err := kafkaSeeds(cfg.KafkaBrokers)
	if err != nil {
		return nil, err
	}
	security, err := kafkaSecurityOpts(cfg, log)
	if err != nil {
		return nil, err
	}
	t := &kafkaTransport{cfg: cfg, log: log, done: make(chan struct{}),
		topics: map[string]*kafkaTopic{}, discoverers: map[*kgo.Client]struct{}{}}
	t.common = append([]kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ClientID("folio"),
		kgo.WithLogger(kafkaLogger{log}),
		// After an error, metadata is asked for again this soon (instead of
		// 5 s): a broker back from an outage is found about as fast as
		// NATS reconnects (natsconn's ReconnectWait). Folio's clients are few.
		kgo.MetadataMinAge(time.Second),
	}, security...)
	t.pub, err = kgo.NewClient(t.clientOpts(
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Every record on partition 0 of its topic: the source's one order
		// (see the top).
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// Let a publish's deadline fail records already sent to a broker that
		// went away: the outbox publishes them again, and the consumers' inboxes
		// drop what then arrives twice (by default franz-go waits for the
		// broker's answer, for as long as the broker is down).
		kgo.AllowIdempotentProduceCancellation(),
	)...)
	if err != nil {
		return nil, fmt.Errorf("broker: kafka: %w", err)
	}
	// Topics are created as they are first published to or read: which
	// sources a program publishes is its outbox's business.
	t.adm = kadm.NewClient(t.pub)
	return t, nil
}

// clientOpts are the options of every client of the transport, with more.
func (t *kafkaTransport) clientOpts(more ...kgo.Opt) []kgo.Opt {
	return append(slices.Clip(t.common), more...)
}

func (t *kafkaTransport) closed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func (t *kafkaTransport) publish(ctx context.Context, m Message) error {
	_, err := t.publishBatch(ctx, []Message{m})
	return err
}

// publishBatch produces ms together and waits for them all. Each topic's
// records go to its one partition, where franz-go keeps them in order and fails
// every record behind a failed one. A message whose subject has no topic is not
// sent, nor anything behind it, as Broker.PublishBatch does with an invalid one;
// nor is anything from the first message whose topic cannot be had.
func (t *kafkaTransport) publishBatch(ctx context.Context, ms []Message) (int, error) {
	if t.closed() {
		return 0, errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, kafkaPublishWait)
	defer cancel()
	records := make([]*kgo.Record, 0, len(ms))
	index := make(map[*kgo.Record]int, len(ms))
	var refused error
	for i, m := range ms {
		topic, err := kafkaTopicOf(t.cfg.Stream, m.Subject)
		if err == nil {
			err = t.ensureTopic(ctx, topic)
		}
		if err != nil {
			refused = err
			break
		}
		r := kafkaRecord(topic, m)
		records = append(records, r)
		index[r] = i
	}
	// Results come in the order the promises ran, not necessarily ms's order.
	failed := make([]error, len(records))
	if len(records) > 0 {
		for _, r := range t.pub.ProduceSync(ctx, records...) {
			failed[index[r.Record]] = r.Err
		}
	}
	for i, err := range failed {
		if err != nil {
			t.noticeTopicLoss(records[i].Topic, err)
			if errors.Is(err, kgo.ErrClientClosed) {
				err = errClosed
			}
			return i, err
		}
	}
	return len(records), refused
}

// kafkaRecord is m as a record of topic: the subject as its key, the id and
// the message's headers as headers.
func kafkaRecord(topic string, m Message) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(m.Header)+1)
	headers = append(headers, kgo.RecordHeader{Key: kafkaIDHeader, Value: []byte(m.ID)})
	for k, v := range m.Header {
		if k != kafkaIDHeader {
			headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	return &kgo.Record{Topic: topic, Partition: 0, Key: []byte(m.Subject), Value: m.Body, Headers: headers}
}

// kafkaMessage is r, read from stream's topic r.Topic, as the handlers see it;
// or why it is not a Folio message: no id, a key that is no subject, or a
// subject that belongs in another topic. Anyone allowed to write a topic can
// write such records; the last kind is an attempt to forge another source's
// events (see kafka_topics.go).
func kafkaMessage(stream string, r *kgo.Record) (Message, error) {
	m := Message{Subject: string(r.Key), Body: r.Value, Header: make(map[string]string, len(r.Headers))}
	for _, h := range r.Headers {
		if h.Key == kafkaIDHeader {
			m.ID = string(h.Value)
			continue
		}
		m.Header[h.Key] = string(h.Value)
	}
	if m.ID == "" {
		return m, errors.New("not a Folio message: no id")
	}
	topic, err := kafkaTopicOf(stream, m.Subject)
	if err != nil {
		return m, fmt.Errorf("not a Folio message: %w", err)
	}
	if topic != r.Topic {
		return m, fmt.Errorf("subject %s belongs in topic %s, not this one", m.Subject, topic)
	}
	return m, nil
}

// validSubject reports whether s is a subject a message can have: a filter's
// non-empty tokens, without wildcards (a record's key is anyone's to write).
func validSubject(s string) bool {
	return validFilter(s) && !slices.ContainsFunc(strings.Split(s, "."), func(t string) bool { return t == "*" || t == ">" })
}

func (t *kafkaTransport) close() error {
	close(t.done)
	t.pub.Close()
	return nil
}

func (t *kafkaTransport) consume(ctx context.Context, s Subscription, deliver deliverFunc) error {
	ctx, cancel := untilClosed(ctx, t.done)
	defer cancel()
	reading, err := kafkaReadingOf(t.cfg.Stream, s.Subjects)
	if err != nil {
		return fmt.Errorf("broker: consumer %s: %w", s.Name, err)
	}
	// The topic DeadLetterSubject's records go to, found as Publish finds it.
	deadLetters, err := kafkaTopicOf(t.cfg.Stream, DeadLetterSubject(t.cfg.Prefix, s.Name))
	if err != nil {
		return fmt.Errorf("broker: consumer %s: dead letters: %w", s.Name, err)
	}
	// The dead-letter topic is needed before the first record: without it a
	// record that keeps failing could not be set aside, and would hold the
	// subscription's offset for good.
	topics := append(slices.Clone(reading.topics), deadLetters)
	for {
		err := t.ensureTopicsWithin(ctx, topics...)
		if ctx.Err() != nil {
			return closedErr(t.done)
		}
		if err == nil {
			break
		}
		t.log.Warn("cannot create the topics yet, will retry", "subscription", s.Name, "err", err)
		pause(ctx, retryPause)
	}
	// The member rides out broker outages and rebalances itself: run returns
	// only once ctx ends.
	c, err := newKafkaConsumer(t, s, reading, deliver)
	if err != nil {
		return fmt.Errorf("broker: consumer %s: %w", s.Name, err)
	}
	c.run(ctx)
	return closedErr(t.done)
}

// kafkaGroup is the consumer group of subscription name.
func kafkaGroup(prefix, name string) string { return prefix + "." + name }

// kafkaConsumer is one subscription's group member. Records go to
// s.Concurrency workers; each partition's records are tracked in offset order
// until settled, and the offset committed is that of the first one that is not.
type kafkaConsumer struct {
	t       *kafkaTransport
	s       Subscription
	deliver deliverFunc
	cl      *kgo.Client
	jobs    chan *kafkaJob // to the workers
	retries sync.WaitGroup // jobs waiting out a backoff

	mu      sync.Mutex
	parts   map[kafkaPartition]*kafkaProgress // of the partitions owned
	pending int                               // records tracked, in all parts
	space   chan struct{}                     // signalled when pending goes down

	// commitMu orders commits, and keeps a commit from running across a
	// revocation: what is committed is for partitions still owned.
	commitMu sync.Mutex
	commit   chan struct{} // wakes the committer

	// undiscover, for a client reading every topic of the stream, ends its
	// registration for topicFound.
	undiscover func()
}

type kafkaPartition struct {
	topic     string
	partition int32
}

// kafkaProgress is one partition's records taken and not yet committed past.
type kafkaProgress struct {
	queue     []*kafkaJob // in offset order
	next      kgo.EpochOffset
	committed int64 // the offset last committed, -1 before the first commit
}

type kafkaJob struct {
	rec     *kgo.Record
	msg     Message
	attempt int
	part    *kafkaProgress
	handle  bool // false: only settled (outside the subjects, or not Folio's)
	settled bool
}

func newKafkaConsumer(t *kafkaTransport, s Subscription, reading kafkaReading, deliver deliverFunc) (*kafkaConsumer, error) {
	c := &kafkaConsumer{
		t: t, s: s, deliver: deliver,
		jobs:   make(chan *kafkaJob),
		parts:  map[kafkaPartition]*kafkaProgress{},
		space:  make(chan struct{}, 1),
		commit: make(chan struct{}, 1),
	}
	opts := append(reading.consumeOpts(t.cfg.Stream),
		kgo.ConsumerGroup(kafkaGroup(t.cfg.Prefix, s.Name)),
		// A new group reads each topic from its start, as a new JetStream
		// durable consumer does the stream, and so does a group finding a
		// topic created after it started; where the broker lost records, the
		// consumer goes back to the start rather than skip any.
		kgo.ConsumeStartOffset(kgo.NewOffset().AtStart()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// A member that crashed holds its partition until its session times
		// out; with a source on one partition that stops the subscription,
		// so 10 s rather than Kafka's 45 s (brokers accept 6 s and more).
		kgo.SessionTimeout(10*time.Second),
		kgo.HeartbeatInterval(time.Second),
		// Rebalancing waits while a poll's records are being tracked, so that
		// no record of a partition revoked meanwhile is tracked again.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
	)
	var err error
	c.cl, err = kgo.NewClient(t.clientOpts(opts...)...)
	if err == nil && reading.all {
		c.undiscover = t.discovering(c.cl)
	}
	return c, err
}

// run consumes until ctx ends, then commits what was settled and leaves the
// group.
func (c *kafkaConsumer) run(ctx context.Context) {
	var workers sync.WaitGroup
	for range c.s.Concurrency {
		workers.Go(func() { c.work(ctx) })
	}
	committer := make(chan struct{})
	go func() {
		defer close(committer)
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.commit:
				c.commitSettled(ctx)
			}
		}
	}()

	c.poll(ctx)

	workers.Wait()
	c.retries.Wait()
	<-committer
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kafkaCommitWait)
	c.commitSettled(cctx)
	cancel()
	// Leaving the group runs revoked, which commits once more: nothing new.
	if c.undiscover != nil {
		c.undiscover()
	}
	c.cl.Close()
}

// poll takes records while there is room for them and hands them to the
// workers, until ctx ends.
func (c *kafkaConsumer) poll(ctx context.Context) {
	for {
		room, ok := c.room(ctx)
		if !ok {
			return
		}
		fetches := c.cl.PollRecords(ctx, room)
		if ctx.Err() != nil {
			c.cl.AllowRebalance()
			return
		}
		var jobs []*kafkaJob
		fetches.EachRecord(func(r *kgo.Record) { jobs = append(jobs, c.track(r)) })
		c.cl.AllowRebalance()
		failed := false
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			failed = true
			c.t.log.Warn("fetch failed, will retry", "subscription", c.s.Name, "topic", topic, "partition", partition, "err", err)
		})
		for _, j := range jobs {
			if !j.handle {
				c.settle(j)
				continue
			}
			select {
			case c.jobs <- j:
			case <-ctx.Done():
				return
			}
		}
		if failed {
			pause(ctx, retryPause)
		}
	}
}

// room waits until fewer than kafkaMaxPending records are tracked, and says
// how many more may be.
func (c *kafkaConsumer) room(ctx context.Context) (int, bool) {
	for {
		c.mu.Lock()
		room := kafkaMaxPending - c.pending
		c.mu.Unlock()
		if room > 0 {
			return room, true
		}
		select {
		case <-c.space:
		case <-ctx.Done():
			return 0, false
		}
	}
}

// track adds r to its partition's progress. The job it returns needs handling
// unless it is outside the subscription's subjects, or not a Folio message
// (kafkaMessage): those are only settled.
func (c *kafkaConsumer) track(r *kgo.Record) *kafkaJob {
	m, err := kafkaMessage(c.t.cfg.Stream, r)
	folio := err == nil
	if !folio {
		c.t.log.Warn("passing over a record that is not a Folio message", "subscription", c.s.Name,
			"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := kafkaPartition{r.Topic, r.Partition}
	p := c.parts[key]
	if p == nil {
		p = &kafkaProgress{next: kgo.EpochOffset{Epoch: -1, Offset: -1}, committed: -1}
		c.parts[key] = p
	}
	j := &kafkaJob{rec: r, msg: m, attempt: 1, part: p, handle: folio && anySubjectMatches(c.s.Subjects, m.Subject)}
	p.queue = append(p.queue, j)
	c.pending++
	return j
}

// owned reports whether j's partition is still this member's, as it was when
// j was taken: after a revocation its records are another member's to handle.
func (c *kafkaConsumer) owned(j *kafkaJob) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.parts[kafkaPartition{j.rec.Topic, j.rec.Partition}] == j.part
}

// work handles jobs until ctx ends.
func (c *kafkaConsumer) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-c.jobs:
			if !c.owned(j) {
				continue
			}
			m := j.msg
			m.Header = maps.Clone(j.msg.Header)
			v := c.deliver(ctx, m, j.attempt)
			switch v.outcome {
			case outcomeOK, outcomeDeadLetter:
				c.settle(j)
			case outcomeRetry:
				j.attempt++
				c.retries.Go(func() { c.retry(ctx, j, v.delay) })
			case outcomeRequeue:
				// Consume is stopping: unsettled, the record comes again
				// from the committed offset.
			}
		}
	}
}

// retry hands j to the workers again after delay; meanwhile the workers go on
// with the records behind it.
func (c *kafkaConsumer) retry(ctx context.Context, j *kafkaJob, delay time.Duration) {
	pause(ctx, delay)
	if ctx.Err() != nil || !c.owned(j) {
		return
	}
	select {
	case c.jobs <- j:
	case <-ctx.Done():
	}
}

// settle marks j done, and moves its partition's offset to commit past the
// settled records at the head of its queue.
func (c *kafkaConsumer) settle(j *kafkaJob) {
	c.mu.Lock()
	j.settled = true
	p := j.part
	advanced := false
	if c.parts[kafkaPartition{j.rec.Topic, j.rec.Partition}] == p {
		for len(p.queue) > 0 && p.queue[0].settled {
			head := p.queue[0]
			p.next = kgo.EpochOffset{Epoch: head.rec.LeaderEpoch, Offset: head.rec.Offset + 1}
			p.queue[0] = nil
			p.queue = p.queue[1:]
			c.pending--
			advanced = true
		}
	}
	c.mu.Unlock()
	if advanced {
		signal(c.space)
		signal(c.commit)
	}
}

// signal wakes whoever waits on ch, once however often it is called.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// commitSettled commits, for every partition owned, the offset past its
// settled records, where that moved since the last commit.
func (c *kafkaConsumer) commitSettled(ctx context.Context) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.mu.Lock()
	offsets := c.uncommitted(func(kafkaPartition) bool { return true })
	c.mu.Unlock()
	if err := c.commitOffsets(ctx, offsets); err != nil {
		if ctx.Err() == nil {
			c.t.log.Warn("cannot commit offsets, will retry", "subscription", c.s.Name, "err", err)
			time.AfterFunc(retryPause, func() { signal(c.commit) })
		}
	}
}

// uncommitted are the offsets of the partitions picked that moved since their
// last commit. c.mu is held.
func (c *kafkaConsumer) uncommitted(pick func(kafkaPartition) bool) map[string]map[int32]kgo.EpochOffset {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for key, p := range c.parts {
		if !pick(key) || p.next.Offset <= p.committed {
			continue
		}
		if offsets[key.topic] == nil {
			offsets[key.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[key.topic][key.partition] = p.next
	}
	return offsets
}

// commitOffsets commits offsets and notes them as committed. c.commitMu is held.
func (c *kafkaConsumer) commitOffsets(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) error {
	if len(offsets) == 0 {
		return nil
	}
	var failed error
	c.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			failed = err
			return
		}
		for _, topic := range resp.Topics {
			for _, partition := range topic.Partitions {
				if err := kerr.ErrorForCode(partition.ErrorCode); err != nil && failed == nil {
					failed = fmt.Errorf("%s/%d: %w", topic.Topic, partition.Partition, err)
				}
			}
		}
	})
	if failed != nil {
		return failed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, partitions := range offsets {
		for partition, eo := range partitions {
			if p := c.parts[kafkaPartition{topic, partition}]; p != nil && eo.Offset > p.committed {
				p.committed = eo.Offset
			}
		}
	}
	return nil
}

// revoked runs when a rebalance takes partitions away, and when the member
// leaves the group: what was settled on them is committed, so that their next
// owner starts after it, and their records still in hand are dropped.
func (c *kafkaConsumer) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	among := func(key kafkaPartition) bool { return slices.Contains(revoked[key.topic], key.partition) }
	c.mu.Lock()
	offsets := c.uncommitted(among)
	c.drop(among)
	c.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, kafkaCommitWait)
	defer cancel()
	if err := c.commitOffsets(cctx, offsets); err != nil {
		c.t.log.Warn("cannot commit the offsets of revoked partitions; their next owner gets their unsettled records again",
			"subscription", c.s.Name, "err", err)
	}
}

// lost runs when the member lost its partitions without a rebalance (its
// session expired, say while the broker was unreachable): a commit would be
// refused, and their records in hand are dropped.
func (c *kafkaConsumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.mu.Lock()
	c.drop(func(key kafkaPartition) bool { return slices.Contains(lost[key.topic], key.partition) })
	c.mu.Unlock()
}

// drop forgets the partitions picked; their jobs in hand are then not handled
// nor settled. c.mu is held.
func (c *kafkaConsumer) drop(pick func(kafkaPartition) bool) {
	for key, p := range c.parts {
		if pick(key) {
			c.pending -= len(p.queue)
			delete(c.parts, key)
		}
	}
	signal(c.space)
}

// follow reads the topics subjects can be on with a client of its own,
// outside any group, from since (or now), handing h the records under
// subjects.
func (t *kafkaTransport) follow(ctx context.Context, subjects []string, since time.Time, h func(context.Context, Message)) error {
	ctx, cancel := untilClosed(ctx, t.done)
	defer cancel()
	reading, err := kafkaReadingOf(t.cfg.Stream, subjects)
	if err != nil {
		return fmt.Errorf("broker: follow: %w", err)
	}
	// From since, by the records' timestamps: a topic created later is read
	// from its start. From now, the records already there (as the offsets
	// past them, taken after now) are passed over: a timestamp alone cannot
	// tell a record of the same millisecond published before.
	from := since
	if from.IsZero() {
		from = time.Now()
	}
	var ends kadm.ListedOffsets
	for {
		err := t.ensureTopicsWithin(ctx, reading.topics...)
		if err == nil && since.IsZero() {
			ends, err = t.endOffsets(ctx, reading)
		}
		if ctx.Err() != nil {
			return closedErr(t.done)
		}
		if err == nil {
			break
		}
		t.log.Warn("cannot follow yet, will retry", "subjects", subjects, "err", err)
		pause(ctx, retryPause)
	}
	cl, err := kgo.NewClient(t.clientOpts(append(reading.consumeOpts(t.cfg.Stream),
		kgo.ConsumeStartOffset(kgo.NewOffset().AfterMilli(from.UnixMilli())))...)...)
	if err != nil {
		return fmt.Errorf("broker: follow: %w", err)
	}
	defer cl.Close()
	if reading.all {
		defer t.discovering(cl)()
	}
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return closedErr(t.done)
		}
		failed := false
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, kgo.ErrClientClosed) {
				failed = true
				t.log.Warn("follower fetch failed, will retry", "topic", topic, "partition", partition, "err", err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if end, ok := ends.Lookup(r.Topic, r.Partition); ok && r.Offset < end.Offset {
				return // there before the follower started
			}
			m, err := kafkaMessage(t.cfg.Stream, r)
			if err != nil {
				t.log.Warn("follower passing over a record that is not a Folio message",
					"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			if anySubjectMatches(subjects, m.Subject) {
				h(ctx, m)
			}
		})
		if failed {
			pause(ctx, retryPause)
		}
	}
}

// endOffsets are the end offsets of the topics reading reads, as they are now.
func (t *kafkaTransport) endOffsets(ctx context.Context, reading kafkaReading) (kadm.ListedOffsets, error) {
	ctx, cancel := context.WithTimeout(ctx, kafkaTopicWait)
	defer cancel()
	topics := reading.topics
	if reading.all {
		var err error
		if topics, err = t.streamTopics(ctx); err != nil {
			return nil, err
		}
	}
	if len(topics) == 0 {
		return nil, nil
	}
	ends, err := t.adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	return ends, err
}

// kafkaLogger passes franz-go's warnings and errors on to the broker's log, one
// level down: it logs every failed connection attempt and request while a broker
// is down, which the adapter reports once itself.
type kafkaLogger struct{ log *slog.Logger }

func (l kafkaLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kafkaLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		l.log.Warn("kafka: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		l.log.Debug("kafka: "+msg, keyvals...)
	}
}
