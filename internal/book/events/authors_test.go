package events_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"folio/internal/book"
	"folio/internal/book/booktest"
	"folio/internal/book/events"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/inbox"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// forEachConsumer runs suite on each SQL engine with a store and the broker handler
// of its author events consumer, as cmd/book wires them.
func forEachConsumer(t *testing.T, suite func(t *testing.T, s *sqlstore.Store, handle broker.Handler)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		outboxtest.Migrate(t, db)
		if err := inbox.Migrate(context.Background(), db); err != nil {
			t.Fatal(err)
		}
		s := sqlstore.New(outbox.NewWriter(db, nil))
		suite(t, s, events.Authors(s).Handler(db, quiet))
	})
}

// authorEvent returns the message of an author event with a new event id; data is
// the author, or {"id"} for a delete, as the author service publishes them.
func authorEvent(typ, authorID string) broker.Message {
	data := map[string]any{"id": authorID}
	if typ != events.AuthorDeleted {
		data = map[string]any{"id": authorID, "name": "N", "bio": nil, "birth_year": nil, "book_count": 0,
			"version": 1, "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z"}
	}
	raw, _ := json.Marshal(data)
	return envelopeMessage(broker.Envelope{ID: id.New(), Type: typ, OccurredAt: time.Now().UTC(), Data: raw})
}

func envelopeMessage(env broker.Envelope) broker.Message {
	body, _ := json.Marshal(env)
	return broker.Message{Subject: "folio." + env.Type, ID: env.ID, Body: body}
}

// TestAuthorEventsKeepTheKnownAuthors checks the rules by which author events keep
// the known author ids: known from created or updated, unknown for good from deleted,
// whatever the order and however often they arrive, and what the directory then asks
// the author service.
func TestAuthorEventsKeepTheKnownAuthors(t *testing.T) {
	const (
		created = events.AuthorCreated
		updated = events.AuthorUpdated
		deleted = events.AuthorDeleted
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
	forEachConsumer(t, func(t *testing.T, s *sqlstore.Store, handle broker.Handler) {
		ctx := context.Background()
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				author := id.New()
				var last broker.Message
				for _, step := range tt.steps {
					switch step {
					case confirmed:
						if err := s.RememberAuthor(ctx, author); err != nil {
							t.Fatal(err)
						}
						continue
					case again:
					default:
						last = authorEvent(step, author)
					}
					if err := handle(ctx, last); err != nil {
						t.Fatalf("%s: %v", step, err)
					}
				}
				wantKnown := tt.wantExists && !tt.wantAsk
				if known, err := s.KnownAuthor(ctx, author); err != nil || known != wantKnown {
					t.Errorf("KnownAuthor: got %v, %v, want %v", known, err, wantKnown)
				}
				remote := booktest.NewAuthors(author)
				ok, err := book.NewAuthorDirectory(s, remote, quiet).Exists(ctx, author)
				if err != nil || ok != tt.wantExists {
					t.Errorf("Exists: got %v, %v, want %v", ok, err, tt.wantExists)
				}
				if asked := remote.Asked(author) > 0; asked != tt.wantAsk {
					t.Errorf("asked the author service: %v, want %v", asked, tt.wantAsk)
				}
			})
		}
	})
}

func TestAuthorEventIsAppliedOnce(t *testing.T) {
	forEachConsumer(t, func(t *testing.T, s *sqlstore.Store, handle broker.Handler) {
		ctx := context.Background()
		// The same event id carrying another author (which no real publisher sends)
		// shows that the inbox, not the data, decides.
		first, second := id.New(), id.New()
		m := authorEvent(events.AuthorCreated, first)
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
}

// TestMalformedAuthorEventsAreRetried: a message no consumer can apply is an error,
// so that the broker retries it and then moves it to the dead letters.
func TestMalformedAuthorEventsAreRetried(t *testing.T) {
	forEachConsumer(t, func(t *testing.T, s *sqlstore.Store, handle broker.Handler) {
		for _, tt := range malformed(events.AuthorCreated) {
			t.Run(tt.name, func(t *testing.T) {
				if err := handle(context.Background(), broker.Message{Subject: "folio.author.created", ID: "m", Body: []byte(tt.body)}); err == nil {
					t.Error("got nil, want an error so that the broker retries and dead-letters it")
				}
			})
		}
	})
}

func TestOtherEventTypesAreLeftAlone(t *testing.T) {
	forEachConsumer(t, func(t *testing.T, s *sqlstore.Store, handle broker.Handler) {
		ctx := context.Background()
		author := id.New()
		m := envelopeMessage(broker.Envelope{ID: id.New(), Type: "book.created", Data: json.RawMessage(`{"id":"` + author + `"}`)})
		if err := handle(ctx, m); err != nil {
			t.Errorf("got %v, want nil", err)
		}
		if known, _ := s.KnownAuthor(ctx, author); known {
			t.Error("a book event made an author known")
		}
	})
}

// malformed lists bodies no consumer can apply, for an event of type typ.
func malformed(typ string) []struct{ name, body string } {
	author := id.New()
	env := func(fields string) string {
		return `{"id":"` + id.New() + `","occurred_at":"2025-01-02T03:04:05Z"` + fields + `}`
	}
	return []struct{ name, body string }{
		{"not json", `{"id":`},
		{"not an object", `[]`},
		{"no event id", `{"type":"` + typ + `","data":{"id":"` + author + `"}}`},
		{"no type", env(`,"data":{"id":"` + author + `"}`)},
		{"no data", env(`,"type":"` + typ + `"`)},
		{"data not an object", env(`,"type":"` + typ + `","data":"` + author + `"`)},
		{"no id in data", env(`,"type":"` + typ + `","data":{}`)},
		{"id not an id", env(`,"type":"` + typ + `","data":{"id":"42"}`)},
		{"id of the wrong type", env(`,"type":"` + typ + `","data":{"id":42}`)},
	}
}

// TestAuthorEventsSubscription checks the consumer the cmd main subscribes with.
func TestAuthorEventsSubscription(t *testing.T) {
	s := events.Authors(nil).Subscription("folio")
	want := []string{"folio.author.created", "folio.author.updated", "folio.author.deleted"}
	if s.Name != "book-authors" || !reflect.DeepEqual(s.Subjects, want) || s.Concurrency != 32 {
		t.Errorf("got %+v, want book-authors on %v, 32 at a time", s, want)
	}
}
