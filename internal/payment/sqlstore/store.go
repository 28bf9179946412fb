// Package sqlstore keeps the payment service's payments and their ledger in SQLite
// or PostgreSQL, each command's change in one transaction with its ledger entries
// and its reply in the outbox.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"

	"folio/internal/payment"
	"folio/internal/platform/outbox"
	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the payment database, one folder per SQL engine.
//
//go:embed migrations
var Migrations embed.FS

// Store keeps payments in SQLite or PostgreSQL; its SQL is the same on both.
type Store struct {
	db *sqldb.DB
}

var _ payment.Store = (*Store)(nil)

// New returns the store of db, which must be migrated with Migrations,
// outbox.Migrate and inbox.Migrate.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// queryer is what reads go through: the database, or a transaction.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const paymentColumns = `id, order_id, state, amount, currency, card_brand, card_last4, card_token,
	decline_reason, capture_refused, version, created_at, updated_at`

// Get returns the payment of the order with its ledger. Errors: payment.ErrNotFound.
func (s *Store) Get(ctx context.Context, orderID string) (payment.Payment, error) {
	return get(ctx, s.db, orderID)
}

func get(ctx context.Context, q queryer, orderID string) (payment.Payment, error) {
	var p payment.Payment
	var brand, last4, token sql.NullString
	var state string
	err := q.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments WHERE order_id = $1`, orderID).Scan(
		&p.ID, &p.OrderID, &state, &p.Amount.Amount, &p.Amount.Currency, &brand, &last4, &token,
		&p.DeclineReason, &p.CaptureRefused, &p.Version, &p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return payment.Payment{}, payment.ErrNotFound
	}
	if err != nil {
		return payment.Payment{}, fmt.Errorf("get payment of order %s: %w", orderID, err)
	}
	p.State = payment.State(state)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	if brand.Valid {
		p.Card = &payment.CardRef{Brand: brand.String, Last4: last4.String, Token: token.String}
	}
	if p.Entries, err = entries(ctx, q, p.ID); err != nil {
		return payment.Payment{}, fmt.Errorf("get payment of order %s: %w", orderID, err)
	}
	sums := payment.Sums(p.Entries)
	p.Captured, p.Refunded = sums[payment.EntryCapture], sums[payment.EntryRefund]
	return p, nil
}

// entries returns the ledger of the payment, oldest first.
func entries(ctx context.Context, q queryer, paymentID string) ([]payment.Entry, error) {
	rows, err := q.QueryContext(ctx, `SELECT kind, amount, at FROM payment_entries WHERE payment_id = $1 ORDER BY seq`, paymentID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []payment.Entry{}
	for rows.Next() {
		var e payment.Entry
		if err := rows.Scan(&e.Kind, &e.Amount, &e.At); err != nil {
			return nil, err
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// Apply applies a command to the payment of the order in tx (the inbox's): decide
// gets the payment as it is (nil when the order has none) and returns the
// outcome, which Apply stores with its ledger entries and its reply (an outbox
// event), and returns the reply. Commands of one order apply one at a time.
// Errors: decide's, payment.ErrStale should the payment change meanwhile.
func (s *Store) Apply(ctx context.Context, tx *sql.Tx, orderID string, decide func(cur *payment.Payment) (payment.Outcome, error)) (payment.Reply, error) {
	if s.db.Dialect == sqldb.Postgres {
		// Two commands of one order (a duplicate, or one re-sent) would otherwise
		// both read the payment before either wrote it; SQLite runs one write
		// transaction at a time already.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "payment:"+orderID); err != nil {
			return payment.Reply{}, fmt.Errorf("lock payment of order %s: %w", orderID, err)
		}
	}
	var cur *payment.Payment
	p, err := get(ctx, tx, orderID)
	switch {
	case err == nil:
		cur = &p
	case !errors.Is(err, payment.ErrNotFound):
		return payment.Reply{}, err
	}
	out, err := decide(cur)
	if err != nil {
		return payment.Reply{}, err
	}
	if out.Payment != nil {
		if err := write(ctx, tx, out); err != nil {
			return payment.Reply{}, fmt.Errorf("apply to payment of order %s: %w", orderID, err)
		}
	}
	if err := outbox.AddEvent(ctx, tx, out.Reply.Type, orderID, out.Reply.Data); err != nil {
		return payment.Reply{}, err
	}
	return out.Reply, nil
}

// write stores the payment of out, new (version 1) or changed, and its new ledger
// entries.
func write(ctx context.Context, tx *sql.Tx, out payment.Outcome) error {
	p := out.Payment
	var brand, last4, token *string
	if p.Card != nil {
		brand, last4, token = &p.Card.Brand, &p.Card.Last4, &p.Card.Token
	}
	if p.Version == 1 {
		_, err := tx.ExecContext(ctx, `INSERT INTO payments (`+paymentColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			p.ID, p.OrderID, string(p.State), p.Amount.Amount, p.Amount.Currency, brand, last4, token,
			p.DeclineReason, p.CaptureRefused, p.Version, p.CreatedAt, p.UpdatedAt)
		if sqldb.IsUniqueViolation(err) {
			return payment.ErrStale
		}
		if err != nil {
			return err
		}
	} else {
		res, err := tx.ExecContext(ctx, `UPDATE payments SET state = $3, version = $4, updated_at = $5
			WHERE id = $1 AND version = $2`, p.ID, p.Version-1, string(p.State), p.Version, p.UpdatedAt)
		if err != nil {
			return err
		}
		if err := sqldb.CheckVersioned(ctx, tx, res, "payments", p.ID, payment.ErrStale, payment.ErrStale); err != nil {
			return err
		}
	}
	for _, e := range out.Entries {
		if _, err := tx.ExecContext(ctx, `INSERT INTO payment_entries (payment_id, kind, amount, at) VALUES ($1, $2, $3, $4)`,
			p.ID, e.Kind, e.Amount, e.At); err != nil {
			if sqldb.IsUniqueViolation(err) {
				return fmt.Errorf("a second %s of payment %s: %w", e.Kind, p.ID, payment.ErrStale)
			}
			return err
		}
	}
	return nil
}

// Totals are the sums of a currency's ledger entries, over every payment.
type Totals struct {
	Authorised, Captured, Voided, Refunded int64
}

// Totals returns the sums of the ledger's entries of each kind, by currency.
func (s *Store) Totals(ctx context.Context) (map[string]Totals, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT p.currency, e.kind, SUM(e.amount)
		FROM payment_entries e JOIN payments p ON p.id = e.payment_id GROUP BY p.currency, e.kind`)
	if err != nil {
		return nil, fmt.Errorf("ledger totals: %w", err)
	}
	defer rows.Close()
	out := map[string]Totals{}
	for rows.Next() {
		var currency, kind string
		var sum int64
		if err := rows.Scan(&currency, &kind, &sum); err != nil {
			return nil, fmt.Errorf("ledger totals: %w", err)
		}
		t := out[currency]
		switch kind {
		case payment.EntryAuthorise:
			t.Authorised = sum
		case payment.EntryCapture:
			t.Captured = sum
		case payment.EntryVoid:
			t.Voided = sum
		case payment.EntryRefund:
			t.Refunded = sum
		}
		out[currency] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger totals: %w", err)
	}
	return out, nil
}
