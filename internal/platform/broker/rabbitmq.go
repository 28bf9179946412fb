package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQ settings.
const (
	rabbitDialTimeout = 5 * time.Second
	rabbitMaxRedial   = 10 * time.Second
	// rabbitRetryExpiry is how long an unused retry queue outlives its messages'
	// TTL before RabbitMQ deletes it, so that changing a Backoff leaves no debris.
	rabbitRetryExpiry = time.Hour
)

// Internal headers: the delivery count the broker does not keep for us, and the
// subject a retried message was first published on (its routing key becomes the
// queue's name on the way back from the retry queue).
const (
	rabbitAttemptsHeader = "x-folio-attempts"
	rabbitSubjectHeader  = "x-folio-subject"
)

// rabbitTransport keeps one connection up, redialling in the background: the
// amqp091 client does not reconnect by itself.
type rabbitTransport struct {
	cfg  Config
	log  *slog.Logger
	tls  *tls.Config   // nil: amqps:// URLs check the server against the system's roots
	done chan struct{} // closed by close
	ran  chan struct{} // closed when the reconnect loop has returned

	mu   sync.Mutex
	conn *amqp.Connection
	pub  *amqp.Channel // in confirm mode; nil while disconnected
	up   chan struct{} // closed once conn is set; replaced when it drops
}

func openRabbitMQ(ctx context.Context, cfg Config, log *slog.Logger) (*rabbitTransport, error) {
	if _, err := amqp.ParseURI(cfg.RabbitMQURL); err != nil {
		return nil, fmt.Errorf("broker: rabbitmq url: %w", err)
	}
	t := &rabbitTransport{cfg: cfg, log: log, done: make(chan struct{}), ran: make(chan struct{}), up: make(chan struct{})}
	if cfg.RabbitMQCA != "" {
		var err error
		if t.tls, err = clientTLS("FOLIO_RABBITMQ", cfg.RabbitMQCA, "", ""); err != nil {
			return nil, err
		}
	}
	tried := make(chan struct{})
	go t.run(tried)
	// Waiting for the first attempt spares a service started with the broker up
	// a failed first publish.
	select {
	case <-tried:
	case <-ctx.Done():
	}
	return t, nil
}

// run dials, waits for the connection to drop, and dials again, until close.
func (t *rabbitTransport) run(tried chan struct{}) {
	defer close(t.ran)
	wait := 500 * time.Millisecond
	for {
		conn, pub, err := t.dial()
		if err != nil {
			if tried != nil {
				close(tried)
				tried = nil
			}
			t.log.Warn("RabbitMQ unreachable, will retry", "err", err, "in", wait)
			select {
			case <-time.After(wait):
				wait = min(2*wait, rabbitMaxRedial)
				continue
			case <-t.done:
				return
			}
		}
		wait = 500 * time.Millisecond
		t.log.Info("connected to RabbitMQ")
		connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
		pubClosed := pub.NotifyClose(make(chan *amqp.Error, 1))
		t.mu.Lock()
		t.conn, t.pub = conn, pub
		close(t.up)
		t.mu.Unlock()
		// Only now: Open returning before the connection is in place had the
		// first Publish fail as not connected.
		if tried != nil {
			close(tried)
			tried = nil
		}

		select {
		case <-t.done:
		case err := <-connClosed:
			t.log.Warn("RabbitMQ connection lost", "err", err)
		case err := <-pubClosed:
			t.log.Warn("RabbitMQ publishing channel closed, reconnecting", "err", err)
		}
		t.mu.Lock()
		t.conn, t.pub = nil, nil
		t.up = make(chan struct{})
		t.mu.Unlock()
		_ = conn.Close()
		select {
		case <-t.done:
			return
		default:
		}
	}
}

