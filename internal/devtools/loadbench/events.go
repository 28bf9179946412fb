package loadbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"folio/internal/platform/httpserver"
)

// Targets of the events part, from the issue: on NATS, at least this many events per
// second end to end, and at most this p99 from a write's 201 to the projection
// showing it, at eventsTargetRate writes per second.
const (
	eventsTargetPerSec = 2000
	eventsTargetP99    = 250 * time.Millisecond
)

// Polling of the author service's projection (GET /authors?limit=100, which lists
// every author of the run with its book_count).
const (
	// throughputPoll is how often the throughput and drain phases look at the
	// projection: the error of their end time.
	throughputPoll = 50 * time.Millisecond
	// latencyPoll is how often the latency phase looks at it: the error of each
	// latency, on top of one poll's round trip.
	latencyPoll = 5 * time.Millisecond
	// applyTimeout is how long a phase waits for the projection to catch up after
	// its last write before it reports what it has.
	applyTimeout = 2 * time.Minute
)

// eventsResult is what the events part measured on one broker.
type eventsResult struct {
	broker string // "nats" or "rabbitmq"
	setup  string // how the broker ran

	// Throughput: books written as fast as the book service takes them, and the
	// time until the author service had applied them all.
	written      int
	writeTook    time.Duration // first POST sent to last 201
	appliedTook  time.Duration // first POST sent to the poll that saw the last applied
	applied      int           // events the projection showed at the end
	throughputOK bool          // all applied within applyTimeout
	throughCPU   cpuUse

	// Drain: books written while the author service was stopped, then the time it
	// took, restarted, to apply them.
	drained     int
	drainWrite  time.Duration // time to write them, author stopped
	drainFrom   int           // events still to apply at the first successful poll after the restart
	drainTook   time.Duration // first successful poll after the restart to the poll that saw the last applied
	drainStart  time.Duration // process start to the poll that saw the last applied
	drainOK     bool
	drainCPU    cpuUse
	publishWait time.Duration // time the book relay took to publish the backlog before the restart

	// Latency at a fixed rate of writes.
	rate        int
	sent        int // POSTs sent
	created     int // 201 answers
	postLat     []time.Duration
	lat         []time.Duration // 201 to projection, sorted
	unmatched   int             // 201s whose event the projection did not show in time
	pollRTT     []time.Duration
	latencyCPU  cpuUse
	latencyErrs []string
}

// eventsSystem is the book and author services on one broker, for the events part,
// and the auth service whose token they take writes with.
type eventsSystem struct {
	dir         string
	progs       map[string]string
	broker      *brokerSetup
	bookURL     string
	authorURL   string
	authURL     string
	bookMetrics string // the URL of book's /metrics, on its metrics listener
	book        *proc
	author      *proc
	auth        *proc
	token       string // the benchmark admin's, for every write
	authorRuns  int    // author's starts so far, which name their log files
	bookRuns    int    // book's starts so far
	isbns       atomic.Uint64
}

// authorCounts are the book counts the projection must reach, one per author.
type authorCounts []atomic.Int64

func (c authorCounts) want() []int {
	w := make([]int, len(c))
	for i := range c {
		w[i] = int(c[i].Load())
	}
	return w
}

// startEventsSystem starts auth, book and author on fresh databases under dir, with
// b as their broker, logs in as the benchmark's admin and waits until book and
// author answer.
func startEventsSystem(ctx context.Context, dir string, progs map[string]string, b *brokerSetup) (es *eventsSystem, err error) {
	es = &eventsSystem{dir: dir, progs: progs, broker: b}
	defer func() {
		if err != nil {
			_ = es.stop()
		}
	}()
	if es.auth, es.authURL, err = startAuth(ctx, dir, progs, b); err != nil {
		return nil, err
	}
	if err := es.auth.waitReady(ctx, es.authURL+"/readyz"); err != nil {
		return nil, err
	}
	if es.token, err = login(ctx, es.authURL, benchAdminEmail, benchAdminPassword); err != nil {
		return nil, fmt.Errorf("log in to the auth service: %w", err)
	}
	if err := es.startBookAndAuthor(ctx); err != nil {
		return nil, err
	}
	return es, nil
}

