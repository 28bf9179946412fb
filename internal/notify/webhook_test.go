package notify_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"folio/internal/notify"
	"folio/internal/platform/egress"
	"folio/internal/platform/inbox"
	"folio/internal/platform/polltest"
	"folio/internal/platform/rest"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// received is one request a test receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a subscriber's endpoint; answer decides the status of the n-th
// request (1-based).
type receiver struct {
	mu       sync.Mutex
	requests []received
	answer   func(n int, r *http.Request) int
	srv      *httptest.Server
}

func newReceiver(t *testing.T, answer func(n int, r *http.Request) int) *receiver {
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.requests = append(rc.requests, received{header: r.Header.Clone(), body: body})
		n := len(rc.requests)
		rc.mu.Unlock()
		w.WriteHeader(rc.answer(n, r))
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) got() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.requests...)
}

// runWorker runs the service's delivery worker until the returned stop is called
// (or the test ends); stop waits for Run to return.
func runWorker(t *testing.T, svc *notify.Service) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(polltest.Deadline):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// fast is a delivery policy for tests: quick polls and millisecond backoffs, and
// private addresses allowed, since the test receivers listen on the loopback.
func fast() notify.Config {
	return notify.Config{PollInterval: 5 * time.Millisecond, BackoffBase: time.Millisecond, BackoffMax: 4 * time.Millisecond,
		Egress: egress.Policy{AllowPrivate: true}}
}

func TestWebhookIsSigned(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusNoContent })
	s := newServerConfig(t, openSQLite(t), fast())
	sub := s.subscribe(t, rc.srv.URL+"/hook", secret, "book.updated")
	m := event(t, rest.NewID(), "book.updated")
	if err := s.svc.HandleEvent(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, s.svc)
	polltest.Until(t, "the delivery", polltest.Holds(func() bool { return s.deliveries(t, sub.ID)[0].Status == notify.StatusDelivered }))
	stop()

	reqs := rc.got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if string(r.body) != string(m.Body) {
		t.Errorf("body %s, want exactly the event received %s", r.body, m.Body)
	}
	ts := r.header.Get("webhook-timestamp")
	sent, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sent, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp %q, want the Unix seconds of the attempt", ts)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(m.ID + "." + ts + "."))
	mac.Write(r.body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	got := r.header.Get("webhook-signature")
	if !hmac.Equal([]byte(got), []byte(want)) {
		t.Errorf("webhook-signature %q, want %q", got, want)
	}
	if r.header.Get("webhook-id") != m.ID || r.header.Get("Folio-Event-Type") != "book.updated" ||
		r.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.header)
	}
	if r.header.Get("Folio-Signature") != "" || r.header.Get("Folio-Event-Id") != "" {
		t.Errorf("the v1.0 headers are still sent: %v", r.header)
	}
	d := s.deliveries(t, sub.ID)[0]
	if d.Attempts != 1 || d.LastError != nil {
		t.Errorf("delivery %+v, want delivered at the first attempt", d)
	}
}

func TestWebhookRetriesUntilDelivered(t *testing.T) {
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s := newServerConfig(t, openSQLite(t), fast())
	sub := s.subscribe(t, rc.srv.URL, secret, "author.created")
	m := event(t, rest.NewID(), "author.created")
	if err := s.svc.HandleEvent(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, s.svc)
	polltest.Until(t, "the delivery", polltest.Holds(func() bool { return s.deliveries(t, sub.ID)[0].Status == notify.StatusDelivered }))
	stop() // nothing more may go out once it is delivered

	if reqs := rc.got(); len(reqs) != 4 {
		t.Errorf("%d requests, want 4 (3 failures, then once more)", len(reqs))
	} else {
		for _, r := range reqs {
			if string(r.body) != string(m.Body) {
				t.Errorf("a retry sent %s, want %s", r.body, m.Body)
			}
		}
	}
	if d := s.deliveries(t, sub.ID)[0]; d.Attempts != 4 || d.Status != notify.StatusDelivered {
		t.Errorf("delivery %+v, want delivered after 4 attempts", d)
	}
}

