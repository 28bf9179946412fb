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
		n, err := st.AddDeliveries(context.Background(), tx, id, typ, []byte(`{"id":"`+id+`"}`), now)
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

func TestStoreDeliveries(t *testing.T) {
	forEachDB(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st := sqlstore.New(db)
		books, authors := newSub("book.created"), newSub("author.created", "book.created")
		for _, s := range []notify.Subscription{books, authors} {
			if err := st.CreateSubscription(ctx, s, 0); err != nil {
				t.Fatal(err)
			}
		}
		now := time.UnixMilli(1_800_000_000_000)
		if n := addEvent(t, db, st, "e1", "book.created", now); n != 2 {
			t.Errorf("book.created: added %d, want 2", n)
		}
		if n := addEvent(t, db, st, "e2", "author.created", now); n != 1 {
			t.Errorf("author.created: added %d, want 1", n)
		}
		if n := addEvent(t, db, st, "e3", "book.deleted", now); n != 0 {
			t.Errorf("book.deleted: added %d, want 0", n)
		}
		if n := addEvent(t, db, st, "e1", "book.created", now); n != 0 {
			t.Errorf("e1 again: added %d, want 0", n)
		}

		ds, err := st.ListDeliveries(ctx, authors.ID, paging.Request{Limit: 9})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 2 || ds[0].EventID != "e1" || ds[1].EventID != "e2" || ds[0].Type != "book.created" ||
			ds[0].Status != notify.StatusPending || ds[0].Attempts != 0 || ds[0].LastError != nil || !ds[0].UpdatedAt.Equal(now) {
			t.Fatalf("deliveries: got %+v", ds)
		}
		page, err := st.ListDeliveries(ctx, authors.ID, paging.Request{After: ds[0].ID, Limit: 9})
		if err != nil || len(page) != 1 || page[0].EventID != "e2" {
			t.Errorf("second page: got %+v, %v", page, err)
		}

		// Nothing is due before its time; leased deliveries are not claimed twice.
		if cs, err := st.Claim(ctx, now.Add(-time.Second), time.Minute, 10); err != nil || len(cs) != 0 {
			t.Fatalf("claim before due: got %d, %v", len(cs), err)
		}
		cs, err := st.Claim(ctx, now, time.Minute, 10)
		if err != nil || len(cs) != 3 {
			t.Fatalf("claim: got %d, %v; want 3", len(cs), err)
		}
		if c := cs[0]; string(c.Body) != `{"id":"`+c.EventID+`"}` || c.URL != books.URL || c.Secret != books.Secret {
			t.Errorf("claim carries %+v", c)
		}
		if again, err := st.Claim(ctx, now.Add(59*time.Second), time.Minute, 10); err != nil || len(again) != 0 {
			t.Fatalf("claim while leased: got %d, %v; want 0", len(again), err)
		}

		msg := "the subscriber answered 500"
		for _, c := range cs {
			o := notify.Outcome{Status: notify.StatusPending, LastError: &msg, Started: now, Next: now.Add(time.Hour), Finished: now.Add(time.Second)}
			if c.EventID == "e2" {
				o = notify.Outcome{Status: notify.StatusDelivered, Started: now, Next: now, Finished: now.Add(time.Second)}
			}
			if err := st.Finish(ctx, c, o); err != nil {
				t.Fatal(err)
			}
			// A late second report of the same attempt changes nothing.
			if err := st.Finish(ctx, c, notify.Outcome{Status: notify.StatusFailed, Started: now, Next: now, Finished: now}); err != nil {
				t.Fatal(err)
			}
		}
		ds, _ = st.ListDeliveries(ctx, authors.ID, paging.Request{Limit: 9})
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

		// Deleting a subscription drops its deliveries; purging drops finished ones.
		if err := st.DeleteSubscription(ctx, books.ID); err != nil {
			t.Fatal(err)
		}
		if n, err := st.Purge(ctx, now.Add(2*time.Hour)); err != nil || n != 1 {
			t.Errorf("purge: got %d, %v; want the delivered one", n, err)
		}
		ds, _ = st.ListDeliveries(ctx, authors.ID, paging.Request{Limit: 9})
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
			if _, err := st.AddDeliveries(ctx, tx, "e1", "book.created", []byte(`{}`), time.Now()); err != nil {
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