// startBookAndAuthor starts book on any port and author on a port picked for it,
// each told the other's URL (startPeers), on their databases under es.dir, and
// waits until both answer.
func (es *eventsSystem) startBookAndAuthor(ctx context.Context) error {
	var bookAddrs, authorAddrs httpserver.Addrs
	var err error
	es.book, bookAddrs, es.author, authorAddrs, err = startPeers(ctx,
		func(_ int, authorURL string) (*proc, httpserver.Addrs, error) {
			es.bookRuns++
			return startReporting(ctx, es.dir, attemptName("book", es.bookRuns), es.progs["book"], nil, slices.Concat([]string{
				"FOLIO_HTTP_ADDR=" + anyPort,
				"FOLIO_DATA_DIR=" + filepath.Join(es.dir, "book-data"),
				"FOLIO_AUTHOR_URL=" + authorURL,
				"FOLIO_METRICS_ADDR=" + anyPort,
			}, tokenEnv(es.authURL), es.broker.env()))
		},
		func(_ int, addr, bookURL string) (*proc, httpserver.Addrs, error) {
			return es.startAuthorOn(ctx, addr, bookURL)
		})
	if err != nil {
		return err
	}
	es.bookURL, es.authorURL = "http://"+bookAddrs.HTTP, "http://"+authorAddrs.HTTP
	es.bookMetrics = "http://" + bookAddrs.Metrics + "/metrics"
	if err := es.author.waitReady(ctx, es.authorURL+"/readyz"); err != nil {
		return err
	}
	return es.book.waitReady(ctx, es.bookURL+"/readyz")
}

// startAuthorOn starts the author service on addr, told that book is at bookURL.
func (es *eventsSystem) startAuthorOn(ctx context.Context, addr, bookURL string) (*proc, httpserver.Addrs, error) {
	es.authorRuns++
	return startReporting(ctx, es.dir, attemptName("author", es.authorRuns), es.progs["author"], nil, slices.Concat([]string{
		"FOLIO_HTTP_ADDR=" + addr,
		"FOLIO_DATA_DIR=" + filepath.Join(es.dir, "author-data"),
		"FOLIO_BOOK_URL=" + bookURL,
	}, tokenEnv(es.authURL), es.broker.env()))
}

// restartAuthor starts the author service again, on its database and, so that book
// keeps reaching it, on its address. When another program has taken that address
// since, book (which was told it) and author start again on new ones, and
// es.bookURL, es.authorURL and es.bookMetrics change.
func (es *eventsSystem) restartAuthor(ctx context.Context) error {
	p, _, err := es.startAuthorOn(ctx, strings.TrimPrefix(es.authorURL, "http://"), es.bookURL)
	if errors.Is(err, errPortTaken) {
		es.book.cancel()
		<-es.book.done
		es.book = nil
		return es.startBookAndAuthor(ctx)
	}
	if err != nil {
		return err
	}
	es.author = p
	return es.author.waitReady(ctx, es.authorURL+"/readyz")
}

// stopAuthor stops the author service (SIGTERM) and waits until it has exited.
func (es *eventsSystem) stopAuthor() error {
	err := es.author.exitedEarly()
	es.author.cancel()
	<-es.author.done
	es.author = nil
	return err
}

// watched returns the processes whose CPU the events part reports, in the order
// of eventsWatchedNames.
func (es *eventsSystem) watched() []watchedProc {
	pid := func(p *proc) int {
		if p == nil {
			return 0
		}
		return p.pid
	}
	return []watchedProc{{pid: os.Getpid()}, {pid: pid(es.book)}, {pid: pid(es.author)}, {pid: pid(es.broker.natsProc())}}
}

// eventsWatchedNames names the columns of the events part's CPU table.
var eventsWatchedNames = []string{"load generator", "book", "author", "nats"}

// stop stops book, author and auth, then the broker (or cleans it up).
func (es *eventsSystem) stop() error {
	return stopAll(es.broker, es.author, es.book, es.auth)
}

// bookBody returns the JSON of a new book by authorID with a unique ISBN.
func (es *eventsSystem) bookBody(authorID string) []byte {
	return bookJSON(es.isbns.Add(1), authorID, genres[0])
}

