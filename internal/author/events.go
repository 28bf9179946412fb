package author

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

// BookEventsConsumer is the durable consumer through which the author service
// learns of books, and the inbox consumer name under which it records the events
// applied.
const BookEventsConsumer = "author-books"

// Types of the book events the author service consumes.
const (
	EventBookCreated = "book.created"
	EventBookUpdated = "book.updated"
	EventBookDeleted = "book.deleted"
)

// BookEventsSubscription is the subscription the author service consumes book events
// with; prefix is the subject prefix the relays publish under ("folio").
func BookEventsSubscription(prefix string) broker.Subscription {
	return broker.Subscription{
		Name: BookEventsConsumer,
		Subjects: []string{
			prefix + "." + EventBookCreated,
			prefix + "." + EventBookUpdated,
			prefix + "." + EventBookDeleted,
		},
		Concurrency: eventConcurrency,
	}
}

// Events are applied several at a time, and on SQLite those that arrive together
// share one commit (sqldb.DB.InTx): the projection does not depend on their order
// (versions and tombstones decide), and one commit per event made the disk sync
// the limit.
const eventConcurrency = 64

// bookChange is what a book event tells the author service.
type bookChange struct {
	BookID   string
	AuthorID string // empty on delete
	Version  int    // 0 on delete
	Deleted  bool
}

// NewEventHandler returns the handler of book events, which keeps the author_books
// projection of store, and so every author's book_count. Each event is applied
// once, however often it is delivered, and events of one book may arrive in any
// order: the highest version wins and a delete is final. A message that cannot be
// read is an error, so that the broker retries it and then moves it to the dead
// letters instead of dropping it unseen.
func NewEventHandler(store *SQLStore, log *slog.Logger) broker.Handler {
	return func(ctx context.Context, m broker.Message) error {
		env, change, err := parseBookEvent(m.Body)
		if errors.Is(err, errOtherEvent) {
			// A subscription wider than BookEventsSubscription: not ours to apply.
			log.DebugContext(ctx, "ignored event", "subject", m.Subject, "type", env.Type, "event_id", env.ID)
			return nil
		}
		if err != nil {
			return fmt.Errorf("book event %s on %s: %w", m.ID, m.Subject, err)
		}
		applied, err := inbox.Apply(ctx, store.db, BookEventsConsumer, env.ID, func(tx *sql.Tx) error {
			return applyBookChange(ctx, tx, change)
		})
		if err != nil {
			return fmt.Errorf("apply %s %s: %w", env.Type, env.ID, err)
		}
		log.DebugContext(ctx, "book event", "type", env.Type, "event_id", env.ID, "book_id", change.BookID, "applied", applied)
		return nil
	}
}

// errOtherEvent marks a well-formed event of a type this consumer does not apply.
var errOtherEvent = errors.New("not a book event")

// parseBookEvent reads a book event and the change it tells of.
func parseBookEvent(body []byte) (broker.Envelope, bookChange, error) {
	var env broker.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return env, bookChange{}, fmt.Errorf("malformed envelope: %w", err)
	}
	if env.ID == "" {
		return env, bookChange{}, errors.New("malformed envelope: no event id")
	}
	switch env.Type {
	case EventBookCreated, EventBookUpdated, EventBookDeleted:
	case "":
		return env, bookChange{}, errors.New("malformed envelope: no type")
	default:
		return env, bookChange{}, errOtherEvent
	}
	if len(env.Data) == 0 {
		return env, bookChange{}, errors.New("malformed envelope: no data")
	}
	// Only the fields the projection needs; the rest of the book is the book
	// service's business.
	var data struct {
		ID       string `json:"id"`
		AuthorID string `json:"author_id"`
		Version  int    `json:"version"`
	}
	if err := json.Unmarshal(env.Data, &data); err != nil {
		return env, bookChange{}, fmt.Errorf("malformed data: %w", err)
	}
	if !rest.ValidID(data.ID) {
		return env, bookChange{}, fmt.Errorf("malformed data: book id %q is not an id", data.ID)
	}
	if env.Type == EventBookDeleted {
		return env, bookChange{BookID: data.ID, Deleted: true}, nil
	}
	if !rest.ValidID(data.AuthorID) {
		return env, bookChange{}, fmt.Errorf("malformed data: author id %q is not an id", data.AuthorID)
	}
	if data.Version < 1 {
		return env, bookChange{}, fmt.Errorf("malformed data: version %d is not positive", data.Version)
	}
	return env, bookChange{BookID: data.ID, AuthorID: data.AuthorID, Version: data.Version}, nil
}
