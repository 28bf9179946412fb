package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"folio/internal/platform/config"
	"folio/internal/platform/polltest"
	"folio/internal/platform/tlstest"
)

// writeFile writes b to path, readable by the test's user alone, as a secret is.
func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startSecureKafka starts a kfake cluster of three brokers with opts (TLS,
// SASL, ACLs), closed when the test ends, and returns its seeds. Three, so
// that the clients reach brokers they learn of from the seeds' metadata, and
// each connection must be secured, not only the first.
func startSecureKafka(t *testing.T, opts ...kfake.Opt) string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

// kafkaTestConfig is a configuration on seeds with a stream and prefix of the
// test's own.
func kafkaTestConfig(seeds string) Config {
	suffix := strings.ToLower(rand.Text()[:10])
	return Config{Kind: "kafka", KafkaBrokers: seeds, Stream: "FOLIO_TEST_" + strings.ToUpper(suffix), Prefix: "t" + suffix}
}

// openLogged opens a Broker with cfg that logs to log, closed when the test
// ends.
func openLogged(t *testing.T, cfg Config, log *logBuffer) *Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	b, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// tryPublish publishes one event under cfg's prefix, id id.
func tryPublish(t *testing.T, b *Broker, cfg Config, id string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	return b.Publish(ctx, Message{Subject: cfg.Prefix + ".book.created", ID: id, Body: []byte(`{}`)})
}

// delivered counts what a background Consume hands its handler.
type delivered struct {
	n   atomic.Int64
	ids chan string
}

// consumeInBackground runs b.Consume of subscription name on everything under
// cfg's prefix until the test ends.
func consumeInBackground(t *testing.T, b *Broker, cfg Config, name string) *delivered {
	return consumeSubjects(t, b, name, cfg.Prefix+".>")
}

// consumeSubjects runs b.Consume of subscription name on subjects until the
// test ends.
func consumeSubjects(t *testing.T, b *Broker, name string, subjects ...string) *delivered {
	d := &delivered{ids: make(chan string, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	var done sync.WaitGroup
	done.Go(func() {
		_ = b.Consume(ctx, Subscription{Name: name, Subjects: subjects}, func(_ context.Context, m Message) error {
			d.n.Add(1)
			select {
			case d.ids <- m.ID:
			default:
			}
			return nil
		})
	})
	t.Cleanup(func() { cancel(); done.Wait() })
	return d
}

// refusedTwice waits until log has at least two lines holding all of what: a
// consumer that says twice that it was refused has tried again after the
// events were there, so what it has not delivered by then it was not given.
func refusedTwice(t *testing.T, log *logBuffer, what ...string) {
	t.Helper()
	polltest.Until(t, fmt.Sprintf("the consumer refused twice (%q)", what), func() error {
		n := 0
		for _, line := range strings.Split(log.String(), "\n") {
			if !slices.ContainsFunc(what, func(w string) bool { return !strings.Contains(line, w) }) {
				n++
			}
		}
		if n < 2 {
			return fmt.Errorf("%d times so far; log:\n%s", n, log)
		}
		return nil
	})
}

// kafkaSuperAdmin is an admin client of the superuser user (SCRAM-SHA-512) on
// seeds, with opts (TLS).
func kafkaSuperAdmin(t *testing.T, seeds, user, password string, opts ...kgo.Opt) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(seeds, ",")...),
		kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// With SASL required, the right credential publishes and consumes, with
// either SCRAM.
func TestKafkaSASL(t *testing.T) {
	for _, tt := range []struct{ mech, kfake string }{
		{kafkaSASLScram512, "SCRAM-SHA-512"},
		{kafkaSASLScram256, "SCRAM-SHA-256"},
	} {
		t.Run(tt.mech, func(t *testing.T) {
			cfg := kafkaTestConfig(startSecureKafka(t, kfake.EnableSASL(), kfake.User(tt.kfake, "book", "s3cret")))
			cfg.KafkaSASL, cfg.KafkaUser, cfg.KafkaPassword = strings.ToUpper(tt.mech), "book", "s3cret" // Kafka's own spelling is read too
			b := openLogged(t, cfg, &logBuffer{})
			if err := tryPublish(t, b, cfg, "evt-1"); err != nil {
				t.Fatalf("publish with the right credential: %v", err)
			}
			if id := receiveID(t, consumeInBackground(t, b, cfg, "books")); id != "evt-1" {
				t.Errorf("consumed %q, want evt-1", id)
			}
		})
	}
}

// With SASL required, a wrong password, an unknown user or no credential is
// refused: its publishes fail and are not written, and its consumer keeps
// trying without being given anything. No password shows in a log.
func TestKafkaSASLRefused(t *testing.T) {
	const password, wrong = "the-right-s3cret", "a-wrong-s3cret"
	base := kafkaTestConfig(startSecureKafka(t, kfake.EnableSASL(), kfake.User("SCRAM-SHA-512", "book", password)))
	good := base
	good.KafkaSASL, good.KafkaUser = kafkaSASLScram512, "book"
	// FOLIO_KAFKA_PASSWORD_FILE, as a mounted secret holds it.
	good.KafkaPasswordFile = filepath.Join(t.TempDir(), "password")
	writeFile(t, good.KafkaPasswordFile, []byte(password+"\n"))
	var goodLog logBuffer
	b := openLogged(t, good, &goodLog)
	if err := tryPublish(t, b, base, "evt-1"); err != nil {
		t.Fatalf("publish with the right credential: %v", err)
	}
	got := consumeInBackground(t, b, base, "books")
	if id := receiveID(t, got); id != "evt-1" {
		t.Fatalf("consumed %q, want evt-1", id)
	}

	var mu sync.Mutex
	logs := []*logBuffer{&goodLog}
	t.Run("refused", func(t *testing.T) {
		for _, bad := range []struct {
			name string
			set  func(*Config)
		}{
			{"wrong password", func(c *Config) { c.KafkaSASL, c.KafkaUser, c.KafkaPassword = kafkaSASLScram512, "book", wrong }},
			{"unknown user", func(c *Config) { c.KafkaSASL, c.KafkaUser, c.KafkaPassword = kafkaSASLScram512, "nobody", password }},
			{"no credential", func(*Config) {}},
		} {
			t.Run(bad.name, func(t *testing.T) {
				t.Parallel() // each waits for its refusals
				var log logBuffer
				mu.Lock()
				logs = append(logs, &log)
				mu.Unlock()
				cfg := base
				bad.set(&cfg)
				b := openLogged(t, cfg, &log)
				d := consumeInBackground(t, b, base, "intruder")
				if err := tryPublish(t, b, base, "evt-forged"); err == nil {
					t.Error("publish succeeded")
				}
				refusedTwice(t, &log, "will retry", "subscription=intruder")
				if n := d.n.Load(); n != 0 {
					t.Errorf("%d events delivered to a consumer the cluster refused", n)
				}
			})
		}
	})
	// Nothing refused was written: the right consumer's next event is the
	// right publisher's.
	if err := tryPublish(t, b, base, "evt-2"); err != nil {
		t.Fatal(err)
	}
	if id := receiveID(t, got); id != "evt-2" {
		t.Errorf("after evt-1 the topic held %q, want evt-2", id)
	}
	for _, l := range logs {
		if s := l.String(); strings.Contains(s, password) || strings.Contains(s, wrong) {
			t.Errorf("a password is in the log:\n%s", s)
		}
	}
}

// receiveID waits for the next id d's consumer is handed.
func receiveID(t *testing.T, d *delivered) string {
	t.Helper()
	select {
	case id := <-d.ids:
		return id
	case <-time.After(wait):
		t.Fatalf("nothing delivered within %s", wait)
		return ""
	}
}

// TLS: the adapter trusts the CA it is given, and nothing else: not the
// system's roots in its place, not another CA, not a certificate of its CA
// for another name than the broker's address.
func TestKafkaTLS(t *testing.T) {
	ca, other := tlstest.NewCA(t, "folio test CA"), tlstest.NewCA(t, "another CA")
	seeds := startSecureKafka(t, kfake.TLS(ca.ServerTLS(t, "127.0.0.1")))
	cfg := kafkaTestConfig(seeds)
	cfg.KafkaCA = ca.File
	b := openLogged(t, cfg, &logBuffer{})
	if err := tryPublish(t, b, cfg, "evt-1"); err != nil {
		t.Fatalf("publish over TLS with the CA: %v", err)
	}
	if id := receiveID(t, consumeInBackground(t, b, cfg, "books")); id != "evt-1" {
		t.Errorf("consumed %q, want evt-1", id)
	}

	misnamed := startSecureKafka(t, kfake.TLS(ca.ServerTLS(t, "kafka.elsewhere.test")))
	for _, tt := range []struct {
		name string
		set  func(*Config)
	}{
		{"system roots", func(c *Config) { c.KafkaTLS = true }},
		{"another CA", func(c *Config) { c.KafkaCA = other.File }},
		{"the CA's certificate for another name", func(c *Config) { c.KafkaBrokers, c.KafkaCA = misnamed, ca.File }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := kafkaTestConfig(seeds)
			tt.set(&c)
			var log logBuffer
			b := openLogged(t, c, &log)
			err := tryPublish(t, b, c, "evt-x")
			var verify *tls.CertificateVerificationError
			if !errors.As(err, &verify) {
				t.Errorf("publish: %v, want it refused for the broker's certificate", err)
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
}

// FOLIO_KAFKA_CERT and FOLIO_KAFKA_KEY: a cluster that verifies clients takes
// the program with its certificate, and refuses it without.
func TestKafkaClientCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "folio test CA")
	server := ca.ServerTLS(t, "127.0.0.1")
	server.ClientAuth, server.ClientCAs = tls.RequireAndVerifyClientCert, x509.NewCertPool()
	server.ClientCAs.AddCert(ca.Cert)
	seeds := startSecureKafka(t, kfake.TLS(server))

	cfg := kafkaTestConfig(seeds)
	cfg.KafkaCA = ca.File
	cfg.KafkaCert, cfg.KafkaKey = ca.ClientFiles(t, "book")
	if err := tryPublish(t, openLogged(t, cfg, &logBuffer{}), cfg, "evt-1"); err != nil {
		t.Errorf("publish with the client certificate: %v", err)
	}
	cfg.KafkaCert, cfg.KafkaKey = "", ""
	if err := tryPublish(t, openLogged(t, cfg, &logBuffer{}), cfg, "evt-2"); err == nil {
		t.Error("publish without a client certificate succeeded")
	}
}

// PLAIN sends the password itself: over TLS it works, and without TLS the
// configuration is refused before anything is sent.
func TestKafkaPlain(t *testing.T) {
	ca := tlstest.NewCA(t, "folio test CA")
	seeds := startSecureKafka(t, kfake.TLS(ca.ServerTLS(t, "127.0.0.1")), kfake.EnableSASL(), kfake.User("PLAIN", "book", "s3cret"))
	cfg := kafkaTestConfig(seeds)
	cfg.KafkaSASL, cfg.KafkaUser, cfg.KafkaPassword, cfg.KafkaCA = "plain", "book", "s3cret", ca.File
	if err := tryPublish(t, openLogged(t, cfg, &logBuffer{}), cfg, "evt-1"); err != nil {
		t.Errorf("PLAIN over TLS: %v", err)
	}

	cfg.KafkaCA = ""
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "FOLIO_KAFKA_SASL=plain") || !strings.Contains(err.Error(), "FOLIO_KAFKA_TLS") {
		t.Errorf("PLAIN without TLS: %v, want an error naming FOLIO_KAFKA_SASL and FOLIO_KAFKA_TLS", err)
	}
	if b, err := Open(t.Context(), cfg, nil, prometheus.NewRegistry()); err == nil {
		_ = b.Close()
		t.Error("Open with PLAIN without TLS succeeded")
	}
}

// The TLS and SASL settings are checked when the program starts; each error
// names the setting and none holds the password.
func TestKafkaSecurityConfig(t *testing.T) {
	const password = "p4ssw0rd-never-shown"
	load := func(vars map[string]string) (Config, error) {
		all := map[string]string{"FOLIO_BROKER": "kafka"}
		for k, v := range vars {
			all[k] = v
		}
		var cfg Config
		if err := config.Load(&cfg, func(k string) string { return all[k] }); err != nil {
			return cfg, err
		}
		return cfg, cfg.Validate()
	}
	for _, tt := range []struct {
		vars map[string]string
		want string // in the error; empty: valid
	}{
		{map[string]string{}, ""},
		{map[string]string{"FOLIO_KAFKA_SASL": "scram-sha-512", "FOLIO_KAFKA_USER": "book", "FOLIO_KAFKA_PASSWORD": password}, ""},
		{map[string]string{"FOLIO_KAFKA_SASL": "SCRAM-SHA-256", "FOLIO_KAFKA_USER": "book", "FOLIO_KAFKA_PASSWORD_FILE": "/run/secrets/kafka"}, ""},
		{map[string]string{"FOLIO_KAFKA_SASL": "plain", "FOLIO_KAFKA_USER": "book", "FOLIO_KAFKA_PASSWORD": password, "FOLIO_KAFKA_TLS": "true"}, ""},
		{map[string]string{"FOLIO_KAFKA_SASL": "plain", "FOLIO_KAFKA_USER": "book", "FOLIO_KAFKA_PASSWORD": password}, "FOLIO_KAFKA_SASL=plain"},
		{map[string]string{"FOLIO_KAFKA_SASL": "plain", "FOLIO_KAFKA_USER": "book", "FOLIO_KAFKA_PASSWORD": password, "FOLIO_KAFKA_TLS": "false"}, "FOLIO_KAFKA_SASL=plain"},
		{map[string]string{"FOLIO_KAFKA_SASL": "gssapi", "FOLIO_KAFKA_USER": "book", "FOLIO_KAFKA_PASSWORD": password}, "FOLIO_KAFKA_SASL"},
		{map[string]string{"FOLIO_KAFKA_SASL": "scram-sha-512", "FOLIO_KAFKA_PASSWORD": password}, "FOLIO_KAFKA_USER"},
		{map[string]string{"FOLIO_KAFKA_SASL": "scram-sha-512", "FOLIO_KAFKA_USER": "book"}, "FOLIO_KAFKA_PASSWORD"},
		{map[string]string{"FOLIO_KAFKA_USER": "book", "FOLIO_KAFKA_PASSWORD": password}, "FOLIO_KAFKA_SASL"},
		{map[string]string{"FOLIO_KAFKA_SASL": "scram-sha-512", "FOLIO_KAFKA_USER": "book", "FOLIO_KAFKA_PASSWORD": password, "FOLIO_KAFKA_PASSWORD_FILE": "/run/secrets/kafka"}, "FOLIO_KAFKA_PASSWORD_FILE"},
		{map[string]string{"FOLIO_KAFKA_CERT": "/etc/folio/cert.pem"}, "FOLIO_KAFKA_KEY"},
		{map[string]string{"FOLIO_KAFKA_KEY": "/etc/folio/key.pem"}, "FOLIO_KAFKA_CERT"},
		{map[string]string{"FOLIO_KAFKA_TLS": "maybe"}, "KafkaTLS"},
	} {
		_, err := load(tt.vars)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%v: %v", tt.vars, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%v: %v, want an error naming %s", tt.vars, err, tt.want)
		case err != nil && strings.Contains(err.Error(), password):
			t.Errorf("%v: the error shows the password: %v", tt.vars, err)
		}
	}
	// Another kind of broker does not read them.
	if _, err := load(map[string]string{"FOLIO_BROKER": "nats", "FOLIO_KAFKA_SASL": "plain"}); err != nil {
		t.Errorf("Kafka's SASL checked for NATS: %v", err)
	}

	// The start-up log line shows the settings, the password masked.
	cfg, err := load(map[string]string{"FOLIO_KAFKA_SASL": "scram-sha-512", "FOLIO_KAFKA_USER": "book", "FOLIO_KAFKA_PASSWORD": password})
	if err != nil {
		t.Fatal(err)
	}
	var line strings.Builder
	slog.New(slog.NewTextHandler(&line, nil)).Info("config", config.Attrs(cfg)...)
	if strings.Contains(line.String(), password) || !strings.Contains(line.String(), "FOLIO_KAFKA_PASSWORD=***") ||
		!strings.Contains(line.String(), "FOLIO_KAFKA_USER=book") {
		t.Errorf("start-up line: %s", line.String())
	}
}

