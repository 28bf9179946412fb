package loadbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"folio/internal/devtools/localnats"
	"folio/internal/platform/broker"
	"folio/internal/platform/httpserver"
)

// NATSAddrEnv and NATSDirEnv turn Run into the benchmark's own NATS server: Run
// starts it by running the current executable again, as it does the ceiling, with
// NATSAddrEnv set to the loopback address to serve on and NATSDirEnv to the
// directory of its JetStream store, so that its CPU is accounted apart from the load
// generator's and the services never touch a NATS server of the machine.
const (
	NATSAddrEnv = "FOLIO_BENCH_NATS_ADDR"
	NATSDirEnv  = "FOLIO_BENCH_NATS_DIR"
)

// brokerSetup is the broker a set of services under test publishes to and consumes
// from: the kind, the URL, and a stream (or exchange) name and subject prefix of
// its own.
type brokerSetup struct {
	kind   string // "nats" or "rabbitmq"
	url    string
	stream string
	prefix string
	nats   *proc // the NATS child, when kind is nats
}

// env is the environment that points a service at b. The URL of the other broker
// kind is a port nobody serves, so that no default (the machine's NATS on 4222, or
// RabbitMQ on 5672) is ever reached by mistake.
func (b *brokerSetup) env() []string {
	env := []string{
		"FOLIO_BROKER=" + b.kind,
		"FOLIO_EVENTS_STREAM=" + b.stream,
		"FOLIO_EVENTS_PREFIX=" + b.prefix,
	}
	if b.kind == "nats" {
		return append(env, "FOLIO_NATS_URL="+b.url, "FOLIO_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:1/")
	}
	return append(env, "FOLIO_RABBITMQ_URL="+b.url, "FOLIO_NATS_URL=nats://127.0.0.1:1")
}

// names returns a stream (exchange) name and a subject prefix unique to this run and
// tag: one benchmark never sees another's events, on a shared RabbitMQ too.
func names(tag string) (stream, prefix string) {
	id := strconv.Itoa(os.Getpid()) + "_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	return "FOLIO_BENCH_" + tag + "_" + id, "folio-bench-" + tag + "-" + id
}

// startNATS starts the benchmark's own NATS server as a child process (this
// executable again, see NATSAddrEnv) on any port, storing under dir/name, and waits
// until it reports the port it took (see serveNATS).
func startNATS(ctx context.Context, dir, name string) (*brokerSetup, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p, addrs, err := startReporting(ctx, dir, name, exe, os.Args[1:], []string{
		NATSAddrEnv + "=" + anyPort,
		NATSDirEnv + "=" + filepath.Join(dir, name+"-data"),
	})
	if err != nil {
		return nil, err
	}
	stream, prefix := names("NATS")
	return &brokerSetup{kind: "nats", url: "nats://" + addrs.HTTP, stream: stream, prefix: prefix, nats: p}, nil
}

// serveNATS serves the benchmark's NATS server on addr, storing under dir, until ctx
// ends. It writes the address it took to addrFile (as the "http" address of
// httpserver.Addrs, the field every Folio program reports its main listener in)
// once the server takes connections.
func serveNATS(ctx context.Context, addr, dir, addrFile string) error {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("nats: port %q: %w", portText, err)
	}
	if port == 0 {
		// To the NATS server, port 0 means its default, 4222; -1 means any.
		port = -1
	}
	s, err := localnats.Start(host, port, dir)
	if err != nil {
		return err
	}
	defer s.Shutdown()
	if addrFile != "" {
		if err := httpserver.WriteAddrFile(addrFile, httpserver.Addrs{HTTP: strings.TrimPrefix(s.URL(), "nats://")}); err != nil {
			return fmt.Errorf("nats: %w", err)
		}
	}
	<-ctx.Done()
	return nil
}

// rabbitSetup returns the setup of RabbitMQ at url, with an exchange and prefix of
// this run's own, after checking that it takes connections.
func rabbitSetup(url string) (*brokerSetup, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", err)
	}
	_ = conn.Close()
	stream, prefix := names("RABBITMQ")
	return &brokerSetup{kind: "rabbitmq", url: url, stream: stream, prefix: prefix}, nil
}

// natsProc is the NATS child, nil when there is none.
func (b *brokerSetup) natsProc() *proc {
	if b == nil {
		return nil
	}
	return b.nats
}

// stop stops the NATS child, if any; on RabbitMQ it deletes what the services
// declared: the exchange and the queues <prefix>.* of the two subscriptions (their
// dead-letter queues, and the retry queues, which also expire by themselves).
func (b *brokerSetup) stop() error {
	if b == nil {
		return nil
	}
	if b.nats != nil {
		err := b.nats.exitedEarly()
		b.nats.cancel()
		<-b.nats.done
		return err
	}
	conn, err := amqp.DialConfig(b.url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return fmt.Errorf("rabbitmq cleanup: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq cleanup: %w", err)
	}
	defer ch.Close()
	var errs []error
	for _, q := range rabbitQueues(b.prefix) {
		// Deleting a queue that is not there is fine in AMQP 0-9-1.
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			errs = append(errs, fmt.Errorf("rabbitmq cleanup: delete queue %s: %w", q, err))
			break // the channel is closed after an error
		}
	}
	if len(errs) == 0 {
		if err := ch.ExchangeDelete(b.stream, false, false); err != nil {
			errs = append(errs, fmt.Errorf("rabbitmq cleanup: delete exchange %s: %w", b.stream, err))
		}
	}
	return errors.Join(errs...)
}

// serviceConsumers are the durable consumer names of the author and book services,
// as the README's events section lists them: written out rather than imported, since
// the benchmark knows the services only by what they show outside.
var serviceConsumers = []string{"author-books", "book-authors"}

// rabbitQueues lists the queues the book and author services declare on RabbitMQ
// under prefix (see internal/platform/broker/rabbitmq.go): per subscription its
// queue, its dead-letter queue, and one retry queue per backoff delay (default
// subscription settings: 5 attempts, 200 ms doubling).
func rabbitQueues(prefix string) []string {
	var qs []string
	for _, sub := range serviceConsumers {
		queue := prefix + "." + sub
		qs = append(qs, queue, broker.DeadLetterSubject(prefix, sub))
		for d := 200 * time.Millisecond; d <= 6400*time.Millisecond; d *= 2 {
			qs = append(qs, queue+".retry."+strconv.FormatInt(d.Milliseconds(), 10)+"ms")
		}
	}
	return slices.Compact(qs)
}
