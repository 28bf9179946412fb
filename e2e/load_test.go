package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"folio/internal/platform/polltest"
)

// A load is steady traffic while a test breaks something (freezes an instance,
// restarts them in turn, takes the broker away, cuts a network path): workers send
// requests until it is stopped, and it keeps, for each kind of request, the latency
// and failure of each since its last reset, and the successes since it started. One
// generator for every such test, so that their figures are measured and printed the
// same way.
type load struct {
	started time.Time
	phase   atomic.Pointer[string]
	done    chan struct{}
	stop1   sync.Once
	wg      sync.WaitGroup

	mu        sync.Mutex
	kinds     []string // in the order of the workers, for the figures
	latencies map[string][]time.Duration
	failures  map[string][]string
	// badGateway counts the failures answered 502 (which failures also has).
	badGateway map[string]int
	succeeded  map[string]int // since the start, not reset
}

// The kinds of request the loads send, named as the book service's metrics name
// their routes.
const (
	kindGetByID    = "GET /books/{id}"
	kindGetByGenre = "GET /books?genre="
	kindPost       = "POST /books"
)

// A loadWorker is one goroutine of a load, sending one request after another:
// back to back, or one each pace. do sends the worker's nth request; an error is
// a failure of it (a *statusError when it was answered with the wrong status).
// do runs off the test's goroutine, so it must not call t.Fatal or anything that
// may: it returns its error instead.
type loadWorker struct {
	kind string
	pace time.Duration
	do   func(n int) error
}

// startLoad starts the workers, in phase (see setPhase); stop ends them.
func startLoad(phase string, workers ...loadWorker) *load {
	l := &load{started: time.Now(), done: make(chan struct{}), succeeded: map[string]int{}}
	l.reset()
	for _, w := range workers {
		if !slices.Contains(l.kinds, w.kind) {
			l.kinds = append(l.kinds, w.kind)
		}
	}
	l.setPhase(phase)
	for _, w := range workers {
		l.wg.Go(func() { l.run(w) })
	}
	return l
}

func (l *load) run(w loadWorker) {
	var tick <-chan time.Time
	if w.pace > 0 {
		t := time.NewTicker(w.pace)
		defer t.Stop()
		tick = t.C
	}
	for n := 0; ; n++ {
		select {
		case <-l.done:
			return
		default:
		}
		if tick != nil {
			select {
			case <-l.done:
				return
			case <-tick:
			}
		}
		start := time.Now()
		err := w.do(n)
		l.record(w.kind, time.Since(start), err)
	}
}

// setPhase names what the test is doing now, for the failures recorded meanwhile.
func (l *load) setPhase(p string) { l.phase.Store(&p) }

func (l *load) record(kind string, took time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.latencies[kind] = append(l.latencies[kind], took)
	if err == nil {
		l.succeeded[kind]++
		return
	}
	if se := (*statusError)(nil); errors.As(err, &se) && se.status == http.StatusBadGateway {
		l.badGateway[kind]++
	}
	when := "at " + time.Since(l.started).Round(time.Millisecond).String()
	if p := *l.phase.Load(); p != "" {
		when += ", " + p
	}
	l.failures[kind] = append(l.failures[kind], fmt.Sprintf("%s, after %v: %v", when, took.Round(time.Millisecond), err))
}

// stop ends the load and waits for the requests in flight.
func (l *load) stop() {
	l.stop1.Do(func() { close(l.done) })
	l.wg.Wait()
}

// reset forgets the latencies and failures recorded so far (not the successes).
func (l *load) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.latencies, l.failures, l.badGateway = map[string][]time.Duration{}, map[string][]string{}, map[string]int{}
}

// succeededSinceStart is how many requests of kind succeeded since the load started.
func (l *load) succeededSinceStart(kind string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.succeeded[kind]
}

// snapshot returns the figures since the last reset.
func (l *load) snapshot() loadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := loadStats{order: l.kinds, kinds: map[string]kindStats{}}
	for _, k := range l.kinds {
		ks := kindStats{requests: len(l.latencies[k]), failures: len(l.failures[k]), badGateway: l.badGateway[k]}
		ks.firstFailures = slices.Clone(l.failures[k][:min(5, len(l.failures[k]))])
		ks.p50, ks.p99, ks.max = latencyStats(l.latencies[k])
		s.kinds[k] = ks
		s.all = append(s.all, l.latencies[k]...)
	}
	return s
}

// loadStats are a load's figures for each kind of request since its last reset.
type loadStats struct {
	order []string
	kinds map[string]kindStats
	all   []time.Duration
}

