package chassis

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"folio/internal/platform/broker"
	"folio/internal/platform/httpserver"
	"folio/internal/platform/inbox"
	"folio/internal/platform/logging"
	"folio/internal/platform/outbox"
	"folio/internal/platform/tracecontext"
)

// Events is a service's link to the broker: the relay that publishes what its
// outbox holds, and the consumers of its peers' events. They run beside the HTTP
// server in Serve.
type Events struct {
	Broker    *broker.Broker
	Relay     *outbox.Relay
	p         *Process
	consumers []consumer
}

type consumer struct {
	sub broker.Subscription
	h   broker.Handler
}

// inboxRetention is how long applied event ids are remembered: longer than any
// redelivery or republish of an event can arrive.
const inboxRetention = 7 * 24 * time.Hour

// OpenEvents migrates the outbox and inbox tables, connects to the broker (in the
// background: the service starts and takes writes while the broker is down; its
// outbox keeps the events) and prepares the relay.
func (p *Process) OpenEvents(ctx context.Context) (*Events, error) {
	if err := outbox.Migrate(ctx, p.DB); err != nil {
		return nil, err
	}
	if err := inbox.Migrate(ctx, p.DB); err != nil {
		return nil, err
	}
	b, err := broker.Open(ctx, p.base.Broker, p.Log, p.Registry)
	if err != nil {
		return nil, err
	}
	e := &Events{Broker: b, Relay: outbox.NewRelay(p.DB, b, p.base.Broker.Prefix, p.Log, p.Registry), p: p}
	p.events = e
	return e, nil
}

// Consume has h applied to the messages of sub while the service runs. The
// handler's context carries the request id and traceparent the event was written
// under, so that its logs join those of the request.
func (e *Events) Consume(sub broker.Subscription, h broker.Handler) {
	e.consumers = append(e.consumers, consumer{sub: sub, h: func(ctx context.Context, m broker.Message) error {
		if id := m.Header[broker.HeaderRequestID]; id != "" {
			ctx = logging.WithRequestID(ctx, id)
		}
		if tp, ok := tracecontext.Parse(m.Header[broker.HeaderTraceparent]); ok {
			ctx = tracecontext.With(ctx, tp)
		}
		err := h(ctx, m)
		if err != nil {
			e.p.Log.WarnContext(ctx, "event not applied; it will be retried", "subscription", sub.Name,
				"subject", m.Subject, "event_id", m.ID, "attempt", m.Header[broker.HeaderAttempts], "err", err)
		}
		return err
	}})
}

// run publishes and consumes until ctx ends.
func (e *Events) run(ctx context.Context) error {
	defer e.Broker.Close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { e.Relay.Run(ctx); return nil })
	for _, c := range e.consumers {
		g.Go(func() error {
			if err := e.Broker.Consume(ctx, c.sub, c.h); err != nil && ctx.Err() == nil {
				return fmt.Errorf("consume %s: %w", c.sub.Name, err)
			}
			return nil
		})
	}
	if len(e.consumers) > 0 {
		g.Go(func() error {
			t := time.NewTicker(time.Hour)
			defer t.Stop()
			for {
				if _, err := inbox.Purge(ctx, e.p.DB, inboxRetention); err != nil && ctx.Err() == nil {
					e.p.Log.Warn("purge the inbox", "err", err)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		})
	}
	return g.Wait()
}

// readyDetail reports the outbox lag in /readyz, and says the broker is not
// taking events once the oldest one has waited longer than FOLIO_BROKER_STALE_AFTER:
// worth an operator's attention, but no reason to take the service out of
// rotation, since its writes do not need the broker.
func (e *Events) readyDetail(ctx context.Context) httpserver.Detail {
	pending, oldest, err := e.Relay.Lag(ctx)
	if err != nil {
		return httpserver.Detail{"outbox": map[string]any{"error": err.Error()}}
	}
	broker := map[string]any{"status": "taking events"}
	if pending > 0 && oldest > e.p.base.BrokerStaleAfter {
		broker = map[string]any{"status": "not taking events", "for_seconds": oldest.Seconds()}
	}
	return httpserver.Detail{
		"outbox": map[string]any{"pending": pending, "oldest_age_seconds": oldest.Seconds()},
		"broker": broker,
	}
}

// followRevocations feeds p.Verifier the auth service's account revocations until
// ctx ends: on the events connection when the service has one, else on a
// connection of its own.
func (p *Process) followRevocations(ctx context.Context) error {
	var b *broker.Broker
	if p.events != nil {
		b = p.events.Broker
	} else {
		var err error
		if b, err = broker.Open(ctx, p.base.Broker, p.Log, p.Registry); err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		defer b.Close()
	}
	// The events connection closes as ctx ends, perhaps before Follow returns.
	if err := p.Verifier.FollowRevocations(ctx, b, p.base.Broker.Prefix); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	return nil
}
