// Package sqlstore keeps the order service's data in SQLite or PostgreSQL: the
// orders with their items and saga state, and, in the transaction of each change,
// its order.<state> event and the commands it sends, through the outbox.
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

	"folio/internal/order"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/outbox"
	"folio/internal/platform/paging"
	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the order database, one folder per SQL engine.
//
//go:embed migrations
var Migrations embed.FS

// Store keeps orders in SQLite or PostgreSQL; its SQL is the same on both. Every
// write is guarded by the order's version, so that of two writers that read the
// same version (two instances' timers, a reply and the timer) one commits and the
// other gets order.ErrStale and sends nothing.
type Store struct {
	db *sqldb.DB
	w  *outbox.Writer
}

var _ order.Store = (*Store)(nil)

// New returns a store writing through w, whose database must be migrated with
// Migrations, outbox.Migrate, inbox.Migrate and idempotency.Migrate.
func New(w *outbox.Writer) *Store { return &Store{db: w.DB(), w: w} }

// querier is what reads need: the database, or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const orderColumns = `id, user_id, state, total_amount, total_currency, card_brand, card_last4, reason,
	created_at, updated_at, version, attempts, step_started_at, next_attempt_at, step_deadline,
	then_states, outcome, sealed_card, expires_at`

func scanOrder(row interface{ Scan(...any) error }) (order.Order, error) {
	var o order.Order
	var amount sql.NullInt64
	var currency, reason sql.NullString
	var started, expires int64
	var next, deadline sql.NullInt64
	var then, outcome string
	err := row.Scan(&o.ID, &o.UserID, &o.State, &amount, &currency, &o.Card.Brand, &o.Card.Last4, &reason,
		&o.CreatedAt, &o.UpdatedAt, &o.Version, &o.Saga.Attempts, &started, &next, &deadline,
		&then, &outcome, &o.Saga.SealedCard, &expires)
	if err != nil {
		return order.Order{}, err
	}
	if amount.Valid {
		o.Total = &order.Money{Amount: amount.Int64, Currency: currency.String}
	}
	if reason.Valid {
		o.Reason = &reason.String
	}
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	o.Saga.StepStartedAt, o.Saga.ExpiresAt = fromMicro(started), fromMicro(expires)
	o.Saga.NextAttemptAt, o.Saga.StepDeadline = fromNullMicro(next), fromNullMicro(deadline)
	for s := range strings.SplitSeq(then, ",") {
		if s != "" {
			o.Saga.Then = append(o.Saga.Then, order.State(s))
		}
	}
	o.Saga.Outcome = order.State(outcome)
	return o, nil
}

func fromMicro(us int64) time.Time { return time.UnixMicro(us).UTC() }

func fromNullMicro(us sql.NullInt64) *time.Time {
	if !us.Valid {
		return nil
	}
	t := fromMicro(us.Int64)
	return &t
}

func nullMicro(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	us := t.UnixMicro()
	return &us
}

func joinStates(ss []order.State) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ",")
}

// orderValues are the values of orderColumns for o, in their order.
func orderValues(o order.Order) []any {
	var amount *int64
	var currency *string
	if o.Total != nil {
		amount, currency = &o.Total.Amount, &o.Total.Currency
	}
	return []any{o.ID, o.UserID, string(o.State), amount, currency, o.Card.Brand, o.Card.Last4, o.Reason,
		o.CreatedAt, o.UpdatedAt, o.Version, o.Saga.Attempts, o.Saga.StepStartedAt.UnixMicro(),
		nullMicro(o.Saga.NextAttemptAt), nullMicro(o.Saga.StepDeadline),
		joinStates(o.Saga.Then), string(o.Saga.Outcome), o.Saga.SealedCard, o.Saga.ExpiresAt.UnixMicro()}
}

// Create inserts o and its items, its order.pending event, cmds, and the answer
// to the request of ctx when it carries an Idempotency-Key (idempotency.Save), in
// one transaction. Errors: Conflict when the request's key was answered meanwhile.
func (s *Store) Create(ctx context.Context, o order.Order, cmds []order.Command) error {
	return s.w.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO orders (`+orderColumns+`) VALUES
			($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`, orderValues(o)...); err != nil {
			return fmt.Errorf("create order: %w", err)
		}
		for i, it := range o.Items {
			var amount *int64
			var currency *string
			if it.UnitPrice != nil {
				amount, currency = &it.UnitPrice.Amount, &it.UnitPrice.Currency
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO order_items (order_id, position, book_id, quantity, unit_price_amount, unit_price_currency)
				VALUES ($1, $2, $3, $4, $5, $6)`, o.ID, i, it.BookID, it.Quantity, amount, currency); err != nil {
				return fmt.Errorf("create order %s: item %d: %w", o.ID, i, err)
			}
		}
		if err := addEvents(ctx, tx, o, true, cmds); err != nil {
			return err
		}
		return idempotency.Save(ctx, tx, o)
	})
}

// addEvents adds, after the order's row was written (so that its events keep
// their order), the event of o's state when it changed, then cmds.
func addEvents(ctx context.Context, tx *sql.Tx, o order.Order, stateChanged bool, cmds []order.Command) error {
	if stateChanged {
		if err := outbox.AddEvent(ctx, tx, o.State.Event(), o.ID, o); err != nil {
			return err
		}
	}
	for _, c := range cmds {
		if err := outbox.AddEvent(ctx, tx, c.Type, o.ID, c.Data); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the order with id. Errors: order.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (order.Order, error) {
	return get(ctx, s.db, id)
}

func get(ctx context.Context, q querier, id string) (order.Order, error) {
	orders, err := readOrders(ctx, q, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, id)
	if err != nil {
		return order.Order{}, fmt.Errorf("get order %s: %w", id, err)
	}
	if len(orders) == 0 {
		return order.Order{}, order.ErrNotFound
	}
	return orders[0], nil
}

// List returns up to page.Fetch() orders of the user after page.After, by id.
func (s *Store) List(ctx context.Context, userID string, page paging.Request) ([]order.Order, error) {
	q, args := `SELECT `+orderColumns+` FROM orders WHERE user_id = $1 ORDER BY id LIMIT $2`, []any{userID, page.Fetch()}
	if page.After != "" {
		q, args = `SELECT `+orderColumns+` FROM orders WHERE user_id = $1 AND id > $3 ORDER BY id LIMIT $2`, append(args, page.After)
	}
	orders, err := readOrders(ctx, s.db, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return orders, nil
}

// Due returns up to limit orders whose next attempt is not after now, the most
// overdue first.
func (s *Store) Due(ctx context.Context, now time.Time, limit int) ([]order.Order, error) {
	orders, err := readOrders(ctx, s.db, `SELECT `+orderColumns+` FROM orders
		WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2`, now.UnixMicro(), limit)
	if err != nil {
		return nil, fmt.Errorf("due orders: %w", err)
	}
	return orders, nil
}

// Stuck counts the orders waiting on a compensation first sent before since.
func (s *Store) Stuck(ctx context.Context, since time.Time) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE next_attempt_at IS NOT NULL
		AND state IN ('voiding', 'refunding', 'restocking', 'releasing') AND step_started_at < $1`, since.UnixMicro()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count stuck orders: %w", err)
	}
	return n, nil
}