// The files the settings name are read at Open: a missing or wrong one is
// refused, naming the setting, rather than connect without.
func TestKafkaSecurityFilesRejected(t *testing.T) {
	dir := t.TempDir()
	notPEM, empty := filepath.Join(dir, "not.pem"), filepath.Join(dir, "empty")
	writeFile(t, notPEM, []byte("not a certificate"))
	writeFile(t, empty, []byte("\n"))
	ca := tlstest.NewCA(t, "folio test CA")
	for _, tt := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.KafkaCA = filepath.Join(dir, "missing.pem") }, "FOLIO_KAFKA_CA"},
		{func(c *Config) { c.KafkaCA = notPEM }, "FOLIO_KAFKA_CA"},
		{func(c *Config) { c.KafkaCert, c.KafkaKey = ca.File, notPEM }, "FOLIO_KAFKA_CERT"},
		{func(c *Config) {
			c.KafkaSASL, c.KafkaUser, c.KafkaPasswordFile = "scram-sha-512", "book", filepath.Join(dir, "missing")
		}, "FOLIO_KAFKA_PASSWORD_FILE"},
		{func(c *Config) { c.KafkaSASL, c.KafkaUser, c.KafkaPasswordFile = "scram-sha-512", "book", empty }, "FOLIO_KAFKA_PASSWORD_FILE"},
	} {
		cfg := kafkaTestConfig("127.0.0.1:1")
		tt.set(&cfg)
		b, err := Open(t.Context(), cfg, nil, prometheus.NewRegistry())
		if err == nil {
			_ = b.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want an error naming %s", cfg, err, tt.want)
		}
	}
}

