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
	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the book database, one folder per SQL engine.
//
//go:embed migrations
var Migrations embed.FS

// SQLStore keeps books in SQLite or PostgreSQL; its SQL is the same on both.
type SQLStore struct {
	db *sqldb.DB
}

var _ Store = (*SQLStore)(nil)

// NewSQLStore returns a store over db, which must be migrated with Migrations.
func NewSQLStore(db *sqldb.DB) *SQLStore { return &SQLStore{db: db} }

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

// Create inserts b. Errors: Conflict when its ISBN is taken.
func (s *SQLStore) Create(ctx context.Context, b Book) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO books (`+bookColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		b.ID, b.Title, b.AuthorID, b.Genre, b.ISBN, b.PublishedYear, b.Version, b.CreatedAt, b.UpdatedAt)
	return writeError("create book", err)
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
	res, err := s.db.ExecContext(ctx, `UPDATE books SET title = $1, author_id = $2, genre = $3, isbn = $4,
		published_year = $5, version = $6, updated_at = $7 WHERE id = $8 AND version = $9`,
		b.Title, b.AuthorID, b.Genre, b.ISBN, b.PublishedYear, b.Version, b.UpdatedAt, b.ID, b.Version-1)
	if err != nil {
		return writeError("update book", err)
	}
	return s.checkWritten(ctx, res, b.ID)
}

// Delete removes the book if it is at version. Errors: NotFound, ErrStale.
func (s *SQLStore) Delete(ctx context.Context, id string, version int) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM books WHERE id = $1 AND version = $2`, id, version)
	if err != nil {
		return fmt.Errorf("delete book %s: %w", id, err)
	}
	return s.checkWritten(ctx, res, id)
}

// checkWritten tells a missing book from one whose version moved on.
func (s *SQLStore) checkWritten(ctx context.Context, res sql.Result, id string) error {
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM books WHERE id = $1`, id).Scan(&one)
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

// KnownAuthor reports whether the author id was confirmed before.
func (s *SQLStore) KnownAuthor(ctx context.Context, id string) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM known_authors WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("known author %s: %w", id, err)
	}
	return true, nil
}

// RememberAuthor records that the author id exists.
func (s *SQLStore) RememberAuthor(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO known_authors (id, confirmed_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		id, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("remember author %s: %w", id, err)
	}
	return nil
}
