package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"folio/internal/platform/authn"
)

// newFrozen starts an upstream that takes every request and never answers it until
// the test ends, whatever the client does: what a process stopped with SIGSTOP looks
// like (the kernel still accepts its connections). It counts the requests it took.
func newFrozen(t *testing.T, hits *atomic.Int64) *httptest.Server {
	t.Helper()
	thaw := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-thaw
	}))
	// Cleanups run last first: the handlers return, then the server closes.
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(thaw) })
	return srv
}

// metricLine reports whether the gateway's metrics have a line starting with want.
func metricLine(h *harness, want string) bool {
	for _, line := range strings.Split(scrapeMetrics(h.reg), "\n") {
		if strings.HasPrefix(line, want) {
			return true
		}
	}
	return false
}

// TestFrozenInstance replays defect 3 of issue 14: a frozen instance held each read
// for the whole route deadline, then 504, and was never ejected. A read now waits at
// most the try timeout there, goes to another instance, and the frozen one is
// ejected after ejectAfter timeouts in a row.
func TestFrozenInstance(t *testing.T) {
	var frozen, live atomic.Int64
	h := newHarness(t, func(c *Config) {
		c.UpstreamTimeout = 30 * time.Second // far beyond the try timeout: a 504 would take this long
		// Generous, so that the live instance never misses it on a loaded machine.
		c.TryTimeout = time.Second
		c.EjectFor = time.Hour // ejected for the rest of the test
		c.Instances[ServiceBook] = []string{newFrozen(t, &frozen).URL, newEcho(t, ServiceBook, "live", &live).URL}
	})
	editor := h.token("ed", []string{authn.RoleEditor})
	const reads = 20
	for i := range reads {
		method := []string{"GET", "HEAD", "OPTIONS"}[i%3]
		if r := h.do(method, "/books/1", editor, "", nil); r.status != http.StatusOK {
			t.Fatalf("%s %d: status %d (%s), want 200 from the live instance", method, i, r.status, r.body)
		}
	}
	if got := frozen.Load(); got != 3 {
		t.Errorf("the frozen instance took %d reads, want 3 (then ejected)", got)
	}
	if got := live.Load(); got != reads {
		t.Errorf("the live instance answered %d reads, want %d", got, reads)
	}
	for _, want := range []string{
		`gateway_upstream_retries_total{reason="timeout",service="book"} 3`,
		`gateway_instance_ejections_total{reason="timeout",service="book"} 1`,
		`gateway_upstream_requests_total{outcome="timeout",service="book"} 3`,
	} {
		if !metricLine(h, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestTryTimeoutRetriesOnAnotherInstance: the one retry after a try timeout never
// goes back to the instance that timed out, and it has the rest of the route's
// deadline, not a try timeout of its own.
func TestTryTimeoutRetriesOnAnotherInstance(t *testing.T) {
	var a, b atomic.Int64
	h := newHarness(t, func(c *Config) {
		c.UpstreamTimeout = 400 * time.Millisecond
		c.TryTimeout = 50 * time.Millisecond
		c.Instances[ServiceBook] = []string{newFrozen(t, &a).URL, newFrozen(t, &b).URL}
	})
	start := time.Now()
	wantProblem(t, h.do("GET", "/books/1", "", "", nil), http.StatusGatewayTimeout)
	if a.Load() != 1 || b.Load() != 1 {
		t.Errorf("instances took %d and %d attempts, want one each", a.Load(), b.Load())
	}
	// The second attempt waited for the route's deadline (400 ms in all), not a
	// second try timeout: an answer at 100 ms would have been cut off.
	if elapsed := time.Since(start); elapsed < 400*time.Millisecond {
		t.Errorf("504 after %v, before the route's deadline of 400ms", elapsed)
	}
	if !metricLine(h, `gateway_upstream_retries_total{reason="timeout",service="book"} 1`) {
		t.Error("the retry after the try timeout was not counted")
	}
}

// TestTryTimeoutOnlyWithAnotherInstance: with one instance there is nowhere to
// retry, so the try timeout does not cut a slow answer short.
func TestTryTimeoutOnlyWithAnotherInstance(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(150 * time.Millisecond): // a slow answer, well within the route's deadline
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	h := newHarness(t, func(c *Config) {
		c.UpstreamTimeout = 30 * time.Second
		c.TryTimeout = 20 * time.Millisecond
		c.Instances[ServiceBook] = []string{slow.URL}
	})
	if r := h.do("GET", "/books/1", "", "", nil); r.status != http.StatusOK {
		t.Fatalf("status %d (%s), want the slow instance's 200", r.status, r.body)
	}
}

// TestRefusedConnectionRetriedForAnyMethod replays the refused-connection part of
// defect 7 of issue 14: a POST to an instance that refused the connection got 503
// although nothing had been sent. It goes to another instance, body and all.
func TestRefusedConnectionRetriedForAnyMethod(t *testing.T) {
	var live atomic.Int64
	h := newHarness(t, func(c *Config) {
		c.Instances[ServiceBook] = []string{closedURL(t), newEcho(t, ServiceBook, "live", &live).URL}
	})
	editor := h.token("ed", []string{authn.RoleEditor})
	body := `{"title":"` + strings.Repeat("x", 256<<10) + `"}` // more than one read's worth
	for i, method := range []string{"POST", "PUT", "PATCH", "DELETE", "POST", "POST"} {
		r := h.do(method, "/books/1", editor, body, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s %d: status %d (%s), want 200 from the live instance", method, i, r.status, r.body)
		}
		if e := r.echo(t); e.Method != method || e.Body != body {
			t.Fatalf("%s %d: the instance saw %s with %d bytes of body, want %s with all %d", method, i, e.Method, len(e.Body), method, len(body))
		}
	}
	if !metricLine(h, `gateway_upstream_retries_total{reason="connect_error",service="book"}`) {
		t.Error("no retry after a refused connection was counted")
	}
	if !metricLine(h, `gateway_instance_ejections_total{reason="connect_error",service="book"} 1`) {
		t.Error("the refusing instance was not ejected")
	}
}

// TestSentWritesNeverRetried: a write that may have reached an instance (it timed
// out there, or its connection broke) is not sent to another one.
func TestSentWritesNeverRetried(t *testing.T) {
	for _, tc := range []struct {
		name   string
		broken func(*testing.T, *atomic.Int64) *httptest.Server
		status int
	}{
		{"timed out", newFrozen, http.StatusGatewayTimeout},
		{"connection broken", func(t *testing.T, hits *atomic.Int64) *httptest.Server {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				panic(http.ErrAbortHandler)
			}))
			t.Cleanup(srv.Close)
			return srv
		}, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bad, live atomic.Int64
			h := newHarness(t, func(c *Config) {
				c.UpstreamTimeout = 300 * time.Millisecond
				c.Instances[ServiceBook] = []string{tc.broken(t, &bad).URL, newEcho(t, ServiceBook, "live", &live).URL}
			})
			editor := h.token("ed", []string{authn.RoleEditor})
			statuses := map[int]int{}
			for range 2 { // round-robin: one to each instance
				statuses[h.do("POST", "/books", editor, `{"title":"t"}`, nil).status]++
			}
			if statuses[http.StatusOK] != 1 || statuses[tc.status] != 1 {
				t.Errorf("statuses %v, want one 200 and one %d", statuses, tc.status)
			}
			if bad.Load() != 1 || live.Load() != 1 {
				t.Errorf("the failing instance took %d POSTs and the live one %d, want 1 each (no retry)", bad.Load(), live.Load())
			}
		})
	}
}
