package broker

// The Kafka adapter's topic layout: a topic per source of events, so that the
// cluster's ACLs, which grant a topic and not a key, can say who may publish
// what (decision 28).
//
// A subject is <prefix>.<source>.<event> ("folio.book.created",
// "folio.account.revoked"): its record goes to the topic <stream>.<source>
// ("FOLIO_EVENTS.book"), keyed by the subject. Dead letters,
// <prefix>.deadletter.<subscription>, go to <stream>.deadletter.<subscription>,
// a topic per subscription, so that a service may write its own dead letters
// and nobody else's. A service's credential is granted Write on its own
// source's topic and its dead-letter topics, Read on the topics it consumes:
// with the whole stream in one topic, any credential that could publish could
// forge any subject, an account revocation or another service's delete.
//
// Since anyone allowed to write a topic may write any key to it, a consumer
// takes a record only if its subject belongs in the topic it was read from:
// "folio.author.deleted" written to FOLIO_EVENTS.book by the book service is
// passed over, even by a subscription to "folio.*.deleted" that reads both.
//
// A subscription reads the topics its filters name: "folio.book.>" reads
// FOLIO_EVENTS.book; a filter that leaves the source open ("folio.*.deleted",
// "folio.>") reads every topic of the stream, by regular expression, and finds
// a topic created later when its metadata is next refreshed (at once for the
// topics this process creates, within kafkaDiscoverEvery for the others').

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// kafkaDeadLetterSource is the source token of dead-letter subjects
	// (DeadLetterSubject).
	kafkaDeadLetterSource = "deadletter"
	// kafkaDiscoverEvery bounds how long a subscription or follower reading
	// every topic of the stream takes to find one another process created
	// (Kafka's metadata.max.age.ms, 5 minutes by default).
	kafkaDiscoverEvery = 10 * time.Second
	// kafkaDiscoveredFetchWait bounds how long such a client waits to fetch
	// from a topic it has just found (see consumeOpts).
	kafkaDiscoveredFetchWait = time.Second
)

// kafkaTopicOf is the topic subject's record goes to under stream, or why it
// has none: the subject is not <prefix>.<source>.<event>, or its source (or
// dead-lettering subscription) cannot be part of a Kafka topic name.
func kafkaTopicOf(stream, subject string) (string, error) {
	if !validSubject(subject) {
		return "", fmt.Errorf("subject %q is not a subject", subject)
	}
	tokens := strings.Split(subject, ".")
	if len(tokens) < 3 {
		return "", fmt.Errorf("subject %q: on Kafka a subject is <prefix>.<source>.<event>, and its source names its topic (%s.<source>)", subject, stream)
	}
	source := tokens[1]
	if !token.MatchString(source) {
		return "", fmt.Errorf("subject %q: its source %q can only hold letters, digits, '-' and '_', as it names a Kafka topic", subject, source)
	}
	topic := stream + "." + source
	if source == kafkaDeadLetterSource {
		if len(tokens) != 3 || !token.MatchString(tokens[2]) {
			return "", fmt.Errorf("subject %q: a dead-letter subject is <prefix>.%s.<subscription>", subject, kafkaDeadLetterSource)
		}
		topic += "." + tokens[2]
	}
	if len(topic) > kafkaMaxTopicLen {
		return "", fmt.Errorf("subject %q: its topic %s is longer than Kafka's %d characters", subject, topic, kafkaMaxTopicLen)
	}
	return topic, nil
}

// kafkaDeadLetterTopic is the topic of subscription's dead letters.
func kafkaDeadLetterTopic(stream, subscription string) string {
	return stream + "." + kafkaDeadLetterSource + "." + subscription
}

// kafkaReading is what a subscription or follower reads: the topics its
// filters name, and, when a filter leaves the source open, every topic of the
// stream.
type kafkaReading struct {
	topics []string
	all    bool
}

