package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"folio/internal/inventory"
	"folio/internal/platform/outbox"
	"folio/internal/platform/sqldb"
)

const reservationColumns = `order_id, state, items, total_amount, currency, expires_at, reason, book_id, commit_failure`

func scanReservation(row interface{ Scan(...any) error }) (inventory.Reservation, error) {
	var r inventory.Reservation
	var items string
	var expires int64
	if err := row.Scan(&r.OrderID, &r.State, &items, &r.Total.Amount, &r.Total.Currency, &expires, &r.Reason, &r.BookID, &r.CommitFailure); err != nil {
		return r, err
	}
	r.ExpiresAt = time.UnixMicro(expires).UTC()
	if err := json.Unmarshal([]byte(items), &r.Items); err != nil {
		return r, fmt.Errorf("items of reservation %s: %w", r.OrderID, err)
	}
	return r, nil
}

// Reservation returns the reservation of the order. Errors: sql.ErrNoRows (wrapped)
// when the order has none.
func (s *Store) Reservation(ctx context.Context, orderID string) (inventory.Reservation, error) {
	r, err := scanReservation(s.db.QueryRowContext(ctx, `SELECT `+reservationColumns+` FROM reservations WHERE order_id = $1`, orderID))
	if err != nil {
		return r, fmt.Errorf("reservation of %s: %w", orderID, err)
	}
	return r, nil
}

// forUpdate locks the rows a SELECT reads until the transaction ends, on
// PostgreSQL; SQLite has no row locks and needs none: a write transaction holds
// the database's one write lock from BEGIN (sqldb opens them IMMEDIATE).
func (s *Store) forUpdate() string {
	if s.db.Dialect == sqldb.Postgres {
		return ` FOR UPDATE`
	}
	return ""
}

// Apply applies the command c in tx, the transaction of the command's inbox
// record, and adds its reply to the outbox in tx (docs/orders.md). Each order's
// reservation row is the record of what its commands did: a command applied
// before is answered again as it was, and a command that comes after one it
// should have preceded gets the reply of the state it finds (a reserve after a
// release is rejected, reason released).
func (s *Store) Apply(ctx context.Context, tx *sql.Tx, c inventory.Command) (inventory.Outcome, error) {
	r, fresh, err := s.claim(ctx, tx, c.OrderID)
	if err != nil {
		return inventory.Outcome{}, err
	}
	var o inventory.Outcome
	switch c.Type {
	case inventory.CommandReserve:
		o, err = s.reserve(ctx, tx, r, fresh, c)
	case inventory.CommandRelease:
		o, err = s.release(ctx, tx, r, fresh)
	case inventory.CommandCommit:
		o, err = s.commit(ctx, tx, r, fresh)
	case inventory.CommandRestock:
		o, err = s.restock(ctx, tx, r, fresh)
	default:
		return inventory.Outcome{}, fmt.Errorf("apply %q: not a stock command", c.Type)
	}
	if err != nil {
		return inventory.Outcome{}, fmt.Errorf("apply %s of order %s: %w", c.Type, c.OrderID, err)
	}
	if err := outbox.AddEvent(ctx, tx, o.Reply.Type, c.OrderID, o.Reply.Data); err != nil {
		return inventory.Outcome{}, err
	}
	return o, nil
}