func TestWebhookGivesUpAfterTheWindow(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	clk := &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	start := clk.Now()
	s := newServerConfig(t, openSQLite(t), notify.Config{PollInterval: 5 * time.Millisecond, Now: clk.Now,
		Egress: egress.Policy{AllowPrivate: true}})
	sub := s.subscribe(t, rc.srv.URL, secret, "book.deleted")
	if err := s.svc.HandleEvent(context.Background(), event(t, rest.NewID(), "book.deleted")); err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, s.svc)
	seen := 0
	polltest.Until(t, "the delivery to fail", polltest.Holds(func() bool {
		d := s.deliveries(t, sub.ID)[0]
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

	d := s.deliveries(t, sub.ID)[0]
	if n := len(rc.got()); n != d.Attempts {
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

func TestWebhookTransportErrors(t *testing.T) {
	// One receiver that never answers in time, one address where nothing listens.
	hang := make(chan struct{})
	slow := newReceiver(t, func(_ int, r *http.Request) int {
		select {
		case <-r.Context().Done():
		case <-hang:
		}
		return http.StatusOK
	})
	t.Cleanup(func() { close(hang) })
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	cfg := fast()
	cfg.AttemptTimeout = 50 * time.Millisecond
	cfg.GiveUpAfter = time.Hour
	s := newServerConfig(t, openSQLite(t), cfg)
	slowSub := s.subscribe(t, slow.srv.URL, secret, "book.created")
	deadSub := s.subscribe(t, closedURL, secret, "book.created")
	if err := s.svc.HandleEvent(context.Background(), event(t, rest.NewID(), "book.created")); err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, s.svc)
	polltest.Until(t, "failed attempts", polltest.Holds(func() bool {
		return s.deliveries(t, slowSub.ID)[0].Attempts >= 2 && s.deliveries(t, deadSub.ID)[0].Attempts >= 2
	}))
	stop()
	for _, tc := range []struct {
		id, want string
	}{{slowSub.ID, "timeout: no answer within 50ms"}, {deadSub.ID, "connection refused"}} {
		d := s.deliveries(t, tc.id)[0]
		if d.Status != notify.StatusPending || d.LastError == nil || *d.LastError != tc.want {
			t.Errorf("delivery %+v, want pending with last_error about %q", d, tc.want)
		}
	}
}

// TestWorkerResumesAfterRestart stops a worker while its subscriber is down and
// starts another service over the same database: it carries on and delivers.
func TestWorkerResumesAfterRestart(t *testing.T) {
	var mu sync.Mutex
	up := false
	rc := newReceiver(t, func(int, *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		if up {
			return http.StatusAccepted
		}
		return http.StatusBadGateway
	})
	db := openSQLite(t)
	first := newServerConfig(t, db, fast())
	sub := first.subscribe(t, rc.srv.URL, secret, "book.created")
	if err := first.svc.HandleEvent(context.Background(), event(t, rest.NewID(), "book.created")); err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, first.svc)
	polltest.Until(t, "a failed attempt", polltest.Holds(func() bool { return first.deliveries(t, sub.ID)[0].Attempts >= 1 }))
	stop()

	mu.Lock()
	up = true
	mu.Unlock()
	second := newServerConfig(t, db, fast())
	runWorker(t, second.svc)
	polltest.Until(t, "the delivery", polltest.Holds(func() bool { return second.deliveries(t, sub.ID)[0].Status == notify.StatusDelivered }))
}

// TestWorkersShareTheLoad runs two instances over one database, as a scaled-out
// notify service does: every event reaches every subscriber exactly once.
func TestWorkersShareTheLoad(t *testing.T) {
	sqldbtest.ForEach(t, notify.Migrations, func(t *testing.T, db *sqldb.DB) {
		if err := inbox.Migrate(context.Background(), db); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[string]int{}
		rc := newReceiver(t, func(_ int, r *http.Request) int {
			mu.Lock()
			defer mu.Unlock()
			seen[r.URL.Path+" "+r.Header.Get("webhook-id")]++
			return http.StatusOK
		})
		one, two := newServerConfig(t, db, fast()), newServerConfig(t, db, fast())
		subs := []notify.Subscription{
			one.subscribe(t, rc.srv.URL+"/a", secret, "book.created"),
			one.subscribe(t, rc.srv.URL+"/b", secret, "book.created", "book.updated"),
		}
		runWorker(t, one.svc)
		runWorker(t, two.svc)
		const events = 40
		for i := range events {
			typ := "book.created"
			if i%2 == 1 {
				typ = "book.updated"
			}
			// Both instances receive some events, as consumers of one durable queue.
			svc := []*notify.Service{one.svc, two.svc}[i%2]
			if err := svc.HandleEvent(context.Background(), event(t, rest.NewID(), typ)); err != nil {
				t.Fatal(err)
			}
		}
		want := events/2 + events // /a gets the creations, /b everything
		polltest.Until(t, "every delivery", polltest.Holds(func() bool {
			done := 0
			for _, sub := range subs {
				for _, d := range one.deliveries(t, sub.ID) {
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

func TestWebhookRedirectIsNotFollowed(t *testing.T) {
	target := newReceiver(t, func(int, *http.Request) int { return http.StatusOK })
	redirect := httptest.NewServer(http.RedirectHandler(target.srv.URL, http.StatusFound))
	defer redirect.Close()
	cfg := fast()
	s := newServerConfig(t, openSQLite(t), cfg)
	sub := s.subscribe(t, redirect.URL, secret, "book.created")
	if err := s.svc.HandleEvent(context.Background(), event(t, rest.NewID(), "book.created")); err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, s.svc)
	polltest.Until(t, "a failed attempt", polltest.Holds(func() bool { return s.deliveries(t, sub.ID)[0].Attempts >= 1 }))
	stop()
	d := s.deliveries(t, sub.ID)[0]
	if d.Status != notify.StatusPending || d.LastError == nil || *d.LastError != "http 302 (redirects are not followed)" {
		t.Errorf("delivery %+v, want pending after a 302", d)
	}
	if n := len(target.got()); n != 0 {
		t.Errorf("the redirect was followed: the target got %d requests", n)
	}
}

// TestDeliveredOnceWhenTheDatabaseIsSlowToRecordIt replays what a loaded machine
// did: the subscriber took the webhook, but recording that took longer than one
// write's timeout (another connection held SQLite's write lock). The outcome must
// still be recorded before the lease ends, so the webhook is not sent again.
func TestDeliveredOnceWhenTheDatabaseIsSlowToRecordIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.db")
	db := sqldbtest.Open(t, "sqlite:"+path, notify.Migrations)
	if err := inbox.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
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
	rc := newReceiver(t, func(int, *http.Request) int {
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
	cfg := fast()
	cfg.AttemptTimeout, cfg.Lease = 2*time.Second, 30*time.Second
	s := newServerConfig(t, db, cfg)
	sub := s.subscribe(t, rc.srv.URL, secret, "book.created")
	if err := s.svc.HandleEvent(context.Background(), event(t, rest.NewID(), "book.created")); err != nil {
		t.Fatal(err)
	}
	runWorker(t, s.svc)
	polltest.Until(t, "the delivery is recorded", polltest.Holds(func() bool { return s.deliveries(t, sub.ID)[0].Status == notify.StatusDelivered }))
	<-release
	if n := len(rc.got()); n != 1 {
		t.Errorf("the subscriber got the webhook %d times, want once", n)
	}
	if d := s.deliveries(t, sub.ID)[0]; d.Attempts != 1 {
		t.Errorf("delivery %+v, want delivered at the first attempt", d)
	}
}
