package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/broker/natsconn"
)

// Config selects and locates the broker.
type Config struct {
	Kind        string `env:"FOLIO_BROKER" envDefault:"nats"` // "nats", "rabbitmq" or "kafka"
	NATSURL     string `env:"FOLIO_NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	RabbitMQURL string `env:"FOLIO_RABBITMQ_URL" envDefault:"amqp://guest:guest@127.0.0.1:5672/" mask:"true"`
	// RabbitMQCA is a PEM file of the CA that signed the server's certificate,
	// for amqps:// URLs (without it, the system's roots).
	RabbitMQCA string `env:"FOLIO_RABBITMQ_CA"`
	// KafkaBrokers are the Kafka seed brokers, host:port, comma-separated: the
	// client learns the rest of the cluster from them.
	KafkaBrokers string `env:"FOLIO_KAFKA_BROKERS" envDefault:"127.0.0.1:9092"`
	// KafkaTLS turns TLS on for Kafka, checking the brokers against the
	// system's roots; KafkaCA, KafkaCert and KafkaKey turn it on too, and
	// FOLIO_KAFKA_TLS=false does not turn it off then.
	KafkaTLS bool `env:"FOLIO_KAFKA_TLS"`
	// KafkaCA is a PEM file of the CA that signed the brokers' certificates
	// (without it, the system's roots).
	KafkaCA string `env:"FOLIO_KAFKA_CA"`
	// KafkaCert and KafkaKey are a client certificate, for brokers that verify
	// clients (ssl.client.auth=required).
	KafkaCert string `env:"FOLIO_KAFKA_CERT"`
	KafkaKey  string `env:"FOLIO_KAFKA_KEY" mask:"true"`
	// KafkaSASL is the SASL mechanism: scram-sha-512, scram-sha-256 or plain
	// (plain only over TLS); empty, none.
	KafkaSASL string `env:"FOLIO_KAFKA_SASL"`
	// KafkaUser and KafkaPassword are the SASL credential; the password may be
	// read from KafkaPasswordFile instead, so that it need not sit in the
	// environment (a mounted secret).
	KafkaUser         string `env:"FOLIO_KAFKA_USER"`
	KafkaPassword     string `env:"FOLIO_KAFKA_PASSWORD" mask:"true"`
	KafkaPasswordFile string `env:"FOLIO_KAFKA_PASSWORD_FILE"`
	// NATS is the program's NATS credential and TLS settings, shared with its
	// discovery connection.
	NATS natsconn.Config
	// Stream is the JetStream stream name, the RabbitMQ topic exchange name, or
	// the first part of the Kafka topic names (<stream>.<source>, see
	// kafka_topics.go).
	Stream string `env:"FOLIO_EVENTS_STREAM" envDefault:"FOLIO_EVENTS"`
	// Prefix is the first subject token: events are <prefix>.book.created etc.
	Prefix string `env:"FOLIO_EVENTS_PREFIX" envDefault:"folio"`
	// MaxAge and MaxBytes bound the JetStream stream, or each Kafka topic's
	// retention (the oldest events are discarded first). Unset, a stream or topic
	// Folio creates gets DefaultMaxAge and DefaultMaxBytes, and an existing one
	// keeps its own limits; set, they are applied to an existing one too. 0 is
	// no limit. See decision 19.
	MaxAge   StreamAge   `env:"FOLIO_EVENTS_MAX_AGE"`
	MaxBytes StreamBytes `env:"FOLIO_EVENTS_MAX_BYTES"`
}

// The event stream's limits when Folio creates it and none are configured: a week
// lets a consumer that was down over a long weekend catch up; a gibibyte is
// about 1.5 million events of Folio's size, and keeps a small disk from filling.
const (
	DefaultMaxAge   = 7 * 24 * time.Hour
	DefaultMaxBytes = 1 << 30
)

// minMaxAge is the shortest age limit accepted: JetStream's de-duplication window
// (natsDuplicateWindow) may not be longer than the stream's age limit.
const minMaxAge = natsDuplicateWindow

// StreamAge is a configured age limit, or none (Set false).
type StreamAge struct {
	Value time.Duration
	Set   bool
}

// UnmarshalText reads a Go duration ("168h", "30m"); "0" is no limit.
func (a *StreamAge) UnmarshalText(b []byte) error {
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	*a = StreamAge{Value: d, Set: true}
	return nil
}

func (a StreamAge) String() string {
	if !a.Set {
		return ""
	}
	return a.Value.String()
}

// StreamBytes is a configured size limit, or none (Set false).
type StreamBytes struct {
	Value int64
	Set   bool
}

// byteUnits are the suffixes StreamBytes reads, longest first.
var byteUnits = []struct {
	suffix string
	size   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// UnmarshalText reads a number of bytes, with an optional unit (KiB, MiB, GiB,
// TiB): "1GiB", "512MiB", "1073741824". "0" is no limit.
func (s *StreamBytes) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	num, size := text, int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(text, u.suffix) {
			num, size = strings.TrimSpace(strings.TrimSuffix(text, u.suffix)), u.size
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/size {
		return fmt.Errorf("%q is not a size in bytes (for example 1GiB, 512MiB, 1073741824)", text)
	}
	*s = StreamBytes{Value: n * size, Set: true}
	return nil
}

func (s StreamBytes) String() string {
	if !s.Set {
		return ""
	}
	for _, u := range byteUnits {
		if s.Value != 0 && s.Value%u.size == 0 {
			return strconv.FormatInt(s.Value/u.size, 10) + u.suffix
		}
	}
	return "0"
}

// streamLimits are the age and size limits a stream Folio creates gets (0 and -1:
// none, as JetStream says).
func (c Config) streamLimits() (maxAge time.Duration, maxBytes int64) {
	maxAge, maxBytes = DefaultMaxAge, DefaultMaxBytes
	if c.MaxAge.Set {
		maxAge = c.MaxAge.Value
	}
	if c.MaxBytes.Set {
		maxBytes = c.MaxBytes.Value
	}
	if maxBytes == 0 {
		maxBytes = -1
	}
	return maxAge, maxBytes
}

// Broker is one connection to the configured broker. It is both the Publisher and
// the Subscriber of a service, so that both share the connection.
type Broker struct {
	t       transport
	prefix  string
	log     *slog.Logger
	metrics *metrics
	close   sync.Once
}

var (
	_ Publisher      = (*Broker)(nil)
	_ BatchPublisher = (*Broker)(nil)
	_ Subscriber     = (*Broker)(nil)
)

// transport is what differs between NATS JetStream, RabbitMQ and Kafka; the
// Broker keeps validation, the retry decision, dead-lettering and metrics in one
// place.
type transport interface {
	publish(ctx context.Context, m Message) error
	// publishBatch sends ms in order from the calling goroutine, then waits for
	// the acknowledgements in order; it returns how many leading ones came.
	publishBatch(ctx context.Context, ms []Message) (int, error)
	// consume runs until ctx ends, handing each delivery to deliver and settling
	// it as the returned verdict says.
	consume(ctx context.Context, s Subscription, deliver deliverFunc) error
	// follow runs until ctx ends, handing every message on subjects published
	// from since on to h, for this process alone.
	follow(ctx context.Context, subjects []string, since time.Time, h func(context.Context, Message)) error
	close() error
}

// deliverFunc handles the attempt-th delivery (1-based) of m.
type deliverFunc func(ctx context.Context, m Message, attempt int) verdict

// Validate checks the settings without connecting, so that a program can refuse
// a bad one before it opens anything.
func (cfg Config) Validate() error {
	if cfg.Kind != "nats" && cfg.Kind != "rabbitmq" && cfg.Kind != "kafka" {
		return fmt.Errorf("broker: FOLIO_BROKER: unknown kind %q (want nats, rabbitmq or kafka)", cfg.Kind)
	}
	if !token.MatchString(cfg.Stream) || !token.MatchString(cfg.Prefix) {
		return fmt.Errorf("broker: stream %q and prefix %q must be non-empty and contain only letters, digits, '-' or '_'", cfg.Stream, cfg.Prefix)
	}
	if cfg.MaxAge.Set && (cfg.MaxAge.Value < 0 || cfg.MaxAge.Value > 0 && cfg.MaxAge.Value < minMaxAge) {
		return fmt.Errorf("broker: FOLIO_EVENTS_MAX_AGE %s: want 0 (no limit) or at least %s, the de-duplication window", cfg.MaxAge.Value, minMaxAge)
	}
	if cfg.MaxBytes.Set && cfg.MaxBytes.Value < 0 {
		return fmt.Errorf("broker: FOLIO_EVENTS_MAX_BYTES %d: want 0 (no limit) or more", cfg.MaxBytes.Value)
	}
	if cfg.Kind == "kafka" {
		// Topics are <stream>.<source>: the shortest takes two characters more.
		if len(cfg.Stream)+2 > kafkaMaxTopicLen {
			return fmt.Errorf("broker: FOLIO_EVENTS_STREAM %q: a Kafka topic name has at most %d characters, and the stream's topics add .<source> to it", cfg.Stream, kafkaMaxTopicLen)
		}
		if _, err := kafkaSeeds(cfg.KafkaBrokers); err != nil {
			return err
		}
		if err := cfg.validateKafkaSecurity(); err != nil {
			return err
		}
	}
	return nil
}

// kafkaSeeds reads FOLIO_KAFKA_BROKERS: host:port pairs, comma-separated.
func kafkaSeeds(list string) ([]string, error) {
	var seeds []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		host, port, err := net.SplitHostPort(s)
		if err == nil {
			var n int
			n, err = strconv.Atoi(port)
			if err == nil && (host == "" || n < 1 || n > 65535) {
				err = errors.New("want host:port")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("broker: FOLIO_KAFKA_BROKERS: %q is not a host:port (%v)", s, err)
		}
		seeds = append(seeds, s)
	}
	return seeds, nil
}

// Open connects to the broker cfg.Kind names. It succeeds even when the broker is
// unreachable, so that a service can start and take writes while it is down: the
// connection is retried in the background, Publish fails fast meanwhile, and the
// stream or exchange is (re)declared once connected.
func Open(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	b := &Broker{prefix: cfg.Prefix, log: log.With("broker", cfg.Kind), metrics: m}
	switch cfg.Kind {
	case "nats":
		b.t, err = openNATS(ctx, cfg, b.log)
	case "rabbitmq":
		if cfg.MaxAge.Set || cfg.MaxBytes.Set {
			// Queues are emptied as their consumers acknowledge; a limit on
			// them would drop a slow consumer's events for good (decision 19).
			b.log.Warn("FOLIO_EVENTS_MAX_AGE and FOLIO_EVENTS_MAX_BYTES bound a JetStream stream; RabbitMQ's queues are not limited")
		}
		b.t, err = openRabbitMQ(ctx, cfg, b.log)
	case "kafka":
		b.t, err = openKafka(ctx, cfg, b.log)
	default:
		return nil, fmt.Errorf("broker: unknown kind %q (want nats, rabbitmq or kafka)", cfg.Kind)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// token is what a stream, prefix or subscription name may be: one subject token
// that is also a valid JetStream stream or consumer name.
var token = regexp.MustCompile(`^[-_a-zA-Z0-9]+$`)

// errNotConnected is returned by Publish while the broker is unreachable.
var errNotConnected = errors.New("broker: not connected")

// errClosed is returned by Publish and Consume after Close.
var errClosed = errors.New("broker: closed")

// Publish sends m and returns once the broker has durably accepted it.
func (b *Broker) Publish(ctx context.Context, m Message) error {
	if err := b.check(m); err != nil {
		return err
	}
	err := b.t.publish(ctx, m)
	b.metrics.published(err)
	if err != nil {
		return fmt.Errorf("broker: publish %s %s: %w", m.Subject, m.ID, err)
	}
	return nil
}

// PublishBatch implements BatchPublisher. An invalid message is never sent, nor
// anything after it, so that the messages behind it cannot overtake it.
func (b *Broker) PublishBatch(ctx context.Context, ms []Message) (int, error) {
	valid, invalid := len(ms), error(nil)
	for i, m := range ms {
		if err := b.check(m); err != nil {
			valid, invalid = i, err
			break
		}
	}
	if valid == 0 {
		return 0, invalid
	}
	acked, err := b.t.publishBatch(ctx, ms[:valid])
	acked = min(max(acked, 0), valid)
	b.metrics.publishedBatch(acked, err)
	if err != nil && acked < valid {
		return acked, fmt.Errorf("broker: publish %s %s: %w", ms[acked].Subject, ms[acked].ID, err)
	}
	if err != nil {
		return acked, fmt.Errorf("broker: publish: %w", err)
	}
	return acked, invalid
}

func (b *Broker) check(m Message) error {
	if m.ID == "" || !strings.HasPrefix(m.Subject, b.prefix+".") {
		return fmt.Errorf("broker: message needs an ID and a subject under %q, got id %q subject %q", b.prefix+".", m.ID, m.Subject)
	}
	return nil
}

// Consume implements Subscriber.
func (b *Broker) Consume(ctx context.Context, s Subscription, h Handler) error {
	s, err := b.normalize(s)
	if err != nil {
		return err
	}
	b.metrics.subscribed(s.Name)
	return b.t.consume(ctx, s, func(ctx context.Context, m Message, attempt int) verdict {
		b.metrics.handling(s.Name, m)
		return b.deliver(ctx, s, h, m, attempt)
	})
}

// Close closes the connection; running Consume calls return.
func (b *Broker) Close() error {
	var err error
	b.close.Do(func() { err = b.t.close() })
	return err
}

// normalize fills in the documented defaults and rejects what a broker would.
func (b *Broker) normalize(s Subscription) (Subscription, error) {
	if !token.MatchString(s.Name) {
		return s, fmt.Errorf("broker: subscription name %q must be non-empty and contain only letters, digits, '-' or '_'", s.Name)
	}
	if len(s.Subjects) == 0 {
		return s, fmt.Errorf("broker: subscription %s has no subjects", s.Name)
	}
	for _, subj := range s.Subjects {
		if !validFilter(subj) || !strings.HasPrefix(subj, b.prefix+".") {
			return s, fmt.Errorf("broker: subscription %s: subject filter %q is not a valid filter under %q", s.Name, subj, b.prefix+".")
		}
	}
	if s.MaxAttempts <= 0 {
		s.MaxAttempts = 5
	}
	if s.Backoff <= 0 {
		s.Backoff = 200 * time.Millisecond
	}
	if s.Concurrency <= 0 {
		s.Concurrency = 1
	}
	return s, nil
}

// validFilter reports whether f is a subject filter both brokers read the same way:
// non-empty tokens, wildcards only as whole tokens, ">" only last.
func validFilter(f string) bool {
	tokens := strings.Split(f, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return false
		case t == ">" && i != len(tokens)-1:
			return false
		case t != "*" && t != ">" && strings.ContainsAny(t, "*># \t"):
			return false
		}
	}
	return true
}

// anySubjectMatches reports whether subject falls under one of filters.
func anySubjectMatches(filters []string, subject string) bool {
	return slices.ContainsFunc(filters, func(f string) bool { return subjectMatches(f, subject) })
}

// subjectMatches reports whether subject falls under filter, NATS-style.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// clientTLS is the TLS configuration of a broker client: it trusts the CA in the
// PEM file ca (empty: the system's roots) and, given certFile and keyFile, shows
// that certificate. prefix names the settings in errors (FOLIO_KAFKA or
// FOLIO_RABBITMQ, then _CA, _CERT and _KEY), so that a typo in a path is refused
// at start rather than fall back to the system's roots unnoticed. The server
// name is left to the client, which takes it from each broker's address as it
// dials it.
func clientTLS(prefix, ca, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("broker: %s_CA: %w", prefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker: %s_CA %s holds no PEM certificate", prefix, ca)
		}
		tc.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("broker: %s_CERT and %s_KEY go together", prefix, prefix)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("broker: %s_CERT and %s_KEY: %w", prefix, prefix, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
