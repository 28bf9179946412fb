package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"folio/internal/notify"
	"folio/internal/notify/events"
	"folio/internal/notify/notifytest"
	"folio/internal/notify/sqlstore"
	"folio/internal/platform/fault"
	"folio/internal/platform/id"
	"folio/internal/platform/inbox"
	"folio/internal/platform/paging"
	"folio/internal/platform/sqldb"
)

// forEachDB runs suite on every engine with the notify schema and the inbox.
var forEachDB = notifytest.ForEach

func newSub(events ...string) notify.Subscription {
	return notify.Subscription{ID: id.New(), URL: "http://example.com/hook", Events: events, Version: 1,
		Secret: "0123456789abcdef", CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
}

// addEvent records an event as the intake does, through the inbox.
func addEvent(t *testing.T, db *sqldb.DB, st *sqlstore.Store, id, typ string, now time.Time) int {
	t.Helper()
	added := 0
	_, err := inbox.Apply(context.Background(), db, events.Consumer, id, func(tx *sql.Tx) error {
		n, err := st.AddDeliveries(context.Background(), tx, id, typ, []byte(`{"id":"`+id+`"}`), nil, now)
		added = n
		return err
	})
	if err != nil {
		t.Fatalf("add event %s: %v", id, err)
	}
	return added
}

func TestStoreSubscriptions(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := sqlstore.New(db)
		var subs []notify.Subscription
		for i := range 5 {
			s := newSub("book.created", "author.deleted")
			if i%2 == 1 {
				s.Events = []string{"book.deleted"}
			}
			if err := st.CreateSubscription(ctx, s, 0); err != nil {
				t.Fatalf("create: %v", err)
			}
			subs = append(subs, s)
		}
		got, err := st.GetSubscription(ctx, subs[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.URL != subs[0].URL || !slices.Equal(got.Events, subs[0].Events) || got.Secret != subs[0].Secret ||
			!got.CreatedAt.Equal(subs[0].CreatedAt) || got.Version != 1 {
			t.Errorf("get: got %+v, want %+v", got, subs[0])
		}

		var walked []string
		after := ""
		for {
			page, err := st.ListSubscriptions(ctx, paging.Request{After: after, Limit: 1}) // reads 2
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range page {
				walked = append(walked, s.ID)
				if len(s.Events) == 0 {
					t.Errorf("listed %s without its events", s.ID)
				}
			}
			if len(page) < 2 {
				break
			}
			after = page[len(page)-1].ID
		}
		var want []string
		for _, s := range subs {
			want = append(want, s.ID)
		}
		if !slices.Equal(walked, want) {
			t.Errorf("list walked %v, want %v", walked, want)
		}

		if err := st.DeleteSubscription(ctx, subs[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.GetSubscription(ctx, subs[0].ID); fault.KindOf(err) != fault.NotFound {
			t.Errorf("get after delete: got %v, want NotFound", err)
		}
		if err := st.DeleteSubscription(ctx, subs[0].ID); fault.KindOf(err) != fault.NotFound {
			t.Errorf("delete twice: got %v, want NotFound", err)
		}
	})
}

// deliveriesFixture makes two subscriptions, books (book.created) and authors
// (author.created, book.created), and receives e1 (book.created), e2
// (author.created) and e3 (book.deleted) at now.
type deliveriesFixture struct {
	st             *sqlstore.Store
	books, authors notify.Subscription
	now            time.Time
	added          []int // by e1, e2, e3, then e1 again
}

func newDeliveriesFixture(t *testing.T, db *sqldb.DB) deliveriesFixture {
	t.Helper()
	f := deliveriesFixture{st: sqlstore.New(db), books: newSub("book.created"), authors: newSub("author.created", "book.created"),
		now: time.UnixMilli(1_800_000_000_000)}
	for _, s := range []notify.Subscription{f.books, f.authors} {
		if err := f.st.CreateSubscription(context.Background(), s, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range []struct{ id, typ string }{{"e1", "book.created"}, {"e2", "author.created"}, {"e3", "book.deleted"}, {"e1", "book.created"}} {
		f.added = append(f.added, addEvent(t, db, f.st, e.id, e.typ, f.now))
	}
	return f
}

func TestStoreAddsOneDeliveryPerSubscriberOnce(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		f := newDeliveriesFixture(t, db)
		if !slices.Equal(f.added, []int{2, 1, 0, 0}) {
			t.Errorf("added %v, want 2 for book.created, 1 for author.created, none for book.deleted nor e1 again", f.added)
		}
		ds, err := f.st.ListDeliveries(ctx, f.authors.ID, paging.Request{Limit: 9})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 2 || ds[0].EventID != "e1" || ds[1].EventID != "e2" || ds[0].Type != "book.created" ||
			ds[0].Status != notify.StatusPending || ds[0].Attempts != 0 || ds[0].LastError != nil || !ds[0].UpdatedAt.Equal(f.now) {
			t.Fatalf("deliveries: got %+v", ds)
		}
		page, err := f.st.ListDeliveries(ctx, f.authors.ID, paging.Request{After: ds[0].ID, Limit: 9})
		if err != nil || len(page) != 1 || page[0].EventID != "e2" {
			t.Errorf("second page: got %+v, %v", page, err)
		}
	})
}

// finishAll records one attempt of each claim: e2 delivered, the others failed
// with msg and due again an hour later. A late second report of the same attempt
// changes nothing.
func (f deliveriesFixture) finishAll(t *testing.T, cs []notify.Claim, msg string) {
	t.Helper()
	now := f.now
	for _, c := range cs {
		o := notify.Outcome{Status: notify.StatusPending, LastError: &msg, Started: now, Next: now.Add(time.Hour), Finished: now.Add(time.Second)}
		if c.EventID == "e2" {
			o = notify.Outcome{Status: notify.StatusDelivered, Started: now, Next: now, Finished: now.Add(time.Second)}
		}
		if err := f.st.Finish(context.Background(), c, o); err != nil {
			t.Fatal(err)
		}
		if err := f.st.Finish(context.Background(), c, notify.Outcome{Status: notify.StatusFailed, Started: now, Next: now, Finished: now}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStoreClaimsDueDeliveriesUnderALease(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		f := newDeliveriesFixture(t, db)
		st, now := f.st, f.now
		// Nothing is due before its time; leased deliveries are not claimed twice.
		if cs, err := st.Claim(ctx, now.Add(-time.Second), time.Minute, 10); err != nil || len(cs) != 0 {
			t.Fatalf("claim before due: got %d, %v", len(cs), err)
		}
		cs, err := st.Claim(ctx, now, time.Minute, 10)
		if err != nil || len(cs) != 3 {
			t.Fatalf("claim: got %d, %v; want 3", len(cs), err)
		}
		if c := cs[0]; string(c.Body) != `{"id":"`+c.EventID+`"}` || c.URL != f.books.URL || c.Secret != f.books.Secret {
			t.Errorf("claim carries %+v", c)
		}
		if again, err := st.Claim(ctx, now.Add(59*time.Second), time.Minute, 10); err != nil || len(again) != 0 {
			t.Fatalf("claim while leased: got %d, %v; want 0", len(again), err)
		}

		const msg = "the subscriber answered 500"
		f.finishAll(t, cs, msg)
		ds, _ := st.ListDeliveries(ctx, f.authors.ID, paging.Request{Limit: 9})
		if ds[0].Status != notify.StatusPending || ds[0].Attempts != 1 || ds[0].LastError == nil || *ds[0].LastError != msg ||
			ds[1].Status != notify.StatusDelivered || ds[1].Attempts != 1 || ds[1].LastError != nil {
			t.Errorf("after one attempt: got %+v", ds)
		}
		// The lease ended with the attempt; the retry is due at its next time.
		if cs, _ := st.Claim(ctx, now.Add(2*time.Second), time.Minute, 10); len(cs) != 0 {
			t.Errorf("claim before the retry is due: got %d", len(cs))
		}
		cs, err = st.Claim(ctx, now.Add(time.Hour), time.Minute, 10)
		if err != nil || len(cs) != 2 || cs[0].Attempts != 1 || cs[0].FirstAttemptAt == nil || !cs[0].FirstAttemptAt.Equal(now) {
			t.Fatalf("claim the retries: got %+v, %v", cs, err)
		}
		if err := st.Release(ctx, cs[0]); err != nil {
			t.Fatal(err)
		}
		if again, _ := st.Claim(ctx, now.Add(time.Hour), time.Minute, 10); len(again) != 1 {
			t.Errorf("claim after release: got %d, want 1", len(again))
		}
	})
}

func TestStoreDeletesAndPurgesDeliveriesAndTheirEvents(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		f := newDeliveriesFixture(t, db)
		cs, err := f.st.Claim(ctx, f.now, time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		f.finishAll(t, cs, "http 500")
		// Deleting a subscription drops its deliveries; purging drops finished ones.
		if err := f.st.DeleteSubscription(ctx, f.books.ID); err != nil {
			t.Fatal(err)
		}
		if n, err := f.st.Purge(ctx, f.now.Add(2*time.Hour)); err != nil || n != 1 {
			t.Errorf("purge: got %d, %v; want the delivered one", n, err)
		}
		ds, _ := f.st.ListDeliveries(ctx, f.authors.ID, paging.Request{Limit: 9})
		if len(ds) != 1 || ds[0].EventID != "e1" {
			t.Errorf("after purge: got %+v", ds)
		}
		var events int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events`).Scan(&events); err != nil || events != 1 {
			t.Errorf("events kept: %d, %v; want 1 (e1, still pending)", events, err)
		}
	})
}

// TestStoreClaimIsExclusive has many claimers race for the same due deliveries:
// each delivery is claimed exactly once.
func TestStoreClaimIsExclusive(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := sqlstore.New(db)
		sub := newSub("book.created")
		if err := st.CreateSubscription(ctx, sub, 0); err != nil {
			t.Fatal(err)
		}
		now := time.UnixMilli(1_800_000_000_000)
		const events = 60
		for i := range events {
			addEvent(t, db, st, fmt.Sprintf("e%02d", i), "book.created", now)
		}
		var mu sync.Mutex
		claimed := map[string]int{}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				for {
					cs, err := st.Claim(ctx, now, time.Minute, 3)
					if err != nil {
						errs <- err
						return
					}
					if len(cs) == 0 {
						return
					}
					mu.Lock()
					for _, c := range cs {
						claimed[c.ID]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("claim: %v", err)
		}
		if len(claimed) != events {
			t.Errorf("claimed %d deliveries, want %d", len(claimed), events)
		}
		for id, n := range claimed {
			if n != 1 {
				t.Errorf("delivery %s claimed %d times", id, n)
			}
		}
	})
}

func TestStoreRollsBackWithTheInbox(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := sqlstore.New(db)
		sub := newSub("book.created")
		if err := st.CreateSubscription(ctx, sub, 0); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		_, err := inbox.Apply(ctx, db, events.Consumer, "e1", func(tx *sql.Tx) error {
			if _, err := st.AddDeliveries(ctx, tx, "e1", "book.created", []byte(`{}`), nil, time.Now()); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("apply: got %v, want boom", err)
		}
		// Nothing was kept, and the event can be applied on redelivery.
		if ds, _ := st.ListDeliveries(ctx, sub.ID, paging.Request{Limit: 9}); len(ds) != 0 {
			t.Errorf("deliveries after rollback: %+v", ds)
		}
		if n := addEvent(t, db, st, "e1", "book.created", time.Now()); n != 1 {
			t.Errorf("redelivery after rollback: added %d, want 1", n)
		}
	})
}
