// Package sqlstore keeps the author service's authors in SQLite or PostgreSQL, with
// the outbox events of every write and the projection of the book service's events
// that counts each author's books.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"folio/internal/author"
	"folio/internal/platform/fault"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/outbox"
	"folio/internal/platform/paging"
	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the author database, one folder per SQL engine.
//
//go:embed migrations
var Migrations embed.FS

// Store keeps authors; its SQL is the same on both engines. Each write adds its event
// to the outbox in the same transaction, so that an event is published if and only
// if the change it describes was committed.
type Store struct {
	db *sqldb.DB
	w  *outbox.Writer
}

var _ author.Store = (*Store)(nil)

// New returns a store that writes through w, whose database must be migrated with
// Migrations and with outbox.Migrate (and inbox.Migrate for the book events).
func New(w *outbox.Writer) *Store {
	return &Store{db: w.DB(), w: w}
}

const authorColumns = `id, name, bio, birth_year, version, created_at, updated_at`

// liveBooks counts the books of the author in author_books that are not deleted.
const liveBooks = `SELECT COUNT(*) FROM author_books WHERE author_id = $1 AND NOT deleted`

// selectAuthors reads every author column and the author's book_count.
const selectAuthors = `SELECT id, name, bio, birth_year, version, created_at, updated_at,
	(SELECT COUNT(*) FROM author_books b WHERE b.author_id = authors.id AND NOT b.deleted)
	FROM authors`

// getManyBatch is how many ids one GetMany query asks for, well below the bind
// parameter limits of both engines.
const getManyBatch = 500

func scanAuthor(row interface{ Scan(...any) error }) (author.Author, error) {
	var a author.Author
	var bio sql.NullString
	var year sql.NullInt64
	err := row.Scan(&a.ID, &a.Name, &bio, &year, &a.Version, &a.CreatedAt, &a.UpdatedAt, &a.BookCount)
	if bio.Valid {
		a.Bio = &bio.String
	}
	if year.Valid {
		y := int(year.Int64)
		a.BirthYear = &y
	}
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return a, err
}

// bookCount returns the number of live books of the author with id, as tx sees it.
func bookCount(ctx context.Context, tx *sql.Tx, id string) (int, error) {
	var n int
	if err := tx.QueryRowContext(ctx, liveBooks, id).Scan(&n); err != nil {
		return 0, fmt.Errorf("count books of author %s: %w", id, err)
	}
	return n, nil
}

// Create inserts a and returns it with its book_count. Errors: only unclassified
// ones (the database failed).
func (s *Store) Create(ctx context.Context, a author.Author) (author.Author, error) {
	err := s.w.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO authors (`+authorColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			a.ID, a.Name, a.Bio, a.BirthYear, a.Version, a.CreatedAt, a.UpdatedAt)
		if err != nil {
			return fmt.Errorf("create author: %w", err)
		}
		// Always 0 in practice, since a book needs its author first; counted all the
		// same so that the answer and the event say what a GET would.
		if a.BookCount, err = bookCount(ctx, tx, a.ID); err != nil {
			return err
		}
		if err := countChange(ctx, tx, a.ID); err != nil {
			return err
		}
		if err := outbox.AddEvent(ctx, tx, author.EventAuthorCreated, a.ID, a); err != nil {
			return err
		}
		return idempotency.Save(ctx, tx, a)
	})
	if err != nil {
		return author.Author{}, err
	}
	return a, nil
}

// Get returns the author with id. Errors: NotFound.
func (s *Store) Get(ctx context.Context, id string) (author.Author, error) {
	a, err := scanAuthor(s.db.QueryRowContext(ctx, selectAuthors+` WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return author.Author{}, author.ErrNotFound
	}
	if err != nil {
		return author.Author{}, fmt.Errorf("get author %s: %w", id, err)
	}
	return a, nil
}

// GetMany returns the authors among ids that exist, keyed by id; ids of no author
// are left out. The ids must be valid ids (see id.Valid). Errors: only
// unclassified ones (the database failed).
func (s *Store) GetMany(ctx context.Context, ids []string) (map[string]author.Author, error) {
	found := make(map[string]author.Author, len(ids))
	for batch := range slices.Chunk(ids, getManyBatch) {
		marks := make([]string, len(batch))
		args := make([]any, len(batch))
		for i, id := range batch {
			marks[i] = "$" + strconv.Itoa(i+1)
			args[i] = id
		}
		rows, err := s.db.QueryContext(ctx, selectAuthors+` WHERE id IN (`+strings.Join(marks, ", ")+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("get authors: %w", err)
		}
		err = func() error {
			defer rows.Close()
			for rows.Next() {
				a, err := scanAuthor(rows)
				if err != nil {
					return err
				}
				found[a.ID] = a
			}
			return rows.Err()
		}()
		if err != nil {
			return nil, fmt.Errorf("get authors: %w", err)
		}
	}
	return found, nil
}

