// Package sqlstore is the notify service's Store on PostgreSQL or SQLite: the
// subscriptions, the events received for them, and the state of each delivery.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"folio/internal/notify"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/paging"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
)

// Migrations holds the schema of the notify database, one folder per SQL engine.
// The inbox table comes from inbox.Migrate.
//
//go:embed migrations
var Migrations embed.FS

// Store keeps subscriptions, the events they receive and the state of each
// delivery, in SQLite or PostgreSQL.
type Store struct {
	db *sqldb.DB
}

// New returns a store over db, which must be migrated with Migrations and, for
// AddDeliveries, with inbox.Migrate.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

var _ notify.Store = (*Store)(nil)

// CreateSubscription inserts sub, with its secret as given, and the event types it
// asks for, unless max (when positive) subscriptions exist already: then it
// returns notify.ErrFull.
func (s *Store) CreateSubscription(ctx context.Context, sub notify.Subscription, max int) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		if max > 0 {
			if s.db.Dialect == sqldb.Postgres {
				// Two instances creating at once must not both see room for one
				// more; SQLite runs one writer at a time anyway.
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('folio.notify.subscriptions'))`); err != nil {
					return fmt.Errorf("create subscription: %w", err)
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM subscriptions`).Scan(&n); err != nil {
				return fmt.Errorf("create subscription: count: %w", err)
			}
			if n >= max {
				return notify.ErrFull
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO subscriptions (id, url, secret, created_at) VALUES ($1, $2, $3, $4)`,
			sub.ID, sub.URL, sub.Secret, sub.CreatedAt); err != nil {
			return fmt.Errorf("create subscription: %w", err)
		}
		for i, e := range sub.Events {
			if _, err := tx.ExecContext(ctx, `INSERT INTO subscription_events (subscription_id, event_type, position) VALUES ($1, $2, $3)`,
				sub.ID, e, i); err != nil {
				return fmt.Errorf("create subscription: %w", err)
			}
		}
		return idempotency.Save(ctx, tx, sub)
	})
}

// subscriptionsQuery selects the subscriptions of the inner query with one row per
// event type, in id then position order.
const subscriptionsQuery = `SELECT s.id, s.url, s.secret, s.created_at, e.event_type
	FROM (%s) s JOIN subscription_events e ON e.subscription_id = s.id
	ORDER BY s.id, e.position`

func (s *Store) querySubscriptions(ctx context.Context, inner string, args ...any) ([]notify.Subscription, error) {
	rows, err := s.db.QueryContext(ctx, fmt.Sprintf(subscriptionsQuery, inner), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var subs []notify.Subscription
	for rows.Next() {
		var sub notify.Subscription
		var event string
		if err := rows.Scan(&sub.ID, &sub.URL, &sub.Secret, &sub.CreatedAt, &event); err != nil {
			return nil, err
		}
		if n := len(subs); n > 0 && subs[n-1].ID == sub.ID {
			subs[n-1].Events = append(subs[n-1].Events, event)
			continue
		}
		sub.Version = 1
		sub.CreatedAt = sub.CreatedAt.UTC()
		sub.Events = []string{event}
		subs = append(subs, sub)
	}
	return subs, rows.Err()
}

// GetSubscription returns the subscription with id. Errors: NotFound.
func (s *Store) GetSubscription(ctx context.Context, id string) (notify.Subscription, error) {
	subs, err := s.querySubscriptions(ctx, `SELECT id, url, secret, created_at FROM subscriptions WHERE id = $1`, id)
	if err != nil {
		return notify.Subscription{}, fmt.Errorf("get subscription %s: %w", id, err)
	}
	if len(subs) == 0 {
		return notify.Subscription{}, notify.ErrNotFound
	}
	return subs[0], nil
}

// ListSubscriptions returns up to page.Fetch() subscriptions with ids after
// page.After, in id order.
func (s *Store) ListSubscriptions(ctx context.Context, page paging.Request) ([]notify.Subscription, error) {
	subs, err := s.querySubscriptions(ctx,
		`SELECT id, url, secret, created_at FROM subscriptions WHERE id > $1 ORDER BY id LIMIT $2`, afterID(page.After), page.Fetch())
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	return subs, nil
}

// afterID turns the start of the first page into an id below every real one, so
// that both engines run the same statement (PostgreSQL compares UUIDs, not text).
func afterID(after string) string {
	if after == "" {
		return "00000000-0000-0000-0000-000000000000"
	}
	return after
}

// DeleteSubscription removes the subscription and its deliveries. Errors: NotFound.
func (s *Store) DeleteSubscription(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM subscriptions WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete subscription %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete subscription %s: %w", id, err)
	} else if n == 0 {
		return notify.ErrNotFound
	}
	return nil
}

// SealSecrets replaces each secret that is not sealed yet with seal(id, secret),
// and returns how many it replaced. A row changed meanwhile is left alone.
func (s *Store) SealSecrets(ctx context.Context, seal func(id, clear string) string) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, secret FROM subscriptions`)
	if err != nil {
		return 0, fmt.Errorf("seal secrets: %w", err)
	}
	type row struct{ id, secret string }
	var clear []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.secret); err != nil {
			rows.Close()
			return 0, fmt.Errorf("seal secrets: %w", err)
		}
		if !secrets.IsSealed(r.secret) {
			clear = append(clear, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("seal secrets: %w", err)
	}
	sealed := 0
	for _, r := range clear {
		res, err := s.db.ExecContext(ctx, `UPDATE subscriptions SET secret = $1 WHERE id = $2 AND secret = $3`,
			seal(r.id, r.secret), r.id, r.secret)
		if err != nil {
			return sealed, fmt.Errorf("seal the secret of subscription %s: %w", r.id, err)
		}
		if n, err := res.RowsAffected(); err == nil {
			sealed += int(n)
		}
	}
	return sealed, nil
}

