// Package events holds the book service's consumers of other services' events.
package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/inbox"
)

// AuthorsConsumer is the durable consumer through which the book service learns of
// authors, and the inbox consumer name under which it records the events applied.
const AuthorsConsumer = "book-authors"

// Types of the author events the book service consumes, as the author service
// publishes them.
const (
	AuthorCreated = "author.created"
	AuthorUpdated = "author.updated"
	AuthorDeleted = "author.deleted"
)

// Events are applied several at a time, and on SQLite those that arrive together
// share one commit (sqldb.DB.InTx): known authors do not depend on the order
// events arrive in (a delete is final), and one commit per event made the disk
// sync the limit.
const authorsConcurrency = 32

// AuthorProjection keeps the author ids the book service knows in the transaction of
// the event's inbox record (sqlstore.Store is one).
type AuthorProjection interface {
	ApplyAuthorEvent(ctx context.Context, tx *sql.Tx, authorID string, deleted bool) error
}

// Authors is the consumer of author events, which keeps the known author ids of
// store: created and updated make an author known, deleted makes it unknown for good.
// An event whose data names no author id is an error, so that the broker retries it
// and then moves it to the dead letters instead of dropping it unseen.
func Authors(store AuthorProjection) inbox.Consumer {
	return inbox.Consumer{
		Name:        AuthorsConsumer,
		Types:       []string{AuthorCreated, AuthorUpdated, AuthorDeleted},
		Concurrency: authorsConcurrency,
		Apply: func(ctx context.Context, tx *sql.Tx, env broker.Envelope) error {
			authorID, err := authorOf(env)
			if err != nil {
				return err
			}
			return store.ApplyAuthorEvent(ctx, tx, authorID, env.Type == AuthorDeleted)
		},
	}
}

// authorOf returns the author id an author event is about: every author event's data,
// the author or {"id"} after a delete, names it by id.
func authorOf(env broker.Envelope) (string, error) {
	var data struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(env.Data, &data); err != nil {
		return "", fmt.Errorf("malformed data: %w", err)
	}
	if !id.Valid(data.ID) {
		return "", fmt.Errorf("malformed data: author id %q is not an id", data.ID)
	}
	return data.ID, nil
}
