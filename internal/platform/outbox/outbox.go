// Package outbox is the transactional outbox: a service writes each event in the
// same database transaction as the change it describes, and a Relay publishes the
// committed events to the broker, so that no change is ever without its event.
package outbox

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"folio/internal/platform/broker"
	"folio/internal/platform/logging"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/tracing"
)

//go:embed migrations
var migrations embed.FS

// versionTable keeps the outbox's migrations apart from the service's own, so that
// both can be applied to one database without knowing of each other.
const versionTable = "folio_outbox_version"

// migrateLockID is the PostgreSQL advisory lock that keeps instances starting
// together from migrating at the same time; it differs from goose's default so as
// not to wait on the service's own migrations.
const migrateLockID int64 = 0x666f6c696f6f75 // "folioou"

// Migrate creates the outbox table if the database does not have it yet.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	if err := db.MigrateOwn(ctx, migrations, versionTable, migrateLockID); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// Event is a change to publish.
type Event struct {
	// Type is the subject without its prefix, for example "book.created".
	Type string
	// Aggregate is the id of the resource that changed. Events of one aggregate are
	// published in the order their transactions committed, provided the transaction
	// wrote the resource (locking its row) before adding the event.
	Aggregate string
	// Data is marshalled to JSON as the envelope's "data".
	Data any
}

// Add writes e into the outbox inside tx and returns the new event's id. The event
// exists if and only if tx commits. The request id and trace context (the
// current span) carried by ctx travel with it as message headers.
func Add(ctx context.Context, tx *sql.Tx, e Event) (id string, err error) {
	if e.Type == "" {
		return "", errors.New("outbox add: event type is required")
	}
	uid, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("outbox add: %w", err)
	}
	id = uid.String()
	data, err := json.Marshal(e.Data)
	if err != nil {
		return "", fmt.Errorf("outbox add %s: data: %w", e.Type, err)
	}
	now := time.Now().UTC()
	body, err := json.Marshal(broker.Envelope{ID: id, Type: e.Type, OccurredAt: now, Data: data})
	if err != nil {
		return "", fmt.Errorf("outbox add %s: %w", e.Type, err)
	}
	header := map[string]string{broker.HeaderWrittenAt: now.Format(time.RFC3339Nano)}
	if rid := logging.RequestID(ctx); rid != "" {
		header[broker.HeaderRequestID] = rid
	}
	tracing.Inject(ctx, header)
	headers, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("outbox add %s: headers: %w", e.Type, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (id, event_type, aggregate, body, headers, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, id, e.Type, e.Aggregate, string(body), string(headers), now.UnixNano()); err != nil {
		return "", fmt.Errorf("outbox add %s: %w", e.Type, err)
	}
	return id, nil
}
