package book

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"folio/internal/platform/fault"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/outbox"
	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the book database, one folder per SQL engine.
//
//go:embed migrations
var Migrations embed.FS

// Types of the events the book service publishes.
const (
	EventBookCreated = "book.created"
	EventBookUpdated = "book.updated"
	EventBookDeleted = "book.deleted"
)

// SQLStore keeps books in SQLite or PostgreSQL; its SQL is the same on both. Each
// write adds its event to the outbox in the same transaction, so that an event is
// published if and only if the change it describes was committed.
type SQLStore struct {
	db     *sqldb.DB
	notify func()
}

var _ Store = (*SQLStore)(nil)

// Option configures a SQLStore.
type Option func(*SQLStore)

// WithNotify has the store call notify after each commit that added an event to the
// outbox (give it the relay's Notify), so that the event goes out at once rather than
// at the relay's next poll.
func WithNotify(notify func()) Option { return func(s *SQLStore) { s.notify = notify } }

// NewSQLStore returns a store over db, which must be migrated with Migrations and
// with outbox.Migrate and inbox.Migrate.
func NewSQLStore(db *sqldb.DB, opts ...Option) *SQLStore {
	s := &SQLStore{db: db}
	for _, o := range opts {
		o(s)
	}
	return s
}

// write runs fn in a transaction and wakes the relay once it committed.
func (s *SQLStore) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := s.db.InTx(ctx, fn); err != nil {
		return err
	}
	if s.notify != nil {
		s.notify()
	}
	return nil
}

// addEvent records an event about the book with id in tx. data is what the API
// answers for the book after the change.
func addEvent(ctx context.Context, tx *sql.Tx, typ, id string, data any) error {
	if _, err := outbox.Add(ctx, tx, outbox.Event{Type: typ, Aggregate: id, Data: data}); err != nil {
		return fmt.Errorf("add %s event for book %s: %w", typ, id, err)
	}
	return nil
}

const bookColumns = `id, title, author_id, genre, isbn, published_year, version, created_at, updated_at`

func scanBook(row interface{ Scan(...any) error }) (Book, error) {
	var b Book
	var isbn sql.NullString
	var year sql.NullInt64
	err := row.Scan(&b.ID, &b.Title, &b.AuthorID, &b.Genre, &isbn, &year, &b.Version, &b.CreatedAt, &b.UpdatedAt)
	if isbn.Valid {
		b.ISBN = &isbn.String
	}
	if year.Valid {
		y := int(year.Int64)
		b.PublishedYear = &y
	}
	b.CreatedAt, b.UpdatedAt = b.CreatedAt.UTC(), b.UpdatedAt.UTC()
	return b, err
}

// Create inserts b, and the answer to the request of ctx when it carries an
// Idempotency-Key (idempotency.Save), in one transaction. Errors: Conflict when its
// ISBN is taken, or when the request's key was answered meanwhile.
func (s *SQLStore) Create(ctx context.Context, b Book) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO books (`+bookColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			b.ID, b.Title, b.AuthorID, b.Genre, b.ISBN, b.PublishedYear, b.Version, b.CreatedAt, b.UpdatedAt)
		if err != nil {
			return writeError("create book", err)
		}
		if err := addEvent(ctx, tx, EventBookCreated, b.ID, b); err != nil {
			return err
		}
		return idempotency.Save(ctx, tx, b)
	})
}

// Get returns the book with id. Errors: NotFound.
func (s *SQLStore) Get(ctx context.Context, id string) (Book, error) {
	b, err := scanBook(s.db.QueryRowContext(ctx, `SELECT `+bookColumns+` FROM books WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Book{}, errNotFound
	}
	if err != nil {
		return Book{}, fmt.Errorf("get book %s: %w", id, err)
	}
	return b, nil
}

// List returns up to limit books matching f after the id given, in id order.
func (s *SQLStore) List(ctx context.Context, f Filter, after string, limit int) ([]Book, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if after != "" {
		add("id >", after)
	}
	if f.Genre != "" {
		add("genre =", f.Genre)
	}
	if f.AuthorID != "" {
		add("author_id =", f.AuthorID)
	}
	q := `SELECT ` + bookColumns + ` FROM books`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += " ORDER BY id LIMIT $" + strconv.Itoa(len(args))

	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list books: %w", err)
	}
	defer rows.Close()
	books := make([]Book, 0, limit)
	for rows.Next() {
		b, err := scanBook(rows)
		if err != nil {
			return nil, fmt.Errorf("list books: %w", err)
		}
		books = append(books, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list books: %w", err)
	}
	return books, nil
}

