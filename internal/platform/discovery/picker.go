package discovery

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
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
	list := *p.list.Load()
	if len(list) == 0 {
		return nil, ErrNoInstance
	}
	return list[p.next.Add(1)%uint64(len(list))], nil
}

// RoundTripper sends each request to the next instance: the request's scheme and
// host (which may be just the service name, as in http://book/books/1) are
// replaced by the instance's. Each retry of a request passes through again and so
// goes to another instance.
func (p *Picker) RoundTripper(base http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		u, err := p.Pick()
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
