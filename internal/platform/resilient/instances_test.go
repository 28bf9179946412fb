package resilient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"folio/internal/platform/discovery"
	"folio/internal/platform/resilient"
)

// newFrozen starts a peer instance that takes every request and never answers it
// until the test ends, whatever the client does: a process stopped with SIGSTOP.
func newFrozen(t *testing.T, hits *atomic.Int32) *httptest.Server {
	t.Helper()
	thaw := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-thaw
	}))
	t.Cleanup(srv.Close) // cleanups run last first: the handlers return, then the server closes
	t.Cleanup(func() { close(thaw) })
	return srv
}

// scripted is a route that sends the attempts to the instances of script in turn
// (then the last one).
func scripted(script ...string) func(http.RoundTripper) http.RoundTripper {
	var mu sync.Mutex
	return func(base http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			next := script[0]
			if len(script) > 1 {
				script = script[1:]
			}
			mu.Unlock()
			u, err := url.Parse(next)
			if err != nil {
				return nil, err
			}
			out := r.Clone(r.Context())
			out.URL.Scheme, out.URL.Host, out.Host = u.Scheme, u.Host, ""
			return base.RoundTrip(out)
		})
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// retriesCounted returns peer_retries_total for reason in reg.
func retriesCounted(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "peer_retries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestReadRetriedOnAnotherInstance: a read that times out on a frozen instance is
// sent to another (the picker skips the instances a call has tried: see
// discovery.TestPickerSkipsTriedInstances).
func TestReadRetriedOnAnotherInstance(t *testing.T) {
	var frozenHits atomic.Int32
	frozen := newFrozen(t, &frozenHits)
	live := newPeer(t, 0)
	cfg := config(10, time.Minute)
	// Generous, so that the live instance never misses it on a loaded machine.
	cfg.AttemptTimeout, cfg.Retries = time.Second, 1
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The rotation's first turn is the second instance: the frozen one.
	resolver := discovery.NewStatic(map[string][]string{"peer": {live.URL, frozen.URL}})
	cfg.Route = discovery.NewPicker(ctx, resolver, "peer").RoundTripper
	reg := prometheus.NewRegistry()
	c := resilient.NewClient(cfg, reg)
	status, body, err := call(t, c, http.MethodGet, "http://peer/books/1", "")
	if err != nil || status != http.StatusOK || body != "ok:" {
		t.Fatalf("got %d %q %v, want the live instance's 200", status, body, err)
	}
	if frozenHits.Load() != 1 || live.hits.Load() != 1 {
		t.Errorf("the frozen instance took %d attempts and the live one %d, want 1 each", frozenHits.Load(), live.hits.Load())
	}
	if got := retriesCounted(t, reg, "timeout"); got != 1 {
		t.Errorf("peer_retries_total{reason=timeout} = %v, want 1", got)
	}
}

// TestRefusedRetriedForAnyMethod: a call refused by one instance was not sent, so
// it goes to another whatever its method, body and all. The instances come from
// discovery's picker, as in the services.
func TestRefusedRetriedForAnyMethod(t *testing.T) {
	live := newPeer(t, 0)
	resolver := discovery.NewStatic(map[string][]string{"peer": {live.URL, "http://127.0.0.1:1"}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := config(100, time.Minute)
	cfg.Retries = 1
	cfg.Route = discovery.NewPicker(ctx, resolver, "peer").RoundTripper
	reg := prometheus.NewRegistry()
	c := resilient.NewClient(cfg, reg)
	body := `{"title":"` + strings.Repeat("x", 64<<10) + `"}`
	for i, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodPost, http.MethodGet} {
		status, got, err := call(t, c, method, "http://peer/books", body)
		if err != nil || status != http.StatusOK || got != "ok:"+body {
			t.Fatalf("%s %d: got %d, %d bytes, %v; want 200 with the body echoed", method, i, status, len(got), err)
		}
	}
	// The rotation starts on the refused instance, and each call takes two turns.
	if got := retriesCounted(t, reg, "connect_error"); got != 6 {
		t.Errorf("peer_retries_total{reason=connect_error} = %v, want 6 (every call was refused first)", got)
	}
}

// TestSentWriteNotRetried: a write that timed out may have taken effect; it is
// never sent to another instance.
func TestSentWriteNotRetried(t *testing.T) {
	var frozenHits atomic.Int32
	frozen := newFrozen(t, &frozenHits)
	live := newPeer(t, 0)
	cfg := config(10, time.Minute)
	cfg.AttemptTimeout = 50 * time.Millisecond
	cfg.Route = scripted(frozen.URL, live.URL)
	c := resilient.NewClient(cfg, prometheus.NewRegistry())
	if _, _, err := call(t, c, http.MethodPost, "http://peer/books", `{"a":1}`); !errors.Is(err, resilient.ErrUnavailable) {
		t.Fatalf("got %v, want the timeout as ErrUnavailable", err)
	}
	if frozenHits.Load() != 1 || live.hits.Load() != 0 {
		t.Errorf("the frozen instance took %d attempts and the live one %d, want 1 and 0", frozenHits.Load(), live.hits.Load())
	}
}
