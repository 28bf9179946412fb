// Package discovery tells where a service's instances are: a static list from
// configuration, or a NATS key-value bucket where each instance registers itself.
package discovery

import (
	"context"
	"fmt"
	"sort"
)

// Instance is one running copy of a service, reachable at URL.
type Instance struct {
	Service, ID, URL string
}

// Resolver finds the instances of a service.
type Resolver interface {
	// Instances returns the instances of service known now, sorted by ID.
	Instances(service string) []Instance
	// Watch sends the current instances of service at once and again whenever
	// they change; the channel is closed when ctx ends. A slow receiver only
	// misses intermediate lists: the latest one is always delivered.
	Watch(ctx context.Context, service string) <-chan []Instance
}

// Static is a Resolver over a fixed list from configuration (what Kubernetes
// Services and Compose give).
type Static struct {
	instances map[string][]Instance
}

// NewStatic returns a Resolver over urls, keyed by service name; instance ids are
// "static-0", "static-1", ... in the order given.
func NewStatic(urls map[string][]string) Resolver {
	s := &Static{instances: make(map[string][]Instance, len(urls))}
	for service, list := range urls {
		for i, u := range list {
			s.instances[service] = append(s.instances[service],
				Instance{Service: service, ID: fmt.Sprintf("static-%d", i), URL: u})
		}
	}
	return s
}

// Instances returns a copy of the configured instances of service.
func (s *Static) Instances(service string) []Instance {
	return append([]Instance(nil), s.instances[service]...)
}

// Watch sends the configured list once (it never changes) and closes the channel
// when ctx ends.
func (s *Static) Watch(ctx context.Context, service string) <-chan []Instance {
	ch := make(chan []Instance, 1)
	ch <- s.Instances(service)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch
}

// sortInstances orders list by ID so that equal sets compare equal.
func sortInstances(list []Instance) {
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
}

// sendLatest replaces any list the receiver has not taken yet with list. Only the
// single producer goroutine of ch may call it (ch has a buffer of one).
func sendLatest(ch chan []Instance, list []Instance) {
	select {
	case <-ch:
	default:
	}
	ch <- list
}
