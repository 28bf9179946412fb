package sqlstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"folio/internal/author"
	"folio/internal/author/sqlstore"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

func isKind(k fault.Kind) func(error) bool {
	return func(err error) bool { return fault.KindOf(err) == k }
}

// TestEveryCommittedWriteAddsOneEvent checks that every committed write adds exactly
// one event, with the author as data, and wakes the relay once; that a write that
// fails adds none and wakes nobody; and that an author with books cannot be deleted.
func TestEveryCommittedWriteAddsOneEvent(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		outboxtest.Migrate(t, db)
		notified := 0
		s := sqlstore.New(outbox.NewWriter(db, func() { notified++ }))
		book := func(c author.BookChange) error {
			return db.InTx(ctx, func(tx *sql.Tx) error { return s.ApplyBookChange(ctx, tx, c) })
		}
		now := time.Now().UTC().Truncate(time.Microsecond)

		a := newAuthor("Events", now)
		bio := "bio"
		a.Bio = &bio
		changed := a
		changed.Name, changed.Version, changed.UpdatedAt = "Changed", 2, now.Add(time.Second)
		stale := changed
		stale.Name = "Lost update"
		missing := newAuthor("Missing", now)
		missing.Version = 2
		bookID := id.New()

		tests := []struct {
			name     string
			write    func() error
			wantErr  func(error) bool // nil: the write succeeds
			wantType string           // the event it adds; "" when it adds none
			wantData any
		}{
			{"create", func() error { _, err := s.Create(ctx, a); return err }, nil,
				author.EventAuthorCreated, a},
			{"create an existing id", func() error { _, err := s.Create(ctx, a); return err }, func(err error) bool { return err != nil },
				"", nil},
			{"update", func() error { _, err := s.Update(ctx, changed); return err }, nil,
				author.EventAuthorUpdated, changed},
			{"update at a stale version", func() error { _, err := s.Update(ctx, stale); return err }, func(err error) bool { return errors.Is(err, author.ErrStale) },
				"", nil},
			{"update of a missing author", func() error { _, err := s.Update(ctx, missing); return err }, isKind(fault.NotFound),
				"", nil},
			{"a book arrives", func() error { return book(author.BookChange{BookID: bookID, AuthorID: a.ID, Version: 1}) }, nil,
				"", nil},
			{"update counts the book", func() error {
				changed.Version, changed.BookCount = 3, 1
				_, err := s.Update(ctx, changed)
				return err
			}, nil, author.EventAuthorUpdated, &changed},
			{"delete of an author with a book", func() error { return s.Delete(ctx, a.ID, 3) }, isKind(fault.Conflict),
				"", nil},
			{"the book goes", func() error { return book(author.BookChange{BookID: bookID, Deleted: true}) }, nil,
				"", nil},
			{"delete at a stale version", func() error { return s.Delete(ctx, a.ID, 2) }, func(err error) bool { return errors.Is(err, author.ErrStale) },
				"", nil},
			{"delete", func() error { return s.Delete(ctx, a.ID, 3) }, nil,
				author.EventAuthorDeleted, map[string]string{"id": a.ID}},
			{"delete again", func() error { return s.Delete(ctx, a.ID, 3) }, isKind(fault.NotFound),
				"", nil},
		}
		var seq int64
		for _, tt := range tests {
			before := notified
			err := tt.write()
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("%s: %v", tt.name, err)
			case tt.wantErr != nil && !tt.wantErr(err):
				t.Fatalf("%s: got error %v, want another", tt.name, err)
			}
			var events []outboxtest.Event
			events, seq = outboxtest.Events(t, db, seq)
			if tt.wantType == "" {
				if len(events) != 0 || notified != before {
					t.Errorf("%s: got events %+v and %d wake-ups, want none", tt.name, events, notified-before)
				}
				continue
			}
			if len(events) != 1 || notified != before+1 {
				t.Fatalf("%s: got events %+v and %d wake-ups, want one of each", tt.name, events, notified-before)
			}
			env := events[0].Envelope
			if env.Type != tt.wantType || events[0].Aggregate != a.ID || !id.Valid(env.ID) {
				t.Errorf("%s: got event %s %q about %s, want a %s about %s", tt.name, env.ID, env.Type, events[0].Aggregate, tt.wantType, a.ID)
			}
			want, _ := json.Marshal(tt.wantData)
			if !outboxtest.SameJSON(t, env.Data, want) {
				t.Errorf("%s: got data %s, want %s", tt.name, env.Data, want)
			}
		}
		if _, err := s.Get(ctx, a.ID); fault.KindOf(err) != fault.NotFound {
			t.Errorf("after the delete: got %v, want NotFound", err)
		}
	})
}