// claim returns the reservation of the order, locked, and fresh=true when it had
// none and claim wrote it: a tombstone (state released, nothing held), which the
// command then makes what it must. Two deliveries of commands of one order
// meeting here take turns: PostgreSQL makes the second insert wait for the first
// one's transaction, then do nothing, and the second reads the row as the first
// left it.
func (s *Store) claim(ctx context.Context, tx *sql.Tx, orderID string) (inventory.Reservation, bool, error) {
	now := time.Now().UnixMicro()
	res, err := tx.ExecContext(ctx, `INSERT INTO reservations (order_id, state, items, total_amount, currency, expires_at, updated_at)
		VALUES ($1, $2, '[]', 0, '', 0, $3) ON CONFLICT (order_id) DO NOTHING`, orderID, inventory.StateReleased, now)
	if err != nil {
		return inventory.Reservation{}, false, fmt.Errorf("claim reservation %s: %w", orderID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return inventory.Reservation{}, false, fmt.Errorf("claim reservation %s: %w", orderID, err)
	}
	if n == 1 {
		return inventory.Reservation{OrderID: orderID, State: inventory.StateReleased}, true, nil
	}
	r, err := scanReservation(tx.QueryRowContext(ctx, `SELECT `+reservationColumns+` FROM reservations WHERE order_id = $1`+s.forUpdate(), orderID))
	if err != nil {
		return inventory.Reservation{}, false, fmt.Errorf("read reservation %s: %w", orderID, err)
	}
	return r, false, nil
}

// reserve holds every line of c, all or none, in a fresh reservation; a reserve
// applied before is answered again from the reservation it left.
func (s *Store) reserve(ctx context.Context, tx *sql.Tx, r inventory.Reservation, fresh bool, c inventory.Command) (inventory.Outcome, error) {
	if !fresh {
		switch r.State {
		case inventory.StateReserved, inventory.StateCommitted, inventory.StateRestocked:
			return inventory.Outcome{Reply: inventory.ReservedReply(r)}, nil
		case inventory.StateRejected:
			return inventory.Outcome{Reply: inventory.RejectedReply(r.OrderID, r.Reason, r.BookID)}, nil
		default: // released (a tombstone, or freed), expired
			return inventory.Outcome{Reply: inventory.RejectedReply(r.OrderID, inventory.ReasonReleased, "")}, nil
		}
	}
	lines, total, reason, bookID, err := s.hold(ctx, tx, c.Items)
	if err != nil {
		return inventory.Outcome{}, err
	}
	now := time.Now().UnixMicro()
	if reason != "" {
		_, err := tx.ExecContext(ctx, `UPDATE reservations SET state = $2, reason = $3, book_id = $4, expires_at = $5, updated_at = $6
			WHERE order_id = $1`, c.OrderID, inventory.StateRejected, reason, bookID, c.ExpiresAt.UnixMicro(), now)
		if err != nil {
			return inventory.Outcome{}, fmt.Errorf("record the rejection: %w", err)
		}
		return inventory.Outcome{Reply: inventory.RejectedReply(c.OrderID, reason, bookID), Changed: true}, nil
	}
	items, err := json.Marshal(lines)
	if err != nil {
		return inventory.Outcome{}, err
	}
	r = inventory.Reservation{OrderID: c.OrderID, State: inventory.StateReserved, Items: lines, Total: total, ExpiresAt: c.ExpiresAt}
	_, err = tx.ExecContext(ctx, `UPDATE reservations SET state = $2, items = $3, total_amount = $4, currency = $5, expires_at = $6, updated_at = $7
		WHERE order_id = $1`, c.OrderID, inventory.StateReserved, string(items), total.Amount, total.Currency, c.ExpiresAt.UnixMicro(), now)
	if err != nil {
		return inventory.Outcome{}, fmt.Errorf("record the reservation: %w", err)
	}
	return inventory.Outcome{Reply: inventory.ReservedReply(r), Changed: true}, nil
}

// hold takes the copies of every line, in book id order, each with an update that
// holds them only while enough are available and the book is for sale; it returns
// the lines priced. When one cannot be held, or the prices are in several
// currencies, what was held is rolled back (to a savepoint: the transaction goes
// on to record the rejection and its reply with the command's inbox record) and
// reason says why, bookID which book when one is the reason.
func (s *Store) hold(ctx context.Context, tx *sql.Tx, lines []inventory.Line) (priced []inventory.PricedLine, total inventory.Money, reason, bookID string, err error) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT inventory_hold`); err != nil {
		return nil, total, "", "", fmt.Errorf("hold: %w", err)
	}
	prices := make([]inventory.Money, len(lines))
	for i, l := range lines {
		err := tx.QueryRowContext(ctx, `UPDATE stock SET reserved = reserved + $1
			WHERE book_id = $2 AND quantity - reserved >= $1 AND NOT deleted
			RETURNING price_amount, price_currency`, l.Quantity, l.BookID).Scan(&prices[i].Amount, &prices[i].Currency)
		if errors.Is(err, sql.ErrNoRows) {
			reason, err = s.whyNot(ctx, tx, l.BookID)
			if err != nil {
				return nil, total, "", "", err
			}
			bookID = l.BookID
			break
		}
		if err != nil {
			return nil, total, "", "", fmt.Errorf("hold %s: %w", l.BookID, err)
		}
	}
	if reason == "" {
		priced, total, reason = inventory.Priced(lines, prices)
	}
	if reason != "" {
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT inventory_hold`); err != nil {
			return nil, total, "", "", fmt.Errorf("hold: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT inventory_hold`); err != nil {
		return nil, total, "", "", fmt.Errorf("hold: %w", err)
	}
	if reason != "" {
		return nil, inventory.Money{}, reason, bookID, nil
	}
	return priced, total, "", "", nil
}

