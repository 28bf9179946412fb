package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"folio/internal/platform/polltest"
)

// TestBrokerOutageKeepsFolioServing is the fault campaign's broker outage as a
// test. One NATS server carries the events and the discovery registry of the
// author and book services and the gateway. It is frozen (SIGSTOP) for 20 s, then
// killed for 25 s and started again, while a client reads a book through the
// gateway every 50 ms and another creates books straight at the book service:
// every read and every write succeeds, the gateway's /readyz says it serves the
// last known instances, and the outboxes drain once the broker is back.
func TestBrokerOutageKeepsFolioServing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	srv := startNATSServer(t, embeddedNATS)
	bucket := "folio_e2e_outage_" + randomTag()
	discoveryEnv := func(id string) []string {
		return []string{"FOLIO_DISCOVERY=nats", "FOLIO_DISCOVERY_BUCKET=" + bucket, "FOLIO_DISCOVERY_TTL=3s", "FOLIO_INSTANCE_ID=" + id}
	}
	env := append(ownNATSEnv(t, srv), append(discoveryEnv("outage-1"), "FOLIO_BROKER_STALE_AFTER=5s")...)
	s := startScenario(t, env, false)
	// The gateway reaches the services only through the registry.
	gw := startExtra(t, "gateway", anyAddr, append(append([]string{}, env...), discoveryEnv("gateway-1")...)...)

	authorID, err := s.createAuthor()
	if err != nil {
		t.Fatal(err)
	}
	bookID, err := s.createBook(authorID)
	if err != nil {
		t.Fatal(err)
	}
	read := func() error {
		status, body, err := send("GET", gw.URL()+"/books/"+bookID, nil)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("status %d: %s", status, body)
		}
		return err
	}
	polltest.Until(t, "the gateway finds the book service in the registry", read)

	var reads, writes atomic.Int64
	var mu sync.Mutex
	var failed []string
	record := func(phase *atomic.Value, what string, err error) {
		if err != nil {
			mu.Lock()
			failed = append(failed, fmt.Sprintf("%s (%s): %v", what, phase.Load(), err))
			mu.Unlock()
		}
	}
	var phase atomic.Value
	phase.Store("before")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	every := func(d time.Duration, f func()) {
		wg.Go(func() {
			tick := time.NewTicker(d)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					f()
				}
			}
		})
	}
	every(50*time.Millisecond, func() { reads.Add(1); record(&phase, "gateway GET /books/{id}", read()) })
	every(200*time.Millisecond, func() {
		writes.Add(1)
		_, err := s.createBook(authorID)
		record(&phase, "POST /books", err)
	})
	defer func() { close(stop); wg.Wait() }()

	lastKnown := func() error {
		status, body, err := send("GET", gw.URL()+"/readyz", nil)
		if err != nil {
			return err
		}
		var r struct {
			Detail struct {
				Discovery map[string]any `json:"discovery"`
			} `json:"detail"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &r) != nil {
			return fmt.Errorf("gateway /readyz answered %d: %s", status, body)
		}
		if r.Detail.Discovery["instances"] != "last known" {
			return fmt.Errorf("gateway /readyz detail: %v", r.Detail.Discovery)
		}
		return nil
	}

	// Frozen: the connections stay open, nothing answers.
	phase.Store("broker frozen 20 s")
	began := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = srv.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	polltest.Until(t, "the gateway's /readyz says it serves the last known instances", lastKnown)
	time.Sleep(20*time.Second - time.Since(began)) // the outage's length, not a wait for a result
	resume()

	// Killed, then started again on the same port and store.
	phase.Store("broker killed 25 s")
	began = time.Now()
	srv.kill()
	// The book service, still ready, says its broker is not taking events.
	polltest.Until(t, "the book service's /readyz says the broker is not taking events", func() error {
		status, body, err := send("GET", s.book.URL()+"/readyz", nil)
		if err != nil {
			return err
		}
		var r struct {
			Detail struct {
				Broker map[string]any `json:"broker"`
			} `json:"detail"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &r) != nil {
			return fmt.Errorf("book /readyz answered %d: %s", status, body)
		}
		if r.Detail.Broker["status"] != "not taking events" {
			return fmt.Errorf("book /readyz detail: %s", body)
		}
		return nil
	})
	time.Sleep(25*time.Second - time.Since(began)) // the outage's length
	srv.start()
	phase.Store("after the broker came back")
	polltest.Until(t, "the gateway's registry is healthy again", func() error {
		if lastKnown() == nil {
			return fmt.Errorf("the gateway still serves the last known instances")
		}
		return nil
	})
	close(stop)
	wg.Wait()
	stop = make(chan struct{}) // for the deferred close
	t.Logf("broker frozen 20 s, then killed 25 s: %d gateway reads and %d book writes, %d failed", reads.Load(), writes.Load(), len(failed))
	if len(failed) > 0 {
		shown := failed
		if len(shown) > 20 {
			shown = shown[:20]
		}
		t.Fatalf("requests failed during the broker outage (every one must succeed):\n%s", strings.Join(shown, "\n"))
	}

	began = time.Now()
	polltest.Until(t, "the outboxes drain", func() error {
		for _, svc := range []*service{s.author, s.book} {
			if n, err := outboxPending(svc); err != nil || n != 0 {
				return fmt.Errorf("%s outbox: %d pending (%v)", svc.name, n, err)
			}
		}
		return nil
	})
	t.Logf("the outboxes drained %s after the registry was healthy again", time.Since(began).Round(10*time.Millisecond))
}