func (t *rabbitTransport) dial() (*amqp.Connection, *amqp.Channel, error) {
	conn, err := amqp.DialConfig(t.cfg.RabbitMQURL, amqp.Config{
		Dial:       amqp.DefaultDial(rabbitDialTimeout),
		Heartbeat:  10 * time.Second,
		Properties: amqp.Table{"connection_name": "folio"},
		// Used by amqps:// URLs only.
		TLSClientConfig: t.tls,
	})
	if err != nil {
		return nil, nil, err
	}
	pub, err := conn.Channel()
	if err == nil {
		err = pub.Confirm(false)
	}
	if err == nil {
		err = t.declareExchange(pub)
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, pub, nil
}

func (t *rabbitTransport) declareExchange(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(t.cfg.Stream, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange %s: %w", t.cfg.Stream, err)
	}
	return nil
}

// connection waits for the connection to be up.
func (t *rabbitTransport) connection(ctx context.Context) (*amqp.Connection, error) {
	for {
		t.mu.Lock()
		conn, up := t.conn, t.up
		t.mu.Unlock()
		if conn != nil && !conn.IsClosed() {
			return conn, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.done:
			return nil, errClosed
		}
	}
}

func (t *rabbitTransport) close() error {
	close(t.done)
	<-t.ran
	return nil
}

func (t *rabbitTransport) publish(ctx context.Context, m Message) error {
	return t.send(ctx, t.cfg.Stream, m.Subject, rabbitPublishing(m))
}

func rabbitPublishing(m Message) amqp.Publishing {
	headers := make(amqp.Table, len(m.Header))
	for k, v := range m.Header {
		headers[k] = v
	}
	return amqp.Publishing{
		Headers:      headers,
		DeliveryMode: amqp.Persistent,
		MessageId:    m.ID,
		Timestamp:    time.Now(),
		Body:         m.Body,
	}
}

// errNotConfirmed is a negative publisher confirm, or the channel closing before
// the confirm came (the client then settles every pending one negatively).
var errNotConfirmed = errors.New("rabbitmq did not confirm the message")

func (t *rabbitTransport) publishBatch(ctx context.Context, ms []Message) (int, error) {
	select {
	case <-t.done:
		return 0, errClosed
	default:
	}
	t.mu.Lock()
	pub := t.pub
	t.mu.Unlock()
	if pub == nil {
		return 0, errNotConnected
	}
	// All sent from this goroutine on one channel: the exchange routes them in
	// this order.
	confirms := make([]*amqp.DeferredConfirmation, 0, len(ms))
	var sendErr error
	for _, m := range ms {
		c, err := pub.PublishWithDeferredConfirmWithContext(ctx, t.cfg.Stream, m.Subject, false, false, rabbitPublishing(m))
		if err == nil && c == nil {
			err = errors.New("rabbitmq channel not in confirm mode")
		}
		if err != nil {
			sendErr = err
			break
		}
		confirms = append(confirms, c)
	}
	for i, c := range confirms {
		acked, err := c.WaitContext(ctx)
		if err != nil {
			return i, err
		}
		if !acked {
			return i, errNotConfirmed
		}
	}
	return len(confirms), sendErr
}

// send publishes p and waits for the broker's confirm.
func (t *rabbitTransport) send(ctx context.Context, exchange, key string, p amqp.Publishing) error {
	select {
	case <-t.done:
		return errClosed
	default:
	}
	t.mu.Lock()
	pub := t.pub
	t.mu.Unlock()
	if pub == nil {
		return errNotConnected
	}
	confirm, err := pub.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, p)
	if err != nil {
		return err
	}
	acked, err := confirm.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !acked {
		return errNotConfirmed
	}
	return nil
}

func (t *rabbitTransport) consume(ctx context.Context, s Subscription, deliver deliverFunc) error {
	return t.onEachConnection(ctx, "subscription "+s.Name, func(ctx context.Context, conn *amqp.Connection) error {
		return t.consumeOn(ctx, conn, s, deliver)
	})
}

// onEachConnection runs use on the current connection, and again on the next one
// each time it stops, until ctx ends or the transport closes. A refusal by the
// server (say a queue declared before with other arguments) ends it: retrying
// will not help.
func (t *rabbitTransport) onEachConnection(ctx context.Context, what string, use func(context.Context, *amqp.Connection) error) error {
	ctx, cancel := untilClosed(ctx, t.done)
	defer cancel()
	for {
		conn, err := t.connection(ctx)
		if err != nil {
			return closedErr(t.done)
		}
		err = use(ctx, conn)
		if ctx.Err() != nil {
			return closedErr(t.done)
		}
		var amqpErr *amqp.Error
		if errors.As(err, &amqpErr) && !conn.IsClosed() && isRefusal(amqpErr.Code) {
			return fmt.Errorf("broker: %s: %w", what, err)
		}
		t.log.Warn(what+" stopped, will resume", "err", err)
		pause(ctx, retryPause)
	}
}

