package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"folio/internal/book"
	"folio/internal/book/events"
	"folio/internal/book/sqlstore"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/inbox"
	"folio/internal/platform/outbox"
	"folio/internal/platform/outbox/outboxtest"
	"folio/internal/platform/sqldb/sqldbtest"
)

// TestEventDataIsTheAnswer checks that an event's data is the very document the API
// answered for the change.
func TestEventDataIsTheAnswer(t *testing.T) {
	db := sqldbtest.Open(t, "sqlite:"+t.TempDir()+"/events.db", sqlstore.Migrations)
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

// TestDeletedAuthorRefused checks, through the API, that once author.deleted arrived
// a book can no longer be created for the author, without asking the author service.
func TestDeletedAuthorRefused(t *testing.T) {
	db := sqldbtest.Open(t, "sqlite:"+t.TempDir()+"/refused.db", sqlstore.Migrations)
	s := newServer(t, db)
	if err := inbox.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	handle := events.Authors(sqlstore.New(outbox.NewWriter(db, nil))).Handler(db, quiet)
	gone := id.New()
	s.authors.Add(gone) // the author service, asked, would still say yes
	for _, typ := range []string{events.AuthorCreated, events.AuthorDeleted} {
		body, _ := json.Marshal(broker.Envelope{ID: id.New(), Type: typ, OccurredAt: time.Now().UTC(), Data: json.RawMessage(`{"id":"` + gone + `"}`)})
		if err := handle(context.Background(), broker.Message{Subject: "folio." + typ, ID: id.New(), Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	resp := s.do(t, http.MethodPost, "/books", mustJSON(t, fields("refused", "author_id", gone)))
	if resp.Status != http.StatusUnprocessableEntity {
		t.Fatalf("got %d %s, want 422", resp.Status, resp.Body)
	}
	if n := s.authors.Asked(gone); n != 0 {
		t.Errorf("the author service was asked %d times, want none", n)
	}
}
