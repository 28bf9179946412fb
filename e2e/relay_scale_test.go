package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"folio/internal/platform/polltest"
)

// Three book instances share one SQLite file, as folio up --scale book=3 runs
// them: one relay publishes the shared outbox, and the stream receives every event
// once, counted by message id. Then the publishing instance stops, another takes
// over at once, and still every event is on the stream once.
//
// A second publish of an event is what the test looks for, and JetStream hides it
// (it acknowledges it without storing it again) within its de-duplication window:
// the test counts what the broker receives with a plain subscriber, and what the
// stream stores with the shortest window JetStream takes (100 ms, where Folio's is
// two minutes, which a longer outage would outlast), by message id.
func TestRelayScaleEveryEventOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	env := sharedNATSEnv(t)
	url, stream, prefix := envValue(env, "FOLIO_NATS_URL"), envValue(env, "FOLIO_EVENTS_STREAM"), envValue(env, "FOLIO_EVENTS_PREFIX")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), polltest.Deadline)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"},
		Storage: jetstream.FileStorage, Duplicates: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}

	// What the broker receives, counted by message id: a plain subscriber gets
	// every publish, the duplicates JetStream does not store again included.
	var recvMu sync.Mutex
	received := map[string]int{}
	sub, err := nc.Subscribe(prefix+".book.>", func(m *nats.Msg) {
		recvMu.Lock()
		received[m.Header.Get(jetstream.MsgIDHeader)]++
		recvMu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	bookDB := "FOLIO_DATABASE_URL=sqlite:" + filepath.Join(t.TempDir(), "book.db")
	// The first book, the author service's peer, migrates the shared file.
	author, book0 := startPair(t, nil, []string{bookDB})
	books := []*service{book0}
	for range 2 {
		books = append(books, startService(t, "book", anyAddr, bookDB, "FOLIO_AUTHOR_URL="+author.URL()))
	}
	sys := &system{book: book0, author: author}
	authorID := createAuthor(t, sys, "Ursula K. Le Guin")

	r := &relayScale{t: t, nc: nc, js: js, sub: sub, stream: stream, prefix: prefix,
		editor: editorAuth(t), authorID: authorID, received: received, recvMu: &recvMu}

	const n = 300
	r.create("first", books, n)
	r.everyEventOnce(books, 0)
	lead := r.leaders(books)
	if len(lead) != 1 {
		t.Fatalf("instances %v say they publish, want one", lead)
	}
	t.Logf("%d books created on 3 instances, each received by the broker once; instance %d published them", n, lead[0])

	// The publisher stops (a rolling restart): it hands the lease on, and one of
	// the others publishes what is written next, without waiting for the lease
	// to expire.
	stopped := books[lead[0]]
	gone := r.published(stopped)
	stopped.signal(syscall.SIGTERM)
	<-stopped.exited
	stopped.cmd = nil
	var rest []*service
	for _, b := range books {
		if b != stopped {
			rest = append(rest, b)
		}
	}
	r.create("second", rest, n/3)
	r.everyEventOnce(rest, gone)
	if l := r.leaders(rest); len(l) != 1 {
		t.Errorf("instances %v of the two left say they publish, want one", l)
	}
}

// relayScale is TestRelayScaleEveryEventOnce's system: the books it created, what
// the broker received and what the stream holds.
type relayScale struct {
	t              *testing.T
	nc             *nats.Conn
	js             jetstream.JetStream
	sub            *nats.Subscription
	stream, prefix string
	editor         string
	authorID       string

	mu      sync.Mutex
	created []string

	recvMu   *sync.Mutex
	received map[string]int // message id → times the broker received it
}

// create writes n books, spread over instances, each instance from a goroutine of
// its own; it fails the test, from the test's goroutine, if any write failed.
func (r *relayScale) create(phase string, instances []*service, n int) {
	r.t.Helper()
	errs := make([]error, len(instances))
	var wg sync.WaitGroup
	for w, b := range instances {
		wg.Go(func() {
			for i := range n / len(instances) {
				id, err := r.createOn(b, fmt.Sprintf("Book %s-%d-%d", phase, w, i))
				if err != nil {
					errs[w] = err
					return
				}
				r.mu.Lock()
				r.created = append(r.created, id)
				r.mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		r.t.Fatal(err)
	}
}

// createOn creates a book on b and returns its id; safe from any goroutine.
func (r *relayScale) createOn(b *service, title string) (string, error) {
	status, body, err := send("POST", b.URL()+"/books", map[string]any{"title": title,
		"author_id": r.authorID, "genre": "fantasy"}, r.editor)
	if err != nil {
		return "", fmt.Errorf("create a book on %s: %w", b.URL(), err)
	}
	var created struct {
		ID string `json:"id"`
	}
	if status != http.StatusCreated || json.Unmarshal(body, &created) != nil || created.ID == "" {
		return "", fmt.Errorf("create a book on %s: %d %s", b.URL(), status, body)
	}
	return created.ID, nil
}

func (r *relayScale) published(b *service) float64 {
	r.t.Helper()
	v, err := metricSum(b, "folio_outbox_published_total")
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

// everyEventOnce waits until every book created has its event on the stream and
// no instance has one pending, then checks that no message id is there twice, and
// that the relays published as many events as were written (the broker
// acknowledges a duplicate it drops as a publish too). gone is what instances no
// longer running published.
func (r *relayScale) everyEventOnce(running []*service, gone float64) {
	t := r.t
	t.Helper()
	var onStream map[string]int // message id → times on the stream
	polltest.Until(t, "every book's event on the stream and none pending", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var err error
		var bookIDs map[string]bool
		if onStream, bookIDs, err = bookEvents(ctx, r.js, r.stream, r.prefix); err != nil {
			return err
		}
		for _, id := range r.created {
			if !bookIDs[id] {
				return fmt.Errorf("book %s has no book.created on the stream", id)
			}
		}
		for _, b := range running {
			if n, err := outboxPending(b); err != nil || n != 0 {
				return fmt.Errorf("%s: %d events pending (%v)", b.URL(), n, err)
			}
		}
		return nil
	})
	if err := r.nc.Flush(); err != nil { // what the server sent before is handled
		t.Fatal(err)
	}
	r.recvMu.Lock()
	for id, n := range r.received {
		if n != 1 {
			t.Errorf("the broker received event %s %d times", id, n)
		}
	}
	if len(r.received) != len(r.created) {
		t.Errorf("the broker received %d book events for %d books created", len(r.received), len(r.created))
	}
	r.recvMu.Unlock()
	if dropped, err := r.sub.Dropped(); err != nil || dropped != 0 {
		t.Fatalf("the subscriber dropped %d messages (%v): the counts above are short", dropped, err)
	}
	total := 0
	for id, n := range onStream {
		total += n
		if n != 1 {
			t.Errorf("event %s is on the stream %d times", id, n)
		}
	}
	if total != len(r.created) {
		t.Errorf("%d book events on the stream for %d books created", total, len(r.created))
	}
	sum := gone
	for _, b := range running {
		sum += r.published(b)
	}
	if sum != float64(len(r.created)) {
		t.Errorf("the relays published %v events for %d written", sum, len(r.created))
	}
}

// leaders returns the indexes of the instances that say they hold the relay's lease.
func (r *relayScale) leaders(running []*service) []int {
	r.t.Helper()
	var out []int
	for i, b := range running {
		n, err := metricSum(b, "folio_outbox_relay_leader")
		if err != nil {
			r.t.Fatal(err)
		}
		if n == 1 {
			out = append(out, i)
		}
	}
	return out
}

// bookEvents reads the stream and returns how often each message id of a book
// event is on it, and the ids of the books with a book.created.
func bookEvents(ctx context.Context, js jetstream.JetStream, stream, prefix string) (map[string]int, map[string]bool, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, nil, err
	}
	state := st.CachedInfo().State
	ids, books := map[string]int{}, map[string]bool{}
	for seq := state.FirstSeq; seq > 0 && seq <= state.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			return nil, nil, fmt.Errorf("message %d: %w", seq, err)
		}
		if !strings.HasPrefix(m.Subject, prefix+".book.") {
			continue
		}
		ids[m.Header.Get(jetstream.MsgIDHeader)]++
		if m.Subject == prefix+".book.created" {
			var env struct {
				Data struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			if err := json.Unmarshal(m.Data, &env); err != nil {
				return nil, nil, fmt.Errorf("message %d: %w", seq, err)
			}
			books[env.Data.ID] = true
		}
	}
	return ids, books, nil
}