// whyNot tells why the copies of a book could not be held: it has no stock or was
// deleted (not for sale), or too few are available.
func (s *Store) whyNot(ctx context.Context, tx *sql.Tx, bookID string) (string, error) {
	var deleted bool
	err := tx.QueryRowContext(ctx, `SELECT deleted FROM stock WHERE book_id = $1`, bookID).Scan(&deleted)
	switch {
	case errors.Is(err, sql.ErrNoRows), err == nil && deleted:
		return inventory.ReasonNotForSale, nil
	case err != nil:
		return "", fmt.Errorf("stock of %s: %w", bookID, err)
	}
	return inventory.ReasonOutOfStock, nil
}

// release frees a reservation: its held copies, or the copies it sold (a commit
// whose answer came too late for the order, which gave up on it), and leaves it
// released; with no reservation, the tombstone claim wrote refuses a later reserve.
func (s *Store) release(ctx context.Context, tx *sql.Tx, r inventory.Reservation, fresh bool) (inventory.Outcome, error) {
	if fresh {
		return inventory.Outcome{Reply: inventory.ReleasedReply(r.OrderID, inventory.ReasonReleased), Changed: true}, nil
	}
	var err error
	switch r.State {
	case inventory.StateReserved:
		err = s.free(ctx, tx, r.Items)
	case inventory.StateCommitted:
		err = s.putBack(ctx, tx, r.Items)
	case inventory.StateExpired:
		return inventory.Outcome{Reply: inventory.ReleasedReply(r.OrderID, inventory.ReasonExpired)}, nil
	default: // released, rejected, restocked: nothing is held
		return inventory.Outcome{Reply: inventory.ReleasedReply(r.OrderID, inventory.ReasonReleased)}, nil
	}
	if err != nil {
		return inventory.Outcome{}, err
	}
	if err := s.setState(ctx, tx, r.OrderID, inventory.StateReleased); err != nil {
		return inventory.Outcome{}, err
	}
	return inventory.Outcome{Reply: inventory.ReleasedReply(r.OrderID, inventory.ReasonReleased), Changed: true}, nil
}