// runEvents measures events on one broker: it starts book and author on fresh
// databases with b, creates the authors, then runs the latency, throughput and drain
// phases.
func runEvents(ctx context.Context, s settings, dir string, progs map[string]string, b *brokerSetup, progress io.Writer) (res *eventsResult, err error) {
	es, err := startEventsSystem(ctx, dir, progs, b)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := es.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	res = &eventsResult{broker: b.kind, setup: describeBroker(b)}
	client := &http.Client{
		Timeout:   requestTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: max(s.workers, 64)},
	}
	defer client.CloseIdleConnections()
	run, err := newEventsRun(ctx, s, es, client)
	if err != nil {
		return nil, err
	}

	// Latency at a fixed rate, first, while the projection is small and the polls
	// that list every author's book_count cost the author service least.
	fmt.Fprintf(progress, "events on %s: latency, %d writes/s for %s ...\n", b.kind, s.eventsRate, s.eventsDuration)
	if err := run.measureLatency(ctx, res); err != nil {
		return nil, fmt.Errorf("latency: %w", err)
	}
	if res.unmatched > 0 {
		return res, nil
	}
	fmt.Fprintf(progress, "events on %s: throughput, %d books ...\n", b.kind, s.eventsBooks)
	if err := run.measureThroughput(ctx, res); err != nil {
		return nil, err
	}
	if !res.throughputOK {
		return res, nil
	}
	fmt.Fprintf(progress, "events on %s: drain, %d books written while the author service is stopped ...\n", b.kind, s.eventsBooks)
	if err := run.measureDrain(ctx, res); err != nil {
		return nil, err
	}
	return res, nil
}

// describeBroker says how b runs, for the report.
func describeBroker(b *brokerSetup) string {
	if b.nats != nil {
		return "own NATS server (child process, internal/devtools/localnats: JetStream, SyncAlways), stream " + b.stream
	}
	return "RabbitMQ at " + redactURL(b.url) + ", exchange " + b.stream
}

// eventsRun is the events part on one broker: the system, the authors its books
// are by, and the book count each author's projection must reach.
type eventsRun struct {
	s         settings
	es        *eventsSystem
	client    *http.Client
	proj      projection
	authorIDs []string
	want      authorCounts
	next      atomic.Uint64 // the author of the next book of the throughput and drain phases
}

// newEventsRun creates s.eventsAuthors authors on es.
func newEventsRun(ctx context.Context, s settings, es *eventsSystem, client *http.Client) (*eventsRun, error) {
	authorIDs, err := createAll(ctx, client, es.authorURL+"/authors", es.token, s.eventsAuthors, func(i int) []byte {
		body, _ := json.Marshal(map[string]string{"name": fmt.Sprintf("Events Author %03d", i+1)})
		return body
	})
	if err != nil {
		return nil, fmt.Errorf("create authors: %w", err)
	}
	return &eventsRun{s: s, es: es, client: client, authorIDs: authorIDs, want: make(authorCounts, len(authorIDs)),
		proj: projection{client: client, url: es.authorURL + "/authors?limit=100", authorURL: es.authorURL + "/authors/"}}, nil
}

// nextBook returns the body of a book by the next author in turn, and counts it in
// that author's want (a failed POST fails the phase).
func (r *eventsRun) nextBook(int) []byte {
	i := r.next.Add(1) % uint64(len(r.authorIDs))
	r.want[i].Add(1)
	return r.es.bookBody(r.authorIDs[i])
}

// writeBooks POSTs s.eventsBooks books as fast as the book service takes them, and
// returns when the first was sent.
func (r *eventsRun) writeBooks(ctx context.Context) (time.Time, error) {
	start := time.Now()
	_, err := createAllWith(ctx, r.client, r.es.bookURL+"/books", r.es.token, r.s.eventsBooks, r.s.workers, r.nextBook)
	return start, err
}

// measureThroughput writes books as fast as the book service takes them, then
// waits for the projection to show them all.
func (r *eventsRun) measureThroughput(ctx context.Context, res *eventsResult) error {
	before := sampleCPU(r.es.watched())
	start, err := r.writeBooks(ctx)
	if err != nil {
		return fmt.Errorf("throughput: write books: %w", err)
	}
	res.written, res.writeTook = r.s.eventsBooks, time.Since(start)
	at, ok, err := r.proj.waitAuthors(ctx, r.authorIDs, r.want.want(), throughputPoll, applyTimeout)
	if err != nil {
		return fmt.Errorf("throughput: %w", err)
	}
	res.throughCPU = cpuBetween(before, sampleCPU(r.es.watched()))
	res.appliedTook, res.throughputOK = at.Sub(start), ok
	if !ok {
		res.applied, _, _ = r.proj.total(ctx)
	}
	return nil
}

