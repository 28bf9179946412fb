// Package broker is the small interface through which Folio services publish and
// consume events, whatever the broker behind it (NATS JetStream, RabbitMQ or Kafka): the
// services' code never knows which one it talks to.
package broker

import (
	"context"
	"encoding/json"
	"time"
)

// Header names carried with every message.
const (
	HeaderRequestID   = "X-Request-ID"
	HeaderTraceparent = "traceparent"
	// HeaderAttempts is set by the broker adapters on delivery: the 1-based number
	// of times this message has been handed to a handler.
	HeaderAttempts = "Folio-Attempts"
	// HeaderWrittenAt is when the event was written to its service's outbox
	// (RFC 3339, UTC): consumers report their lag from it.
	HeaderWrittenAt = "Folio-Written-At"
)

// Message is one event on the wire. Subject is the full subject or routing key
// (for example "folio.book.created"); ID is the event id, which the broker uses to
// drop duplicate publishes where it can, and consumers use to apply it once.
type Message struct {
	Subject string
	ID      string
	Body    []byte
	Header  map[string]string
}

// Publisher sends messages to the broker. Publish returns only once the broker has
// durably accepted the message (JetStream ack, RabbitMQ publisher confirm, Kafka
// acks=all).
type Publisher interface {
	Publish(ctx context.Context, m Message) error
	Close() error
}

// BatchPublisher is implemented by publishers that can pipeline: send several
// messages in order without waiting for each acknowledgement before sending the
// next. A round trip per message (and, on a broker syncing every write to disk,
// a disk sync) caps one-at-a-time publishing far below what a service writes.
type BatchPublisher interface {
	// PublishBatch sends ms in order and waits for their acknowledgements. It
	// returns how many leading messages the broker durably accepted: all of them
	// when err is nil. Messages after the first failure may have been accepted
	// too; publishing them again is safe, their ids de-duplicate.
	PublishBatch(ctx context.Context, ms []Message) (acked int, err error)
}

// Handler applies one delivered message. A nil error acknowledges it; an error
// has it redelivered after a backoff, and after Subscription.MaxAttempts failed
// attempts the message goes to the dead-letter subject and is acknowledged.
type Handler func(ctx context.Context, m Message) error

// Subscription describes a durable consumer.
type Subscription struct {
	// Name is the durable consumer (NATS), queue (RabbitMQ) or consumer group
	// (Kafka, with the prefix) name; it survives
	// restarts of the consuming process.
	Name string
	// Subjects are the subject filters it receives, with "*" for one token and ">"
	// for the rest (for example "folio.book.>"); RabbitMQ binds them as "*" and "#",
	// Kafka's consumers match them against each record's key.
	Subjects []string
	// MaxAttempts bounds delivery attempts before dead-lettering (default 5).
	MaxAttempts int
	// Backoff is the delay before the first redelivery, doubled for each further
	// one up to a minute (default 200 ms).
	Backoff time.Duration
	// Concurrency is how many messages are handled at once (default 1).
	Concurrency int
}

// Subscriber delivers messages to handlers.
type Subscriber interface {
	// Consume creates the durable consumer if it does not exist (idempotent) and
	// runs h for each message until ctx ends; it returns nil then. While the
	// broker is unreachable it keeps trying to reconnect.
	Consume(ctx context.Context, s Subscription, h Handler) error
	Close() error
}

// DeadLetterSubject is where messages a subscription gave up on are published,
// with their original subject in the Folio-Original-Subject header and the last
// error in Folio-Error.
func DeadLetterSubject(prefix, subscription string) string {
	return prefix + ".deadletter." + subscription
}

// Envelope is the body of every Folio event (the contract's payload): Type is the
// subject without its prefix ("book.created"), Data the resource after the change,
// or {"id"} after a delete.
type Envelope struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
	// Body is the message as received, set by ParseEnvelope: for a consumer that
	// passes the event on byte for byte (notify signs it for its subscribers).
	Body []byte `json:"-"`
}