// readOrders runs the query of orders and reads their items.
func readOrders(ctx context.Context, q querier, query string, args ...any) ([]order.Order, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	var orders []order.Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		orders = append(orders, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(orders) == 0 {
		return orders, nil
	}
	return orders, readItems(ctx, q, orders)
}

// readItems fills in the items of orders.
func readItems(ctx context.Context, q querier, orders []order.Order) error {
	at := make(map[string]int, len(orders))
	args := make([]any, len(orders))
	marks := make([]string, len(orders))
	for i, o := range orders {
		at[o.ID] = i
		args[i] = o.ID
		marks[i] = "$" + strconv.Itoa(i+1)
	}
	rows, err := q.QueryContext(ctx, `SELECT order_id, book_id, quantity, unit_price_amount, unit_price_currency
		FROM order_items WHERE order_id IN (`+strings.Join(marks, ", ")+`) ORDER BY order_id, position`, args...)
	if err != nil {
		return fmt.Errorf("items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var orderID string
		var it order.Item
		var amount sql.NullInt64
		var currency sql.NullString
		if err := rows.Scan(&orderID, &it.BookID, &it.Quantity, &amount, &currency); err != nil {
			return fmt.Errorf("items: %w", err)
		}
		if amount.Valid {
			it.UnitPrice = &order.Money{Amount: amount.Int64, Currency: currency.String}
		}
		i := at[orderID]
		orders[i].Items = append(orders[i].Items, it)
	}
	return rows.Err()
}

// Advance writes ch in one transaction. Errors: order.ErrNotFound, order.ErrStale.
func (s *Store) Advance(ctx context.Context, ch order.Change) error {
	return s.w.Write(ctx, func(tx *sql.Tx) error { return advance(ctx, tx, ch) })
}

// AdvanceIn reads the order with id in tx, the transaction of a reply's inbox
// record, and writes the change decide makes of it, if any. It returns the change
// written, and false when there was none: no such order, or decide found the
// reply stale. Errors: order.ErrStale when another writer changed the order
// between the read and the write (the reply is to be applied again).
func (s *Store) AdvanceIn(ctx context.Context, tx *sql.Tx, id string, decide func(order.Order) (order.Change, bool)) (order.Change, bool, error) {
	o, err := get(ctx, tx, id)
	if errors.Is(err, order.ErrNotFound) {
		return order.Change{}, false, nil
	}
	if err != nil {
		return order.Change{}, false, err
	}
	ch, ok := decide(o)
	if !ok {
		return order.Change{}, false, nil
	}
	if err := advance(ctx, tx, ch); err != nil {
		return order.Change{}, false, err
	}
	return ch, true, nil
}

// advance writes ch through tx, guarded by its version.
func advance(ctx context.Context, tx *sql.Tx, ch order.Change) error {
	o := ch.Order
	var amount *int64
	var currency *string
	if o.Total != nil {
		amount, currency = &o.Total.Amount, &o.Total.Currency
	}
	res, err := tx.ExecContext(ctx, `UPDATE orders SET state = $1, total_amount = $2, total_currency = $3, reason = $4,
		updated_at = $5, version = $6, attempts = $7, step_started_at = $8, next_attempt_at = $9, step_deadline = $10,
		then_states = $11, outcome = $12, sealed_card = $13
		WHERE id = $14 AND version = $15`,
		string(o.State), amount, currency, o.Reason, o.UpdatedAt, o.Version, o.Saga.Attempts, o.Saga.StepStartedAt.UnixMicro(),
		nullMicro(o.Saga.NextAttemptAt), nullMicro(o.Saga.StepDeadline), joinStates(o.Saga.Then), string(o.Saga.Outcome),
		o.Saga.SealedCard, o.ID, ch.FromVersion)
	if err != nil {
		return fmt.Errorf("advance order %s: %w", o.ID, err)
	}
	if err := sqldb.CheckVersioned(ctx, tx, res, "orders", o.ID, order.ErrNotFound, order.ErrStale); err != nil {
		return err
	}
	if ch.Priced {
		for i, it := range o.Items {
			if it.UnitPrice == nil {
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE order_items SET unit_price_amount = $1, unit_price_currency = $2
				WHERE order_id = $3 AND position = $4`, it.UnitPrice.Amount, it.UnitPrice.Currency, o.ID, i); err != nil {
				return fmt.Errorf("advance order %s: price of item %d: %w", o.ID, i, err)
			}
		}
	}
	return addEvents(ctx, tx, o, ch.From != o.State, ch.Commands)
}
