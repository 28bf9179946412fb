// Package sqlstore keeps the inventory service's data in SQLite or PostgreSQL: the
// stock of each book, the reservations of the order saga and the reply to each of
// its commands, written to the outbox in the transaction of the change.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"folio/internal/inventory"
	"folio/internal/platform/outbox"
	"folio/internal/platform/paging"
	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the inventory database, one folder per SQL engine.
//
//go:embed migrations
var Migrations embed.FS

// Store keeps the stock and the reservations in SQLite or PostgreSQL; its SQL is
// the same on both but for the row locks PostgreSQL needs (forUpdate).
type Store struct {
	db *sqldb.DB
	w  *outbox.Writer
}

var _ inventory.Store = (*Store)(nil)

// New returns a store writing through w, whose database must be migrated with
// Migrations, outbox.Migrate and inbox.Migrate.
func New(w *outbox.Writer) *Store { return &Store{db: w.DB(), w: w} }

const itemColumns = `book_id, price_amount, price_currency, quantity, reserved, version, updated_at, deleted`

func scanItem(row interface{ Scan(...any) error }) (inventory.Item, bool, error) {
	var it inventory.Item
	var deleted bool
	err := row.Scan(&it.BookID, &it.Price.Amount, &it.Price.Currency, &it.Quantity, &it.Reserved, &it.Version, &it.UpdatedAt, &deleted)
	it.Available = it.Quantity - it.Reserved
	it.UpdatedAt = it.UpdatedAt.UTC()
	return it, deleted, err
}

// Get returns the stock of the book. Errors: inventory.ErrNotFound,
// inventory.ErrDeleted.
func (s *Store) Get(ctx context.Context, bookID string) (inventory.Item, error) {
	it, deleted, err := scanItem(s.db.QueryRowContext(ctx, `SELECT `+itemColumns+` FROM stock WHERE book_id = $1`, bookID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return inventory.Item{}, inventory.ErrNotFound
	case err != nil:
		return inventory.Item{}, fmt.Errorf("get stock of %s: %w", bookID, err)
	case deleted:
		return inventory.Item{}, inventory.ErrDeleted
	}
	return it, nil
}

// List returns up to page.Fetch() items of books not deleted after page.After, in
// book id order.
func (s *Store) List(ctx context.Context, page paging.Request) ([]inventory.Item, error) {
	q, args := `SELECT `+itemColumns+` FROM stock WHERE NOT deleted ORDER BY book_id LIMIT $1`, []any{page.Fetch()}
	if page.After != "" {
		q, args = `SELECT `+itemColumns+` FROM stock WHERE NOT deleted AND book_id > $1 ORDER BY book_id LIMIT $2`, []any{page.After, page.Fetch()}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list stock: %w", err)
	}
	defer rows.Close()
	items := make([]inventory.Item, 0, page.Fetch())
	for rows.Next() {
		it, _, err := scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("list stock: %w", err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list stock: %w", err)
	}
	return items, nil
}

// Create inserts it unless the book has a row already. Errors: inventory.ErrStale
// when it has (stock written meanwhile, or the tombstone of a deleted book).
func (s *Store) Create(ctx context.Context, it inventory.Item) error {
	return s.w.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO stock (book_id, price_amount, price_currency, quantity, reserved, version, updated_at)
			VALUES ($1, $2, $3, $4, 0, $5, $6) ON CONFLICT (book_id) DO NOTHING`,
			it.BookID, it.Price.Amount, it.Price.Currency, it.Quantity, it.Version, it.UpdatedAt)
		if err != nil {
			return fmt.Errorf("create stock of %s: %w", it.BookID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("create stock of %s: %w", it.BookID, err)
		} else if n == 0 {
			return inventory.ErrStale
		}
		return nil
	})
}

// Update writes the price and quantity of it if the stored item is at
// it.Version-1, not deleted, and holds at most it.Quantity copies, and returns
// the item as stored. Errors: inventory.ErrNotFound, inventory.ErrDeleted,
// inventory.ErrStale, Conflict (inventory.BelowReserved).
func (s *Store) Update(ctx context.Context, it inventory.Item) (inventory.Item, error) {
	var out inventory.Item
	err := s.w.Write(ctx, func(tx *sql.Tx) error {
		// The check on reserved is in the update itself: a reserve may have held
		// copies since the service read the item.
		var deleted bool
		var err error
		out, deleted, err = scanItem(tx.QueryRowContext(ctx, `UPDATE stock SET price_amount = $1, price_currency = $2,
				quantity = $3, version = $4, updated_at = $5
			WHERE book_id = $6 AND version = $7 AND NOT deleted AND reserved <= $3
			RETURNING `+itemColumns,
			it.Price.Amount, it.Price.Currency, it.Quantity, it.Version, it.UpdatedAt, it.BookID, it.Version-1))
		if err == nil && !deleted {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("update stock of %s: %w", it.BookID, err)
		}
		var version int
		var reserved int64
		err = tx.QueryRowContext(ctx, `SELECT version, reserved, deleted FROM stock WHERE book_id = $1`, it.BookID).Scan(&version, &reserved, &deleted)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return inventory.ErrNotFound
		case err != nil:
			return fmt.Errorf("update stock of %s: %w", it.BookID, err)
		case deleted:
			return inventory.ErrDeleted
		case version != it.Version-1:
			return inventory.ErrStale
		}
		return inventory.BelowReserved(reserved)
	})
	if err != nil {
		return inventory.Item{}, err
	}
	return out, nil
}

// MarkBookDeleted records in tx, the transaction of the event's inbox record, that
// the book service deleted the book: from then on it is not for sale and its stock
// cannot be set. Reservations already made of it stay as they are (a sale agreed
// is kept, a stock put back is counted).
func (s *Store) MarkBookDeleted(ctx context.Context, tx *sql.Tx, bookID string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO stock (book_id, price_amount, price_currency, quantity, reserved, version, updated_at, deleted)
		VALUES ($1, 0, '', 0, 0, 0, $2, TRUE) ON CONFLICT (book_id) DO UPDATE SET deleted = TRUE`, bookID, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("mark book %s deleted: %w", bookID, err)
	}
	return nil
}