// commit turns a reservation into a sale. An expired one takes its copies again
// when they are all available, else the commit fails for good: a later commit of
// the order fails the same way, so that the sale the order gave up on (it
// refunds) is never made after all.
func (s *Store) commit(ctx context.Context, tx *sql.Tx, r inventory.Reservation, fresh bool) (inventory.Outcome, error) {
	failed := func(reason string) (inventory.Outcome, error) {
		_, err := tx.ExecContext(ctx, `UPDATE reservations SET commit_failure = $2, updated_at = $3 WHERE order_id = $1`,
			r.OrderID, reason, time.Now().UnixMicro())
		if err != nil {
			return inventory.Outcome{}, fmt.Errorf("record the failed commit: %w", err)
		}
		return inventory.Outcome{Reply: inventory.CommitFailedReply(r.OrderID, reason), Changed: true}, nil
	}
	switch {
	case fresh:
		return failed(inventory.ReasonUnknownOrder)
	case r.CommitFailure != "":
		return inventory.Outcome{Reply: inventory.CommitFailedReply(r.OrderID, r.CommitFailure)}, nil
	case r.State == inventory.StateCommitted, r.State == inventory.StateRestocked:
		return inventory.Outcome{Reply: inventory.CommittedReply(r.OrderID)}, nil
	case r.State == inventory.StateReleased:
		return inventory.Outcome{Reply: inventory.CommitFailedReply(r.OrderID, inventory.ReasonReleased)}, nil
	case r.State == inventory.StateRejected:
		return inventory.Outcome{Reply: inventory.CommitFailedReply(r.OrderID, inventory.ReasonUnknownOrder)}, nil
	case r.State == inventory.StateReserved:
		for _, l := range r.Items {
			if _, err := tx.ExecContext(ctx, `UPDATE stock SET quantity = quantity - $1, reserved = reserved - $1,
				version = version + 1, updated_at = $3 WHERE book_id = $2`, l.Quantity, l.BookID, stockChanged()); err != nil {
				return inventory.Outcome{}, fmt.Errorf("sell %s: %w", l.BookID, err)
			}
		}
	case r.State == inventory.StateExpired:
		ok, err := s.retake(ctx, tx, r.Items)
		if err != nil {
			return inventory.Outcome{}, err
		}
		if !ok {
			return failed(inventory.ReasonExpired)
		}
	default:
		return inventory.Outcome{}, fmt.Errorf("reservation %s in unknown state %q", r.OrderID, r.State)
	}
	if err := s.setState(ctx, tx, r.OrderID, inventory.StateCommitted); err != nil {
		return inventory.Outcome{}, err
	}
	return inventory.Outcome{Reply: inventory.CommittedReply(r.OrderID), Changed: true}, nil
}

// retake sells the lines of an expired reservation if every one is available,
// else sells none (rolled back to a savepoint) and returns false.
func (s *Store) retake(ctx context.Context, tx *sql.Tx, lines []inventory.PricedLine) (bool, error) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT inventory_retake`); err != nil {
		return false, fmt.Errorf("retake: %w", err)
	}
	ok := true
	for _, l := range lines {
		res, err := tx.ExecContext(ctx, `UPDATE stock SET quantity = quantity - $1, version = version + 1, updated_at = $3
			WHERE book_id = $2 AND quantity - reserved >= $1 AND NOT deleted`, l.Quantity, l.BookID, stockChanged())
		if err != nil {
			return false, fmt.Errorf("retake %s: %w", l.BookID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, fmt.Errorf("retake %s: %w", l.BookID, err)
		} else if n == 0 {
			ok = false
			break
		}
	}
	if !ok {
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT inventory_retake`); err != nil {
			return false, fmt.Errorf("retake: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT inventory_retake`); err != nil {
		return false, fmt.Errorf("retake: %w", err)
	}
	return ok, nil
}

// restock puts the copies of a sale back. A reservation not yet sold is freed (and
// left released, so that a late commit fails rather than sells), and with none a
// tombstone is left: the order is cancelled either way.
func (s *Store) restock(ctx context.Context, tx *sql.Tx, r inventory.Reservation, fresh bool) (inventory.Outcome, error) {
	reply := inventory.RestockedReply(r.OrderID)
	if fresh {
		return inventory.Outcome{Reply: reply, Changed: true}, nil
	}
	next := inventory.StateReleased
	switch r.State {
	case inventory.StateCommitted:
		if err := s.putBack(ctx, tx, r.Items); err != nil {
			return inventory.Outcome{}, err
		}
		next = inventory.StateRestocked
	case inventory.StateReserved:
		if err := s.free(ctx, tx, r.Items); err != nil {
			return inventory.Outcome{}, err
		}
	case inventory.StateExpired:
	default: // restocked, released, rejected
		return inventory.Outcome{Reply: reply}, nil
	}
	if err := s.setState(ctx, tx, r.OrderID, next); err != nil {
		return inventory.Outcome{}, err
	}
	return inventory.Outcome{Reply: reply, Changed: true}, nil
}

