package events_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"folio/internal/author"
	"folio/internal/author/authortest"
	"folio/internal/author/events"
	"folio/internal/author/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/paging"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

var quiet = slog.New(slog.DiscardHandler)

// consumer is the book events consumer of the author service over a store, as the
// program runs it.
type consumer struct {
	db     *sqldb.DB
	store  *sqlstore.Store
	handle broker.Handler
	now    time.Time
}

func newConsumer(t testing.TB, db *sqldb.DB) *consumer {
	t.Helper()
	outboxtest.Migrate(t, db)
	store := sqlstore.New(outbox.NewWriter(db, nil))
	return &consumer{db: db, store: store, handle: events.Books(store).Handler(db, quiet),
		now: time.Now().UTC().Truncate(time.Microsecond)}
}

// author stores a new author and returns its id.
func (c *consumer) author(t *testing.T, name string) string {
	t.Helper()
	a, err := c.store.Create(context.Background(), authortest.NewAuthor(name, c.now))
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

// bookCount is the book_count of the author with id.
func (c *consumer) bookCount(t *testing.T, authorID string) int {
	t.Helper()
	a, err := c.store.Get(context.Background(), authorID)
	if err != nil {
		t.Fatal(err)
	}
	return a.BookCount
}

// TestBookCountFollowsTheLatestVersionOfEachBook checks the rules by which book
// events keep book_count: the highest version of a book wins whatever the order of
// arrival, redelivery changes nothing, and a delete is final.
func TestBookCountFollowsTheLatestVersionOfEachBook(t *testing.T) {
	type step struct {
		typ     string // "" redelivers the event of the step numbered version
		book    int    // index of the book
		author  int    // index of the author
		version int
	}
	var (
		created = func(b, a, v int) step { return step{events.EventBookCreated, b, a, v} }
		updated = func(b, a, v int) step { return step{events.EventBookUpdated, b, a, v} }
		deleted = func(b int) step { return step{typ: events.EventBookDeleted, book: b} }
		again   = func(i int) step { return step{version: i} }
	)
	tests := []struct {
		name  string
		steps []step
		want  [2]int // book_count of authors 0 and 1
	}{
		{"none", nil, [2]int{0, 0}},
		{"created", []step{created(0, 0, 1)}, [2]int{1, 0}},
		{"two books", []step{created(0, 0, 1), created(1, 0, 1)}, [2]int{2, 0}},
		{"books of two authors", []step{created(0, 0, 1), created(1, 1, 1)}, [2]int{1, 1}},
		{"updated in place", []step{created(0, 0, 1), updated(0, 0, 2)}, [2]int{1, 0}},
		{"moved to another author", []step{created(0, 0, 1), updated(0, 1, 2)}, [2]int{0, 1}},
		{"moved and back", []step{created(0, 0, 1), updated(0, 1, 2), updated(0, 0, 3)}, [2]int{1, 0}},
		{"update before create", []step{updated(0, 1, 2), created(0, 0, 1)}, [2]int{0, 1}},
		{"updates out of order", []step{created(0, 0, 1), updated(0, 0, 3), updated(0, 1, 2)}, [2]int{1, 0}},
		{"same version twice", []step{created(0, 0, 1), updated(0, 1, 2), updated(0, 0, 2)}, [2]int{0, 1}},
		{"redelivered create", []step{created(0, 0, 1), again(0)}, [2]int{1, 0}},
		{"older event redelivered after a move", []step{created(0, 0, 1), updated(0, 1, 2), again(0)}, [2]int{0, 1}},
		{"deleted", []step{created(0, 0, 1), created(1, 0, 1), deleted(0)}, [2]int{1, 0}},
		{"redelivered delete", []step{created(0, 0, 1), deleted(0), again(1)}, [2]int{0, 0}},
		{"delete before create", []step{deleted(0), created(0, 0, 1)}, [2]int{0, 0}},
		{"late update after delete", []step{created(0, 0, 1), deleted(0), updated(0, 1, 2)}, [2]int{0, 0}},
		{"create redelivered after delete", []step{created(0, 0, 1), deleted(0), again(0)}, [2]int{0, 0}},
	}
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		c := newConsumer(t, db)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				authors := [2]string{c.author(t, "Projected"), c.author(t, "Projected")}
				books := [2]string{id.New(), id.New()}
				var sent []broker.Message
				for i, st := range tt.steps {
					m := authortest.BookEvent(st.typ, books[st.book], authors[st.author], st.version)
					if st.typ == "" {
						m = sent[st.version]
					}
					sent = append(sent, m)
					if err := c.handle(context.Background(), m); err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
				}
				if got := [2]int{c.bookCount(t, authors[0]), c.bookCount(t, authors[1])}; got != tt.want {
					t.Errorf("got book counts %v, want %v", got, tt.want)
				}
			})
		}
	})
}

