package e2e

// The network fault tests: a Toxiproxy proxy (internal/platform/faultproxy, run in
// this process) between two real Folio processes, or between a Folio process and a
// NATS server of the test's own, adds latency, resets connections, black-holes them
// or refuses them, and the tests check what the contract promises while it does and
// after it is healed.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"folio/internal/platform/faultproxy"
	"folio/internal/platform/polltest"
)

// hangBound catches an author service that hangs on a broken path to the book
// service. The contract's bound is 2 s and the author service's budget
// (FOLIO_UPSTREAM_BUDGET, 1.5 s) is set inside it; the times are logged, and only
// a hang fails the test, so that a slow or busy machine cannot (decision 17, as in
// the contract test's fault checks).
const hangBound = 10 * time.Second

// startPairThroughProxy is startPair with a fault proxy on the author service's path
// to the book service: FOLIO_BOOK_URL names the proxy, whose upstream is the book
// service's address. The book service reaches the author service directly.
func startPairThroughProxy(t *testing.T, env ...string) (author, book *service, proxy *faultproxy.Proxy) {
	t.Helper()
	retryOnCollision(t, "author and book, with a proxy between them", func() error {
		bookAddr := freeAddr(t)
		p := faultproxy.New(t, bookAddr)
		a, err := tryStartService(t, "author", anyAddr, append([]string{"FOLIO_BOOK_URL=http://" + p.Addr()}, env...)...)
		if err != nil {
			return err
		}
		b, err := tryStartService(t, "book", bookAddr, "FOLIO_AUTHOR_URL="+a.URL())
		if err != nil {
			a.kill()
			return err
		}
		author, book, proxy = a, b, p
		return nil
	})
	return author, book, proxy
}

