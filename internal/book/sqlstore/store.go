// Package sqlstore keeps the book service's data in SQLite or PostgreSQL: the books,
// the outbox event of each write, in the write's transaction, and the known authors
// projected from the author service's events.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"folio/internal/book"
	"folio/internal/platform/fault"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/outbox"
	"folio/internal/platform/paging"
	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the book database, one folder per SQL engine.
//
//go:embed migrations
var Migrations embed.FS

// Store keeps books in SQLite or PostgreSQL; its SQL is the same on both. Each write
// adds its event to the outbox in the same transaction, so that an event is published
// if and only if the change it describes was committed.
type Store struct {
	db *sqldb.DB
	w  *outbox.Writer
}

var (
	_ book.Store        = (*Store)(nil)
	_ book.KnownAuthors = (*Store)(nil)
)

// New returns a store writing through w, whose database must be migrated with
// Migrations and outbox.Migrate (and inbox.Migrate for the author events).
func New(w *outbox.Writer) *Store { return &Store{db: w.DB(), w: w} }

const bookColumns = `id, title, author_id, genre, isbn, published_year, version, created_at, updated_at`

func scanBook(row interface{ Scan(...any) error }) (book.Book, error) {
	var b book.Book
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
func (s *Store) Create(ctx context.Context, b book.Book) error {
	return s.w.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO books (`+bookColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			b.ID, b.Title, b.AuthorID, b.Genre, b.ISBN, b.PublishedYear, b.Version, b.CreatedAt, b.UpdatedAt)
		if err != nil {
			return writeError("create book", err)
		}
		if err := raiseGenreVersion(ctx, tx, b.Genre, b.UpdatedAt); err != nil {
			return err
		}
		if err := outbox.AddEvent(ctx, tx, book.EventBookCreated, b.ID, b); err != nil {
			return err
		}
		return idempotency.Save(ctx, tx, b)
	})
}

// Get returns the book with id. Errors: NotFound.
func (s *Store) Get(ctx context.Context, id string) (book.Book, error) {
	b, err := scanBook(s.db.QueryRowContext(ctx, `SELECT `+bookColumns+` FROM books WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return book.Book{}, book.ErrNotFound
	}
	if err != nil {
		return book.Book{}, fmt.Errorf("get book %s: %w", id, err)
	}
	return b, nil
}

// List returns up to page.Fetch() books matching f after page.After, in id order.
func (s *Store) List(ctx context.Context, f book.Filter, page paging.Request) ([]book.Book, error) {
	after, limit := page.After, page.Fetch()
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
	books := make([]book.Book, 0, limit)
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

// Update writes b if the stored book is at b.Version-1. Errors: NotFound, book.ErrStale, Conflict.
func (s *Store) Update(ctx context.Context, b book.Book) error {
	return s.w.Write(ctx, func(tx *sql.Tx) error {
		// The genre the book leaves, if it moves, changes as much as the one it is in.
		if err := raiseOldGenreVersion(ctx, tx, b.ID, b.UpdatedAt); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE books SET title = $1, author_id = $2, genre = $3, isbn = $4,
			published_year = $5, version = $6, updated_at = $7 WHERE id = $8 AND version = $9`,
			b.Title, b.AuthorID, b.Genre, b.ISBN, b.PublishedYear, b.Version, b.UpdatedAt, b.ID, b.Version-1)
		if err != nil {
			return writeError("update book", err)
		}
		if err := sqldb.CheckVersioned(ctx, tx, res, "books", b.ID, book.ErrNotFound, book.ErrStale); err != nil {
			return err
		}
		if err := raiseGenreVersion(ctx, tx, b.Genre, b.UpdatedAt); err != nil {
			return err
		}
		return outbox.AddEvent(ctx, tx, book.EventBookUpdated, b.ID, b)
	})
}

// Delete removes the book if it is at version. Errors: NotFound, book.ErrStale.
func (s *Store) Delete(ctx context.Context, id string, version int) error {
	return s.w.Write(ctx, func(tx *sql.Tx) error {
		if err := raiseOldGenreVersion(ctx, tx, id, time.Now()); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM books WHERE id = $1 AND version = $2`, id, version)
		if err != nil {
			return fmt.Errorf("delete book %s: %w", id, err)
		}
		if err := sqldb.CheckVersioned(ctx, tx, res, "books", id, book.ErrNotFound, book.ErrStale); err != nil {
			return err
		}
		return outbox.AddEvent(ctx, tx, book.EventBookDeleted, id, deletedData{ID: id})
	})
}

// GenreVersion returns the version of the genre's books (see the genre_versions
// migration), 0 for a genre that never had one.
func (s *Store) GenreVersion(ctx context.Context, genre string) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, `SELECT version FROM genre_versions WHERE genre = $1`, genre).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("version of genre %s: %w", genre, err)
	}
	return v, nil
}

// raiseGenreVersion raises the version of genre in tx, to the larger of its last
// version plus one and the time at in microseconds.
func raiseGenreVersion(ctx context.Context, tx *sql.Tx, genre string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO genre_versions (genre, version) VALUES ($1, $2)
		ON CONFLICT (genre) DO UPDATE SET version = CASE WHEN genre_versions.version >= excluded.version
			THEN genre_versions.version + 1 ELSE excluded.version END`, genre, at.UnixMicro())
	if err != nil {
		return fmt.Errorf("raise the version of genre %s: %w", genre, err)
	}
	return nil
}

// raiseOldGenreVersion raises, in tx, the version of the genre the book with id is
// in before tx changes it; nothing when there is no such book (the write then fails
// and tx rolls back).
func raiseOldGenreVersion(ctx context.Context, tx *sql.Tx, id string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE genre_versions SET version = CASE WHEN version >= $2
			THEN version + 1 ELSE $2 END
		WHERE genre = (SELECT genre FROM books WHERE id = $1)`, id, at.UnixMicro())
	if err != nil {
		return fmt.Errorf("raise the version of the genre of book %s: %w", id, err)
	}
	return nil
}

// deletedData is the data of a delete event: only the id, the resource being gone.
type deletedData struct {
	ID string `json:"id"`
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

// AuthorStatus returns what the book database knows about the author id.
func (s *Store) AuthorStatus(ctx context.Context, id string) (book.AuthorStatus, error) {
	var deleted bool
	err := s.db.QueryRowContext(ctx, `SELECT deleted FROM known_authors WHERE id = $1`, id).Scan(&deleted)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return book.AuthorUnseen, nil
	case err != nil:
		return book.AuthorUnseen, fmt.Errorf("known author %s: %w", id, err)
	case deleted:
		return book.AuthorDeleted, nil
	}
	return book.AuthorKnown, nil
}

// KnownAuthor reports whether the author id was confirmed before and not deleted since.
func (s *Store) KnownAuthor(ctx context.Context, id string) (bool, error) {
	st, err := s.AuthorStatus(ctx, id)
	return st == book.AuthorKnown, err
}

// RememberAuthor records that the author id exists, unless it was deleted: a
// confirmation the author service gave just before the delete must not undo it.
func (s *Store) RememberAuthor(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO known_authors (id, confirmed_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		id, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("remember author %s: %w", id, err)
	}
	return nil
}

// ApplyAuthorEvent records in tx, the transaction of the event's inbox record, what
// an author event says of the author id: that it exists (created, updated) or is
// gone for good (deleted). It is the known authors' projection of author events.
func (s *Store) ApplyAuthorEvent(ctx context.Context, tx *sql.Tx, id string, deleted bool) error {
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
