package inbox

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"

	"folio/internal/platform/broker"
	"folio/internal/platform/sqldb"
)

// Consumer applies events of some types from the broker to a database, each once
// however often it is delivered: the shell every event handler of a service shares,
// around the change that is its own.
type Consumer struct {
	// Name is the durable consumer's, and the name the inbox records applied
	// events under ("book-authors").
	Name string
	// Types are the event types applied ("author.created"); others that reach
	// the consumer through a wider subscription are acknowledged and skipped.
	Types []string
	// Subjects, when set, are the subscription's filters under the prefix instead
	// of one per type: wider ones ("book.>"), as the broker's permissions name them.
	Subjects []string
	// Concurrency is how many events are applied at once; on SQLite those that
	// arrive together share one commit (sqldb.DB.InTx).
	Concurrency int
	// Apply makes the change env tells of, through tx only. An error, unreadable
	// data included, rolls it back and leaves the event to the broker's retries,
	// which end in the dead letters: nothing is dropped unseen.
	Apply func(ctx context.Context, tx *sql.Tx, env broker.Envelope) error
	// Committed, if set, is called once the change Apply made for env has
	// committed (not for an event applied before): to wake whoever acts on it.
	Committed func(ctx context.Context, env broker.Envelope)
}

// Subscription is the broker subscription of c's types under prefix ("folio").
func (c Consumer) Subscription(prefix string) broker.Subscription {
	subjects := c.Subjects
	if subjects == nil {
		subjects = c.Types
	}
	return broker.Subscription{Name: c.Name, Subjects: broker.Subjects(prefix, subjects...), Concurrency: c.Concurrency}
}

// Handler returns the broker handler that applies c's events to db, where the
// inbox has been migrated (Migrate).
func (c Consumer) Handler(db *sqldb.DB, log *slog.Logger) broker.Handler {
	return func(ctx context.Context, m broker.Message) error {
		env, err := broker.ParseEnvelope(m.Body)
		if err != nil {
			return fmt.Errorf("event %s on %s: %w", m.ID, m.Subject, err)
		}
		if !slices.Contains(c.Types, env.Type) {
			log.DebugContext(ctx, "ignored event", "consumer", c.Name, "subject", m.Subject, "type", env.Type, "event_id", env.ID)
			return nil
		}
		applied, err := Apply(ctx, db, c.Name, env.ID, func(tx *sql.Tx) error { return c.Apply(ctx, tx, env) })
		if err != nil {
			return fmt.Errorf("apply %s %s: %w", env.Type, env.ID, err)
		}
		log.DebugContext(ctx, "event", "consumer", c.Name, "type", env.Type, "event_id", env.ID, "applied", applied)
		if applied && c.Committed != nil {
			c.Committed(ctx, env)
		}
		return nil
	}
}
