package book_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"testing"
	"time"

	"folio/internal/book"
	"folio/internal/platform/broker"
	"folio/internal/platform/fault"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/rest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestStoreEvents checks that every committed write adds exactly one event, with the
// book as data, and that a write that fails adds none and wakes nobody.
func TestStoreEvents(t *testing.T) {
	sqldbtest.ForEach(t, book.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		outboxtest.Migrate(t, db)
		notified := 0
		s := book.NewSQLStore(db, book.WithNotify(func() { notified++ }))

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
			{"delete of a missing book", func() error { return s.Delete(ctx, rest.NewID(), 1) }, isKind(fault.NotFound),
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
			if env.Type != tt.wantType || last.Aggregate != tt.wantAggr || !rest.ValidID(env.ID) || env.OccurredAt.IsZero() {
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

// TestEventDataIsTheAnswer checks that an event's data is the very document the API
// answered for the change.
func TestEventDataIsTheAnswer(t *testing.T) {
	db := sqldbtest.Open(t, "sqlite:"+t.TempDir()+"/events.db", book.Migrations)
	s := newServer(t, db)
	created := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("answers", "isbn", "0-306-40615-2", "published_year", 1999)))
	b := created.book(t)
	put := s.do(t, http.MethodPut, "/books/"+b.ID, mustJSON(t, fields("answers", "title", "Replaced")))
	patch := s.do(t, http.MethodPatch, "/books/"+b.ID, `{"genre":"patched"}`)
	del := s.do(t, http.MethodDelete, "/books/"+b.ID, "")
	for i, r := range []response{created, put, patch} {
		if r.Status >= 300 {
			t.Fatalf("write %d: got %d %s", i, r.Status, r.Body)
		}
	}
	if del.Status != http.StatusNoContent {
		t.Fatalf("delete: got %d %s", del.Status, del.Body)
	}
	events, _ := outboxtest.Events(t, db, 0)
	want := []struct {
		typ  string
		data []byte
	}{
		{book.EventBookCreated, created.Body},
		{book.EventBookUpdated, put.Body},
		{book.EventBookUpdated, patch.Body},
		{book.EventBookDeleted, []byte(`{"id":"` + b.ID + `"}`)},
	}
	if len(events) != len(want) {
		t.Fatalf("got %d events, want %d", len(events), len(want))
	}
	for i, w := range want {
		env := events[i].Envelope
		if env.Type != w.typ || !outboxtest.SameJSON(t, env.Data, w.data) {
			t.Errorf("event %d: got %s %s, want %s %s", i, env.Type, env.Data, w.typ, w.data)
		}
	}
}

// authorEvent returns the message of an author event with a new event id; data is
// the author, or {"id"} for a delete, as the author service publishes them.
func authorEvent(typ, authorID string) broker.Message {
	data := map[string]any{"id": authorID}
	if typ != book.EventAuthorDeleted {
		data = map[string]any{"id": authorID, "name": "N", "bio": nil, "birth_year": nil, "book_count": 0,
			"version": 1, "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z"}
	}
	raw, _ := json.Marshal(data)
	return envelopeMessage(broker.Envelope{ID: rest.NewID(), Type: typ, OccurredAt: time.Now().UTC(), Data: raw})
}

func envelopeMessage(env broker.Envelope) broker.Message {
	body, _ := json.Marshal(env)
	return broker.Message{Subject: "folio." + env.Type, ID: env.ID, Body: body}
}

// TestAuthorEvents checks the rules by which author events keep the known author ids:
// known from created or updated, unknown for good from deleted, whatever the order
// and however often they arrive, and what the directory then asks the author service.
func TestAuthorEvents(t *testing.T) {
	const (
		created = book.EventAuthorCreated
		updated = book.EventAuthorUpdated
		deleted = book.EventAuthorDeleted
		// confirmed stands for the author service confirming the author, which the
		// directory caches, at that point of the sequence.
		confirmed = "confirmed"
		// again redelivers the previous message.
		again = "again"
	)
	tests := []struct {
		name  string
		steps []string
		// wantExists is the directory's answer when the author service, if asked,
		// says the author exists; wantAsk is whether it asks.
		wantExists, wantAsk bool
	}{
		{"unseen", nil, true, true},
		{"created", []string{created}, true, false},
		{"updated only", []string{updated}, true, false},
		{"created twice", []string{created, again}, true, false},
		{"created then deleted", []string{created, deleted}, false, false},
		{"deleted before created", []string{deleted, created}, false, false},
		{"updated after deleted", []string{created, deleted, updated}, false, false},
		{"deleted delivered twice", []string{created, deleted, again}, false, false},
		{"confirmed then deleted", []string{confirmed, deleted}, false, false},
		{"deleted then a stale confirmation", []string{created, deleted, confirmed}, false, false},
	}
	sqldbtest.ForEach(t, book.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		outboxtest.Migrate(t, db)
		s := book.NewSQLStore(db)
		handle := book.NewEventHandler(s, quiet)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				id := rest.NewID()
				var last broker.Message
				for _, step := range tt.steps {
					switch step {
					case confirmed:
						if err := s.RememberAuthor(ctx, id); err != nil {
							t.Fatal(err)
						}
						continue
					case again:
					default:
						last = authorEvent(step, id)
					}
					if err := handle(ctx, last); err != nil {
						t.Fatalf("%s: %v", step, err)
					}
				}
				wantKnown := tt.wantExists && !tt.wantAsk
				if known, err := s.KnownAuthor(ctx, id); err != nil || known != wantKnown {
					t.Errorf("KnownAuthor: got %v, %v, want %v", known, err, wantKnown)
				}
				remote := &countingChecker{exists: map[string]bool{id: true}}
				dir := book.NewAuthorDirectory(s, remote, quiet)
				ok, err := dir.Exists(ctx, id)
				if err != nil || ok != tt.wantExists {
					t.Errorf("Exists: got %v, %v, want %v", ok, err, tt.wantExists)
				}
				if asked := remote.count(id) > 0; asked != tt.wantAsk {
					t.Errorf("asked the author service: %v, want %v", asked, tt.wantAsk)
				}
			})
		}

		t.Run("an event id is applied once", func(t *testing.T) {
			// The same event id carrying another author (which no real publisher sends)
			// shows that the inbox, not the data, decides.
			first, second := rest.NewID(), rest.NewID()
			m := authorEvent(created, first)
			var env broker.Envelope
			_ = json.Unmarshal(m.Body, &env)
			env.Data, _ = json.Marshal(map[string]string{"id": second})
			for _, msg := range []broker.Message{m, envelopeMessage(env)} {
				if err := handle(ctx, msg); err != nil {
					t.Fatal(err)
				}
			}
			if known, _ := s.KnownAuthor(ctx, second); known {
				t.Error("a second message with the same event id was applied")
			}
		})

		t.Run("malformed messages", func(t *testing.T) {
			for _, tt := range malformed(book.EventAuthorCreated) {
				t.Run(tt.name, func(t *testing.T) {
					if err := handle(ctx, broker.Message{Subject: "folio.author.created", ID: "m", Body: []byte(tt.body)}); err == nil {
						t.Error("got nil, want an error so that the broker retries and dead-letters it")
					}
				})
			}
		})

		t.Run("other event types are left alone", func(t *testing.T) {
			id := rest.NewID()
			m := envelopeMessage(broker.Envelope{ID: rest.NewID(), Type: "book.created", Data: json.RawMessage(`{"id":"` + id + `"}`)})
			if err := handle(ctx, m); err != nil {
				t.Errorf("got %v, want nil", err)
			}
			if known, _ := s.KnownAuthor(ctx, id); known {
				t.Error("a book event made an author known")
			}
		})
	})
}