type kindStats struct {
	requests, failures int
	badGateway         int      // of the failures, answered 502
	firstFailures      []string // the first five
	p50, p99, max      time.Duration
}

func latencyStats(lat []time.Duration) (p50, p99, max time.Duration) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	at := func(q float64) time.Duration { return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))] }
	return at(0.50), at(0.99), sorted[len(sorted)-1]
}

// total is the figures of every kind together.
func (s loadStats) total() kindStats {
	t := kindStats{requests: len(s.all)}
	for _, k := range s.order {
		t.failures += s.kinds[k].failures
		t.badGateway += s.kinds[k].badGateway
		t.firstFailures = append(t.firstFailures, s.kinds[k].firstFailures...)
	}
	t.p50, t.p99, t.max = latencyStats(s.all)
	return t
}

func (k kindStats) String() string {
	return fmt.Sprintf("%d, %d failed, p50 %v, p99 %v, max %v", k.requests, k.failures,
		k.p50.Round(time.Microsecond), k.p99.Round(time.Microsecond), k.max.Round(time.Microsecond))
}

// failuresText says how many of each kind failed, and the first failures.
func (s loadStats) failuresText() string {
	var b strings.Builder
	for _, k := range s.order {
		if ks := s.kinds[k]; ks.failures > 0 {
			fmt.Fprintf(&b, "\n%d of %d %s failed; the first:\n  %s", ks.failures, ks.requests, k, strings.Join(ks.firstFailures, "\n  "))
		}
	}
	return b.String()
}

// String gives the figures of each kind, and of all together when there are several.
func (s loadStats) String() string {
	var parts []string
	if len(s.order) > 1 {
		parts = append(parts, "all: "+s.total().String())
	}
	for _, k := range s.order {
		parts = append(parts, k+": "+s.kinds[k].String())
	}
	return strings.Join(parts, "; ")
}

// statusError is an answer with a status other than the one a load's request wanted.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// httpRequests is a loadWorker's do that sends request(n) with hc and wants the
// status want: any other answer is a *statusError with the body and Retry-After.
func httpRequests(hc *http.Client, want int, request func(n int) (*http.Request, error)) func(n int) error {
	return func(n int) error {
		req, err := request(n)
		if err != nil {
			return fmt.Errorf("the test's own request is malformed: %w", err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == want {
			return nil
		}
		msg := strconv.Itoa(resp.StatusCode) + " " + strings.TrimSpace(string(b))
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			msg += " (Retry-After: " + ra + ")"
		}
		return &statusError{status: resp.StatusCode, msg: msg}
	}
}

// getRequests is httpRequests for a GET of url(n) that wants 200.
func getRequests(hc *http.Client, url func(n int) string) func(n int) error {
	return httpRequests(hc, http.StatusOK, func(n int) (*http.Request, error) {
		return http.NewRequest("GET", url(n), nil)
	})
}

// The load generator itself, on a server of the test's own: every request is
// counted once, as a success or as a failure, and a 502 as a bad gateway.
func TestLoadCountsEveryRequestOnce(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1)%3 == 0 {
			http.Error(w, "upstream gone", http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	l := startLoad("steady", loadWorker{kind: kindGetByID, do: getRequests(srv.Client(), func(int) string { return srv.URL })},
		loadWorker{kind: kindGetByID, do: getRequests(srv.Client(), func(int) string { return srv.URL })})
	defer l.stop()
	polltest.Until(t, "30 requests answered", func() error {
		if got := l.snapshot().total().requests; got < 30 {
			return fmt.Errorf("%d answered", got)
		}
		return nil
	})
	l.stop()
	st := l.snapshot()
	k := st.kinds[kindGetByID]
	if int64(k.requests) != n.Load() {
		t.Errorf("%d requests counted, the server answered %d", k.requests, n.Load())
	}
	if k.failures != k.badGateway || k.failures != int(n.Load()/3) {
		t.Errorf("%d failures, %d of them 502, want %d of each", k.failures, k.badGateway, n.Load()/3)
	}
	if got := l.succeededSinceStart(kindGetByID); got != k.requests-k.failures {
		t.Errorf("%d successes, want %d", got, k.requests-k.failures)
	}
	if len(k.firstFailures) == 0 || !strings.Contains(k.firstFailures[0], "steady") || !strings.Contains(k.firstFailures[0], "502 upstream gone") {
		t.Errorf("first failures %q do not name the phase and the answer", k.firstFailures)
	}
}
