package author_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"folio/internal/author"
	"folio/internal/book"
	"folio/internal/platform/broker"
	"folio/internal/platform/fault"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/problem"
	"folio/internal/platform/rest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// bookEvent returns the message of a book event with a new event id, with data as
// the book service publishes it.
func bookEvent(typ, bookID, authorID string, version int) broker.Message {
	data := map[string]any{"id": bookID}
	if typ != author.EventBookDeleted {
		data = map[string]any{"id": bookID, "title": "T", "author_id": authorID, "genre": "g", "isbn": nil,
			"published_year": nil, "version": version, "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z"}
	}
	raw, _ := json.Marshal(data)
	return envelopeMessage(broker.Envelope{ID: rest.NewID(), Type: typ, OccurredAt: time.Now().UTC(), Data: raw})
}

func envelopeMessage(env broker.Envelope) broker.Message {
	body, _ := json.Marshal(env)
	return broker.Message{Subject: "folio." + env.Type, ID: env.ID, Body: body}
}

func isKind(k fault.Kind) func(error) bool {
	return func(err error) bool { return fault.KindOf(err) == k }
}

// TestStoreEvents checks that every committed write adds exactly one event, with the
// author as data, and that a write that fails adds none and wakes nobody.
func TestStoreEvents(t *testing.T) {
	sqldbtest.ForEach(t, author.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		outboxtest.Migrate(t, db)
		notified := 0
		s := author.NewSQLStore(db, author.WithNotify(func() { notified++ }))
		handle := author.NewEventHandler(s, quiet)
		now := time.Now().UTC().Truncate(time.Microsecond)

		a := newAuthor("Events", now)
		a.Bio = ptr("bio")
		changed := a
		changed.Name, changed.Version, changed.UpdatedAt = "Changed", 2, now.Add(time.Second)
		stale := changed
		stale.Name = "Lost update"
		missing := newAuthor("Missing", now)
		missing.Version = 2
		bookID := rest.NewID()

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
			{"a book arrives", func() error { return handle(ctx, bookEvent(author.EventBookCreated, bookID, a.ID, 1)) }, nil,
				"", nil},
			{"update counts the book", func() error {
				changed.Version, changed.BookCount = 3, 1
				_, err := s.Update(ctx, changed)
				return err
			}, nil, author.EventAuthorUpdated, &changed},
			{"delete of an author with a book", func() error { return s.Delete(ctx, a.ID, 3) }, isKind(fault.Conflict),
				"", nil},
			{"the book goes", func() error { return handle(ctx, bookEvent(author.EventBookDeleted, bookID, "", 0)) }, nil,
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
			if env.Type != tt.wantType || events[0].Aggregate != a.ID || !rest.ValidID(env.ID) {
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

// TestBookProjection checks the rules by which book events keep book_count: the
// highest version of a book wins whatever the order of arrival, redelivery changes
// nothing, and a delete is final.
func TestBookProjection(t *testing.T) {
	type step struct {
		typ     string // "" redelivers the event of the step numbered version
		book    int    // index of the book
		author  int    // index of the author
		version int
	}
	var (
		created = func(b, a, v int) step { return step{author.EventBookCreated, b, a, v} }
		updated = func(b, a, v int) step { return step{author.EventBookUpdated, b, a, v} }
		deleted = func(b int) step { return step{typ: author.EventBookDeleted, book: b} }
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
	sqldbtest.ForEach(t, author.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		outboxtest.Migrate(t, db)
		s := author.NewSQLStore(db)
		handle := author.NewEventHandler(s, quiet)
		now := time.Now().UTC().Truncate(time.Microsecond)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var authors [2]string
				for i := range authors {
					a, err := s.Create(ctx, newAuthor("Projected", now))
					if err != nil {
						t.Fatal(err)
					}
					authors[i] = a.ID
				}
				books := [2]string{rest.NewID(), rest.NewID()}
				var sent []broker.Message
				for i, st := range tt.steps {
					m := bookEvent(st.typ, books[st.book], authors[st.author], st.version)
					if st.typ == "" {
						m = sent[st.version]
					}
					sent = append(sent, m)
					if err := handle(ctx, m); err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
				}
				var got [2]int
				for i, id := range authors {
					a, err := s.Get(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					got[i] = a.BookCount
				}
				if got != tt.want {
					t.Errorf("got book counts %v, want %v", got, tt.want)
				}
			})
		}

		t.Run("every read counts", func(t *testing.T) {
			a, err := s.Create(ctx, newAuthor("Counted", now))
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := handle(ctx, bookEvent(author.EventBookCreated, rest.NewID(), a.ID, 1)); err != nil {
					t.Fatal(err)
				}
			}
			list, err := s.List(ctx, "", 1000)
			if err != nil {
				t.Fatal(err)
			}
			many, err := s.GetMany(ctx, []string{a.ID})
			if err != nil {
				t.Fatal(err)
			}
			listed := -1
			for _, x := range list {
				if x.ID == a.ID {
					listed = x.BookCount
				}
			}
			if listed != 3 || many[a.ID].BookCount != 3 {
				t.Errorf("got book_count %d in List and %d in GetMany, want 3", listed, many[a.ID].BookCount)
			}
		})

		t.Run("an event id is applied once", func(t *testing.T) {
			// The same event id carrying another book (which no real publisher sends)
			// shows that the inbox, not the data, decides.
			a, err := s.Create(ctx, newAuthor("Once", now))
			if err != nil {
				t.Fatal(err)
			}
			m := bookEvent(author.EventBookCreated, rest.NewID(), a.ID, 1)
			var env broker.Envelope
			_ = json.Unmarshal(m.Body, &env)
			other := bookEvent(author.EventBookCreated, rest.NewID(), a.ID, 1)
			var otherEnv broker.Envelope
			_ = json.Unmarshal(other.Body, &otherEnv)
			otherEnv.ID = env.ID
			for _, msg := range []broker.Message{m, envelopeMessage(otherEnv)} {
				if err := handle(ctx, msg); err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := s.Get(ctx, a.ID); got.BookCount != 1 {
				t.Errorf("got book_count %d, want 1", got.BookCount)
			}
		})

		t.Run("malformed messages", func(t *testing.T) {
			id := rest.NewID()
			env := func(typ, data string) string {
				return `{"id":"` + rest.NewID() + `","type":"` + typ + `","occurred_at":"2025-01-02T03:04:05Z","data":` + data + `}`
			}
			created := author.EventBookCreated
			tests := []struct{ name, body string }{
				{"not json", `{"id":`},
				{"not an object", `[]`},
				{"no event id", `{"type":"book.created","data":{"id":"` + id + `","author_id":"` + id + `","version":1}}`},
				{"no type", env("", `{"id":"`+id+`","author_id":"`+id+`","version":1}`)},
				{"no data", `{"id":"` + rest.NewID() + `","type":"book.created"}`},
				{"data not an object", env(created, `"x"`)},
				{"no book id", env(created, `{"author_id":"`+id+`","version":1}`)},
				{"book id not an id", env(created, `{"id":"7","author_id":"`+id+`","version":1}`)},
				{"no author id", env(created, `{"id":"`+id+`","version":1}`)},
				{"author id not an id", env(created, `{"id":"`+id+`","author_id":"x","version":1}`)},
				{"no version", env(created, `{"id":"`+id+`","author_id":"`+id+`"}`)},
				{"version zero", env(author.EventBookUpdated, `{"id":"`+id+`","author_id":"`+id+`","version":0}`)},
				{"version a string", env(created, `{"id":"`+id+`","author_id":"`+id+`","version":"1"}`)},
				{"delete without id", env(author.EventBookDeleted, `{}`)},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if err := handle(ctx, broker.Message{Subject: "folio.book.created", ID: "m", Body: []byte(tt.body)}); err == nil {
						t.Error("got nil, want an error so that the broker retries and dead-letters it")
					}
				})
			}
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM author_books WHERE book_id = $1`, id).Scan(&n); err != nil || n != 0 {
				t.Errorf("got %d rows of the malformed book (%v), want none", n, err)
			}
		})

		t.Run("other event types are left alone", func(t *testing.T) {
			m := envelopeMessage(broker.Envelope{ID: rest.NewID(), Type: "author.created", Data: json.RawMessage(`{"id":"` + rest.NewID() + `"}`)})
			if err := handle(ctx, m); err != nil {
				t.Errorf("got %v, want nil", err)
			}
		})
	})
}

// TestBookEventsSubscription checks the consumer the cmd main subscribes with.
func TestBookEventsSubscription(t *testing.T) {
	s := author.BookEventsSubscription("folio")
	want := []string{"folio.book.created", "folio.book.updated", "folio.book.deleted"}
	if s.Name != "author-books" || !reflect.DeepEqual(s.Subjects, want) {
		t.Errorf("got %+v, want author-books on %v", s, want)
	}
}

// TestDeleteAuthorWithBooks runs, through the API on every engine, the refusal to
// delete an author who still has books, and the delete once they are gone.
func TestDeleteAuthorWithBooks(t *testing.T) {
	sqldbtest.ForEach(t, author.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newServer(t, db, booksAt(closedURL(t)))
		handle := author.NewEventHandler(author.NewSQLStore(db), quiet)
		a := s.create(`{"name":"Prolific"}`)
		path := "/authors/" + a.ID
		b1, b2 := rest.NewID(), rest.NewID()
		for _, m := range []broker.Message{
			bookEvent(author.EventBookCreated, b1, a.ID, 1),
			bookEvent(author.EventBookCreated, b2, a.ID, 1),
		} {
			if err := handle(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if got := decode[author.Author](t, s.do("GET", path, "")); got.BookCount != 2 {
			t.Fatalf("got book_count %d, want 2", got.BookCount)
		}
		wantProblem(t, s.do("DELETE", path, ""), http.StatusConflict, problem.TypeConflict)
		wantProblem(t, s.do("DELETE", path, "", "If-Match", `"1"`), http.StatusConflict, problem.TypeConflict)

		// One book moves to another author, the other is deleted.
		for _, m := range []broker.Message{
			bookEvent(author.EventBookUpdated, b1, rest.NewID(), 2),
			bookEvent(author.EventBookDeleted, b2, "", 0),
		} {
			if err := handle(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		if got := decode[author.Author](t, s.do("GET", path, "")); got.BookCount != 0 || got.Version != 1 {
			t.Fatalf("got book_count %d version %d, want 0 and 1", got.BookCount, got.Version)
		}
		if rec := s.do("DELETE", path, ""); rec.Code != http.StatusNoContent {
			t.Fatalf("got %d %s, want 204", rec.Code, rec.Body)
		}
		if rec := s.do("GET", path, ""); rec.Code != http.StatusNotFound {
			t.Errorf("after delete: got %d, want 404", rec.Code)
		}
	})
}

// TestBookCountAlwaysSent checks that every representation of an author carries
// book_count, 0 included.
func TestBookCountAlwaysSent(t *testing.T) {
	s := newOfflineServer(t)
	created := s.do("POST", "/authors", `{"name":"Counted"}`)
	a := decode[author.Author](t, created)
	path := "/authors/" + a.ID
	answers := map[string][]byte{
		"POST":  created.Body.Bytes(),
		"GET":   s.do("GET", path, "").Body.Bytes(),
		"PUT":   s.do("PUT", path, `{"name":"Counted","book_count":12}`).Body.Bytes(),
		"PATCH": s.do("PATCH", path, `{"bio":"b","book_count":12}`).Body.Bytes(),
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal(s.do("GET", "/authors", "").Body.Bytes(), &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("list: %v %d items", err, len(list.Items))
	}
	answers["list"] = list.Items[0]
	for name, body := range answers {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: %s: %v", name, body, err)
		}
		if n, ok := m["book_count"]; !ok || n != float64(0) {
			t.Errorf("%s: got book_count %v (present %v), want 0: %s", name, n, ok, body)
		}
	}
}

// TestEventsAcrossServices passes the events each service wrote to its outbox to the
// other's handler, as the relays and the broker do, and checks what each then says.
func TestEventsAcrossServices(t *testing.T) {
	ctx := context.Background()
	bookDB := sqldbtest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "book.db"), book.Migrations)
	outboxtest.Migrate(t, bookDB)
	books := serveBooks(t, bookDB)
	authorDB := openSQLite(t)
	s := newServer(t, authorDB, booksAt(books.URL))
	toAuthors := author.NewEventHandler(author.NewSQLStore(authorDB), quiet)
	toBooks := book.NewEventHandler(book.NewSQLStore(bookDB), quiet)
	var bookSeq, authorSeq int64
	relay := func() {
		t.Helper()
		var events []outboxtest.Event
		events, bookSeq = outboxtest.Events(t, bookDB, bookSeq)
		for _, e := range events {
			if err := toAuthors(ctx, broker.Message{Subject: "folio." + e.Envelope.Type, ID: e.Envelope.ID, Body: e.Body}); err != nil {
				t.Fatal(err)
			}
		}
		events, authorSeq = outboxtest.Events(t, authorDB, authorSeq)
		for _, e := range events {
			if err := toBooks(ctx, broker.Message{Subject: "folio." + e.Envelope.Type, ID: e.Envelope.ID, Body: e.Body}); err != nil {
				t.Fatal(err)
			}
		}
	}

	a := s.create(`{"name":"Both Sides"}`)
	b := createBook(t, books.URL, map[string]any{"title": "One", "author_id": a.ID, "genre": "relay"})
	relay()
	if got := decode[author.Author](t, s.do("GET", "/authors/"+a.ID, "")); got.BookCount != 1 {
		t.Fatalf("got book_count %d, want 1", got.BookCount)
	}
	if known, err := book.NewSQLStore(bookDB).KnownAuthor(ctx, a.ID); err != nil || !known {
		t.Errorf("book service: got known %v, %v, want true", known, err)
	}
	wantProblem(t, s.do("DELETE", "/authors/"+a.ID, ""), http.StatusConflict, problem.TypeConflict)

	req, _ := http.NewRequest("DELETE", books.URL+"/books/"+b.ID, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete book: %v %v", resp, err)
	}
	resp.Body.Close()
	relay()
	if rec := s.do("DELETE", "/authors/"+a.ID, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("delete author: got %d %s, want 204", rec.Code, rec.Body)
	}
	relay()
	if known, err := book.NewSQLStore(bookDB).KnownAuthor(ctx, a.ID); err != nil || known {
		t.Errorf("book service after the delete: got known %v, %v, want false", known, err)
	}
}
