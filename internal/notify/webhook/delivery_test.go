package webhook_test

import (
	"database/sql"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"folio/internal/notify"
	"folio/internal/notify/notifytest"
	"folio/internal/platform/egress"
	"folio/internal/platform/id"
	"folio/internal/platform/polltest"
	"folio/internal/platform/sqldb"
)

func TestWebhookRetriesUntilDelivered(t *testing.T) {
	rc := notifytest.NewReceiver(t, func(n int, _ *http.Request) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s := notifytest.New(t, notifytest.OpenSQLite(t), notifytest.Fast())
	sub := s.Subscribe(t, rc.URL, secret, "author.created")
	m := notifytest.Event(t, id.New(), "author.created")
	s.Receive(t, m)
	stop := s.RunWorker(t)
	polltest.Until(t, "the delivery", polltest.Holds(func() bool { return s.Delivery(t, sub.ID).Status == notify.StatusDelivered }))
	stop() // nothing more may go out once it is delivered

	if reqs := rc.Got(); len(reqs) != 4 {
		t.Errorf("%d requests, want 4 (3 failures, then once more)", len(reqs))
	} else {
		for _, r := range reqs {
			if string(r.Body) != string(m.Body) {
				t.Errorf("a retry sent %s, want %s", r.Body, m.Body)
			}
		}
	}
	if d := s.Delivery(t, sub.ID); d.Attempts != 4 || d.Status != notify.StatusDelivered {
		t.Errorf("delivery %+v, want delivered after 4 attempts", d)
	}
}

func TestWebhookGivesUpAfterTheWindow(t *testing.T) {
	rc := notifytest.NewReceiver(t, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	clk := notifytest.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	start := clk.Now()
	s := notifytest.New(t, notifytest.OpenSQLite(t), notifytest.Options{Config: notify.Config{PollInterval: 5 * time.Millisecond, Now: clk.Now},
		Egress: egress.Policy{AllowPrivate: true}})
	sub := s.Subscribe(t, rc.URL, secret, "book.deleted")
	s.Receive(t, notifytest.Event(t, id.New(), "book.deleted"))
	stop := s.RunWorker(t)
	seen := 0
	polltest.Until(t, "the delivery to fail", polltest.Holds(func() bool {
		d := s.Delivery(t, sub.ID)
		if d.Status == notify.StatusFailed {
			return true
		}
		if d.Attempts > seen {
			// The next attempt is at most the 5 min backoff cap away: move past it.
			seen = d.Attempts
			clk.Add(5*time.Minute + time.Second)
		}
		return false
	}))
	stop()

	d := s.Delivery(t, sub.ID)
	if n := len(rc.Got()); n != d.Attempts {
		t.Errorf("the receiver got %d requests, the delivery counts %d attempts", n, d.Attempts)
	}
	// Attempts every ~5 min over an hour, the last at the end of the window.
	if d.Attempts < 10 || d.Attempts > 14 {
		t.Errorf("%d attempts, want about one every 5 minutes for an hour", d.Attempts)
	}
	if d.LastError == nil || *d.LastError != "http 503" {
		t.Errorf("last_error %v, want the 503", d.LastError)
	}
	if elapsed := d.UpdatedAt.Sub(start); elapsed < time.Hour || elapsed > time.Hour+6*time.Minute {
		t.Errorf("gave up %s after the first attempt, want just after an hour", elapsed)
	}
}

// TestWorkerResumesAfterRestart stops a worker while its subscriber is down and
// starts another service over the same database: it carries on and delivers.
func TestWorkerResumesAfterRestart(t *testing.T) {
	var mu sync.Mutex
	up := false
	rc := notifytest.NewReceiver(t, func(int, *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		if up {
			return http.StatusAccepted
		}
		return http.StatusBadGateway
	})
	db := notifytest.OpenSQLite(t)
	first := notifytest.New(t, db, notifytest.Fast())
	sub := first.Subscribe(t, rc.URL, secret, "book.created")
	first.Receive(t, notifytest.Event(t, id.New(), "book.created"))
	stop := first.RunWorker(t)
	polltest.Until(t, "a failed attempt", polltest.Holds(func() bool { return first.Delivery(t, sub.ID).Attempts >= 1 }))
	stop()

	mu.Lock()
	up = true
	mu.Unlock()
	second := notifytest.New(t, db, notifytest.Fast())
	second.RunWorker(t)
	polltest.Until(t, "the delivery", polltest.Holds(func() bool { return second.Delivery(t, sub.ID).Status == notify.StatusDelivered }))
}

// TestWorkersShareTheLoad runs two instances over one database, as a scaled-out
// notify service does: every event reaches every subscriber exactly once.
func TestWorkersShareTheLoad(t *testing.T) {
	notifytest.ForEach(t, func(t *testing.T, db *sqldb.DB) {
		var mu sync.Mutex
		seen := map[string]int{}
		rc := notifytest.NewReceiver(t, func(_ int, r *http.Request) int {
			mu.Lock()
			defer mu.Unlock()
			seen[r.URL.Path+" "+r.Header.Get("webhook-id")]++
			return http.StatusOK
		})
		one, two := notifytest.New(t, db, notifytest.Fast()), notifytest.New(t, db, notifytest.Fast())
		subs := []notify.Subscription{
			one.Subscribe(t, rc.URL+"/a", secret, "book.created"),
			one.Subscribe(t, rc.URL+"/b", secret, "book.created", "book.updated"),
		}
		one.RunWorker(t)
		two.RunWorker(t)
		const events = 40
		for i := range events {
			typ := "book.created"
			if i%2 == 1 {
				typ = "book.updated"
			}
			// Both instances receive some events, as consumers of one durable queue.
			[]*notifytest.Service{one, two}[i%2].Receive(t, notifytest.Event(t, id.New(), typ))
		}
		want := events/2 + events // /a gets the creations, /b everything
		polltest.Until(t, "every delivery", polltest.Holds(func() bool {
			done := 0
			for _, sub := range subs {
				for _, d := range one.Deliveries(t, sub.ID) {
					if d.Status == notify.StatusDelivered {
						done++
					}
				}
			}
			return done == want
		}))
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != want {
			t.Errorf("%d distinct deliveries received, want %d", len(seen), want)
		}
		for k, n := range seen {
			if n != 1 {
				t.Errorf("%s received %d times", k, n)
			}
		}
	})
}

// TestDeliveredOnceWhenTheDatabaseIsSlowToRecordIt replays what a loaded machine
// did: the subscriber took the webhook, but recording that took longer than one
// write's timeout (another connection held SQLite's write lock). The outcome must
// still be recorded before the lease ends, so the webhook is not sent again.
func TestDeliveredOnceWhenTheDatabaseIsSlowToRecordIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.db")
	db := notifytest.OpenSQLiteAt(t, path)
	// Another writer on the same file, as a long transaction of the consumer
	// would be.
	// It waits for the write lock as the services do, rather than failing while
	// the worker holds it.
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(20000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	other.SetMaxOpenConns(1)
	var locked sync.Once
	release := make(chan struct{})
	rc := notifytest.NewReceiver(t, func(int, *http.Request) int {
		locked.Do(func() {
			if _, err := other.Exec(`BEGIN IMMEDIATE`); err != nil {
				t.Errorf("take the write lock: %v", err)
				close(release)
				return
			}
			// Held for longer than one attempt to record is given (5 s).
			time.AfterFunc(7*time.Second, func() {
				defer close(release)
				if _, err := other.Exec(`ROLLBACK`); err != nil {
					t.Errorf("release the write lock: %v", err)
				}
			})
		})
		return http.StatusNoContent
	})
	cfg := notifytest.Fast()
	cfg.AttemptTimeout, cfg.Lease = 2*time.Second, 30*time.Second
	s := notifytest.New(t, db, cfg)
	sub := s.Subscribe(t, rc.URL, secret, "book.created")
	s.Receive(t, notifytest.Event(t, id.New(), "book.created"))
	s.RunWorker(t)
	polltest.Until(t, "the delivery is recorded", polltest.Holds(func() bool { return s.Delivery(t, sub.ID).Status == notify.StatusDelivered }))
	<-release
	if n := len(rc.Got()); n != 1 {
		t.Errorf("the subscriber got the webhook %d times, want once", n)
	}
	if d := s.Delivery(t, sub.ID); d.Attempts != 1 {
		t.Errorf("delivery %+v, want delivered at the first attempt", d)
	}
}
