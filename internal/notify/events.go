package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"folio/internal/platform/broker"
	"folio/internal/platform/inbox"
)

// Consumer names the notify service's durable consumer and its inbox.
const Consumer = "notify"

// BrokerSubscription is the broker subscription through which the service receives every
// book and author event published under prefix ("folio").
func BrokerSubscription(prefix string) broker.Subscription {
	return broker.Subscription{
		Name:     Consumer,
		Subjects: []string{prefix + ".book.>", prefix + ".author.>"},
		// Many events at once, sharing commits on SQLite (sqldb.DB.InTx): each only
		// inserts rows, the sending is the worker's.
		Concurrency: 32,
	}
}

// HandleEvent is the broker.Handler of the service: it records one pending delivery
// of the event to each subscription that asks for its type, in one transaction kept
// in the inbox, so that a redelivered event adds nothing. A body that is not an
// event envelope is an error, which has the broker retry and then dead-letter it.
func (s *Service) HandleEvent(ctx context.Context, m broker.Message) error {
	var env broker.Envelope
	if err := json.Unmarshal(m.Body, &env); err != nil {
		return fmt.Errorf("notify: event %q on %s is not an event envelope: %w", m.ID, m.Subject, err)
	}
	if env.ID == "" || env.Type == "" {
		return errors.New("notify: event on " + m.Subject + " has no id or no type")
	}
	if strings.ContainsFunc(env.ID, func(r rune) bool { return r == '.' || r <= ' ' || r == 0x7f }) {
		// The id is signed as "<id>.<timestamp>.<body>": a dot in it would let one
		// signed message pass for another, and a control character cannot go in a
		// header.
		return fmt.Errorf("notify: event id %q on %s cannot be a webhook-id", env.ID, m.Subject)
	}
	added := 0
	_, err := inbox.Apply(ctx, s.db, Consumer, env.ID, func(tx *sql.Tx) error {
		n, err := s.store.AddDeliveries(ctx, tx, env.ID, env.Type, m.Body, s.cfg.Now())
		added = n
		return err
	})
	if err != nil {
		return fmt.Errorf("notify: event %s: %w", env.ID, err)
	}
	if added > 0 {
		s.wakeWorker()
	}
	return nil
}

// wakeWorker tells the worker that deliveries may be due now.
func (s *Service) wakeWorker() {
	select {
	case s.wake <- struct{}{}:
	default: // already woken
	}
}

var _ broker.Handler = (*Service)(nil).HandleEvent