// measureDrain writes a backlog while the author service is stopped, restarts it
// and times how fast it applies the backlog.
func (r *eventsRun) measureDrain(ctx context.Context, res *eventsResult) error {
	if err := r.writeBacklog(ctx, res); err != nil {
		return err
	}
	before := sampleCPU(r.es.watched())
	restart := time.Now()
	if err := r.es.restartAuthor(ctx); err != nil {
		return err
	}
	// The author service may have come back at another URL (restartAuthor).
	r.proj.url, r.proj.authorURL = r.es.authorURL+"/authors?limit=100", r.es.authorURL+"/authors/"
	first, firstAt, err := r.proj.total(ctx)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	wantAll := r.want.want()
	total := 0
	for _, n := range wantAll {
		total += n
	}
	at, ok, err := r.proj.waitAuthors(ctx, r.authorIDs, wantAll, throughputPoll, applyTimeout)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	res.drainCPU = cpuBetween(before, sampleCPU(r.es.watched()))
	res.drainFrom, res.drainTook, res.drainStart, res.drainOK = total-first, at.Sub(firstAt), at.Sub(restart), ok
	return nil
}

// writeBacklog stops the author service, writes the drain's books and waits until
// the book relay has published them all.
func (r *eventsRun) writeBacklog(ctx context.Context, res *eventsResult) error {
	if err := r.es.stopAuthor(); err != nil {
		return err
	}
	published, err := metricValue(ctx, r.client, r.es.bookMetrics, "folio_outbox_published_total")
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	start, err := r.writeBooks(ctx)
	if err != nil {
		return fmt.Errorf("drain: write books: %w", err)
	}
	res.drained, res.drainWrite = r.s.eventsBooks, time.Since(start)
	pubStart := time.Now()
	if err := waitPublished(ctx, r.client, r.es.bookMetrics, published+float64(r.s.eventsBooks)); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	res.publishWait = time.Since(pubStart)
	return nil
}

// measureLatency POSTs books at s.eventsRate per second for s.eventsDuration, each
// to the next author in turn, and for each 201 finds when the author's book_count
// first showed it.
func (r *eventsRun) measureLatency(ctx context.Context, res *eventsResult) error {
	base, _, err := r.proj.counts(ctx)
	if err != nil {
		return err
	}
	l := newLatencyLog(base, r.authorIDs)
	pollCtx, stopPolling := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		l.follow(pollCtx, r.proj)
	}()
	defer func() { stopPolling(); <-pollDone }()

	before := sampleCPU(r.es.watched())
	total, err := r.postAtRate(ctx, l)
	if err != nil {
		return err
	}
	res.rate, res.sent = r.s.eventsRate, total
	if err := l.waitApplied(ctx, applyTimeout); err != nil {
		return err
	}
	stopPolling()
	<-pollDone
	res.latencyCPU = cpuBetween(before, sampleCPU(r.es.watched()))
	l.results(res, r.want)
	return nil
}

// postAtRate POSTs s.eventsRate books a second for s.eventsDuration, each by the
// next author in turn, recording each answer in l, and returns how many it sent
// once all are answered.
func (r *eventsRun) postAtRate(ctx context.Context, l *latencyLog) (int, error) {
	total := int(float64(r.s.eventsRate) * r.s.eventsDuration.Seconds())
	interval := time.Second / time.Duration(r.s.eventsRate)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(d):
			}
		}
		a := i % len(r.authorIDs)
		body := r.es.bookBody(r.authorIDs[a])
		wg.Go(func() {
			t0 := time.Now()
			_, err := create(ctx, r.client, r.es.bookURL+"/books", r.es.token, body)
			l.posted(a, t0, time.Now(), err)
		})
	}
	wg.Wait()
	return total, nil
}

// latencyLog is what the latency phase saw: per author, when each of its books was
// created and when the projection first counted each.
type latencyLog struct {
	base  map[string]int // book_count per author id before the phase
	index map[string]int // position of each author id in the run's authors

	mu      sync.Mutex
	sent    [][]time.Time // per author, the 201s, in order
	applied [][]time.Time // per author, when book_count first reached base+1, base+2…
	postLat []time.Duration
	pollRTT []time.Duration
	errs    []string // the first few failed POSTs
}

func newLatencyLog(base map[string]int, authorIDs []string) *latencyLog {
	index := map[string]int{}
	for i, id := range authorIDs {
		index[id] = i
	}
	return &latencyLog{base: base, index: index,
		sent: make([][]time.Time, len(authorIDs)), applied: make([][]time.Time, len(authorIDs))}
}

