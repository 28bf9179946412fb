package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
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

	const reads, writes = "gateway GET /books/{id}", "POST /books"
	load := startLoad("before",
		loadWorker{kind: reads, pace: 50 * time.Millisecond, do: func(int) error { return read() }},
		loadWorker{kind: writes, pace: 200 * time.Millisecond, do: func(int) error {
			_, err := s.createBook(authorID)
			return err
		}})
	defer load.stop()

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
	load.setPhase("broker frozen 20 s")
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
	load.setPhase("broker killed 25 s")
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
	load.setPhase("after the broker came back")
	polltest.Until(t, "the gateway's registry is healthy again", func() error {
		if lastKnown() == nil {
			return fmt.Errorf("the gateway still serves the last known instances")
		}
		return nil
	})
	load.stop()
	st := load.snapshot()
	t.Logf("broker frozen 20 s, then killed 25 s: %d gateway reads and %d book writes, %d failed",
		st.kinds[reads].requests, st.kinds[writes].requests, st.total().failures)
	if st.total().failures > 0 {
		t.Fatalf("requests failed during the broker outage (every one must succeed):%s", st.failuresText())
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