// ListDeliveries returns up to page.Fetch() deliveries of the subscription after
// the delivery page.After, oldest first.
func (s *Store) ListDeliveries(ctx context.Context, subscriptionID string, page paging.Request) ([]notify.Delivery, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT d.id, d.event_id, e.type, d.status, d.attempts, d.last_error, d.updated_at
		FROM deliveries d JOIN events e ON e.id = d.event_id
		WHERE d.subscription_id = $1 AND d.id > $2 ORDER BY d.id LIMIT $3`, subscriptionID, afterID(page.After), page.Fetch())
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	var out []notify.Delivery
	for rows.Next() {
		var d notify.Delivery
		var lastError sql.NullString
		var updated int64
		if err := rows.Scan(&d.ID, &d.EventID, &d.Type, &d.Status, &d.Attempts, &lastError, &updated); err != nil {
			return nil, fmt.Errorf("list deliveries: %w", err)
		}
		if lastError.Valid {
			d.LastError = &lastError.String
		}
		d.UpdatedAt = time.UnixMilli(updated).UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return out, nil
}

// AddDeliveries records, in tx, one pending delivery of the event (with its body as
// received) to each subscription that asks for its type, due at now, with
// traceContext (the propagator's fields of the span that handled the event; none
// stores NULL). It returns how many it added; a subscription that already has the
// event gets nothing new. It is the projection of the events package's intake, run
// in the inbox's transaction.
func (s *Store) AddDeliveries(ctx context.Context, tx *sql.Tx, eventID, eventType string, body []byte, traceContext map[string]string, now time.Time) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT subscription_id FROM subscription_events WHERE event_type = $1`, eventType)
	if err != nil {
		return 0, fmt.Errorf("find subscribers: %w", err)
	}
	var subs []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("find subscribers: %w", err)
		}
		subs = append(subs, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("find subscribers: %w", err)
	}
	if len(subs) == 0 {
		return 0, nil // nobody listens: keep no copy of the event
	}
	var tc sql.NullString
	if len(traceContext) > 0 {
		b, err := json.Marshal(traceContext)
		if err != nil {
			return 0, fmt.Errorf("trace context of %s: %w", eventID, err)
		}
		tc = sql.NullString{String: string(b), Valid: true}
	}
	ms := now.UnixMilli()
	if _, err := tx.ExecContext(ctx, `INSERT INTO events (id, type, body, received_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO NOTHING`, eventID, eventType, body, ms); err != nil {
		return 0, fmt.Errorf("store event %s: %w", eventID, err)
	}
	added := 0
	for _, sub := range subs {
		res, err := tx.ExecContext(ctx, `INSERT INTO deliveries (id, subscription_id, event_id, status, attempts, next_attempt_at, updated_at, trace_context)
			VALUES ($1, $2, $3, 'pending', 0, $4, $4, $5) ON CONFLICT (subscription_id, event_id) DO NOTHING`,
			id.New(), sub, eventID, ms, tc)
		if err != nil {
			return 0, fmt.Errorf("add delivery of %s: %w", eventID, err)
		}
		if n, err := res.RowsAffected(); err == nil {
			added += int(n)
		}
	}
	return added, nil
}

