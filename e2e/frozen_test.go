package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"folio/internal/platform/polltest"
)

// TestGatewayFrozenInstance replays defect 3 and part of 7 of issue 14 with three
// book instances behind the gateway (static URLs, so that only the gateway's own
// rules are at work, not discovery's TTL). One is stopped with SIGSTOP for
// freezeFor under a steady GET load: no GET may fail; started again, it gets
// traffic again. Then one is killed, and a POST whose first instance refuses the
// connection succeeds on another.
func TestGatewayFrozenInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	const freezeFor = 15 * time.Second
	jwks := testIssuer(t).Env()
	bookDB := "FOLIO_DATABASE_URL=sqlite:" + filepath.Join(t.TempDir(), "book.db")
	// The first book instance, the author service's peer, migrates the shared database.
	author, book0 := startPair(t, nil, []string{bookDB})
	books := []*service{book0}
	for range 2 {
		books = append(books, startService(t, "book", anyAddr, bookDB, "FOLIO_AUTHOR_URL="+author.URL()))
	}
	// The default try timeout (FOLIO_UPSTREAM_TRY_TIMEOUT) is what is tested.
	gw := startExtra(t, "gateway", anyAddr, slices.Concat(gatewayEnv(&service{addr: "127.0.0.1:1"}, author, books,
		"FOLIO_RATE_LIMIT=100000", "FOLIO_RATE_BURST=100000"), jwks)...)
	g := gw.URL()

	r := call(t, "POST", author.URL()+"/authors", map[string]any{"name": "Octavia E. Butler"}, "Authorization", editorAuth(t))
	expect(t, r, http.StatusCreated)
	authorID := r.json(t)["id"].(string)
	r = call(t, "POST", g+"/books", map[string]any{"title": "Kindred", "author_id": authorID, "genre": "sf"}, "Authorization", editorAuth(t))
	expect(t, r, http.StatusCreated)
	bookID := r.json(t)["id"].(string)

	t.Run("SIGSTOP", func(t *testing.T) {
		victim := books[2]
		const route = "GET /books/{id}"
		load := startGETLoad(g+"/books/"+bookID, 4)
		defer load.stop()
		// Every instance serves before the freeze, so the victim is in rotation.
		polltest.Until(t, "every book instance serves GET /books/{id}", func() error {
			for i, b := range books {
				if n, err := readRouteCount(b.MetricsURL(), route, "200"); err != nil || n == 0 {
					return fmt.Errorf("instance %d: %v served (%v)", i, n, err)
				}
			}
			return nil
		})
		t.Logf("before the freeze: %s", load.snapshot())

		t.Cleanup(func() { _ = victim.cmd.Process.Signal(syscall.SIGCONT) }) // whatever happens
		victim.signal(syscall.SIGSTOP)
		load.reset()
		time.Sleep(freezeFor) // the scenario's length, not a wait for something to happen
		during := load.snapshot()
		victim.signal(syscall.SIGCONT)
		t.Logf("during the %v freeze: %s", freezeFor, during)
		t.Logf("gateway metrics: %s", gatewayRetryMetrics(t, gw))
		if during.total().requests == 0 {
			t.Fatal("no GET completed during the freeze")
		}
		if during.total().failures > 0 {
			t.Errorf("GETs failed during the freeze: %s", during.failuresText())
		}

		// Thawed, it is tried again once its ejection ends, and answers.
		served, err := readRouteCount(victim.MetricsURL(), route, "200")
		if err != nil {
			t.Fatal(err)
		}
		polltest.Until(t, "the thawed instance serves GET /books/{id} again", func() error {
			n, err := readRouteCount(victim.MetricsURL(), route, "200")
			if err != nil {
				return err
			}
			if n <= served {
				return errors.New("no new 200 counted on it")
			}
			return nil
		})
		load.stop()
		if after := load.snapshot(); after.total().failures > 0 {
			t.Errorf("GETs failed after the thaw: %s", after.failuresText())
		}
	})

	t.Run("POST refused", func(t *testing.T) {
		books[1].kill() // its port refuses connections now
		before := gatewayCounter(t, gw, `gateway_upstream_retries_total{reason="connect_error",service="book"}`)
		for i := range 6 { // two rounds over the three instances
			r := call(t, "POST", g+"/books", map[string]any{"title": "Parable " + strconv.Itoa(i), "author_id": authorID, "genre": "sf"},
				"Authorization", editorAuth(t))
			expect(t, r, http.StatusCreated)
		}
		if after := gatewayCounter(t, gw, `gateway_upstream_retries_total{reason="connect_error",service="book"}`); after <= before {
			t.Errorf("no POST was refused and retried (retries %v, then %v): the killed instance was not tried", before, after)
		}
	})
}

// startGETLoad sends GETs of url from workers, back to back.
func startGETLoad(url string, workers int) *load {
	hc := &http.Client{Timeout: 30 * time.Second}
	ws := make([]loadWorker, workers)
	for i := range ws {
		ws[i] = loadWorker{kind: kindGetByID, do: getRequests(hc, func(int) string { return url })}
	}
	return startLoad("", ws...)
}

// gatewayRetryMetrics returns the gateway's retry, ejection and upstream lines.
func gatewayRetryMetrics(t *testing.T, gw *service) string {
	t.Helper()
	var out []string
	for _, line := range metricLines(t, gw) {
		if strings.HasPrefix(line, "gateway_upstream_retries_total{") || strings.HasPrefix(line, "gateway_instance_ejections_total{") ||
			strings.HasPrefix(line, `gateway_upstream_requests_total{outcome="timeout"`) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "; ")
}

// gatewayCounter returns the value of the gateway's series named exactly name
// (with its labels), 0 when absent.
func gatewayCounter(t *testing.T, gw *service, name string) float64 {
	t.Helper()
	for _, line := range metricLines(t, gw) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

func metricLines(t *testing.T, s *service) []string {
	t.Helper()
	resp, err := http.Get(s.MetricsURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