// List returns up to page.Fetch() authors after page.After, in id order. Errors:
// only unclassified ones (the database failed).
func (s *Store) List(ctx context.Context, page paging.Request) ([]author.Author, error) {
	limit := page.Fetch()
	q := selectAuthors + ` ORDER BY id LIMIT $1`
	args := []any{limit}
	if page.After != "" {
		q = selectAuthors + ` WHERE id > $1 ORDER BY id LIMIT $2`
		args = []any{page.After, limit}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list authors: %w", err)
	}
	defer rows.Close()
	authors := make([]author.Author, 0, limit)
	for rows.Next() {
		a, err := scanAuthor(rows)
		if err != nil {
			return nil, fmt.Errorf("list authors: %w", err)
		}
		authors = append(authors, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list authors: %w", err)
	}
	return authors, nil
}

// Update writes a if the stored author is at a.Version-1, and returns it with its
// book_count. Errors: NotFound, ErrStale.
func (s *Store) Update(ctx context.Context, a author.Author) (author.Author, error) {
	err := s.w.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE authors SET name = $1, bio = $2, birth_year = $3, version = $4,
			updated_at = $5 WHERE id = $6 AND version = $7`,
			a.Name, a.Bio, a.BirthYear, a.Version, a.UpdatedAt, a.ID, a.Version-1)
		if err != nil {
			return fmt.Errorf("update author %s: %w", a.ID, err)
		}
		if err := sqldb.CheckVersioned(ctx, tx, res, "authors", a.ID, author.ErrNotFound, author.ErrStale); err != nil {
			return err
		}
		if a.BookCount, err = bookCount(ctx, tx, a.ID); err != nil {
			return err
		}
		if err := countChange(ctx, tx, a.ID); err != nil {
			return err
		}
		return outbox.AddEvent(ctx, tx, author.EventAuthorUpdated, a.ID, a)
	})
	if err != nil {
		return author.Author{}, err
	}
	return a, nil
}

// Delete removes the author if it is at version and has no books. Errors: NotFound,
// ErrStale, Conflict (the author still has books).
//
// The books are those the author service has heard of from book events, so for a
// moment after a book is created (or moved to this author) and before its event is
// applied, the delete can still succeed and leave that book naming a deleted
// author. The window is as long as the outbox relay and the broker take to deliver
// the event (on PostgreSQL it includes an event applied while this transaction
// runs, which the count does not see); the book service's author.deleted tombstone
// keeps it from growing, since no new book can name the author once that event is
// applied.
func (s *Store) Delete(ctx context.Context, id string, version int) error {
	return s.w.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM authors WHERE id = $1 AND version = $2`, id, version)
		if err != nil {
			return fmt.Errorf("delete author %s: %w", id, err)
		}
		if err := sqldb.CheckVersioned(ctx, tx, res, "authors", id, author.ErrNotFound, author.ErrStale); err != nil {
			return err
		}
		// Counted in the transaction of the delete, which rolls back when books remain.
		n, err := bookCount(ctx, tx, id)
		if err != nil {
			return err
		}
		if n > 0 {
			return fault.New(fault.Conflict, "the author still has %d %s; delete them or give them another author first", n, plural(n, "book", "books"))
		}
		if err := countChange(ctx, tx, id); err != nil {
			return err
		}
		return outbox.AddEvent(ctx, tx, author.EventAuthorDeleted, id, deletedData{ID: id})
	})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// deletedData is the data of a delete event: only the id, the resource being gone.
type deletedData struct {
	ID string `json:"id"`
}

// ApplyBookChange writes what a book event tells into author_books, in tx (the
// inbox's, so that the change and the record of the event commit together). A
// created or updated book is written only over an older version of a live row, so
// that an event overtaken by a newer one, or delivered again, changes nothing; a
// delete leaves a tombstone that no later event of the book overwrites.
func (s *Store) ApplyBookChange(ctx context.Context, tx *sql.Tx, c author.BookChange) error {
	var err error
	if c.Deleted {
		_, err = tx.ExecContext(ctx, `INSERT INTO author_books (book_id, author_id, version, deleted)
			VALUES ($1, NULL, 0, TRUE)
			ON CONFLICT (book_id) DO UPDATE SET deleted = TRUE`, c.BookID)
	} else {
		_, err = tx.ExecContext(ctx, `INSERT INTO author_books (book_id, author_id, version, deleted)
			VALUES ($1, $2, $3, FALSE)
			ON CONFLICT (book_id) DO UPDATE SET author_id = excluded.author_id, version = excluded.version
			WHERE author_books.version < excluded.version AND NOT author_books.deleted`,
			c.BookID, c.AuthorID, c.Version)
	}
	if err != nil {
		return fmt.Errorf("book %s: %w", c.BookID, err)
	}
	// Counted even when the event changed nothing (a duplicate, an overtaken version):
	// telling those apart costs more than the extra rebuild of a cached answer.
	return countChange(ctx, tx, c.BookID)
}

// changeSlots is how many change counters there are (the change_counters migration).
const changeSlots = 16

// countChange raises, in tx, the change counter that key picks.
func countChange(ctx context.Context, tx *sql.Tx, key string) error {
	h := fnv.New32a()
	h.Write([]byte(key))
	if _, err := tx.ExecContext(ctx, `UPDATE change_counters SET n = n + 1 WHERE slot = $1`, h.Sum32()%changeSlots); err != nil {
		return fmt.Errorf("count the change: %w", err)
	}
	return nil
}

// Generation returns the sum of the change counters, which every committed change
// to an author or to the books applied from events raises.
func (s *Store) Generation(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT SUM(n) FROM change_counters`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read the change counters: %w", err)
	}
	return n, nil
}
