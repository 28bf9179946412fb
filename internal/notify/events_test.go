package notify_test

import (
	"context"
	"testing"

	"folio/internal/notify"
	"folio/internal/platform/broker"
	"folio/internal/platform/inbox"
	"folio/internal/platform/rest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

func TestHandleEvent(t *testing.T) {
	sqldbtest.ForEach(t, notify.Migrations, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := inbox.Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
		s := newServer(t, db)
		books := s.subscribe(t, "http://example.com/books", secret, "book.created", "book.deleted")
		both := s.subscribe(t, "http://example.com/both", secret, "book.created", "author.created")
		authors := s.subscribe(t, "http://example.com/authors", secret, "author.updated")

		created := event(t, rest.NewID(), "book.created")
		for range 3 { // the broker delivers at least once
			if err := s.svc.HandleEvent(ctx, created); err != nil {
				t.Fatalf("handle: %v", err)
			}
		}
		for _, sub := range []string{books.ID, both.ID} {
			ds := s.deliveries(t, sub)
			if len(ds) != 1 {
				t.Fatalf("subscription %s: %d deliveries, want 1: %+v", sub, len(ds), ds)
			}
			d := ds[0]
			if d.EventID != created.ID || d.Type != "book.created" || d.Status != notify.StatusPending || d.Attempts != 0 || d.LastError != nil {
				t.Errorf("delivery %+v", d)
			}
		}
		if ds := s.deliveries(t, authors.ID); len(ds) != 0 {
			t.Errorf("a subscription to other types got %+v", ds)
		}

		// An event nobody subscribed to, and one of an unknown type, are acknowledged
		// and add nothing.
		for _, typ := range []string{"author.deleted", "shelf.created"} {
			if err := s.svc.HandleEvent(ctx, event(t, rest.NewID(), typ)); err != nil {
				t.Errorf("%s: %v", typ, err)
			}
		}
		if err := s.svc.HandleEvent(ctx, event(t, rest.NewID(), "author.created")); err != nil {
			t.Fatal(err)
		}
		if n := len(s.deliveries(t, both.ID)); n != 2 {
			t.Errorf("both: %d deliveries, want 2", n)
		}
		if n := len(s.deliveries(t, books.ID)); n != 1 {
			t.Errorf("books: %d deliveries, want 1", n)
		}

		// A body that is not an envelope is an error, for the broker to retry and
		// dead-letter.
		for _, body := range []string{``, `not json`, `[]`, `{"type":"book.created"}`, `{"id":"x"}`, `{"id":1,"type":"book.created"}`} {
			m := broker.Message{Subject: "folio.book.created", ID: "m", Body: []byte(body)}
			if err := s.svc.HandleEvent(ctx, m); err == nil {
				t.Errorf("body %q: got nil, want an error", body)
			}
		}
	})
}

func TestBrokerSubscription(t *testing.T) {
	s := notify.BrokerSubscription("folio")
	if s.Name != notify.Consumer || len(s.Subjects) != 2 || s.Subjects[0] != "folio.book.>" || s.Subjects[1] != "folio.author.>" {
		t.Errorf("got %+v", s)
	}
}