// With the cluster's ACLs, as an operator grants them to the book service:
// Write on its own source's topic and its dead letters' topic, Read on the
// topics it consumes (authors) and follows (account revocations) and on its own
// consumer group. It publishes book events, consumes author events and follows
// revocations; the topics are the operator's: it may not create them, and need
// not.
//
// The attack replayed: with the whole stream in one topic, any credential that
// may publish (every consumer may, for its dead letters) could publish an
// account revocation, which makes every service refuse a user's tokens, or an
// author's delete. Here both are refused by the cluster and nothing of them is
// written; a record the book service writes to its own topic under an author
// subject is passed over by the consumers; another subscription's group and
// another stream's topics are refused.
func TestKafkaACLs(t *testing.T) {
	const adminPassword, bookPassword = "admin-s3cret", "book-s3cret"
	mine, theirs := kafkaTestConfig(""), kafkaTestConfig("")
	theirs.Prefix = mine.Prefix // another deployment's stream, on the same cluster
	source := func(c Config, name string) string { return c.Stream + "." + name }
	subject := func(rest string) string { return mine.Prefix + "." + rest }
	allow := func(res kmsg.ACLResourceType, name string, op kmsg.ACLOperation) kfake.ACL {
		return kfake.ACL{Resource: res, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true}
	}
	deadLetters := kafkaDeadLetterTopic(mine.Stream, "book-authors")
	seeds := startSecureKafka(t, kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-512", "admin", adminPassword),
		kfake.User("SCRAM-SHA-512", "book", bookPassword,
			allow(kmsg.ACLResourceTypeTopic, source(mine, "book"), kmsg.ACLOperationWrite),
			allow(kmsg.ACLResourceTypeTopic, deadLetters, kmsg.ACLOperationWrite),
			allow(kmsg.ACLResourceTypeTopic, source(mine, "author"), kmsg.ACLOperationRead),
			allow(kmsg.ACLResourceTypeGroup, kafkaGroup(mine.Prefix, "book-authors"), kmsg.ACLOperationRead),
			allow(kmsg.ACLResourceTypeTopic, source(mine, "account"), kmsg.ACLOperationRead),
		))
	mine.KafkaBrokers, theirs.KafkaBrokers = seeds, seeds
	asAdmin := func(c Config) Config {
		c.KafkaSASL, c.KafkaUser, c.KafkaPassword = kafkaSASLScram512, "admin", adminPassword
		return c
	}
	asBook := func(c Config) Config {
		c.KafkaSASL, c.KafkaUser, c.KafkaPassword = kafkaSASLScram512, "book", bookPassword
		return c
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	// The operator creates the topics, publishing an event of each source.
	admin := openLogged(t, asAdmin(mine), &logBuffer{})
	for _, s := range []string{"book.created", "author.created", "account.revoked", "deadletter.book-authors"} {
		if err := admin.Publish(ctx, Message{Subject: subject(s), ID: "op-" + s, Body: []byte(`{}`)}); err != nil {
			t.Fatalf("admin publish on %s: %v", s, err)
		}
	}
	if err := tryPublish(t, openLogged(t, asAdmin(theirs), &logBuffer{}), theirs, "op-theirs"); err != nil {
		t.Fatalf("admin publish on %s: %v", theirs.Stream, err)
	}

	var log logBuffer
	b := openLogged(t, asBook(mine), &log)
	if err := tryPublish(t, b, mine, "evt-book"); err != nil {
		t.Fatalf("book publish on its topic, created by the operator: %v\nlog:\n%s", err, log.String())
	}
	authors := consumeSubjects(t, b, "book-authors", subject("author.>"))
	if id := receiveID(t, authors); id != "op-author.created" {
		t.Errorf("book-authors got %q, want op-author.created", id)
	}
	revocations := follower(t, b, []string{subject("account.revoked")}, time.Now().Add(-time.Hour))
	if m := receive(t, revocations, "revocation"); m.ID != "op-account.revoked" {
		t.Errorf("followed %q, want op-account.revoked", m.ID)
	}

	t.Run("another source's events", func(t *testing.T) {
		for _, s := range []string{"account.revoked", "author.deleted"} {
			err := b.Publish(ctx, Message{Subject: subject(s), ID: "forged-" + s, Body: []byte(`{"id":"victim"}`)})
			if !errors.Is(err, kerr.TopicAuthorizationFailed) {
				t.Errorf("book publishing %s: %v, want TOPIC_AUTHORIZATION_FAILED", s, err)
			}
		}
		// Nothing of them was written: after the first events, each topic's
		// next one is the operator's.
		for _, s := range []string{"author.created", "account.revoked"} {
			if err := admin.Publish(ctx, Message{Subject: subject(s), ID: "op2-" + s, Body: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
		}
		if id := receiveID(t, authors); id != "op2-author.created" {
			t.Errorf("book-authors got %q after the forgery, want op2-author.created", id)
		}
		if m := receive(t, revocations, "revocation"); m.ID != "op2-account.revoked" {
			t.Errorf("followed %q after the forgery, want op2-account.revoked", m.ID)
		}
	})

	t.Run("another source's subject on its own topic", func(t *testing.T) {
		// What the credential can write: anything on its own topic.
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(seeds, ",")...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.SASL(scram.Auth{User: "book", Pass: bookPassword}.AsSha512Mechanism()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		id := []kgo.RecordHeader{{Key: kafkaIDHeader, Value: []byte("forged-in-book")}}
		forged := []*kgo.Record{
			{Topic: source(mine, "book"), Key: []byte(subject("author.deleted")), Value: []byte(`{"id":"victim"}`), Headers: id},
			{Topic: deadLetters, Key: []byte(subject("account.revoked")), Value: []byte(`{"id":"victim"}`), Headers: id},
		}
		if err := cl.ProduceSync(ctx, forged...).FirstErr(); err != nil {
			t.Fatalf("book writing its own topics: %v", err)
		}
		// Consumers reading every topic pass them over: behind them, each
		// topic's next events are the operator's.
		deletions := consumeSubjects(t, admin, "deletions", subject("*.deleted"), subject("*.revoked"), subject("deadletter.book-authors"))
		everything := follower(t, admin, []string{subject(">")}, time.Now().Add(-time.Hour))
		want := []string{"op-account.revoked", "op2-account.revoked", "op-deadletter.book-authors"} // from before
		for _, s := range []string{"book.deleted", "author.deleted", "account.revoked", "deadletter.book-authors"} {
			if err := admin.Publish(ctx, Message{Subject: subject(s), ID: "op3-" + s, Body: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
			want = append(want, "op3-"+s)
		}
		var got []string
		for range want {
			got = append(got, receiveID(t, deletions))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("a consumer of every topic got %v, want %v", got, want)
		}
		for seen := 0; seen < 4; {
			m := receive(t, everything, "followed event")
			if m.ID == "forged-in-book" {
				t.Fatalf("the follower took the forged %s from the book service's topics", m.Subject)
			}
			if strings.HasPrefix(m.ID, "op3-") {
				seen++
			}
		}
	})

	t.Run("another subscription's group", func(t *testing.T) {
		var log logBuffer
		b := openLogged(t, asBook(mine), &log)
		d := consumeSubjects(t, b, "author-books", subject("book.>"))
		refusedTwice(t, &log, "will retry", "subscription=author-books", "AUTHORIZATION_FAILED")
		if n := d.n.Load(); n != 0 {
			t.Errorf("%d events delivered through a subscription the credential may not use", n)
		}
		// Committing another group's offset, which would skip its events, is
		// refused by the cluster.
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(seeds, ",")...),
			kgo.SASL(scram.Auth{User: "book", Pass: bookPassword}.AsSha512Mechanism()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var skip kadm.Offsets
		skip.Add(kadm.Offset{Topic: source(mine, "author"), Partition: 0, At: 100, LeaderEpoch: -1})
		committed, err := kadm.NewClient(cl).CommitOffsets(ctx, kafkaGroup(mine.Prefix, "author-books"), skip)
		if err == nil {
			err = committed.Error()
		}
		if !errors.Is(err, kerr.GroupAuthorizationFailed) {
			t.Errorf("committing another group's offset: %v, want GROUP_AUTHORIZATION_FAILED", err)
		}
		offsets, err := kafkaSuperAdmin(t, seeds, "admin", adminPassword).FetchOffsets(ctx, kafkaGroup(mine.Prefix, "author-books"))
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) { // not found: never joined
			t.Fatal(err)
		}
		offsets.Each(func(o kadm.OffsetResponse) {
			if o.At >= 0 {
				t.Errorf("the other group's offset was committed: %+v", o)
			}
		})
	})

	t.Run("another stream's topics", func(t *testing.T) {
		var log logBuffer
		b := openLogged(t, asBook(theirs), &log)
		if err := tryPublish(t, b, theirs, "evt-forged"); err == nil {
			t.Error("publish on another stream's topic succeeded")
		}
		d := consumeSubjects(t, b, "book-authors", theirs.Prefix+".book.>")
		refusedTwice(t, &log, "will retry", "subscription=book-authors", "TOPIC_AUTHORIZATION_FAILED")
		if n := d.n.Load(); n != 0 {
			t.Errorf("%d events of another stream delivered", n)
		}
	})
}