// TestEveryReadCountsBooks checks that List and GetMany carry book_count as Get does.
func TestEveryReadCountsBooks(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		c := newConsumer(t, db)
		a := c.author(t, "Counted")
		for range 3 {
			if err := c.handle(ctx, authortest.BookEvent(events.EventBookCreated, id.New(), a, 1)); err != nil {
				t.Fatal(err)
			}
		}
		page, err := c.store.List(ctx, paging.Request{Limit: 999})
		if err != nil {
			t.Fatal(err)
		}
		many, err := c.store.GetMany(ctx, []string{a})
		if err != nil {
			t.Fatal(err)
		}
		listed := -1
		for _, x := range page {
			if x.ID == a {
				listed = x.BookCount
			}
		}
		if listed != 3 || many[a].BookCount != 3 {
			t.Errorf("got book_count %d in List and %d in GetMany, want 3", listed, many[a].BookCount)
		}
	})
}

// TestAnEventIDIsAppliedOnce sends the same event id carrying another book (which no
// real publisher sends), to show that the inbox, not the data, decides.
func TestAnEventIDIsAppliedOnce(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		c := newConsumer(t, db)
		a := c.author(t, "Once")
		m := authortest.BookEvent(events.EventBookCreated, id.New(), a, 1)
		var env broker.Envelope
		_ = json.Unmarshal(m.Body, &env)
		other := authortest.BookEvent(events.EventBookCreated, id.New(), a, 1)
		var otherEnv broker.Envelope
		_ = json.Unmarshal(other.Body, &otherEnv)
		otherEnv.ID = env.ID
		for _, msg := range []broker.Message{m, authortest.EnvelopeMessage(otherEnv)} {
			if err := c.handle(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
		}
		if got := c.bookCount(t, a); got != 1 {
			t.Errorf("got book_count %d, want 1", got)
		}
	})
}

// TestMalformedBookEventsAreRefused checks that a message that cannot be read is an
// error, so that the broker retries it and then moves it to the dead letters instead
// of dropping it unseen, and that it changes nothing.
func TestMalformedBookEventsAreRefused(t *testing.T) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		c := newConsumer(t, db)
		bookID := id.New()
		env := func(typ, data string) string {
			return `{"id":"` + id.New() + `","type":"` + typ + `","occurred_at":"2025-01-02T03:04:05Z","data":` + data + `}`
		}
		created := events.EventBookCreated
		tests := []struct{ name, body string }{
			{"not json", `{"id":`},
			{"not an object", `[]`},
			{"no event id", `{"type":"book.created","data":{"id":"` + bookID + `","author_id":"` + bookID + `","version":1}}`},
			{"no type", env("", `{"id":"`+bookID+`","author_id":"`+bookID+`","version":1}`)},
			{"no data", `{"id":"` + id.New() + `","type":"book.created"}`},
			{"data not an object", env(created, `"x"`)},
			{"no book id", env(created, `{"author_id":"`+bookID+`","version":1}`)},
			{"book id not an id", env(created, `{"id":"7","author_id":"`+bookID+`","version":1}`)},
			{"no author id", env(created, `{"id":"`+bookID+`","version":1}`)},
			{"author id not an id", env(created, `{"id":"`+bookID+`","author_id":"x","version":1}`)},
			{"no version", env(created, `{"id":"`+bookID+`","author_id":"`+bookID+`"}`)},
			{"version zero", env(events.EventBookUpdated, `{"id":"`+bookID+`","author_id":"`+bookID+`","version":0}`)},
			{"version a string", env(created, `{"id":"`+bookID+`","author_id":"`+bookID+`","version":"1"}`)},
			{"delete without id", env(events.EventBookDeleted, `{}`)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := c.handle(ctx, broker.Message{Subject: "folio.book.created", ID: "m", Body: []byte(tt.body)}); err == nil {
					t.Error("got nil, want an error so that the broker retries and dead-letters it")
				}
			})
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM author_books WHERE book_id = $1`, bookID).Scan(&n); err != nil || n != 0 {
			t.Errorf("got %d rows of the malformed book (%v), want none", n, err)
		}
	})
}

// TestOtherEventTypesAreLeftAlone: a subscription wider than the consumer's brings
// events that are not its to apply; they are acknowledged, not failed.
func TestOtherEventTypesAreLeftAlone(t *testing.T) {
	c := newConsumer(t, sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "author.db"), sqlstore.Migrations))
	m := authortest.EnvelopeMessage(broker.Envelope{ID: id.New(), Type: author.EventAuthorCreated, Data: json.RawMessage(`{"id":"` + id.New() + `"}`)})
	if err := c.handle(context.Background(), m); err != nil {
		t.Errorf("got %v, want nil", err)
	}
}

// TestBooksSubscription checks the consumer the program subscribes with.
func TestBooksSubscription(t *testing.T) {
	s := events.Books(nil).Subscription("folio")
	want := []string{"folio.book.created", "folio.book.updated", "folio.book.deleted"}
	if s.Name != "author-books" || !reflect.DeepEqual(s.Subjects, want) {
		t.Errorf("got %+v, want author-books on %v", s, want)
	}
}