func isRefusal(code int) bool {
	return code == amqp.PreconditionFailed || code == amqp.AccessRefused || code == amqp.NotAllowed
}

// consumeOn consumes on one channel of conn until ctx ends or the channel dies.
func (t *rabbitTransport) consumeOn(ctx context.Context, conn *amqp.Connection, s Subscription, deliver deliverFunc) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	// Closing the channel hands unacked prefetched messages back to the queue.
	defer ch.Close()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))

	queue := t.cfg.Prefix + "." + s.Name
	if err := t.declareQueues(ch, s, queue); err != nil {
		return err
	}
	if err := ch.Qos(s.Concurrency, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	var workers sync.WaitGroup
	for range s.Concurrency {
		workers.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case d, ok := <-deliveries:
					if !ok {
						return
					}
					if ctx.Err() != nil {
						return // left unacked: back to the queue when the channel closes
					}
					t.handle(ctx, ch, s, queue, d, deliver)
				}
			}
		})
	}
	workers.Wait()
	if ctx.Err() != nil {
		return nil
	}
	select {
	case err := <-closed:
		if err != nil {
			return err
		}
		return errors.New("channel closed")
	default:
		return errors.New("consumer cancelled by the server") // say, its queue was deleted
	}
}

// declareQueues declares the subscription's queue with its bindings and its
// dead-letter queue, so that dead letters are kept even before anyone reads them.
func (t *rabbitTransport) declareQueues(ch *amqp.Channel, s Subscription, queue string) error {
	if err := t.declareExchange(ch); err != nil {
		return err
	}
	quorum := amqp.Table{"x-queue-type": "quorum"}
	deadLetters := DeadLetterSubject(t.cfg.Prefix, s.Name)
	if _, err := ch.QueueDeclare(queue, true, false, false, false, quorum); err != nil {
		return fmt.Errorf("queue %s: %w", queue, err)
	}
	for _, subj := range s.Subjects {
		if err := ch.QueueBind(queue, bindingKey(subj), t.cfg.Stream, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", queue, subj, err)
		}
	}
	if _, err := ch.QueueDeclare(deadLetters, true, false, false, false, quorum); err != nil {
		return fmt.Errorf("queue %s: %w", deadLetters, err)
	}
	if err := ch.QueueBind(deadLetters, deadLetters, t.cfg.Stream, false, nil); err != nil {
		return fmt.Errorf("bind %s: %w", deadLetters, err)
	}
	return nil
}

// bindingKey translates a NATS-style subject filter to a topic binding key.
func bindingKey(filter string) string {
	if strings.HasSuffix(filter, ".>") {
		return strings.TrimSuffix(filter, ">") + "#"
	}
	return filter
}

// retryQueue is where a message of queue waits out a retry delay. There is one
// per delay because RabbitMQ only expires messages at the head of a queue: with
// one queue, a long delay would hold up shorter ones queued behind it.
func retryQueue(queue string, delay time.Duration) string {
	return queue + ".retry." + strconv.FormatInt(delay.Milliseconds(), 10) + "ms"
}

