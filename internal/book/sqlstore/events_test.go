package sqlstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"folio/internal/book"
	"folio/internal/book/booktest"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestStoreEvents checks that every committed write adds exactly one event, with the
// book as data, and that a write that fails adds none and wakes nobody.
func TestStoreEvents(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		outboxtest.Migrate(t, db)
		notified := 0
		s := sqlstore.New(outbox.NewWriter(db, func() { notified++ }))
		authorA, authorB := booktest.AuthorA, booktest.AuthorB

		first := newBook("First", authorA, "events")
		first.ISBN = ptr("9780306406157")
		other := newBook("Other", authorA, "events")
		dupISBN := newBook("Same ISBN", authorA, "events")
		dupISBN.ISBN = first.ISBN
		changed := first
		changed.Title, changed.AuthorID, changed.Version, changed.UpdatedAt = "Changed", authorB, 2, first.UpdatedAt.Add(time.Second)
		stale := changed
		stale.Title = "Lost update"
		missing := newBook("Missing", authorA, "events")
		missing.Version = 2
		otherToTakenISBN := other
		otherToTakenISBN.ISBN, otherToTakenISBN.Version = first.ISBN, 2

		tests := []struct {
			name      string
			write     func() error
			wantErr   func(error) bool // nil: the write succeeds
			wantType  string           // the event it adds; "" when it adds none
			wantAggr  string
			wantData  any
			wantCount int // events in the outbox after the write
		}{
			{"create", func() error { return s.Create(ctx, first) }, nil,
				book.EventBookCreated, first.ID, first, 1},
			{"create another", func() error { return s.Create(ctx, other) }, nil,
				book.EventBookCreated, other.ID, other, 2},
			{"create with a taken isbn", func() error { return s.Create(ctx, dupISBN) }, isKind(fault.Conflict),
				"", "", nil, 2},
			{"create an existing id", func() error { return s.Create(ctx, other) }, anyError,
				"", "", nil, 2},
			{"update", func() error { return s.Update(ctx, changed) }, nil,
				book.EventBookUpdated, first.ID, changed, 3},
			{"update at a stale version", func() error { return s.Update(ctx, stale) }, isErr(book.ErrStale),
				"", "", nil, 3},
			{"update of a missing book", func() error { return s.Update(ctx, missing) }, isKind(fault.NotFound),
				"", "", nil, 3},
			{"update to a taken isbn", func() error { return s.Update(ctx, otherToTakenISBN) }, isKind(fault.Conflict),
				"", "", nil, 3},
			{"delete at a stale version", func() error { return s.Delete(ctx, first.ID, 1) }, isErr(book.ErrStale),
				"", "", nil, 3},
			{"delete", func() error { return s.Delete(ctx, first.ID, 2) }, nil,
				book.EventBookDeleted, first.ID, map[string]string{"id": first.ID}, 4},
			{"delete again", func() error { return s.Delete(ctx, first.ID, 2) }, isKind(fault.NotFound),
				"", "", nil, 4},
			{"delete of a missing book", func() error { return s.Delete(ctx, id.New(), 1) }, isKind(fault.NotFound),
				"", "", nil, 4},
		}
		for _, tt := range tests {
			before := notified
			err := tt.write()
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("%s: %v", tt.name, err)
			case tt.wantErr != nil && !tt.wantErr(err):
				t.Fatalf("%s: got error %v, want another", tt.name, err)
			}
			events, _ := outboxtest.Events(t, db, 0)
			if len(events) != tt.wantCount {
				t.Fatalf("%s: got %d events in the outbox, want %d: %+v", tt.name, len(events), tt.wantCount, events)
			}
			if tt.wantType == "" {
				if notified != before {
					t.Errorf("%s: the relay was woken after a failed write", tt.name)
				}
				continue
			}
			if notified != before+1 {
				t.Errorf("%s: the relay was woken %d times, want once", tt.name, notified-before)
			}
			last := events[len(events)-1]
			env := last.Envelope
			if env.Type != tt.wantType || last.Aggregate != tt.wantAggr || !id.Valid(env.ID) || env.OccurredAt.IsZero() {
				t.Errorf("%s: got event %s %q about %s at %v, want a %s about %s", tt.name, env.ID, env.Type, last.Aggregate, env.OccurredAt, tt.wantType, tt.wantAggr)
			}
			want, _ := json.Marshal(tt.wantData)
			if !outboxtest.SameJSON(t, env.Data, want) {
				t.Errorf("%s: got data %s, want %s", tt.name, env.Data, want)
			}
		}
	})
}

func anyError(err error) bool { return err != nil }

func isKind(k fault.Kind) func(error) bool {
	return func(err error) bool { return fault.KindOf(err) == k }
}

func isErr(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}