// kafkaReadingOf is what filters (valid, under the prefix) read under stream.
// A filter whose source is no topic's reads nothing: no subject published
// through this adapter can match it; filters that all read nothing are an
// error.
func kafkaReadingOf(stream string, filters []string) (kafkaReading, error) {
	var r kafkaReading
	add := func(topic string) {
		if len(topic) <= kafkaMaxTopicLen && !slices.Contains(r.topics, topic) {
			r.topics = append(r.topics, topic)
		}
	}
	for _, f := range filters {
		tokens := strings.Split(f, ".")
		if len(tokens) < 2 {
			continue
		}
		switch source := tokens[1]; {
		case source == "*" || source == ">":
			r.all = true
		case !token.MatchString(source):
		case source != kafkaDeadLetterSource:
			add(stream + "." + source)
		case len(tokens) < 3:
		case tokens[2] == "*" || tokens[2] == ">":
			r.all = true // every subscription's dead letters
		case token.MatchString(tokens[2]):
			add(kafkaDeadLetterTopic(stream, tokens[2]))
		}
	}
	if len(r.topics) == 0 && !r.all {
		return r, fmt.Errorf("no subject of %v can be published on Kafka, where a subject is <prefix>.<source>.<event>", filters)
	}
	return r, nil
}

// consumeOpts are the client options that read r under stream.
func (r kafkaReading) consumeOpts(stream string) []kgo.Opt {
	if !r.all {
		return []kgo.Opt{kgo.ConsumeTopics(r.topics...)}
	}
	return []kgo.Opt{
		kgo.ConsumeRegex(), kgo.ConsumeTopics(kafkaStreamPattern(stream)),
		kgo.MetadataMaxAge(kafkaDiscoverEvery),
		// A topic found while a fetch from its broker waits for records of
		// the others is fetched once that one returns: after this rather
		// than Kafka's 5 s.
		kgo.FetchMaxWait(kafkaDiscoveredFetchWait),
	}
}

// kafkaStreamPattern matches the names of stream's topics. A stream name holds
// no '.', so no other stream's topics match.
func kafkaStreamPattern(stream string) string {
	return "^" + regexp.QuoteMeta(stream) + `\.`
}

// kafkaTopic is what the transport knows of one topic.
type kafkaTopic struct {
	mu sync.Mutex // held while it is being made ready
	// ready says the topic exists; cleared when a publish finds it gone.
	ready bool
}

// topic is the state of the topic name, made on first use.
func (t *kafkaTransport) topic(name string) *kafkaTopic {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.topics[name]
	if st == nil {
		st = &kafkaTopic{}
		t.topics[name] = st
	}
	return st
}

// ensureTopicsWithin ensures each of topics in turn (ensureTopic), within
// kafkaTopicWait: a consumer whose cluster does not answer, or drops it at
// authentication, says so every few seconds rather than each time franz-go's
// own retries give up.
func (t *kafkaTransport) ensureTopicsWithin(ctx context.Context, topics ...string) error {
	ctx, cancel := context.WithTimeout(ctx, kafkaTopicWait)
	defer cancel()
	for _, topic := range topics {
		if err := t.ensureTopic(ctx, topic); err != nil {
			return err
		}
	}
	return nil
}

// ensureTopic creates topic unless it exists: one partition, the configured
// limits as its retention (or the defaults). An existing topic keeps its own
// settings, but for limits configured explicitly (see applyLimits).
func (t *kafkaTransport) ensureTopic(ctx context.Context, topic string) error {
	st := t.topic(topic)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ready {
		return nil
	}
	maxAge, maxBytes := t.cfg.streamLimits()
	_, err := t.adm.CreateTopic(ctx, 1, -1, map[string]*string{
		"cleanup.policy":  kadm.StringPtr("delete"),
		"retention.ms":    kadm.StringPtr(strconv.FormatInt(kafkaRetentionMs(maxAge), 10)),
		"retention.bytes": kadm.StringPtr(strconv.FormatInt(maxBytes, 10)),
	}, topic)
	if errors.Is(err, kerr.TopicAlreadyExists) {
		err = nil
		t.applyLimits(ctx, topic)
	}
	if kafkaDenied(err) {
		// A credential granted only to read or write the topic may not
		// create it (least privilege: the operator did); Kafka refuses the
		// creation whether or not the topic exists, so it is asked.
		if exists, xerr := t.topicExists(ctx, topic); xerr == nil && exists {
			err = nil
			if t.cfg.MaxAge.Set || t.cfg.MaxBytes.Set {
				t.applyLimits(ctx, topic) // says so if it may not
			}
		} else if xerr == nil {
			err = fmt.Errorf("%w: the credential may not create the topic, and it does not exist: create it, or grant Create on it", err)
		}
	}
	if err != nil {
		return fmt.Errorf("topic %s: %w", topic, err)
	}
	st.ready = true
	t.topicFound()
	return nil
}