func (t *rabbitTransport) handle(ctx context.Context, ch *amqp.Channel, s Subscription, queue string, d amqp.Delivery, deliver deliverFunc) {
	m := Message{Subject: d.RoutingKey, ID: d.MessageId, Body: d.Body, Header: make(map[string]string, len(d.Headers))}
	previous := 0
	for k, v := range d.Headers {
		switch {
		case k == rabbitAttemptsHeader:
			previous = tableInt(v)
		case k == rabbitSubjectHeader:
			if subj, ok := v.(string); ok {
				m.Subject = subj
			}
		case isBrokerHeader(k):
		default:
			if v, ok := v.(string); ok {
				m.Header[k] = v
			}
		}
	}
	attempt := previous + 1
	v := deliver(ctx, m, attempt)
	var err error
	switch v.outcome {
	case outcomeOK, outcomeDeadLetter:
		err = d.Ack(false)
	case outcomeRequeue:
		err = d.Nack(false, true)
	case outcomeRetry:
		if err = t.retry(ctx, ch, queue, m, attempt, v.delay); err != nil {
			t.log.Error("cannot schedule retry, requeueing", "subscription", s.Name, "id", m.ID, "err", err)
			err = d.Nack(false, true)
		} else {
			err = d.Ack(false)
		}
	}
	if err != nil {
		// The channel is gone: the message is redelivered on the next one.
		t.log.Warn("cannot settle message", "subscription", s.Name, "id", m.ID, "outcome", v.outcome, "err", err)
	}
}

// retry parks a copy of m in the retry queue for delay, from which RabbitMQ
// dead-letters it back to queue; the original can then be acked, so that it
// does not hold up the messages behind it.
func (t *rabbitTransport) retry(ctx context.Context, ch *amqp.Channel, queue string, m Message, attempt int, delay time.Duration) error {
	retryQ := retryQueue(queue, delay)
	// Declared every time: that also keeps an idle retry queue from expiring
	// between this and the publish.
	_, err := ch.QueueDeclare(retryQ, true, false, false, false, amqp.Table{
		"x-message-ttl":             delay.Milliseconds(),
		"x-expires":                 (delay + rabbitRetryExpiry).Milliseconds(),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": queue,
	})
	if err != nil {
		return fmt.Errorf("queue %s: %w", retryQ, err)
	}
	headers := make(amqp.Table, len(m.Header)+2)
	for k, v := range m.Header {
		if k != HeaderAttempts {
			headers[k] = v
		}
	}
	headers[rabbitAttemptsHeader] = int64(attempt)
	headers[rabbitSubjectHeader] = m.Subject
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
	defer cancel()
	return t.send(pctx, "", retryQ, amqp.Publishing{
		Headers:      headers,
		DeliveryMode: amqp.Persistent,
		MessageId:    m.ID,
		Timestamp:    time.Now(),
		Body:         m.Body,
	})
}

// isBrokerHeader reports the headers RabbitMQ adds when dead-lettering, which
// are not the message's own.
func isBrokerHeader(k string) bool {
	return k == "x-death" || k == "x-delivery-count" ||
		strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-")
}

func tableInt(v any) int {
	switch n := v.(type) {
	case int64:
		return int(n)
	case int32:
		return int(n)
	case int16:
		return int(n)
	case int8:
		return int(n)
	case int:
		return n
	}
	return 0
}

// follow consumes from a queue of its own, server-named, exclusive to this
// connection and deleted with it: a new one, bound again, after every
// reconnect. RabbitMQ keeps no history, so since is not used.
func (t *rabbitTransport) follow(ctx context.Context, subjects []string, _ time.Time, h func(context.Context, Message)) error {
	return t.onEachConnection(ctx, fmt.Sprintf("follower of %v", subjects), func(ctx context.Context, conn *amqp.Connection) error {
		return t.followOn(ctx, conn, subjects, h)
	})
}

func (t *rabbitTransport) followOn(ctx context.Context, conn *amqp.Connection, subjects []string, h func(context.Context, Message)) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := t.declareExchange(ch); err != nil {
		return err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("follower queue: %w", err)
	}
	for _, subj := range subjects {
		if err := ch.QueueBind(q.Name, bindingKey(subj), t.cfg.Stream, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s: %w", q.Name, subj, err)
		}
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				select {
				case err := <-closed:
					if err != nil {
						return err
					}
				default:
				}
				return errors.New("follower channel closed")
			}
			m := Message{Subject: d.RoutingKey, ID: d.MessageId, Body: d.Body, Header: make(map[string]string, len(d.Headers))}
			for k, v := range d.Headers {
				if v, ok := v.(string); ok && !isBrokerHeader(k) {
					m.Header[k] = v
				}
			}
			h(ctx, m)
		}
	}
}