// Update writes b if the stored book is at b.Version-1. Errors: NotFound, ErrStale, Conflict.
func (s *SQLStore) Update(ctx context.Context, b Book) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE books SET title = $1, author_id = $2, genre = $3, isbn = $4,
			published_year = $5, version = $6, updated_at = $7 WHERE id = $8 AND version = $9`,
			b.Title, b.AuthorID, b.Genre, b.ISBN, b.PublishedYear, b.Version, b.UpdatedAt, b.ID, b.Version-1)
		if err != nil {
			return writeError("update book", err)
		}
		if err := checkWritten(ctx, tx, res, b.ID); err != nil {
			return err
		}
		return addEvent(ctx, tx, EventBookUpdated, b.ID, b)
	})
}

// Delete removes the book if it is at version. Errors: NotFound, ErrStale.
func (s *SQLStore) Delete(ctx context.Context, id string, version int) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM books WHERE id = $1 AND version = $2`, id, version)
		if err != nil {
			return fmt.Errorf("delete book %s: %w", id, err)
		}
		if err := checkWritten(ctx, tx, res, id); err != nil {
			return err
		}
		return addEvent(ctx, tx, EventBookDeleted, id, deletedData{ID: id})
	})
}

// deletedData is the data of a delete event: only the id, the resource being gone.
type deletedData struct {
	ID string `json:"id"`
}

// checkWritten tells a missing book from one whose version moved on.
func checkWritten(ctx context.Context, tx *sql.Tx, res sql.Result, id string) error {
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM books WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("check book %s: %w", id, err)
	}
	return ErrStale
}

func writeError(op string, err error) error {
	if err == nil {
		return nil
	}
	if sqldb.IsUniqueViolation(err) {
		return &fault.Error{Kind: fault.Conflict, Message: "another book has this ISBN", Err: err,
			Fields: []fault.FieldError{{Field: "isbn", Message: "is already used by another book"}}}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// authorStatus is what the book database knows about an author id.
type authorStatus int

const (
	authorUnseen  authorStatus = iota // neither an event nor the author service told of it
	authorKnown                       // it exists
	authorDeleted                     // it existed and was deleted: it never comes back
)

// authorStatus returns what the book database knows about the author id.
func (s *SQLStore) authorStatus(ctx context.Context, id string) (authorStatus, error) {
	var deleted bool
	err := s.db.QueryRowContext(ctx, `SELECT deleted FROM known_authors WHERE id = $1`, id).Scan(&deleted)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return authorUnseen, nil
	case err != nil:
		return authorUnseen, fmt.Errorf("known author %s: %w", id, err)
	case deleted:
		return authorDeleted, nil
	}
	return authorKnown, nil
}

// KnownAuthor reports whether the author id was confirmed before and not deleted since.
func (s *SQLStore) KnownAuthor(ctx context.Context, id string) (bool, error) {
	st, err := s.authorStatus(ctx, id)
	return st == authorKnown, err
}

// RememberAuthor records that the author id exists, unless it was deleted: a
// confirmation the author service gave just before the delete must not undo it.
func (s *SQLStore) RememberAuthor(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO known_authors (id, confirmed_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		id, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("remember author %s: %w", id, err)
	}
	return nil
}

// applyAuthorEvent records in tx what an author event says of the author id:
// that it exists (created, updated) or is gone for good (deleted).
func applyAuthorEvent(ctx context.Context, tx *sql.Tx, id string, deleted bool) error {
	q := `INSERT INTO known_authors (id, confirmed_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`
	if deleted {
		q = `INSERT INTO known_authors (id, confirmed_at, deleted) VALUES ($1, $2, TRUE)
			ON CONFLICT (id) DO UPDATE SET deleted = TRUE`
	}
	if _, err := tx.ExecContext(ctx, q, id, time.Now().UTC()); err != nil {
		return fmt.Errorf("author %s: %w", id, err)
	}
	return nil
}