// Claim reserves up to limit pending deliveries that are due at now and not leased
// to anyone, until now+lease, and returns them. Two instances never claim the same
// delivery: SQLite runs one writer at a time, and on PostgreSQL rows another
// transaction is claiming are skipped and the lease is checked again on update.
func (s *Store) Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]notify.Claim, error) {
	lock := ""
	if s.db.Dialect == sqldb.Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	const due = `status = 'pending' AND next_attempt_at <= $2 AND (locked_until IS NULL OR locked_until <= $2)`
	rows, err := s.db.QueryContext(ctx, `UPDATE deliveries SET locked_until = $1
		WHERE id IN (SELECT id FROM deliveries WHERE `+due+` ORDER BY next_attempt_at LIMIT $3`+lock+`)
		AND `+due+` RETURNING id`, now.Add(lease).UnixMilli(), now.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("claim deliveries: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	claims := make([]notify.Claim, 0, len(ids))
	for _, id := range ids {
		c := notify.Claim{ID: id}
		var first sql.NullInt64
		var tc sql.NullString
		err := s.db.QueryRowContext(ctx, `SELECT d.subscription_id, d.event_id, e.type, e.body, s.url, s.secret, d.attempts, d.first_attempt_at, d.trace_context
			FROM deliveries d JOIN events e ON e.id = d.event_id JOIN subscriptions s ON s.id = d.subscription_id
			WHERE d.id = $1`, id).Scan(&c.SubscriptionID, &c.EventID, &c.EventType, &c.Body, &c.URL, &c.Secret, &c.Attempts, &first, &tc)
		if errors.Is(err, sql.ErrNoRows) {
			continue // its subscription was deleted meanwhile
		}
		if err != nil {
			return claims, fmt.Errorf("read claimed delivery %s: %w", id, err)
		}
		if first.Valid {
			t := time.UnixMilli(first.Int64)
			c.FirstAttemptAt = &t
		}
		if tc.Valid {
			// A trace context that does not read is only lost telemetry: the
			// delivery goes out all the same, in a trace of its own.
			if err := json.Unmarshal([]byte(tc.String), &c.TraceContext); err != nil {
				c.TraceContext = nil
			}
		}
		claims = append(claims, c)
	}
	return claims, nil
}

// Finish records an attempt of c and ends its lease. It changes nothing if another
// instance recorded an attempt meanwhile (this one's lease had run out).
func (s *Store) Finish(ctx context.Context, c notify.Claim, o notify.Outcome) error {
	_, err := s.db.ExecContext(ctx, `UPDATE deliveries SET status = $1, attempts = attempts + 1, last_error = $2,
		first_attempt_at = COALESCE(first_attempt_at, $3), next_attempt_at = $4, locked_until = NULL, updated_at = $5
		WHERE id = $6 AND attempts = $7`,
		o.Status, o.LastError, o.Started.UnixMilli(), o.Next.UnixMilli(), o.Finished.UnixMilli(), c.ID, c.Attempts)
	if err != nil {
		return fmt.Errorf("record delivery %s: %w", c.ID, err)
	}
	return nil
}

// Release ends the lease of c without counting an attempt, so that another worker
// can send it at once (this one is shutting down).
func (s *Store) Release(ctx context.Context, c notify.Claim) error {
	_, err := s.db.ExecContext(ctx, `UPDATE deliveries SET locked_until = NULL WHERE id = $1 AND attempts = $2`, c.ID, c.Attempts)
	if err != nil {
		return fmt.Errorf("release delivery %s: %w", c.ID, err)
	}
	return nil
}

// Purge removes finished deliveries last changed before the cutoff, and the events
// no delivery needs any more. It returns how many deliveries it removed.
func (s *Store) Purge(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM deliveries WHERE status <> 'pending' AND updated_at < $1`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("purge deliveries: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM events WHERE received_at < $1
		AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)`, before.UnixMilli()); err != nil {
		return n, fmt.Errorf("purge events: %w", err)
	}
	return n, nil
}
