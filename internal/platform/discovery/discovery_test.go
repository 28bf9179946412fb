package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"folio/internal/platform/polltest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestStatic(t *testing.T) {
	r := NewStatic(map[string][]string{
		"book":   {"http://127.0.0.1:8081", "http://127.0.0.1:8082"},
		"author": {"http://127.0.0.1:8083"},
	})
	want := []Instance{
		{Service: "book", ID: "static-0", URL: "http://127.0.0.1:8081"},
		{Service: "book", ID: "static-1", URL: "http://127.0.0.1:8082"},
	}
	if got := r.Instances("book"); !slices.Equal(got, want) {
		t.Fatalf("Instances(book) = %v, want %v", got, want)
	}
	if got := r.Instances("nope"); len(got) != 0 {
		t.Fatalf("Instances(nope) = %v, want none", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ch := r.Watch(ctx, "book")
	select {
	case got := <-ch:
		if !slices.Equal(got, want) {
			t.Fatalf("Watch(book) sent %v, want %v", got, want)
		}
	case <-time.After(polltest.Deadline):
		t.Fatal("Watch sent nothing")
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("Watch sent a second list")
		}
	case <-time.After(polltest.Deadline):
		t.Fatal("Watch channel not closed after the context ended")
	}
}

// natsConn connects to FOLIO_TEST_NATS_URL, skipping the test without it (failing
// it when FOLIO_REQUIRE_INTEGRATION=1).
func natsConn(t *testing.T) *nats.Conn {
	t.Helper()
	url := os.Getenv("FOLIO_TEST_NATS_URL")
	if url == "" {
		if os.Getenv("FOLIO_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("FOLIO_TEST_NATS_URL is not set and FOLIO_REQUIRE_INTEGRATION=1")
		}
		t.Skip("FOLIO_TEST_NATS_URL is not set; skipping the NATS discovery test")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// openRegistry opens a registry on a bucket of its own, deleted when the test ends.
func openRegistry(t *testing.T, nc *nats.Conn, ttl time.Duration) *Registry {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	bucket := "folio_discovery_test_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), polltest.Deadline)
	defer cancel()
	r, err := OpenRegistry(ctx, nc, bucket, ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), polltest.Deadline)
		defer cancel()
		js, err := jetstream.New(nc)
		if err == nil {
			err = js.DeleteKeyValue(ctx, bucket)
		}
		if err != nil {
			t.Errorf("delete bucket %s: %v", bucket, err)
		}
	})
	return r
}

// waitFor reads lists from ch until one equals want.
func waitFor(t *testing.T, ch <-chan []Instance, want []Instance) {
	t.Helper()
	var last []Instance
	polltest.Until(t, fmt.Sprintf("the watched list becomes %v", want), func() error {
		for {
			select {
			case got, ok := <-ch:
				if !ok {
					t.Fatalf("watch channel closed; last list %v, want %v", last, want)
				}
				last = got
				if slices.Equal(got, want) {
					return nil
				}
			default:
				return fmt.Errorf("the watched list is %v", last)
			}
		}
	})
}

func TestRegistryRegisterWatchDeregister(t *testing.T) {
	nc := natsConn(t)
	r := openRegistry(t, nc, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	a := Instance{Service: "book", ID: "a", URL: "http://127.0.0.1:9001"}
	b := Instance{Service: "book", ID: "b", URL: "http://127.0.0.1:9002"}
	other := Instance{Service: "author", ID: "a", URL: "http://127.0.0.1:9003"}
	var deregs []func(context.Context) error
	for _, inst := range []Instance{a, b, other} {
		d, err := r.Register(ctx, inst, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		deregs = append(deregs, d)
	}
	t.Cleanup(func() {
		for _, d := range deregs {
			_ = d(context.Background())
		}
	})

	if got, want := r.Instances("book"), []Instance{a, b}; !slices.Equal(got, want) {
		t.Fatalf("Instances(book) = %v, want %v", got, want)
	}

	wctx, stopWatch := context.WithCancel(ctx)
	ch := r.Watch(wctx, "book")
	waitFor(t, ch, []Instance{a, b})

	if err := deregs[1](ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, []Instance{a})
	if got, want := r.Instances("book"), []Instance{a}; !slices.Equal(got, want) {
		t.Fatalf("Instances(book) after deregistering b = %v, want %v", got, want)
	}

	// A new instance appears on the watch.
	c := Instance{Service: "book", ID: "c", URL: "http://127.0.0.1:9004"}
	d, err := r.Register(ctx, c, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	deregs = append(deregs, d)
	waitFor(t, ch, []Instance{a, c})

	stopWatch()
	deadline := time.After(polltest.Deadline)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after the context ended")
		}
	}
}

func TestRegistryCrashedInstanceExpires(t *testing.T) {
	nc := natsConn(t)
	const ttl = 2 * time.Second
	r := openRegistry(t, nc, ttl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alive := Instance{Service: "book", ID: "alive", URL: "http://127.0.0.1:9101"}
	dead := Instance{Service: "book", ID: "dead", URL: "http://127.0.0.1:9102"}
	dereg, err := r.Register(ctx, alive, ttl/3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dereg(context.Background()) })
	_, crash, err := r.register(ctx, dead, ttl/3)
	if err != nil {
		t.Fatal(err)
	}

	ch := r.Watch(ctx, "book")
	waitFor(t, ch, []Instance{alive, dead})

	crash() // the heartbeat stops; the entry is not deleted
	waitFor(t, ch, []Instance{alive})

	// The server expires the entry too, and the live instance, kept by its
	// heartbeat, outlives several TTLs.
	polltest.Until(t, "Instances(book) is only the live one", func() error {
		if got := r.Instances("book"); !slices.Equal(got, []Instance{alive}) {
			return fmt.Errorf("Instances(book) = %v, want only %v", got, alive)
		}
		return nil
	})
}

func TestRegisterRejectsBadInput(t *testing.T) {
	r := &Registry{ttl: time.Second, now: time.Now}
	ctx := context.Background()
	for name, tc := range map[string]struct {
		inst Instance
		hb   time.Duration
	}{
		"dot in id":          {Instance{Service: "book", ID: "a.b", URL: "http://x"}, 100 * time.Millisecond},
		"empty service":      {Instance{ID: "a", URL: "http://x"}, 100 * time.Millisecond},
		"empty url":          {Instance{Service: "book", ID: "a"}, 100 * time.Millisecond},
		"heartbeat too long": {Instance{Service: "book", ID: "a", URL: "http://x"}, time.Second},
	} {
		if _, err := r.Register(ctx, tc.inst, tc.hb); err == nil {
			t.Errorf("%s: Register succeeded, want an error", name)
		}
	}
}

// TestPickerSkipsTriedInstances: the rotation is shared by every call, so another
// call's turn can bring a retry round to the instance that just failed it; under
// WithAttempts the retry goes to one the call has not tried, while there is one.
func TestPickerSkipsTriedInstances(t *testing.T) {
	p := NewPicker(t.Context(), NewStatic(map[string][]string{"book": {"http://a:1", "http://b:1"}}), "book")
	call := WithAttempts(t.Context())
	first, err := p.pick(call.Value(attemptsKey{}).(*Attempts))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pick(); err != nil { // another call's turn
		t.Fatal(err)
	}
	retry, _ := p.pick(call.Value(attemptsKey{}).(*Attempts))
	if retry.Host == first.Host {
		t.Errorf("the retry went to %s again", retry.Host)
	}
	third, _ := p.pick(call.Value(attemptsKey{}).(*Attempts))
	if third == nil {
		t.Error("with every instance tried, no instance is picked")
	}
}
