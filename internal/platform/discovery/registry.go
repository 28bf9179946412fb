package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Registry is a Resolver over a NATS key-value bucket in which each instance
// registers itself under the key "<service>.<instance-id>". Entries are refreshed
// on a heartbeat, deleted on clean shutdown, and expire after the bucket's TTL when
// their instance dies.
//
// A registry that cannot be reached, or that takes no writes, says nothing about the
// instances in it: every heartbeat fails at once. While that lasts, watchers keep
// the last list they had (passive health in the callers ejects an instance that
// really died), and expiry by TTL resumes a TTL after the registry is healthy again,
// so that every live instance has had time to refresh itself.
type Registry struct {
	kv     jetstream.KeyValue
	ttl    time.Duration
	now    func() time.Time
	health health
}

// health is what this process last learned of the registry: from its watchers'
// probes and its own heartbeats.
type health struct {
	mu sync.Mutex
	// known is false until the first probe or heartbeat.
	known, ok bool
	// since is when the registry last became healthy or unhealthy.
	since time.Time
	// lastOK is when the registry last answered and took writes.
	lastOK time.Time
	// checked is when it was last observed, either way.
	checked time.Time
}

// Health is the registry as this process sees it.
type Health struct {
	// Healthy: the bucket answers and took a heartbeat within a TTL.
	Healthy bool
	// Since is when it became healthy or unhealthy (zero before anything is known).
	Since time.Time
	// LastHealthy is when it was last seen healthy (zero if never).
	LastHealthy time.Time
}

func (h *health) observe(ok bool, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.known || h.ok != ok {
		h.known, h.ok, h.since = true, ok, now
	}
	if ok {
		h.lastOK = now
	}
	h.checked = now
}

// checkedSince reports whether the registry was observed after t.
func (h *health) checkedSince(t time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.known && h.checked.After(t)
}

func (h *health) get() Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Health{Healthy: h.known && h.ok, Since: h.since, LastHealthy: h.lastOK}
}

// Health reports whether the registry answered and took writes when this process
// last looked (on each watch's sweep and each heartbeat).
func (r *Registry) Health() Health { return r.health.get() }

// record is the value stored under each key.
type record struct {
	Service   string    `json:"service"`
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	StartedAt time.Time `json:"started_at"`
}

// token is what a service name or an instance id may contain: one NATS subject
// token, valid as a key-value key part.
var token = regexp.MustCompile(`^[-_=a-zA-Z0-9]+$`)

// OpenRegistry creates the key-value bucket with the given TTL, or binds to it
// (updating its TTL) when it already exists.
func OpenRegistry(ctx context.Context, nc *nats.Conn, bucket string, ttl time.Duration) (*Registry, error) {
	if ttl <= 0 {
		return nil, errors.New("discovery: ttl must be positive")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("discovery: jetstream: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "folio service discovery: <service>.<instance-id> -> instance",
		TTL:         ttl,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: key-value bucket %q: %w", bucket, err)
	}
	return &Registry{kv: kv, ttl: ttl, now: time.Now}, nil
}

// TTL is how long an entry lives without a heartbeat.
func (r *Registry) TTL() time.Duration { return r.ttl }

// Register puts inst in the registry and refreshes it every heartbeat (which must
// be shorter than the TTL; a third of it is a good choice) until deregister is
// called. deregister stops the heartbeat and deletes the entry; call it on clean
// shutdown. If the process dies instead, the entry expires after the TTL.
func (r *Registry) Register(ctx context.Context, inst Instance, heartbeat time.Duration) (deregister func(context.Context) error, err error) {
	deregister, _, err = r.register(ctx, inst, heartbeat)
	return deregister, err
}

// register is Register that also returns a function stopping the heartbeat
// without deleting the entry, which is what a crash looks like (for tests).
func (r *Registry) register(ctx context.Context, inst Instance, heartbeat time.Duration) (deregister func(context.Context) error, stop func(), err error) {
	if !token.MatchString(inst.Service) || !token.MatchString(inst.ID) {
		return nil, nil, fmt.Errorf("discovery: service %q and id %q must be non-empty and contain only letters, digits, '-', '_' or '='", inst.Service, inst.ID)
	}
	if inst.URL == "" {
		return nil, nil, errors.New("discovery: instance URL is empty")
	}
	if heartbeat <= 0 || heartbeat >= r.ttl {
		return nil, nil, fmt.Errorf("discovery: heartbeat %v must be positive and shorter than the ttl %v", heartbeat, r.ttl)
	}
	key := inst.Service + "." + inst.ID
	value, err := json.Marshal(record{Service: inst.Service, ID: inst.ID, URL: inst.URL, StartedAt: r.now().UTC()})
	if err != nil {
		return nil, nil, err
	}
	if _, err := r.kv.Put(ctx, key, value); err != nil {
		return nil, nil, fmt.Errorf("discovery: register %s: %w", key, err)
	}

	hbCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(heartbeat)
		defer tick.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-tick.C:
				// A failed refresh is retried on the next tick; the entry survives
				// as long as one refresh per TTL gets through.
				putCtx, cancelPut := context.WithTimeout(hbCtx, heartbeat)
				_, err := r.kv.Put(putCtx, key, value)
				cancelPut()
				if hbCtx.Err() == nil {
					r.health.observe(err == nil, r.now())
				}
			}
		}
	}()
	stop = func() {
		cancel()
		<-done
	}
	var once sync.Once
	deregister = func(ctx context.Context) error {
		var err error
		once.Do(func() {
			stop()
			if e := r.kv.Delete(ctx, key); e != nil && !errors.Is(e, jetstream.ErrKeyNotFound) {
				err = fmt.Errorf("discovery: deregister %s: %w", key, e)
			}
		})
		return err
	}
	return deregister, stop, nil
}

