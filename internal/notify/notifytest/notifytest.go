// Package notifytest wires the notify service for its packages' tests as
// cmd/notify wires it: a database on a real engine, the store, the webhook sender,
// the event intake and the service, with the worker run on demand.
package notifytest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"folio/internal/notify"
	"folio/internal/notify/events"
	"folio/internal/notify/sqlstore"
	"folio/internal/notify/webhook"
	"folio/internal/platform/broker"
	"folio/internal/platform/egress"
	"folio/internal/platform/id"
	"folio/internal/platform/idempotency"
	"folio/internal/platform/inbox"
	"folio/internal/platform/paging"
	"folio/internal/platform/polltest"
	"folio/internal/platform/secrets"
	"folio/internal/platform/sqldb"
	"folio/internal/platform/sqldb/sqldbtest"
)

// Secret is a valid subscription secret.
const Secret = "s3cret-s3cret-s3cret"

// Quiet is a logger that writes nothing.
var Quiet = slog.New(slog.DiscardHandler)

// Migrate adds to db, migrated with sqlstore.Migrations, the inbox and the
// idempotency keys the service keeps beside its tables.
func Migrate(tb testing.TB, db *sqldb.DB) {
	tb.Helper()
	if err := inbox.Migrate(context.Background(), db); err != nil {
		tb.Fatalf("inbox migrate: %v", err)
	}
	if err := idempotency.Migrate(context.Background(), db); err != nil {
		tb.Fatalf("idempotency migrate: %v", err)
	}
}

// ForEach runs suite on every engine sqldbtest.ForEach knows, with the notify
// database migrated.
func ForEach(t *testing.T, suite func(t *testing.T, db *sqldb.DB)) {
	sqldbtest.ForEach(t, sqlstore.Migrations, func(t *testing.T, db *sqldb.DB) {
		Migrate(t, db)
		suite(t, db)
	})
}

// OpenSQLite opens a new notify database in a file of its own, migrated.
func OpenSQLite(tb testing.TB) *sqldb.DB {
	tb.Helper()
	return OpenSQLiteAt(tb, filepath.Join(tb.TempDir(), "notify.db"))
}

// OpenSQLiteAt opens the notify database at path, migrated.
func OpenSQLiteAt(tb testing.TB, path string) *sqldb.DB {
	tb.Helper()
	db := sqldbtest.Open(tb, "sqlite:"+path, sqlstore.Migrations)
	Migrate(tb, db)
	return db
}

