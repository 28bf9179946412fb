package book

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"folio/internal/platform/broker"
	"folio/internal/platform/inbox"
	"folio/internal/platform/rest"
)

// AuthorEventsConsumer is the durable consumer through which the book service learns
// of authors, and the inbox consumer name under which it records the events applied.
const AuthorEventsConsumer = "book-authors"

// Types of the author events the book service consumes.
const (
	EventAuthorCreated = "author.created"
	EventAuthorUpdated = "author.updated"
	EventAuthorDeleted = "author.deleted"
)

// AuthorEventsSubscription is the subscription the book service consumes author
// events with; prefix is the subject prefix the relays publish under ("folio").
func AuthorEventsSubscription(prefix string) broker.Subscription {
	return broker.Subscription{
		Name: AuthorEventsConsumer,
		Subjects: []string{
			prefix + "." + EventAuthorCreated,
			prefix + "." + EventAuthorUpdated,
			prefix + "." + EventAuthorDeleted,
		},
		Concurrency: eventConcurrency,
	}
}

// Events are applied several at a time, and on SQLite those that arrive together
// share one commit (sqldb.DB.InTx): known authors do not depend on the order
// events arrive in (a delete is final), and one commit per event made the disk
// sync the limit.
const eventConcurrency = 32

// NewEventHandler returns the handler of author events, which keeps the known author
// ids of store: created and updated make an author known, deleted makes it unknown
// for good. Each event is applied once, however often it is delivered. A message
// that cannot be read is an error, so that the broker retries it and then moves it
// to the dead letters instead of dropping it unseen.
func NewEventHandler(store *SQLStore, log *slog.Logger) broker.Handler {
	return func(ctx context.Context, m broker.Message) error {
		env, authorID, err := parseAuthorEvent(m.Body)
		if errors.Is(err, errOtherEvent) {
			// A subscription wider than AuthorEventsSubscription: not ours to apply.
			log.DebugContext(ctx, "ignored event", "subject", m.Subject, "type", env.Type, "event_id", env.ID)
			return nil
		}
		if err != nil {
			return fmt.Errorf("author event %s on %s: %w", m.ID, m.Subject, err)
		}
		deleted := env.Type == EventAuthorDeleted
		applied, err := inbox.Apply(ctx, store.db, AuthorEventsConsumer, env.ID, func(tx *sql.Tx) error {
			return applyAuthorEvent(ctx, tx, authorID, deleted)
		})
		if err != nil {
			return fmt.Errorf("apply %s %s: %w", env.Type, env.ID, err)
		}
		log.DebugContext(ctx, "author event", "type", env.Type, "event_id", env.ID, "author_id", authorID, "applied", applied)
		return nil
	}
}

// errOtherEvent marks a well-formed event of a type this consumer does not apply.
var errOtherEvent = errors.New("not an author event")

// parseAuthorEvent reads an author event and the author id it is about.
func parseAuthorEvent(body []byte) (broker.Envelope, string, error) {
	var env broker.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return env, "", fmt.Errorf("malformed envelope: %w", err)
	}
	if env.ID == "" {
		return env, "", errors.New("malformed envelope: no event id")
	}
	switch env.Type {
	case EventAuthorCreated, EventAuthorUpdated, EventAuthorDeleted:
	case "":
		return env, "", errors.New("malformed envelope: no type")
	default:
		return env, "", errOtherEvent
	}
	// Every author event's data, the author or {"id"} after a delete, names it by id.
	var data struct {
		ID string `json:"id"`
	}
	if len(env.Data) == 0 {
		return env, "", errors.New("malformed envelope: no data")
	}
	if err := json.Unmarshal(env.Data, &data); err != nil {
		return env, "", fmt.Errorf("malformed data: %w", err)
	}
	if !rest.ValidID(data.ID) {
		return env, "", fmt.Errorf("malformed data: author id %q is not an id", data.ID)
	}
	return env, data.ID, nil
}
