package broker

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"folio/internal/platform/fault"
)

// Headers added to dead-lettered messages.
const (
	HeaderOriginalSubject = "Folio-Original-Subject"
	HeaderError           = "Folio-Error"
)

// outcome is how a delivery is settled.
type outcome string

const (
	outcomeOK         outcome = "ok"
	outcomeRetry      outcome = "retry"
	outcomeDeadLetter outcome = "deadletter"
	// outcomeRequeue: the handler failed because Consume is stopping, which says
	// nothing about the message; it goes back without a backoff.
	outcomeRequeue outcome = "requeue"
)

// verdict tells a transport how to settle a delivery.
type verdict struct {
	outcome outcome
	delay   time.Duration // before redelivery, for outcomeRetry
}

// maxBackoff caps the doubling of Subscription.Backoff.
const maxBackoff = time.Minute

// deadLetterTimeout bounds publishing a dead letter, which also happens while
// Consume is stopping.
const deadLetterTimeout = 10 * time.Second

// deliver runs h on the attempt-th delivery of m and decides its fate; it
// publishes the dead letter itself so that both transports do it the same way.
func (b *Broker) deliver(ctx context.Context, s Subscription, h Handler, m Message, attempt int) verdict {
	if m.Header == nil {
		m.Header = map[string]string{}
	}
	m.Header[HeaderAttempts] = strconv.Itoa(attempt)
	err := run(ctx, h, m)
	v := verdict{outcome: outcomeOK}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		v = verdict{outcome: outcomeRequeue}
	case fault.KindOf(err) == fault.StorageUnavailable:
		// The consumer's own database cannot take writes (a full disk): nothing is
		// wrong with the message, so it is retried, with the backoff capped, for
		// as long as that lasts, and never dead-lettered, which would lose it
		// from the projection.
		b.log.Warn("storage unavailable, will retry", "subscription", s.Name, "subject", m.Subject, "id", m.ID, "attempt", attempt, "err", err)
		v = verdict{outcome: outcomeRetry, delay: backoff(s, attempt)}
	case attempt >= s.MaxAttempts:
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
		defer cancel()
		if perr := b.t.publish(dctx, deadLetter(b.prefix, s.Name, m, err)); perr != nil {
			// Retrying keeps the message; its next failure tries the dead letter again.
			b.log.Error("cannot dead-letter message, retrying it", "subscription", s.Name, "subject", m.Subject, "id", m.ID, "err", perr)
			v = verdict{outcome: outcomeRetry, delay: backoff(s, attempt)}
			break
		}
		b.log.Warn("message dead-lettered", "subscription", s.Name, "subject", m.Subject, "id", m.ID, "attempts", attempt, "err", err)
		v = verdict{outcome: outcomeDeadLetter}
	default:
		b.log.Info("handler failed, will retry", "subscription", s.Name, "subject", m.Subject, "id", m.ID, "attempt", attempt, "err", err)
		v = verdict{outcome: outcomeRetry, delay: backoff(s, attempt)}
	}
	b.metrics.consumed(s.Name, v.outcome)
	return v
}

// run calls h, turning a panic into an error so that one bad message cannot take
// the consumer down and is dead-lettered like any other failure.
func run(ctx context.Context, h Handler, m Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return h(ctx, m)
}

// backoff is the delay after the attempt-th failed delivery.
func backoff(s Subscription, attempt int) time.Duration {
	d := s.Backoff
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// deadLetter is the message published when subscription gives up on m.
func deadLetter(prefix, subscription string, m Message, err error) Message {
	h := maps.Clone(m.Header)
	h[HeaderOriginalSubject] = m.Subject
	h[HeaderError] = headerValue(err.Error())
	return Message{
		Subject: DeadLetterSubject(prefix, subscription),
		// Not m.ID: JetStream would drop it as a duplicate of the original within
		// the duplicate window. Still stable, so a repeated dead-lettering is dropped.
		ID:     m.ID + ":deadletter:" + subscription,
		Body:   m.Body,
		Header: h,
	}
}

// headerValue makes s safe as a header value: NATS headers are lines, so no line
// breaks, and a bounded size.
func headerValue(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}