// Instances returns the registered instances of service, read from the bucket
// (entries whose TTL has passed are removed by the server). It returns nil when
// NATS cannot be reached within five seconds.
func (r *Registry) Instances(service string) []Instance {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := r.kv.Watch(ctx, service+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil
	}
	defer func() { _ = w.Stop() }()
	var list []Instance
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil { // end of the current values
				sortInstances(list)
				return list
			}
			if inst, ok := decode(service, e); ok && e.Operation() == jetstream.KeyValuePut {
				list = append(list, inst)
			}
		}
	}
}

// Watch keeps a list of the instances of service up to date from the bucket and
// sends it at once (when the current entries have been read) and on every change.
// Besides the delete and purge markers, an entry not refreshed within the TTL is
// dropped locally (checked every TTL/4), since expired keys may not yield a marker
// in the watch stream: a dead instance leaves the list within about 1.25 × TTL.
// That expiry only runs while the registry is healthy (see Registry), and counts
// from when it last became so. If the watch breaks (NATS unreachable), it is
// re-established every second, and the list sent meanwhile stays as it was.
func (r *Registry) Watch(ctx context.Context, service string) <-chan []Instance {
	ch := make(chan []Instance, 1)
	go func() {
		defer close(ch)
		var last []Instance
		sent := false
		publish := func(entries map[string]seen) {
			list := make([]Instance, 0, len(entries))
			for _, s := range entries {
				list = append(list, s.inst)
			}
			sortInstances(list)
			if sent && slices.Equal(list, last) {
				return
			}
			last, sent = list, true
			sendLatest(ch, slices.Clone(list))
		}
		// The entries outlive a broken watch: a registry coming back after an
		// outage longer than its TTL has expired every entry, and lists them
		// again only as their heartbeats arrive.
		entries := map[string]seen{}
		for ctx.Err() == nil {
			r.watchOnce(ctx, service, entries, publish)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return ch
}

// seen is an entry of a watched list and when it was last put (local clock, so
// that clock differences between machines do not matter).
type seen struct {
	inst Instance
	at   time.Time
}

// watchOnce runs one key-value watch, keeping entries, until ctx ends or the
// watch breaks.
func (r *Registry) watchOnce(ctx context.Context, service string, entries map[string]seen, publish func(map[string]seen)) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := r.kv.Watch(wctx, service+".*")
	if err != nil {
		return
	}
	defer func() { _ = w.Stop() }()

	interval := r.ttl / 4
	if interval <= 0 {
		interval = r.ttl
	}
	sweep := time.NewTicker(interval)
	defer sweep.Stop()

	initialised := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			if !initialised {
				continue
			}
			h := r.probe(ctx, interval)
			if !h.Healthy {
				continue
			}
			cutoff := r.now().Add(-r.ttl)
			changed := false
			for k, s := range entries {
				if s.at.Before(cutoff) && h.Since.Before(cutoff) {
					delete(entries, k)
					changed = true
				}
			}
			if changed {
				publish(entries)
			}
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil { // every current value has been delivered
				initialised = true
				publish(entries)
				continue
			}
			switch e.Operation() {
			case jetstream.KeyValuePut:
				inst, ok := decode(service, e)
				if !ok {
					continue
				}
				prev, had := entries[e.Key()]
				entries[e.Key()] = seen{inst: inst, at: r.now()}
				if initialised && (!had || prev.inst != inst) {
					publish(entries)
				}
			case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
				if _, had := entries[e.Key()]; had {
					delete(entries, e.Key())
					if initialised {
						publish(entries)
					}
				}
			}
		}
	}
}

// probe asks the server for the bucket's state, and records whether it is healthy:
// it answered within timeout, and some instance's heartbeat was stored within a
// TTL (every live instance puts one every TTL/3, so a bucket that took none for a
// whole TTL is one that cannot take writes: a JetStream stalled by a full disk,
// say, or one every instance has lost). The last message time is compared with
// the server's own clock, not this machine's.
//
// A process watching several services sweeps each: what one sweep, or a heartbeat,
// learned within the last timeout is used instead of asking again.
func (r *Registry) probe(ctx context.Context, timeout time.Duration) Health {
	if r.health.checkedSince(r.now().Add(-timeout)) {
		return r.health.get()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	status, err := r.kv.Status(ctx)
	if err != nil {
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r.health.observe(false, r.now())
		}
		return r.health.get()
	}
	ok := true
	if bs, isBucket := status.(*jetstream.KeyValueBucketStatus); isBucket {
		info := bs.StreamInfo()
		serverNow := info.TimeStamp
		if serverNow.IsZero() {
			serverNow = r.now()
		}
		ok = !info.State.LastTime.IsZero() && serverNow.Sub(info.State.LastTime) <= r.ttl
	}
	r.health.observe(ok, r.now())
	return r.health.get()
}

// decode reads an entry's instance; the key decides service and id, so a malformed
// value cannot impersonate another instance.
func decode(service string, e jetstream.KeyValueEntry) (Instance, bool) {
	id, ok := strings.CutPrefix(e.Key(), service+".")
	if !ok || id == "" {
		return Instance{}, false
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.URL == "" {
		return Instance{}, false
	}
	return Instance{Service: service, ID: id, URL: rec.URL}, true
}

var _ Resolver = (*Registry)(nil)
var _ Resolver = (*Static)(nil)
