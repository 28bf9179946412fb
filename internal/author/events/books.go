// Package events applies the events of other services that the author service
// consumes: the book service's, which keep every author's book_count.
package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"folio/internal/author"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/inbox"
)

// BooksConsumer is the durable consumer through which the author service learns of
// books, and the inbox consumer name under which it records the events applied.
const BooksConsumer = "author-books"

// Types of the book events the author service consumes.
const (
	EventBookCreated = "book.created"
	EventBookUpdated = "book.updated"
	EventBookDeleted = "book.deleted"
)

// Events are applied several at a time, and on SQLite those that arrive together
// share one commit (sqldb.DB.InTx): the projection does not depend on their order
// (versions and tombstones decide), and one commit per event made the disk sync
// the limit.
const booksConcurrency = 64

// BookProjection keeps what book events tell (sqlstore.Store).
type BookProjection interface {
	// ApplyBookChange records c in tx, which also records the event as applied.
	ApplyBookChange(ctx context.Context, tx *sql.Tx, c author.BookChange) error
}

// Books returns the consumer of book events, which keeps the book projection of
// store, and so every author's book_count. Each event is applied once, however often
// it is delivered, and events of one book may arrive in any order: the highest
// version wins and a delete is final.
func Books(store BookProjection) inbox.Consumer {
	return inbox.Consumer{
		Name:        BooksConsumer,
		Types:       []string{EventBookCreated, EventBookUpdated, EventBookDeleted},
		Concurrency: booksConcurrency,
		Apply: func(ctx context.Context, tx *sql.Tx, env broker.Envelope) error {
			c, err := bookChange(env)
			if err != nil {
				return err
			}
			return store.ApplyBookChange(ctx, tx, c)
		},
	}
}

// bookChange reads the change a book event tells of.
func bookChange(env broker.Envelope) (author.BookChange, error) {
	// Only the fields the projection needs; the rest of the book is the book
	// service's business.
	var data struct {
		ID       string `json:"id"`
		AuthorID string `json:"author_id"`
		Version  int    `json:"version"`
	}
	if err := json.Unmarshal(env.Data, &data); err != nil {
		return author.BookChange{}, fmt.Errorf("malformed data: %w", err)
	}
	if !id.Valid(data.ID) {
		return author.BookChange{}, fmt.Errorf("malformed data: book id %q is not an id", data.ID)
	}
	if env.Type == EventBookDeleted {
		return author.BookChange{BookID: data.ID, Deleted: true}, nil
	}
	if !id.Valid(data.AuthorID) {
		return author.BookChange{}, fmt.Errorf("malformed data: author id %q is not an id", data.AuthorID)
	}
	if data.Version < 1 {
		return author.BookChange{}, fmt.Errorf("malformed data: version %d is not positive", data.Version)
	}
	return author.BookChange{BookID: data.ID, AuthorID: data.AuthorID, Version: data.Version}, nil
}
