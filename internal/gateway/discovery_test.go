package gateway

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"folio/internal/platform/discovery"
	"folio/internal/platform/polltest"
)

// pushResolver is a discovery.Resolver whose lists the test sets.
type pushResolver struct {
	mu       sync.Mutex
	lists    map[string][]discovery.Instance
	watchers map[string][]chan []discovery.Instance
}

func newPushResolver() *pushResolver {
	return &pushResolver{lists: map[string][]discovery.Instance{}, watchers: map[string][]chan []discovery.Instance{}}
}

func (p *pushResolver) Instances(service string) []discovery.Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]discovery.Instance(nil), p.lists[service]...)
}

func (p *pushResolver) Watch(ctx context.Context, service string) <-chan []discovery.Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan []discovery.Instance, 16)
	ch <- append([]discovery.Instance(nil), p.lists[service]...)
	p.watchers[service] = append(p.watchers[service], ch)
	return ch
}

func (p *pushResolver) set(service string, urls ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var list []discovery.Instance
	for i, u := range urls {
		list = append(list, discovery.Instance{Service: service, ID: string(rune('a' + i)), URL: u})
	}
	p.lists[service] = list
	for _, ch := range p.watchers[service] {
		ch <- list
	}
}

func TestPoolFollowsDiscovery(t *testing.T) {
	r := newPushResolver()
	var a, b atomic.Int64
	urlA, urlB := newEcho(t, ServiceBook, "a", &a).URL, newEcho(t, ServiceBook, "b", &b).URL
	for _, name := range []string{ServiceAuthor, ServiceAuth, ServiceNotify} {
		r.set(name, newEcho(t, name, name, nil).URL)
	}
	h := newHarness(t, func(c *Config) { c.Instances = nil; c.Resolver = r })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go h.gw.Run(ctx)

	// No book instance is registered yet: 503, as for an instance that refuses.
	if got := h.do("GET", "/books", "", "", nil); got.status != http.StatusServiceUnavailable {
		t.Fatalf("GET with no instance: status = %d, want 503 (%s)", got.status, got.body)
	}

	// The pool follows discovery in its own goroutine: each step waits until the pool
	// holds the list just published before it asks anything of the instances in it.
	pool := h.gw.services[ServiceBook].pool
	waitPool := func(want ...string) {
		t.Helper()
		polltest.Until(t, fmt.Sprintf("the book pool becomes %v", want), func() error {
			var got []string
			for _, in := range *pool.instances.Load() {
				got = append(got, in.url.String())
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("the pool is %v", got)
			}
			return nil
		})
	}
	// waitHits sends GETs until every counter in want has moved.
	waitHits := func(want ...*atomic.Int64) {
		t.Helper()
		start := make([]int64, len(want))
		for i, c := range want {
			start[i] = c.Load()
		}
		polltest.Until(t, "every instance reached", func() error {
			if got := h.do("GET", "/books", "", "", nil); got.status != http.StatusOK {
				t.Fatalf("GET: status = %d (%s)", got.status, got.body)
			}
			for i, c := range want {
				if c.Load() == start[i] {
					return fmt.Errorf("instance %d not reached yet: a=%d b=%d", i, a.Load(), b.Load())
				}
			}
			return nil
		})
	}
	r.set(ServiceBook, urlA)
	waitPool(urlA)
	waitHits(&a)
	r.set(ServiceBook, urlA, urlB)
	waitPool(urlA, urlB)
	waitHits(&a, &b)

	// Once b is withdrawn it gets nothing more.
	r.set(ServiceBook, urlA)
	waitPool(urlA)
	before := b.Load()
	for range 10 {
		if got := h.do("GET", "/books", "", "", nil); got.status != http.StatusOK {
			t.Fatalf("GET: status = %d", got.status)
		}
	}
	if b.Load() != before {
		t.Fatalf("withdrawn instance got %d requests", b.Load()-before)
	}
}

func TestPoolSetKeepsEjections(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := Config{EjectAfter: 1, EjectFor: time.Minute, Now: func() time.Time { return now }}
	urls := mustURLs(t, "http://a", "http://b")
	p := newPool(ServiceBook, urls, cfg, newInstruments(prometheusRegistry()))
	b := (*p.instances.Load())[1]
	p.failed(b, "connect_error")
	p.set(mustURLs(t, "http://b", "http://c"))
	list := *p.instances.Load()
	if list[0] != b || list[0].ejectedUntil.Load() == 0 {
		t.Fatal("an instance that stayed in the list lost its ejection")
	}
	if list[1].url.Host != "c" || list[1].fails.Load() != 0 {
		t.Fatalf("new instance = %v with %d failures", list[1].url, list[1].fails.Load())
	}
}

func TestRouteTimeouts(t *testing.T) {
	g := &Gateway{cfg: Config{UpstreamTimeout: 10 * time.Second, RouteTimeouts: map[string]time.Duration{
		"/authors":       2 * time.Second,
		"/authors/books": 30 * time.Second,
	}}}
	for path, want := range map[string]time.Duration{
		"/books/1":             10 * time.Second,
		"/authors":             2 * time.Second,
		"/authors/1":           2 * time.Second,
		"/authors/books":       30 * time.Second,
		"/authors/books?x=1":   30 * time.Second,
		"/subscriptions/1/del": 10 * time.Second,
	} {
		if got := g.timeout(path); got != want {
			t.Errorf("timeout(%q) = %v, want %v", path, got, want)
		}
	}
}
