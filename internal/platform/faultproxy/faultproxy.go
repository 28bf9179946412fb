// Package faultproxy puts a Toxiproxy proxy, run inside the test's own process,
// between a client and a server, so that fault tests can break the network between
// two parts of Folio the way real networks break: a black hole (a frozen peer),
// added latency, connections reset, connections refused.
package faultproxy

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxy forwards TCP connections from Addr to an upstream address until the test
// ends; its methods break and heal the path.
type Proxy struct {
	t testing.TB
	p *toxiproxy.Proxy
}

// New starts a proxy on a free loopback port in front of upstream (host:port). It
// stops when the test ends.
func New(t testing.TB, upstream string) *Proxy {
	t.Helper()
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(server, strings.ReplaceAll(t.Name(), "/", "_"), "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("faultproxy: start in front of %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	return &Proxy{t: t, p: p}
}

// Addr is the proxy's address (host:port), the same for the whole test, cuts
// included.
func (p *Proxy) Addr() string {
	p.p.Lock()
	defer p.p.Unlock()
	return p.p.Listen
}

// BlackHole makes the path swallow every byte both ways without closing any
// connection, old or new: what a frozen (SIGSTOPped) peer or a dropped route
// looks like to both ends.
func (p *Proxy) BlackHole() {
	p.add("timeout", "upstream", `{"timeout":0}`)
	p.add("timeout", "downstream", `{"timeout":0}`)
}

// Latency delays every chunk of data from the upstream by d.
func (p *Proxy) Latency(d time.Duration) {
	p.add("latency", "downstream", fmt.Sprintf(`{"latency":%d}`, d.Milliseconds()))
}

// ResetPeer resets (TCP RST) every connection as soon as the client sends data.
func (p *Proxy) ResetPeer() {
	p.add("reset_peer", "upstream", `{"timeout":0}`)
}

// Cut closes every connection and refuses new ones, as a killed server does.
func (p *Proxy) Cut() {
	p.p.Stop()
}

// Heal removes every fault: the proxy listens again (on the same address) and
// forwards untouched. Healing a black hole closes the connections it held (the
// timeout toxic closes them when it is removed), as a stateful firewall that lost
// the flows would: the clients see them end and connect again, rather than find
// them working again as a route that comes back would leave them.
func (p *Proxy) Heal() {
	p.t.Helper()
	p.p.Toxics.ResetToxics(p.t.Context())
	p.p.Lock()
	enabled := p.p.Enabled
	p.p.Unlock()
	if !enabled {
		if err := p.p.Start(); err != nil {
			p.t.Fatalf("faultproxy: listen again on %s: %v", p.Addr(), err)
		}
	}
}

func (p *Proxy) add(kind, stream, attributes string) {
	p.t.Helper()
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, kind+"_"+stream, kind, stream, attributes)
	if _, err := p.p.Toxics.AddToxicJson(io.NopCloser(strings.NewReader(body))); err != nil {
		p.t.Fatalf("faultproxy: add %s %s: %v", kind, stream, err)
	}
}