// topicFound has the clients reading every topic of the stream look for new
// topics now, rather than at their next metadata refresh: a topic this
// process created, or used for the first time, may be one they do not know.
func (t *kafkaTransport) topicFound() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for cl := range t.discoverers {
		cl.ForceMetadataRefresh()
	}
}

// discovering registers cl as a client reading every topic of the stream
// (topicFound); the function returned unregisters it.
func (t *kafkaTransport) discovering(cl *kgo.Client) func() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.discoverers[cl] = struct{}{}
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.discoverers, cl)
	}
}

// noticeTopicLoss has topic created again when a publish says it is gone.
func (t *kafkaTransport) noticeTopicLoss(topic string, err error) {
	if errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID) {
		st := t.topic(topic)
		st.mu.Lock()
		st.ready = false
		st.mu.Unlock()
	}
}

// topicExists reports whether the cluster describes topic to this client.
func (t *kafkaTransport) topicExists(ctx context.Context, topic string) (bool, error) {
	topics, err := t.adm.ListTopics(ctx, topic)
	if err != nil {
		return false, err
	}
	d, ok := topics[topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return false, nil
	}
	return d.Err == nil, d.Err
}

// streamTopics are the topics of the stream the cluster describes to this
// client.
func (t *kafkaTransport) streamTopics(ctx context.Context) ([]string, error) {
	topics, err := t.adm.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range topics {
		if d.Err == nil && strings.HasPrefix(d.Topic, t.cfg.Stream+".") {
			names = append(names, d.Topic)
		}
	}
	return names, nil
}

// kafkaRetentionMs is retention.ms for an age limit, where 0 is none (-1).
func kafkaRetentionMs(maxAge time.Duration) int64 {
	if maxAge <= 0 {
		return -1
	}
	return maxAge.Milliseconds()
}

// applyLimits sets on an existing topic the limits configured explicitly
// (FOLIO_EVENTS_MAX_AGE, FOLIO_EVENTS_MAX_BYTES) that it does not have, as the
// NATS adapter does with its stream: limits not configured are the operator's
// and are kept; a topic with no limit at all is worth a warning; lowering one
// deletes events, so it is a warning too. A credential that may not alter the
// topic leaves it as it is, with a warning: publishing goes on.
func (t *kafkaTransport) applyLimits(ctx context.Context, topic string) {
	configs, err := t.adm.DescribeTopicConfigs(ctx, topic)
	var rc kadm.ResourceConfig
	if err == nil {
		rc, err = configs.On(topic, nil)
	}
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		t.log.Warn("cannot read the topic's limits", "topic", topic, "err", err)
		return
	}
	current := func(key string) int64 {
		for _, c := range rc.Configs {
			if c.Key == key && c.Value != nil {
				if n, err := strconv.ParseInt(*c.Value, 10, 64); err == nil {
					return n
				}
			}
		}
		return -1 // Kafka's default for both: no limit
	}
	age, size := current("retention.ms"), current("retention.bytes")
	wantAge, wantSize := age, size
	maxAge, maxBytes := t.cfg.streamLimits()
	if t.cfg.MaxAge.Set {
		wantAge = kafkaRetentionMs(maxAge)
	}
	if t.cfg.MaxBytes.Set {
		wantSize = maxBytes
	}
	if wantAge == age && wantSize == size {
		if age <= 0 && size <= 0 {
			t.log.Warn("the event topic has no age or size limit and grows for ever; set FOLIO_EVENTS_MAX_AGE and FOLIO_EVENTS_MAX_BYTES to bound it",
				"topic", topic)
		}
		return
	}
	level := slog.LevelInfo
	if lowers(age, wantAge) || lowers(size, wantSize) {
		level = slog.LevelWarn // events beyond the new limits are deleted now
	}
	responses, err := t.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr(strconv.FormatInt(wantAge, 10))},
		{Op: kadm.SetConfig, Name: "retention.bytes", Value: kadm.StringPtr(strconv.FormatInt(wantSize, 10))},
	}, topic)
	if err == nil {
		var r kadm.AlterConfigsResponse
		if r, err = responses.On(topic, nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		t.log.Warn("cannot apply the configured limits to the event topic; it keeps its own", "topic", topic,
			"retention_ms", age, "retention_bytes", size, "want_retention_ms", wantAge, "want_retention_bytes", wantSize, "err", err)
		return
	}
	t.log.Log(ctx, level, "event topic limits changed as configured", "topic", topic,
		"retention_ms", age, "retention_bytes", size, "new_retention_ms", wantAge, "new_retention_bytes", wantSize)
}
