package discovery

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"folio/internal/platform/faultproxy"
	"folio/internal/platform/polltest"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// TestWatchKeepsTheLastListWhileTheRegistryIsDown freezes and kills the path to
// the registry's NATS server (every instance loses it at once, as in a broker
// outage): the watched list stays what it was for several TTLs, health says why,
// and once the registry is back, expiry by TTL works again.
func TestWatchKeepsTheLastListWhileTheRegistryIsDown(t *testing.T) {
	for _, outage := range []struct {
		name  string
		begin func(*faultproxy.Proxy)
	}{
		{"frozen", (*faultproxy.Proxy).BlackHole},
		{"killed", (*faultproxy.Proxy).Cut},
	} {
		t.Run(outage.name, func(t *testing.T) {
			const ttl = 2 * time.Second
			px := faultproxy.New(t, natsServer(t))
			nc, err := nats.Connect("nats://"+px.Addr(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
				nats.PingInterval(time.Second), nats.MaxPingsOutstanding(2))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			r := openRegistry(t, nc, ttl)
			reg := prometheus.NewRegistry()
			d := &Discovery{Resolver: r, Registry: r}
			if err := d.RegisterMetrics(reg); err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()

			a := Instance{Service: "book", ID: "a", URL: "http://127.0.0.1:9201"}
			b := Instance{Service: "book", ID: "b", URL: "http://127.0.0.1:9202"}
			dereg, err := r.Register(ctx, a, ttl/3)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = dereg(context.Background()) })
			_, crashB, err := r.register(ctx, b, ttl/3)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(crashB)
			ch := r.Watch(ctx, "book")
			waitFor(t, ch, []Instance{a, b})
			polltest.Until(t, "the registry is seen healthy", func() error {
				if got := gauge(t, reg, "folio_discovery_registry_healthy"); got != 1 {
					return fmt.Errorf("folio_discovery_registry_healthy = %v", got)
				}
				return nil
			})

			outage.begin(px)
			polltest.Until(t, "the registry is seen unhealthy", func() error {
				if r.Health().Healthy {
					return fmt.Errorf("health %+v", r.Health())
				}
				if s := d.Status(); s["instances"] != "last known" {
					return fmt.Errorf("status %v", s)
				}
				return nil
			})
			// Three TTLs without a heartbeat: every entry would have expired.
			until := time.Now().Add(3 * ttl)
			for time.Now().Before(until) {
				select {
				case got := <-ch:
					if !slices.Equal(got, []Instance{a, b}) {
						t.Fatalf("during the outage the watched list became %v, want the last known %v", got, []Instance{a, b})
					}
				case <-time.After(time.Until(until)):
				}
			}

			px.Heal()
			polltest.Until(t, "the registry is seen healthy again", func() error {
				if !r.Health().Healthy {
					return fmt.Errorf("health %+v", r.Health())
				}
				return nil
			})
			crashB()
			waitFor(t, ch, []Instance{a})
		})
	}
}

// natsServer starts a JetStream server in the test's process and returns its
// address (host:port).
func natsServer(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, HTTPPort: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(polltest.Deadline) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv.Addr().String()
}

// gauge reads the value of the gauge called name in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
