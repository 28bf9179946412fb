package events_test

import (
	"context"
	"slices"
	"testing"

	"folio/internal/notify"
	"folio/internal/notify/events"
	"folio/internal/notify/notifytest"
	"folio/internal/platform/broker"
	"folio/internal/platform/id"
	"folio/internal/platform/sqldb"
)

const secret = notifytest.Secret

func TestIntakeAddsOneDeliveryPerSubscriberOnce(t *testing.T) {
	notifytest.ForEach(t, func(t *testing.T, db *sqldb.DB) {
		s := notifytest.New(t, db, notifytest.Options{})
		books := s.Subscribe(t, "http://example.com/books", secret, "book.created", "book.deleted")
		both := s.Subscribe(t, "http://example.com/both", secret, "book.created", "author.created")
		authors := s.Subscribe(t, "http://example.com/authors", secret, "author.updated")

		created := notifytest.Event(t, id.New(), "book.created")
		for range 3 { // the broker delivers at least once
			s.Receive(t, created)
		}
		for _, sub := range []string{books.ID, both.ID} {
			ds := s.Deliveries(t, sub)
			if len(ds) != 1 {
				t.Fatalf("subscription %s: %d deliveries, want 1: %+v", sub, len(ds), ds)
			}
			d := ds[0]
			if d.EventID != created.ID || d.Type != "book.created" || d.Status != notify.StatusPending || d.Attempts != 0 || d.LastError != nil {
				t.Errorf("delivery %+v", d)
			}
		}
		if ds := s.Deliveries(t, authors.ID); len(ds) != 0 {
			t.Errorf("a subscription to other types got %+v", ds)
		}

		// An event nobody subscribed to, and one of an unknown type, are acknowledged
		// and add nothing.
		for _, typ := range []string{"author.deleted", "shelf.created"} {
			if err := s.Handle(context.Background(), notifytest.Event(t, id.New(), typ)); err != nil {
				t.Errorf("%s: %v", typ, err)
			}
		}
		s.Receive(t, notifytest.Event(t, id.New(), "author.created"))
		if n := len(s.Deliveries(t, both.ID)); n != 2 {
			t.Errorf("both: %d deliveries, want 2", n)
		}
		if n := len(s.Deliveries(t, books.ID)); n != 1 {
			t.Errorf("books: %d deliveries, want 1", n)
		}
	})
}

// TestIntakeRefusesBodiesThatAreNotEvents: a body that is not an envelope is an
// error, for the broker to retry and dead-letter.
func TestIntakeRefusesBodiesThatAreNotEvents(t *testing.T) {
	s := notifytest.New(t, notifytest.OpenSQLite(t), notifytest.Options{})
	for _, body := range []string{``, `not json`, `[]`, `{"type":"book.created"}`, `{"id":"x"}`, `{"id":1,"type":"book.created"}`} {
		m := broker.Message{Subject: "folio.book.created", ID: "m", Body: []byte(body)}
		if err := s.Handle(context.Background(), m); err == nil {
			t.Errorf("body %q: got nil, want an error", body)
		}
	}
}

// TestIntakeRefusesEventIDsThatCannotBeSigned: the id is signed as
// "<id>.<timestamp>.<body>" and sent in a header.
func TestIntakeRefusesEventIDsThatCannotBeSigned(t *testing.T) {
	s := notifytest.New(t, notifytest.OpenSQLite(t), notifytest.Options{})
	sub := s.Subscribe(t, "https://hooks.example.com/", secret, "book.created")
	for _, eventID := range []string{"a.b", "evt 1", "evt\n1"} {
		if err := s.Handle(context.Background(), notifytest.Event(t, eventID, "book.created")); err == nil {
			t.Errorf("event id %q: accepted, want an error", eventID)
		}
	}
	if ds := s.Deliveries(t, sub.ID); len(ds) != 0 {
		t.Errorf("deliveries of refused events: %+v", ds)
	}
}

func TestIntakeSubscribesToEveryBookAuthorAndOrderEventUnderItsName(t *testing.T) {
	sub := notifytest.New(t, notifytest.OpenSQLite(t), notifytest.Options{}).Intake.Subscription("folio")
	want := []string{"folio.book.>", "folio.author.>", "folio.order.*"}
	if sub.Name != "notify" || events.Consumer != "notify" || !slices.Equal(sub.Subjects, want) || sub.Concurrency != 32 {
		t.Errorf("got %+v, want notify on %v", sub, want)
	}
}