// posted records the answer to a POST of a book by author a, sent at t0 and
// answered at t1.
func (l *latencyLog) posted(a int, t0, t1 time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if len(l.errs) < 3 {
			l.errs = append(l.errs, err.Error())
		}
		return
	}
	l.postLat = append(l.postLat, t1.Sub(t0))
	l.sent[a] = append(l.sent[a], t1)
}

// follow polls the projection every latencyPoll until ctx ends, recording when
// each author's book_count first reached each new value.
func (l *latencyLog) follow(ctx context.Context, proj projection) {
	tick := time.NewTicker(latencyPoll)
	defer tick.Stop()
	for {
		t0 := time.Now()
		if counts, seen, err := proj.counts(ctx); err == nil {
			l.seen(counts, t0, seen)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// seen records the counts of a poll sent at t0 and answered at at.
func (l *latencyLog) seen(counts map[string]int, t0, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pollRTT = append(l.pollRTT, at.Sub(t0))
	for id, c := range counts {
		i, ok := l.index[id]
		if !ok {
			continue
		}
		for len(l.applied[i]) < c-l.base[id] {
			l.applied[i] = append(l.applied[i], at)
		}
	}
}

// waitApplied waits until the projection has counted every 201, or timeout.
func (l *latencyLog) waitApplied(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !l.allApplied() && !time.Now().After(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (l *latencyLog) allApplied() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.sent {
		if len(l.applied[i]) < len(l.sent[i]) {
			return false
		}
	}
	return true
}

// results puts what l saw into res, and counts the created books in want.
func (l *latencyLog) results(res *eventsResult, want authorCounts) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for a, ts := range l.sent {
		res.created += len(ts)
		want[a].Add(int64(len(ts)))
	}
	res.lat, res.unmatched = matchLatencies(l.sent, l.applied)
	slices.Sort(l.postLat)
	slices.Sort(l.pollRTT)
	res.postLat, res.pollRTT, res.latencyErrs = l.postLat, l.pollRTT, l.errs
}

// matchLatencies pairs, per author, the k-th 201 (sent[a][k], in the order they
// came) with the time the projection first showed k+1 new books of that author
// (applied[a][k]), and returns the latencies, sorted, and how many 201s have no
// such time. The book service's relay publishes in commit order and the author
// service applies with one consumer, so the k-th book committed is the k-th one
// counted; a projection seen to count a book before its 201 arrived counts as 0.
func matchLatencies(sent, applied [][]time.Time) (lat []time.Duration, unmatched int) {
	for a := range sent {
		for k, t := range sent[a] {
			if a >= len(applied) || k >= len(applied[a]) {
				unmatched++
				continue
			}
			lat = append(lat, max(0, applied[a][k].Sub(t)))
		}
	}
	slices.Sort(lat)
	return lat, unmatched
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted, by the
// nearest-rank method: the smallest value with at least p % of them at or below it.
// It returns 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100 + 0.999999999)
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// projection reads the author service's book counts.
type projection struct {
	client    *http.Client
	url       string // GET /authors?limit=100
	authorURL string // GET /authors/{id} is authorURL + id
}

// count returns one author's book_count and when the answer came.
func (p projection) count(ctx context.Context, id string) (int, time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.authorURL+id, nil)
	if err != nil {
		return 0, time.Time{}, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, time.Time{}, fmt.Errorf("GET %s%s: %s", p.authorURL, id, resp.Status)
	}
	var a struct {
		BookCount int `json:"book_count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return 0, time.Time{}, fmt.Errorf("GET %s%s: %w", p.authorURL, id, err)
	}
	return a.BookCount, time.Now(), nil
}

// waitAuthors polls the authors one after the other (GET /authors/{id}, one author
// at a time, each until its book_count reaches want, every interval) and returns
// when the last of them was seen complete, or false after timeout. One cheap request
// per poll keeps the poller from slowing the consumer it watches; listing every
// author's count would cost the author service a count of every book per poll.
func (p projection) waitAuthors(ctx context.Context, ids []string, want []int, interval, timeout time.Duration) (time.Time, bool, error) {
	deadline := time.Now().Add(timeout)
	var last time.Time
	for i := 0; i < len(ids); {
		n, at, err := p.count(ctx, ids[i])
		switch {
		case err == nil && n >= want[i]:
			last = at
			i++
			continue
		case ctx.Err() != nil:
			return last, false, ctx.Err()
		case time.Now().After(deadline):
			if err != nil {
				return last, false, err
			}
			return last, false, nil
		}
		select {
		case <-ctx.Done():
			return last, false, ctx.Err()
		case <-time.After(interval):
		}
	}
	return last, true, nil
}

// counts returns every author's book_count and when the answer came.
func (p projection) counts(ctx context.Context) (map[string]int, time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return nil, time.Time{}, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer resp.Body.Close()
	var page struct {
		Items []struct {
			ID        string `json:"id"`
			BookCount int    `json:"book_count"`
		} `json:"items"`
		NextCursor *string `json:"next_cursor"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, time.Time{}, fmt.Errorf("GET %s: %s", p.url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return nil, time.Time{}, fmt.Errorf("GET %s: %w", p.url, err)
	}
	at := time.Now()
	if page.NextCursor != nil {
		return nil, at, fmt.Errorf("GET %s: more than one page of authors", p.url)
	}
	counts := make(map[string]int, len(page.Items))
	for _, a := range page.Items {
		counts[a.ID] = a.BookCount
	}
	return counts, at, nil
}

// total returns the sum of the book counts, retrying for readyTimeout while the
// author service does not answer (as after a restart).
func (p projection) total(ctx context.Context) (int, time.Time, error) {
	deadline := time.Now().Add(readyTimeout)
	for {
		counts, at, err := p.counts(ctx)
		if err == nil {
			return sum(counts), at, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, at, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPublished polls the book service's /metrics until its relay has published
// want events (folio_outbox_published_total), for at most applyTimeout.
func waitPublished(ctx context.Context, client *http.Client, url string, want float64) error {
	deadline := time.Now().Add(applyTimeout)
	for {
		got, err := metricValue(ctx, client, url, "folio_outbox_published_total")
		if err == nil && got >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the book relay published %.0f of %.0f events within %s (%v)", got, want, applyTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// metricValue reads one unlabelled metric from a Prometheus text exposition.
func metricValue(ctx context.Context, client *http.Client, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in %s", name, url)
}

// redactURL drops the password from a URL for the report.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok {
		return u
	}
	user, _, _ := strings.Cut(userinfo, ":")
	return scheme + "://" + user + ":***@" + host
}

// perSec is n per d, 0 for no time.
func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// reportEvents prints the events part's results and its targets.
func reportEvents(w io.Writer, s settings, results []*eventsResult, skipped []string) {
	reportEventsSetup(w, s, results, skipped)
	reportThroughputAndDrain(w, s, results)
	reportLatency(w, results)
	if len(results) > 0 && results[0].throughCPU.ok {
		reportEventsCPU(w, results)
	}
	reportEventsTargets(w, results)
}

// reportEventsSetup prints what was measured, on which brokers, and how.
func reportEventsSetup(w io.Writer, s settings, results []*eventsResult, skipped []string) {
	fmt.Fprintln(w, "\nevents: book.created, from the book service's outbox through the broker to the author service's book_count")
	for _, r := range results {
		fmt.Fprintf(w, "  %s: %s\n", r.broker, r.setup)
	}
	for _, sk := range skipped {
		fmt.Fprintf(w, "  %s\n", sk)
	}
	fmt.Fprintf(w, "  %d authors, fresh databases per broker; phases in this order: latency, throughput, drain. The projection is polled\n", s.eventsAuthors)
	fmt.Fprintf(w, "  with GET /authors?limit=100 every %s (latency), and GET /authors/{id} one author at a time every %s (throughput, drain)\n",
		latencyPoll, throughputPoll)
}

// reportThroughputAndDrain prints the table of the throughput and drain phases.
func reportThroughputAndDrain(w io.Writer, s settings, results []*eventsResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nbroker\tbooks\twrites/s\tend to end events/s\tapplied after last 201\tdrain: published after last 201\tdrain events\tdrain events/s\tdrain from restart")
	for _, r := range results {
		drain, drainRate, drainStart, published := "-", "-", "-", "-"
		if r.drained > 0 {
			published = r.publishWait.Round(time.Millisecond).String()
		}
		if r.drainOK {
			drain = strconv.Itoa(r.drainFrom)
			drainRate = fmt.Sprintf("%.0f", perSec(r.drainFrom, r.drainTook))
			drainStart = r.drainStart.Round(time.Millisecond).String()
		}
		e2e := fmt.Sprintf("%.0f", perSec(r.written, r.appliedTook))
		if !r.throughputOK {
			e2e = fmt.Sprintf("incomplete: %d of %d applied in %s", r.applied, r.written, r.appliedTook.Round(time.Millisecond))
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\n", r.broker, r.written, perSec(r.written, r.writeTook), e2e,
			(r.appliedTook - r.writeTook).Round(time.Millisecond), published, drain, drainRate, drainStart)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "books are POSTed with %d workers (closed loop); writes/s is 201s per second; end to end is books / (first POST to\n", s.workers)
	fmt.Fprintln(w, "the poll that saw the last one applied), so it cannot exceed writes/s. The drain writes as many books with the author")
	fmt.Fprintln(w, "service stopped, waits until the book relay has published them all (folio_outbox_published_total on book's /metrics,")
	fmt.Fprintln(w, "polled every 20ms: \"published after last 201\" is how far the relay was behind the writes), restarts author and times the apply alone:")
	fmt.Fprintln(w, "drain events/s counts from the first answer of the restarted service; drain from restart includes its start.")
}

// reportLatency prints the table of the latency phase, and its failed POSTs.
func reportLatency(w io.Writer, results []*eventsResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nbroker\twrites/s asked\t201s\tPOST p50\tPOST p99\t201→projection p50\tp90\tp99\tmax\tnot seen\tpoll round trip p50")
	for _, r := range results {
		if r.rate == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.broker, r.rate, r.created, r.sent,
			ms(percentile(r.postLat, 50)), ms(percentile(r.postLat, 99)),
			ms(percentile(r.lat, 50)), ms(percentile(r.lat, 90)), ms(percentile(r.lat, 99)), ms(percentile(r.lat, 100)),
			r.unmatched, ms(percentile(r.pollRTT, 50)))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "201→projection is from the POST's 201 to the answer of the first poll whose book_count shows it: overstated by up\n")
	fmt.Fprintf(w, "to one poll interval (%s) plus a poll's round trip, never understated but by that round trip.\n", latencyPoll)
	for _, r := range results {
		for _, e := range r.latencyErrs {
			fmt.Fprintf(w, "%s: POST failed: %s\n", r.broker, e)
		}
	}
}

// reportEventsCPU prints the CPU each program used in each phase.
func reportEventsCPU(w io.Writer, results []*eventsResult) {
	fmt.Fprintf(w, "\nCPU used during each events phase, in cores:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "broker\tphase\t%s\tkernel\tother programs\n", strings.Join(eventsWatchedNames, "\t"))
	for _, r := range results {
		for _, ph := range []struct {
			name string
			c    cpuUse
		}{{"latency", r.latencyCPU}, {"throughput", r.throughCPU}, {"drain", r.drainCPU}} {
			if !ph.c.ok {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s", r.broker, ph.name)
			for i, c := range ph.c.procs {
				if i == 3 && r.broker != "nats" {
					fmt.Fprint(tw, "\t-")
					continue
				}
				fmt.Fprintf(tw, "\t%.2f", c)
			}
			fmt.Fprintf(tw, "\t%.2f\t%.2f\n", ph.c.kernel, ph.c.others)
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "a RabbitMQ server of the machine counts under other programs.")
}

// reportEventsTargets prints, per broker, whether the targets were met.
func reportEventsTargets(w io.Writer, results []*eventsResult) {
	fmt.Fprintln(w, "\nevents targets (from the issue, stated for NATS; reported, not enforced):")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	for _, r := range results {
		e2e := perSec(r.written, r.appliedTook)
		fmt.Fprintf(w, "  %-8s end to end >= %d events/s: %6.0f  %s", r.broker, eventsTargetPerSec, e2e,
			verdict(r.throughputOK && e2e >= eventsTargetPerSec))
		if r.drainOK {
			fmt.Fprintf(w, " (drain alone: %.0f events/s)", perSec(r.drainFrom, r.drainTook))
		}
		fmt.Fprintln(w)
		if r.rate > 0 {
			p99 := percentile(r.lat, 99)
			fmt.Fprintf(w, "  %-8s p99 201→projection <= %s at %d writes/s: %s  %s\n", r.broker, ms(eventsTargetP99), r.rate,
				ms(p99), verdict(r.unmatched == 0 && len(r.lat) > 0 && p99 <= eventsTargetP99))
		}
	}
}