// Box is a secrets box with a fixed key, so that services over one database in a
// test open each other's secrets.
func Box(tb testing.TB) *secrets.Box {
	tb.Helper()
	box, err := secrets.New(bytes.Repeat([]byte{7}, secrets.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	return box
}

// Resolver resolves every name to a public address, so that the tests send no
// DNS query and example.com hosts pass the address check without being dialled;
// localhost is the loopback.
type Resolver struct{}

// LookupNetIP implements egress.Resolver.
func (Resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if host == "localhost" {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return []netip.Addr{netip.MustParseAddr("93.184.215.14")}, nil
}

// Options is how a test's service differs from the defaults.
type Options struct {
	notify.Config
	// Egress is the webhook sender's policy; a nil Resolver takes Resolver.
	Egress egress.Policy
}

// Fast is a delivery policy for tests: quick polls and millisecond backoffs, and
// private addresses allowed, since the test receivers listen on the loopback.
func Fast() Options {
	return Options{
		Config: notify.Config{PollInterval: 5 * time.Millisecond, BackoffBase: time.Millisecond, BackoffMax: 4 * time.Millisecond},
		Egress: egress.Policy{AllowPrivate: true},
	}
}

// Service is the notify service over one database, without its HTTP API.
type Service struct {
	DB     *sqldb.DB
	Store  *sqlstore.Store
	Svc    *notify.Service
	Intake inbox.Consumer
	handle broker.Handler
}

// New wires the service over db with opt; a nil Secrets takes Box.
func New(tb testing.TB, db *sqldb.DB, opt Options) *Service {
	tb.Helper()
	if opt.Secrets == nil {
		opt.Secrets = Box(tb)
	}
	if opt.Egress.Resolver == nil {
		opt.Egress.Resolver = Resolver{}
	}
	store := sqlstore.New(db)
	if opt.Tracer == nil {
		opt.Tracer = webhook.AttemptSpans{}
	}
	svc, err := notify.NewService(store, webhook.New(webhook.Config{Egress: opt.Egress}), opt.Config, Quiet)
	if err != nil {
		tb.Fatal(err)
	}
	intake := events.NewIntake(store, svc.Now, svc.Wake)
	return &Service{DB: db, Store: store, Svc: svc, Intake: intake, handle: intake.Handler(db, Quiet)}
}

// Handle hands the intake one message from the broker.
func (s *Service) Handle(ctx context.Context, m broker.Message) error { return s.handle(ctx, m) }

// Receive hands the intake m, which it must take.
func (s *Service) Receive(tb testing.TB, m broker.Message) {
	tb.Helper()
	if err := s.Handle(context.Background(), m); err != nil {
		tb.Fatalf("event %s: %v", m.ID, err)
	}
}

// Subscribe creates a subscription and returns it.
func (s *Service) Subscribe(tb testing.TB, url, secret string, types ...string) notify.Subscription {
	tb.Helper()
	sub, err := s.Svc.Create(context.Background(), notify.Input{URL: &url, Events: &types, Secret: &secret})
	if err != nil {
		tb.Fatalf("subscribe %s: %v", url, err)
	}
	return sub
}

// Deliveries returns the first hundred deliveries of a subscription.
func (s *Service) Deliveries(tb testing.TB, subID string) []notify.Delivery {
	tb.Helper()
	page, err := s.Svc.Deliveries(context.Background(), subID, paging.Request{Limit: 100})
	if err != nil {
		tb.Fatalf("deliveries of %s: %v", subID, err)
	}
	return page.Items
}

// Delivery returns the first delivery of a subscription, which must have one.
func (s *Service) Delivery(tb testing.TB, subID string) notify.Delivery {
	tb.Helper()
	ds := s.Deliveries(tb, subID)
	if len(ds) == 0 {
		tb.Fatalf("subscription %s has no delivery", subID)
	}
	return ds[0]
}

// RunWorker runs the service's delivery worker until the returned stop is called
// (or the test ends); stop waits for Run to return.
func (s *Service) RunWorker(tb testing.TB) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run: %v", err)
				}
			case <-time.After(polltest.Deadline):
				tb.Error("Run did not return after its context ended")
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// Event returns a broker message carrying an event envelope.
func Event(tb testing.TB, eventID, typ string) broker.Message {
	tb.Helper()
	body, err := json.Marshal(broker.Envelope{ID: eventID, Type: typ, OccurredAt: time.Now().UTC(), Data: json.RawMessage(`{"id":"` + id.New() + `"}`)})
	if err != nil {
		tb.Fatal(err)
	}
	return broker.Message{Subject: "folio." + typ, ID: eventID, Body: body, Header: map[string]string{}}
}

// Clock is a settable clock for the delivery worker.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Received is one request a Receiver got.
type Received struct {
	Header http.Header
	Body   []byte
}

// Receiver is a subscriber's endpoint; answer decides the status of the n-th
// request (1-based).
type Receiver struct {
	URL    string
	Server *httptest.Server

	mu       sync.Mutex
	requests []Received
	answer   func(n int, r *http.Request) int
}

// NewReceiver starts a receiver until the test ends.
func NewReceiver(tb testing.TB, answer func(n int, r *http.Request) int) *Receiver {
	rc := &Receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.requests = append(rc.requests, Received{Header: r.Header.Clone(), Body: body})
		n := len(rc.requests)
		rc.mu.Unlock()
		w.WriteHeader(rc.answer(n, r))
	}))
	rc.URL = rc.Server.URL
	tb.Cleanup(rc.Server.Close)
	return rc
}

// Answering returns a receiver answering every request with status.
func Answering(tb testing.TB, status int) *Receiver {
	return NewReceiver(tb, func(int, *http.Request) int { return status })
}

// Got returns the requests received so far.
func (rc *Receiver) Got() []Received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Received(nil), rc.requests...)
}