// malformed lists bodies no consumer can apply, for an event of type typ.
func malformed(typ string) []struct{ name, body string } {
	id := rest.NewID()
	env := func(fields string) string {
		return `{"id":"` + rest.NewID() + `","occurred_at":"2025-01-02T03:04:05Z"` + fields + `}`
	}
	return []struct{ name, body string }{
		{"not json", `{"id":`},
		{"not an object", `[]`},
		{"no event id", `{"type":"` + typ + `","data":{"id":"` + id + `"}}`},
		{"no type", env(`,"data":{"id":"` + id + `"}`)},
		{"no data", env(`,"type":"` + typ + `"`)},
		{"data not an object", env(`,"type":"` + typ + `","data":"` + id + `"`)},
		{"no id in data", env(`,"type":"` + typ + `","data":{}`)},
		{"id not an id", env(`,"type":"` + typ + `","data":{"id":"42"}`)},
		{"id of the wrong type", env(`,"type":"` + typ + `","data":{"id":42}`)},
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestAuthorEventsSubscription checks the consumer the cmd main subscribes with.
func TestAuthorEventsSubscription(t *testing.T) {
	s := book.AuthorEventsSubscription("folio")
	want := []string{"folio.author.created", "folio.author.updated", "folio.author.deleted"}
	if s.Name != "book-authors" || !reflect.DeepEqual(s.Subjects, want) {
		t.Errorf("got %+v, want book-authors on %v", s, want)
	}
}

// TestDeletedAuthorRefused checks, through the API, that once author.deleted arrived
// a book can no longer be created for the author, without asking the author service.
func TestDeletedAuthorRefused(t *testing.T) {
	db := sqldbtest.Open(t, "sqlite:"+t.TempDir()+"/refused.db", book.Migrations)
	s := newServer(t, db)
	handle := book.NewEventHandler(book.NewSQLStore(db), quiet)
	gone := rest.NewID()
	s.authors.add(gone) // the author service, asked, would still say yes
	for _, typ := range []string{book.EventAuthorCreated, book.EventAuthorDeleted} {
		if err := handle(context.Background(), authorEvent(typ, gone)); err != nil {
			t.Fatal(err)
		}
	}
	resp := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("refused", "author_id", gone)))
	if resp.Status != http.StatusUnprocessableEntity {
		t.Fatalf("got %d %s, want 422", resp.Status, resp.Body)
	}
}