// genreAnswerMismatch compares a 200 answer of GET /authors/books?genre=genre with
// the books of that genre the test created (book id → author id): "" when every book
// is there, once, under its author, and nothing else is.
func genreAnswerMismatch(body []byte, genre string, want map[string]string) string {
	var answer struct {
		Genre   string `json:"genre"`
		Authors []struct {
			ID    string `json:"id"`
			Books []struct {
				ID       string `json:"id"`
				AuthorID string `json:"author_id"`
				Genre    string `json:"genre"`
			} `json:"books"`
		} `json:"authors"`
		Truncated *bool `json:"truncated"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Sprintf("not the genre answer: %v: %.300s", err, body)
	}
	var problems []string
	if answer.Genre != genre {
		problems = append(problems, fmt.Sprintf("genre %q, want %q", answer.Genre, genre))
	}
	if answer.Truncated == nil || *answer.Truncated {
		problems = append(problems, fmt.Sprintf("truncated %v, want false", answer.Truncated))
	}
	got := map[string]string{}
	for _, a := range answer.Authors {
		for _, b := range a.Books {
			if _, dup := got[b.ID]; dup {
				problems = append(problems, "book "+b.ID+" listed twice")
			}
			got[b.ID] = a.ID
			if b.AuthorID != a.ID || b.Genre != genre {
				problems = append(problems, fmt.Sprintf("book %s (author %s, genre %s) listed under author %s", b.ID, b.AuthorID, b.Genre, a.ID))
			}
		}
	}
	for id, a := range want {
		if got[id] != a {
			problems = append(problems, fmt.Sprintf("book %s: under author %q, want %q", id, got[id], a))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			problems = append(problems, "book "+id+" was not created with this genre")
		}
	}
	sort.Strings(problems)
	return strings.Join(problems, "; ")
}

// TestNetworkFaultsAuthorToBook puts a proxy between the author service and the book
// service and breaks it four ways: 300 ms of added latency (the answer is still
// complete), connections reset, a black hole and connections refused (each answered
// 503 problem+json upstream-unavailable (in the 1.5 s budget: the times are logged), the author
// service serving the rest meanwhile, and 200 again once the path is healed, with
// no restart). It does so with the author service calling the book service's HTTP
// API, and again calling it over gRPC (FOLIO_BOOK_TRANSPORT).
func TestNetworkFaultsAuthorToBook(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	for _, transport := range []string{"http", "grpc"} {
		t.Run(transport, func(t *testing.T) { testNetworkFaultsAuthorToBook(t, transport) })
	}
}

func testNetworkFaultsAuthorToBook(t *testing.T, transport string) {
	author, book, proxy := startPairThroughProxy(t, "FOLIO_BOOK_TRANSPORT="+transport)
	sys := &system{book: book, author: author}

	genre := "network-faults-" + transport
	want := map[string]string{} // book id → author id
	var authorIDs []string
	for i := range 2 {
		a := createAuthor(t, sys, fmt.Sprintf("Faulty Network Author %d", i))
		authorIDs = append(authorIDs, a)
		for j := range 3 {
			want[createBook(t, sys, fmt.Sprintf("Packet %d of %d", j, i), a, genre)] = a
		}
	}
	// A book of another genre, which must not be in the answer.
	createBook(t, sys, "Off Topic", authorIDs[0], "other")
	genreURL := author.URL() + "/authors/books?genre=" + genre

	// getGenre asks for the genre's books and checks a 200 answer in full.
	getGenre := func(t *testing.T) (response, time.Duration) {
		t.Helper()
		start := time.Now()
		r := call(t, "GET", genreURL, nil)
		return r, time.Since(start)
	}
	expectComplete := func(t *testing.T, why string) time.Duration {
		t.Helper()
		r, took := getGenre(t)
		expect(t, r, http.StatusOK)
		if m := genreAnswerMismatch(r.body, genre, want); m != "" {
			t.Fatalf("%s: the genre's books: %s", why, m)
		}
		return took
	}
	// expectUnavailable asks n times while the path is broken: every answer is a 503
	// problem+json upstream-unavailable within the contract's bound, and the author
	// service still serves what does not need the book service. It returns how long
	// each answer took.
	expectUnavailable := func(t *testing.T, n int) []time.Duration {
		t.Helper()
		var took []time.Duration
		for range n {
			r, d := getGenre(t) // call fails the test if nothing answers in 30 s
			took = append(took, d)
			expect(t, r, http.StatusServiceUnavailable)
			if typ := problemType(t, r); !strings.HasSuffix(typ, "/upstream-unavailable") {
				t.Errorf("problem type %q, want one ending in /upstream-unavailable", typ)
			}
			if d > hangBound {
				t.Errorf("503 after %v: the author service's deadline did not hold", d.Round(time.Millisecond))
			}
			expect(t, call(t, "GET", author.URL()+"/authors/"+authorIDs[0], nil), http.StatusOK)
		}
		return took
	}
	// recovers waits, after proxy.Heal, for the complete answer again (the breaker
	// lets a probe through after its delay) and returns how long that took.
	recovers := func(t *testing.T) time.Duration {
		t.Helper()
		healed := time.Now()
		polltest.Until(t, "GET /authors/books answers 200 again after the heal", func() error {
			r, _ := getGenre(t)
			if r.status != http.StatusOK {
				return fmt.Errorf("status %d: %s", r.status, r.body)
			}
			if m := genreAnswerMismatch(r.body, genre, want); m != "" {
				t.Fatalf("after the heal: the genre's books: %s", m)
			}
			return nil
		})
		return time.Since(healed)
	}
	roundAll := func(ds []time.Duration) []time.Duration {
		out := make([]time.Duration, len(ds))
		for i, d := range ds {
			out[i] = d.Round(time.Millisecond)
		}
		return out
	}

	var baseline []time.Duration
	for range 5 {
		baseline = append(baseline, expectComplete(t, "before any fault"))
	}
	t.Logf("no fault: GET /authors/books answered 200 in %v", roundAll(baseline))

	t.Run("latency", func(t *testing.T) {
		const added = 300 * time.Millisecond
		t.Cleanup(proxy.Heal)
		proxy.Latency(added)
		var took []time.Duration
		for range 5 {
			took = append(took, expectComplete(t, fmt.Sprintf("with %v of added latency", added)))
		}
		t.Logf("%v added latency: GET /authors/books answered 200, complete, in %v", added, roundAll(took))
		proxy.Heal()
		expectComplete(t, "after the latency was healed")
	})

	t.Run("reset peer", func(t *testing.T) {
		t.Cleanup(proxy.Heal)
		proxy.ResetPeer()
		took := expectUnavailable(t, 4)
		t.Logf("connections reset: 503 upstream-unavailable in %v", roundAll(took))
		proxy.Heal()
		t.Logf("reset peer healed: 200 and complete again %v later", recovers(t).Round(time.Millisecond))
	})

	t.Run("black hole", func(t *testing.T) {
		t.Cleanup(proxy.Heal)
		proxy.BlackHole()
		took := expectUnavailable(t, 4)
		t.Logf("black hole: 503 upstream-unavailable in %v (the first is the time to 503 with a closed breaker)", roundAll(took))
		proxy.Heal()
		t.Logf("black hole healed: 200 and complete again %v later, no restart", recovers(t).Round(time.Millisecond))
	})

	t.Run("cut", func(t *testing.T) {
		t.Cleanup(proxy.Heal)
		proxy.Cut()
		took := expectUnavailable(t, 4)
		t.Logf("connections refused: 503 upstream-unavailable in %v", roundAll(took))
		proxy.Heal()
		t.Logf("cut healed: 200 and complete again %v later", recovers(t).Round(time.Millisecond))
	})
}

// writePace is how often each of writeBooksFor's two workers starts a create: a
// steady stream (about 50 writes a second) rather than as many as the machine can
// take, so that the drain after a heal measures the reconnection more than the
// backlog's size.
const writePace = 40 * time.Millisecond

// writeBooksFor creates books for the scenario's authors from two workers, one every
// writePace each, for d: every create must answer 201 (failures are recorded in s).
// It returns how many succeeded and the slowest answer.
func writeBooksFor(s *scenario, authors []string, d time.Duration) (int64, time.Duration) {
	create := func(w int) loadWorker {
		return loadWorker{kind: kindPost, pace: writePace, do: func(n int) error {
			_, err := s.createBook(authors[(w+2*n)%len(authors)])
			return err
		}}
	}
	load := startLoad("", create(0), create(1))
	time.Sleep(d) // the stretch of writes the caller asked for, not a wait for a result
	load.stop()
	st := load.snapshot().kinds[kindPost]
	if st.failures > 0 {
		s.fail(fmt.Errorf("%d of %d POST /books failed; the first:\n  %s", st.failures, st.requests, strings.Join(st.firstFailures, "\n  ")))
	}
	return int64(st.requests - st.failures), st.max
}

// TestNetworkFaultsBookToNATS puts a proxy between the book service and a NATS
// server of the test's own (the author service, which consumes the book events,
// reaches it directly) and, under a stream of POST /books, black-holes the path,
// then resets its connections, for a while each: every write answers 201, the
// events wait in the book service's outbox, and once the path is healed the outbox
// drains and every author's book_count is exact. Under added latency, writes and
// events flow on. (Healing the black hole closes the connections it held, so the
// book service connects again at once; a flow dropped silently for good would be
// noticed only by the NATS client's pings.)
func TestNetworkFaultsBookToNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	srv := startNATSServer(t, embeddedNATS)
	env := ownNATSEnv(t, srv)
	proxy := faultproxy.New(t, net.JoinHostPort("127.0.0.1", srv.port))
	bookEnv := append(slices.Clone(env), "FOLIO_NATS_URL=nats://"+proxy.Addr())

	s := &scenario{t: t, env: env, editor: editorAuth(t), authors: map[string]bool{}, books: map[string]string{}, events: map[string]int{}}
	s.author, s.book = startPair(t, env, bookEnv)
	waitNATSConsumers(t, env, "author-books", "book-authors")

	authors := make([]string, 6)
	s.parallel(3, len(authors), func(i int) (err error) {
		if authors[i], err = s.createAuthor(); err == nil {
			// The book service learns the author here (it asks the author service
			// once), so that the writes below need only the book service.
			_, err = s.createBook(authors[i])
		}
		return err
	})
	s.checkFailures()
	s.waitConsistent("projections before any fault")
	parent := t

	// outage writes for faultLength through a broken path, checks that the events
	// could not pass (the outbox holds at least the writes made during the fault),
	// heals, and waits until the outbox drains and every book_count is exact.
	outage := func(t *testing.T, what string, breakPath func()) {
		const faultLength = 8 * time.Second
		s.t = t // the scenario's checks end this subtest, not its parent
		defer func() { s.t = parent }()
		t.Cleanup(proxy.Heal)
		breakPath()
		began := time.Now()
		n, slowest := writeBooksFor(s, authors, faultLength) // the fault's length, not a wait for a result
		s.checkFailures()
		pending, err := outboxPending(s.book)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s for %v: %d POST /books, all 201, slowest %v; book outbox pending %d",
			what, time.Since(began).Round(time.Millisecond), n, slowest.Round(time.Millisecond), pending)
		if n == 0 {
			t.Fatalf("no write succeeded during the %s", what)
		}
		if pending < int(n) {
			t.Fatalf("book outbox pending %d after %d writes during the %s: events passed the broken path", pending, n, what)
		}
		proxy.Heal()
		healed := time.Now()
		polltest.UntilWithin(t, convergeWait, "the book outbox drains after the heal", func() error {
			if n, err := outboxPending(s.book); err != nil || n != 0 {
				return fmt.Errorf("book outbox: %d pending (%v)", n, err)
			}
			return nil
		})
		drained := time.Since(healed)
		converged := s.waitConsistent("projections after the " + what + " was healed")
		t.Logf("%s healed: book outbox drained %v later, book_counts exact %v after that",
			what, drained.Round(time.Millisecond), converged.Round(time.Millisecond))
	}

	t.Run("black hole", func(t *testing.T) { outage(t, "black hole", proxy.BlackHole) })
	t.Run("reset peer", func(t *testing.T) { outage(t, "reset peer", proxy.ResetPeer) })

	t.Run("latency", func(t *testing.T) {
		const added = 300 * time.Millisecond
		s.t = t
		defer func() { s.t = parent }()
		t.Cleanup(proxy.Heal)
		proxy.Latency(added)
		began := time.Now()
		n, slowest := writeBooksFor(s, authors, 5*time.Second) // a stretch of writes, not a wait for a result
		s.checkFailures()
		t.Logf("%v added latency: %d POST /books, all 201, slowest %v", added, n, slowest.Round(time.Millisecond))
		// With the latency still on, the events flow: the outbox drains and the
		// counts become exact.
		took := s.waitConsistent(fmt.Sprintf("projections with %v of added latency", added))
		t.Logf("%v added latency: projections exact %v after the last write (%v after the first)",
			added, took.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	})
}