// free lets go of the copies the lines hold.
func (s *Store) free(ctx context.Context, tx *sql.Tx, lines []inventory.PricedLine) error {
	for _, l := range lines {
		if _, err := tx.ExecContext(ctx, `UPDATE stock SET reserved = reserved - $1 WHERE book_id = $2`, l.Quantity, l.BookID); err != nil {
			return fmt.Errorf("free %s: %w", l.BookID, err)
		}
	}
	return nil
}

// stockChanged is the updated_at of stock whose quantity a sale or a restock
// changed. Those changes take a version too, as an editor's do: an editor who
// sets the quantity from a read older than a sale gets 412, rather than undoing
// the sale. Reservations change only reserved and available, and no version.
func stockChanged() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// putBack returns the copies the lines sold to the stock on hand.
func (s *Store) putBack(ctx context.Context, tx *sql.Tx, lines []inventory.PricedLine) error {
	for _, l := range lines {
		if _, err := tx.ExecContext(ctx, `UPDATE stock SET quantity = quantity + $1, version = version + 1, updated_at = $3
			WHERE book_id = $2`, l.Quantity, l.BookID, stockChanged()); err != nil {
			return fmt.Errorf("put back %s: %w", l.BookID, err)
		}
	}
	return nil
}

func (s *Store) setState(ctx context.Context, tx *sql.Tx, orderID, state string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE reservations SET state = $2, updated_at = $3 WHERE order_id = $1`,
		orderID, state, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("reservation %s to %s: %w", orderID, state, err)
	}
	return nil
}

// ExpireDue frees up to limit reservations whose expiry is not after now, each in
// a transaction of its own with its reply (inventory.released, reason expired),
// and returns those it freed. The state changes only from reserved, and only past
// the expiry, in the update itself: a reservation that another instance's sweep,
// or a command, changed since it was listed is left alone.
func (s *Store) ExpireDue(ctx context.Context, now time.Time, limit int) ([]inventory.Reservation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT order_id FROM reservations WHERE state = $1 AND expires_at <= $2
		ORDER BY expires_at LIMIT $3`, inventory.StateReserved, now.UnixMicro(), limit)
	if err != nil {
		return nil, fmt.Errorf("due reservations: %w", err)
	}
	var due []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("due reservations: %w", err)
		}
		due = append(due, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due reservations: %w", err)
	}
	var freed []inventory.Reservation
	for _, id := range due {
		var r inventory.Reservation
		err := s.w.Write(ctx, func(tx *sql.Tx) error {
			var err error
			r, err = scanReservation(tx.QueryRowContext(ctx, `UPDATE reservations SET state = $2, updated_at = $3
				WHERE order_id = $1 AND state = $4 AND expires_at <= $5 RETURNING `+reservationColumns,
				id, inventory.StateExpired, time.Now().UnixMicro(), inventory.StateReserved, now.UnixMicro()))
			if err != nil {
				return err
			}
			if err := s.free(ctx, tx, r.Items); err != nil {
				return err
			}
			reply := inventory.ReleasedReply(id, inventory.ReasonExpired)
			return outbox.AddEvent(ctx, tx, reply.Type, id, reply.Data)
		})
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return freed, fmt.Errorf("expire reservation %s: %w", id, err)
		}
		freed = append(freed, r)
	}
	return freed, nil
}
