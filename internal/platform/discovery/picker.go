package discovery

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
)

// ErrNoInstance is returned for a request to a service with no known instance. It
// is a dial error, so callers treat it like a refused connection: nothing was sent.
var ErrNoInstance = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("no instance of the service is registered")}

// Picker spreads requests round-robin over the live instances of one service,
// following the resolver as instances come and go.
type Picker struct {
	service string
	list    atomic.Pointer[[]*url.URL]
	next    atomic.Uint64
}

// NewPicker starts following service's instances on r until ctx ends.
func NewPicker(ctx context.Context, r Resolver, service string) *Picker {
	p := &Picker{service: service}
	p.set(r.Instances(service))
	ch := r.Watch(ctx, service)
	go func() {
		for list := range ch {
			p.set(list)
		}
	}()
	return p
}

func (p *Picker) set(list []Instance) {
	urls := make([]*url.URL, 0, len(list))
	for _, in := range list {
		if u, err := url.Parse(in.URL); err == nil && u.Host != "" {
			urls = append(urls, u)
		}
	}
	p.list.Store(&urls)
}

// Pick returns the next instance's base URL, or ErrNoInstance.
func (p *Picker) Pick() (*url.URL, error) {
	return p.pick(nil)
}

// pick returns the next instance not in tried, or the next one if every instance
// was tried, and records it in tried.
func (p *Picker) pick(tried *Attempts) (*url.URL, error) {
	list := *p.list.Load()
	if len(list) == 0 {
		return nil, ErrNoInstance
	}
	start := p.next.Add(1)
	chosen := list[start%uint64(len(list))]
	if tried != nil {
		tried.mu.Lock()
		defer tried.mu.Unlock()
		for i := range uint64(len(list)) {
			if u := list[(start+i)%uint64(len(list))]; !slices.Contains(tried.hosts, u.Host) {
				chosen = u
				break
			}
		}
		tried.hosts = append(tried.hosts, chosen.Host)
	}
	return chosen, nil
}

// Attempts are the instances the attempts of one call went to.
type Attempts struct {
	mu    sync.Mutex
	hosts []string
}

type attemptsKey struct{}

// WithAttempts returns ctx for one call whose retries the Picker should send to an
// instance the call has not tried yet, while there is one: the rotation is shared by
// every call, so without it a retry may come round to the instance that just failed.
func WithAttempts(ctx context.Context) context.Context {
	return context.WithValue(ctx, attemptsKey{}, &Attempts{})
}

// RoundTripper sends each request to the next instance (one its call has not tried,
// under WithAttempts): the request's scheme and host (which may be just the service
// name, as in http://book/books/1) are replaced by the instance's. Each retry of a
// request passes through again and so goes to another instance.
func (p *Picker) RoundTripper(base http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		tried, _ := r.Context().Value(attemptsKey{}).(*Attempts)
		u, err := p.pick(tried)
		if err != nil {
			return nil, err
		}
		out := r.WithContext(r.Context()) // a shallow copy, given its own URL
		target := *r.URL
		target.Scheme, target.Host = u.Scheme, u.Host
		out.URL, out.Host = &target, ""
		return base.RoundTrip(out)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
